package compile

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/strictgate/strictgate/agent/rules"
)

// Tiers of a RuleRef. NetworkPolicy rules have TierNetworkPolicy.
const (
	TierAdmin         = string(cnpv1beta1.AdminTier)
	TierNetworkPolicy = "NetworkPolicy"
	TierBaseline      = string(cnpv1beta1.BaselineTier)
)

// cnpInfo is a parsed ClusterNetworkPolicy.
type cnpInfo struct {
	name     string
	tier     string
	priority int32
	// subject: pods in namespaces nsSel matches and (if podSel != nil) that podSel matches.
	nsSel, podSel labels.Selector
	rules         [2][]*cnpRule
}

// cnpRule is one ingress or egress rule of a ClusterNetworkPolicy.
type cnpRule struct {
	ref    RuleRef
	id     rules.RuleID
	action cnpv1beta1.ClusterNetworkPolicyRuleAction
	// all: the rule matches every address (a peer the compiler cannot read, fail closed
	// for Deny and Pass as the API asks).
	all     bool
	peers   []cnpPeer
	numeric []rules.PortRule // [Any 0-65535] when protocols are empty
	named   []string         // destinationNamedPort, any protocol
}

type cnpPeer struct {
	nsSel, podSel labels.Selector // pods (podSel nil: every pod of the namespaces)
	nodeSel       labels.Selector // nodes
	networks      []netip.Prefix
}

func selector(s *metav1.LabelSelector) (labels.Selector, error) {
	return metav1.LabelSelectorAsSelector(s)
}

func newCNPInfo(cnp *cnpv1beta1.ClusterNetworkPolicy) (*cnpInfo, error) {
	bad := func(err error) (*cnpInfo, error) {
		return nil, fmt.Errorf("ClusterNetworkPolicy %s: %w", cnp.Name, err)
	}
	s := &cnp.Spec
	ci := &cnpInfo{name: cnp.Name, tier: string(s.Tier), priority: s.Priority}
	if s.Tier != cnpv1beta1.AdminTier && s.Tier != cnpv1beta1.BaselineTier {
		return bad(fmt.Errorf("tier %q: want Admin or Baseline", s.Tier))
	}
	var err error
	switch {
	case s.Subject.Namespaces != nil && s.Subject.Pods == nil:
		if ci.nsSel, err = selector(s.Subject.Namespaces); err != nil {
			return bad(fmt.Errorf("subject.namespaces: %w", err))
		}
	case s.Subject.Pods != nil && s.Subject.Namespaces == nil:
		if ci.nsSel, err = selector(&s.Subject.Pods.NamespaceSelector); err != nil {
			return bad(fmt.Errorf("subject.pods.namespaceSelector: %w", err))
		}
		if ci.podSel, err = selector(&s.Subject.Pods.PodSelector); err != nil {
			return bad(fmt.Errorf("subject.pods.podSelector: %w", err))
		}
	default:
		return bad(fmt.Errorf("subject: exactly one of namespaces and pods must be set"))
	}
	for i, r := range s.Ingress {
		var peers []cnpv1beta1.ClusterNetworkPolicyEgressPeer
		for _, p := range r.From {
			peers = append(peers, cnpv1beta1.ClusterNetworkPolicyEgressPeer{Namespaces: p.Namespaces, Pods: p.Pods})
		}
		cr, err := newCNPRule(ci, rules.Ingress, i, r.Name, r.Action, peers, r.Protocols)
		if err != nil {
			return bad(err)
		}
		ci.rules[rules.Ingress] = append(ci.rules[rules.Ingress], cr)
	}
	for i, r := range s.Egress {
		cr, err := newCNPRule(ci, rules.Egress, i, r.Name, r.Action, r.To, r.Protocols)
		if err != nil {
			return bad(err)
		}
		ci.rules[rules.Egress] = append(ci.rules[rules.Egress], cr)
	}
	return ci, nil
}

