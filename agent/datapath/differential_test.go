package datapath

import (
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"

	"github.com/strictgate/strictgate/agent/datapath/packet"
	"github.com/strictgate/strictgate/agent/rules"
)

// randomRules makes a rule set with nested prefixes (so excepts and longest-prefix
// matter), holes, overlapping port rules of every protocol and both families.
func randomRules(rng *rand.Rand) rules.DirectionRules {
	states := []rules.State{rules.StateIsolated, rules.StateIsolated, rules.StateIsolated, rules.StateIsolated,
		rules.StateUnprogrammedDeny, rules.StateUnprogrammedAllow, rules.StateUnisolated}
	r := rules.DirectionRules{State: states[rng.IntN(len(states))]}
	seen := map[netip.Prefix]bool{}
	n := rng.IntN(40)
	for range n {
		p := randomPrefix(rng)
		if seen[p] {
			continue
		}
		seen[p] = true
		e := rules.Entry{Prefix: p}
		if rng.IntN(10) >= 3 {
			for range 1 + rng.IntN(4) {
				e.Ports = append(e.Ports, randomPortRule(rng))
			}
		}
		r.Entries = append(r.Entries, e)
	}
	return r
}

var v4Bits = []int{0, 8, 12, 16, 20, 24, 28, 30, 31, 32}
var v6Bits = []int{0, 16, 32, 48, 64, 80, 96, 112, 120, 127, 128}

func randomPrefix(rng *rand.Rand) netip.Prefix {
	switch rng.IntN(10) {
	case 0: // IPv4-mapped IPv6 prefix: matches nothing, in both models
		a := randomV4(rng).As16()
		return netip.PrefixFrom(netip.AddrFrom16(a), 96+v4Bits[rng.IntN(len(v4Bits))]).Masked()
	case 1, 2, 3:
		return netip.PrefixFrom(randomV6(rng), v6Bits[rng.IntN(len(v6Bits))]).Masked()
	}
	return netip.PrefixFrom(randomV4(rng), v4Bits[rng.IntN(len(v4Bits))]).Masked()
}

// Addresses come from a small space so that random prefixes and packets meet.
func randomV4(rng *rand.Rand) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(rng.IntN(4)), byte(rng.IntN(4)), byte(rng.IntN(8))})
}

func randomV6(rng *rand.Rand) netip.Addr {
	var a [16]byte
	a[0], a[1], a[3] = 0xfd, 0, byte(rng.IntN(4))
	a[9] = byte(rng.IntN(4))
	a[15] = byte(rng.IntN(8))
	return netip.AddrFrom16(a)
}

var ports = []uint16{0, 53, 80, 443, 8080, 65535}

func randomPortRule(rng *rand.Rand) rules.PortRule {
	protos := []rules.Protocol{rules.ProtocolAny, rules.ProtocolTCP, rules.ProtocolUDP, rules.ProtocolSCTP}
	pr := rules.PortRule{Protocol: protos[rng.IntN(len(protos))], Rule: rules.RuleID(1 + rng.IntN(1000))}
	switch rng.IntN(3) {
	case 0:
		pr.First, pr.Last = 0, 65535
	case 1:
		pr.First = ports[rng.IntN(len(ports))]
		pr.Last = pr.First
	default:
		a, b := ports[rng.IntN(len(ports))], ports[rng.IntN(len(ports))]
		pr.First, pr.Last = min(a, b), max(a, b)
	}
	return pr
}

