package datapath

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/strictgate/strictgate/agent/datapath/packet"
	"github.com/strictgate/strictgate/agent/rules"
)

const (
	podV4 = "10.0.0.1"
	podV6 = "fd00::1"
)

// fixtureRules exercises longest prefix with excepts, port ranges, protocol-any and
// the IPv4/IPv6 split.
func fixtureRules() *rules.PodRules {
	return &rules.PodRules{
		Egress: rules.DirectionRules{State: rules.StateIsolated, Entries: []rules.Entry{
			{Prefix: mustPrefix("10.1.0.0/16"), Ports: []rules.PortRule{
				tcpRule(80, 80, 1), tcpRule(8000, 8999, 2),
				{Protocol: rules.ProtocolUDP, First: 53, Last: 53, Rule: 3},
			}},
			{Prefix: mustPrefix("10.1.2.0/24")}, // except
			{Prefix: mustPrefix("10.1.2.128/25"), Ports: []rules.PortRule{{Protocol: rules.ProtocolAny, First: 0, Last: 65535, Rule: 4}}},
			{Prefix: mustPrefix("0.0.0.0/0"), Ports: []rules.PortRule{{Protocol: rules.ProtocolSCTP, First: 9000, Last: 9000, Rule: 5}}},
			{Prefix: mustPrefix("fd00:1::/64"), Ports: []rules.PortRule{tcpRule(443, 443, 6)}},
			{Prefix: mustPrefix("fd00:1::/80")}, // except
			{Prefix: mustPrefix("::/0"), Ports: []rules.PortRule{{Protocol: rules.ProtocolUDP, First: 5000, Last: 5010, Rule: 7}}},
			{Prefix: mustPrefix("10.9.0.0/16"), Ports: []rules.PortRule{{Protocol: rules.ProtocolAny, First: 0, Last: 65535, Rule: 8}}},
			{Prefix: mustPrefix("10.8.0.1/32"), Ports: []rules.PortRule{tcpRule(1, 65535, 9), tcpRule(22, 22, 99)}}, // first match wins
		}},
		Ingress: rules.DirectionRules{State: rules.StateIsolated, Entries: []rules.Entry{
			{Prefix: mustPrefix("10.2.0.0/16"), Ports: []rules.PortRule{tcpRule(22, 22, 10)}},
			{Prefix: mustPrefix("fd00:2::/64"), Ports: []rules.PortRule{{Protocol: rules.ProtocolSCTP, First: 7, Last: 7, Rule: 11}}},
			{Prefix: mustPrefix("10.3.0.0/16"), Ports: []rules.PortRule{{Protocol: rules.ProtocolAny, First: 100, Last: 200, Rule: 12}}},
		}},
	}
}

type runCase struct {
	name   string
	dir    rules.Direction
	frame  []byte
	want   Verdict
	rule   rules.RuleID
	reason Reason
}

// egressFlow is the first packet of a flow from the pod (a unique source port per call,
// so that cases do not meet each other's conntrack entries).
var nextPort uint16 = 20000

func egress(proto uint8, remote string, port uint16) []byte {
	nextPort++
	r := mustAddr(remote)
	pod := mustAddr(podV4)
	if !r.Is4() {
		pod = mustAddr(podV6)
	}
	return packet.Flow(proto, pod, nextPort, r, port)
}

func ingress(proto uint8, remote string, port uint16) []byte {
	nextPort++
	r := mustAddr(remote)
	pod := mustAddr(podV4)
	if !r.Is4() {
		pod = mustAddr(podV6)
	}
	return packet.Flow(proto, r, nextPort, pod, port)
}

func runCases(t *testing.T, d *Datapath, ifindex int, cases []runCase) {
	t.Helper()
	for _, c := range cases {
		got, err := d.RunPacket(ifindex, c.dir, c.frame)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got.Verdict != c.want || got.Rule != c.rule || got.Reason != c.reason {
			t.Errorf("%s: got %s rule %#x reason %s, want %s rule %#x reason %s",
				c.name, got.Verdict, uint32(got.Rule), got.Reason, c.want, uint32(c.rule), c.reason)
		}
	}
}

