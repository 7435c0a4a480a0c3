package datapath

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/strictgate/strictgate/agent/datapath/packet"
	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/internal/contract"
)

// TestMapSizes checks that the compiled maps are sized from the limits the compiler uses.
func TestMapSizes(t *testing.T) {
	spec, err := loadBpf()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]uint32{
		bpfMapSgPods:      contract.MaxPods,
		bpfMapSgSlots:     contract.MaxPods,
		bpfMapSgRules:     contract.MaxPrefixes,
		bpfMapSgPortRules: contract.MaxPortRules,
		bpfMapSgCt:        contract.MaxConntrack,
		bpfMapSgCounters:  contract.MaxPods * 2 * contract.NumVerdicts,
		bpfMapSgHostAddrs: uint32(maxHostAddrs),
		bpfMapSgFrags:     maxFragments,
		bpfMapSgEvents:    eventsBytes,
	} {
		if got := spec.Maps[name].MaxEntries; got != want {
			t.Errorf("map %s has %d entries, want %d (bpf/include/limits.h changed without make generate?)", name, got, want)
		}
	}
	if contract.MaxPrefixesPerPodDirection > contract.MaxPrefixes || contract.MaxPortRulesPerEntry > contract.MaxPortRules {
		t.Error("a per-pod limit exceeds the global one")
	}
}

// prefixes returns n distinct /32s (IPv4) from base.
func prefixes(base byte, n int, ports []rules.PortRule) []rules.Entry {
	out := make([]rules.Entry, n)
	for i := range out {
		out[i] = rules.Entry{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{base, byte(i >> 16), byte(i >> 8), byte(i)}), 32), Ports: ports}
	}
	return out
}

func isolatedEgress(es []rules.Entry) *rules.PodRules {
	return &rules.PodRules{Ingress: rules.DirectionRules{State: rules.StateIsolated}, Egress: rules.DirectionRules{State: rules.StateIsolated, Entries: es}}
}

// expectUnchanged asserts the pod still has generation gen and still judges a probe packet as before.
func expectUnchanged(t *testing.T, d *Datapath, ifindex int, gen uint32, probe []byte, want Verdict) {
	t.Helper()
	p, err := d.Pod(ifindex)
	if err != nil {
		t.Fatal(err)
	}
	if p.Generation != gen {
		t.Errorf("pod %d generation %d after a failed Program, want %d (unchanged)", ifindex, p.Generation, gen)
	}
	r, err := d.RunPacket(ifindex, rules.Egress, probe)
	if err != nil || r.Verdict != want {
		t.Errorf("pod %d after a failed Program: %+v, %v; want %s as before", ifindex, r, err, want)
	}
}

