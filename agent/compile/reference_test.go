package compile

// A deliberately naive evaluator, straight from the NetworkPolicy API reference, one
// flow at a time and without any flattening, and a generator of random clusters. The
// compiler (flattened rules + rules.Lookup) must agree with it everywhere.
//
// test/conformance has a second naive model, on purpose. This one answers at the
// compiler's layer — one pod, one direction, one remote address, and which rule index
// admits it — so that the state, the verdict and the attribution of every compiled
// direction are checked; that one answers whole flows (both ends, Services) through the
// `strictgate verdict` CLI and was written without reading agent/compile. Merging them
// would either give the outside model the compiler's vocabulary (rule indexes, per-
// direction states) or take the attribution checks away from this one, and two models
// written independently catch a misreading of the API that one shared model would
// carry into both suites. The generators differ for the same reason: compiletest feeds
// the compiler's shapes (EndpointSlices, phases, incremental updates), conformance's
// gen the CLI's (namespaces without objects, hostNetwork pods, raw addresses).

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/strictgate/strictgate/agent/rules"
)

type naive struct{ s State }

func ipsOf(p *corev1.Pod) []netip.Addr {
	var out []netip.Addr
	if p.Status.PodIP != "" {
		out = append(out, netip.MustParseAddr(p.Status.PodIP))
	}
	for _, ip := range p.Status.PodIPs {
		a := netip.MustParseAddr(ip.IP)
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

func naiveLive(p *corev1.Pod) bool {
	return !p.Spec.HostNetwork && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

func (n *naive) nsLabels(ns string) labels.Set {
	for _, o := range n.s.Namespaces {
		if o.Name == ns {
			l := labels.Set{}
			for k, v := range o.Labels {
				l[k] = v
			}
			l[NamespaceNameLabel] = ns
			return l
		}
	}
	return labels.Set{NamespaceNameLabel: ns}
}

// podsAt returns the peer-capable pods owning address a.
func (n *naive) podsAt(a netip.Addr) []*corev1.Pod {
	var out []*corev1.Pod
	for _, p := range n.s.Pods {
		if naiveLive(p) && slices.Contains(ipsOf(p), a) {
			out = append(out, p)
		}
	}
	return out
}

func sel(ls *metav1.LabelSelector) labels.Selector {
	s, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		panic(err)
	}
	return s
}

func hasType(np *networkingv1.NetworkPolicy, d rules.Direction) bool {
	want := networkingv1.PolicyTypeIngress
	if d == rules.Egress {
		want = networkingv1.PolicyTypeEgress
	}
	return slices.Contains(PolicyTypes(&np.Spec), want)
}

// isolating returns the policies selecting pod for direction d.
func (n *naive) isolating(pod *corev1.Pod, d rules.Direction) []*networkingv1.NetworkPolicy {
	var out []*networkingv1.NetworkPolicy
	for _, np := range n.s.Policies {
		if np.Namespace == pod.Namespace && hasType(np, d) && sel(&np.Spec.PodSelector).Matches(labels.Set(pod.Labels)) {
			out = append(out, np)
		}
	}
	return out
}

func (n *naive) peerMatches(np *networkingv1.NetworkPolicy, pe networkingv1.NetworkPolicyPeer, remote netip.Addr) bool {
	if pe.IPBlock != nil {
		c := netip.MustParsePrefix(pe.IPBlock.CIDR)
		if !c.Contains(remote) {
			return false
		}
		for _, e := range pe.IPBlock.Except {
			if netip.MustParsePrefix(e).Contains(remote) {
				return false
			}
		}
		return true
	}
	for _, q := range n.podsAt(remote) {
		if pe.NamespaceSelector == nil {
			if q.Namespace == np.Namespace && sel(pe.PodSelector).Matches(labels.Set(q.Labels)) {
				return true
			}
			continue
		}
		if sel(pe.NamespaceSelector).Matches(n.nsLabels(q.Namespace)) && (pe.PodSelector == nil || sel(pe.PodSelector).Matches(labels.Set(q.Labels))) {
			return true
		}
	}
	return false
}

func protoName(p rules.Protocol) corev1.Protocol {
	return corev1.Protocol(p.String())
}

// portMatches: dstPods are the pods whose container ports a named port refers to.
func portMatches(ports []networkingv1.NetworkPolicyPort, dstPods []*corev1.Pod, proto rules.Protocol, port uint16) bool {
	if len(ports) == 0 {
		return true
	}
	for _, pp := range ports {
		pr := corev1.ProtocolTCP
		if pp.Protocol != nil {
			pr = *pp.Protocol
		}
		if pr != protoName(proto) {
			continue
		}
		if pp.Port == nil {
			return true
		}
		if pp.Port.Type == intstr.Int {
			last := pp.Port.IntVal
			if pp.EndPort != nil {
				last = *pp.EndPort
			}
			if int32(port) >= pp.Port.IntVal && int32(port) <= last {
				return true
			}
			continue
		}
		for _, dp := range dstPods {
			for _, c := range dp.Spec.Containers {
				for _, cp := range c.Ports {
					cpp := cp.Protocol
					if cpp == "" {
						cpp = corev1.ProtocolTCP
					}
					if cp.Name == pp.Port.StrVal && cpp == pr && cp.ContainerPort == int32(port) {
						return true
					}
				}
			}
		}
	}
	return false
}

// ruleAdmits reports whether rule idx of np in direction d admits the flow at pod.
func (n *naive) ruleAdmits(np *networkingv1.NetworkPolicy, d rules.Direction, idx int, pod *corev1.Pod, remote netip.Addr, proto rules.Protocol, port uint16) bool {
	var peers []networkingv1.NetworkPolicyPeer
	var ports []networkingv1.NetworkPolicyPort
	dstPods := []*corev1.Pod{pod}
	if d == rules.Ingress {
		peers, ports = np.Spec.Ingress[idx].From, np.Spec.Ingress[idx].Ports
	} else {
		peers, ports = np.Spec.Egress[idx].To, np.Spec.Egress[idx].Ports
		dstPods = n.podsAt(remote)
	}
	if !portMatches(ports, dstPods, proto, port) {
		return false
	}
	if len(peers) == 0 {
		return true
	}
	for _, pe := range peers {
		if n.peerMatches(np, pe, remote) {
			return true
		}
	}
	return false
}

func (n *naive) service(a netip.Addr) *corev1.Service {
	for _, s := range n.s.Services {
		for _, ip := range s.Spec.ClusterIPs {
			if ip != "None" && netip.MustParseAddr(ip) == a {
				return s
			}
		}
	}
	return nil
}

// backends returns the ready backends of service port sp whose address family is fam4.
func (n *naive) backends(s *corev1.Service, sp corev1.ServicePort, fam4 bool) []backend {
	var out []backend
	var slicesOf []*discoveryv1.EndpointSlice
	for _, es := range n.s.EndpointSlices {
		if es.Namespace == s.Namespace && es.Labels[discoveryv1.LabelServiceName] == s.Name {
			slicesOf = append(slicesOf, es)
		}
	}
	if len(slicesOf) > 0 {
		for _, es := range slicesOf {
			for _, p := range es.Ports {
				if p.Name == nil || *p.Name != sp.Name || p.Protocol == nil || *p.Protocol != sp.Protocol || p.Port == nil {
					continue
				}
				for _, ep := range es.Endpoints {
					if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
						continue
					}
					for _, a := range ep.Addresses {
						ad := netip.MustParseAddr(a)
						if ad.Is4() == fam4 {
							out = append(out, backend{ad, uint16(*p.Port)})
						}
					}
				}
			}
		}
		return out
	}
	if len(s.Spec.Selector) == 0 {
		return nil
	}
	for _, p := range n.s.Pods {
		if p.Namespace != s.Namespace || !naiveLive(p) || !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(p.Labels)) {
			continue
		}
		notReady := false
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionFalse {
				notReady = true
			}
		}
		if notReady {
			continue
		}
		port := -1
		if sp.TargetPort.Type == intstr.Int {
			port = int(sp.TargetPort.IntVal)
			if port == 0 {
				port = int(sp.Port)
			}
		} else {
			for _, c := range p.Spec.Containers {
				for _, cp := range c.Ports {
					cpp := cp.Protocol
					if cpp == "" {
						cpp = corev1.ProtocolTCP
					}
					if cp.Name == sp.TargetPort.StrVal && cpp == sp.Protocol {
						port = int(cp.ContainerPort)
					}
				}
			}
		}
		if port < 0 {
			continue
		}
		for _, a := range ipsOf(p) {
			if a.Is4() == fam4 {
				out = append(out, backend{a, uint16(port)})
			}
		}
	}
	return out
}

