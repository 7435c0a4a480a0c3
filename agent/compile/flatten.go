package compile

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/internal/contract"
)

// flat gathers rule items (cidr, excepts, ports) and turns them into LPM entries.
//
// Items are sorted by (address, prefix length): prefixes nest like intervals, so one
// sweep with a stack of the enclosing prefixes finds, for every prefix, the items
// that cover it, without maps or per-prefix allocations.
type flat struct {
	items []flatItem
	ports []rules.PortRule // items' ports, by index range
}

type flatItem struct {
	prefix      netip.Prefix
	except      []netip.Prefix
	first, last int32 // ports[first:last]
	hole        bool  // an except: only makes the prefix exist
}

func (f *flat) add(cidr netip.Prefix, except []netip.Prefix, ports []rules.PortRule) {
	first := int32(len(f.ports))
	f.ports = append(f.ports, ports...)
	f.items = append(f.items, flatItem{prefix: cidr, except: except, first: first, last: int32(len(f.ports))})
	for _, e := range except {
		f.items = append(f.items, flatItem{prefix: e, hole: true})
	}
}

// containsPrefix reports whether outer ⊇ inner.
func containsPrefix(outer, inner netip.Prefix) bool {
	return outer.Addr().Is4() == inner.Addr().Is4() && outer.Bits() <= inner.Bits() && outer.Contains(inner.Addr())
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// level is one distinct prefix on the sweep's stack.
type level struct {
	prefix      netip.Prefix
	first, last int // its items: f.items[first:last]
	out         int // index of its entry in the output, -1 if dropped
}

func (f *flat) entries() []rules.Entry {
	slices.SortFunc(f.items, func(a, b flatItem) int { return comparePrefix(a.prefix, b.prefix) })
	distinct := 0
	for i := range f.items {
		if i == 0 || f.items[i].prefix != f.items[i-1].prefix {
			distinct++
		}
	}
	var (
		out   = make([]rules.Entry, 0, distinct)
		stack []level
		buf   []rules.PortRule
		arena []rules.PortRule
	)
	for i := 0; i < len(f.items); {
		q := f.items[i].prefix
		j := i + 1
		for j < len(f.items) && f.items[j].prefix == q {
			j++
		}
		for len(stack) > 0 && !containsPrefix(stack[len(stack)-1].prefix, q) {
			stack = stack[:len(stack)-1]
		}
		stack = append(stack, level{prefix: q, first: i, last: j, out: -1})
		buf = buf[:0]
		for _, l := range stack {
			for _, it := range f.items[l.first:l.last] {
				if it.hole || it.first == it.last {
					continue
				}
				if !slices.ContainsFunc(it.except, func(e netip.Prefix) bool { return containsPrefix(e, q) }) {
					buf = append(buf, f.ports[it.first:it.last]...)
				}
			}
		}
		buf = normalizePorts(buf)
		// Drop entries that change nothing: same ports as the nearest kept enclosing
		// entry, or empty with no kept enclosing entry at all.
		parent := -1
		for k := len(stack) - 2; k >= 0; k-- {
			if stack[k].out >= 0 {
				parent = stack[k].out
				break
			}
		}
		if (parent >= 0 && slices.Equal(out[parent].Ports, buf)) || (parent < 0 && len(buf) == 0) {
			i = j
			continue
		}
		var ports []rules.PortRule
		if len(buf) > 0 {
			if cap(arena)-len(arena) < len(buf) {
				arena = make([]rules.PortRule, 0, max(1024, len(buf)))
			}
			n := len(arena)
			arena = append(arena, buf...)
			ports = arena[n:len(arena):len(arena)]
		}
		stack[len(stack)-1].out = len(out)
		out = append(out, rules.Entry{Prefix: q, Ports: ports})
		i = j
	}
	return out // already in rules.DirectionRules.Normalize order: (address, length)
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
		if n := len(dr.Entries); n > contract.MaxPrefixesPerPodDirection {
			return fmt.Errorf("%s rules have %d prefixes, the datapath holds at most %d per pod and direction", d, n, contract.MaxPrefixesPerPodDirection)
		}
		for _, e := range dr.Entries {
			if n := len(e.Ports); n > contract.MaxPortRulesPerEntry {
				return fmt.Errorf("%s rules for %s have %d port rules, the datapath holds at most %d", d, e.Prefix, n, contract.MaxPortRulesPerEntry)
			}
		}
	}
	return nil
}

func family(p netip.Prefix) int {
	if p.Addr().Is4() {
		return 0
	}
	return 1
}
