package compile

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/strictgate/strictgate/agent/rules"
)

// NamespaceNameLabel is set by the API server on every namespace to its name.
const NamespaceNameLabel = "kubernetes.io/metadata.name"

// ErrInvalid marks objects the compiler refuses (the API server would have refused them
// too); errors.Is(err, ErrInvalid).
var ErrInvalid = errors.New("invalid object")

// portKey names a container port for named-port resolution.
type portKey struct {
	name  string
	proto rules.Protocol
}

// podInfo is what the compiler needs of a pod.
type podInfo struct {
	key         types.NamespacedName
	node        string
	labels      labels.Set
	ips         []netip.Addr
	named       map[portKey][]uint16 // every container port of that name and protocol, in container order
	hostNetwork bool
	terminated  bool
	notReady    bool // Ready condition explicitly False: not a selector-based backend
}

// alive reports whether the pod can carry pod-network traffic at all.
func (p *podInfo) alive() bool { return !p.hostNetwork && !p.terminated }

// peer reports whether the pod's addresses are matched by pod selectors.
func (p *podInfo) peer() bool { return p.alive() && len(p.ips) > 0 }

// resolveAll returns every port a NetworkPolicy named port means on this pod. Pod
// validation forbids a duplicate name only within one container, so two containers may
// both have "http"; the policy's named port is "a named port on the pod", so it admits
// each of them (as kube-network-policies, Calico and Cilium do).
func (p *podInfo) resolveAll(name string, proto rules.Protocol) []uint16 {
	return p.named[portKey{name, proto}]
}

// resolveTarget resolves a Service's named targetPort the way the endpoints controller
// does (FindPort): the first container with the name and protocol wins.
func (p *podInfo) resolveTarget(name string, proto rules.Protocol) (uint16, bool) {
	if v := p.named[portKey{name, proto}]; len(v) > 0 {
		return v[0], true
	}
	return 0, false
}

func newPodInfo(pod *corev1.Pod) (*podInfo, error) {
	p := &podInfo{
		key:         types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name},
		node:        pod.Spec.NodeName,
		labels:      labels.Set(pod.Labels),
		hostNetwork: pod.Spec.HostNetwork,
		terminated:  pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed,
	}
	if p.key.Name == "" {
		return nil, fmt.Errorf("pod without a name: %w", ErrInvalid)
	}
	if p.key.Namespace == "" {
		p.key.Namespace = metav1.NamespaceDefault
	}
	seen := map[netip.Addr]bool{}
	add := func(s string) error {
		if s == "" {
			return nil
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("pod %s: bad IP %q: %w", p.key, s, ErrInvalid)
		}
		a = a.Unmap()
		if !seen[a] {
			seen[a] = true
			p.ips = append(p.ips, a)
		}
		return nil
	}
	if err := add(pod.Status.PodIP); err != nil {
		return nil, err
	}
	for _, ip := range pod.Status.PodIPs {
		if err := add(ip.IP); err != nil {
			return nil, err
		}
	}
	for _, c := range pod.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == "" || cp.ContainerPort <= 0 || cp.ContainerPort > 65535 {
				continue
			}
			proto, err := rules.ParseProtocol(string(cp.Protocol))
			if err != nil {
				return nil, fmt.Errorf("pod %s port %q: %v: %w", p.key, cp.Name, err, ErrInvalid)
			}
			if p.named == nil {
				p.named = map[portKey][]uint16{}
			}
			k := portKey{cp.Name, proto}
			if !slices.Contains(p.named[k], uint16(cp.ContainerPort)) {
				p.named[k] = append(p.named[k], uint16(cp.ContainerPort))
			}
		}
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionFalse {
			p.notReady = true
		}
	}
	return p, nil
}

// samePeer reports whether two versions of a pod look the same to other pods' rules.
func (p *podInfo) samePeer(q *podInfo) bool {
	return p.peer() == q.peer() && p.notReady == q.notReady && slices.Equal(p.ips, q.ips) &&
		maps.EqualFunc(p.named, q.named, slices.Equal[[]uint16]) && labelsEqual(p.labels, q.labels)
}

