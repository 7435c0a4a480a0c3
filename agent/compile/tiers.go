package compile

import (
	"encoding/binary"
	"net/netip"
	"slices"

	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/strictgate/strictgate/agent/rules"
)

// tiered folds the Admin tier, the pod's NetworkPolicy rules and the Baseline tier into
// one allow-only rule set (see doc.go, "Tiers"). A direction no ClusterNetworkPolicy
// selects is exactly NetworkPolicy's.
func (b *batch) tiered(p *podInfo, d rules.Direction) rules.DirectionRules {
	admin, baseline := b.c.tierRules(p, d)
	if len(admin) == 0 && len(baseline) == 0 {
		return b.dirRules(p, d)
	}
	// Pods with the same NetworkPolicies and tier rules share the result, unless named
	// ports make it depend on the pod itself (ingress: the pod's own containerPorts).
	pols := b.c.selecting(p, d)
	key := []byte{'T', byte(d)}
	for _, pol := range pols {
		key = append(append(append(key, pol.key.Namespace...), 0), append([]byte(pol.key.Name), 0)...)
	}
	key = append(key, 1)
	named := false
	for _, r := range append(admin, baseline...) {
		key = binary.BigEndian.AppendUint32(key, uint32(r.id))
		named = named || len(r.named) > 0
	}
	if d == rules.Ingress && (named || slices.ContainsFunc(pols, func(pol *policyInfo) bool {
		return slices.ContainsFunc(pol.rules[d], func(r *ruleInfo) bool { return len(r.named) > 0 })
	})) {
		key = append(append(key, 2), p.key.String()...)
	}
	if dr, ok := b.memo[string(key)]; ok {
		return dr
	}
	var np []rules.Entry
	isolated := len(pols) > 0
	if isolated {
		np = b.npEntries(p, d)
	}
	var am, bm []cnpMatch
	for _, r := range admin {
		am = append(am, b.c.match(p, d, r))
	}
	for _, r := range baseline {
		bm = append(bm, b.c.match(p, d, r))
	}
	entries := compose(np, isolated, am, bm)
	if d == rules.Egress {
		entries = b.addServices(entries)
	}
	dr := rules.DirectionRules{State: rules.StateIsolated, Entries: entries}
	b.memo[string(key)] = dr
	return dr
}

// region is the set of addresses an LPM prefix owns among all the prefixes in play: a
// rule item's prefix either contains all of it or none of it, so a verdict is a
// function of (protocol, port) alone there.
func covers(m *cnpMatch, q netip.Prefix, proto rules.Protocol, port uint16) bool {
	if m.index == nil {
		m.buildIndex()
	}
	fam := family(q)
	for _, bits := range m.lens[fam] {
		if bits > q.Bits() {
			continue
		}
		for _, pr := range m.index[netip.PrefixFrom(q.Addr(), bits).Masked()] {
			if pr.Matches(proto, port) {
				return true
			}
		}
	}
	return false
}

// buildIndex groups a match's items by prefix, with the prefix lengths in use, so that
// covers looks up each enclosing prefix instead of scanning every item.
func (m *cnpMatch) buildIndex() {
	m.index = map[netip.Prefix][]rules.PortRule{}
	var seen [2][129]bool
	for _, it := range m.items {
		m.index[it.prefix] = append(m.index[it.prefix], it.ports...)
		if f := family(it.prefix); !seen[f][it.prefix.Bits()] {
			seen[f][it.prefix.Bits()] = true
			m.lens[f] = append(m.lens[f], it.prefix.Bits())
		}
	}
}

// owner is the longest entry of np that contains q.
func owner(np *lpm, q netip.Prefix) *rules.Entry {
	fam := family(q)
	for _, bits := range np.lens[fam] { // longest first
		if bits > q.Bits() {
			continue
		}
		if i, ok := np.index[netip.PrefixFrom(q.Addr(), bits).Masked()]; ok {
			return &np.entries[i]
		}
	}
	return nil
}

// verdict evaluates one packet class (addresses q owns, proto, port) through the tiers.
func verdict(q netip.Prefix, proto rules.Protocol, port uint16, np *rules.Entry, isolated bool, admin, baseline []cnpMatch) (bool, rules.RuleID) {
admin:
	for i := range admin {
		m := &admin[i]
		if !covers(m, q, proto, port) {
			continue
		}
		switch m.r.action {
		case cnpv1beta1.ClusterNetworkPolicyRuleActionAccept:
			return true, m.r.id
		case cnpv1beta1.ClusterNetworkPolicyRuleActionDeny:
			return false, rules.RuleNone
		}
		break admin // Pass: on to NetworkPolicy
	}
	if isolated {
		if np != nil {
			for _, pr := range np.Ports {
				if pr.Matches(proto, port) {
					return true, pr.Rule
				}
			}
		}
		return false, rules.RuleNone
	}
	for i := range baseline {
		m := &baseline[i]
		if !covers(m, q, proto, port) {
			continue
		}
		if m.r.action == cnpv1beta1.ClusterNetworkPolicyRuleActionDeny {
			return false, rules.RuleNone
		}
		return true, m.r.id // Accept, or Pass to the default: allowed, named by the rule
	}
	return true, rules.RuleUnisolated
}

