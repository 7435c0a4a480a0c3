package inspect_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/strictgate/strictgate/agent"
	"github.com/strictgate/strictgate/agent/datapath"
	"github.com/strictgate/strictgate/agent/gate"
	"github.com/strictgate/strictgate/agent/inspect"
	"github.com/strictgate/strictgate/agent/netdev"
	"github.com/strictgate/strictgate/agent/netdev/netdevtest"
	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/internal/contract"
	"github.com/strictgate/strictgate/test/controlplane"
	"github.com/strictgate/strictgate/verdict"
)

const (
	node   = "node-a"
	nodeIP = "10.202.0.1"
)

// apiServiceAtNode creates Service default/api (TCP 443) whose one backend is the
// node's address at 6443, and returns its ClusterIP.
func apiServiceAtNode(t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	ctx := context.Background()
	svc := must(cs.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "default"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "https", Protocol: corev1.ProtocolTCP, Port: 443, TargetPort: intstr.FromInt(6443)}}},
	}, metav1.CreateOptions{}))
	name, tcp, port, ready := "https", corev1.ProtocolTCP, int32(6443), true
	must(cs.DiscoveryV1().EndpointSlices("default").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "api-1", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "api"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{nodeIP}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Protocol: &tcp, Port: &port}},
	}, metav1.CreateOptions{}))
	return svc.Spec.ClusterIP
}

// clientEgressPolicy isolates client's egress: only web on 8080.
func clientEgressPolicy() *networkingv1.NetworkPolicy {
	tcp := corev1.ProtocolTCP
	p := intstr.FromInt(8080)
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "client-egress", Namespace: "default"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To:    []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p}},
			}},
		},
	}
}

func must[T any](obj T, err error) T {
	if err != nil {
		panic(err)
	}
	return obj
}

func startPod(t *testing.T, cs kubernetes.Interface, name, ip string, labels map[string]string) {
	t.Helper()
	ctx := context.Background()
	p := must(cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: labels},
		Spec: corev1.PodSpec{NodeName: node, ReadinessGates: []corev1.PodReadinessGate{{ConditionType: gate.ConditionType}},
			Containers: []corev1.Container{{Name: "c", Image: "probe"}}},
	}, metav1.CreateOptions{}))
	p.Status.Phase, p.Status.PodIP, p.Status.PodIPs = corev1.PodRunning, ip, []corev1.PodIP{{IP: ip}}
	must(cs.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{}))
}

func webPolicy(port int) *networkingv1.NetworkPolicy {
	tcp := corev1.ProtocolTCP
	p := intstr.FromInt(port)
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "allow-web", Namespace: "default"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p}},
			}},
		},
	}
}

// dumpMaps reads every pinned map whose entries can be read as bytes (all but the
// ring buffer and the per-CPU counters) into sorted "map key=value" lines.
func dumpMaps(t *testing.T, root string) []string {
	t.Helper()
	dir := contract.PinsAt(root).Maps()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		m, err := ebpf.LoadPinnedMap(contract.PinsAt(root).Map(e.Name()), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		switch m.Type() {
		case ebpf.RingBuf, ebpf.PerCPUArray, ebpf.PerCPUHash, ebpf.LRUCPUHash:
			m.Close()
			continue
		}
		var k, v []byte
		it := m.Iterate()
		for it.Next(&k, &v) {
			out = append(out, e.Name()+" "+hex.EncodeToString(k)+"="+hex.EncodeToString(v))
		}
		if err := it.Err(); err != nil {
			t.Fatalf("dump %s: %v", e.Name(), err)
		}
		m.Close()
	}
	slices.Sort(out)
	return out
}

