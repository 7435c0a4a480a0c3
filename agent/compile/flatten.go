package compile

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/strictgate/strictgate/agent/rules"
)

// flat gathers rule items (cidr, excepts, ports) and turns them into LPM entries.
type flat struct {
	groups map[netip.Prefix]*group
	holes  map[netip.Prefix]struct{} // excepts: prefixes that must exist as entries
	lens   [2][]int                  // [0]=IPv4, [1]=IPv6: prefix lengths present, descending
	seen   [2][129]bool
}

// group is every item with the same cidr.
type group struct {
	ports []rules.PortRule // items without excepts
	ex    []exItem
}

type exItem struct {
	except []netip.Prefix
	ports  []rules.PortRule
}

func newFlat() *flat {
	return &flat{groups: map[netip.Prefix]*group{}, holes: map[netip.Prefix]struct{}{}}
}

func family(p netip.Prefix) int {
	if p.Addr().Is4() {
		return 0
	}
	return 1
}

func (f *flat) addLen(p netip.Prefix) {
	fam, bits := family(p), p.Bits()
	if !f.seen[fam][bits] {
		f.seen[fam][bits] = true
		f.lens[fam] = append(f.lens[fam], bits)
	}
}

func (f *flat) add(cidr netip.Prefix, except []netip.Prefix, ports []rules.PortRule) {
	g := f.groups[cidr]
	if g == nil {
		g = &group{}
		f.groups[cidr] = g
		f.addLen(cidr)
	}
	if len(except) == 0 {
		g.ports = append(g.ports, ports...)
		return
	}
	g.ex = append(g.ex, exItem{except: except, ports: slices.Clone(ports)})
	for _, e := range except {
		if _, ok := f.groups[e]; !ok {
			f.holes[e] = struct{}{}
		}
		f.addLen(e)
	}
}

// containsPrefix reports whether outer ⊇ inner.
func containsPrefix(outer, inner netip.Prefix) bool {
	return outer.Bits() <= inner.Bits() && outer.Contains(inner.Addr())
}

func (f *flat) entries() []rules.Entry {
	for fam := range f.lens {
		slices.Sort(f.lens[fam])
		slices.Reverse(f.lens[fam])
	}
	prefixes := make([]netip.Prefix, 0, len(f.groups)+len(f.holes))
	for p := range f.groups {
		prefixes = append(prefixes, p)
	}
	for p := range f.holes {
		if _, ok := f.groups[p]; !ok {
			prefixes = append(prefixes, p)
		}
	}
	// Shortest first, so that every entry's enclosing entries are decided before it.
	slices.SortFunc(prefixes, func(a, b netip.Prefix) int {
		if a.Bits() != b.Bits() {
			return a.Bits() - b.Bits()
		}
		return a.Addr().Compare(b.Addr())
	})
	kept := make(map[netip.Prefix]int, len(prefixes))
	out := make([]rules.Entry, 0, len(prefixes))
	var ports []rules.PortRule
	for _, q := range prefixes {
		ports = ports[:0]
		lens := f.lens[family(q)]
		for _, l := range lens {
			if l > q.Bits() {
				continue
			}
			g := f.groups[netip.PrefixFrom(q.Addr(), l).Masked()]
			if g == nil {
				continue
			}
			ports = append(ports, g.ports...)
			for _, it := range g.ex {
				if !slices.ContainsFunc(it.except, func(e netip.Prefix) bool { return containsPrefix(e, q) }) {
					ports = append(ports, it.ports...)
				}
			}
		}
		ports = normalizePorts(ports)
		// Drop entries that change nothing: same ports as the nearest kept enclosing
		// entry, or empty with no enclosing entry at all.
		var parent []rules.PortRule
		hasParent := false
		for _, l := range lens {
			if l >= q.Bits() {
				continue
			}
			if i, ok := kept[netip.PrefixFrom(q.Addr(), l).Masked()]; ok {
				parent, hasParent = out[i].Ports, true
				break
			}
		}
		if (hasParent && slices.Equal(parent, ports)) || (!hasParent && len(ports) == 0) {
			continue
		}
		kept[q] = len(out)
		out = append(out, rules.Entry{Prefix: q, Ports: slices.Clone(ports)})
	}
	dr := rules.DirectionRules{Entries: out}
	dr.Normalize()
	return out
}

