package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"github.com/open-policy-agent/opa/v1/ast"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/strictgate/strictgate/internal/contract"
	"github.com/strictgate/strictgate/webhook/hygiene"
	"github.com/strictgate/strictgate/webhook/podindex"
)

var (
	hygOnce   sync.Once
	hygShared *hygiene.Engine
	hygErr    error
)

// sharedEngine is one engine with the built-in rules for the unit tests, the fuzz
// target and the benchmark (loading runs every Rego test, which takes a while).
func sharedEngine(tb testing.TB) *hygiene.Engine {
	tb.Helper()
	hygOnce.Do(func() {
		hygShared, hygErr = hygiene.New(context.Background(), hygiene.Options{Log: logr.Discard()})
	})
	if hygErr != nil {
		tb.Fatal(hygErr)
	}
	return hygShared
}

// memFacts serves cluster facts from memory: the unit tests and the benchmark judge
// the validator's own cost, not an informer's. Pods are answered by a podindex.Index
// as in production (ReaderFacts with the informer-fed index). Policies all live in
// the first namespace.
type memFacts struct {
	namespaces []corev1.Namespace
	pods       map[string][]corev1.Pod
	policies   []networkingv1.NetworkPolicy
	err        error

	once  sync.Once
	index *podindex.Index
}

func (m *memFacts) podIndex() *podindex.Index {
	m.once.Do(func() {
		m.index = podindex.New()
		for ns := range m.pods {
			for i := range m.pods[ns] {
				m.index.Upsert(&m.pods[ns][i])
			}
		}
	})
	return m.index
}

func (m *memFacts) Namespace(_ context.Context, name string) (*corev1.Namespace, error) {
	for i := range m.namespaces {
		if m.namespaces[i].Name == name {
			return &m.namespaces[i], m.err
		}
	}
	return nil, m.err
}

func (m *memFacts) Namespaces(context.Context) ([]corev1.Namespace, error) {
	return m.namespaces, m.err
}

func (m *memFacts) PodCount(_ context.Context, ns string) (int, error) {
	return m.podIndex().Count(ns), m.err
}

func (m *memFacts) SelectPods(_ context.Context, ns string, sel labels.Selector) ([]*corev1.Pod, error) {
	return m.podIndex().Select(ns, sel), m.err
}

func (m *memFacts) NetworkPolicies(_ context.Context, ns string) ([]networkingv1.NetworkPolicy, error) {
	if len(m.namespaces) == 0 || ns != m.namespaces[0].Name {
		return nil, m.err
	}
	return m.policies, m.err
}

// benchFacts is a namespace with n pods in n/5 deployments and a few policies.
func benchFacts(n int) *memFacts {
	f := &memFacts{
		namespaces: []corev1.Namespace{
			{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"kubernetes.io/metadata.name": "shop"}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "ingress", Labels: map[string]string{"kubernetes.io/metadata.name": "ingress"}}},
		},
		pods: map[string][]corev1.Pod{"ingress": {{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ingress", Name: "nginx-0", Labels: map[string]string{"app": "nginx"}},
		}}},
	}
	for i := range n {
		app := fmt.Sprintf("app%d", i%(n/5+1))
		if i == 0 {
			app = "web"
		}
		f.pods["shop"] = append(f.pods["shop"], corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: fmt.Sprintf("pod-%d", i), Labels: map[string]string{"app": app, "tier": "backend"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
				{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
				{Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP},
			}}}},
		})
	}
	udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
	f.policies = append(f.policies,
		networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: contract.DefaultDenyPolicy},
			Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{"Ingress", "Egress"}}},
		networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: contract.AllowDNSPolicy},
			Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{"Egress"}, Egress: []networkingv1.NetworkPolicyEgressRule{{
				To:    []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: portNum(53)}, {Protocol: &tcp, Port: portNum(53)}},
			}}}},
	)
	for i := range 3 {
		f.policies = append(f.policies, networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: fmt.Sprintf("app%d", i)},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app%d", i)}}}})
	}
	return f
}

