package compile

// An independent model of the ClusterNetworkPolicy tiers, per packet, straight from the
// API's doc comments (apis/v1beta1): Admin rules by (priority, name — our documented
// tie rule — position), first match decides (Accept allows, Deny drops, Pass goes on to
// NetworkPolicy); NetworkPolicy decides for a pod it isolates in that direction; else
// Baseline rules the same way (Pass = default allow); else allowed. It reuses only the
// NetworkPolicy model of reference_test.go (naive.allowed), never the compiler.

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/strictgate/strictgate/agent/compile/compiletest"
	"github.com/strictgate/strictgate/agent/rules"
)

type tierRule struct {
	cnp    *cnpv1beta1.ClusterNetworkPolicy
	d      rules.Direction
	idx    int
	action cnpv1beta1.ClusterNetworkPolicyRuleAction
	peers  []cnpv1beta1.ClusterNetworkPolicyEgressPeer
	protos []cnpv1beta1.ClusterNetworkPolicyProtocol
}

func (n *naive) subject(c *cnpv1beta1.ClusterNetworkPolicy, pod *corev1.Pod) bool {
	if s := c.Spec.Subject.Namespaces; s != nil {
		return sel(s).Matches(n.nsLabels(pod.Namespace))
	}
	s := c.Spec.Subject.Pods
	return sel(&s.NamespaceSelector).Matches(n.nsLabels(pod.Namespace)) && sel(&s.PodSelector).Matches(labels.Set(pod.Labels))
}

func (n *naive) tierRulesOf(pod *corev1.Pod, d rules.Direction, tier cnpv1beta1.Tier) []tierRule {
	var pols []*cnpv1beta1.ClusterNetworkPolicy
	for _, c := range n.s.ClusterNetworkPolicies {
		if c.Spec.Tier == tier && n.subject(c, pod) {
			pols = append(pols, c)
		}
	}
	slices.SortFunc(pols, func(a, b *cnpv1beta1.ClusterNetworkPolicy) int {
		return cmp.Or(cmp.Compare(a.Spec.Priority, b.Spec.Priority), strings.Compare(a.Name, b.Name))
	})
	var out []tierRule
	for _, c := range pols {
		if d == rules.Ingress {
			for i, r := range c.Spec.Ingress {
				tr := tierRule{cnp: c, d: d, idx: i, action: r.Action, protos: r.Protocols}
				for _, f := range r.From {
					tr.peers = append(tr.peers, cnpv1beta1.ClusterNetworkPolicyEgressPeer{Namespaces: f.Namespaces, Pods: f.Pods})
				}
				out = append(out, tr)
			}
			continue
		}
		for i, r := range c.Spec.Egress {
			out = append(out, tierRule{cnp: c, d: d, idx: i, action: r.Action, peers: r.To, protos: r.Protocols})
		}
	}
	return out
}

func cnpPortOK(p *cnpv1beta1.Port, port uint16) bool {
	switch {
	case p == nil:
		return true
	case p.Range != nil:
		return int32(port) >= p.Range.Start && int32(port) <= p.Range.End
	}
	return int32(port) == p.Number
}