func newCNPRule(ci *cnpInfo, d rules.Direction, idx int, name string, action cnpv1beta1.ClusterNetworkPolicyRuleAction,
	peers []cnpv1beta1.ClusterNetworkPolicyEgressPeer, protos []cnpv1beta1.ClusterNetworkPolicyProtocol) (*cnpRule, error) {
	where := fmt.Sprintf("%s[%d]", strings.ToLower(d.String()), idx)
	switch action {
	case cnpv1beta1.ClusterNetworkPolicyRuleActionAccept, cnpv1beta1.ClusterNetworkPolicyRuleActionDeny, cnpv1beta1.ClusterNetworkPolicyRuleActionPass:
	default:
		return nil, fmt.Errorf("%s: action %q: want Accept, Deny or Pass", where, action)
	}
	r := &cnpRule{action: action, ref: RuleRef{Policy: types.NamespacedName{Name: ci.name}, Direction: d, Index: idx,
		Tier: ci.tier, Name: name, Action: string(action)}}
	for j, p := range peers {
		var pe cnpPeer
		var err error
		set := 0
		if p.Namespaces != nil {
			set++
			pe.nsSel, err = selector(p.Namespaces)
		}
		if p.Pods != nil {
			set++
			if pe.nsSel, err = selector(&p.Pods.NamespaceSelector); err == nil {
				pe.podSel, err = selector(&p.Pods.PodSelector)
			}
		}
		if p.Nodes != nil {
			set++
			pe.nodeSel, err = selector(p.Nodes)
		}
		if len(p.Networks) > 0 {
			set++
			for _, n := range p.Networks {
				pfx, perr := parseCIDR(string(n))
				if perr != nil {
					err = perr
					break
				}
				pe.networks = append(pe.networks, pfx)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s peer %d: %w", where, j, err)
		}
		if set != 1 || len(p.DomainNames) > 0 {
			// A peer we cannot read (domainNames, or a field of a newer API): fail closed
			// as the API asks: an Accept matches nothing, a Deny or Pass everything.
			if action != cnpv1beta1.ClusterNetworkPolicyRuleActionAccept {
				r.all = true
			}
			continue
		}
		r.peers = append(r.peers, pe)
	}
	if len(protos) == 0 {
		r.numeric = []rules.PortRule{{Protocol: rules.ProtocolAny, First: 0, Last: 65535}}
	}
	for j, p := range protos {
		add := func(proto rules.Protocol, port *cnpv1beta1.Port) error {
			pr := rules.PortRule{Protocol: proto, First: 0, Last: 65535}
			switch {
			case port == nil:
			case port.Range != nil:
				if port.Range.Start < 1 || port.Range.End > 65535 || port.Range.Start > port.Range.End {
					return fmt.Errorf("%s protocols[%d]: port range %d-%d", where, j, port.Range.Start, port.Range.End)
				}
				pr.First, pr.Last = uint16(port.Range.Start), uint16(port.Range.End)
			default:
				if port.Number < 1 || port.Number > 65535 {
					return fmt.Errorf("%s protocols[%d]: port %d", where, j, port.Number)
				}
				pr.First, pr.Last = uint16(port.Number), uint16(port.Number)
			}
			r.numeric = append(r.numeric, pr)
			return nil
		}
		var err error
		switch {
		case p.TCP != nil:
			err = add(rules.ProtocolTCP, p.TCP.DestinationPort)
		case p.UDP != nil:
			err = add(rules.ProtocolUDP, p.UDP.DestinationPort)
		case p.SCTP != nil:
			err = add(rules.ProtocolSCTP, p.SCTP.DestinationPort)
		case p.DestinationNamedPort != "":
			r.named = append(r.named, p.DestinationNamedPort)
		default:
			return nil, fmt.Errorf("%s protocols[%d]: none of tcp, udp, sctp, destinationNamedPort is set", where, j)
		}
		if err != nil {
			return nil, err
		}
	}
	return r, nil
}

// selects reports whether the policy's subject is pod p.
func (c *Compiler) cnpSelects(ci *cnpInfo, p *podInfo) bool {
	return ci.nsSel.Matches(c.nsLabels(p.key.Namespace)) && (ci.podSel == nil || ci.podSel.Matches(p.labels))
}

// tierRules returns, for pod p and direction d, the Admin and the Baseline rules that
// apply, each in evaluation order: priority, then policy name (the API leaves equal
// priorities to the implementation; the name makes ours deterministic), then the
// rule's position.
func (c *Compiler) tierRules(p *podInfo, d rules.Direction) (admin, baseline []*cnpRule) {
	var pols []*cnpInfo
	for _, ci := range c.cnps {
		if len(ci.rules[d]) > 0 && c.cnpSelects(ci, p) {
			pols = append(pols, ci)
		}
	}
	slices.SortFunc(pols, func(a, b *cnpInfo) int {
		return cmp.Or(cmp.Compare(a.tier, b.tier), cmp.Compare(a.priority, b.priority), strings.Compare(a.name, b.name))
	})
	for _, ci := range pols {
		if ci.tier == TierAdmin {
			admin = append(admin, ci.rules[d]...)
		} else {
			baseline = append(baseline, ci.rules[d]...)
		}
	}
	return admin, baseline
}

// cnpItem is one (prefix, ports) a CNP rule matches.
type cnpItem struct {
	prefix netip.Prefix
	ports  []rules.PortRule
}

// cnpMatch is a CNP rule as the addresses and ports it matches for one target pod.
type cnpMatch struct {
	r     *cnpRule
	items []cnpItem
	index map[netip.Prefix][]rules.PortRule // by buildIndex
	lens  [2][]int
}

// resolveNamed resolves destinationNamedPort names against pod q's containerPorts, for
// every protocol the port is declared with.
func resolveNamed(names []string, q *podInfo) []rules.PortRule {
	var out []rules.PortRule
	for _, n := range names {
		for _, proto := range []rules.Protocol{rules.ProtocolTCP, rules.ProtocolUDP, rules.ProtocolSCTP} {
			for _, v := range q.resolveAll(n, proto) {
				out = append(out, rules.PortRule{Protocol: proto, First: v, Last: v})
			}
		}
	}
	return out
}

// cnpPeerPods returns the peer pods a CNP peer selects, sorted by key.
func (c *Compiler) cnpPeerPods(pe *cnpPeer) []*podInfo {
	var out []*podInfo
	for ns, n := range c.nsPods {
		if !pe.nsSel.Matches(c.nsLabels(ns)) {
			continue
		}
		sel := pe.podSel
		if sel == nil {
			sel = labels.Everything()
		}
		n.each(sel, func(q *podInfo) {
			if q.peer() {
				out = append(out, q)
			}
		})
	}
	slices.SortFunc(out, func(a, b *podInfo) int { return compareKeys(a.key, b.key) })
	return out
}

// match resolves rule r for target pod p in direction d.
func (c *Compiler) match(p *podInfo, d rules.Direction, r *cnpRule) cnpMatch {
	m := cnpMatch{r: r}
	if r.all {
		m.items = []cnpItem{{all4, []rules.PortRule{{Protocol: rules.ProtocolAny, Last: 65535}}}, {all6, []rules.PortRule{{Protocol: rules.ProtocolAny, Last: 65535}}}}
		return m
	}
	// Ingress named ports are the target's own; egress ones each peer pod's, and never
	// match an address that is not a pod (nodes, networks).
	base := r.numeric
	if d == rules.Ingress && len(r.named) > 0 {
		base = append(slices.Clone(r.numeric), resolveNamed(r.named, p)...)
	}
	for i := range r.peers {
		pe := &r.peers[i]
		switch {
		case pe.nsSel != nil:
			for _, q := range c.cnpPeerPods(pe) {
				ports := base
				if d == rules.Egress && len(r.named) > 0 {
					ports = append(slices.Clone(r.numeric), resolveNamed(r.named, q)...)
				}
				if len(ports) == 0 {
					continue
				}
				for _, a := range q.ips {
					m.items = append(m.items, cnpItem{hostPrefix(a), ports})
				}
			}
		case pe.nodeSel != nil:
			if len(base) == 0 {
				continue
			}
			for _, nd := range c.nodes {
				if pe.nodeSel.Matches(nd.labels) {
					for _, a := range nd.addrs {
						m.items = append(m.items, cnpItem{hostPrefix(a), base})
					}
				}
			}
		default:
			if len(r.numeric) == 0 {
				continue
			}
			for _, n := range pe.networks {
				m.items = append(m.items, cnpItem{n, r.numeric})
			}
		}
	}
	return m
}

// nodeInfo is what a ClusterNetworkPolicy nodes peer needs of a Node.
type nodeInfo struct {
	labels labels.Set
	addrs  []netip.Addr
}

func newNodeInfo(n *corev1.Node) *nodeInfo {
	ni := &nodeInfo{labels: labels.Set(n.Labels)}
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			ni.addrs = append(ni.addrs, ip.Unmap())
		}
	}
	ni.addrs = sortedAddrs(ni.addrs)
	return ni
}