func TestPrivilegedRunPacketRules(t *testing.T) {
	d := openEphemeral(t)
	const pod = 100
	if _, err := d.Register(pod, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Program(pod, fixtureRules()); err != nil {
		t.Fatal(err)
	}
	const (
		tcp, udp, sctp, icmp, icmp6 = packet.ProtoTCP, packet.ProtoUDP, packet.ProtoSCTP, packet.ProtoICMP, packet.ProtoICMPv6
	)
	E, I := rules.Egress, rules.Ingress
	allow, deny := VerdictAllow, VerdictDeny
	pol := ReasonPolicy

	firstFrag := packet.Packet{Src: mustAddr(podV4), Dst: mustAddr("10.1.5.5"), Protocol: tcp, SrcPort: 30001, DstPort: 80, FragID: 77, MoreFragments: true}.MustFrame()
	laterFrag := packet.Packet{Src: mustAddr(podV4), Dst: mustAddr("10.1.5.5"), Protocol: tcp, FragID: 77, FragOffset: 3}.MustFrame()
	strayFrag := packet.Packet{Src: mustAddr(podV4), Dst: mustAddr("10.1.5.5"), Protocol: tcp, FragID: 78, FragOffset: 3}.MustFrame()
	firstFrag6 := packet.Packet{Src: mustAddr(podV6), Dst: mustAddr("fd00:1::1:0:0:5"), Protocol: tcp, SrcPort: 30002, DstPort: 443, FragID: 79, MoreFragments: true}.MustFrame()
	laterFrag6 := packet.Packet{Src: mustAddr(podV6), Dst: mustAddr("fd00:1::1:0:0:5"), Protocol: tcp, FragID: 79, FragOffset: 9}.MustFrame()
	hbh := packet.Packet{Src: mustAddr(podV6), Dst: mustAddr("fd00:1::1:0:0:5"), Protocol: tcp, SrcPort: 30003, DstPort: 443, HopByHop: true}.MustFrame()
	truncated := egress(tcp, "10.1.5.5", 80)[:14+20+2]
	badVersion := egress(tcp, "10.1.5.5", 80)
	badVersion[14] = 0x55

	runCases(t, d, pod, []runCase{
		{"tcp port", E, egress(tcp, "10.1.5.5", 80), allow, 1, pol},
		{"tcp range low", E, egress(tcp, "10.1.5.5", 8000), allow, 2, pol},
		{"tcp range high", E, egress(tcp, "10.1.5.5", 8999), allow, 2, pol},
		{"tcp outside range", E, egress(tcp, "10.1.5.5", 9000), deny, rules.RuleNone, pol},
		{"longest prefix has no fallback to shorter", E, egress(sctp, "10.1.5.5", 9000), deny, rules.RuleNone, pol},
		{"udp port", E, egress(udp, "10.1.5.5", 53), allow, 3, pol},
		{"udp wrong port", E, egress(udp, "10.1.5.5", 54), deny, rules.RuleNone, pol},
		{"except hole", E, egress(tcp, "10.1.2.5", 80), deny, rules.RuleNone, pol},
		{"allow inside except", E, egress(tcp, "10.1.2.200", 80), allow, 4, pol},
		{"protocol any: icmp", E, egress(icmp, "10.1.2.200", 0), allow, 4, pol},
		{"protocol any: sctp", E, egress(sctp, "10.9.1.1", 1), allow, 8, pol},
		{"protocol any: gre", E, egress(47, "10.9.1.1", 0), allow, 8, pol},
		{"default route v4", E, egress(sctp, "192.0.2.1", 9000), allow, 5, pol},
		{"default route v4 wrong proto", E, egress(tcp, "192.0.2.1", 9000), deny, rules.RuleNone, pol},
		{"v6 prefix", E, egress(tcp, "fd00:1::1:0:0:5", 443), allow, 6, pol},
		{"v6 except", E, egress(tcp, "fd00:1::5", 443), deny, rules.RuleNone, pol},
		{"v6 default route", E, egress(udp, "2001:db8::1", 5005), allow, 7, pol},
		{"::/0 does not cover IPv4", E, egress(udp, "192.0.2.1", 5005), deny, rules.RuleNone, pol},
		{"v4-mapped v6 is IPv4", E, packet.Flow(udp, mustAddr(podV6), 30010, mustAddr("::ffff:192.0.2.1"), 5005), deny, rules.RuleNone, pol},
		{"v4-mapped v6 matches v4 prefix", E, packet.Flow(sctp, mustAddr(podV6), 30011, mustAddr("::ffff:192.0.2.1"), 9000), allow, 5, pol},
		{"icmpv6 needs protocol any", E, egress(icmp6, "fd00:1::1:0:0:5", 0), deny, rules.RuleNone, pol},
		{"first matching port rule wins", E, egress(tcp, "10.8.0.1", 22), allow, 9, pol},
		{"ingress tcp", I, ingress(tcp, "10.2.3.4", 22), allow, 10, pol},
		{"ingress tcp wrong port", I, ingress(tcp, "10.2.3.4", 23), deny, rules.RuleNone, pol},
		{"ingress sctp v6", I, ingress(sctp, "fd00:2::9", 7), allow, 11, pol},
		{"ingress any proto with ports: udp", I, ingress(udp, "10.3.0.1", 150), allow, 12, pol},
		{"ingress any proto with ports: icmp has port 0", I, ingress(icmp, "10.3.0.1", 0), deny, rules.RuleNone, pol},
		{"ingress unknown source", I, ingress(tcp, "10.4.0.1", 22), deny, rules.RuleNone, pol},
		{"arp passes", E, packet.ARP(), allow, rules.RuleNone, ReasonLinkLocal},
		{"neighbour solicitation passes", I, packet.NeighborSolicitation(mustAddr("fe80::1"), mustAddr("fe80::2"), mustAddr("fe80::2"), 255), allow, rules.RuleNone, ReasonLinkLocal},
		{"solicitation to a multicast group passes", E, packet.NeighborSolicitation(mustAddr(podV6), mustAddr("ff02::1:ff00:2"), mustAddr("fd00:1::1:0:0:2"), 255), allow, rules.RuleNone, ReasonLinkLocal},
		{"solicitation of a global address passes", E, packet.NeighborSolicitation(mustAddr(podV6), mustAddr("fd00:1::1:0:0:5"), mustAddr("fd00:1::1:0:0:5"), 255), allow, rules.RuleNone, ReasonLinkLocal},
		{"ND type with a routed hop limit is judged as ICMPv6", E, packet.NeighborSolicitation(mustAddr(podV6), mustAddr("fd00:1::1:0:0:5"), mustAddr("fd00:1::1:0:0:5"), 64), deny, rules.RuleNone, pol},
		{"vlan frame fails closed", E, packet.Ethernet(packet.EtherTypeVLAN, make([]byte, 40)), deny, rules.RuleNone, ReasonUnparseable},
		{"truncated ipv4 fails closed", E, truncated, deny, rules.RuleNone, ReasonUnparseable},
		{"bad ip version fails closed", E, badVersion, deny, rules.RuleNone, ReasonUnparseable},
		{"first fragment", E, firstFrag, allow, 1, pol},
		{"later fragment follows the first", E, laterFrag, allow, rules.RuleConntrack, ReasonConntrack},
		{"stray fragment fails closed", E, strayFrag, deny, rules.RuleNone, ReasonUnparseable},
		{"v6 first fragment", E, firstFrag6, allow, 6, pol},
		{"v6 later fragment", E, laterFrag6, allow, rules.RuleConntrack, ReasonConntrack},
		{"v6 hop-by-hop header", E, hbh, allow, 6, pol},
	})
}

func TestPrivilegedRunPacketStates(t *testing.T) {
	d := openEphemeral(t)
	states := []struct {
		state  rules.State
		want   Verdict
		rule   rules.RuleID
		reason Reason
	}{
		{rules.StateUnprogrammedDeny, VerdictDeny, rules.RuleUnprogrammed, ReasonPolicy},
		{rules.StateUnprogrammedAllow, VerdictAllow, rules.RuleUnprogrammed, ReasonPolicy},
		{rules.StateIsolated, VerdictDeny, rules.RuleNone, ReasonPolicy},
		{rules.StateUnisolated, VerdictAllow, rules.RuleUnisolated, ReasonPolicy},
	}
	protos := []struct {
		name  string
		proto uint8
		v6    bool
	}{
		{"tcp4", packet.ProtoTCP, false}, {"udp4", packet.ProtoUDP, false}, {"sctp4", packet.ProtoSCTP, false}, {"icmp4", packet.ProtoICMP, false},
		{"tcp6", packet.ProtoTCP, true}, {"udp6", packet.ProtoUDP, true}, {"sctp6", packet.ProtoSCTP, true}, {"icmp6", packet.ProtoICMPv6, true},
	}
	for i, s := range states {
		ifindex := 200 + i
		// The opposite direction is the opposite extreme, to show directions are independent.
		other := rules.StateUnprogrammedDeny
		if s.want == VerdictDeny {
			other = rules.StateUnisolated
		}
		if _, err := d.Register(ifindex, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
			t.Fatal(err)
		}
		for _, dir := range []rules.Direction{rules.Ingress, rules.Egress} {
			pr := &rules.PodRules{}
			pr.Dir(dir).State = s.state
			pr.Dir(1 - dir).State = other
			if _, err := d.Program(ifindex, pr); err != nil {
				t.Fatal(err)
			}
			var cases []runCase
			for _, p := range protos {
				remote := "10.7.0.1"
				if p.v6 {
					remote = "fd00:7::1"
				}
				f := egress(p.proto, remote, 443)
				if dir == rules.Ingress {
					f = ingress(p.proto, remote, 443)
				}
				cases = append(cases, runCase{s.state.String() + " " + dir.String() + " " + p.name, dir, f, s.want, s.rule, s.reason})
				// Unparseable packets follow the state too.
				cases = append(cases, runCase{s.state.String() + " " + dir.String() + " unparseable", dir,
					packet.Ethernet(packet.EtherTypeVLAN, make([]byte, 40)), s.want, s.rule, ReasonUnparseable})
			}
			runCases(t, d, ifindex, cases)
		}
	}
	// SetState refuses isolation without rules and bumps the generation.
	if _, err := d.SetState(200, rules.Egress, rules.StateIsolated); !errors.Is(err, ErrInvalidRules) {
		t.Errorf("SetState(isolated) = %v, want ErrInvalidRules", err)
	}
	before, _ := d.Pod(200)
	gen, err := d.SetState(200, rules.Egress, rules.StateUnisolated)
	if err != nil || gen != before.Generation+1 {
		t.Errorf("SetState = %d, %v; want generation %d", gen, err, before.Generation+1)
	}
	if _, err := d.RunPacket(999, rules.Egress, egress(packet.ProtoTCP, "10.7.0.1", 1)); !errors.Is(err, ErrNoPod) {
		t.Errorf("RunPacket on an unknown pod = %v, want ErrNoPod", err)
	}
}

func TestPrivilegedRunPacketConntrack(t *testing.T) {
	d := openEphemeral(t)
	const pod = 300
	if _, err := d.Register(pod, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
		t.Fatal(err)
	}
	pr := &rules.PodRules{
		Ingress: rules.DirectionRules{State: rules.StateIsolated},
		Egress: rules.DirectionRules{State: rules.StateIsolated, Entries: []rules.Entry{
			{Prefix: mustPrefix("10.5.0.0/16"), Ports: []rules.PortRule{tcpRule(80, 80, 1), {Protocol: rules.ProtocolUDP, First: 53, Last: 53, Rule: 2}}},
			{Prefix: mustPrefix("fd00:5::/64"), Ports: []rules.PortRule{{Protocol: rules.ProtocolAny, First: 0, Last: 65535, Rule: 3}}},
		}},
	}
	gen1, err := d.Program(pod, pr)
	if err != nil {
		t.Fatal(err)
	}
	pod4, rem4 := mustAddrPort("10.0.0.1:40000"), mustAddrPort("10.5.0.9:80")
	pod6, rem6 := mustAddr(podV6), mustAddr("fd00:5::9")
	udpPod, udpRem := mustAddrPort("10.0.0.1:40001"), mustAddrPort("10.5.0.9:53")
	udpSent := packet.Packet{Src: udpPod.Addr(), Dst: udpRem.Addr(), Protocol: packet.ProtoUDP, SrcPort: udpPod.Port(), DstPort: udpRem.Port()}
	udpIP, _ := udpSent.IP()
	strangerIP, _ := packet.Packet{Src: udpPod.Addr(), Dst: udpRem.Addr(), Protocol: packet.ProtoUDP, SrcPort: 1, DstPort: 2}.IP()
	ct, pol := ReasonConntrack, ReasonPolicy
	E, I := rules.Egress, rules.Ingress
	runCases(t, d, pod, []runCase{
		{"syn out", E, packet.TCP(pod4, rem4, packet.SYN), VerdictAllow, 1, pol},
		{"syn-ack back", I, packet.TCP(rem4, pod4, packet.SYN|packet.ACK), VerdictAllow, rules.RuleConntrack, ct},
		{"ack out", E, packet.TCP(pod4, rem4, packet.ACK), VerdictAllow, rules.RuleConntrack, ct},
		{"other port of the same remote", I, packet.TCP(mustAddrPort("10.5.0.9:81"), pod4, packet.SYN), VerdictDeny, rules.RuleNone, pol},
		{"remote opens to the pod", I, packet.TCP(rem4, mustAddrPort("10.0.0.1:22"), packet.SYN), VerdictDeny, rules.RuleNone, pol},
		{"udp out", E, packet.UDP(udpPod, udpRem), VerdictAllow, 2, pol},
		{"udp reply", I, packet.UDP(udpRem, udpPod), VerdictAllow, rules.RuleConntrack, ct},
		{"icmp error about the udp flow", I, packet.ICMPUnreachable(mustAddr("10.5.0.1"), udpPod.Addr(), udpIP), VerdictAllow, rules.RuleConntrack, ReasonRelated},
		{"icmp error about an unknown flow", I, packet.ICMPUnreachable(mustAddr("10.5.0.1"), udpPod.Addr(), strangerIP), VerdictDeny, rules.RuleNone, pol},
		{"icmpv6 echo out", E, packet.ICMPEcho(pod6, rem6, false), VerdictAllow, 3, pol},
		{"icmpv6 echo reply", I, packet.ICMPEcho(rem6, pod6, true), VerdictAllow, rules.RuleConntrack, ct},
		{"icmp echo to a denied remote", E, packet.ICMPEcho(mustAddr(podV4), mustAddr("10.6.0.1"), false), VerdictDeny, rules.RuleNone, pol},
		{"fin out", E, packet.TCP(pod4, rem4, packet.FIN|packet.ACK), VerdictAllow, rules.RuleConntrack, ct},
		{"fin back", I, packet.TCP(rem4, pod4, packet.FIN|packet.ACK), VerdictAllow, rules.RuleConntrack, ct},
		// A new SYN on a closed tuple is judged afresh (and allowed again by the rule).
		{"syn reuses closed tuple", E, packet.TCP(pod4, rem4, packet.SYN), VerdictAllow, 1, pol},
	})

	// Generation flip: the same connection under new rules.
	t.Run("recheck", func(t *testing.T) {
		c4, r4 := mustAddrPort("10.0.0.1:41000"), mustAddrPort("10.5.0.10:80")
		runCases(t, d, pod, []runCase{{"open", E, packet.TCP(c4, r4, packet.SYN), VerdictAllow, 1, pol}})
		pr2 := *pr
		pr2.Egress.Entries = []rules.Entry{{Prefix: mustPrefix("10.5.0.0/16"), Ports: []rules.PortRule{tcpRule(80, 80, 42)}}}
		gen2, err := d.Program(pod, &pr2)
		if err != nil || gen2 != gen1+1 {
			t.Fatalf("Program = %d, %v; want generation %d", gen2, err, gen1+1)
		}
		runCases(t, d, pod, []runCase{
			{"reply re-checked under the new rule", I, packet.TCP(r4, c4, packet.SYN|packet.ACK), VerdictAllow, 42, ReasonRecheck},
			{"then conntrack again", E, packet.TCP(c4, r4, packet.ACK), VerdictAllow, rules.RuleConntrack, ct},
		})
		pr3 := *pr
		pr3.Egress.Entries = nil
		if _, err := d.Program(pod, &pr3); err != nil {
			t.Fatal(err)
		}
		runCases(t, d, pod, []runCase{
			{"reply cut by the new policy", I, packet.TCP(r4, c4, packet.ACK), VerdictDeny, rules.RuleNone, pol},
			{"and stays cut", E, packet.TCP(c4, r4, packet.ACK), VerdictDeny, rules.RuleNone, pol},
		})
		res, err := d.RunPacket(pod, E, packet.TCP(c4, r4, packet.ACK))
		if err != nil || res.Generation != gen2+1 {
			t.Errorf("generation in result = %d, %v; want %d", res.Generation, err, gen2+1)
		}
		st, err := d.Stats()
		if err != nil || st.ConntrackRecheckDenied == 0 {
			t.Errorf("stats %+v, %v: want a recheck denial counted", st, err)
		}
	})
}

func TestPrivilegedRunPacketAuditHostCountersEvents(t *testing.T) {
	d := openEphemeral(t)
	const pod = 400
	if _, err := d.Register(pod, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
		t.Fatal(err)
	}
	iso := &rules.PodRules{Ingress: rules.DirectionRules{State: rules.StateIsolated}, Egress: rules.DirectionRules{State: rules.StateIsolated}}
	if _, err := d.Program(pod, iso); err != nil {
		t.Fatal(err)
	}
	if err := d.SetEventMode(EventsAll); err != nil {
		t.Fatal(err)
	}
	if err := d.SetRateLimit(0, 0); err != nil {
		t.Fatal(err)
	}
	rd, err := d.NewEventReader()
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()

	c, r := mustAddrPort("10.0.0.1:42000"), mustAddrPort("10.5.0.11:80")
	E, I := rules.Egress, rules.Ingress
	t.Run("audit", func(t *testing.T) {
		if err := d.SetAudit(pod, true); err != nil {
			t.Fatal(err)
		}
		runCases(t, d, pod, []runCase{
			{"would-be drop passes as audit", E, packet.TCP(c, r, packet.SYN), VerdictAudit, rules.RuleNone, ReasonPolicy},
			{"its reply too", I, packet.TCP(r, c, packet.SYN|packet.ACK), VerdictAudit, rules.RuleConntrack, ReasonConntrack},
		})
		if err := d.SetAudit(pod, false); err != nil {
			t.Fatal(err)
		}
		runCases(t, d, pod, []runCase{
			{"audit off: the flow is re-checked and dropped", E, packet.TCP(c, r, packet.ACK), VerdictDeny, rules.RuleNone, ReasonPolicy},
		})
		if err := d.SetGlobalAudit(true); err != nil {
			t.Fatal(err)
		}
		runCases(t, d, pod, []runCase{
			{"global audit", E, packet.TCP(c, r, packet.ACK), VerdictAudit, rules.RuleNone, ReasonPolicy},
		})
		if err := d.SetGlobalAudit(false); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("host", func(t *testing.T) {
		if err := d.SetHostAddrs([]netip.Addr{mustAddr("10.0.0.254"), mustAddr("fd00::fe")}); err != nil {
			t.Fatal(err)
		}
		kubelet := mustAddrPort("10.0.0.254:50000")
		runCases(t, d, pod, []runCase{
			{"probe from the node", I, packet.TCP(kubelet, mustAddrPort("10.0.0.1:8080"), packet.SYN), VerdictAllow, rules.RuleHost, ReasonHost},
			{"v6 to the node", E, packet.UDP(mustAddrPort("[fd00::1]:1"), mustAddrPort("[fd00::fe]:2")), VerdictAllow, rules.RuleHost, ReasonHost},
		})
		if err := d.SetAllowHost(false); err != nil {
			t.Fatal(err)
		}
		runCases(t, d, pod, []runCase{
			{"host traffic switched off", I, packet.TCP(kubelet, mustAddrPort("10.0.0.1:8081"), packet.SYN), VerdictDeny, rules.RuleNone, ReasonPolicy},
		})
		if err := d.SetAllowHost(true); err != nil {
			t.Fatal(err)
		}
		if err := d.SetHostAddrs([]netip.Addr{mustAddr("10.0.0.253")}); err != nil {
			t.Fatal(err)
		}
		if got, _ := d.HostAddrs(); len(got) != 1 || got[0] != mustAddr("10.0.0.253") {
			t.Errorf("HostAddrs = %v, want [10.0.0.253]", got)
		}
	})
	t.Run("counters", func(t *testing.T) {
		pc, err := d.PodCounters(pod)
		if err != nil {
			t.Fatal(err)
		}
		// From above: egress audit 2, deny 1; ingress audit 1, allow 1 (host), deny 1; egress allow 1 (host).
		want := map[[2]int]uint64{
			{int(E), int(VerdictAudit)}: 2, {int(E), int(VerdictDeny)}: 1, {int(E), int(VerdictAllow)}: 1,
			{int(I), int(VerdictAudit)}: 1, {int(I), int(VerdictDeny)}: 1, {int(I), int(VerdictAllow)}: 1,
		}
		for k, n := range want {
			got := pc.Get(rules.Direction(k[0]), Verdict(k[1]))
			if got.Packets != n || got.Bytes == 0 {
				t.Errorf("%s %s: %+v, want %d packets", rules.Direction(k[0]), Verdict(k[1]), got, n)
			}
		}
	})
	t.Run("events", func(t *testing.T) {
		rd.SetDeadline(time.Now().Add(2 * time.Second))
		e, err := rd.Read()
		if err != nil {
			t.Fatal(err)
		}
		if e.Ifindex != pod || e.Direction != E || e.Verdict != VerdictAudit || e.Rule != rules.RuleNone ||
			e.Src != c || e.Dst != r || e.Protocol != rules.ProtocolTCP || e.Bytes == 0 || time.Since(e.Time) > time.Minute {
			t.Errorf("first event %+v, want the audited SYN %s -> %s", e, c, r)
		}
		// Rate limit: one event per CPU, then silence.
		if err := d.SetRateLimit(1, 1); err != nil {
			t.Fatal(err)
		}
		drain(rd)
		before, _ := d.Stats()
		for i := 0; i < 50; i++ {
			d.RunPacket(pod, E, egress(packet.ProtoUDP, "10.6.6.6", 1))
		}
		after, _ := d.Stats()
		n := drain(rd)
		limited := after.EventsRateLimited - before.EventsRateLimited
		if n > 2 || limited < 48 || n+int(limited) != 50 {
			t.Errorf("50 denials with limit 1/s: %d events, %d rate-limited; want ≤2 and the rest limited", n, limited)
		}
		if err := d.SetEventMode(EventsNone); err != nil {
			t.Fatal(err)
		}
		d.RunPacket(pod, E, egress(packet.ProtoUDP, "10.6.6.6", 1))
		if n := drain(rd); n != 0 {
			t.Errorf("events with mode none: %d", n)
		}
	})
}

// drain reads events until none arrives for a short while and returns how many.
func drain(rd *EventReader) int {
	n := 0
	for {
		rd.SetDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := rd.Read(); err != nil {
			return n
		}
		n++
	}
}
