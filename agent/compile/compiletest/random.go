// Package compiletest generates random clusters (namespaces x, y, z; pods a-d with
// random labels, addresses, named ports and phases; random policies, Services and
// EndpointSlices) for the compiler's property tests and the engine differential test.
package compiletest

import (
	"fmt"
	"math/rand/v2"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// Cluster is a set of objects; it converts to compile.State.
type Cluster struct {
	Namespaces     []*corev1.Namespace
	Pods           []*corev1.Pod
	Policies       []*networkingv1.NetworkPolicy
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	// ClusterNetworkPolicies and Nodes (RandTieredCluster only).
	ClusterNetworkPolicies []*cnpv1beta1.ClusterNetworkPolicy
	Nodes                  []*corev1.Node
}

var (
	NsNames   = []string{"x", "y", "z"}
	PodNames  = []string{"a", "b", "c", "d"}
	labelKeys = []string{"pod", "app", "tier"}
	labelVals = []string{"a", "b", "c"}
)

func RandLabels(r *rand.Rand) map[string]string {
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

var TestPorts = []uint16{53, 80, 81, 82, 443, 5000, 5005, 5010, 8080}

func RandPod(r *rand.Rand, ns string, ni, pi int) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: PodNames[pi], Labels: RandLabels(r)}}
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
	p.Spec.NodeName = []string{"node-1", "node-2", ""}[r.IntN(3)]
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
			v := intstr.FromInt32(int32(TestPorts[r.IntN(len(TestPorts))]))
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
				pe.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": NsNames[r.IntN(3)]}}
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

func RandPolicy(r *rand.Rand, ns string, i int) *networkingv1.NetworkPolicy {
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

func RandService(r *rand.Rand, ns string, ni, i int) (*corev1.Service, []*discoveryv1.EndpointSlice) {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("s%d", i)}}
	s.Spec.ClusterIPs = []string{fmt.Sprintf("10.96.%d.%d", ni, i+1)}
	if r.IntN(3) == 0 {
		s.Spec.ClusterIPs = append(s.Spec.ClusterIPs, fmt.Sprintf("fd00:96::%d:%d", ni, i+1))
	}
	s.Spec.ClusterIP = s.Spec.ClusterIPs[0]
	s.Spec.Selector = RandLabels(r)
	for j := range 1 + r.IntN(2) {
		sp := corev1.ServicePort{Name: fmt.Sprintf("p%d", j), Protocol: []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP}[r.IntN(2)], Port: int32(TestPorts[r.IntN(len(TestPorts))])}
		switch r.IntN(3) {
		case 0:
			sp.TargetPort = intstr.FromInt32(int32(TestPorts[r.IntN(len(TestPorts))]))
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
		name, proto, port := sp.Name, sp.Protocol, int32(TestPorts[r.IntN(len(TestPorts))])
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

func RandCluster(r *rand.Rand) Cluster {
	var s Cluster
	for ni, ns := range NsNames {
		if r.IntN(4) > 0 {
			s.Namespaces = append(s.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: RandLabels(r)}})
		}
		for pi := range PodNames {
			if r.IntN(5) > 0 {
				s.Pods = append(s.Pods, RandPod(r, ns, ni, pi))
			}
		}
		for i := range r.IntN(4) {
			s.Policies = append(s.Policies, RandPolicy(r, ns, i))
		}
		if r.IntN(2) == 0 {
			sv, es := RandService(r, ns, ni, 0)
			s.Services = append(s.Services, sv)
			s.EndpointSlices = append(s.EndpointSlices, es...)
		}
	}
	return s
}

// Remotes are the addresses flows use: every pod address, some non-pod ones, services.
func Remotes(s Cluster) []netip.Addr {
	out := []netip.Addr{netip.MustParseAddr("10.0.1.200"), netip.MustParseAddr("192.168.1.1"), netip.MustParseAddr("fd00::1:99"), netip.MustParseAddr("10.0.2.2"), netip.MustParseAddr("8.8.8.8")}
	for ni := range NsNames {
		for pi := range PodNames {
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

// NodeAddrs are the addresses of RandTieredCluster's nodes (all in Remotes).
var NodeAddrs = [][]string{{"10.0.1.200"}, {"192.168.1.1", "fd00::1:99"}}

// RandTieredCluster is RandCluster plus nodes and up to four ClusterNetworkPolicies
// (both tiers, colliding priorities, every action, every peer kind and protocol form).
func RandTieredCluster(r *rand.Rand) Cluster {
	s := RandCluster(r)
	for i, addrs := range NodeAddrs {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%d", i+1), Labels: RandLabels(r)}}
		for _, a := range addrs {
			n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a})
		}
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: n.Name})
		s.Nodes = append(s.Nodes, n)
	}
	for i := range 1 + r.IntN(4) {
		s.ClusterNetworkPolicies = append(s.ClusterNetworkPolicies, RandCNP(r, i))
	}
	return s
}

