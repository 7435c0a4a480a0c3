package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/strictgate/strictgate/test/cluster"
	"github.com/strictgate/strictgate/test/e2e/harness"
)

// The start-up flood (issue 8, suites 1 and 2). A prober pod, allowed to send anywhere
// and to receive from anyone, fires from before the target pod exists at every address
// host-local may give it: TCP 8080 (which the target's policy allows from the prober),
// TCP 8083 and UDP 8081 (which it forbids). The target fires at the prober from its
// first instruction, before it even listens; its egress is default-deny. Both log every
// accept and datagram at the socket (probe --log-recv), so what was delivered is
// counted where it arrives, not inferred.
const (
	floodAllowedPort = 8080 // TCP, allowed prober → target
	floodTCPPort     = 8083 // TCP, forbidden
	floodUDPPort     = 8081 // UDP, forbidden
	floodAddrs       = 12   // addresses of the pod range the prober covers
	floodAfterReady  = 3 * time.Second
)

// floodResult is what one start-up flood measured.
type floodResult struct {
	created      time.Time // just before the target's Create call
	gateLTT      time.Time // lastTransitionTime of the condition (second precision)
	gateSeen     time.Time // when the watch saw the condition True
	readySeen    time.Time
	forbiddenIn  []harness.Recv // at the target from the prober on 8083/tcp, 8081/udp
	forbiddenOut []harness.Recv // at the prober from the target (egress: default-deny)
	allowedIn    []harness.Recv // at the target from the prober on 8080/tcp
	firstOK      harness.FloodOK
	hasOK        bool
	target       *corev1.Pod
	proberIP     netip.Addr
}

// forbidden returns every forbidden reception, both directions.
func (r floodResult) forbidden() []harness.Recv {
	return append(append([]harness.Recv(nil), r.forbiddenIn...), r.forbiddenOut...)
}

// window is the time from the first to the last forbidden reception (0 if none).
func (r floodResult) window() (first, last time.Time, d time.Duration) {
	for _, x := range r.forbidden() {
		if first.IsZero() || x.At.Before(first) {
			first = x.At
		}
		if x.At.After(last) {
			last = x.At
		}
	}
	if first.IsZero() {
		return first, last, 0
	}
	return first, last, last.Sub(first)
}

func floodProbePod(ns, name string, labels map[string]string, floodTo string) *corev1.Pod {
	p := harness.ProbePod(ns, name, labels)
	c := &p.Spec.Containers[0]
	c.Args = []string{"serve", "--tcp", fmt.Sprintf("%d,%d", floodAllowedPort, floodTCPPort), "--udp", fmt.Sprint(floodUDPPort),
		"--log-recv", "--flood-to", floodTo, "--flood-interval", "10ms"}
	c.Ports = append(c.Ports, corev1.ContainerPort{Name: "tcp-forbidden", ContainerPort: floodTCPPort, Protocol: corev1.ProtocolTCP})
	return p
}

// flood is a prober pod firing at the addresses the next pods will get, in a namespace
// with the flood's policies; startTarget adds the target pod.
type flood struct {
	t        *testing.T
	cl       *cluster.Cluster
	ns       string
	ips      []netip.Addr
	proberIP netip.Addr
	r        floodResult
	w        watch.Interface
}

