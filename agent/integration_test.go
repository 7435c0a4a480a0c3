package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/strictgate/strictgate/agent"
	"github.com/strictgate/strictgate/agent/datapath"
	"github.com/strictgate/strictgate/agent/events"
	"github.com/strictgate/strictgate/agent/gate"
	"github.com/strictgate/strictgate/agent/netdev"
	"github.com/strictgate/strictgate/agent/netdev/netdevtest"
	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/internal/contract"
	"github.com/strictgate/strictgate/test/controlplane"
)

// orderLog records, per ifindex, when the kernel was last verified to hold rules, and
// checks each True condition against it.
type orderLog struct {
	mu         sync.Mutex
	verifiedAt map[int]time.Time
	ifOf       map[string]int // pod name -> ifindex
	violations []string
	trues      atomic.Int32
}

type recordingDatapath struct {
	agent.Datapath
	log *orderLog
}

func (r recordingDatapath) Programmed(ifindex int, pr *rules.PodRules, deep bool) (bool, bool, error) {
	ok, attached, err := r.Datapath.Programmed(ifindex, pr, deep)
	if ok && attached && err == nil {
		r.log.mu.Lock()
		r.log.verifiedAt[ifindex] = time.Now()
		r.log.mu.Unlock()
	}
	return ok, attached, err
}

type recordingGate struct {
	agent.Gate
	log *orderLog
}

func (r recordingGate) Set(ctx context.Context, pod *corev1.Pod, want gate.Condition) (bool, error) {
	if want.Status == corev1.ConditionTrue {
		r.log.mu.Lock()
		ifindex, known := r.log.ifOf[pod.Name]
		at, verified := r.log.verifiedAt[ifindex]
		if !known || !verified {
			r.log.violations = append(r.log.violations, fmt.Sprintf("%s: True requested before its rules were verified in the kernel", pod.Name))
		}
		r.log.mu.Unlock()
		changed, err := r.Gate.Set(ctx, pod, want)
		if changed && !time.Now().After(at) {
			r.log.violations = append(r.log.violations, pod.Name+": True patched before the verification finished")
		}
		if changed {
			r.log.trues.Add(1)
		}
		return changed, err
	}
	return r.Gate.Set(ctx, pod, want)
}

// syncBuffer is a bytes.Buffer safe for the event logger's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startRealAgent(t *testing.T, cs kubernetes.Interface, dp *datapath.Datapath, ol *orderLog) (*agent.Agent, func()) {
	t.Helper()
	cfg := testConfig()
	cfg.ResyncPeriod = time.Second
	if err := agent.ConfigureDatapath(dp, withEvents(cfg)); err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(cfg, agent.Deps{
		Client:     cs,
		Datapath:   recordingDatapath{agent.NewDatapath(dp, false), ol},
		Interfaces: netdev.New(nil),
		Gate:       recordingGate{gate.New(cs.CoreV1()), ol},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case <-a.Ready():
	case err := <-done:
		t.Fatalf("agent stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("agent not ready")
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agent: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return a, stop
}

func withEvents(c agent.Config) agent.Config {
	c.EventMode = contract.EventLogAll
	c.EventRate = 0
	return c
}

func policy(name, target string, from map[string]string, ports ...networkingv1.NetworkPolicyPort) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": target}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: from}}},
				Ports: ports,
			}},
		},
	}
}

func port(proto corev1.Protocol, p int) networkingv1.NetworkPolicyPort {
	v := intstr.FromInt(p)
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &v}
}

