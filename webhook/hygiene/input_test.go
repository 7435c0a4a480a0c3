package hygiene

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// staticFacts is an in-memory Facts for pure-logic tests of the input builder.
type staticFacts struct {
	namespaces []corev1.Namespace
	pods       []corev1.Pod
	policies   []networkingv1.NetworkPolicy
	err        error
}

func (s staticFacts) Namespace(_ context.Context, name string) (*corev1.Namespace, error) {
	for i := range s.namespaces {
		if s.namespaces[i].Name == name {
			return &s.namespaces[i], s.err
		}
	}
	return nil, s.err
}

func (s staticFacts) Namespaces(context.Context) ([]corev1.Namespace, error) {
	return s.namespaces, s.err
}

func (s staticFacts) PodCount(_ context.Context, ns string) (int, error) {
	n := 0
	for _, p := range s.pods {
		if p.Namespace == ns {
			n++
		}
	}
	return n, s.err
}

// SelectPods scans: the builder must get the same answer from any Facts, the
// webhook's label index included (podindex tests check the index against a scan).
func (s staticFacts) SelectPods(_ context.Context, ns string, sel labels.Selector) ([]*corev1.Pod, error) {
	var out []*corev1.Pod
	for i := range s.pods {
		if p := &s.pods[i]; p.Namespace == ns && sel.Matches(labels.Set(p.Labels)) {
			out = append(out, p)
		}
	}
	return out, s.err
}

func (s staticFacts) NetworkPolicies(_ context.Context, ns string) ([]networkingv1.NetworkPolicy, error) {
	var out []networkingv1.NetworkPolicy
	for _, p := range s.policies {
		if p.Namespace == ns {
			out = append(out, p)
		}
	}
	return out, s.err
}

func pod(ns, name string, labels map[string]string, ports ...corev1.ContainerPort) corev1.Pod {
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: ports}}},
	}
}

func sel(kv ...string) *metav1.LabelSelector {
	s := &metav1.LabelSelector{MatchLabels: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		s.MatchLabels[kv[i]] = kv[i+1]
	}
	return s
}

// toJSON renders an input value as generic JSON for assertions.
func toJSON(t *testing.T, v ast.Value) map[string]any {
	t.Helper()
	var out map[string]any
	if err := json.Unmarshal([]byte(v.String()), &out); err != nil {
		t.Fatalf("input is not JSON: %v\n%s", err, v)
	}
	return out
}