func labelsEqual(a, b labels.Set) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// portSpec is a named port of a rule, resolved per pod (numeric ports need no
// resolution and go straight into ruleInfo.numeric).
type portSpec struct {
	proto rules.Protocol
	name  string
}

// peerInfo is one entry of a rule's from/to.
type peerInfo struct {
	podSel, nsSel labels.Selector // nil = absent
	block         bool
	cidr          netip.Prefix
	except        []netip.Prefix
}

// ruleInfo is one ingress or egress rule of a policy.
type ruleInfo struct {
	ref     RuleRef
	id      rules.RuleID
	all     bool // no peers: every address
	peers   []peerInfo
	numeric []rules.PortRule // port rules that need no resolution; [Any 0-65535] when ports are empty
	named   []portSpec
}

// policyInfo is a parsed NetworkPolicy.
type policyInfo struct {
	key      types.NamespacedName
	selector labels.Selector
	has      [2]bool // has[d]: policyTypes includes direction d
	rules    [2][]*ruleInfo
}

// RuleRef names one rule of a policy.
type RuleRef struct {
	Policy    types.NamespacedName
	Direction rules.Direction
	// Index is the rule's position in the policy's spec.ingress or spec.egress.
	Index int
	// Tier, Name and Action are set for ClusterNetworkPolicy rules (Policy then has no
	// namespace): TierAdmin or TierBaseline, the rule's name, Accept/Deny/Pass.
	Tier, Name, Action string
}

func (r RuleRef) String() string {
	if r.Tier != "" {
		name := ""
		if r.Name != "" {
			name = " (" + r.Name + ")"
		}
		return fmt.Sprintf("%s ClusterNetworkPolicy %s %s rule %d%s %s", r.Tier, r.Policy.Name, r.Direction, r.Index, name, r.Action)
	}
	return fmt.Sprintf("%s %s rule %d", r.Policy, r.Direction, r.Index)
}

// TierOf is the tier a rule belongs to: TierNetworkPolicy for NetworkPolicy rules.
func (r RuleRef) TierOf() string {
	if r.Tier == "" {
		return TierNetworkPolicy
	}
	return r.Tier
}

// PolicyTypes returns the policy's types with the API server's inference applied:
// Ingress always, Egress iff the policy has egress rules, when none are given.
func PolicyTypes(spec *networkingv1.NetworkPolicySpec) []networkingv1.PolicyType {
	if len(spec.PolicyTypes) > 0 {
		return spec.PolicyTypes
	}
	t := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	if len(spec.Egress) > 0 {
		t = append(t, networkingv1.PolicyTypeEgress)
	}
	return t
}

func newPolicyInfo(np *networkingv1.NetworkPolicy) (*policyInfo, error) {
	p := &policyInfo{key: types.NamespacedName{Namespace: np.Namespace, Name: np.Name}}
	if p.key.Name == "" {
		return nil, fmt.Errorf("networkpolicy without a name: %w", ErrInvalid)
	}
	if p.key.Namespace == "" {
		p.key.Namespace = metav1.NamespaceDefault
	}
	fail := func(format string, a ...any) error {
		return fmt.Errorf("networkpolicy %s: %s: %w", p.key, fmt.Sprintf(format, a...), ErrInvalid)
	}
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil {
		return nil, fail("podSelector: %v", err)
	}
	p.selector = sel
	for _, t := range PolicyTypes(&np.Spec) {
		switch t {
		case networkingv1.PolicyTypeIngress:
			p.has[rules.Ingress] = true
		case networkingv1.PolicyTypeEgress:
			p.has[rules.Egress] = true
		default:
			return nil, fail("unknown policyType %q", t)
		}
	}
	for i, r := range np.Spec.Ingress {
		ri, err := newRuleInfo(p.key, rules.Ingress, i, r.From, r.Ports)
		if err != nil {
			return nil, fail("ingress[%d]: %v", i, err)
		}
		p.rules[rules.Ingress] = append(p.rules[rules.Ingress], ri)
	}
	for i, r := range np.Spec.Egress {
		ri, err := newRuleInfo(p.key, rules.Egress, i, r.To, r.Ports)
		if err != nil {
			return nil, fail("egress[%d]: %v", i, err)
		}
		p.rules[rules.Egress] = append(p.rules[rules.Egress], ri)
	}
	return p, nil
}

