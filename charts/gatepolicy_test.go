package charts

import (
	"context"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/strictgate/strictgate/internal/contract"
	"github.com/strictgate/strictgate/test/controlplane"
)

// TestGatePolicyOnAPIServer: the chart's MutatingAdmissionPolicy gates pods inside a real
// kube-apiserver, with no webhook running at all, by the pod mutator's rules: enforced
// namespaces only (exclusions, the opt-out label, enforcement.namespaceSelector), never
// host-network pods, never twice, other gates kept and first.
func TestGatePolicyOnAPIServer(t *testing.T) {
	cfg := controlplane.Start(t, nil)
	c := newClients(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := render(t, "strictgate", map[string]any{
		"gate":        map[string]any{"injection": "policy"},
		"webhook":     map[string]any{"admission": map[string]any{"pods": map[string]any{"objectSelector": map[string]any{"matchExpressions": []any{map[string]any{"key": "skip-gate", "operator": "DoesNotExist"}}}}}},
		"enforcement": map[string]any{"namespaceSelector": map[string]any{"matchExpressions": []any{map[string]any{"key": "tier", "operator": "NotIn", "values": []any{"legacy"}}}}},
	})
	if n := len(r.byKind("MutatingWebhookConfiguration")); n != 0 {
		t.Fatalf("%d MutatingWebhookConfigurations with the policy; the pod mutator must not be registered", n)
	}
	for _, kind := range []string{"MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"} {
		for _, o := range r.byKind(kind) {
			ri, err := c.resource(o)
			if err != nil {
				t.Fatalf("%s: %v (does the API server serve admissionregistration.k8s.io/v1 %s?)", kind, err, kind)
			}
			if _, err := ri.Create(ctx, o, metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict}); err != nil {
				t.Fatalf("create %s: %v", kind, err)
			}
		}
	}
	for name, labels := range map[string]map[string]string{
		"shop": nil, "optout": {contract.EnforceLabel: contract.EnforceDisabled}, "old": {"tier": "legacy"}, testNamespace: nil,
	} {
		if _, err := c.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ours := corev1.PodReadinessGate{ConditionType: contract.ConditionType}
	other := corev1.PodReadinessGate{ConditionType: "example.com/other"}
	admit := func(ns string, gates []corev1.PodReadinessGate, hostNet bool, labels ...string) []string {
		t.Helper()
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "p-", Labels: map[string]string{}},
			Spec: corev1.PodSpec{ReadinessGates: gates, HostNetwork: hostNet,
				Containers: []corev1.Container{{Name: "c", Image: "registry.invalid/x:1"}}},
		}
		for i := 0; i+1 < len(labels); i += 2 {
			p.Labels[labels[i]] = labels[i+1]
		}
		out, err := c.kube.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatalf("create pod in %s: %v", ns, err)
		}
		var got []string
		for _, g := range out.Spec.ReadinessGates {
			got = append(got, string(g.ConditionType))
		}
		return got
	}
	// The API server loads new policies asynchronously.
	deadline := time.Now().Add(30 * time.Second)
	for !slices.Equal(admit("shop", nil, false), []string{contract.ConditionType}) {
		if time.Now().After(deadline) {
			t.Fatal("the policy never gated a pod in an enforced namespace")
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, tc := range []struct {
		name    string
		ns      string
		gates   []corev1.PodReadinessGate
		hostNet bool
		labels  []string
		want    []string
	}{
		{"no gates", "shop", nil, false, nil, []string{contract.ConditionType}},
		{"empty gate list", "shop", []corev1.PodReadinessGate{}, false, nil, []string{contract.ConditionType}},
		{"other gate kept first", "shop", []corev1.PodReadinessGate{other}, false, nil, []string{"example.com/other", contract.ConditionType}},
		{"already gated", "shop", []corev1.PodReadinessGate{other, ours}, false, nil, []string{"example.com/other", contract.ConditionType}},
		{"host network", "shop", nil, true, nil, nil},
		{"outside the pod objectSelector", "shop", nil, false, []string{"skip-gate", "yes"}, nil},
		{"opted out", "optout", nil, false, nil, nil},
		{"outside the namespace selector", "old", nil, false, nil, nil},
		{"own namespace", testNamespace, nil, false, nil, nil},
		{"kube-system", "kube-system", nil, false, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := admit(tc.ns, tc.gates, tc.hostNet, tc.labels...); !slices.Equal(got, tc.want) {
				t.Fatalf("readiness gates %v, want %v", got, tc.want)
			}
		})
	}
}
