package compile

import (
	"encoding/binary"
	"net/netip"
	"slices"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/strictgate/strictgate/agent/rules"
)

// batch computes the rules of a set of pods against one snapshot of the state. Pods
// selected by the same policies (and resolving the same named ports) get the same
// rules, so a direction is computed once per distinct key and shared.
type batch struct {
	c     *Compiler
	memo  map[string]rules.DirectionRules
	svcs  []svcTarget
	svcOK bool
	key   []byte
	flat  flat // reused by every flatten: its buffers grow once per batch
}

func newBatch(c *Compiler) *batch {
	return &batch{c: c, memo: map[string]rules.DirectionRules{}}
}

// ruleAddrs are the addresses a rule's peers select, independent of the target pod.
type ruleAddrs struct {
	blocks []*peerInfo
	pods   []podAddr
}

type podAddr struct {
	prefix netip.Prefix
	pod    *podInfo
}

var (
	all4 = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	all6 = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	// allBlocks is what an empty from/to admits.
	allBlocks = []*peerInfo{{block: true, cidr: all4}, {block: true, cidr: all6}}
)

func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

func (b *batch) ruleAddrs(polNS string, d rules.Direction, r *ruleInfo) *ruleAddrs {
	if ra, ok := b.c.addrs[r]; ok {
		return ra
	}
	ra := &ruleAddrs{}
	seen := map[netip.Addr]bool{}
	addPod := func(p *podInfo) {
		if !p.peer() {
			return
		}
		for _, a := range p.ips {
			if !seen[a] {
				seen[a] = true
				ra.pods = append(ra.pods, podAddr{hostPrefix(a), p})
			}
		}
	}
	// Egress named ports resolve per destination pod, whichever peer admitted it, so
	// pods inside admitted ipBlocks need their own entries.
	namedEgress := d == rules.Egress && len(r.named) > 0
	if r.all {
		ra.blocks = allBlocks
		if namedEgress {
			for _, p := range b.c.pods {
				addPod(p)
			}
		}
	}
	for i := range r.peers {
		pe := &r.peers[i]
		if pe.block {
			ra.blocks = append(ra.blocks, pe)
			if namedEgress {
				for _, p := range b.c.pods {
					if p.peer() && slices.ContainsFunc(p.ips, pe.admits) {
						for _, a := range p.ips {
							if pe.admits(a) && !seen[a] {
								seen[a] = true
								ra.pods = append(ra.pods, podAddr{hostPrefix(a), p})
							}
						}
					}
				}
			}
			continue
		}
		if pe.nsSel == nil {
			if n := b.c.nsPods[polNS]; n != nil {
				n.each(pe.podSel, addPod)
			}
			continue
		}
		podSel := pe.podSel
		if podSel == nil {
			podSel = labels.Everything()
		}
		for _, n := range b.c.nsPods {
			if pe.nsSel.Matches(n.labels) {
				n.each(podSel, addPod)
			}
		}
	}
	b.c.addrs[r] = ra
	return ra
}

// podRules computes both directions of a pod.
func (b *batch) podRules(p *podInfo) *rules.PodRules {
	return &rules.PodRules{Ingress: b.tiered(p, rules.Ingress), Egress: b.tiered(p, rules.Egress)}
}

func (b *batch) dirRules(p *podInfo, d rules.Direction) rules.DirectionRules {
	pols := b.c.selecting(p, d)
	if len(pols) == 0 {
		return rules.DirectionRules{State: rules.StateUnisolated}
	}
	// The key: direction, the selecting policies, and for ingress how this pod resolves
	// each named port (the only thing about the target pod the rules depend on).
	k := append(b.key[:0], byte(d))
	for _, pol := range pols {
		k = append(k, pol.key.Namespace...)
		k = append(k, 0)
		k = append(k, pol.key.Name...)
		k = append(k, 0)
		if d != rules.Ingress {
			continue
		}
		for _, r := range pol.rules[d] {
			for _, np := range r.named {
				vs := p.resolveAll(np.name, np.proto)
				k = binary.BigEndian.AppendUint16(k, uint16(len(vs)))
				for _, v := range vs {
					k = binary.BigEndian.AppendUint16(k, v)
				}
			}
		}
	}
	b.key = k
	if dr, ok := b.memo[string(k)]; ok {
		return dr
	}
	dr := rules.DirectionRules{State: rules.StateIsolated, Entries: b.flatten(p, d, pols)}
	if d == rules.Egress {
		dr.Entries = b.addServices(dr.Entries)
	}
	b.memo[string(k)] = dr
	return dr
}