// A typical application policy: web accepts 8080 from app1 and the ingress
// controller namespace, and talks to app2 on a named port.
const benchPolicy = `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy",
"metadata":{"name":"web","namespace":"shop","labels":{"app":"web"},"annotations":{"owner":"team-shop"}},
"spec":{"podSelector":{"matchLabels":{"app":"web"}},"policyTypes":["Ingress","Egress"],
"ingress":[{"from":[{"podSelector":{"matchLabels":{"app":"app1"}}},
  {"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"ingress"}},"podSelector":{"matchLabels":{"app":"nginx"}}}],
  "ports":[{"protocol":"TCP","port":8080}]}],
"egress":[{"to":[{"podSelector":{"matchLabels":{"app":"app2"}}}],"ports":[{"protocol":"TCP","port":"http"}]},
  {"to":[{"ipBlock":{"cidr":"10.20.0.0/16","except":["10.20.1.0/24"]}}],"ports":[{"protocol":"TCP","port":443}]}]}}`

const openPolicy = `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"open","namespace":"shop"},
"spec":{"podSelector":{},"policyTypes":["Ingress"],"ingress":[{}]}}`

func npRequest(op admissionv1.Operation, obj, old string) admission.Request {
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       "uid-1",
		Kind:      networkPolicyGVK,
		Resource:  metav1.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"},
		Namespace: "shop",
		Operation: op,
		UserInfo:  authenticationv1.UserInfo{Username: "alice"},
	}}
	if obj != "" {
		req.Object = runtime.RawExtension{Raw: []byte(obj)}
	}
	if old != "" {
		req.OldObject = runtime.RawExtension{Raw: []byte(old)}
	}
	return req
}

func newTestValidator(tb testing.TB, facts hygiene.Facts) *NetworkPolicyValidator {
	v := NewNetworkPolicyValidator(sharedEngine(tb), nil, NetworkPolicyOptions{ServiceAccount: hygSA, Log: logr.Discard()})
	v.facts = facts
	return v
}