// TestPrivilegedDifferential feeds random rule sets and random first packets through
// the kernel (RunPacket) and the Go model (rules.Lookup): verdict and rule must agree.
func TestPrivilegedDifferential(t *testing.T) {
	d := openEphemeral(t)
	const pod = 500
	if _, err := d.Register(pod, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	protos := []uint8{packet.ProtoTCP, packet.ProtoUDP, packet.ProtoSCTP, packet.ProtoICMP, 47}
	var podSeq uint32
	checked, mismatches, allowed, byRule := 0, 0, 0, 0
	for iter := range 40 {
		pr := &rules.PodRules{Ingress: randomRules(rng), Egress: randomRules(rng)}
		if _, err := d.Program(pod, pr); err != nil {
			t.Fatalf("iteration %d: Program: %v", iter, err)
		}
		for range 150 {
			dir := rules.Direction(rng.IntN(2))
			dr := pr.Dir(dir)
			var remote netip.Addr
			if len(dr.Entries) > 0 && rng.IntN(4) > 0 {
				remote = randomIn(rng, dr.Entries[rng.IntN(len(dr.Entries))].Prefix)
			} else if rng.IntN(2) == 0 {
				remote = randomV4(rng)
			} else {
				remote = randomV6(rng)
			}
			proto := protos[rng.IntN(len(protos))]
			// Send some IPv4 remotes as IPv4-mapped IPv6 packets: the model unmaps them.
			mapped := remote.Is4() && rng.IntN(5) == 0
			podSeq++
			var local netip.Addr
			if remote.Is4() && !mapped {
				local = netip.AddrFrom4([4]byte{172, 16, byte(podSeq >> 8), byte(podSeq)})
			} else {
				var a [16]byte
				a[0], a[1], a[12], a[13], a[14], a[15] = 0xfd, 0x99, byte(podSeq>>24), byte(podSeq>>16), byte(podSeq>>8), byte(podSeq)
				local = netip.AddrFrom16(a)
				if mapped {
					remote = netip.AddrFrom16(remote.As16())
				}
			}
			if proto == packet.ProtoICMP && !local.Is4() {
				proto = packet.ProtoICMPv6
			}
			port := ports[rng.IntN(len(ports))]
			if rng.IntN(3) == 0 {
				port = uint16(rng.IntN(65536))
			}
			lookupPort := port
			if proto != packet.ProtoTCP && proto != packet.ProtoUDP && proto != packet.ProtoSCTP {
				lookupPort = 0 // protocols without ports are looked up with port 0
			}
			var frame []byte
			if dir == rules.Egress {
				frame = packet.Flow(proto, local, 1024+uint16(podSeq%60000), remote, port)
			} else {
				frame = packet.Flow(proto, remote, 1024+uint16(podSeq%60000), local, port)
			}
			got, err := d.RunPacket(pod, dir, frame)
			if err != nil {
				t.Fatal(err)
			}
			wantV, wantRule := dr.Lookup(remote, rules.Protocol(proto), lookupPort)
			gotV := rules.Deny
			if got.Verdict == VerdictAllow {
				gotV = rules.Allow
			}
			checked++
			if wantV == rules.Allow {
				allowed++
				if wantRule != rules.RuleUnisolated && wantRule != rules.RuleUnprogrammed {
					byRule++
				}
			}
			if gotV != wantV || got.Rule != wantRule {
				mismatches++
				if mismatches <= 10 {
					t.Errorf("iteration %d %s %s proto %d port %d: kernel %s rule %d, model %s rule %d\nrules: %+v",
						iter, dir, remote, proto, port, got.Verdict, got.Rule, wantV, wantRule, *dr)
				}
			}
		}
	}
	t.Logf("%d packets compared (%d allowed, %d of them by a port rule), %d mismatches", checked, allowed, byRule, mismatches)
	if byRule < checked/10 || allowed > checked*9/10 {
		t.Errorf("the random inputs are lopsided (%d/%d allowed, %d by rule): the test proves little", allowed, checked, byRule)
	}
	// Re-programming left exactly the current rules in the trie.
	pr := &rules.PodRules{Ingress: randomRules(rng), Egress: randomRules(rng)}
	pr.Ingress.State, pr.Egress.State = rules.StateIsolated, rules.StateIsolated
	if _, err := d.Program(pod, pr); err != nil {
		t.Fatal(err)
	}
	n := 0
	var k bpfSgLpmKey
	var v bpfSgLpmVal
	it := d.objs.SgRules.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if want := len(pr.Ingress.Entries) + len(pr.Egress.Entries); n != want || d.idx.total != want {
		t.Errorf("trie holds %d entries, index %d, want %d", n, d.idx.total, want)
	}
	// What the kernel holds reads back as what was programmed.
	got, err := d.ProgrammedRules(pod)
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []rules.Direction{rules.Ingress, rules.Egress} {
		sortEntries(pr.Dir(dir).Entries)
	}
	if !reflect.DeepEqual(normalizeEmpty(got), normalizeEmpty(pr)) {
		t.Errorf("read back\n%+v\nprogrammed\n%+v", got, pr)
	}
	if p, _ := d.Pod(pod); p.Digest != RulesDigest(got) {
		t.Errorf("digest of the read-back rules %x differs from the pod's %x", RulesDigest(got), p.Digest)
	}
}

// normalizeEmpty makes nil and empty slices compare equal.
func normalizeEmpty(r *rules.PodRules) *rules.PodRules {
	c := *r
	for _, dir := range []rules.Direction{rules.Ingress, rules.Egress} {
		dr := c.Dir(dir)
		es := make([]rules.Entry, 0, len(dr.Entries))
		for _, e := range dr.Entries {
			if len(e.Ports) == 0 {
				e.Ports = nil
			}
			es = append(es, e)
		}
		if len(es) == 0 {
			es = nil
		}
		dr.Entries = es
	}
	return &c
}

func randomIn(rng *rand.Rand, p netip.Prefix) netip.Addr {
	a := p.Addr().As16()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	for i := bits; i < 128; i++ {
		if rng.IntN(2) == 1 {
			a[i/8] |= 0x80 >> (i % 8)
		}
	}
	r := netip.AddrFrom16(a)
	if p.Addr().Is4() {
		return r.Unmap()
	}
	return r
}