// UpsertClusterNetworkPolicy adds or updates a ClusterNetworkPolicy; an invalid one
// changes nothing.
func (c *Compiler) UpsertClusterNetworkPolicy(cnp *cnpv1beta1.ClusterNetworkPolicy) ([]types.NamespacedName, error) {
	ci, err := newCNPInfo(cnp)
	if err != nil {
		return nil, err
	}
	c.setCNP(cnp.Name, ci)
	return c.flush(), nil
}

// DeleteClusterNetworkPolicy forgets a ClusterNetworkPolicy.
func (c *Compiler) DeleteClusterNetworkPolicy(name string) []types.NamespacedName {
	if _, ok := c.cnps[name]; ok {
		c.setCNP(name, nil)
	}
	return c.flush()
}

// UpsertNode adds or updates a Node (its labels and addresses, for nodes peers).
func (c *Compiler) UpsertNode(n *corev1.Node) []types.NamespacedName {
	ni := newNodeInfo(n)
	if old := c.nodes[n.Name]; old != nil && labelsEqual(old.labels, ni.labels) && slices.Equal(old.addrs, ni.addrs) {
		return nil // status heartbeats change nothing a peer selects
	}
	c.nodes[n.Name] = ni
	c.dirtyCNP()
	return c.flush()
}

