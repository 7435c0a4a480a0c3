package contract

import "fmt"

// EventLogMode selects what the policy event log keeps: the agent's --event-mode and
// the chart's agent.policyEventLogs.
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
	switch m := EventLogMode(s); m {
	case EventLogNone, EventLogDeny, EventLogAll:
		return m, nil
	}
	return "", fmt.Errorf("unknown event mode %q: want none, deny or all", s)
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