// newFlood makes namespace ns, the policies and a Ready prober already firing.
func newFlood(t *testing.T, cl *cluster.Cluster, ns string) *flood {
	t.Helper()
	namespace(t, cl, ns, nil)
	waitDefaultDeny(t, cl, ns)
	ctx := ctxFor(t, 5*time.Minute)
	tcp := corev1.ProtocolTCP
	allowed := intstr.FromInt32(floodAllowedPort)
	sameNS := []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}
	// The prober may send to the whole pod range: its shots at addresses no pod has yet
	// are allowed, not thousands of would-be drops a second in the agent's event log
	// (which the kubelet rotates at 10 MiB, and the audit suite reads).
	proberTo := append([]networkingv1.NetworkPolicyPeer{}, sameNS...)
	for _, c := range []*net.IPNet{cl.PodCIDR, cl.PodCIDRv6} {
		if c != nil {
			proberTo = append(proberTo, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: c.String()}})
		}
	}
	policies := []*networkingv1.NetworkPolicy{
		harness.NetworkPolicy(ns, "prober-open", map[string]string{"app": "prober"},
			[]networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			[]networkingv1.NetworkPolicyIngressRule{{From: sameNS}}, []networkingv1.NetworkPolicyEgressRule{{To: proberTo}}),
		harness.NetworkPolicy(ns, "target-from-prober", map[string]string{"app": "target"},
			[]networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			[]networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "prober"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &allowed}},
			}}, nil),
	}
	for _, p := range policies {
		if _, err := cl.Client.NetworkingV1().NetworkPolicies(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create policy %s: %v", p.Name, err)
		}
	}
	ips, err := harness.NextPodIPs(cl, floodAddrs)
	if err != nil {
		t.Fatal(err)
	}
	var spec []string
	for _, port := range []struct {
		proto string
		n     int
	}{{"tcp", floodAllowedPort}, {"tcp", floodTCPPort}, {"udp", floodUDPPort}} {
		spec = append(spec, harness.FloodSpec(port.proto, ips, port.n))
	}
	if _, err := cl.Client.CoreV1().Pods(ns).Create(ctx, floodProbePod(ns, "prober", map[string]string{"app": "prober"}, strings.Join(spec, ",")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	prober := waitReady(t, cl, ns, "prober")
	return &flood{t: t, cl: cl, ns: ns, ips: ips, proberIP: netip.MustParseAddr(prober.Status.PodIP)}
}

// startTarget creates the target, which fires at the prober from its first instruction.
func (f *flood) startTarget() {
	t := f.t
	t.Helper()
	ctx := ctxFor(t, 5*time.Minute)
	w, err := f.cl.Client.CoreV1().Pods(f.ns).Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", "target").String()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	f.w = w
	p := f.proberIP
	out := fmt.Sprintf("tcp:%s:%d,tcp:%s:%d,udp:%s:%d", p, floodAllowedPort, p, floodTCPPort, p, floodUDPPort)
	target := floodProbePod(f.ns, "target", map[string]string{"app": "target"}, out)
	target.Spec.Containers[0].Args = append(target.Spec.Containers[0].Args, "--flood-interval", "5ms")
	f.r.created = time.Now()
	if _, err := f.cl.Client.CoreV1().Pods(f.ns).Create(ctx, target, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// watchTarget follows the target until it is Ready or timeout passes; hold (if set)
// is checked on every status and fails the test when it does not hold.
func (f *flood) watchTarget(timeout time.Duration, hold func(*corev1.Pod) error) bool {
	t := f.t
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case <-deadline:
			return false
		case ev, ok := <-f.w.ResultChan():
			if !ok {
				t.Fatal("watch of the target ended")
			}
			if ev.Type == watch.Error {
				t.Fatalf("watch: %v", ev.Object)
			}
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			f.r.target = p
			if hold != nil {
				if err := hold(p); err != nil {
					t.Fatal(err)
				}
			}
			if ltt, ok := harness.GateTrue(p); ok && f.r.gateSeen.IsZero() {
				f.r.gateSeen, f.r.gateLTT = time.Now(), ltt
			}
			if harness.Ready(p) == nil {
				if f.r.gateSeen.IsZero() {
					t.Fatalf("target Ready without %s=True: %+v", harness.GateCondition, p.Status.Conditions)
				}
				f.r.readySeen = time.Now()
				return true
			}
		}
	}
}

// collect reads both pods' logs: what reached which socket so far.
func (f *flood) collect() floodResult {
	t := f.t
	t.Helper()
	ctx := ctxFor(t, time.Minute)
	r := f.r
	r.proberIP = f.proberIP
	if r.target == nil || r.target.Status.PodIP == "" {
		t.Fatal("the target has no IP")
	}
	targetIP := netip.MustParseAddr(r.target.Status.PodIP)
	if !containsAddr(f.ips, targetIP) || !containsAddr(f.ips, f.proberIP) {
		t.Fatalf("prober %s / target %s outside the flooded addresses %v: host-local did not allocate as predicted", f.proberIP, targetIP, f.ips)
	}
	tl, err := f.cl.Logs(ctx, f.ns, "target", "probe")
	if err != nil {
		t.Fatal(err)
	}
	pl, err := f.cl.Logs(ctx, f.ns, "prober", "probe")
	if err != nil {
		t.Fatal(err)
	}
	tlog, plog := harness.ParseProbeLog(tl), harness.ParseProbeLog(pl)
	r.forbiddenIn = append(tlog.From(f.proberIP, "tcp", floodTCPPort), tlog.From(f.proberIP, "udp", floodUDPPort)...)
	r.forbiddenOut = plog.From(targetIP, "", 0)
	r.allowedIn = tlog.From(f.proberIP, "tcp", floodAllowedPort)
	r.firstOK, r.hasOK = plog.FirstOK("tcp", netip.AddrPortFrom(targetIP, floodAllowedPort))
	return r
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/1e6) }