var actions = []cnpv1beta1.ClusterNetworkPolicyRuleAction{cnpv1beta1.ClusterNetworkPolicyRuleActionAccept, cnpv1beta1.ClusterNetworkPolicyRuleActionDeny, cnpv1beta1.ClusterNetworkPolicyRuleActionPass}

func randCNPPort(r *rand.Rand) *cnpv1beta1.Port {
	switch r.IntN(3) {
	case 0:
		return nil
	case 1:
		return &cnpv1beta1.Port{Number: int32(TestPorts[r.IntN(len(TestPorts))])}
	}
	a, b := TestPorts[r.IntN(len(TestPorts))], TestPorts[r.IntN(len(TestPorts))]
	if a > b {
		a, b = b, a
	}
	if a == b {
		b++
	}
	return &cnpv1beta1.Port{Range: &cnpv1beta1.PortRange{Start: int32(a), End: int32(b)}}
}

func randProtocols(r *rand.Rand, named bool) []cnpv1beta1.ClusterNetworkPolicyProtocol {
	var out []cnpv1beta1.ClusterNetworkPolicyProtocol
	for range r.IntN(3) {
		var p cnpv1beta1.ClusterNetworkPolicyProtocol
		switch r.IntN(4) {
		case 0:
			p.TCP = &cnpv1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: randCNPPort(r)}
		case 1:
			p.UDP = &cnpv1beta1.ClusterNetworkPolicyProtocolUDP{DestinationPort: randCNPPort(r)}
		case 2:
			p.SCTP = &cnpv1beta1.ClusterNetworkPolicyProtocolSCTP{DestinationPort: randCNPPort(r)}
		default:
			if !named {
				p.TCP = &cnpv1beta1.ClusterNetworkPolicyProtocolTCP{}
			} else {
				p.DestinationNamedPort = namedPorts[r.IntN(len(namedPorts))].Name
			}
		}
		out = append(out, p)
	}
	return out
}

func randNamespacedPod(r *rand.Rand) *cnpv1beta1.NamespacedPod {
	return &cnpv1beta1.NamespacedPod{NamespaceSelector: *randSelector(r), PodSelector: *randSelector(r)}
}

// RandCNP is a random ClusterNetworkPolicy; priorities collide on purpose.
func RandCNP(r *rand.Rand, i int) *cnpv1beta1.ClusterNetworkPolicy {
	c := &cnpv1beta1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cnp-%d", i)}}
	c.Spec.Tier = []cnpv1beta1.Tier{cnpv1beta1.AdminTier, cnpv1beta1.BaselineTier}[r.IntN(2)]
	c.Spec.Priority = int32(r.IntN(3))
	if r.IntN(2) == 0 {
		c.Spec.Subject.Namespaces = randSelector(r)
	} else {
		c.Spec.Subject.Pods = randNamespacedPod(r)
	}
	for j := range r.IntN(3) {
		rule := cnpv1beta1.ClusterNetworkPolicyIngressRule{Name: fmt.Sprintf("in-%d", j), Action: actions[r.IntN(3)]}
		for range 1 + r.IntN(2) {
			if r.IntN(2) == 0 {
				rule.From = append(rule.From, cnpv1beta1.ClusterNetworkPolicyIngressPeer{Namespaces: randSelector(r)})
			} else {
				rule.From = append(rule.From, cnpv1beta1.ClusterNetworkPolicyIngressPeer{Pods: randNamespacedPod(r)})
			}
		}
		rule.Protocols = randProtocols(r, true)
		c.Spec.Ingress = append(c.Spec.Ingress, rule)
	}
	for j := range r.IntN(3) {
		rule := cnpv1beta1.ClusterNetworkPolicyEgressRule{Name: fmt.Sprintf("out-%d", j), Action: actions[r.IntN(3)]}
		podsOnly := true
		for range 1 + r.IntN(2) {
			switch r.IntN(4) {
			case 0:
				rule.To = append(rule.To, cnpv1beta1.ClusterNetworkPolicyEgressPeer{Namespaces: randSelector(r)})
			case 1:
				rule.To = append(rule.To, cnpv1beta1.ClusterNetworkPolicyEgressPeer{Pods: randNamespacedPod(r)})
			case 2:
				podsOnly = false
				rule.To = append(rule.To, cnpv1beta1.ClusterNetworkPolicyEgressPeer{Nodes: randSelector(r)})
			default:
				podsOnly = false
				var nets []cnpv1beta1.CIDR
				for range 1 + r.IntN(2) {
					nets = append(nets, cnpv1beta1.CIDR(cidrs[r.IntN(len(cidrs))]))
				}
				rule.To = append(rule.To, cnpv1beta1.ClusterNetworkPolicyEgressPeer{Networks: nets})
			}
		}
		// destinationNamedPort only with pod peers (the API forbids it with nodes and networks).
		rule.Protocols = randProtocols(r, podsOnly)
		c.Spec.Egress = append(c.Spec.Egress, rule)
	}
	return c
}
