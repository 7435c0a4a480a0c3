package verdict

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/strictgate/strictgate/test/controlplane"
)

// liveCluster creates, on a real API server, a shop namespace with a frontend, a
// backend behind Service backend-svc (port 80 → named port http 9090), two workers
// (one label, for ambiguity) and a policy admitting only the frontend to the backend.
func liveCluster(t *testing.T) kubernetes.Interface {
	t.Helper()
	cs := kubernetes.NewForConfigOrDie(controlplane.Start(t, nil))
	ctx := context.Background()
	for _, ns := range []string{"shop", "other"} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod := func(ns, name, ip string, labels map[string]string) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
			Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "c", Image: "probe",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 9090}}}}}}
		p, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Status.Phase, p.Status.PodIP, p.Status.PodIPs = corev1.PodRunning, ip, []corev1.PodIP{{IP: ip}}
		if _, err := cs.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod("shop", "frontend", "10.244.0.10", map[string]string{"app": "frontend"})
	pod("shop", "backend", "10.244.0.11", map[string]string{"app": "backend"})
	pod("shop", "worker-1", "10.244.0.12", map[string]string{"app": "worker"})
	pod("shop", "worker-2", "10.244.0.13", map[string]string{"app": "worker"})
	pod("other", "client", "10.244.1.10", map[string]string{"app": "frontend"})
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "backend-from-frontend"},
		Spec: networkingv1.NetworkPolicySpec{ // policyTypes and the port's protocol left to the API server
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "backend"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "frontend"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: ptr(intstr.FromString("http"))}},
			}},
		}}
	if _, err := cs.NetworkingV1().NetworkPolicies("shop").Create(ctx, np, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "backend-svc"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "backend"},
			Ports: []corev1.ServicePort{{Name: "web", Port: 80, TargetPort: intstr.FromString("http")}}}}
	svc, err := cs.CoreV1().Services("shop").Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// envtest runs no endpointslice controller: write what it would.
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: "backend-svc-1", Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.0.11"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("web"), Port: ptr(int32(9090))}},
	}
	if _, err := cs.DiscoveryV1().EndpointSlices("shop").Create(ctx, es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return cs
}

func ptr[T any](v T) *T { return &v }

// dumpManifests writes every object FromCluster reads to one YAML-compatible JSON
// file per kind, as `kubectl get -o json` would.
func dumpManifests(t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	m, err := FromCluster(context.Background(), cs)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, items []any) {
		b, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	typed := func(apiVersion, kind string, obj any) any {
		b, _ := json.Marshal(obj)
		var v map[string]any
		_ = json.Unmarshal(b, &v)
		v["apiVersion"], v["kind"] = apiVersion, kind
		return v
	}
	var items []any
	for _, o := range m.State.Namespaces {
		items = append(items, typed("v1", "Namespace", o))
	}
	write("namespaces", items)
	items = nil
	for _, o := range m.State.Pods {
		items = append(items, typed("v1", "Pod", o))
	}
	write("pods", items)
	items = nil
	for _, o := range m.State.Policies {
		items = append(items, typed("networking.k8s.io/v1", "NetworkPolicy", o))
	}
	write("policies", items)
	items = nil
	for _, o := range m.State.Services {
		items = append(items, typed("v1", "Service", o))
	}
	write("services", items)
	items = nil
	for _, o := range m.State.EndpointSlices {
		items = append(items, typed("discovery.k8s.io/v1", "EndpointSlice", o))
	}
	write("endpointslices", items)
	return dir
}

