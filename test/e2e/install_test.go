package e2e

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/strictgate/strictgate/test/cluster"
	"github.com/strictgate/strictgate/test/e2e/harness"
)

// The installation the suites share. Every suite says what it needs (setup, setupWith)
// and gets exactly that, whatever ran before it: the order of files and tests is not
// part of any suite's correctness (issue 16, test hygiene c). The order only saves
// helm upgrades.
var (
	installMu   sync.Mutex
	installed   *harness.Install // nil: strictgate is not installed (TestMain uninstalls otherwise)
	installedAs string           // the mode and values installed is running with
	binary      string           // the strictgate binary built for this run (kept across uninstalls)
)

// setup returns the cluster with strictgate installed in strict mode with the chart's
// defaults.
func setup(t *testing.T) (*cluster.Cluster, *harness.Install) {
	t.Helper()
	return setupWith(t, "strict", nil)
}

// setupWith returns the cluster with strictgate helm-installed in mode with values
// merged over the harness's: a fresh install when there is none, a helm upgrade when
// the running one differs, nothing otherwise. Suites work in namespaces of their own.
func setupWith(t *testing.T, mode string, values map[string]any) (*cluster.Cluster, *harness.Install) {
	t.Helper()
	// Exclusive: the install changes the cluster for everyone (webhooks, gates,
	// default-deny, a chained CNI plugin); other packages' tests wait until we are done
	// (TestMain uninstalls). Skips loudly when not root.
	cl := cluster.EnsureExclusive(t)
	installMu.Lock()
	defer installMu.Unlock()
	b, err := json.Marshal(values)
	if err != nil {
		t.Fatal(err)
	}
	want := mode + " " + string(b)
	if installed != nil && installedAs == want {
		return cl, installed
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	in, err := harness.InstallStrictgate(ctx, cl, harness.Options{Mode: mode, Binary: binary, Values: values, Log: os.Stderr})
	if err != nil {
		installed = nil // unknown state: the next suite installs afresh (a no-op upgrade if it is fine)
		t.Fatalf("install strictgate (mode %s, values %s): %v", mode, b, err)
	}
	installed, installedAs, binary = in, want, in.StrictgateBinary()
	return cl, in
}

// forgetInstall makes the next setup run helm upgrade even if mode and values are the
// same: for suites that changed the release's objects behind helm's back.
func forgetInstall() {
	installMu.Lock()
	installedAs = ""
	installMu.Unlock()
}

// TestPrivilegedHelmInstall: `helm upgrade --install --wait` of the chart succeeds on
// the cluster with the image built from this tree, and leaves the admission side and
// the agent in place.
func TestPrivilegedHelmInstall(t *testing.T) {
	cl, in := setup(t)
	t.Logf("image %s: build+import %s, helm install --wait %s", in.Image.Ref, in.BuildTook.Round(time.Millisecond), in.HelmTook.Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// This cluster (1.37) serves MutatingAdmissionPolicy: the chart's gate.injection=auto
	// gates pods with it and registers no pod mutator.
	if _, err := cl.Client.AdmissionregistrationV1().MutatingAdmissionPolicies().Get(ctx, "strictgate-readiness-gate", metav1.GetOptions{}); err != nil {
		t.Error(err)
	}
	if _, err := cl.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "strictgate-webhook", metav1.GetOptions{}); err == nil {
		t.Error("the pod mutator is registered beside the gate policy")
	}
	if _, err := cl.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "strictgate-webhook", metav1.GetOptions{}); err != nil {
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
