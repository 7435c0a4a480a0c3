package agent_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/strictgate/strictgate/agent"
	"github.com/strictgate/strictgate/agent/datapath"
	"github.com/strictgate/strictgate/agent/gate"
	"github.com/strictgate/strictgate/agent/netdev"
	"github.com/strictgate/strictgate/agent/rules"
)

const nodeName = "node-a"

// fakeDatapath keeps pod entries in memory, as the kernel would.
type fakeDatapath struct {
	mu      sync.Mutex
	entries map[int]*fakeEntry
	fail    map[int]error // Program errors by ifindex
	ops     []string
	hosts   []netip.Addr
}

type fakeEntry struct {
	state  rules.State // before Program
	rules  *rules.PodRules
	closed bool
	hooked bool
}

func newFakeDatapath() *fakeDatapath {
	return &fakeDatapath{entries: map[int]*fakeEntry{}, fail: map[int]error{}}
}

func (f *fakeDatapath) op(format string, args ...any) {
	f.ops = append(f.ops, fmt.Sprintf(format, args...))
}

func (f *fakeDatapath) Register(ifindex int, initial rules.State) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.entries[ifindex]; !ok {
		f.entries[ifindex] = &fakeEntry{state: initial}
		f.op("register %d %s", ifindex, initial)
	}
	return nil
}

func (f *fakeDatapath) Attach(ifindex int, initial rules.State) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.entries[ifindex]
	if !ok {
		e = &fakeEntry{state: initial}
		f.entries[ifindex] = e
	}
	if !e.hooked {
		e.hooked = true
		f.op("attach %d", ifindex)
	}
	return nil
}

func (f *fakeDatapath) Program(ifindex int, r *rules.PodRules) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail[ifindex]; err != nil {
		return err
	}
	e, ok := f.entries[ifindex]
	if !ok {
		return errors.New("no such pod")
	}
	cp := *r
	e.rules, e.closed = &cp, false
	f.op("program %d", ifindex)
	return nil
}

func (f *fakeDatapath) Programmed(ifindex int, r *rules.PodRules, _ bool) (bool, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.entries[ifindex]
	return ok && !e.closed && e.rules != nil && reflect.DeepEqual(*e.rules, *r), ok && e.hooked, nil
}

func (f *fakeDatapath) Close(ifindex int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e, ok := f.entries[ifindex]; ok {
		e.closed = true
		f.op("close %d", ifindex)
	}
	return nil
}

func (f *fakeDatapath) Detach(ifindex int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.entries[ifindex]; ok {
		delete(f.entries, ifindex)
		f.op("detach %d", ifindex)
	}
	return nil
}

func (f *fakeDatapath) Attached() ([]int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int
	for k := range f.entries {
		out = append(out, k)
	}
	return out, nil
}

func (f *fakeDatapath) SetHostAddrs(a []netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hosts = a
	return nil
}

func (f *fakeDatapath) Sweep() error { return nil }

func (f *fakeDatapath) entry(ifindex int) (fakeEntry, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.entries[ifindex]
	if !ok {
		return fakeEntry{}, false
	}
	return *e, true
}

func (f *fakeDatapath) opsCopy() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ops...)
}

// fakeInterfaces maps pod IPs to interfaces.
type fakeInterfaces struct {
	mu   sync.Mutex
	byIP map[netip.Addr]netdev.Interface
}

func (f *fakeInterfaces) set(ip string, ifindex int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byIP == nil {
		f.byIP = map[netip.Addr]netdev.Interface{}
	}
	f.byIP[netip.MustParseAddr(ip)] = netdev.Interface{Index: ifindex, Name: fmt.Sprintf("veth%d", ifindex), Kind: "veth"}
}

func (f *fakeInterfaces) HostInterface(ip netip.Addr) (netdev.Interface, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i, ok := f.byIP[ip]; ok {
		return i, nil
	}
	return netdev.Interface{}, netdev.ErrNoRoute
}

func (f *fakeInterfaces) ByIndex(ifindex int) (netdev.Interface, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, i := range f.byIP {
		if i.Index == ifindex {
			return i, nil
		}
	}
	return netdev.Interface{}, errors.New("no such link")
}