// portProtos are the protocols with ports; every other protocol (ICMP, ICMPv6, ...)
// is one class, matched only by rules without protocols.
var portProtos = []rules.Protocol{rules.ProtocolTCP, rules.ProtocolUDP, rules.ProtocolSCTP}

// compose computes the allow-only entries of a direction with tiers. Every prefix in
// play is a candidate entry; for each, the ports are partitioned at every rule's range
// boundaries and each piece evaluated once with verdict.
func compose(np []rules.Entry, isolated bool, admin, baseline []cnpMatch) []rules.Entry {
	prefixes := []netip.Prefix{all4, all6}
	var cuts [256][]uint32 // per protocol: starts of port pieces
	addCuts := func(ps []rules.PortRule) {
		for _, pr := range ps {
			targets := portProtos
			if pr.Protocol != rules.ProtocolAny {
				targets = []rules.Protocol{pr.Protocol}
			}
			for _, t := range targets {
				cuts[t] = append(cuts[t], uint32(pr.First), uint32(pr.Last)+1)
			}
		}
	}
	for _, e := range np {
		prefixes = append(prefixes, e.Prefix)
		addCuts(e.Ports)
	}
	for _, ms := range [][]cnpMatch{admin, baseline} {
		for _, m := range ms {
			for _, it := range m.items {
				prefixes = append(prefixes, it.prefix)
				addCuts(it.ports)
			}
		}
	}
	slices.SortFunc(prefixes, comparePrefix)
	prefixes = slices.Compact(prefixes)
	for _, t := range portProtos {
		cuts[t] = append(cuts[t], 0)
		slices.Sort(cuts[t])
		cuts[t] = slices.Compact(cuts[t])
	}

	var out []rules.Entry
	var stack []struct {
		prefix netip.Prefix
		out    int
	}
	npIndex := newLPM(np)
	for _, q := range prefixes {
		o := owner(npIndex, q)
		var ports []rules.PortRule
		allPorts := true // every port of every port protocol allowed by one rule
		var firstID rules.RuleID
		haveFirst := false
		for _, t := range portProtos {
			cs := cuts[t]
			for i, start := range cs {
				if start > 65535 {
					break
				}
				end := uint32(65535)
				if i+1 < len(cs) && cs[i+1]-1 < end {
					end = cs[i+1] - 1
				}
				ok, id := verdict(q, t, uint16(start), o, isolated, admin, baseline)
				if !ok {
					allPorts = false
					continue
				}
				if !haveFirst {
					firstID, haveFirst = id, true
				} else if id != firstID {
					allPorts = false
				}
				ports = append(ports, rules.PortRule{Protocol: t, First: uint16(start), Last: uint16(end), Rule: id})
			}
		}
		// The other protocols: a rule without protocols is the only kind that matches.
		if ok, id := verdict(q, rules.ProtocolICMP, 0, o, isolated, admin, baseline); ok {
			if allPorts && haveFirst && id == firstID {
				ports = []rules.PortRule{{Protocol: rules.ProtocolAny, First: 0, Last: 65535, Rule: id}}
			} else {
				// Allow-only rules cannot say "any protocol but the TCP ports denied
				// above": ICMP and ICMPv6 are named (both: the class is allowed, and
				// tools name ICMP for either family), other protocols stay closed.
				ports = append(ports, rules.PortRule{Protocol: rules.ProtocolICMP, First: 0, Last: 65535, Rule: id},
					rules.PortRule{Protocol: rules.ProtocolICMPv6, First: 0, Last: 65535, Rule: id})
			}
		}
		ports = normalizePorts(ports)
		for len(stack) > 0 && !containsPrefix(stack[len(stack)-1].prefix, q) {
			stack = stack[:len(stack)-1]
		}
		parent := -1
		for k := len(stack) - 1; k >= 0; k-- {
			if stack[k].out >= 0 {
				parent = stack[k].out
				break
			}
		}
		idx := -1
		if !((parent >= 0 && slices.Equal(out[parent].Ports, ports)) || (parent < 0 && len(ports) == 0)) {
			idx = len(out)
			out = append(out, rules.Entry{Prefix: q, Ports: ports})
		}
		stack = append(stack, struct {
			prefix netip.Prefix
			out    int
		}{q, idx})
	}
	return out
}
