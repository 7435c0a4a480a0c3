package datapath

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strictgate/strictgate/agent/rules"
)

// udpSink counts datagrams per port without answering.
func (p *nsPod) udpSink(first, last int) *udpEcho {
	t := p.env.t
	u := &udpEcho{counts: map[int]int{}}
	for port := first; port <= last; port++ {
		var c net.PacketConn
		err := inNS(p.ns, func() (err error) {
			c, err = net.ListenPacket("udp", fmt.Sprintf(":%d", port))
			return err
		})
		if err != nil {
			t.Fatalf("%s listen udp %d: %v", p.name, port, err)
		}
		t.Cleanup(func() { c.Close() })
		go func() {
			buf := make([]byte, 64)
			for {
				if _, _, err := c.ReadFrom(buf); err != nil {
					return
				}
				u.mu.Lock()
				u.counts[port]++
				u.mu.Unlock()
			}
		}()
	}
	return u
}

// TestPrivilegedNetnsReprogramUnderFlood re-programs a pod's egress hundreds of times
// while it floods UDP to 100 ports of another pod. Every rule set allows ports
// 9000-9049 and denies 9050-9099, each in a different shape (narrower prefixes inside
// broader allows, holes, per-port rules); a window in the update protocol would let a
// datagram to a denied port through.
func TestPrivilegedNetnsReprogramUnderFlood(t *testing.T) {
	env := newNSEnv(t, 3)
	a, b := env.pods[0], env.pods[1]
	sink := b.udpSink(9000, 9099)
	d := openPinned(t, tempPinRoot(t), Options{})
	defer env.inNode(d.Remove)
	env.attachAll(d)
	if _, err := d.Program(b.ifindex, &rules.PodRules{Ingress: rules.DirectionRules{State: rules.StateUnisolated}, Egress: rules.DirectionRules{State: rules.StateUnisolated}}); err != nil {
		t.Fatal(err)
	}

	udp := func(first, last uint16, id rules.RuleID) rules.PortRule {
		return rules.PortRule{Protocol: rules.ProtocolUDP, First: first, Last: last, Rule: id}
	}
	any := func(first, last uint16, id rules.RuleID) rules.PortRule {
		return rules.PortRule{Protocol: rules.ProtocolAny, First: first, Last: last, Rule: id}
	}
	b32 := netip.PrefixFrom(b.v4, 32)
	perPort := []rules.PortRule{tcpRule(1, 65535, 99)}
	for p := uint16(9000); p < 9050; p++ {
		perPort = append(perPort, udp(p, p, rules.RuleID(p)))
	}
	sets := [][]rules.Entry{
		{{Prefix: b32, Ports: []rules.PortRule{udp(9000, 9049, 1)}}},
		// No /32: the next set allows 9000-9099 on this /24 and narrows B with a /32, so
		// an update that wrote the /24 before the /32 into live rules would leak.
		{{Prefix: mustPrefix("10.200.0.0/24"), Ports: []rules.PortRule{udp(9000, 9049, 13)}}},
		append(append([]rules.Entry{{Prefix: mustPrefix("10.200.0.0/24"), Ports: []rules.PortRule{udp(9000, 9099, 2)}}},
			// Fillers widen the window an update into live rules would open between the
			// /24 and B's /32 (milliseconds instead of microseconds).
			prefixes(11, 2000, []rules.PortRule{udp(1, 1, 14)})...),
			rules.Entry{Prefix: b32, Ports: []rules.PortRule{udp(9000, 9024, 3), udp(9025, 9049, 4)}}),
		{
			{Prefix: mustPrefix("10.200.0.0/16"), Ports: []rules.PortRule{udp(9000, 9099, 5)}},
			{Prefix: mustPrefix("10.200.0.0/24")},
			{Prefix: b32, Ports: perPort},
		},
		{
			{Prefix: mustPrefix("0.0.0.0/0"), Ports: []rules.PortRule{any(0, 65535, 6)}},
			{Prefix: mustPrefix("10.200.0.0/30")},
			{Prefix: b32, Ports: []rules.PortRule{any(9000, 9049, 7)}},
			{Prefix: mustPrefix("::/0"), Ports: []rules.PortRule{any(0, 65535, 8)}},
		},
		{
			{Prefix: b32, Ports: []rules.PortRule{tcpRule(9050, 9099, 9), udp(9000, 9010, 10), udp(9011, 9049, 11)}},
			{Prefix: netip.PrefixFrom(b.v6, 128), Ports: []rules.PortRule{udp(9000, 9099, 12)}},
		},
	}

	sock := a.udpSocket()
	var stop atomic.Bool
	var sent atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		msg := []byte("flood")
		for !stop.Load() {
			for port := 9000; port < 9100; port++ {
				if _, err := sock.WriteToUDPAddrPort(msg, netip.AddrPortFrom(b.v4, uint16(port))); err == nil {
					sent.Add(1)
				}
			}
			time.Sleep(2 * time.Millisecond) // ~50k packets/s: a flood that leaves the CPUs to others
		}
	}()

	programs := 0
	deadline := time.Now().Add(2 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		pr := &rules.PodRules{
			Egress: rules.DirectionRules{State: rules.StateIsolated, Entries: sets[i%len(sets)]},
			// Ingress changes too, so both directions flip together.
			Ingress: rules.DirectionRules{State: []rules.State{rules.StateIsolated, rules.StateUnisolated}[i%2]},
		}
		if _, err := d.Program(a.ifindex, pr); err != nil {
			t.Fatalf("program %d: %v", i, err)
		}
		programs++
		time.Sleep(time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	time.Sleep(200 * time.Millisecond)

	leaked, delivered := 0, 0
	for port := 9000; port < 9100; port++ {
		n := sink.count(port)
		if port >= 9050 {
			leaked += n
			if n > 0 {
				t.Errorf("port %d is denied by every rule set, yet %d datagrams arrived", port, n)
			}
			continue
		}
		delivered += n
		if n == 0 {
			t.Errorf("port %d is allowed by every rule set, yet nothing arrived", port)
		}
	}
	pc, _ := d.PodCounters(a.ifindex)
	t.Logf("%d re-programs, %d datagrams sent, %d delivered to allowed ports, %d leaked; egress counters %+v",
		programs, sent.Load(), delivered, leaked, pc.ByDir[rules.Egress])
	if programs < 20 {
		t.Errorf("only %d re-programs in 2 s: the test did not stress the flip", programs)
	}
	if pc.Get(rules.Egress, VerdictDeny).Packets == 0 {
		t.Error("no denied packet counted: the flood did not test the denies")
	}
}
