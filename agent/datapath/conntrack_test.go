package datapath

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strictgate/strictgate/agent/datapath/packet"
	"github.com/strictgate/strictgate/agent/rules"
)

func monotonicNow(t *testing.T) uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano())
}

// ageEntry pretends the conntrack entry of (pod, remote) was last seen `age` ago.
func ageEntry(t *testing.T, d *Datapath, ifindex int, proto uint8, pod, remote netip.AddrPort, age time.Duration) bpfSgCtVal {
	t.Helper()
	k := bpfSgCtKey{Ifindex: uint32(ifindex), Proto: proto, PodAddr: pod.Addr().As16(), RemoteAddr: remote.Addr().As16(),
		PodPortNetwork: htons(pod.Port()), RemotePortNetwork: htons(remote.Port())}
	var v bpfSgCtVal
	if err := d.objs.SgCt.Lookup(&k, &v); err != nil {
		t.Fatalf("conntrack entry %s <-> %s: %v", pod, remote, err)
	}
	v.LastSeenNs = monotonicNow(t) - uint64(age)
	if err := d.objs.SgCt.Update(&k, &v, 0); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestPrivilegedConntrackTimeouts checks the idle timeouts by ageing entries.
func TestPrivilegedConntrackTimeouts(t *testing.T) {
	d := openEphemeral(t)
	const pod = 900
	if _, err := d.Register(pod, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Program(pod, &rules.PodRules{
		Ingress: rules.DirectionRules{State: rules.StateIsolated},
		Egress: rules.DirectionRules{State: rules.StateIsolated, Entries: []rules.Entry{{Prefix: mustPrefix("10.5.0.0/16"),
			Ports: []rules.PortRule{{Protocol: rules.ProtocolAny, First: 0, Last: 65535, Rule: 1}}}}},
	}); err != nil {
		t.Fatal(err)
	}
	E, I := rules.Egress, rules.Ingress
	for i, c := range []struct {
		name     string
		proto    uint8
		setup    [][2]uint8 // (dir, tcp flags) packets before ageing
		age      time.Duration
		survives bool
	}{
		{"udp fresh", packet.ProtoUDP, nil, 30 * time.Second, true},
		{"udp idle", packet.ProtoUDP, nil, 61 * time.Second, false},
		{"tcp opening idle", packet.ProtoTCP, nil, 61 * time.Second, false},
		{"tcp established", packet.ProtoTCP, [][2]uint8{{uint8(I), packet.SYN | packet.ACK}}, 2 * time.Hour, true},
		{"tcp established idle", packet.ProtoTCP, [][2]uint8{{uint8(I), packet.SYN | packet.ACK}}, 7 * time.Hour, false},
		{"tcp closed", packet.ProtoTCP, [][2]uint8{{uint8(I), packet.SYN | packet.ACK}, {uint8(E), packet.FIN | packet.ACK}, {uint8(I), packet.FIN | packet.ACK}}, 11 * time.Second, false},
		{"tcp reset", packet.ProtoTCP, [][2]uint8{{uint8(I), packet.RST}}, 11 * time.Second, false},
		{"tcp half closed", packet.ProtoTCP, [][2]uint8{{uint8(I), packet.SYN | packet.ACK}, {uint8(E), packet.FIN | packet.ACK}}, 11 * time.Second, true},
	} {
		local := netip.AddrPortFrom(mustAddr(podV4), uint16(43000+i))
		remote := netip.AddrPortFrom(mustAddr("10.5.0.1"), 80)
		mk := func(dir rules.Direction, flags uint8) []byte {
			p := packet.Packet{Src: local.Addr(), Dst: remote.Addr(), SrcPort: local.Port(), DstPort: remote.Port(), Protocol: c.proto, TCPFlags: flags}
			if dir == I {
				p.Src, p.Dst, p.SrcPort, p.DstPort = remote.Addr(), local.Addr(), remote.Port(), local.Port()
			}
			return p.MustFrame()
		}
		if r, err := d.RunPacket(pod, E, mk(E, packet.SYN)); err != nil || r.Verdict != VerdictAllow {
			t.Fatalf("%s: opening packet %+v %v", c.name, r, err)
		}
		for _, s := range c.setup {
			if r, err := d.RunPacket(pod, rules.Direction(s[0]), mk(rules.Direction(s[0]), s[1])); err != nil || r.Verdict != VerdictAllow {
				t.Fatalf("%s: setup packet %+v %v", c.name, r, err)
			}
		}
		ageEntry(t, d, pod, c.proto, local, remote, c.age)
		r, err := d.RunPacket(pod, I, mk(I, packet.ACK))
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Verdict == VerdictAllow; got != c.survives {
			t.Errorf("%s: reply after %v idle: %s (%s), want survives=%v", c.name, c.age, r.Verdict, r.Reason, c.survives)
		}
	}
	if st, _ := d.Stats(); st.ConntrackExpired != 5 {
		t.Errorf("ConntrackExpired = %d, want 5", st.ConntrackExpired)
	}
}
