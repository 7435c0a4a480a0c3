package datapath

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strictgate/strictgate/agent/datapath/packet"
	"github.com/strictgate/strictgate/agent/rules"
)

// sendRaw writes hand-built IP packets from inside pod p's namespace (a raw socket: the
// kernel routes them and keeps the source address they carry).
func (p *nsPod) sendRaw(t *testing.T, pkt packet.Packet, n int) {
	t.Helper()
	b, err := pkt.IP()
	if err != nil {
		t.Fatal(err)
	}
	err = inNS(p.ns, func() error {
		var family int
		var sa unix.Sockaddr
		if pkt.Dst.Is4() {
			family, sa = unix.AF_INET, &unix.SockaddrInet4{Addr: pkt.Dst.As4()}
		} else {
			family, sa = unix.AF_INET6, &unix.SockaddrInet6{Addr: pkt.Dst.As16()}
		}
		fd, err := unix.Socket(family, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for range n {
			if err := unix.Sendto(fd, b, 0, sa); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: raw send: %v", p.name, err)
	}
}

// TestPrivilegedNetnsSourceValidation: a pod whose egress is open writes another pod's
// address, or an address an ipBlock of the victim admits, as the source of its
// packets. The victim admits exactly those sources; the datapath must drop the packets
// at the sender's interface (they are not routed back through it), so the victim's
// socket never sees them, while the real owner of the address still gets through.
func TestPrivilegedNetnsSourceValidation(t *testing.T) {
	env := newNSEnv(t, 3)
	attacker, trusted, victim := env.pods[0], env.pods[1], env.pods[2]
	echo := victim.serveUDP(9090)
	outside4, outside6 := netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::7")
	spoofs := []netip.Addr{trusted.v4, outside4, trusted.v6, outside6}
	send := func(src netip.Addr) {
		dst := victim.v4
		if src.Is6() {
			dst = victim.v6
		}
		attacker.sendRaw(t, packet.Packet{Src: src, Dst: dst, Protocol: unix.IPPROTO_UDP, SrcPort: 4242, DstPort: 9090, Payload: []byte("spoofed")}, 5)
	}
	// Without the datapath the spoofed datagrams arrive: the harness can spoof. A real
	// round trip first resolves the neighbours on the way (IPv6 waits for them).
	for _, to := range []netip.AddrPort{netip.AddrPortFrom(victim.v4, 9090), netip.AddrPortFrom(victim.v6, 9090)} {
		if !attacker.udpRoundTrip(to, okTimeout) || !trusted.udpRoundTrip(to, okTimeout) {
			t.Fatalf("no datapath: no answer from %s", to)
		}
	}
	base0 := echo.count(9090)
	for _, src := range spoofs {
		send(src)
	}
	waitCount := func(want int) int {
		deadline := time.Now().Add(5 * time.Second)
		for echo.count(9090) < want && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		return echo.count(9090)
	}
	if got := waitCount(base0+5*len(spoofs)) - base0; got != 5*len(spoofs) {
		t.Fatalf("without the datapath %d of %d spoofed datagrams arrived: the harness cannot spoof", got, 5*len(spoofs))
	}

	d := openPinned(t, tempPinRoot(t), Options{})
	env.attachAll(d)
	udp := []rules.PortRule{{Protocol: rules.ProtocolUDP, First: 9090, Last: 9090, Rule: 1}}
	admitted := append(hostPrefixes(trusted), netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32"))
	var entries []rules.Entry
	for _, p := range admitted {
		entries = append(entries, rules.Entry{Prefix: p, Ports: udp})
	}
	for _, pr := range []struct {
		p *nsPod
		r *rules.PodRules
	}{
		{attacker, &rules.PodRules{Ingress: rules.DirectionRules{State: rules.StateIsolated}, Egress: rules.DirectionRules{State: rules.StateUnisolated}}},
		{trusted, &rules.PodRules{Ingress: rules.DirectionRules{State: rules.StateIsolated}, Egress: rules.DirectionRules{State: rules.StateUnisolated}}},
		{victim, &rules.PodRules{Ingress: rules.DirectionRules{State: rules.StateIsolated, Entries: entries}, Egress: rules.DirectionRules{State: rules.StateIsolated}}},
	} {
		if _, err := d.Program(pr.p.ifindex, pr.r); err != nil {
			t.Fatalf("program %s: %v", pr.p.name, err)
		}
	}
	before, err := d.PodCounters(attacker.ifindex)
	if err != nil {
		t.Fatal(err)
	}
	base := echo.count(9090)
	for _, src := range spoofs {
		send(src)
	}
	time.Sleep(1500 * time.Millisecond) // as long as neighbour discovery held them above
	if got := echo.count(9090) - base; got != 0 {
		t.Errorf("victim received %d spoofed datagrams: spoofed sources passed the attacker's interface", got)
	}
	// The owner of the address is admitted (the victim answers through conntrack).
	for _, to := range []netip.AddrPort{netip.AddrPortFrom(victim.v4, 9090), netip.AddrPortFrom(victim.v6, 9090)} {
		if !trusted.udpRoundTrip(to, okTimeout) {
			t.Fatalf("trusted -> %s: no answer; source validation must not drop a pod's own address", to)
		}
	}
	after, err := d.PodCounters(attacker.ifindex)
	if err != nil {
		t.Fatal(err)
	}
	if n := after.Get(rules.Egress, VerdictDeny).Packets - before.Get(rules.Egress, VerdictDeny).Packets; n < uint64(5*len(spoofs)) {
		t.Errorf("attacker egress DENY counter +%d, want at least %d (every spoofed packet counted)", n, 5*len(spoofs))
	}
}
