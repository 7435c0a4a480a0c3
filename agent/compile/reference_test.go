package compile

// A deliberately naive evaluator, straight from the NetworkPolicy API reference, one
// flow at a time and without any flattening, and a generator of random clusters. The
// compiler (flattened rules + rules.Lookup) must agree with it everywhere.

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

// --- random clusters -------------------------------------------------------------

var (
	nsNames   = []string{"x", "y", "z"}
	podNames  = []string{"a", "b", "c", "d"}
	labelKeys = []string{"pod", "app", "tier"}
	labelVals = []string{"a", "b", "c"}
)

func randLabels(r *rand.Rand) map[string]string {
	l := map[string]string{}
	for _, k := range labelKeys {
		if r.IntN(2) == 0 {
			l[k] = labelVals[r.IntN(len(labelVals))]
		}
	}
	return l
}

func randSelector(r *rand.Rand) *metav1.LabelSelector {
	s := &metav1.LabelSelector{}
	switch r.IntN(4) {
	case 0: // empty: everything
	case 1:
		s.MatchLabels = map[string]string{labelKeys[r.IntN(3)]: labelVals[r.IntN(3)]}
	default:
		n := 1 + r.IntN(2)
		for range n {
			req := metav1.LabelSelectorRequirement{Key: labelKeys[r.IntN(3)]}
			switch r.IntN(4) {
			case 0:
				req.Operator = metav1.LabelSelectorOpIn
				req.Values = []string{labelVals[r.IntN(3)], labelVals[r.IntN(3)]}
			case 1:
				req.Operator = metav1.LabelSelectorOpNotIn
				req.Values = []string{labelVals[r.IntN(3)]}
			case 2:
				req.Operator = metav1.LabelSelectorOpExists
			case 3:
				req.Operator = metav1.LabelSelectorOpDoesNotExist
			}
			s.MatchExpressions = append(s.MatchExpressions, req)
		}
	}
	return s
}

var namedPorts = []corev1.ContainerPort{
	{Name: "http", ContainerPort: 80, Protocol: corev1.ProtocolTCP},
	{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
	{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
	{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolTCP},
	{Name: "serve-81", ContainerPort: 81, Protocol: corev1.ProtocolTCP},
	{Name: "sctp", ContainerPort: 82, Protocol: corev1.ProtocolSCTP},
}

var testPorts = []uint16{53, 80, 81, 82, 443, 5000, 5005, 5010, 8080}

func randPod(r *rand.Rand, ns string, ni, pi int) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: podNames[pi], Labels: randLabels(r)}}
	v4 := fmt.Sprintf("10.0.%d.%d", ni, pi+1)
	v6 := fmt.Sprintf("fd00::%d:%d", ni, pi+1)
	switch r.IntN(10) {
	case 0: // no IP yet
	case 1:
		p.Status.PodIP = v6
		p.Status.PodIPs = []corev1.PodIP{{IP: v6}}
	case 2, 3:
		p.Status.PodIP = v4
		p.Status.PodIPs = []corev1.PodIP{{IP: v4}, {IP: v6}}
	default:
		p.Status.PodIP = v4
	}
	switch r.IntN(20) {
	case 0:
		p.Spec.HostNetwork = true
	case 1:
		p.Status.Phase = corev1.PodSucceeded
	case 2:
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}
	}
	used := map[string]bool{}
	var ports []corev1.ContainerPort
	for _, cp := range namedPorts {
		if r.IntN(3) == 0 && !used[cp.Name+string(cp.Protocol)] {
			used[cp.Name+string(cp.Protocol)] = true
			ports = append(ports, cp)
		}
	}
	p.Spec.Containers = []corev1.Container{{Name: "c", Ports: ports}}
	return p
}

var cidrs = []string{"10.0.0.0/16", "10.0.1.0/24", "10.0.0.0/8", "0.0.0.0/0", "10.0.2.0/30", "fd00::/64", "fd00::1:0/112", "::/0", "192.168.0.0/16", "10.0.1.2/32"}

func randBlock(r *rand.Rand) *networkingv1.IPBlock {
	c := netip.MustParsePrefix(cidrs[r.IntN(len(cidrs))])
	b := &networkingv1.IPBlock{CIDR: c.String()}
	for range r.IntN(3) {
		bits := c.Bits() + 1 + r.IntN(c.Addr().BitLen()-c.Bits()+1)
		if bits > c.Addr().BitLen() {
			continue
		}
		// an except inside c, around the test addresses
		var a netip.Addr
		if c.Addr().Is4() {
			a = netip.MustParseAddr(fmt.Sprintf("10.0.%d.%d", r.IntN(3), 1+r.IntN(5)))
		} else {
			a = netip.MustParseAddr(fmt.Sprintf("fd00::%d:%d", r.IntN(3), 1+r.IntN(5)))
		}
		if !c.Contains(a) {
			continue
		}
		b.Except = append(b.Except, netip.PrefixFrom(a, bits).Masked().String())
	}
	return b
}

func randPorts(r *rand.Rand) []networkingv1.NetworkPolicyPort {
	var out []networkingv1.NetworkPolicyPort
	for range r.IntN(3) {
		var pp networkingv1.NetworkPolicyPort
		if r.IntN(3) > 0 {
			pr := []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}[r.IntN(3)]
			pp.Protocol = &pr
		}
		switch r.IntN(5) {
		case 0: // protocol only
		case 1:
			v := intstr.FromString([]string{"http", "dns", "serve-81", "sctp", "nope"}[r.IntN(5)])
			pp.Port = &v
		case 2:
			v := intstr.FromInt32(5000)
			e := int32(5000 + r.IntN(10))
			pp.Port, pp.EndPort = &v, &e
		default:
			v := intstr.FromInt32(int32(testPorts[r.IntN(len(testPorts))]))
			pp.Port = &v
		}
		out = append(out, pp)
	}
	return out
}

