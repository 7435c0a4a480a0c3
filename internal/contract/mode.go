package contract

// Mode is the enforcement mode of a node: the agent's --mode, the CNI plugin's "mode"
// and the chart's mode value (docs/design.md, "Contracts").
type Mode string

const (
	// ModeStrict: a pod is deny-all from CNI ADD until its policy is programmed.
	ModeStrict Mode = "strict"
	// ModeStandard: a pod is allow-all until programmed.
	ModeStandard Mode = "standard"
	// ModeAudit: nothing is dropped; would-be drops are reported as AUDIT.
	ModeAudit Mode = "audit"
)

// ParseMode parses a mode name; the error names the valid ones.
func ParseMode(s string) (Mode, error) {
	return parseName("mode", s, ModeStrict, ModeStandard, ModeAudit)
}

// InitialState is the state of a pod's directions before the agent programs it.
// Audit attaches closed and lets the datapath's audit switch pass (and report) what the
// closed state would drop, so that even unprogrammed traffic shows up as AUDIT.
func (m Mode) InitialState() State {
	if m == ModeStandard {
		return StateUnprogrammedAllow
	}
	return StateUnprogrammedDeny
}

// Audits reports whether pods are attached with the datapath's audit switch on.
func (m Mode) Audits() bool { return m == ModeAudit }

// FailsClosed reports whether a pod that cannot be attached must not start: only in
// strict mode would an unattached pod carry traffic its policy forbids.
func (m Mode) FailsClosed() bool { return m == ModeStrict }