func TestPrivilegedCapacityAndInvalidRules(t *testing.T) {
	d := openEphemeral(t)
	allow80 := []rules.PortRule{tcpRule(80, 80, 1)}
	probe := func() []byte { return egress(packet.ProtoTCP, "10.0.0.0", 80) }

	// A strict pod that was never programmed stays closed when its first Program fails.
	if _, err := d.Register(600, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
		t.Fatal(err)
	}
	closed, _ := d.Pod(600)
	// A programmed pod keeps its rules.
	if _, err := d.Register(601, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
		t.Fatal(err)
	}
	gen601, err := d.Program(601, isolatedEgress(prefixes(10, 1, allow80)))
	if err != nil {
		t.Fatal(err)
	}

	tooManyPorts := make([]rules.PortRule, contract.MaxPortRulesPerEntry+1)
	for i := range tooManyPorts {
		tooManyPorts[i] = tcpRule(uint16(i), uint16(i), rules.RuleID(i+1))
	}
	bad := []struct {
		name  string
		rules *rules.PodRules
		err   error
		says  string
	}{
		{"port rules per entry", isolatedEgress(prefixes(10, 1, tooManyPorts)), ErrCapacity, "MaxPortRulesPerEntry"},
		{"prefixes per pod direction", isolatedEgress(prefixes(11, contract.MaxPrefixesPerPodDirection+1, allow80)), ErrCapacity, "MaxPrefixesPerPodDirection"},
		{"unmasked prefix", isolatedEgress([]rules.Entry{{Prefix: netip.MustParsePrefix("10.0.0.1/8")}}), ErrInvalidRules, "canonical"},
		{"duplicate prefix", isolatedEgress(append(prefixes(10, 1, nil), prefixes(10, 1, allow80)...)), ErrInvalidRules, "twice"},
		{"empty port range", isolatedEgress(prefixes(10, 1, []rules.PortRule{tcpRule(90, 80, 1)})), ErrInvalidRules, "empty"},
		{"unknown state", &rules.PodRules{Egress: rules.DirectionRules{State: 9}}, ErrInvalidRules, "state"},
	}
	for _, c := range bad {
		for _, pod := range []struct {
			ifindex int
			gen     uint32
			want    Verdict
		}{{600, closed.Generation, VerdictDeny}, {601, gen601, VerdictAllow}} {
			_, err := d.Program(pod.ifindex, c.rules)
			if !errors.Is(err, c.err) || !strings.Contains(err.Error(), c.says) {
				t.Errorf("%s on pod %d: %v, want %v naming %s", c.name, pod.ifindex, err, c.err, c.says)
			}
			expectUnchanged(t, d, pod.ifindex, pod.gen, probe(), pod.want)
		}
	}

	t.Run("global prefixes", func(t *testing.T) {
		// Fill the trie: pods 610.. with MaxPrefixesPerPodDirection each.
		used := 1 // pod 601
		per := contract.MaxPrefixesPerPodDirection
		for i := 0; used < contract.MaxPrefixes; i++ {
			n := min(per, contract.MaxPrefixes-used)
			ifindex := 610 + i
			if _, err := d.Register(ifindex, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
				t.Fatal(err)
			}
			if _, err := d.Program(ifindex, isolatedEgress(prefixes(byte(20+i), n, allow80))); err != nil {
				t.Fatalf("filling the trie (pod %d, %d prefixes): %v", ifindex, n, err)
			}
			used += n
		}
		_, err := d.Program(600, isolatedEgress(prefixes(10, 1, allow80)))
		if !errors.Is(err, ErrCapacity) || !strings.Contains(err.Error(), "MaxPrefixes") {
			t.Fatalf("Program into a full trie: %v, want ErrCapacity naming MaxPrefixes", err)
		}
		expectUnchanged(t, d, 600, closed.Generation, probe(), VerdictDeny)
		// Re-programming a pod needs room for both generations; after freeing, it fits.
		for i := 0; ; i++ {
			if err := d.Detach(610 + i); err != nil {
				t.Fatal(err)
			}
			if _, err := d.Pod(611 + i); err != nil {
				break
			}
		}
		if _, err := d.Program(600, isolatedEgress(prefixes(10, 1, allow80))); err != nil {
			t.Fatalf("Program after Detach freed the trie: %v", err)
		}
		if d.idx.total != 2 {
			t.Errorf("index counts %d prefixes after detaching, want 2", d.idx.total)
		}
	})

	t.Run("port table", func(t *testing.T) {
		d := openEphemeral(t) // an empty table: ranges are contiguous
		// 512 prefixes x 512 distinct rules fill the port table exactly.
		es := prefixes(30, contract.MaxPortRules/contract.MaxPortRulesPerEntry, nil)
		for i := range es {
			for j := range contract.MaxPortRulesPerEntry {
				es[i].Ports = append(es[i].Ports, tcpRule(uint16(j), uint16(j), rules.RuleID(100000+i*1000+j)))
			}
		}
		if _, err := d.Register(700, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
			t.Fatal(err)
		}
		_, err := d.Program(700, isolatedEgress(es))
		if err != nil {
			t.Fatalf("filling the port table: %v", err)
		}
		if _, err := d.Register(701, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
			t.Fatal(err)
		}
		_, err = d.Program(701, isolatedEgress(prefixes(10, 1, []rules.PortRule{tcpRule(1, 2, 3)})))
		if !errors.Is(err, ErrCapacity) || !strings.Contains(err.Error(), "MaxPortRules") {
			t.Fatalf("Program into a full port table: %v, want ErrCapacity naming MaxPortRules", err)
		}
		// Identical lists are shared, so they still fit.
		if _, err := d.Program(701, isolatedEgress([]rules.Entry{{Prefix: mustPrefix("10.0.0.0/8"), Ports: es[0].Ports}})); err != nil {
			t.Errorf("Program with a list already in the table: %v", err)
		}
		r, err := d.RunPacket(700, rules.Egress, egress(packet.ProtoTCP, "30.0.1.255", 511))
		if err != nil || r.Verdict != VerdictAllow || r.Rule != rules.RuleID(100000+511*1000+511) {
			t.Errorf("last rule of a full table: %+v, %v", r, err)
		}
	})
}
