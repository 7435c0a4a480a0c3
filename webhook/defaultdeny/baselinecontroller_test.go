package defaultdeny

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	cnp "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/strictgate/strictgate/internal/contract"
	"github.com/strictgate/strictgate/test/controlplane"
)

// TestBaselineReconcilerAPIServer: against a real API server with the chart's CRD, the
// controller creates the Baseline policy, recreates it when deleted and restores it
// when edited.
func TestBaselineReconcilerAPIServer(t *testing.T) {
	rc := controlplane.Start(t, &envtest.Environment{CRDInstallOptions: envtest.CRDInstallOptions{
		Paths: []string{filepath.Join("..", "..", "charts", "strictgate", "crds")},
	}})
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := cnp.Install(s); err != nil {
		t.Fatal(err)
	}
	mgr, err := ctrl.NewManager(rc, ctrl.Options{Scheme: s, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0"})
	if err != nil {
		t.Fatal(err)
	}
	scope := contract.Scope{OwnNamespace: "strictgate", Excluded: []string{"legacy"}}
	r := &BaselineReconciler{Client: mgr.GetClient(), Scope: scope, DNSPolicy: true}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	admin, err := client.New(rc, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	want, err := BaselinePolicy(scope, true, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	get := func() (*cnp.ClusterNetworkPolicy, error) {
		p := &cnp.ClusterNetworkPolicy{}
		return p, admin.Get(ctx, client.ObjectKey{Name: contract.DefaultDenyPolicy}, p)
	}
	inPlace := func(notUID string) *cnp.ClusterNetworkPolicy {
		t.Helper()
		var p *cnp.ClusterNetworkPolicy
		deadline := time.Now().Add(30 * time.Second)
		for {
			var err error
			p, err = get()
			if err == nil && string(p.UID) != notUID && p.Labels[contract.ManagedByLabel] == contract.ManagedBy && equality.Semantic.DeepEqual(p.Spec, want.Spec) {
				return p
			}
			if time.Now().After(deadline) {
				t.Fatalf("generated Baseline policy not in place within 30s: %v %+v", err, p)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	first := inPlace("")
	if err := admin.Delete(ctx, first); err != nil {
		t.Fatal(err)
	}
	second := inPlace(string(first.UID))

	edited := second.DeepCopy()
	edited.Spec.Ingress = nil
	edited.Spec.Priority = 1
	if err := admin.Update(ctx, edited); err != nil {
		t.Fatal(err)
	}
	third := inPlace("")
	if third.UID != second.UID || third.ResourceVersion == edited.ResourceVersion {
		t.Fatalf("want the same object restored in place: %s/%s", third.UID, third.ResourceVersion)
	}
}