// runAgent starts an agent and waits until it is ready; it stops when the test ends
// (or when the returned stop is called).
func runAgent(t *testing.T, cs kubernetes.Interface, cfg agent.Config, dp agent.Datapath, ifs agent.Interfaces) (stop func()) {
	t.Helper()
	return runAgentDeps(t, cfg, agent.Deps{Client: cs, Datapath: dp, Interfaces: ifs})
}

// runAgentDeps is runAgent with the agent's connections given (Log and HostAddrs are
// filled in).
func runAgentDeps(t *testing.T, cfg agent.Config, deps agent.Deps) (stop func()) {
	t.Helper()
	deps.Log = testr.New(t)
	deps.HostAddrs = func() ([]netip.Addr, error) { return nil, nil }
	a, err := agent.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case <-a.Ready():
	case err := <-done:
		t.Fatalf("agent stopped before ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("agent not ready after 30s")
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agent: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func testConfig() agent.Config {
	c := agent.DefaultConfig()
	c.NodeName = nodeName
	c.MetricsAddr = ""
	c.ResyncPeriod = time.Hour
	c.Namespace = "strictgate"
	// These tests exercise the reconciler in "default", where no default-deny controller
	// runs: exclude it. TestAgentWaitsForDefaultDeny covers enforced namespaces.
	c.ExcludedNamespaces = []string{"default"}
	return c
}

// must panics on err: the test fails with the stack of the failed API call.
func must[T any](obj T, err error) T {
	if err != nil {
		panic(err)
	}
	return obj
}

func createNode(t *testing.T, cs kubernetes.Interface, addrs ...string) {
	t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}
	n = must(cs.CoreV1().Nodes().Create(context.Background(), n, metav1.CreateOptions{}))
	for _, a := range addrs {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a})
	}
	must(cs.CoreV1().Nodes().UpdateStatus(context.Background(), n, metav1.UpdateOptions{}))
}

// startPod creates a gated pod bound to node with labels and, if ip is set, gives it that
// IP and phase Running (what the kubelet would report).
func startPod(t *testing.T, cs kubernetes.Interface, ns, name, node, ip string, labels map[string]string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:       node,
			ReadinessGates: []corev1.PodReadinessGate{{ConditionType: gate.ConditionType}},
			Containers: []corev1.Container{{Name: "c", Image: "probe",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}},
		},
	}
	p = must(cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}))
	if ip == "" {
		return p
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = ip
	p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	return must(cs.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}))
}

// ingressPolicy selects pods labelled app=target and allows TCP port from pods
// labelled app=from.
func ingressPolicy(ns, name, target, from string, port int) *networkingv1.NetworkPolicy {
	tcp := corev1.ProtocolTCP
	p := intstr.FromInt(port)
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": target}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": from}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p}},
			}},
		},
	}
}

// egressPolicy selects pods labelled app=source and allows them TCP port to pods
// labelled app=to: ingressPolicy's twin for the other direction.
func egressPolicy(ns, name, source, to string, port int) *networkingv1.NetworkPolicy {
	tcp := corev1.ProtocolTCP
	p := intstr.FromInt(port)
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": source}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To:    []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": to}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p}},
			}},
		},
	}
}

// waitCondition polls the pod until its condition satisfies ok, then calls at (while the
// condition is fresh) and returns it.
func waitCondition(t *testing.T, cs kubernetes.Interface, ns, name string, ok func(c corev1.PodCondition, found bool) bool) corev1.PodCondition {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		p, err := cs.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c, found := gate.Default.Current(p)
		if ok(c, found) {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s/%s: condition never as expected; last: %+v (found %v)", ns, name, c, found)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func isTrue(c corev1.PodCondition, found bool) bool {
	return found && c.Status == corev1.ConditionTrue
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// openPinnedDatapath opens the datapath pinned under pinRoot (as the agent under test
// will) and removes whatever is pinned there when the test ends: the agent re-opens its
// own handle, so the cleanup opens the pins again rather than trusting dp.
func openPinnedDatapath(t *testing.T, pinRoot string) *datapath.Datapath {
	t.Helper()
	dp, err := datapath.Open(datapath.Options{PinRoot: pinRoot})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if d, err := datapath.Open(datapath.Options{PinRoot: pinRoot}); err == nil {
			d.Remove()
		}
	})
	return dp
}