func (b *batch) flatten(p *podInfo, d rules.Direction, pols []*policyInfo) []rules.Entry {
	f := &b.flat
	f.items, f.ports = f.items[:0], f.ports[:0]
	var ports, podPorts []rules.PortRule
	for _, pol := range pols {
		for _, r := range pol.rules[d] {
			ports = append(ports[:0], r.numeric...)
			if d == rules.Ingress {
				ports = appendResolved(ports, r, p)
			}
			ra := b.ruleAddrs(pol.key.Namespace, d, r)
			if len(ports) > 0 {
				for _, pe := range ra.blocks {
					f.add(pe.cidr, pe.except, ports)
				}
			}
			for _, pa := range ra.pods {
				pp := ports
				if d == rules.Egress && len(r.named) > 0 {
					podPorts = appendResolved(append(podPorts[:0], ports...), r, pa.pod)
					pp = podPorts
				}
				if len(pp) > 0 {
					f.add(pa.prefix, nil, pp)
				}
			}
		}
	}
	return f.entries()
}

// npEntries are a direction's NetworkPolicy entries before Services are added.
func (b *batch) npEntries(p *podInfo, d rules.Direction) []rules.Entry {
	return b.flatten(p, d, b.c.selecting(p, d))
}

func appendResolved(ports []rules.PortRule, r *ruleInfo, p *podInfo) []rules.PortRule {
	for _, np := range r.named {
		for _, v := range p.resolveAll(np.name, np.proto) {
			ports = append(ports, rules.PortRule{Protocol: np.proto, First: v, Last: v, Rule: r.id})
		}
	}
	return ports
}

// svcTarget is one (ClusterIP, service port) with its ready backends.
type svcTarget struct {
	prefix   netip.Prefix
	proto    rules.Protocol
	port     uint16
	backends []backend
}

type backend struct {
	addr netip.Addr
	port uint16
}

func (b *batch) services() []svcTarget {
	if b.svcOK {
		return b.svcs
	}
	b.svcOK = true
	c := b.c
	for _, s := range c.services {
		for _, cip := range s.clusterIPs {
			for _, sp := range s.ports {
				t := svcTarget{prefix: hostPrefix(cip), proto: sp.proto, port: sp.port}
				if sl := c.slicesBySvc[s.key]; len(sl) > 0 {
					for _, es := range sl {
						for _, esp := range es.ports {
							if esp.name != sp.name || esp.proto != sp.proto {
								continue
							}
							for _, a := range es.addrs {
								if a.Is4() == cip.Is4() {
									t.backends = append(t.backends, backend{a, esp.port})
								}
							}
						}
					}
				} else if s.selector != nil {
					if n := c.nsPods[s.key.Namespace]; n != nil {
						n.each(s.selector, func(p *podInfo) {
							if !p.peer() || p.notReady {
								return
							}
							port := uint16(sp.target.IntValue())
							if sp.target.Type == intstr.String {
								v, ok := p.resolveTarget(sp.target.StrVal, sp.proto)
								if !ok {
									return // the endpoints controller leaves such a pod out too
								}
								port = v
							}
							for _, a := range p.ips {
								if a.Is4() == cip.Is4() {
									t.backends = append(t.backends, backend{a, port})
								}
							}
						})
					}
				}
				slices.SortFunc(t.backends, func(x, y backend) int {
					if c := x.addr.Compare(y.addr); c != 0 {
						return c
					}
					return int(x.port) - int(y.port)
				})
				b.svcs = append(b.svcs, t)
			}
		}
	}
	return b.svcs
}

// addServices adds the ClusterIP entries of an egress-isolated client (see doc.go).
func (b *batch) addServices(entries []rules.Entry) []rules.Entry {
	svcs := b.services()
	if len(svcs) == 0 {
		return entries
	}
	base := newLPM(entries)
	add := map[netip.Prefix][]rules.PortRule{}
	var order []netip.Prefix
	for _, t := range svcs {
		if _, ok := add[t.prefix]; !ok {
			add[t.prefix] = nil
			order = append(order, t.prefix)
		}
		if len(t.backends) == 0 {
			continue
		}
		// The rule that allowed the first backend names the port rule; a backend on the
		// pod's own node needs no rule (the datapath always allows the node).
		first := rules.RuleHost
		ok, named := true, false
		for _, be := range t.backends {
			if slices.Contains(b.c.nodeIPs, be.addr) {
				continue
			}
			v, id := base.lookup(be.addr, t.proto, be.port)
			if v != rules.Allow {
				ok = false
				break
			}
			if !named {
				first, named = id, true
			}
		}
		if ok {
			add[t.prefix] = append(add[t.prefix], rules.PortRule{Protocol: t.proto, First: t.port, Last: t.port, Rule: first})
		}
	}
	out := entries
	replaced := false
	for _, pfx := range order {
		ports := normalizePorts(add[pfx])
		if i, ok := base.index[pfx]; ok {
			if !replaced {
				out = slices.Clone(entries) // entries may be shared with other pods
				replaced = true
			}
			out[i].Ports = ports
			continue
		}
		// An empty entry only matters where an enclosing one allows something.
		if len(ports) == 0 {
			if e := base.longest(pfx.Addr()); e == nil || len(e.Ports) == 0 {
				continue
			}
		}
		if !replaced {
			out = slices.Clone(entries)
			replaced = true
		}
		out = append(out, rules.Entry{Prefix: pfx, Ports: ports})
	}
	if replaced {
		dr := rules.DirectionRules{Entries: out}
		dr.Normalize()
	}
	return out
}
