package contract

// EventLogMode selects what the policy event log keeps: the agent's --event-mode and
// the chart's agent.policyEventLogs value.
type EventLogMode string

const (
	// EventLogNone logs nothing (metrics still count every packet).
	EventLogNone EventLogMode = "none"
	// EventLogDeny logs DENY and AUDIT verdicts.
	EventLogDeny EventLogMode = "deny"
	// EventLogAll logs every verdict the kernel reports.
	EventLogAll EventLogMode = "all"
)

// ParseEventLogMode parses none, deny or all.
func ParseEventLogMode(s string) (EventLogMode, error) {
	return parseName("event mode", s, EventLogNone, EventLogDeny, EventLogAll)
}

// Keeps reports whether the log keeps events of verdict v.
func (m EventLogMode) Keeps(v Verdict) bool {
	switch m {
	case EventLogNone:
		return false
	case EventLogDeny:
		return v == VerdictDeny || v == VerdictAudit
	}
	return true
}