// matches: some peer selects remote and some protocol entry matches (named ports are
// the destination pod's: the subject for ingress, the pod at remote for egress).
func (n *naive) tierMatches(tr tierRule, pod *corev1.Pod, remote netip.Addr, proto rules.Protocol, port uint16) bool {
	for _, pe := range tr.peers {
		var dstPods []*corev1.Pod
		ok := false
		switch {
		case pe.Namespaces != nil || pe.Pods != nil:
			for _, q := range n.podsAt(remote) {
				var m bool
				if pe.Namespaces != nil {
					m = sel(pe.Namespaces).Matches(n.nsLabels(q.Namespace))
				} else {
					m = sel(&pe.Pods.NamespaceSelector).Matches(n.nsLabels(q.Namespace)) && sel(&pe.Pods.PodSelector).Matches(labels.Set(q.Labels))
				}
				if m {
					ok = true
					dstPods = append(dstPods, q)
				}
			}
		case pe.Nodes != nil:
			for _, nd := range n.s.Nodes {
				for _, a := range nd.Status.Addresses {
					if (a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP) && netip.MustParseAddr(a.Address) == remote && sel(pe.Nodes).Matches(labels.Set(nd.Labels)) {
						ok = true
					}
				}
			}
		default:
			for _, c := range pe.Networks {
				if netip.MustParsePrefix(string(c)).Contains(remote) {
					ok = true
				}
			}
		}
		if !ok {
			continue
		}
		if tr.d == rules.Ingress {
			dstPods = []*corev1.Pod{pod}
		}
		if len(tr.protos) == 0 {
			return true
		}
		for _, p := range tr.protos {
			switch {
			case p.TCP != nil && proto == rules.ProtocolTCP && cnpPortOK(p.TCP.DestinationPort, port),
				p.UDP != nil && proto == rules.ProtocolUDP && cnpPortOK(p.UDP.DestinationPort, port),
				p.SCTP != nil && proto == rules.ProtocolSCTP && cnpPortOK(p.SCTP.DestinationPort, port):
				return true
			case p.DestinationNamedPort != "":
				for _, q := range dstPods {
					for _, ctr := range q.Spec.Containers {
						for _, cp := range ctr.Ports {
							if cp.Name == p.DestinationNamedPort && string(cp.Protocol) == proto.String() && cp.ContainerPort == int32(port) {
								return true
							}
						}
					}
				}
			}
		}
	}
	return false
}

// tieredAllowed is the model's verdict, and the deciding tier rule (nil: none).
func (n *naive) tieredAllowed(pod *corev1.Pod, d rules.Direction, remote netip.Addr, proto rules.Protocol, port uint16) (bool, *tierRule) {
	admin, baseline := n.tierRulesOf(pod, d, cnpv1beta1.AdminTier), n.tierRulesOf(pod, d, cnpv1beta1.BaselineTier)
	if len(admin) == 0 && len(baseline) == 0 {
		return n.allowed(pod, d, remote, proto, port), nil
	}
	if d == rules.Egress {
		if s := n.service(remote); s != nil {
			for _, sp := range s.Spec.Ports {
				if string(sp.Protocol) != proto.String() || sp.Port != int32(port) {
					continue
				}
				bes := n.backends(s, sp, remote.Is4())
				if len(bes) == 0 {
					return false, nil
				}
				for _, be := range bes {
					if ok, _ := n.tieredAllowed(pod, d, be.addr, proto, be.port); !ok {
						return false, nil
					}
				}
				return true, nil
			}
			return false, nil
		}
	}
adminTier:
	for i := range admin {
		if n.tierMatches(admin[i], pod, remote, proto, port) {
			switch admin[i].action {
			case cnpv1beta1.ClusterNetworkPolicyRuleActionAccept:
				return true, &admin[i]
			case cnpv1beta1.ClusterNetworkPolicyRuleActionDeny:
				return false, &admin[i]
			}
			break adminTier
		}
	}
	if len(n.isolating(pod, d)) > 0 {
		return n.allowed(pod, d, remote, proto, port), nil
	}
	for i := range baseline {
		if n.tierMatches(baseline[i], pod, remote, proto, port) {
			return baseline[i].action != cnpv1beta1.ClusterNetworkPolicyRuleActionDeny, &baseline[i]
		}
	}
	return true, nil
}

var tierProtos = []rules.Protocol{rules.ProtocolTCP, rules.ProtocolUDP, rules.ProtocolSCTP, rules.ProtocolICMP}