// DeleteNode forgets a Node.
func (c *Compiler) DeleteNode(name string) []types.NamespacedName {
	if _, ok := c.nodes[name]; ok {
		delete(c.nodes, name)
		c.dirtyCNP()
	}
	return c.flush()
}

func (c *Compiler) setCNP(name string, ci *cnpInfo) {
	if old := c.cnps[name]; old != nil {
		for d := range old.rules {
			for _, r := range old.rules[d] {
				c.table.release(r.ref)
			}
		}
		delete(c.cnps, name)
	}
	if ci != nil {
		for d := range ci.rules {
			for _, r := range ci.rules[d] {
				r.id = c.table.assign(r.ref)
			}
		}
		c.cnps[name] = ci
	}
	c.dirtyAll()
}

// dirtyCNP recomputes every pod while any ClusterNetworkPolicy exists: cluster-wide
// peers (namespaces, pods, nodes) can change with any object. Exact and simple; the
// cost is one full recompute per change (see BENCHMARKS.md / docs limits).
func (c *Compiler) dirtyCNP() {
	if len(c.cnps) > 0 {
		c.dirtyAll()
	}
}

func (c *Compiler) dirtyAll() {
	for k := range c.pods {
		c.dirty[k] = struct{}{}
	}
	for k := range c.out {
		c.dirty[k] = struct{}{}
	}
}

// SelectingClusterPolicies returns "Tier/name" of the ClusterNetworkPolicies whose
// rules apply to the pod in direction d, in evaluation order.
func (c *Compiler) SelectingClusterPolicies(pod types.NamespacedName, d rules.Direction) []string {
	p := c.pods[pod]
	if p == nil || !c.target(p) {
		return nil
	}
	admin, baseline := c.tierRules(p, d)
	var out []string
	for _, r := range append(admin, baseline...) {
		s := r.ref.Tier + "/" + r.ref.Policy.Name
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// TierDecision says which ClusterNetworkPolicy rule, if any, decides a packet of pod
// in direction d with remote, proto and port: the first matching Admin rule (Accept,
// Deny or Pass), or, when no NetworkPolicy isolates the pod there and the Admin tier
// passed or did not match, the first matching Baseline rule. false: no tier rule
// decided (NetworkPolicy or the default did). It evaluates the rules directly, per
// packet, for tools that must name a Deny (the datapath names only what it allows).
func (c *Compiler) TierDecision(pod types.NamespacedName, d rules.Direction, remote netip.Addr, proto rules.Protocol, port uint16) (RuleRef, bool) {
	p := c.pods[pod]
	if p == nil || !c.target(p) {
		return RuleRef{}, false
	}
	q := hostPrefix(remote.Unmap())
	admin, baseline := c.tierRules(p, d)
	for _, r := range admin {
		if m := c.match(p, d, r); covers(&m, q, proto, port) {
			if r.action == cnpv1beta1.ClusterNetworkPolicyRuleActionPass && len(c.selecting(p, d)) == 0 {
				break // on to NetworkPolicy, which does not isolate: the Baseline decides
			}
			return r.ref, true
		}
	}
	if len(c.selecting(p, d)) > 0 {
		return RuleRef{}, false
	}
	for _, r := range baseline {
		if m := c.match(p, d, r); covers(&m, q, proto, port) {
			return r.ref, true
		}
	}
	return RuleRef{}, false
}
