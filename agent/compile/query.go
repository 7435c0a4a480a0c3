package compile

// Queries for `strictgate verdict` and `explain`: what a ClusterIP leads to and how one
// rule relates to a flow. The agent never asks them; they read the same model the
// compiled rules come from, so the explanations cannot drift from what is enforced.

import (
	"net/netip"
	"slices"

	"k8s.io/apimachinery/pkg/types"

	"github.com/strictgate/strictgate/agent/rules"
)

// Backend is one ready backend of a Service port: the address and target port that
// kube-proxy translates the ClusterIP and service port to.
type Backend struct {
	Addr netip.Addr
	Port uint16
}

// ServicePort describes what a ClusterIP:port leads to.
type ServicePort struct {
	Service   types.NamespacedName
	ClusterIP netip.Addr
	// HasPort is false when the Service has no port (proto, port); then nothing is reached.
	HasPort  bool
	Backends []Backend
}

// ServiceAt returns the Service whose ClusterIP is ip and the ready backends of its
// port (proto, port); false if ip is no known ClusterIP.
func (c *Compiler) ServiceAt(ip netip.Addr, proto rules.Protocol, port uint16) (ServicePort, bool) {
	ip = ip.Unmap()
	var sp ServicePort
	found := false
	for _, s := range c.services {
		if slices.Contains(s.clusterIPs, ip) {
			sp.Service, sp.ClusterIP, found = s.key, ip, true
			break
		}
	}
	if !found {
		return sp, false
	}
	if c.svcs == nil {
		c.svcs = newBatch(c).services()
	}
	for _, t := range c.svcs {
		if t.prefix.Addr() == ip && t.proto == proto && t.port == port {
			sp.HasPort = true
			for _, b := range t.backends {
				sp.Backends = append(sp.Backends, Backend{Addr: b.addr, Port: b.port})
			}
		}
	}
	return sp, true
}

// RuleMatch says how one rule relates to a flow: whether one of its peers admits the
// remote address, and whether its ports admit the protocol and port there.
type RuleMatch struct {
	Peer, Port bool
}

// MatchRule evaluates one rule for a flow at pod (remote is the other end, port the
// destination port), the way the compiled rules do; false if the rule is unknown. It
// backs `strictgate explain`'s account of why no rule admitted a flow.
func (c *Compiler) MatchRule(ref RuleRef, pod types.NamespacedName, remote netip.Addr, proto rules.Protocol, port uint16) (RuleMatch, bool) {
	pol := c.policies[ref.Policy]
	p := c.pods[pod]
	if pol == nil || p == nil || ref.Index < 0 || ref.Index >= len(pol.rules[ref.Direction]) {
		return RuleMatch{}, false
	}
	remote = remote.Unmap()
	r := pol.rules[ref.Direction][ref.Index]
	ra := newBatch(c).ruleAddrs(pol.key.Namespace, ref.Direction, r)
	var m RuleMatch
	m.Peer = slices.ContainsFunc(ra.blocks, func(pe *peerInfo) bool { return pe.admits(remote) }) ||
		slices.ContainsFunc(ra.pods, func(pa podAddr) bool { return pa.prefix.Addr() == remote })
	// Named ports resolve on the destination: the pod itself for ingress, the pod at
	// the remote address for egress.
	dst := p
	if ref.Direction == rules.Egress {
		dst = nil
		for _, q := range c.pods {
			if q.peer() && slices.Contains(q.ips, remote) {
				dst = q
			}
		}
	}
	ports := slices.Clone(r.numeric)
	if dst != nil {
		ports = appendResolved(ports, r, dst)
	}
	m.Port = slices.ContainsFunc(ports, func(pr rules.PortRule) bool { return pr.Matches(proto, port) })
	return m, true
}

// RuleCount returns how many rules a policy has for direction d; false if unknown.
func (c *Compiler) RuleCount(policy types.NamespacedName, d rules.Direction) (int, bool) {
	pol := c.policies[policy]
	if pol == nil {
		return 0, false
	}
	return len(pol.rules[d]), true
}
