package contract

import "fmt"

// Verdict's String is the one spelling of verdicts (allow, deny, audit: the verdict
// command's output); LogName is the policy event log's and the metrics' word for it.

// Passes reports whether the packet went through (allow or audit).
func (v Verdict) Passes() bool { return v == VerdictAllow || v == VerdictAudit }

// LogName is the policy event log's name of v, as in the AWS seed's logs: ACCEPT, DENY
// or AUDIT. DENY is what the seed's query `filter @message like /DENY/` looks for, and
// no other field of a record ever contains it.
func (v Verdict) LogName() string {
	if int(v) < len(logNames) && logNames[v] != "" {
		return logNames[v]
	}
	return fmt.Sprintf("VERDICT_%d", uint8(v))
}

var logNames = [NumVerdicts]string{VerdictDeny: "DENY", VerdictAllow: "ACCEPT", VerdictAudit: "AUDIT"}