func TestBuildInput(t *testing.T) {
	facts := staticFacts{
		namespaces: []corev1.Namespace{
			{ObjectMeta: metav1.ObjectMeta{Name: "app", Labels: map[string]string{"kubernetes.io/metadata.name": "app"}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "mon", Labels: map[string]string{"team": "obs"}}},
		},
		pods: []corev1.Pod{
			pod("app", "web-1", map[string]string{"app": "web"}, corev1.ContainerPort{Name: "http", ContainerPort: 8080}),
			pod("app", "db-1", map[string]string{"app": "db"}, corev1.ContainerPort{Name: "pg", ContainerPort: 5432, Protocol: corev1.ProtocolTCP}),
			pod("mon", "prom-1", map[string]string{"app": "prom"}, corev1.ContainerPort{Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolUDP}),
		},
		policies: []networkingv1.NetworkPolicy{
			{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "all"}, Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{"Egress"}}},
			{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "db-only"}, Spec: networkingv1.NetworkPolicySpec{PodSelector: *sel("app", "db")}},
			{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "p"}}, // the stored version of the policy under review
			{ObjectMeta: metav1.ObjectMeta{Namespace: "mon", Name: "elsewhere"}},
		},
	}
	udp := corev1.ProtocolUDP
	port := intstr.FromString("metrics")
	end := int32(90)
	num := intstr.FromInt32(80)
	obj := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "app", Annotations: map[string]string{"a": "b"}},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: *sel("app", "web"),
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{
					{PodSelector: sel("app", "db")},
					{NamespaceSelector: sel("team", "obs"), PodSelector: &metav1.LabelSelector{}},
					{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}},
					{NamespaceSelector: sel("team", "nobody")},
				},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &port}, {Port: &num, EndPort: &end}},
			}},
		},
	}
	b := NewInputBuilder(Settings{MaxPortRange: 7, ProtectedPolicies: []string{"x"}, PrivilegedUsers: []string{"sa"}})
	v, err := b.Build(context.Background(), &Review{Operation: "CREATE", Namespace: "app", Name: "p", Object: obj}, facts)
	if err != nil {
		t.Fatal(err)
	}
	in := toJSON(t, v)

	policy := in["policy"].(map[string]any)
	ingress := policy["spec"].(map[string]any)["ingress"].([]any)[0].(map[string]any)
	from := ingress["from"].([]any)
	if _, ok := from[0].(map[string]any)["namespaceSelector"]; ok {
		t.Error("unset namespaceSelector rendered; absent and {} must stay different")
	}
	if ps := from[1].(map[string]any)["podSelector"]; ps == nil {
		t.Error("podSelector {} dropped")
	}
	ports := ingress["ports"].([]any)
	if p := ports[1].(map[string]any); p["protocol"] != "TCP" || p["port"] != float64(80) || p["endPort"] != float64(90) {
		t.Errorf("port defaults: %v", p)
	}
	if policy["metadata"].(map[string]any)["annotations"].(map[string]any)["a"] != "b" {
		t.Error("annotations missing")
	}
	if in["request"].(map[string]any)["object"] == nil || in["request"].(map[string]any)["oldObject"] != nil {
		t.Error("request.object/oldObject wrong for CREATE")
	}
	if cfg := in["config"].(map[string]any); cfg["maxPortRange"] != float64(7) || cfg["privilegedUsers"].([]any)[0] != "sa" {
		t.Errorf("config %v", cfg)
	}
	if lim := in["limits"].(map[string]any); lim["maxPortRulesPerEntry"] != float64(512) {
		t.Errorf("limits %v", lim)
	}

	cluster := in["cluster"].(map[string]any)
	if cluster["namespace"].(map[string]any)["terminating"] != false {
		t.Errorf("namespace %v", cluster["namespace"])
	}
	pods := map[string]map[string]any{}
	for _, p := range cluster["pods"].([]any) {
		pods[p.(map[string]any)["name"].(string)] = p.(map[string]any)
	}
	// Only the selected pods are rendered (the rules read nothing else; rendering the
	// whole namespace made the cost grow with it); podCount keeps the namespace's size.
	if len(pods) != 1 || pods["web-1"]["selected"] != true || pods["db-1"] != nil {
		t.Fatalf("pods %v, want only the selected web-1", pods)
	}
	if cluster["podCount"] != float64(2) {
		t.Errorf("podCount %v, want 2", cluster["podCount"])
	}
	if got := pods["web-1"]["policies"].([]any); len(got) != 1 || got[0] != "all" {
		t.Errorf("web-1 selected by %v, want [all]", got)
	}
	if got := pods["web-1"]["ports"].([]any)[0].(map[string]any); got["name"] != "http" || got["protocol"] != "TCP" {
		t.Errorf("web-1 ports %v", got)
	}
	others := cluster["policies"].(map[string]any)
	if len(others) != 2 || others["p"] != nil || others["elsewhere"] != nil {
		t.Errorf("other policies %v, want all and db-only", others)
	}
	peers := cluster["peers"].([]any)
	if len(peers) != 3 {
		t.Fatalf("peers %v, want 3 selector peers", peers)
	}
	want := []struct {
		peer  float64
		pods  float64
		named string
	}{{0, 1, "pg/TCP"}, {1, 1, "metrics/UDP"}, {3, 0, ""}}
	for i, w := range want {
		p := peers[i].(map[string]any)
		named := ""
		if np := p["namedPorts"].([]any); len(np) > 0 {
			named = np[0].(map[string]any)["name"].(string) + "/" + np[0].(map[string]any)["protocol"].(string)
		}
		if p["direction"] != "ingress" || p["peer"] != w.peer || p["pods"] != w.pods || named != w.named {
			t.Errorf("peer %d = %v, want peer %v with %v pods, named %q", i, p, w.peer, w.pods, w.named)
		}
	}
}

func TestBuildInputDelete(t *testing.T) {
	now := metav1.Now()
	facts := staticFacts{namespaces: []corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "app", DeletionTimestamp: &now}}}}
	old := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "strictgate-default-deny", Namespace: "app"}}
	v, err := NewInputBuilder(Settings{}).Build(context.Background(), &Review{Operation: "DELETE", Namespace: "app", Name: old.Name, OldObject: old}, facts)
	if err != nil {
		t.Fatal(err)
	}
	in := toJSON(t, v)
	if in["policy"].(map[string]any)["metadata"].(map[string]any)["name"] != "strictgate-default-deny" {
		t.Errorf("input.policy is not oldObject on DELETE: %v", in["policy"])
	}
	cluster := in["cluster"].(map[string]any)
	if cluster["namespace"].(map[string]any)["terminating"] != true || cluster["pods"] != nil {
		t.Errorf("cluster on DELETE = %v, want the terminating namespace only", cluster)
	}
}

func TestBuildInputErrors(t *testing.T) {
	b := NewInputBuilder(Settings{})
	if _, err := b.Build(context.Background(), &Review{Operation: "CREATE"}, nil); err == nil {
		t.Error("review without objects accepted")
	}
	obj := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "app"}}
	if _, err := b.Build(context.Background(), &Review{Operation: "CREATE", Object: obj}, staticFacts{err: errors.New("cache down")}); err == nil {
		t.Error("facts error swallowed")
	}
	if _, err := b.Build(context.Background(), &Review{Operation: "CREATE", Object: obj}, nil); err != nil {
		t.Errorf("without facts: %v", err)
	}
}
