package datapath

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/strictgate/strictgate/agent/datapath/packet"
	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/internal/contract"
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
	split := min(len(es), contract.MaxPrefixesPerPodDirection)
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
	ports := make([]rules.PortRule, contract.MaxPortRulesPerEntry)
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

// BenchmarkProgramDuringQuarantine reprograms small pods (4 prefixes sharing one port
// list that stays allocated) in parallel while a heavy pod churns the port table: it
// frees half the table and at once asks for it again, so its every Program waits for the
// freed ranges to leave quarantine. The small pods must not wait with it: the wait
// happens outside the datapath lock.
func BenchmarkProgramDuringQuarantine(b *testing.B) {
	d := openEphemeral(b)
	const heavy = 3000
	lists := contract.MaxPortRules / contract.MaxPortRulesPerEntry
	for _, ifindex := range []int{heavy, heavy + 1} {
		if _, err := d.Register(ifindex, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
			b.Fatal(err)
		}
	}
	// Most of the other half stays in use (room is left for the small pods' list).
	if _, err := d.Program(heavy+1, fullPortRules(200, lists/2-1)); err != nil {
		b.Fatal(err)
	}
	isolated := &rules.PodRules{Ingress: rules.DirectionRules{State: rules.StateIsolated}, Egress: rules.DirectionRules{State: rules.StateIsolated}}
	stop, churned := make(chan struct{}), make(chan int)
	go func() {
		n := 0
		defer func() { churned <- n }()
		for seed := 1; ; seed++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := d.Program(heavy, fullPortRules(seed%100+1, lists/2)); err != nil {
				b.Error(err)
				return
			}
			if _, err := d.Program(heavy, isolated); err != nil {
				b.Error(err)
				return
			}
			n++
		}
	}()
	small := make(chan int, 64)
	for i := range 64 {
		ifindex := 4000 + i
		if _, err := d.Register(ifindex, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
			b.Fatal(err)
		}
		small <- ifindex
	}
	pr := benchRules(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ifindex := <-small
		for pb.Next() {
			if _, err := d.Program(ifindex, pr); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	close(stop)
	b.ReportMetric(float64(<-churned), "heavy-reprograms")
}