func TestTiersReferenceModel(t *testing.T) {
	scenarios := 600
	if testing.Short() {
		scenarios = 150
	}
	stats := map[string]int{}
	for seed := range scenarios {
		r := rand.New(rand.NewPCG(uint64(seed), 7))
		s := State(compiletest.RandTieredCluster(r))
		c, err := Build(s, Options{})
		if err != nil {
			t.Fatalf("seed %d: build: %v", seed, err)
		}
		n := &naive{s: s}
		rem := remotes(s)
		for _, pod := range s.Pods {
			key := types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}
			pr, ok := c.Rules(key)
			if !ok {
				continue
			}
			for _, d := range []rules.Direction{rules.Ingress, rules.Egress} {
				dr := pr.Dir(d)
				for i := 0; i < 80; i++ {
					remote := rem[r.IntN(len(rem))]
					proto := tierProtos[r.IntN(len(tierProtos))]
					port := testPorts[r.IntN(len(testPorts))]
					if proto == rules.ProtocolICMP {
						port = 0
						if !remote.Is4() {
							proto = rules.ProtocolICMPv6
						}
					}
					v, id := dr.Lookup(remote, proto, port)
					want, by := n.tieredAllowed(pod, d, remote, proto, port)
					kind := "np"
					if by != nil {
						kind = string(by.cnp.Spec.Tier) + "-" + string(by.action)
					}
					stats[fmt.Sprintf("%s-%v", kind, want)]++
					if (v == rules.Allow) != want {
						t.Fatalf("seed %d: %s %s %s %s/%d: compiled %v (rule %d), model allow=%v (decided by %+v)\nrules: %+v", seed, key, d, remote, proto, port, v, id, want, by, dr.Entries)
					}
					// Attribution: an Accept (or Baseline Pass) names its own rule.
					if v == rules.Allow && by != nil && n.service(remote) == nil {
						ref, ok := c.Rule(id)
						if !ok || ref.Tier != string(by.cnp.Spec.Tier) || ref.Policy.Name != by.cnp.Name || ref.Index != by.idx || ref.Direction != d || ref.Action != string(by.action) {
							t.Fatalf("seed %d: %s %s %s %s/%d: allowed by rule %d = %+v, model says %s %s[%d] %s", seed, key, d, remote, proto, port, id, ref, by.cnp.Name, d, by.idx, by.action)
						}
					}
				}
			}
		}
		if changed := c.Recompute(); len(changed) != 0 {
			t.Fatalf("seed %d: recompute changed %v", seed, changed)
		}
	}
	t.Logf("%v", stats)
	for _, k := range []string{"Admin-Accept-true", "Admin-Deny-false", "Baseline-Accept-true", "Baseline-Deny-false", "Baseline-Pass-true", "np-true", "np-false"} {
		if stats[k] < 20 {
			t.Errorf("only %d flows of kind %s: the generator is too narrow", stats[k], k)
		}
	}
}

