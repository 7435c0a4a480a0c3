package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestRequireRoot runs a child test as the current user with and without
// EnvRequireRoot: as root it runs in both cases; otherwise it skips without the
// variable and fails with it.
func TestRequireRoot(t *testing.T) {
	if os.Getenv("STRICTGATE_TESTENV_CHILD") == "1" {
		RequireRoot(t, "checks nothing")
		return
	}
	for _, tc := range []struct {
		name    string
		require string
		// want is the child's verdict for a non-root and a root process.
		wantUser, wantRoot string
	}{
		{"skip allowed", "", "--- SKIP", "--- PASS"},
		{"skip forbidden", "1", "--- FAIL", "--- PASS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestRequireRoot$", "-test.v")
			cmd.Env = append(os.Environ(), "STRICTGATE_TESTENV_CHILD=1", EnvRequireRoot+"="+tc.require)
			out, _ := cmd.CombinedOutput()
			want := tc.wantUser
			if os.Geteuid() == 0 {
				want = tc.wantRoot
			}
			if !strings.Contains(string(out), want) {
				t.Fatalf("child output lacks %q:\n%s", want, out)
			}
		})
	}
}
