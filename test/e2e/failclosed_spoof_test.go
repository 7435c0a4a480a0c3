package e2e

import (
	"encoding/json"
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

	"github.com/strictgate/strictgate/test/e2e/harness"
)

// Ports of the spoofing suite's victim (UDP).
const (
	spoofPort   = 8081 // admits the trusted pod and the ipBlocks below
	controlPort = 8090 // admits the attacker: genuine raw packets must arrive here
	pingPort    = 7000 // the victim pings the trusted pod from here; replies come back here
)

var spoofBlocks = map[bool]struct{ block, addr string }{ // by IPv4
	true:  {"192.0.2.0/24", "192.0.2.7"},
	false: {"2001:db8::/32", "2001:db8::7"},
}

// TestPrivilegedSpoofing (issue 8, suite 6). (a) An attacker pod whose egress is open
// sends UDP with the source address of a pod the victim trusts, and with an address
// an ipBlock of the victim admits: nothing reaches the victim's socket and the drops
// are counted and logged (reason spoofed). (b) A reply nobody asked for — UDP from the
// attacker's own address to the port the victim is using for a flow to the trusted
// pod, the same with the trusted pod's address (matching the victim's conntrack entry
// exactly), and bare TCP ACKs — is dropped and opens no conntrack entry. (c) Setting
// the condition as anyone but the agent is TestPrivilegedGateHoldsPodUntilProgrammed.
func TestPrivilegedSpoofing(t *testing.T) {
	cl, _ := setup(t)
	const ns = "e2e-spoof"
	namespace(t, cl, ns, nil)
	waitDefaultDeny(t, cl, ns)
	ctx := ctxFor(t, 5*time.Minute)
	udp := corev1.ProtocolUDP
	port := func(proto *corev1.Protocol, n int32) []networkingv1.NetworkPolicyPort {
		p := intstr.FromInt32(n)
		return []networkingv1.NetworkPolicyPort{{Protocol: proto, Port: &p}}
	}
	app := func(a string) networkingv1.NetworkPolicyPeer {
		return networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": a}}}
	}
	ingress, egress := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	for _, p := range []*networkingv1.NetworkPolicy{
		harness.NetworkPolicy(ns, "victim-in", map[string]string{"app": "victim"}, ingress, []networkingv1.NetworkPolicyIngressRule{
			{From: []networkingv1.NetworkPolicyPeer{app("trusted"),
				{IPBlock: &networkingv1.IPBlock{CIDR: spoofBlocks[true].block}}, {IPBlock: &networkingv1.IPBlock{CIDR: spoofBlocks[false].block}}},
				Ports: port(&udp, spoofPort)},
			{From: []networkingv1.NetworkPolicyPeer{app("attacker")}, Ports: port(&udp, controlPort)},
		}, nil),
		harness.NetworkPolicy(ns, "victim-out", map[string]string{"app": "victim"}, egress, nil,
			[]networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{app("trusted")}, Ports: port(&udp, spoofPort)}}),
		harness.NetworkPolicy(ns, "trusted-in", map[string]string{"app": "trusted"}, ingress,
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{app("victim")}, Ports: port(&udp, spoofPort)}}, nil),
		harness.NetworkPolicy(ns, "attacker-out", map[string]string{"app": "attacker"}, egress, nil,
			[]networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}}}),
	} {
		if _, err := cl.Client.NetworkingV1().NetworkPolicies(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create policy %s: %v", p.Name, err)
		}
	}
	for _, name := range []string{"trusted", "attacker"} {
		startPod(t, cl, ns, name, map[string]string{"app": name})
	}
	trusted := waitReady(t, cl, ns, "trusted")
	attacker := waitReady(t, cl, ns, "attacker")
	ips := func(p *corev1.Pod) map[bool]netip.Addr { // by IPv4
		m := map[bool]netip.Addr{}
		for _, ip := range p.Status.PodIPs {
			a := netip.MustParseAddr(ip.IP)
			m[a.Is4()] = a
		}
		return m
	}
	tIPs, aIPs := ips(trusted), ips(attacker)
	victimPod := harness.ProbePod(ns, "victim", map[string]string{"app": "victim"})
	victimPod.Spec.Containers[0].Args = []string{"serve", "--log-recv", "--udp", fmt.Sprintf("%d,%d", spoofPort, controlPort),
		"--ping", netip.AddrPortFrom(tIPs[true], spoofPort).String(), "--ping-port", fmt.Sprint(pingPort)}
	if _, err := cl.Client.CoreV1().Pods(ns).Create(ctx, victimPod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	victim := waitReady(t, cl, ns, "victim")
	vIPs := ips(victim)

	spoof := func(args ...string) {
		t.Helper()
		out, stderr, err := cl.Exec(ctx, ns, "attacker", "probe", append([]string{"/probe", "spoof", "--count", "20", "--interval", "5ms"}, args...)...)
		if err != nil {
			t.Fatalf("probe spoof %v: %v\n%s%s", args, err, out, stderr)
		}
	}
	drops := func() float64 {
		text, err := harness.AgentMetrics(ctx, cl, 9965)
		if err != nil {
			t.Fatal(err)
		}
		return harness.MetricSum(text, "network_policy_drop_count_total", `namespace="`+ns+`"`)
	}
	victimLog := func() harness.ProbeLog {
		l, err := cl.Logs(ctx, ns, "victim", "probe")
		if err != nil {
			t.Fatal(err)
		}
		return harness.ParseProbeLog(l)
	}
	// The victim's flow to the trusted pod is up: its answers arrive on the ping port.
	if err := harness.Eventually(ctx, 30*time.Second, func() error {
		if len(victimLog().From(tIPs[true], "udp", pingPort)) == 0 {
			return fmt.Errorf("no answer from the trusted pod on the victim's ping port yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	before := drops()
	sent := 0
	for _, v4 := range []bool{true, false} {
		if !vIPs[v4].IsValid() || !tIPs[v4].IsValid() || !aIPs[v4].IsValid() {
			continue // single-stack cluster
		}
		dst := func(p int) string { return netip.AddrPortFrom(vIPs[v4], uint16(p)).String() }
		// Control: genuine raw packets to a port the victim admits from the attacker arrive.
		spoof("--src", aIPs[v4].String(), "--sport", "4100", dst(controlPort))
		// (a) another pod's address, and an address an ipBlock admits.
		spoof("--src", tIPs[v4].String(), "--sport", "4200", dst(spoofPort))
		spoof("--src", spoofBlocks[v4].addr, "--sport", "4300", dst(spoofPort))
		sent += 40
		// (b) replies nobody asked for: to the victim's flow port from the attacker, and
		// the same with the trusted pod's address and port (exactly the victim's
		// conntrack entry; IPv4 only, the ping is), and bare TCP ACKs.
		spoof("--src", aIPs[v4].String(), "--sport", fmt.Sprint(spoofPort), dst(pingPort))
		if v4 {
			spoof("--src", tIPs[v4].String(), "--sport", fmt.Sprint(spoofPort), dst(pingPort))
			sent += 20
		}
		spoof("--tcp-ack", "--src", aIPs[v4].String(), "--sport", "8080", dst(8080))
	}
	time.Sleep(time.Second)
	vlog := victimLog()
	control := 0
	var delivered []harness.Recv
	for _, r := range vlog.Recvs {
		if !r.At.After(start) {
			continue
		}
		switch {
		case r.Local.Port() == controlPort && r.Remote.Port() == 4100:
			control++
		case r.Remote.Port() == 4200 || r.Remote.Port() == 4300:
			delivered = append(delivered, r) // (a)
		case r.Local.Port() == pingPort && (r.Remote.Addr() == aIPs[true] || r.Remote.Addr() == aIPs[false]):
			delivered = append(delivered, r) // (b) from the attacker's own address
		}
	}
	// Real answers of the trusted pod arrive on the ping port too (from the same
	// address and port as the forged ones): tell them apart by count — the trusted pod
	// answers one per 100 ms ping, the forged burst is 20 within 100 ms.
	forged := countBurst(vlog.From(tIPs[true], "udp", pingPort), start)
	after := drops()
	t.Logf("FAILCLOSED spoofing control_delivered=%d/%d spoofed_delivered=%d forged_reply_burst=%d drop_counter=+%.0f (sent %d spoofed)",
		control, 20*len(vIPs), len(delivered), forged, after-before, sent)
	if control == 0 {
		t.Fatal("not even the control packets arrived: raw packets from the attacker do not reach the victim, the suite proves nothing")
	}
	for _, r := range delivered {
		t.Errorf("spoofed %s %s → %s delivered at %s", r.Proto, r.Remote, r.Local, r.At.Format(time.RFC3339Nano))
	}
	if forged > 5 {
		t.Errorf("%d datagrams from the trusted pod's address arrived on the ping port within 100 ms (the trusted pod answers one ping per 100 ms): forged replies got through", forged)
	}
	if after-before < float64(sent) {
		t.Errorf("network_policy_drop_count_total{namespace=%q} +%.0f, want at least %d (every spoofed packet counted)", ns, after-before, sent)
	}
	// The drops are logged as such, with the forged source.
	if err := harness.Eventually(ctx, 20*time.Second, func() error {
		log, err := harness.AgentLog(ctx, cl.Client, start)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(log, "\n") {
			var ev struct{ Verdict, Reason, SrcIP, SrcPod, Policy string }
			if json.Unmarshal([]byte(line), &ev) == nil && ev.Verdict == "DENY" && ev.Reason == "spoofed" && ev.SrcIP == spoofBlocks[true].addr &&
				ev.SrcPod == "attacker" && ev.Policy == "source-validation" {
				t.Logf("policy event log: %s", line)
				return nil
			}
		}
		return fmt.Errorf("no DENY event with reason spoofed, policy source-validation, from %s sent by pod attacker in the agent log", spoofBlocks[true].addr)
	}); err != nil {
		t.Error(err)
	}
	// (b) No conntrack entry of the victim names the attacker.
	ct, err := ebpf.LoadPinnedMap(harness.PinRoot+"/maps/sg_ct", &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		t.Fatalf("open the datapath's conntrack map: %v", err)
	}
	defer ct.Close()
	var k, v []byte
	it := ct.Iterate()
	entries := 0
	for it.Next(&k, &v) {
		entries++
		if len(k) < 44 {
			t.Fatalf("conntrack key of %d bytes: the layout changed (bpf/include/strictgate.h sg_ct_key)", len(k))
		}
		pod, remote := addr16(k[8:24]), addr16(k[24:40])
		podPort := uint16(k[40])<<8 | uint16(k[41]) // network order
		for _, v4 := range []bool{true, false} {
			// The control flow (attacker → victim:controlPort) is allowed and tracked.
			if pod == vIPs[v4] && remote == aIPs[v4] && podPort != controlPort {
				t.Errorf("conntrack entry for victim %s:%d ↔ attacker %s (proto %d): an unsolicited packet opened it", pod, podPort, remote, k[4])
			}
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("conntrack: %d entries checked", entries)
}

func addr16(b []byte) netip.Addr {
	var a [16]byte
	copy(a[:], b)
	return netip.AddrFrom16(a).Unmap()
}

// countBurst returns the most receptions within any 100 ms after start.
func countBurst(rs []harness.Recv, start time.Time) int {
	best := 0
	for i := range rs {
		if !rs[i].At.After(start) {
			continue
		}
		n := 0
		for j := i; j < len(rs) && rs[j].At.Sub(rs[i].At) < 100*time.Millisecond; j++ {
			n++
		}
		best = max(best, n)
	}
	return best
}
