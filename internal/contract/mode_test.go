package contract

import (
	"strings"
	"testing"
)

func TestParseMode(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Mode
		state   State
		audits  bool
		closed  bool
		wantErr string
	}{
		{in: "strict", want: ModeStrict, state: StateUnprogrammedDeny, closed: true},
		{in: "standard", want: ModeStandard, state: StateUnprogrammedAllow},
		// Audit attaches closed; the audit switch passes and reports what that drops.
		{in: "audit", want: ModeAudit, state: StateUnprogrammedDeny, audits: true},
		{in: "", wantErr: `unknown mode ""`},
		{in: "Strict", wantErr: "want strict, standard or audit"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			m, err := ParseMode(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseMode(%q) = %q, %v; want error %q", tc.in, m, err, tc.wantErr)
				}
				return
			}
			if err != nil || m != tc.want {
				t.Fatalf("ParseMode(%q) = %q, %v", tc.in, m, err)
			}
			if got := m.InitialState(); got != tc.state {
				t.Errorf("%s.InitialState() = %s, want %s", m, got, tc.state)
			}
			if m.Audits() != tc.audits || m.FailsClosed() != tc.closed {
				t.Errorf("%s: Audits %v FailsClosed %v, want %v %v", m, m.Audits(), m.FailsClosed(), tc.audits, tc.closed)
			}
		})
	}
}

func TestEventLogMode(t *testing.T) {
	all := []Verdict{VerdictDeny, VerdictAllow, VerdictAudit}
	for _, tc := range []struct {
		in    string
		keeps []Verdict
	}{
		{"none", nil},
		{"deny", []Verdict{VerdictDeny, VerdictAudit}},
		{"all", all},
	} {
		m, err := ParseEventLogMode(tc.in)
		if err != nil || string(m) != tc.in {
			t.Fatalf("ParseEventLogMode(%q) = %q, %v", tc.in, m, err)
		}
		for _, v := range all {
			want := false
			for _, k := range tc.keeps {
				want = want || k == v
			}
			if got := m.Keeps(v); got != want {
				t.Errorf("%s.Keeps(%s) = %v, want %v", m, v, got, want)
			}
		}
	}
	// The kernel's spelling of the deny switch is not a log mode.
	if _, err := ParseEventLogMode("deny-only"); err == nil || !strings.Contains(err.Error(), "want none, deny or all") {
		t.Errorf("ParseEventLogMode(deny-only) = %v", err)
	}
}
