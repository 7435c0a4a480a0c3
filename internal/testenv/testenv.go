// Package testenv holds what tests across the module share about where they run.
package testenv

import (
	"net"
	"os"
	"testing"
)

// EnvRequireRoot names the variable that turns a privileged test's skip into a
// failure. .ci/run sets it: CI runs as root, so a privileged test that skips there
// (a lost capability, a changed euid) must turn the run red instead of printing "ok".
const EnvRequireRoot = "STRICTGATE_REQUIRE_ROOT"

// RequireRoot skips tb loudly when the process is not root — what is the reason, e.g.
// "loads eBPF programs" — or fails it when EnvRequireRoot is "1".
func RequireRoot(tb testing.TB, what string) {
	tb.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv(EnvRequireRoot) == "1" {
		tb.Fatalf("this test %s and needs root, and %s=1 says this run must not skip it", what, EnvRequireRoot)
	}
	tb.Skipf("SKIPPED: this test %s and needs root; run as root (CI does, with %s=1)", what, EnvRequireRoot)
}

// FreeAddr returns a loopback host:port nothing listens on right now, for a server
// under test to bind.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