// startupFlood runs the flood in namespace ns with the release in whatever mode it is.
func startupFlood(t *testing.T, cl *cluster.Cluster, ns string) floodResult {
	t.Helper()
	f := newFlood(t, cl, ns)
	f.startTarget()
	if !f.watchTarget(2*time.Minute, nil) {
		t.Fatalf("target not Ready within 2m: %+v", f.r.target)
	}
	time.Sleep(floodAfterReady) // the flood goes on: the pod's whole life counts
	r := f.collect()
	first, last, win := r.window()
	t.Logf("FAILCLOSED startup-flood mode=%s forbidden_in=%d forbidden_out=%d allowed_in=%d", installedMode(), len(r.forbiddenIn), len(r.forbiddenOut), len(r.allowedIn))
	if len(r.forbidden()) > 0 {
		t.Logf("FAILCLOSED startup-flood mode=%s window=%s first_forbidden=+%s last_forbidden=+%s (after create)", installedMode(), ms(win), ms(first.Sub(r.created)), ms(last.Sub(r.created)))
	}
	if r.hasOK {
		t.Logf("FAILCLOSED startup-flood mode=%s first_allowed_success=+%s after create, %s after gate lastTransitionTime (1s precision), %s after the watch saw the gate; gate seen +%s, Ready seen +%s",
			installedMode(), ms(r.firstOK.At.Sub(r.created)), ms(r.firstOK.At.Sub(r.gateLTT)), ms(r.firstOK.At.Sub(r.gateSeen)), ms(r.gateSeen.Sub(r.created)), ms(r.readySeen.Sub(r.created)))
	}
	return r
}

func containsAddr(l []netip.Addr, a netip.Addr) bool {
	for _, x := range l {
		if x == a {
			return true
		}
	}
	return false
}

func installedMode() string {
	installMu.Lock()
	defer installMu.Unlock()
	if installed == nil {
		return "none"
	}
	return installed.Mode
}

// TestPrivilegedStartupFloodStrict (issue 8, suite 1): in strict mode not one forbidden
// packet reaches a socket, in either direction, over the whole life of the pod; the
// allowed flow succeeds once the gate is True and never before it.
func TestPrivilegedStartupFloodStrict(t *testing.T) {
	cl, _ := setup(t)
	r := startupFlood(t, cl, "e2e-flood-strict")
	for _, x := range r.forbidden() {
		t.Errorf("forbidden %s %s → %s delivered at +%s after create", x.Proto, x.Remote, x.Local, x.At.Sub(r.created))
	}
	if !r.hasOK {
		t.Fatalf("the allowed flow prober → target:%d never succeeded (target accepted %d)", floodAllowedPort, len(r.allowedIn))
	}
	// The agent writes the maps, then patches the condition: a connection may be
	// accepted a round trip before the condition's time, never earlier. All on one
	// machine (one clock); lastTransitionTime is truncated to the second, so comparing
	// with it errs on the lenient side, and 250 ms covers a slow PATCH.
	for _, x := range r.allowedIn {
		if x.At.Before(r.gateLTT.Add(-250 * time.Millisecond)) {
			t.Errorf("allowed connection accepted at %s, before the gate's lastTransitionTime %s: the pod was open before it was programmed",
				x.At.Format(time.RFC3339Nano), r.gateLTT.Format(time.RFC3339))
		}
	}
	// Once the gate is True the flow works: the prober fires every 10 ms, so its first
	// answer comes within a few shots of the watch seeing the condition (a generous 2 s
	// for a loaded machine; an agent that sets the condition before writing the maps
	// misses it by the time it takes to write them).
	if d := r.firstOK.At.Sub(r.gateSeen); d > 2*time.Second {
		t.Errorf("first allowed success %s after the gate was seen True: the condition was set before the policy was in force", d)
	}
}