// normalizePorts sorts port rules, merges overlapping or adjacent ranges of the same
// protocol and rule, and drops rules that an earlier rule covers (the datapath takes the
// first match, so a covered rule can never decide). ps is reused.
func normalizePorts(ps []rules.PortRule) []rules.PortRule {
	if len(ps) == 0 {
		return nil
	}
	slices.SortFunc(ps, func(a, b rules.PortRule) int {
		switch {
		case a.Protocol != b.Protocol:
			return int(a.Protocol) - int(b.Protocol)
		case a.Rule != b.Rule:
			if a.Rule < b.Rule {
				return -1
			}
			return 1
		case a.First != b.First:
			return int(a.First) - int(b.First)
		}
		return int(a.Last) - int(b.Last)
	})
	merged := ps[:1]
	for _, p := range ps[1:] {
		last := &merged[len(merged)-1]
		if p.Protocol == last.Protocol && p.Rule == last.Rule && uint32(p.First) <= uint32(last.Last)+1 {
			last.Last = max(last.Last, p.Last)
			continue
		}
		merged = append(merged, p)
	}
	slices.SortFunc(merged, rules.ComparePortRules)
	out := merged[:0]
	var anyRules []rules.PortRule
	curProto, curMax, have := rules.Protocol(0), uint16(0), false
	for _, p := range merged {
		covered := have && p.Protocol == curProto && p.Last <= curMax
		if !covered && p.Protocol != rules.ProtocolAny {
			covered = slices.ContainsFunc(anyRules, func(a rules.PortRule) bool { return a.First <= p.First && p.Last <= a.Last })
		}
		if covered {
			continue
		}
		if !have || p.Protocol != curProto {
			curProto, curMax, have = p.Protocol, p.Last, true
		} else {
			curMax = max(curMax, p.Last)
		}
		if p.Protocol == rules.ProtocolAny {
			anyRules = append(anyRules, p)
		}
		out = append(out, p)
	}
	return out
}

// lpm is a longest-prefix-match index over entries, for the service computation.
type lpm struct {
	entries []rules.Entry
	index   map[netip.Prefix]int
	lens    [2][]int
}

func newLPM(entries []rules.Entry) *lpm {
	l := &lpm{entries: entries, index: make(map[netip.Prefix]int, len(entries))}
	var seen [2][129]bool
	for i, e := range entries {
		l.index[e.Prefix] = i
		fam := family(e.Prefix)
		if !seen[fam][e.Prefix.Bits()] {
			seen[fam][e.Prefix.Bits()] = true
			l.lens[fam] = append(l.lens[fam], e.Prefix.Bits())
		}
	}
	for fam := range l.lens {
		slices.Sort(l.lens[fam])
		slices.Reverse(l.lens[fam])
	}
	return l
}

func (l *lpm) longest(a netip.Addr) *rules.Entry {
	a = a.Unmap()
	fam := 0
	if !a.Is4() {
		fam = 1
	}
	for _, bits := range l.lens[fam] {
		if i, ok := l.index[netip.PrefixFrom(a, bits).Masked()]; ok {
			return &l.entries[i]
		}
	}
	return nil
}

func (l *lpm) lookup(a netip.Addr, proto rules.Protocol, port uint16) (rules.Verdict, rules.RuleID) {
	e := l.longest(a)
	if e == nil {
		return rules.Deny, rules.RuleNone
	}
	for _, p := range e.Ports {
		if p.Matches(proto, port) {
			return rules.Allow, p.Rule
		}
	}
	return rules.Deny, rules.RuleNone
}

func equalPodRules(a, b *rules.PodRules) bool {
	return equalDir(&a.Ingress, &b.Ingress) && equalDir(&a.Egress, &b.Egress)
}

func equalDir(a, b *rules.DirectionRules) bool {
	if a.State != b.State || len(a.Entries) != len(b.Entries) {
		return false
	}
	if len(a.Entries) > 0 && &a.Entries[0] == &b.Entries[0] {
		return true
	}
	for i := range a.Entries {
		if a.Entries[i].Prefix != b.Entries[i].Prefix || !slices.Equal(a.Entries[i].Ports, b.Entries[i].Ports) {
			return false
		}
	}
	return true
}

// CheckLimits reports whether a pod's rules fit the datapath (agent/rules limits); the
// agent refuses to program, and keeps the pod closed, when they do not.
func CheckLimits(r *rules.PodRules) error {
	for _, d := range []rules.Direction{rules.Ingress, rules.Egress} {
		dr := r.Dir(d)
		if n := len(dr.Entries); n > rules.MaxPrefixesPerPodDirection {
			return fmt.Errorf("%s rules have %d prefixes, the datapath holds at most %d per pod and direction", d, n, rules.MaxPrefixesPerPodDirection)
		}
		for _, e := range dr.Entries {
			if n := len(e.Ports); n > rules.MaxPortRulesPerEntry {
				return fmt.Errorf("%s rules for %s have %d port rules, the datapath holds at most %d", d, e.Prefix, n, rules.MaxPortRulesPerEntry)
			}
		}
	}
	return nil
}