func newRuleInfo(pol types.NamespacedName, d rules.Direction, idx int, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort) (*ruleInfo, error) {
	r := &ruleInfo{ref: RuleRef{Policy: pol, Direction: d, Index: idx}, all: len(peers) == 0}
	for j, pe := range peers {
		pi, err := newPeerInfo(pe)
		if err != nil {
			return nil, fmt.Errorf("peer %d: %v", j, err)
		}
		r.peers = append(r.peers, pi)
	}
	if len(ports) == 0 {
		r.numeric = []rules.PortRule{{Protocol: rules.ProtocolAny, First: 0, Last: 65535}}
	}
	for j, pp := range ports {
		proto := rules.ProtocolTCP
		if pp.Protocol != nil {
			var err error
			if proto, err = rules.ParseProtocol(string(*pp.Protocol)); err != nil {
				return nil, fmt.Errorf("ports[%d]: %v", j, err)
			}
		}
		switch {
		case pp.Port == nil:
			if pp.EndPort != nil {
				return nil, fmt.Errorf("ports[%d]: endPort without port", j)
			}
			r.numeric = append(r.numeric, rules.PortRule{Protocol: proto, First: 0, Last: 65535})
		case pp.Port.Type == intstr.String:
			if pp.EndPort != nil {
				return nil, fmt.Errorf("ports[%d]: endPort needs a numeric port, not %q", j, pp.Port.StrVal)
			}
			if pp.Port.StrVal == "" {
				return nil, fmt.Errorf("ports[%d]: empty port name", j)
			}
			r.named = append(r.named, portSpec{proto: proto, name: pp.Port.StrVal})
		default:
			first := pp.Port.IntVal
			last := first
			if pp.EndPort != nil {
				last = *pp.EndPort
			}
			if first < 1 || first > 65535 || last < first || last > 65535 {
				return nil, fmt.Errorf("ports[%d]: bad port range %d-%d", j, first, last)
			}
			r.numeric = append(r.numeric, rules.PortRule{Protocol: proto, First: uint16(first), Last: uint16(last)})
		}
	}
	return r, nil
}

func newPeerInfo(pe networkingv1.NetworkPolicyPeer) (peerInfo, error) {
	var pi peerInfo
	if pe.IPBlock != nil {
		if pe.PodSelector != nil || pe.NamespaceSelector != nil {
			return pi, errors.New("ipBlock cannot be combined with a selector")
		}
		c, err := parseCIDR(pe.IPBlock.CIDR)
		if err != nil {
			return pi, fmt.Errorf("ipBlock cidr: %v", err)
		}
		pi.block, pi.cidr = true, c
		for _, e := range pe.IPBlock.Except {
			ep, err := parseCIDR(e)
			if err != nil {
				return pi, fmt.Errorf("ipBlock except: %v", err)
			}
			if ep.Addr().Is4() != c.Addr().Is4() || ep.Bits() < c.Bits() || !c.Contains(ep.Addr()) {
				return pi, fmt.Errorf("ipBlock except %s is not inside cidr %s", ep, c)
			}
			pi.except = append(pi.except, ep)
		}
		return pi, nil
	}
	if pe.PodSelector == nil && pe.NamespaceSelector == nil {
		return pi, errors.New("a peer needs podSelector, namespaceSelector or ipBlock")
	}
	var err error
	if pe.PodSelector != nil {
		if pi.podSel, err = metav1.LabelSelectorAsSelector(pe.PodSelector); err != nil {
			return pi, fmt.Errorf("podSelector: %v", err)
		}
	}
	if pe.NamespaceSelector != nil {
		if pi.nsSel, err = metav1.LabelSelectorAsSelector(pe.NamespaceSelector); err != nil {
			return pi, fmt.Errorf("namespaceSelector: %v", err)
		}
	}
	return pi, nil
}

// parseCIDR parses an ipBlock CIDR, masking host bits (the API server accepts them).
func parseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return p, err
	}
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		if !p.IsValid() {
			return p, fmt.Errorf("bad prefix %q", s)
		}
	}
	return p.Masked(), nil
}

// svcPort is one port of a Service.
type svcPort struct {
	name   string
	proto  rules.Protocol
	port   uint16
	target intstr.IntOrString
}

