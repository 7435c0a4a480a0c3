package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// TestMain removes strictgate again after the suites: other packages' tests share the
// one-node cluster and expect plain Kubernetes (no gates, no default-deny, no chained
// CNI plugin).
//
// Every suite sets up the installation it needs (setup, setupWith in install_test.go),
// so any subset runs alone (-run) and in any order. The file names only arrange the
// cheap order: the strict-mode suites (e2e_test.go, failclosed_*_test.go) share one
// install, then hygiene_test.go and modes_test.go each need one helm upgrade, and
// uninstall_test.go runs last, so no suite after it has to install again.
func TestMain(m *testing.M) {
	code := m.Run()
	if installed != nil && os.Getenv("STRICTGATE_E2E_KEEP") == "" {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		if err := installed.Uninstall(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: uninstall strictgate: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
		cancel()
	}
	os.Exit(code)
}
