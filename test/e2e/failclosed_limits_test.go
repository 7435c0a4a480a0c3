package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/strictgate/strictgate/internal/contract"
	"github.com/strictgate/strictgate/test/e2e/harness"
)

// TestPrivilegedLimitsFailClosed (issue 8, suite 7). Two policies, each within every
// limit the webhook checks, together give one pod more port rules for one peer than
// the datapath holds (contract.MaxPortRulesPerEntry): that pod's condition turns False
// with the reason, the pod stays closed (not even what a policy allows gets in), and
// the other pods on the node keep working and new ones are programmed. Then the
// conntrack table is filled with real flows: a forbidden flow still does not open.
func TestPrivilegedLimitsFailClosed(t *testing.T) {
	cl, _ := setup(t)
	const ns = "e2e-limits"
	namespace(t, cl, ns, nil)
	waitDefaultDeny(t, cl, ns)
	ctx := ctxFor(t, 10*time.Minute)
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	app := func(a string) []networkingv1.NetworkPolicyPeer {
		return []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": a}}}}
	}
	ports := func(proto *corev1.Protocol, first, n, step int) []networkingv1.NetworkPolicyPort {
		var out []networkingv1.NetworkPolicyPort
		for i := range n {
			p := intstr.FromInt32(int32(first + i*step))
			out = append(out, networkingv1.NetworkPolicyPort{Protocol: proto, Port: &p})
		}
		return out
	}
	ingress, egress := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	// Non-adjacent ports, so the compiler cannot merge them into ranges.
	half := contract.MaxPortRulesPerEntry/2 + 10
	endPort := int32(8099)
	p8090 := intstr.FromInt32(8090)
	policies := []*networkingv1.NetworkPolicy{
		harness.NetworkPolicy(ns, "from-prober-8080", map[string]string{}, ingress,
			[]networkingv1.NetworkPolicyIngressRule{{From: app("prober"), Ports: ports(&tcp, 8080, 1, 1)}}, nil),
		harness.NetworkPolicy(ns, "many-ports-a", map[string]string{"app": "big"}, ingress,
			[]networkingv1.NetworkPolicyIngressRule{{From: app("prober"), Ports: ports(&tcp, 10001, half, 2)}}, nil),
		harness.NetworkPolicy(ns, "many-ports-b", map[string]string{"app": "big"}, ingress,
			[]networkingv1.NetworkPolicyIngressRule{{From: app("prober"), Ports: ports(&tcp, 20001, half, 2)}}, nil),
		harness.NetworkPolicy(ns, "neighbor-fill-from-attacker", map[string]string{"app": "neighbor"}, ingress,
			[]networkingv1.NetworkPolicyIngressRule{{From: app("attacker"), Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &p8090, EndPort: &endPort}}}}, nil),
		harness.NetworkPolicy(ns, "out-to-namespace", map[string]string{}, egress,
			nil, []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}}}),
	}
	for _, p := range policies {
		if _, err := cl.Client.NetworkingV1().NetworkPolicies(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create policy %s: %v", p.Name, err)
		}
	}
	logged := func(name string) *corev1.Pod {
		p := harness.ProbePod(ns, name, map[string]string{"app": name})
		p.Spec.Containers[0].Args = append(p.Spec.Containers[0].Args, "--log-recv")
		return p
	}
	for _, p := range []*corev1.Pod{logged("prober"), logged("neighbor"), logged("attacker")} {
		if _, err := cl.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	prober := waitReady(t, cl, ns, "prober")
	neighbor := waitReady(t, cl, ns, "neighbor")
	attacker := waitReady(t, cl, ns, "attacker")
	proberIP := netip.MustParseAddr(prober.Status.PodIP)

	created := time.Now()
	if _, err := cl.Client.CoreV1().Pods(ns).Create(ctx, logged("big"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	big, err := harness.WaitPod(ctx, cl.Client, ns, "big", time.Minute, func(p *corev1.Pod) error {
		c := harness.Condition(p, harness.GateCondition)
		if harness.Ready(p) == nil {
			return nil // refused below
		}
		if c == nil || c.Status != corev1.ConditionFalse || p.Status.PodIP == "" {
			return fmt.Errorf("condition %+v, want False", c)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("pod over the limit: %v", err)
	}
	c := harness.Condition(big, harness.GateCondition)
	if harness.Ready(big) == nil {
		t.Fatalf("the pod over the datapath's limit is Ready, condition %+v", c)
	}
	t.Logf("FAILCLOSED limits condition=%s reason=%s after %s: %s", c.Status, c.Reason, ms(time.Since(created)), c.Message)
	if c.Reason != "ProgrammingFailed" || !strings.Contains(c.Message, "port rules") {
		t.Errorf("condition reason %q message %q: want ProgrammingFailed naming the port-rule limit", c.Reason, c.Message)
	}
	// Closed: not even TCP 8080, which a policy allows, gets in; the neighbour works.
	for _, tc := range []struct {
		to   *corev1.Pod
		want bool
	}{{big, false}, {neighbor, true}} {
		_, connErr, err := harness.Connect(ctx, cl, ns, "prober", "tcp", tc.to.Status.PodIP+":8080", connTimeout)
		if err != nil {
			t.Fatal(err)
		}
		if (connErr == nil) != tc.want {
			t.Errorf("prober → %s:8080 connected=%v, want %v", tc.to.Name, connErr == nil, tc.want)
		}
	}
	// A pod started now is programmed as usual.
	if _, err := cl.Client.CoreV1().Pods(ns).Create(ctx, logged("late"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitReady(t, cl, ns, "late")
	got, err := cl.Client.CoreV1().Pods(ns).Get(ctx, "big", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if harness.Ready(got) == nil {
		t.Errorf("the pod over the limit is Ready")
	}
	bl, err := cl.Logs(ctx, ns, "big", "probe")
	if err != nil {
		t.Fatal(err)
	}
	if in := harness.ParseProbeLog(bl).From(proberIP, "", 0); len(in) > 0 {
		t.Errorf("the pod over the limit accepted %d connections from the prober", len(in))
	}
	// Back within the limit: programmed, and the allowed port works.
	fixed := time.Now()
	if err := cl.Client.NetworkingV1().NetworkPolicies(ns).Delete(ctx, "many-ports-b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitReady(t, cl, ns, "big")
	t.Logf("FAILCLOSED limits recovered=%s after the policy set fit again", ms(time.Since(fixed)))
	if err := harness.Eventually(ctx, 15*time.Second, func() error {
		_, connErr, err := harness.Connect(ctx, cl, ns, "prober", "tcp", big.Status.PodIP+":8080", connTimeout)
		if err == nil && connErr != nil {
			err = connErr
		}
		return err
	}); err != nil {
		t.Errorf("prober → big:8080 after recovery: %v", err)
	}

	// A full conntrack table: the attacker opens one allowed flow per packet (its own
	// address, UDP to neighbor:8090-8092, which neighbor admits), then floods what the
	// neighbour forbids (UDP 8081).
	fill := 3 * 50000
	start := time.Now()
	if out, stderr, err := cl.Exec(ctx, ns, "attacker", "probe", "/probe", "spoof", "--src", attacker.Status.PodIP, "--sport", "10000",
		"--vary-ports", "--count", fmt.Sprint(fill), "--interval", "0", neighbor.Status.PodIP+":8090"); err != nil {
		t.Fatalf("fill conntrack: %v\n%s%s", err, out, stderr)
	}
	filled := time.Since(start)
	entries := conntrackEntries(t)
	t.Logf("FAILCLOSED limits conntrack_entries=%d of %d after %d new flows in %s", entries, contract.MaxConntrack, fill, ms(filled))
	if entries < contract.MaxConntrack*3/4 {
		t.Errorf("conntrack holds %d entries after %d new allowed flows through two interfaces: the table was not filled", entries, fill)
	}
	floodStart := time.Now()
	if out, stderr, err := cl.Exec(ctx, ns, "attacker", "probe", "/probe", "spoof", "--src", attacker.Status.PodIP, "--sport", "30000",
		"--vary-ports", "--count", "2000", "--interval", "0", neighbor.Status.PodIP+fmt.Sprintf(":%d", floodUDPPort)); err != nil {
		t.Fatalf("forbidden flood: %v\n%s%s", err, out, stderr)
	}
	time.Sleep(time.Second)
	nl, err := cl.Logs(ctx, ns, "neighbor", "probe")
	if err != nil {
		t.Fatal(err)
	}
	var delivered int
	for _, r := range harness.ParseProbeLog(nl).From(netip.MustParseAddr(attacker.Status.PodIP), "udp", 0) {
		if r.At.After(floodStart) && r.Local.Port() != 8090 && r.Local.Port() != 8091 && r.Local.Port() != 8092 {
			delivered++
		}
	}
	t.Logf("FAILCLOSED limits full_conntrack_forbidden_delivered=%d of 2000", delivered)
	if delivered > 0 {
		t.Errorf("with a full conntrack table %d forbidden datagrams reached the neighbour", delivered)
	}
	// The allowed flow still opens (LRU makes room).
	if _, connErr, err := harness.Connect(ctx, cl, ns, "prober", "tcp", neighbor.Status.PodIP+":8080", connTimeout); err != nil || connErr != nil {
		t.Errorf("prober → neighbor:8080 with a full conntrack table: %v %v", err, connErr)
	}
}

// conntrackEntries counts the entries of the node's conntrack map.
func conntrackEntries(t *testing.T) int {
	t.Helper()
	ct, err := ebpf.LoadPinnedMap(harness.PinRoot+"/maps/sg_ct", &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		t.Fatalf("open the datapath's conntrack map: %v", err)
	}
	defer ct.Close()
	var k, v []byte
	n := 0
	it := ct.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}