// svcInfo is a parsed Service.
type svcInfo struct {
	key        types.NamespacedName
	clusterIPs []netip.Addr
	selector   labels.Selector // nil: no selector
	ports      []svcPort
}

func newSvcInfo(s *corev1.Service) (*svcInfo, error) {
	si := &svcInfo{key: types.NamespacedName{Namespace: s.Namespace, Name: s.Name}}
	if si.key.Name == "" {
		return nil, fmt.Errorf("service without a name: %w", ErrInvalid)
	}
	if si.key.Namespace == "" {
		si.key.Namespace = metav1.NamespaceDefault
	}
	ips := s.Spec.ClusterIPs
	if len(ips) == 0 && s.Spec.ClusterIP != "" {
		ips = []string{s.Spec.ClusterIP}
	}
	for _, ip := range ips {
		if ip == "" || ip == corev1.ClusterIPNone {
			continue
		}
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return nil, fmt.Errorf("service %s: bad clusterIP %q: %w", si.key, ip, ErrInvalid)
		}
		if !slices.Contains(si.clusterIPs, a.Unmap()) {
			si.clusterIPs = append(si.clusterIPs, a.Unmap())
		}
	}
	if len(s.Spec.Selector) > 0 {
		si.selector = labels.SelectorFromSet(labels.Set(s.Spec.Selector))
	}
	for _, p := range s.Spec.Ports {
		proto, err := rules.ParseProtocol(string(p.Protocol))
		if err != nil {
			return nil, fmt.Errorf("service %s port %q: %v: %w", si.key, p.Name, err, ErrInvalid)
		}
		if p.Port < 1 || p.Port > 65535 {
			return nil, fmt.Errorf("service %s port %q: bad port %d: %w", si.key, p.Name, p.Port, ErrInvalid)
		}
		t := p.TargetPort
		if (t.Type == intstr.Int && t.IntVal == 0) || (t.Type == intstr.String && t.StrVal == "") {
			t = intstr.FromInt32(p.Port)
		}
		si.ports = append(si.ports, svcPort{name: p.Name, proto: proto, port: uint16(p.Port), target: t})
	}
	return si, nil
}

// sliceEndpoint is one ready address of an EndpointSlice.
type sliceInfo struct {
	key     types.NamespacedName
	service string
	ports   []slicePort
	addrs   []netip.Addr // ready endpoint addresses
}

type slicePort struct {
	name  string
	proto rules.Protocol
	port  uint16
}

func newSliceInfo(es *discoveryv1.EndpointSlice) (*sliceInfo, error) {
	si := &sliceInfo{key: types.NamespacedName{Namespace: es.Namespace, Name: es.Name}, service: es.Labels[discoveryv1.LabelServiceName]}
	if si.key.Name == "" {
		return nil, fmt.Errorf("endpointslice without a name: %w", ErrInvalid)
	}
	if si.key.Namespace == "" {
		si.key.Namespace = metav1.NamespaceDefault
	}
	if es.AddressType == discoveryv1.AddressTypeFQDN {
		return si, nil
	}
	for _, p := range es.Ports {
		if p.Port == nil {
			continue
		}
		proto := rules.ProtocolTCP
		if p.Protocol != nil {
			var err error
			if proto, err = rules.ParseProtocol(string(*p.Protocol)); err != nil {
				return nil, fmt.Errorf("endpointslice %s: %v: %w", si.key, err, ErrInvalid)
			}
		}
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		if *p.Port < 1 || *p.Port > 65535 {
			return nil, fmt.Errorf("endpointslice %s: bad port %d: %w", si.key, *p.Port, ErrInvalid)
		}
		si.ports = append(si.ports, slicePort{name: name, proto: proto, port: uint16(*p.Port)})
	}
	for _, ep := range es.Endpoints {
		if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
			continue
		}
		for _, a := range ep.Addresses {
			ip, err := netip.ParseAddr(a)
			if err != nil {
				return nil, fmt.Errorf("endpointslice %s: bad address %q: %w", si.key, a, ErrInvalid)
			}
			si.addrs = append(si.addrs, ip.Unmap())
		}
	}
	return si, nil
}