// allowed is the naive verdict of direction d at pod. ICMP has port 0.
func (n *naive) allowed(pod *corev1.Pod, d rules.Direction, remote netip.Addr, proto rules.Protocol, port uint16) bool {
	pols := n.isolating(pod, d)
	if len(pols) == 0 {
		return true
	}
	if d == rules.Egress {
		if s := n.service(remote); s != nil {
			for _, sp := range s.Spec.Ports {
				if string(sp.Protocol) != proto.String() || sp.Port != int32(port) {
					continue
				}
				bes := n.backends(s, sp, remote.Is4())
				if len(bes) == 0 {
					return false
				}
				for _, be := range bes {
					if !n.allowed(pod, d, be.addr, proto, be.port) {
						return false
					}
				}
				return true
			}
			return false
		}
	}
	for _, np := range pols {
		nr := len(np.Spec.Ingress)
		if d == rules.Egress {
			nr = len(np.Spec.Egress)
		}
		for i := 0; i < nr; i++ {
			if n.ruleAdmits(np, d, i, pod, remote, proto, port) {
				return true
			}
		}
	}
	return false
}

var protos = []rules.Protocol{rules.ProtocolTCP, rules.ProtocolUDP, rules.ProtocolSCTP, rules.ProtocolICMP}

func TestReferenceModel(t *testing.T) {
	scenarios := 1500
	if testing.Short() {
		scenarios = 200
	}
	flowsChecked := 0
	stats := map[string]int{}
	for seed := range scenarios {
		r := rand.New(rand.NewPCG(uint64(seed), 42))
		s := randState(r)
		c, err := Build(s, Options{})
		if err != nil {
			t.Fatalf("seed %d: build: %v", seed, err)
		}
		n := &naive{s: s}
		rem := remotes(s)
		for _, pod := range s.Pods {
			key := types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}
			pr, ok := c.Rules(key)
			if ok != naiveLive(pod) {
				t.Fatalf("seed %d: pod %s: compiled=%v, want %v", seed, key, ok, naiveLive(pod))
			}
			if !ok {
				continue
			}
			for _, d := range []rules.Direction{rules.Ingress, rules.Egress} {
				dr := pr.Dir(d)
				wantState := rules.StateUnisolated
				if len(n.isolating(pod, d)) > 0 {
					wantState = rules.StateIsolated
				}
				if dr.State != wantState {
					t.Fatalf("seed %d: %s %s: state %v, want %v", seed, key, d, dr.State, wantState)
				}
				for i := 0; i < 60; i++ {
					remote := rem[r.IntN(len(rem))]
					proto := protos[r.IntN(len(protos))]
					port := testPorts[r.IntN(len(testPorts))]
					if proto == rules.ProtocolICMP {
						port = 0
					}
					v, id := dr.Lookup(remote, proto, port)
					want := n.allowed(pod, d, remote, proto, port)
					flowsChecked++
					if dr.State == rules.StateIsolated {
						stats[fmt.Sprintf("isolated-%v-svc=%v", v, n.service(remote) != nil)]++
					}
					if (v == rules.Allow) != want {
						t.Fatalf("seed %d: %s %s %s %s/%d: compiled %v (rule %d), naive allow=%v\nrules: %+v", seed, key, d, remote, proto, port, v, id, want, dr.Entries)
					}
					if dr.State != rules.StateIsolated {
						continue
					}
					if v != rules.Allow {
						// explain's account: no rule of an isolating policy matches both
						// peer and port (ClusterIPs are judged by their backends instead).
						if n.service(remote) == nil {
							for _, pk := range c.SelectingPolicies(key, d) {
								cnt, _ := c.RuleCount(pk, d)
								for i := range cnt {
									if m, ok := c.MatchRule(RuleRef{Policy: pk, Direction: d, Index: i}, key, remote, proto, port); !ok || (m.Peer && m.Port) {
										t.Fatalf("seed %d: %s %s %s %s/%d denied, but MatchRule(%s[%d]) = %+v, %v", seed, key, d, remote, proto, port, pk, i, m, ok)
									}
								}
							}
						}
						continue
					}
					// Attribution: the deciding rule must itself admit the flow (for a
					// ClusterIP, admit a backend).
					ref, ok := c.Rule(id)
					if !ok {
						t.Fatalf("seed %d: %s %s %s: rule id %d unknown", seed, key, d, remote, id)
					}
					if ref.Direction != d || ref.Policy.Namespace != pod.Namespace {
						t.Fatalf("seed %d: %s: rule %v decided a %s flow", seed, key, ref, d)
					}
					if n.service(remote) == nil {
						var np *networkingv1.NetworkPolicy
						for _, p := range s.Policies {
							if p.Namespace == ref.Policy.Namespace && p.Name == ref.Policy.Name {
								np = p
							}
						}
						if !n.ruleAdmits(np, d, ref.Index, pod, remote, proto, port) {
							t.Fatalf("seed %d: %s %s %s %s/%d: attributed to %v which does not admit it", seed, key, d, remote, proto, port, ref)
						}
						if m, _ := c.MatchRule(ref, key, remote, proto, port); !m.Peer || !m.Port {
							t.Fatalf("seed %d: %s %s %s %s/%d: allowed by %v but MatchRule says %+v", seed, key, d, remote, proto, port, ref, m)
						}
					}
				}
			}
		}
		if changed := c.Recompute(); len(changed) != 0 {
			t.Fatalf("seed %d: recompute changed %v", seed, changed)
		}
	}
	t.Logf("%d scenarios, %d flows agree; %v", scenarios, flowsChecked, stats)
	// The generator must exercise both outcomes, through Services too.
	for _, k := range []string{"isolated-allow-svc=false", "isolated-deny-svc=false", "isolated-allow-svc=true", "isolated-deny-svc=true"} {
		if stats[k] < 20 {
			t.Errorf("only %d flows of kind %s: the generator is too narrow", stats[k], k)
		}
	}
}
