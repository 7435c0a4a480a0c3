package contract

import "testing"

func TestVerdictNames(t *testing.T) {
	for _, tc := range []struct {
		v             Verdict
		name, logName string
		passes        bool
	}{
		{VerdictDeny, "deny", "DENY", false},
		{VerdictAllow, "allow", "ACCEPT", true},
		{VerdictAudit, "audit", "AUDIT", true},
		{Verdict(NumVerdicts), "Verdict(3)", "VERDICT_3", false},
	} {
		if got := tc.v.String(); got != tc.name {
			t.Errorf("Verdict(%d).String() = %q, want %q", uint8(tc.v), got, tc.name)
		}
		if got := tc.v.LogName(); got != tc.logName {
			t.Errorf("Verdict(%d).LogName() = %q, want %q", uint8(tc.v), got, tc.logName)
		}
		if got := tc.v.Passes(); got != tc.passes {
			t.Errorf("Verdict(%d).Passes() = %v, want %v", uint8(tc.v), got, tc.passes)
		}
	}
}

// TestDatapathNames pins the spellings logs, golden files and the verdict command print.
func TestDatapathNames(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{Ingress.String(), "ingress"},
		{Egress.String(), "egress"},
		{StateUnprogrammedDeny.String(), "unprogrammed-deny"},
		{StateUnprogrammedAllow.String(), "unprogrammed-allow"},
		{StateIsolated.String(), "isolated"},
		{StateUnisolated.String(), "unisolated"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	// Special rule ids count down from the top so policy rules can count up from 1.
	for _, id := range []RuleID{RuleUnisolated, RuleUnprogrammed, RuleHost, RuleConntrack} {
		if id < 0xfffffff0 {
			t.Errorf("special rule id %#x is not at the top of the range", uint32(id))
		}
	}
	if RuleNone != 0 {
		t.Errorf("RuleNone = %d, want 0", RuleNone)
	}
}

func TestLimits(t *testing.T) {
	if MaxPrefixesPerPodDirection > MaxPrefixes || MaxPortRulesPerEntry > MaxPortRules {
		t.Error("a per-pod limit exceeds the global one")
	}
}