// TestTiersIncremental: ClusterNetworkPolicies, Nodes and pod changes applied one by
// one give what a fresh Build of the final state gives, and Delete undoes Upsert.
func TestTiersIncremental(t *testing.T) {
	for seed := range 80 {
		r := rand.New(rand.NewPCG(uint64(seed), 11))
		full := State(compiletest.RandTieredCluster(r))
		base := full
		base.ClusterNetworkPolicies, base.Nodes = nil, nil
		c, err := Build(base, Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range full.Nodes {
			c.UpsertNode(n)
		}
		for _, cnp := range full.ClusterNetworkPolicies {
			if _, err := c.UpsertClusterNetworkPolicy(cnp); err != nil {
				t.Fatal(err)
			}
		}
		// A pod relabelled after the policies exist.
		if len(full.Pods) > 0 {
			p := full.Pods[r.IntN(len(full.Pods))].DeepCopy()
			p.Labels = compiletest.RandLabels(r)
			if _, err := c.UpsertPod(p); err != nil {
				t.Fatal(err)
			}
			for i, q := range full.Pods {
				if q.Namespace == p.Namespace && q.Name == p.Name {
					full.Pods = append(slices.Clone(full.Pods[:i]), append([]*corev1.Pod{p}, full.Pods[i+1:]...)...)
					break
				}
			}
		}
		// A namespace relabelled: subjects and peers select by namespace labels.
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsNames[r.IntN(len(nsNames))], Labels: compiletest.RandLabels(r)}}
		c.UpsertNamespace(ns)
		full.Namespaces = append(slices.DeleteFunc(slices.Clone(full.Namespaces), func(o *corev1.Namespace) bool { return o.Name == ns.Name }), ns)
		want, err := Build(full, Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range want.Pods() {
			a, _ := c.Rules(k)
			b, _ := want.Rules(k)
			if a == nil || !equalPodRules(a, b) {
				t.Fatalf("seed %d: %s incrementally %+v, built %+v", seed, k, a, b)
			}
		}
		for _, cnp := range full.ClusterNetworkPolicies {
			c.DeleteClusterNetworkPolicy(cnp.Name)
		}
		// Without the policies: NetworkPolicy only, as a fresh Build says.
		final := full
		final.ClusterNetworkPolicies = nil
		npOnly, err := Build(final, Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range npOnly.Pods() {
			a, _ := c.Rules(k)
			b, _ := npOnly.Rules(k)
			if a == nil || !equalPodRules(a, b) {
				t.Fatalf("seed %d: %s after deleting every ClusterNetworkPolicy %+v, want %+v", seed, k, a, b)
			}
		}
		if changed := c.Recompute(); len(changed) != 0 {
			t.Fatalf("seed %d: recompute after deletes changed %v", seed, changed)
		}
	}
}

// benchTiers are the README's worked example: an Admin deny to the metadata IP and
// accept from a monitoring namespace, a Baseline deny-all (both directions, with DNS).
func benchTiers() []*cnpv1beta1.ClusterNetworkPolicy {
	all := &metav1.LabelSelector{}
	return []*cnpv1beta1.ClusterNetworkPolicy{
		{ObjectMeta: metav1.ObjectMeta{Name: "platform"}, Spec: cnpv1beta1.ClusterNetworkPolicySpec{Tier: cnpv1beta1.AdminTier, Priority: 10,
			Subject: cnpv1beta1.ClusterNetworkPolicySubject{Namespaces: all},
			Ingress: []cnpv1beta1.ClusterNetworkPolicyIngressRule{{Action: cnpv1beta1.ClusterNetworkPolicyRuleActionAccept,
				From: []cnpv1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{NamespaceNameLabel: "ns-0"}}}}}},
			Egress: []cnpv1beta1.ClusterNetworkPolicyEgressRule{{Action: cnpv1beta1.ClusterNetworkPolicyRuleActionDeny,
				To: []cnpv1beta1.ClusterNetworkPolicyEgressPeer{{Networks: []cnpv1beta1.CIDR{"169.254.169.254/32"}}}}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "baseline"}, Spec: cnpv1beta1.ClusterNetworkPolicySpec{Tier: cnpv1beta1.BaselineTier, Priority: 10,
			Subject: cnpv1beta1.ClusterNetworkPolicySubject{Namespaces: all},
			Ingress: []cnpv1beta1.ClusterNetworkPolicyIngressRule{{Action: cnpv1beta1.ClusterNetworkPolicyRuleActionDeny,
				From: []cnpv1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: all}}}},
			Egress: []cnpv1beta1.ClusterNetworkPolicyEgressRule{
				{Action: cnpv1beta1.ClusterNetworkPolicyRuleActionAccept, To: []cnpv1beta1.ClusterNetworkPolicyEgressPeer{{Networks: []cnpv1beta1.CIDR{"10.96.0.10/32"}}},
					Protocols: []cnpv1beta1.ClusterNetworkPolicyProtocol{{UDP: &cnpv1beta1.ClusterNetworkPolicyProtocolUDP{DestinationPort: &cnpv1beta1.Port{Number: 53}}}}},
				{Action: cnpv1beta1.ClusterNetworkPolicyRuleActionDeny, To: []cnpv1beta1.ClusterNetworkPolicyEgressPeer{{Networks: []cnpv1beta1.CIDR{"0.0.0.0/0", "::/0"}}}}}}},
	}
}

// BenchmarkTiersNodeLabelChange is BenchmarkIncrementalNodeLabelChange (10k pods, 2k
// policies, the agent of a node with 100 pods) with benchTiers in force: every change
// then recomputes the node's pods.
func BenchmarkTiersNodeLabelChange(b *testing.B) {
	s := benchState(100, 100)
	for i, p := range s.Pods {
		p.Spec.NodeName = fmt.Sprintf("node-%d", i%100)
	}
	s.ClusterNetworkPolicies = benchTiers()
	c, err := Build(s, Options{Node: "node-7"})
	if err != nil {
		b.Fatal(err)
	}
	pods := [2]*corev1.Pod{s.Pods[5050].DeepCopy(), s.Pods[5050].DeepCopy()}
	pods[0].Labels["tier"], pods[1].Labels["tier"] = "tier-1", "tier-2"
	if _, err := c.UpsertPod(pods[1]); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := c.UpsertPod(pods[i%2]); err != nil {
			b.Fatal(err)
		}
	}
}
