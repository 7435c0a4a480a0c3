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