func randPeers(r *rand.Rand) []networkingv1.NetworkPolicyPeer {
	var out []networkingv1.NetworkPolicyPeer
	for range r.IntN(3) {
		var pe networkingv1.NetworkPolicyPeer
		switch r.IntN(4) {
		case 0:
			pe.PodSelector = randSelector(r)
		case 1:
			pe.NamespaceSelector = randSelector(r)
			if r.IntN(3) == 0 {
				pe.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{NamespaceNameLabel: nsNames[r.IntN(3)]}}
			}
		case 2:
			pe.PodSelector, pe.NamespaceSelector = randSelector(r), randSelector(r)
		case 3:
			pe.IPBlock = randBlock(r)
		}
		out = append(out, pe)
	}
	return out
}

func randPolicy(r *rand.Rand, ns string, i int) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("p%d", i)}}
	np.Spec.PodSelector = *randSelector(r)
	for range r.IntN(3) {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: randPeers(r), Ports: randPorts(r)})
	}
	for range r.IntN(3) {
		np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: randPeers(r), Ports: randPorts(r)})
	}
	switch r.IntN(4) {
	case 0:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	case 1:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	case 2:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	}
	return np
}

func randService(r *rand.Rand, ns string, ni, i int) (*corev1.Service, []*discoveryv1.EndpointSlice) {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("s%d", i)}}
	s.Spec.ClusterIPs = []string{fmt.Sprintf("10.96.%d.%d", ni, i+1)}
	if r.IntN(3) == 0 {
		s.Spec.ClusterIPs = append(s.Spec.ClusterIPs, fmt.Sprintf("fd00:96::%d:%d", ni, i+1))
	}
	s.Spec.ClusterIP = s.Spec.ClusterIPs[0]
	s.Spec.Selector = randLabels(r)
	for j := range 1 + r.IntN(2) {
		sp := corev1.ServicePort{Name: fmt.Sprintf("p%d", j), Protocol: []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP}[r.IntN(2)], Port: int32(testPorts[r.IntN(len(testPorts))])}
		switch r.IntN(3) {
		case 0:
			sp.TargetPort = intstr.FromInt32(int32(testPorts[r.IntN(len(testPorts))]))
		case 1:
			sp.TargetPort = intstr.FromString([]string{"http", "dns", "serve-81"}[r.IntN(3)])
		}
		s.Spec.Ports = append(s.Spec.Ports, sp)
	}
	if r.IntN(2) == 0 {
		return s, nil
	}
	// An EndpointSlice with arbitrary (maybe non-pod) backends.
	es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: s.Name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: s.Name}}, AddressType: discoveryv1.AddressTypeIPv4}
	for _, sp := range s.Spec.Ports {
		name, proto, port := sp.Name, sp.Protocol, int32(testPorts[r.IntN(len(testPorts))])
		es.Ports = append(es.Ports, discoveryv1.EndpointPort{Name: &name, Protocol: &proto, Port: &port})
	}
	for range r.IntN(3) {
		ep := discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.0.%d.%d", r.IntN(3), 1+r.IntN(5))}}
		if r.IntN(4) == 0 {
			f := false
			ep.Conditions.Ready = &f
		}
		es.Endpoints = append(es.Endpoints, ep)
	}
	return s, []*discoveryv1.EndpointSlice{es}
}

func randState(r *rand.Rand) State {
	var s State
	for ni, ns := range nsNames {
		if r.IntN(4) > 0 {
			s.Namespaces = append(s.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: randLabels(r)}})
		}
		for pi := range podNames {
			if r.IntN(5) > 0 {
				s.Pods = append(s.Pods, randPod(r, ns, ni, pi))
			}
		}
		for i := range r.IntN(4) {
			s.Policies = append(s.Policies, randPolicy(r, ns, i))
		}
		if r.IntN(2) == 0 {
			sv, es := randService(r, ns, ni, 0)
			s.Services = append(s.Services, sv)
			s.EndpointSlices = append(s.EndpointSlices, es...)
		}
	}
	return s
}

// remotes are the addresses flows use: every pod address, some non-pod ones, services.
func remotes(s State) []netip.Addr {
	out := []netip.Addr{netip.MustParseAddr("10.0.1.200"), netip.MustParseAddr("192.168.1.1"), netip.MustParseAddr("fd00::1:99"), netip.MustParseAddr("10.0.2.2"), netip.MustParseAddr("8.8.8.8")}
	for ni := range nsNames {
		for pi := range podNames {
			out = append(out, netip.MustParseAddr(fmt.Sprintf("10.0.%d.%d", ni, pi+1)), netip.MustParseAddr(fmt.Sprintf("fd00::%d:%d", ni, pi+1)))
		}
	}
	for _, sv := range s.Services {
		for _, ip := range sv.Spec.ClusterIPs {
			out = append(out, netip.MustParseAddr(ip))
		}
	}
	return out
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
		c, err := Build(s)
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
					if v != rules.Allow || dr.State != rules.StateIsolated {
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