// TestPrivilegedInspect: the real agent programs two pods on a real pinned datapath;
// with the agent stopped inspect says the kernel holds what the compiler computes; a
// policy change the agent never programs shows as drift (added and removed entries);
// inspecting changes no map.
func TestPrivilegedInspect(t *testing.T) {
	if !netdevtest.Isolate(t) {
		return
	}
	const root = "/sys/fs/bpf/strictgate" // a private bpffs (Isolate)
	cs := kubernetes.NewForConfigOrDie(controlplane.Start(t, nil))
	ctx := context.Background()
	n := must(cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{}))
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: nodeIP}}
	must(cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}))
	// A Service whose only backend is the node itself (the kubernetes Service on a
	// control-plane node): an egress-isolated client gets its ClusterIP entry only from
	// a compiler that knows the node's addresses, as the agent's does.
	apiSvc := apiServiceAtNode(t, cs)
	web := netdevtest.AddPod(t, "web", must(netipAddr("10.202.0.2")))
	client := netdevtest.AddPod(t, "client", must(netipAddr("10.202.0.3")))

	dp, err := datapath.Open(datapath.Options{PinRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if d, err := datapath.Open(datapath.Options{PinRoot: root}); err == nil {
			d.Remove()
		}
	})
	for _, p := range []*netdevtest.Pod{web, client} { // the CNI plugin's ADD, strict mode
		if _, err := dp.Attach(p.HostIndex, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
			t.Fatal(err)
		}
	}
	must(cs.NetworkingV1().NetworkPolicies("default").Create(ctx, webPolicy(8080), metav1.CreateOptions{}))
	must(cs.NetworkingV1().NetworkPolicies("default").Create(ctx, clientEgressPolicy(), metav1.CreateOptions{}))
	startPod(t, cs, "web", web.IP.String(), map[string]string{"app": "web"})
	startPod(t, cs, "client", client.IP.String(), map[string]string{"app": "client"})

	cfg := agent.DefaultConfig()
	cfg.NodeName, cfg.MetricsAddr, cfg.ResyncPeriod, cfg.Namespace = node, "", time.Hour, "strictgate"
	cfg.ExcludedNamespaces = []string{"default"} // no default-deny controller runs here
	if err := agent.ConfigureDatapath(dp, cfg); err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(cfg, agent.Deps{Client: cs, Datapath: agent.NewDatapath(dp, false), Interfaces: netdev.New(nil)})
	if err != nil {
		t.Fatal(err)
	}
	actx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()
	for _, name := range []string{"web", "client"} {
		waitTrue(t, cs, name)
	}
	stop() // from here on nobody writes the maps
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	dp.Close()

	ro, err := datapath.OpenReadOnly(root)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	before := dumpMaps(t, root)
	if len(before) == 0 {
		t.Fatal("empty map dump")
	}
	inspector := func() *inspect.Inspector {
		m, err := verdict.FromCluster(ctx, cs)
		if err != nil {
			t.Fatal(err)
		}
		in, err := inspect.New(node, m.State, ro, netdev.New(nil))
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	webKey := types.NamespacedName{Namespace: "default", Name: "web"}

	r, err := inspector().Pod(webKey)
	if err != nil {
		t.Fatal(err)
	}
	if !r.InSync || r.Problem != "" || r.Attach != "tcx" || r.Ifindex != web.HostIndex || r.Interface != web.Host || r.Mode != "enforce" ||
		r.Condition == nil || r.Condition.Status != "True" || r.Generation == 0 ||
		r.Ingress.Kernel != (inspect.Rules{State: "isolated", Prefixes: 1, PortRules: 1}) || r.Ingress.Kernel != r.Ingress.Compiled ||
		r.Egress.Kernel.State != "unisolated" || len(r.Ingress.Added)+len(r.Ingress.Removed) != 0 {
		t.Fatalf("programmed pod: %+v", r)
	}

	// The policy moves to port 9090; the agent is not there to program it.
	pol := must(cs.NetworkingV1().NetworkPolicies("default").Get(ctx, "allow-web", metav1.GetOptions{}))
	pol.Spec = webPolicy(9090).Spec
	must(cs.NetworkingV1().NetworkPolicies("default").Update(ctx, pol, metav1.UpdateOptions{}))
	in := inspector()
	r, err = in.Pod(webKey)
	if err != nil {
		t.Fatal(err)
	}
	wantAdded := []string{"10.202.0.3/32 TCP/9090 (default/allow-web ingress[0])"}
	wantRemoved := []string{"10.202.0.3/32 TCP/8080 (default/allow-web ingress[0])"}
	if r.InSync || !slices.Equal(r.Ingress.Added, wantAdded) || !slices.Equal(r.Ingress.Removed, wantRemoved) || len(r.Egress.Added)+len(r.Egress.Removed) != 0 {
		t.Fatalf("drift not shown: in sync %v, added %q, removed %q (egress %q %q)", r.InSync, r.Ingress.Added, r.Ingress.Removed, r.Egress.Added, r.Egress.Removed)
	}
	var text bytes.Buffer
	if err := inspect.WriteText(&text, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"interface   " + web.Host, "DRIFT", "ingress + " + wantAdded[0], "ingress - " + wantRemoved[0]} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}

	all, err := in.All()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].Pod != "default/client" || !all[0].InSync || all[1].Pod != "default/web" || all[1].InSync {
		t.Fatalf("--all: %s", mustJSON(all))
	}
	// client's egress: web:8080 and the node-backed ClusterIP, in the kernel and computed.
	if eg := all[0].Egress; eg.Kernel.State != "isolated" || eg.Kernel != eg.Compiled {
		t.Fatalf("client egress with a node-backed Service %s: %+v", apiSvc, eg)
	}
	kernel, err := ro.ProgrammedRules(client.HostIndex)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(kernel.Egress.Entries, func(e rules.Entry) bool {
		return e.Prefix == netip.PrefixFrom(netip.MustParseAddr(apiSvc), 32) && len(e.Ports) == 1
	}) {
		t.Fatalf("the agent did not program client's entry for the node-backed ClusterIP %s: %+v", apiSvc, kernel.Egress.Entries)
	}
	var table bytes.Buffer
	if err := inspect.WriteTable(&table, all); err != nil {
		t.Fatal(err)
	}
	t.Logf("inspect default/web:\n%s\ninspect --all:\n%s", text.String(), table.String())
	lines := strings.Split(strings.TrimSpace(table.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "in sync") || !strings.Contains(lines[2], "DRIFT +1 -1") {
		t.Fatalf("table:\n%s", table.String())
	}
	var back []inspect.Report
	if err := json.Unmarshal(mustJSON(all), &back); err != nil || back[1].Ingress.Added[0] != wantAdded[0] {
		t.Fatalf("JSON round trip: %v %+v", err, back)
	}

	// A pod of another node is refused with where to go instead.
	startOther := must(cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere", Namespace: "default"},
		Spec: corev1.PodSpec{NodeName: "node-b", Containers: []corev1.Container{{Name: "c", Image: "probe"}}}}, metav1.CreateOptions{}))
	_ = startOther
	if _, err := inspector().Pod(types.NamespacedName{Namespace: "default", Name: "elsewhere"}); !errors.Is(err, inspect.ErrNotLocal) || !strings.Contains(err.Error(), "runs on node-b") {
		t.Fatalf("pod of another node: %v", err)
	}
	if _, err := inspector().Pod(types.NamespacedName{Namespace: "default", Name: "nope"}); err == nil || !strings.Contains(err.Error(), "pod default/nope not found") {
		t.Fatalf("unknown pod: %v", err)
	}

	if after := dumpMaps(t, root); !slices.Equal(before, after) {
		t.Fatalf("inspect changed the maps:\nbefore %q\nafter  %q", before, after)
	}
	if _, err := ro.SetState(web.HostIndex, rules.Ingress, rules.StateUnisolated); err == nil {
		t.Fatal("a write through inspect's handles succeeded")
	}
}

func waitTrue(t *testing.T, cs kubernetes.Interface, name string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		p := must(cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{}))
		if c, ok := gate.Default.Current(p); ok && c.Status == corev1.ConditionTrue {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s never programmed: %+v", name, p.Status.Conditions)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func netipAddr(s string) (netip.Addr, error) { return netip.ParseAddr(s) }