func TestNetworkPolicyValidatorResponses(t *testing.T) {
	named := func(name string) string {
		return fmt.Sprintf(`{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":%q,"namespace":"shop"},"spec":{"podSelector":{}}}`, name)
	}
	wrongKind := npRequest(admissionv1.Create, benchPolicy, "")
	wrongKind.Kind = metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	subresource := npRequest(admissionv1.Update, benchPolicy, benchPolicy)
	subresource.SubResource = "status"
	dryRun := npRequest(admissionv1.Create, openPolicy, "")
	yes := true
	dryRun.DryRun = &yes
	saDelete := npRequest(admissionv1.Delete, "", named(contract.DefaultDenyPolicy))
	saDelete.UserInfo.Username = hygSA
	saOpen := npRequest(admissionv1.Create, openPolicy, "")
	saOpen.UserInfo.Username = hygSA
	bareDelete := npRequest(admissionv1.Delete, "", "")
	bareDelete.Name = contract.DefaultDenyPolicy

	for _, tc := range []struct {
		name     string
		req      admission.Request
		facts    hygiene.Facts
		allowed  bool
		code     int32
		contains string
		warning  string
	}{
		{name: "compliant", req: npRequest(admissionv1.Create, benchPolicy, ""), facts: benchFacts(50), allowed: true},
		{name: "deny lists ids", req: npRequest(admissionv1.Create, openPolicy, ""), code: http.StatusForbidden, contains: "SG001-open-rule"},
		{name: "dry run judged the same", req: dryRun, code: http.StatusForbidden, contains: "SG001-open-rule"},
		{name: "update judged", req: npRequest(admissionv1.Update, openPolicy, benchPolicy), code: http.StatusForbidden, contains: "SG001-open-rule"},
		{name: "delete of a bad policy allowed", req: npRequest(admissionv1.Delete, "", openPolicy), allowed: true},
		{name: "delete of default-deny refused", req: npRequest(admissionv1.Delete, "", named(contract.DefaultDenyPolicy)), code: http.StatusForbidden, contains: "SG011-protected-policy"},
		{name: "delete without oldObject uses the name", req: bareDelete, code: http.StatusForbidden, contains: "SG011-protected-policy"},
		{name: "service account may delete", req: saDelete, allowed: true},
		{name: "service account not judged", req: saOpen, allowed: true},
		{name: "finalizer removal of a policy being deleted", req: npRequest(admissionv1.Update, strings.Replace(openPolicy, `"namespace":"shop"}`, `"namespace":"shop","deletionTimestamp":"2026-11-22T21:00:00Z"}`, 1), openPolicy), allowed: true},
		{name: "warn rule warns", req: npRequest(admissionv1.Create, `{"metadata":{"name":"w","namespace":"shop"},"spec":{"podSelector":{"matchLabels":{"app":"ghost"}}}}`, ""), facts: benchFacts(5), allowed: true, warning: "SG007-unmatched-selector"},
		{name: "facts unavailable warns", req: npRequest(admissionv1.Create, benchPolicy, ""), facts: &memFacts{err: errors.New("cache not synced")}, allowed: true, warning: "cluster facts unavailable"},
		{name: "nulls tolerated", req: npRequest(admissionv1.Create, `{"metadata":{"name":"n"},"spec":{"podSelector":null,"ingress":[null,{"from":null,"ports":[null]}],"egress":null,"policyTypes":null}}`, ""), code: http.StatusForbidden, contains: "SG001-open-rule"},
		{name: "empty object", req: npRequest(admissionv1.Create, "", ""), code: http.StatusBadRequest, contains: "no object"},
		{name: "truncated JSON", req: npRequest(admissionv1.Create, benchPolicy[:100], ""), code: http.StatusBadRequest, contains: "decode NetworkPolicy"},
		{name: "wrong field type", req: npRequest(admissionv1.Create, `{"spec":{"ingress":[{"ports":[{"port":true}]}]}}`, ""), code: http.StatusBadRequest, contains: "decode NetworkPolicy"},
		{name: "object of another kind", req: npRequest(admissionv1.Create, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"}}`, ""), code: http.StatusBadRequest, contains: "expected networking.k8s.io/v1 NetworkPolicy"},
		{name: "request for another kind", req: wrongKind, code: http.StatusBadRequest, contains: "must send only"},
		{name: "subresource", req: subresource, code: http.StatusBadRequest, contains: "must send only"},
		{name: "connect ignored", req: npRequest(admissionv1.Connect, "", ""), allowed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := newTestValidator(t, tc.facts).Handle(context.Background(), tc.req)
			if resp.Allowed != tc.allowed {
				t.Fatalf("allowed = %v, want %v (result %+v)", resp.Allowed, tc.allowed, resp.Result)
			}
			if !tc.allowed {
				if resp.Result == nil || resp.Result.Code != tc.code || !strings.Contains(resp.Result.Message, tc.contains) {
					t.Fatalf("result %+v: want code %d with %q", resp.Result, tc.code, tc.contains)
				}
			}
			if tc.warning != "" && !strings.Contains(strings.Join(resp.Warnings, "\n"), tc.warning) {
				t.Errorf("warnings %q: want %q", resp.Warnings, tc.warning)
			}
			if tc.allowed && tc.warning == "" && len(resp.Warnings) > 0 {
				t.Errorf("unexpected warnings %q", resp.Warnings)
			}
		})
	}
}

// failingRules stands in for an engine that cannot evaluate.
type failingRules struct{}

func (failingRules) Evaluate(context.Context, ast.Value) ([]hygiene.Finding, error) {
	return nil, errors.New("evaluation failed")
}

func TestNetworkPolicyValidatorEvaluationError(t *testing.T) {
	v := NewNetworkPolicyValidator(failingRules{}, nil, NetworkPolicyOptions{Log: logr.Discard()})
	resp := v.Handle(context.Background(), npRequest(admissionv1.Create, benchPolicy, ""))
	if resp.Allowed || resp.Result.Code != http.StatusInternalServerError {
		t.Fatalf("response %+v: want a 500 (the API server applies failurePolicy)", resp.Result)
	}
}

// FuzzNetworkPolicyValidation feeds arbitrary objects through decode, input building
// and evaluation: the handler must answer every one (allow, 400 or 403), never panic.
func FuzzNetworkPolicyValidation(f *testing.F) {
	for _, seed := range NetworkPolicyFuzzSeeds() {
		f.Add(uint8(0), seed)
	}
	f.Add(uint8(1), []byte(openPolicy))
	f.Add(uint8(2), []byte(`{"metadata":{"name":"strictgate-default-deny"}}`))
	v := newTestValidator(f, benchFacts(10))
	ops := []admissionv1.Operation{admissionv1.Create, admissionv1.Update, admissionv1.Delete}
	f.Fuzz(func(t *testing.T, op uint8, obj []byte) {
		o := ops[int(op)%len(ops)]
		req := npRequest(o, "", "")
		if o == admissionv1.Delete {
			req.OldObject.Raw = obj
		} else {
			req.Object.Raw = obj
		}
		if o == admissionv1.Update {
			req.OldObject.Raw = []byte(benchPolicy)
		}
		resp := v.Handle(context.Background(), req)
		if resp.Allowed {
			return
		}
		if resp.Result == nil || (resp.Result.Code != http.StatusBadRequest && resp.Result.Code != http.StatusForbidden && resp.Result.Code != http.StatusUnprocessableEntity) {
			t.Fatalf("response %+v: want allowed, 400, 403 or 422", resp.Result)
		}
		if resp.Result.Code == http.StatusUnprocessableEntity && (resp.Result.Details == nil || len(resp.Result.Details.Causes) == 0 || resp.Result.Details.Causes[0].Field == "") {
			t.Fatalf("invalid without the field: %+v", resp.Result)
		}
		if resp.Result.Code == http.StatusForbidden && !strings.Contains(resp.Result.Message, "SG0") {
			t.Fatalf("denial without a rule id: %q", resp.Result.Message)
		}
	})
}

// NetworkPolicyFuzzSeeds are NetworkPolicy objects (valid, sparse, null-laden, wrong
// types) that make good seeds for fuzzing any NetworkPolicy admission path.
func NetworkPolicyFuzzSeeds() [][]byte {
	seeds := []string{
		benchPolicy,
		openPolicy,
		`{}`,
		`null`,
		`{"spec":null}`,
		`{"spec":{"ingress":[null,{"from":[null,{}]}],"egress":[{"to":[{"ipBlock":{"cidr":"0.0.0.0/0","except":null}}]}]}}`,
		`{"spec":{"egress":[{"to":[{"ipBlock":{"cidr":"not-a-cidr","except":["::/0","x"]}}],"ports":[{"port":"dns","endPort":5}]}]}}`,
		`{"spec":{"podSelector":{"matchExpressions":[{"key":"a","operator":"Bogus","values":null}]},"ingress":[{"from":[{"namespaceSelector":{}}]}]}}`,
		`{"spec":{"ingress":[{"ports":[{"port":65535,"endPort":1}, {"port":0}, {"protocol":"ICMP"}]}]}}`,
		`{"kind":"Pod","apiVersion":"v1"}`,
		`{"spec":{"ingress":[{"ports":[{"port":true}]}]}}`,
		`[1,2,3]`,
	}
	out := make([][]byte, len(seeds))
	for i, s := range seeds {
		out[i] = []byte(s)
	}
	return out
}

// BenchmarkNetworkPolicyValidation is one admission request per iteration: decode,
// cluster facts (in memory, 50 pods), input, evaluation of all built-in rules, response.
func BenchmarkNetworkPolicyValidation(b *testing.B) {
	for _, bc := range []struct {
		name  string
		obj   string
		facts hygiene.Facts
	}{
		{"compliant/no-facts", benchPolicy, nil},
		{"compliant/50-pods", benchPolicy, benchFacts(50)},
		{"compliant/500-pods", benchPolicy, benchFacts(500)},
		{"compliant/5000-pods", benchPolicy, benchFacts(5000)},
		{"denied/50-pods", openPolicy, benchFacts(50)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			v := newTestValidator(b, bc.facts)
			req := npRequest(admissionv1.Create, bc.obj, "")
			if resp := v.Handle(context.Background(), req); resp.Result == nil {
				b.Fatal("no result")
			}
			b.ReportAllocs()
			for b.Loop() {
				v.Handle(context.Background(), req)
			}
		})
	}
}

