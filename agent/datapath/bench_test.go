package datapath

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/strictgate/strictgate/agent/datapath/packet"
	"github.com/strictgate/strictgate/agent/rules"
)

// runRepeat runs frame n times through the program in one BPF_PROG_TEST_RUN call.
func (d *Datapath) runRepeat(ifindex int, dir rules.Direction, frame []byte, n int) error {
	in := bpfSgSkbCtx{Mark: uint32(ifindex)}
	_, err := d.program(dir).Run(&ebpf.RunOptions{Data: frame, Context: &in, Repeat: uint32(n)})
	return err
}

// benchRules makes n egress prefixes (90% pod /32s, 10% CIDRs /16-/28 in 10.0.0.0/8),
// all sharing one list of 8 port rules; the pod's first /32 is 10.0.0.1.
func benchRules(n int) *rules.PodRules {
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	ports := make([]rules.PortRule, 8)
	for i := range ports {
		ports[i] = tcpRule(uint16(1000*(i+1)), uint16(1000*(i+1)+10), rules.RuleID(i+1))
	}
	seen := map[netip.Prefix]bool{}
	var es []rules.Entry
	add := func(p netip.Prefix) {
		if !seen[p] {
			seen[p] = true
			es = append(es, rules.Entry{Prefix: p, Ports: ports})
		}
	}
	add(mustPrefix("10.0.0.1/32"))
	for len(es) < n {
		a := netip.AddrFrom4([4]byte{10, byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))})
		bits := 32
		if rng.IntN(10) == 0 {
			bits = 16 + rng.IntN(13)
		}
		add(netip.PrefixFrom(a, bits).Masked())
	}
	pr := &rules.PodRules{Ingress: rules.DirectionRules{State: rules.StateIsolated}, Egress: rules.DirectionRules{State: rules.StateIsolated}}
	// One direction holds at most MaxPrefixesPerPodDirection: the rest go to ingress.
	split := min(len(es), rules.MaxPrefixesPerPodDirection)
	pr.Egress.Entries, pr.Ingress.Entries = es[:split], es[split:]
	return pr
}

// BenchmarkRunPacket measures ns per packet through the real program (BPF_PROG_TEST_RUN,
// repeated in the kernel) with n prefixes in the trie:
//   - lookup: a first packet (conntrack miss) to a prefix whose 8 port rules all miss:
//     trie lookup + full scan, then DROP; the worst case for an ordinary packet;
//   - allow: a first packet allowed by the 8th rule (scan + conntrack create), repeated,
//     so after the first run it measures
//   - conntrack: an established connection's packet (the common case).
//   - scan512: a prefix with MaxPortRulesPerEntry rules, the last one matching: the
//     longest scan a packet can cause.
func BenchmarkRunPacket(b *testing.B) {
	d := openEphemeral(b)
	if err := d.SetEventMode(EventsNone); err != nil {
		b.Fatal(err)
	}
	podAddr := mustAddr("10.255.0.1")
	for _, n := range []int{10, 1000, 10000, 100000} {
		ifindex := 1000 + n
		if _, err := d.Register(ifindex, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
			b.Fatal(err)
		}
		if _, err := d.Program(ifindex, benchRules(n)); err != nil {
			b.Fatal(err)
		}
		name := fmt.Sprintf("rules=%d", n)
		if n >= 1000 {
			name = fmt.Sprintf("rules=%dk", n/1000)
		}
		denied := packet.Flow(packet.ProtoTCP, podAddr, 40000, mustAddr("10.0.0.1"), 80)
		allowed := packet.Flow(packet.ProtoTCP, podAddr, 40001, mustAddr("10.0.0.1"), 8005)
		if r, err := d.RunPacket(ifindex, rules.Egress, denied); err != nil || r.Verdict != VerdictDeny {
			b.Fatalf("denied probe: %+v %v", r, err)
		}
		if r, err := d.RunPacket(ifindex, rules.Egress, allowed); err != nil || r.Rule != 8 {
			b.Fatalf("allowed probe: %+v %v", r, err)
		}
		b.Run(name+"/lookup", func(b *testing.B) {
			if err := d.runRepeat(ifindex, rules.Egress, denied, b.N); err != nil {
				b.Fatal(err)
			}
		})
		b.Run(name+"/conntrack", func(b *testing.B) {
			if err := d.runRepeat(ifindex, rules.Egress, allowed, b.N); err != nil {
				b.Fatal(err)
			}
		})
	}
	// The longest scan.
	ports := make([]rules.PortRule, rules.MaxPortRulesPerEntry)
	for i := range ports {
		ports[i] = tcpRule(uint16(i+1), uint16(i+1), rules.RuleID(i+1))
	}
	if _, err := d.Register(999, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
		b.Fatal(err)
	}
	if _, err := d.Program(999, isolatedEgress([]rules.Entry{{Prefix: mustPrefix("10.0.0.0/8"), Ports: ports}})); err != nil {
		b.Fatal(err)
	}
	scan := packet.Flow(packet.ProtoUDP, podAddr, 40002, mustAddr("10.1.1.1"), 512) // UDP: every TCP rule misses
	b.Run("scan512/lookup", func(b *testing.B) {
		if err := d.runRepeat(999, rules.Egress, scan, b.N); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkProgram measures one atomic re-program of a pod (write the new generation,
// flip, delete the old) with n prefixes sharing one port list.
func BenchmarkProgram(b *testing.B) {
	d := openEphemeral(b)
	for _, n := range []int{10, 1000, 10000} {
		ifindex := 2000 + n
		if _, err := d.Register(ifindex, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
			b.Fatal(err)
		}
		pr := benchRules(n)
		b.Run(fmt.Sprintf("prefixes=%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := d.Program(ifindex, pr); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/prefix")
		})
	}
}
