package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/strictgate/strictgate/test/e2e/harness"
)

// TestPrivilegedHelmUninstallLeavesNoWebhooks: after `helm uninstall` no webhook
// configuration, admission policy or strictgate pod is left, so the cluster admits pods
// exactly as before. A suite running after it installs again (setupWith).
func TestPrivilegedHelmUninstallLeavesNoWebhooks(t *testing.T) {
	cl, in := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := in.Helm.Uninstall(ctx, harness.Release, harness.Namespace); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	installMu.Lock()
	installed = nil // TestMain has nothing left to remove; the next setup installs afresh
	installMu.Unlock()
	// The chart's pre-delete hook took strictgate out of the node's CNI configuration.
	b, err := os.ReadFile(cl.Config.CNIConfDir + "/" + cl.Config.CNIConfFile)
	if err != nil || strings.Contains(string(b), `"strictgate"`) {
		t.Errorf("strictgate still chained in the CNI configuration after helm uninstall: %v\n%s", err, b)
		_ = harness.UnchainCNI(cl) // leave the cluster usable for others anyway
	}
	mw, err := cl.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vw, err := cl.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vap, err := cl.Client.AdmissionregistrationV1().ValidatingAdmissionPolicies().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mapol, err := cl.Client.AdmissionregistrationV1().MutatingAdmissionPolicies().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(mw.Items) + len(vw.Items) + len(vap.Items) + len(mapol.Items); n != 0 {
		t.Errorf("after helm uninstall: %d mutating, %d validating webhook configurations, %d validating and %d mutating admission policies remain",
			len(mw.Items), len(vw.Items), len(vap.Items), len(mapol.Items))
	}
	if err := harness.Eventually(ctx, 2*time.Minute, func() error {
		pods, err := cl.Client.CoreV1().Pods(harness.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("%d strictgate pods still exist", len(pods.Items))
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	// A new pod in a formerly enforced namespace gets no gate and becomes Ready.
	namespace(t, cl, "e2e-after", nil)
	startPod(t, cl, "e2e-after", "plain", nil)
	p := waitReady(t, cl, "e2e-after", "plain")
	if harness.HasGate(p) {
		t.Error("pod created after uninstall has the readiness gate")
	}
}