// TestBenchPolicyIsCompliant keeps the benchmark honest: its "compliant" request
// must pass every rule (with the DNS policy present, no warnings either).
func TestBenchPolicyIsCompliant(t *testing.T) {
	var obj map[string]any
	if err := json.Unmarshal([]byte(benchPolicy), &obj); err != nil {
		t.Fatal(err)
	}
	resp := newTestValidator(t, benchFacts(50)).Handle(context.Background(), npRequest(admissionv1.Create, benchPolicy, ""))
	if !resp.Allowed || len(resp.Warnings) > 0 {
		t.Fatalf("bench policy: allowed=%v warnings=%q result=%+v", resp.Allowed, resp.Warnings, resp.Result)
	}
}

func TestStripPodForHygiene(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "n", Labels: map[string]string{"app": "web"},
			Annotations: map[string]string{"big": strings.Repeat("x", 1000)}},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "sidecar", Image: "i", Ports: []corev1.ContainerPort{{Name: "proxy", ContainerPort: 15001}}}},
			Containers: []corev1.Container{
				{Name: "app", Image: "i", Env: []corev1.EnvVar{{Name: "A", Value: "b"}}, Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}},
				{Name: "noports", Image: "i"},
			},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1"},
	}
	out, err := StripPodForHygiene(pod)
	if err != nil {
		t.Fatal(err)
	}
	slim := out.(*corev1.Pod)
	if slim.Annotations != nil || slim.Status.PodIP != "" || len(slim.Spec.Containers) != 1 || slim.Spec.Containers[0].Env != nil {
		t.Errorf("not stripped: %+v", slim)
	}
	if slim.Labels["app"] != "web" || slim.Spec.Containers[0].Ports[0].Name != "http" || slim.Spec.InitContainers[0].Ports[0].Name != "proxy" || slim.Status.Phase != corev1.PodRunning {
		t.Errorf("lost what hygiene reads: %+v", slim)
	}
	if other, _ := StripPodForHygiene("tombstone"); other != "tombstone" {
		t.Error("non-pods must pass through")
	}
}

// TestValidationCostIndependentOfPodCount: a policy selecting one pod must cost the
// same in a namespace of 50 pods as in one of 5,000 (the unselected pods are not
// rendered into the input nor iterated by Rego). Allocations are counted, not time,
// so the test is free of wall-clock thresholds.
func TestValidationCostIndependentOfPodCount(t *testing.T) {
	allocs := map[int]float64{}
	for _, n := range []int{50, 5000} {
		v := newTestValidator(t, benchFacts(n))
		req := npRequest(admissionv1.Create, benchPolicy, "")
		if resp := v.Handle(context.Background(), req); !resp.Allowed {
			t.Fatalf("%d pods: bench policy refused: %+v", n, resp.Result)
		}
		allocs[n] = testing.AllocsPerRun(5, func() { v.Handle(context.Background(), req) })
	}
	if allocs[5000] > allocs[50]*1.05 {
		t.Errorf("allocations per request grow with the namespace: %.0f at 50 pods, %.0f at 5,000", allocs[50], allocs[5000])
	}
}