// TestLiveCluster: the live mode answers exactly as the offline mode does on the same
// objects dumped to manifests, and the answers are the ones the policy implies; Services
// by name, selectors and the errors for bad ends.
func TestLiveCluster(t *testing.T) {
	cs := liveCluster(t)
	ctx := context.Background()
	dir := dumpManifests(t, cs)
	flows := filepath.Join(t.TempDir(), "flows.jsonl")
	if err := os.WriteFile(flows, []byte(strings.Join([]string{
		`{"src":"shop/frontend","dst":"shop/backend","port":9090}`,
		`{"src":"shop/frontend","dst":"shop/backend","port":8080}`,
		`{"src":"shop/worker-1","dst":"shop/backend","port":9090}`,
		`{"src":"other/client","dst":"shop/backend","port":9090}`,
		`{"src":"shop/frontend","dst":"shop/backend-svc:80"}`,
		`{"src":"shop/frontend","dst":"shop/backend-svc:web","port":80}`,
		`{"src":"shop/worker-2","dst":"shop/backend-svc:80"}`,
		`{"src":"10.244.0.10","dst":"10.244.0.11","port":9090,"protocol":"TCP"}`,
		`{"src":"shop/backend","dst":"shop/frontend","port":443,"protocol":"UDP"}`,
	}, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantVerdicts := []string{"allow", "deny", "deny", "deny", "allow", "allow", "deny", "allow", "allow"}

	var live, offline, liveExplain, offlineExplain bytes.Buffer
	if err := Run(ctx, Options{Client: cs, FlowsName: flows}, &live); err != nil {
		t.Fatalf("live: %v", err)
	}
	if err := Run(ctx, Options{Manifests: []string{dir}, FlowsName: flows}, &offline); err != nil {
		t.Fatalf("offline: %v", err)
	}
	if live.String() != offline.String() {
		t.Fatalf("live and offline disagree\nlive:\n%s\noffline:\n%s", live.String(), offline.String())
	}
	lines := strings.Split(strings.TrimSuffix(live.String(), "\n"), "\n")
	if len(lines) != len(wantVerdicts) {
		t.Fatalf("%d lines for %d flows:\n%s", len(lines), len(wantVerdicts), live.String())
	}
	for i, l := range lines {
		var r Result
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		if r.Verdict != wantVerdicts[i] {
			t.Errorf("flow %d: %s, want %s: %s", i+1, r.Verdict, wantVerdicts[i], l)
		}
		if strings.Contains(r.Dst, "backend-svc") && (r.Service == nil || r.Service.Name != "shop/backend-svc" || r.Port != 80 || len(r.Service.Backends) != 1 || r.Service.Backends[0].Port != 9090) {
			t.Errorf("flow %d: not judged through the service's backend: %s", i+1, l)
		}
	}
	if err := Explain(ctx, Options{Client: cs, FlowsName: flows}, &liveExplain); err != nil {
		t.Fatal(err)
	}
	if err := Explain(ctx, Options{Manifests: []string{dir}, FlowsName: flows}, &offlineExplain); err != nil {
		t.Fatal(err)
	}
	if liveExplain.String() != offlineExplain.String() {
		t.Fatalf("explanations differ\nlive:\n%s\noffline:\n%s", liveExplain.String(), offlineExplain.String())
	}
	if !strings.Contains(liveExplain.String(), "allowed by shop/backend-from-frontend rule 0") {
		t.Errorf("explanation lacks the allowing rule:\n%s", liveExplain.String())
	}

	// One flow by selector equals the flow by name.
	var bySel, byName bytes.Buffer
	if err := Run(ctx, Options{Client: cs, Flow: &Flow{Dst: "shop/backend-svc:80"}, SrcSelector: "app=frontend", Namespace: "shop"}, &bySel); err != nil {
		t.Fatal(err)
	}
	if err := Run(ctx, Options{Client: cs, Flow: &Flow{Src: "shop/frontend", Dst: "shop/backend-svc:80"}}, &byName); err != nil {
		t.Fatal(err)
	}
	if bySel.String() != byName.String() || !strings.Contains(bySel.String(), `"verdict":"allow"`) {
		t.Errorf("selector answer %q, by name %q", bySel.String(), byName.String())
	}
	var dstSel bytes.Buffer
	if err := Run(ctx, Options{Client: cs, Flow: &Flow{Src: "shop/worker-1", Port: 9090}, DstSelector: "app in (backend)", Namespace: "shop"}, &dstSel); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dstSel.String(), `"dst":"shop/backend"`) || !strings.Contains(dstSel.String(), `"verdict":"deny"`) {
		t.Errorf("destination selector: %s", dstSel.String())
	}

	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"unknown pod", Options{Flow: &Flow{Src: "shop/nope", Dst: "shop/backend", Port: 80}}, "src: pod shop/nope is not in the cluster"},
		{"unknown service", Options{Flow: &Flow{Src: "shop/frontend", Dst: "shop/nosvc:80"}}, "dst: service shop/nosvc not found"},
		{"unknown service port", Options{Flow: &Flow{Src: "shop/frontend", Dst: "shop/backend-svc:81"}}, "dst: service shop/backend-svc has no TCP port 81 (it has: 80/TCP (web))"},
		{"service port on another protocol", Options{Flow: &Flow{Src: "shop/frontend", Dst: "shop/backend-svc:80", Protocol: "UDP"}}, "has no UDP port 80"},
		{"service port and --port disagree", Options{Flow: &Flow{Src: "shop/frontend", Dst: "shop/backend-svc:80", Port: 9090}}, "is port 80, but the flow's port is 9090"},
		{"ambiguous selector", Options{Flow: &Flow{Dst: "shop/backend", Port: 9090}, SrcSelector: "app=worker", Namespace: "shop"}, `src: selector "app=worker" is ambiguous: 2 pods in namespace shop match (worker-1, worker-2)`},
		{"selector matching nothing", Options{Flow: &Flow{Dst: "shop/backend", Port: 9090}, SrcSelector: "app=backend", Namespace: "other"}, `src: no running pod in namespace other matches "app=backend"`},
		{"bad selector", Options{Flow: &Flow{Dst: "shop/backend", Port: 9090}, SrcSelector: "app==,", Namespace: "shop"}, `label selector "app==,"`},
		{"name and selector", Options{Flow: &Flow{Src: "shop/frontend", Dst: "shop/backend", Port: 9090}, SrcSelector: "app=frontend", Namespace: "shop"}, "src: give the pod by name or by selector, not both"},
		{"manifests and cluster", Options{Manifests: []string{dir}, Flow: &Flow{Src: "shop/frontend", Dst: "shop/backend", Port: 9090}}, "mutually exclusive"},
		{"service as source", Options{Flow: &Flow{Src: "shop/backend-svc:80", Dst: "shop/backend", Port: 9090}}, "src: \"shop/backend-svc:80\" names a service"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Client = cs
			var out bytes.Buffer
			err := Run(ctx, tc.o, &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if out.Len() != 0 {
				t.Errorf("output on error: %q", out.String())
			}
		})
	}
}
