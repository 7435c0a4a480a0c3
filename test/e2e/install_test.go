package e2e

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
	// Exclusive: the install changes the cluster for everyone (webhooks, gates,
	// default-deny, a chained CNI plugin); other packages' tests wait until we are done
	// (TestMain uninstalls). Skips loudly when not root.
	cl := cluster.EnsureExclusive(t)
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

// TestPrivilegedHelmInstall: `helm upgrade --install --wait` of the chart succeeds on
// the cluster with the image built from this tree, and leaves the admission side and
// the agent in place.
func TestPrivilegedHelmInstall(t *testing.T) {
	cl, in := setup(t)
	t.Logf("image %s: build+import %s, helm install --wait %s", in.Image.Ref, in.BuildTook.Round(time.Millisecond), in.HelmTook.Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cl.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "strictgate-webhook", metav1.GetOptions{}); err != nil {
		t.Error(err)
	}
	if _, err := cl.Client.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, "strictgate-gate-guard", metav1.GetOptions{}); err != nil {
		t.Error(err)
	}
	if _, err := harness.AgentPod(ctx, cl.Client); err != nil {
		t.Error(err)
	}
	b, err := os.ReadFile(cl.Config.CNIConfDir + "/" + cl.Config.CNIConfFile)
	if err != nil || !strings.Contains(string(b), `"type": "strictgate"`) {
		t.Errorf("the agent's installer did not chain strictgate into %s: %v\n%s", cl.Config.CNIConfFile, err, b)
	}
}
