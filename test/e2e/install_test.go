package e2e

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/strictgate/strictgate/test/cluster"
	"github.com/strictgate/strictgate/test/e2e/harness"
)

var (
	installOnce sync.Once
	installed   *harness.Install
	installErr  error
)

// setup returns the cluster with strictgate installed in strict mode (once per test
// binary). The suites share the installation; each works in namespaces of its own.
func setup(t *testing.T) (*cluster.Cluster, *harness.Install) {
	t.Helper()
	cl := cluster.Ensure(t) // skips loudly when not root
	installOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		installed, installErr = harness.InstallStrictgate(ctx, cl, harness.Options{Mode: "strict", Log: os.Stderr})
	})
	if installErr != nil {
		t.Fatalf("install strictgate: %v", installErr)
	}
	return cl, installed
}