// TestPrivilegedAgentIntegration is issue 5's integration test: real kube-apiserver,
// real eBPF datapath, netns pods with real sockets.
func TestPrivilegedAgentIntegration(t *testing.T) {
	if !netdevtest.Isolate(t) {
		return
	}
	const pinRoot = "/sys/fs/bpf/strictgate" // a private bpffs (Isolate)
	rc := controlplane.Start(t, nil)
	cs := kubernetes.NewForConfigOrDie(rc)
	ctx := context.Background()
	createNode(t, cs)

	web := netdevtest.AddPod(t, "web", netip.MustParseAddr("10.201.0.2"))
	client := netdevtest.AddPod(t, "client", netip.MustParseAddr("10.201.0.3"))
	other := netdevtest.AddPod(t, "other", netip.MustParseAddr("10.201.0.4"))
	big := netdevtest.AddPod(t, "big", netip.MustParseAddr("10.201.0.5"))
	client.ListenTCP(t, 8080)
	for _, p := range []*netdevtest.Pod{web, big} {
		p.ListenTCP(t, 8080)
		p.ListenTCP(t, 9090)
		p.ListenUDP(t, 5353)
	}
	tcp := func(from, to *netdevtest.Pod, port int) bool {
		return from.ProbeTCP(to.IP, port, 400*time.Millisecond) == nil
	}
	udp := func(from, to *netdevtest.Pod, port int) bool {
		return from.ProbeUDP(to.IP, port, 400*time.Millisecond) == nil
	}
	if err := client.ProbeTCP(web.IP, 8080, 3*time.Second); err != nil {
		t.Fatalf("plumbing: client cannot reach web before strictgate: %v", err)
	}

	dp := openPinnedDatapath(t, pinRoot)
	// What the strict-mode CNI plugin does at ADD (tested on its own in cni/).
	for _, p := range []*netdevtest.Pod{web, client, other, big} {
		if _, err := dp.Attach(p.HostIndex, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
			t.Fatal(err)
		}
	}
	if tcp(client, web, 8080) || udp(client, web, 5353) {
		t.Fatal("strict mode: an unprogrammed pod carried traffic")
	}

	pol := must(cs.NetworkingV1().NetworkPolicies("default").Create(ctx,
		policy("allow-web", "web", map[string]string{"app": "client"}, port(corev1.ProtocolTCP, 8080), port(corev1.ProtocolUDP, 5353)), metav1.CreateOptions{}))
	startPod(t, cs, "default", "web", nodeName, web.IP.String(), map[string]string{"app": "web"})
	startPod(t, cs, "default", "client", nodeName, client.IP.String(), map[string]string{"app": "client"})
	startPod(t, cs, "default", "other", nodeName, other.IP.String(), map[string]string{"app": "other"})

	ol := &orderLog{verifiedAt: map[int]time.Time{}, ifOf: map[string]int{
		"web": web.HostIndex, "client": client.HostIndex, "other": other.HostIndex, "big": big.HostIndex,
	}}
	a, stop := startRealAgent(t, cs, dp, ol)
	parent := t // agents started in subtests must outlive them

	evbuf := &syncBuffer{}
	rd, err := dp.NewEventReader()
	if err != nil {
		t.Fatal(err)
	}
	evctx, evstop := context.WithCancel(ctx)
	evdone := make(chan error, 1)
	go func() { evdone <- events.Run(evctx, rd, events.NewLogger(evbuf, nodeName, contract.EventLogAll, a)) }()
	reg := prometheus.NewRegistry()
	reg.MustRegister(events.NewCollector(dp, a.NamespaceOfIfindex))

	t.Run("condition True only after the kernel holds the rules", func(t *testing.T) {
		for _, n := range []string{"web", "client", "other"} {
			waitCondition(t, cs, "default", n, isTrue)
		}
		kp, err := dp.Pod(web.HostIndex)
		if err != nil || kp.Ingress != rules.StateIsolated || kp.Egress != rules.StateUnisolated || kp.Digest == 0 {
			t.Fatalf("kernel entry of web when its condition is True: %+v, %v", kp, err)
		}
		ol.mu.Lock()
		defer ol.mu.Unlock()
		if len(ol.violations) > 0 || ol.trues.Load() < 3 {
			t.Fatalf("order violations %v; %d True patches", ol.violations, ol.trues.Load())
		}
	})

	t.Run("traffic follows the policy", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			ok   bool
			want bool
		}{
			{"client -> web tcp/8080 allowed", tcp(client, web, 8080), true},
			{"client -> web udp/5353 allowed", udp(client, web, 5353), true},
			{"client -> web tcp/9090 denied (port)", tcp(client, web, 9090), false},
			{"other -> web tcp/8080 denied (peer)", tcp(other, web, 8080), false},
			{"web -> client tcp/8080 allowed (no policy selects client)", tcp(web, client, 8080), true},
		} {
			if tc.ok != tc.want {
				t.Errorf("%s: got %v", tc.name, tc.ok)
			}
		}
	})

	t.Run("denials are logged and counted from the kernel", func(t *testing.T) {
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(evbuf.String(), `"verdict":"DENY"`) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		var denyLine string
		for _, l := range strings.Split(evbuf.String(), "\n") {
			if strings.Contains(l, "DENY") && strings.Contains(l, `"srcPod":"other"`) {
				denyLine = l
				break
			}
		}
		for _, want := range []string{`"dstPod":"web"`, `"dstNamespace":"default"`, `"policy":"default-deny"`, `"direction":"ingress"`, `"dstPort":8080`, `"node":"node-a"`} {
			if !strings.Contains(denyLine, want) {
				t.Fatalf("deny event %q lacks %s; log:\n%s", denyLine, want, evbuf.String())
			}
		}
		if !strings.Contains(evbuf.String(), `"verdict":"ACCEPT"`) || !strings.Contains(evbuf.String(), `"policy":"default/allow-web","ruleIndex":0`) {
			t.Fatalf("no ACCEPT attributed to default/allow-web rule 0; log:\n%s", evbuf.String())
		}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var drops float64
		for _, mf := range mfs {
			if mf.GetName() == "network_policy_drop_count_total" {
				for _, m := range mf.Metric {
					if strings.Contains(m.String(), `value:"ingress"`) && strings.Contains(m.String(), `value:"default"`) {
						drops = m.Counter.GetValue()
					}
				}
			}
		}
		if drops == 0 {
			t.Fatal("network_policy_drop_count_total{direction=ingress,namespace=default} is 0 after drops")
		}
	})

	t.Run("policy change re-programs and traffic follows", func(t *testing.T) {
		pol.Spec.Ingress[0].Ports = []networkingv1.NetworkPolicyPort{port(corev1.ProtocolTCP, 9090)}
		pol = must(cs.NetworkingV1().NetworkPolicies("default").Update(ctx, pol, metav1.UpdateOptions{}))
		waitCondition(t, cs, "default", "web", func(c corev1.PodCondition, found bool) bool {
			return isTrue(c, found) && strings.Contains(c.Message, "(generation 2)")
		})
		if !tcp(client, web, 9090) || tcp(client, web, 8080) || udp(client, web, 5353) {
			t.Fatalf("after the change: 9090 %v, 8080 %v, udp %v; want true, false, false",
				tcp(client, web, 9090), tcp(client, web, 8080), udp(client, web, 5353))
		}
	})

	t.Run("kernel drift is repaired by the resync", func(t *testing.T) {
		// Someone opens web behind the agent's back.
		if _, err := dp.SetState(web.HostIndex, rules.Ingress, rules.StateUnisolated); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for must(dp.Pod(web.HostIndex)).Ingress != rules.StateIsolated {
			if time.Now().After(deadline) {
				t.Fatal("the resync did not restore web's rules")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if tcp(other, web, 9090) {
			t.Fatal("other reaches web after the repair")
		}
	})

	t.Run("restart neither opens a pod nor flips a condition", func(t *testing.T) {
		evstop()
		<-evdone
		rvs := map[string]string{}
		for _, n := range []string{"web", "client", "other"} {
			rvs[n] = must(cs.CoreV1().Pods("default").Get(ctx, n, metav1.GetOptions{})).ResourceVersion
		}
		gen := must(dp.Pod(web.HostIndex)).Generation
		// Probe the forbidden flow throughout the restart.
		var leaked atomic.Bool
		probeCtx, probeStop := context.WithCancel(ctx)
		probed := make(chan struct{})
		go func() {
			defer close(probed)
			for probeCtx.Err() == nil {
				if other.ProbeTCP(web.IP, 9090, 200*time.Millisecond) == nil {
					leaked.Store(true)
				}
			}
		}()
		stop()
		if err := dp.Close(); err != nil {
			t.Fatal(err)
		}
		dp2, err := datapath.Open(datapath.Options{PinRoot: pinRoot, UpgradePrograms: true})
		if err != nil {
			t.Fatal(err)
		}
		dp = dp2
		startRealAgent(parent, cs, dp2, ol)
		time.Sleep(500 * time.Millisecond)
		probeStop()
		<-probed
		if leaked.Load() {
			t.Fatal("the forbidden flow got through during the restart")
		}
		for n, rv := range rvs {
			if got := must(cs.CoreV1().Pods("default").Get(ctx, n, metav1.GetOptions{})).ResourceVersion; got != rv {
				t.Fatalf("pod %s was patched by the restarted agent", n)
			}
		}
		if g := must(dp2.Pod(web.HostIndex)).Generation; g != gen {
			t.Fatalf("web was re-programmed on restart (generation %d -> %d)", gen, g)
		}
		if !tcp(client, web, 9090) {
			t.Fatal("allowed flow broken after restart")
		}
	})

	t.Run("capacity failure sets False and the pod stays closed", func(t *testing.T) {
		var ports []networkingv1.NetworkPolicyPort
		for i := range contract.MaxPortRulesPerEntry + 10 {
			ports = append(ports, port(corev1.ProtocolTCP, 10000+2*i))
		}
		must(cs.NetworkingV1().NetworkPolicies("default").Create(ctx, policy("huge", "big", map[string]string{"app": "client"}, ports...), metav1.CreateOptions{}))
		startPod(t, cs, "default", "big", nodeName, big.IP.String(), map[string]string{"app": "big"})
		c := waitCondition(t, cs, "default", "big", func(c corev1.PodCondition, found bool) bool { return found })
		if c.Status != corev1.ConditionFalse || c.Reason != contract.ReasonProgrammingFailed || !strings.Contains(c.Message, "capacity") {
			t.Fatalf("condition = %+v", c)
		}
		if tcp(client, big, 10000) || tcp(client, big, 8080) {
			t.Fatal("a pod whose rules could not be programmed carries traffic")
		}
		if kp := must(dp.Pod(big.HostIndex)); kp.Ingress != rules.StateUnprogrammedDeny {
			t.Fatalf("big's kernel entry = %+v", kp)
		}
	})

	t.Run("pod delete detaches and cleans up", func(t *testing.T) {
		if err := cs.CoreV1().Pods("default").Delete(ctx, "web", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := dp.Pod(web.HostIndex); err != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("deleted pod still has a kernel entry")
			}
			time.Sleep(20 * time.Millisecond)
		}
		pins, _ := filepath.Glob(filepath.Join(contract.PinsAt(pinRoot).Links(), fmt.Sprintf("if%d_*", web.HostIndex)))
		if len(pins) > 0 {
			t.Fatalf("link pins left: %v", pins)
		}
		// No program left on the interface: everything reaches the (still running) netns.
		// An expected success, so a generous timeout: a loaded machine (other suites
		// running) must not turn a slow handshake into a failure.
		if err := other.ProbeTCP(web.IP, 8080, 5*time.Second); err != nil {
			t.Fatalf("traffic to the deleted pod's interface is still filtered: %v", err)
		}
		if _, err := os.Stat(pinRoot); err != nil {
			t.Fatalf("the datapath itself must stay: %v", err)
		}
	})
}
