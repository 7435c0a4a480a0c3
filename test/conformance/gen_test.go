package conformance

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// gen makes random but small scenarios: few labels, namespaces, ports and addresses,
// so that selectors, ipBlocks and ports hit and miss about equally often.
type gen struct {
	r   *rand.Rand
	big bool // more pods and policies: more overlapping prefixes per pod
}

func (g *gen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }
func (g *gen) chance(p float64) bool    { return g.r.Float64() < p }

var (
	nsNames    = []string{"a", "b", "c", "d"} // "d" has no Namespace object
	portNames  = []string{"http", "dns", "metrics"}
	portNums   = []int32{80, 53, 8080, 9090}
	flowPorts  = []int{80, 53, 8080, 9090, 81, 443, 8081, 65535, 1}
	protocols  = []string{"TCP", "UDP", "SCTP"}
	nodeIP     = "192.168.7.1" // what hostNetwork pods use
	extraRawV4 = []string{"10.0.1.99", "10.9.0.1", "172.16.0.5", nodeIP}
	extraRawV6 = []string{"fd00::99", "fd00:1::5", "2001:db8::1"}
)

func (g *gen) labels(keys map[string][]string, p float64) map[string]string {
	out := map[string]string{}
	for k, vs := range keys {
		if g.chance(p) {
			out[k] = vs[g.r.IntN(len(vs))]
		}
	}
	return out
}

var (
	podLabelKeys = map[string][]string{"app": {"web", "db"}, "tier": {"fe", "be"}}
	nsLabelKeys  = map[string][]string{"team": {"x", "y"}, "env": {"prod", "dev"}}
)

func (g *gen) selector(keys map[string][]string, emptyP float64) *metav1.LabelSelector {
	s := &metav1.LabelSelector{}
	if g.chance(emptyP) {
		return s
	}
	for k, vs := range keys {
		switch g.r.IntN(6) {
		case 0, 1:
			if s.MatchLabels == nil {
				s.MatchLabels = map[string]string{}
			}
			s.MatchLabels[k] = vs[g.r.IntN(len(vs))]
		case 2:
			s.MatchExpressions = append(s.MatchExpressions, metav1.LabelSelectorRequirement{Key: k, Operator: metav1.LabelSelectorOpIn, Values: []string{vs[g.r.IntN(len(vs))]}})
		case 3:
			s.MatchExpressions = append(s.MatchExpressions, metav1.LabelSelectorRequirement{Key: k, Operator: metav1.LabelSelectorOpNotIn, Values: []string{vs[g.r.IntN(len(vs))]}})
		case 4:
			op := metav1.LabelSelectorOpExists
			if g.chance(0.4) {
				op = metav1.LabelSelectorOpDoesNotExist
			}
			s.MatchExpressions = append(s.MatchExpressions, metav1.LabelSelectorRequirement{Key: k, Operator: op})
		}
	}
	return s
}

func (g *gen) cluster() *Cluster {
	c := &Cluster{}
	for _, n := range nsNames[:3] {
		ns := &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: n, Labels: g.labels(nsLabelKeys, 0.6)}}
		c.Namespaces = append(c.Namespaces, ns)
	}
	npods := 4 + g.r.IntN(6)
	if g.big {
		npods = 10 + g.r.IntN(20)
	}
	for i := range npods {
		p := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i), Namespace: g.pick(nsNames...), Labels: g.labels(podLabelKeys, 0.6)}}
		// Container ports: names unique within the pod, each with its own protocol.
		nctr := 1 + g.r.IntN(2)
		used := map[string]bool{}
		for ci := range nctr {
			if g.chance(0.3) {
				// Names are unique per container only: another container may reuse one.
				used = map[string]bool{}
			}
			ctr := corev1.Container{Name: fmt.Sprintf("c%d", ci), Image: "x"}
			for range g.r.IntN(3) {
				cp := corev1.ContainerPort{ContainerPort: portNums[g.r.IntN(len(portNums))]}
				if g.chance(0.8) {
					cp.Protocol = corev1.Protocol(g.pick(protocols...))
				}
				if n := g.pick(portNames...); !used[n] && g.chance(0.85) {
					used[n] = true
					cp.Name = n
				}
				ctr.Ports = append(ctr.Ports, cp)
			}
			p.Spec.Containers = append(p.Spec.Containers, ctr)
		}
		v4 := fmt.Sprintf("10.0.%d.%d", g.r.IntN(2), i+1)
		v6 := fmt.Sprintf("fd00::%x", i+1)
		switch x := g.r.IntN(20); {
		case x == 0: // no IP yet
		case x == 1:
			p.Spec.HostNetwork = true
			p.Status.PodIP = nodeIP
		case x == 2:
			p.Status.Phase = corev1.PodSucceeded
			p.Status.PodIP = v4
		case x == 3:
			p.Status.Phase = corev1.PodFailed
			p.Status.PodIP = v4
		case x < 6: // IPv6 only
			p.Status.PodIP = v6
			p.Status.PodIPs = []corev1.PodIP{{IP: v6}}
		case x < 10: // dual stack
			p.Status.PodIP = v4
			p.Status.PodIPs = []corev1.PodIP{{IP: v4}, {IP: v6}}
		default:
			p.Status.PodIP = v4
			if g.chance(0.5) {
				p.Status.PodIPs = []corev1.PodIP{{IP: v4}}
			}
		}
		if p.Status.Phase == "" && p.Status.PodIP != "" {
			p.Status.Phase = corev1.PodRunning
		}
		if g.chance(0.15) {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}
		}
		c.Pods = append(c.Pods, p)
	}
	npol := 1 + g.r.IntN(5)
	if g.big {
		npol = 4 + g.r.IntN(10)
	}
	for i := range npol {
		c.Policies = append(c.Policies, g.policy(c, fmt.Sprintf("np%d", i)))
	}
	nsvc := g.r.IntN(3)
	for i := range nsvc {
		s := &corev1.Service{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("s%d", i), Namespace: g.pick(nsNames...)}}
		s.Spec.ClusterIP = fmt.Sprintf("10.96.0.%d", i+1)
		if g.chance(0.2) {
			s.Spec.ClusterIP = fmt.Sprintf("fd00:96::%d", i+1)
		}
		if g.chance(0.9) {
			s.Spec.Selector = g.labels(podLabelKeys, 0.7)
			if len(s.Spec.Selector) == 0 {
				s.Spec.Selector = map[string]string{"app": "web"}
			}
		}
		for k := range 1 + g.r.IntN(2) {
			sp := corev1.ServicePort{Name: fmt.Sprintf("sp%d", k), Port: portNums[g.r.IntN(len(portNums))]}
			if g.chance(0.7) {
				sp.Protocol = corev1.Protocol(g.pick(protocols...))
			}
			switch g.r.IntN(3) {
			case 0:
				sp.TargetPort = intstr.FromInt32(portNums[g.r.IntN(len(portNums))])
			case 1:
				sp.TargetPort = intstr.FromString(g.pick(portNames...))
			}
			s.Spec.Ports = append(s.Spec.Ports, sp)
		}
		if g.chance(0.1) { // dual-stack ClusterIPs
			s.Spec.ClusterIPs = []string{s.Spec.ClusterIP, fmt.Sprintf("fd00:96::1%d", i)}
			if netip.MustParseAddr(s.Spec.ClusterIP).Is6() {
				s.Spec.ClusterIPs[1] = fmt.Sprintf("10.96.1.%d", i+1)
			}
		}
		if s.Spec.Selector == nil || g.chance(0.2) {
			c.EndpointSlices = append(c.EndpointSlices, g.slice(c, s))
		}
		c.Services = append(c.Services, s)
	}
	return c
}

// slice makes an EndpointSlice for a Service: endpoints at pod or other addresses,
// ready, not ready or unset, ports named like the service's or not.
func (g *gen) slice(c *Cluster, s *corev1.Service) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
		ObjectMeta:  metav1.ObjectMeta{Name: s.Name + "-x", Namespace: s.Namespace, Labels: map[string]string{discoveryv1.LabelServiceName: s.Name}},
		AddressType: discoveryv1.AddressTypeIPv4}
	v6 := g.chance(0.25)
	if v6 {
		es.AddressType = discoveryv1.AddressTypeIPv6
	}
	for range 1 + g.r.IntN(3) {
		var a string
		if p := c.Pods[g.r.IntN(len(c.Pods))]; g.chance(0.8) {
			for _, x := range addrs(p) {
				if x.Is6() == v6 {
					a = x.String()
				}
			}
		}
		if a == "" {
			a = "10.0.5.5"
			if v6 {
				a = "fd00::55"
			}
		}
		ep := discoveryv1.Endpoint{Addresses: []string{a}}
		switch g.r.IntN(3) {
		case 0:
			t := true
			ep.Conditions.Ready = &t
		case 1:
			f := false
			ep.Conditions.Ready = &f
		}
		es.Endpoints = append(es.Endpoints, ep)
	}
	for _, sp := range s.Spec.Ports {
		name := sp.Name
		if g.chance(0.15) {
			name = "other"
		}
		port := portNums[g.r.IntN(len(portNums))]
		ep := discoveryv1.EndpointPort{Name: &name, Port: &port}
		if g.chance(0.7) {
			pr := sp.Protocol
			if pr == "" {
				pr = corev1.ProtocolTCP
			}
			ep.Protocol = &pr
		}
		es.Ports = append(es.Ports, ep)
	}
	return es
}

// cidrs are ipBlock candidates; each with excepts inside it.
var cidrs = map[string][]string{
	"10.0.0.0/16":    {"10.0.1.0/24", "10.0.0.0/24", "10.0.0.2/32"},
	"10.0.1.0/24":    {"10.0.1.0/25", "10.0.1.3/32"},
	"10.0.0.0/8":     {"10.0.0.0/16", "10.96.0.0/12"},
	"0.0.0.0/0":      {"10.0.0.0/8", "192.168.0.0/16", "10.0.0.0/16"},
	"10.0.0.4/32":    nil,
	"::/0":           {"fd00::/64", "fd00::2/128"},
	"fd00::/64":      {"fd00::/126", "fd00::5/128"},
	"fd00::3/128":    nil,
	"192.168.7.0/24": {"192.168.7.1/32"},
}

func (g *gen) peer(c *Cluster) networkingv1.NetworkPolicyPeer {
	var pe networkingv1.NetworkPolicyPeer
	switch g.r.IntN(6) {
	case 0:
		pe.PodSelector = g.selector(podLabelKeys, 0.2)
	case 1:
		pe.NamespaceSelector = g.selector(nsLabelKeys, 0.3)
		if g.chance(0.3) {
			pe.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": g.pick(nsNames...)}}
		}
	case 2:
		pe.PodSelector = g.selector(podLabelKeys, 0.3)
		pe.NamespaceSelector = g.selector(nsLabelKeys, 0.3)
	case 3:
		pe.IPBlock = g.randomBlock(c)
	default:
		keys := make([]string, 0, len(cidrs))
		for k := range cidrs {
			keys = append(keys, k)
		}
		// Map order is random per process; sort for reproducible seeds.
		sortStrings(keys)
		cidr := keys[g.r.IntN(len(keys))]
		if g.chance(0.3) && len(c.Pods) > 0 { // a pod's own address
			p := c.Pods[g.r.IntN(len(c.Pods))]
			if a, err := netip.ParseAddr(p.Status.PodIP); err == nil {
				cidr = netip.PrefixFrom(a, a.BitLen()).String()
			}
		}
		ib := &networkingv1.IPBlock{CIDR: cidr}
		for _, e := range cidrs[cidr] {
			if g.chance(0.35) {
				ib.Except = append(ib.Except, e)
			}
		}
		pe.IPBlock = ib
	}
	return pe
}

// randomBlock makes a cidr of random length around a pod's (or a random) address, with
// random excepts inside it, so that nested prefixes of several rules overlap.
func (g *gen) randomBlock(c *Cluster) *networkingv1.IPBlock {
	var a netip.Addr
	if p := c.Pods[g.r.IntN(len(c.Pods))]; len(addrs(p)) > 0 && g.chance(0.7) {
		as := addrs(p)
		a = as[g.r.IntN(len(as))]
	} else if g.chance(0.7) {
		a = netip.AddrFrom4([4]byte{10, 0, byte(g.r.IntN(3)), byte(g.r.IntN(16))})
	} else {
		a = netip.MustParseAddr(fmt.Sprintf("fd00::%x", g.r.IntN(16)))
	}
	lens := []int{0, 8, 16, 22, 23, 24, 28, 30, 31, 32}
	if a.Is6() {
		lens = []int{0, 64, 120, 124, 125, 126, 127, 128}
	}
	bits := lens[g.r.IntN(len(lens))]
	cidr := netip.PrefixFrom(a, bits).Masked()
	ib := &networkingv1.IPBlock{CIDR: cidr.String()}
	seen := map[netip.Prefix]bool{}
	for range g.r.IntN(3) {
		if bits == a.BitLen() {
			break
		}
		// An address inside the block: a pod's or a random one.
		b := a
		if p := c.Pods[g.r.IntN(len(c.Pods))]; g.chance(0.6) {
			for _, x := range addrs(p) {
				if cidr.Contains(x) {
					b = x
				}
			}
		}
		el := bits + 1 + g.r.IntN(a.BitLen()-bits)
		e := netip.PrefixFrom(b, el).Masked()
		if !cidr.Contains(e.Addr()) || seen[e] {
			continue
		}
		seen[e] = true
		ib.Except = append(ib.Except, e.String())
	}
	return ib
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func (g *gen) ports() []networkingv1.NetworkPolicyPort {
	if g.chance(0.35) {
		return nil
	}
	var out []networkingv1.NetworkPolicyPort
	for range 1 + g.r.IntN(2) {
		var pp networkingv1.NetworkPolicyPort
		if g.chance(0.75) {
			pr := corev1.Protocol(g.pick(protocols...))
			pp.Protocol = &pr
		}
		switch g.r.IntN(5) {
		case 0: // all ports of the protocol
		case 1, 2:
			n := intstr.FromInt32(portNums[g.r.IntN(len(portNums))])
			pp.Port = &n
		case 3:
			n := intstr.FromString(g.pick(portNames...))
			pp.Port = &n
		case 4:
			lo := int32(max(flowPorts[g.r.IntN(len(flowPorts))]-g.r.IntN(3), 1))
			if g.chance(0.3) {
				lo = int32(50 + g.r.IntN(40))
			}
			n := intstr.FromInt32(lo)
			hi := lo + int32(g.r.IntN(3))
			if g.chance(0.5) {
				hi = lo + int32(g.r.IntN(9000))
			}
			if g.chance(0.05) || hi > 65535 {
				hi = 65535
			}
			pp.Port, pp.EndPort = &n, &hi
		}
		out = append(out, pp)
	}
	return out
}

func (g *gen) peers(c *Cluster) []networkingv1.NetworkPolicyPeer {
	if g.chance(0.2) {
		return nil
	}
	var out []networkingv1.NetworkPolicyPeer
	for range 1 + g.r.IntN(3) {
		out = append(out, g.peer(c))
	}
	return out
}

func (g *gen) policy(c *Cluster, name string) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: g.pick(nsNames...)}}
	np.Spec.PodSelector = *g.selector(podLabelKeys, 0.4)
	for range g.r.IntN(3) {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: g.peers(c), Ports: g.ports()})
	}
	for range g.r.IntN(3) {
		np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: g.peers(c), Ports: g.ports()})
	}
	switch g.r.IntN(5) {
	case 0:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	case 1:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	case 2:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	}
	return np
}

// ends lists the names a flow may use for a pod (by name or by one of its addresses).
func (g *gen) end(c *Cluster) string {
	switch x := g.r.IntN(10); {
	case x < 6:
		p := c.Pods[g.r.IntN(len(c.Pods))]
		return p.Namespace + "/" + p.Name
	case x < 8:
		p := c.Pods[g.r.IntN(len(c.Pods))]
		if a := addrs(p); len(a) > 0 {
			return a[g.r.IntN(len(a))].String()
		}
		return g.pick(extraRawV4...)
	case x < 9 && len(c.Services) > 0:
		s := c.Services[g.r.IntN(len(c.Services))]
		if len(s.Spec.ClusterIPs) > 1 && g.chance(0.5) {
			return s.Spec.ClusterIPs[1]
		}
		return s.Spec.ClusterIP
	default:
		if g.chance(0.6) {
			return g.pick(extraRawV4...)
		}
		return g.pick(extraRawV6...)
	}
}

// flows returns n flows the model can judge (no undefined ends, no pod to itself).
func (g *gen) flows(c *Cluster, n int) []Flow {
	var out []Flow
	for tries := 0; len(out) < n && tries < 20*n; tries++ {
		f := Flow{Src: g.end(c), Dst: g.end(c), Port: flowPorts[g.r.IntN(len(flowPorts))]}
		switch x := g.r.IntN(12); {
		case x == 0:
			f.Protocol = "ICMP"
			f.Port = 0
		case x < 4:
			// protocol omitted: TCP
		default:
			f.Protocol = g.pick(protocols...)
		}
		for _, s := range c.Services {
			if (s.Spec.ClusterIP == f.Dst || slices.Contains(s.Spec.ClusterIPs, f.Dst)) && g.chance(0.8) {
				sp := s.Spec.Ports[g.r.IntN(len(s.Spec.Ports))]
				f.Port, f.Protocol = int(sp.Port), string(sp.Protocol)
			}
		}
		if g.chance(0.05) {
			f.Protocol = strings.ToLower(f.Protocol)
		}
		if f.Protocol == "ICMP" && g.chance(0.5) {
			f.Port = 80 // ignored
		}
		if _, err := c.Judge(f); err != nil {
			continue
		}
		s, _ := c.resolve(f.Src)
		d, _ := c.resolve(f.Dst)
		if s.pod != nil && s.pod == d.pod {
			continue // a pod to itself never meets the datapath; undefined upstream
		}
		if f.Src == f.Dst {
			continue
		}
		out = append(out, f)
	}
	return out
}

// write stores a cluster as manifests in two directories, mixing the formats the CLI
// must read: YAML multi-document, JSON concatenated values, kind: List, typed lists,
// nested directories. It returns the directories.
func (g *gen) write(c *Cluster, dir string) ([]string, error) {
	d1, d2 := filepath.Join(dir, "m1"), filepath.Join(dir, "m2", "nested")
	for _, d := range []string{d1, d2} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	var objs []any
	for _, o := range c.Namespaces {
		objs = append(objs, o)
	}
	for _, o := range c.Pods {
		objs = append(objs, o)
	}
	for _, o := range c.Policies {
		objs = append(objs, o)
	}
	for _, o := range c.Services {
		objs = append(objs, o)
	}
	for _, o := range c.EndpointSlices {
		objs = append(objs, o)
	}
	g.r.Shuffle(len(objs), func(i, j int) { objs[i], objs[j] = objs[j], objs[i] })
	// Split into up to four files of random formats.
	nfiles := 1 + g.r.IntN(4)
	groups := make([][]any, nfiles)
	for i, o := range objs {
		groups[i%nfiles] = append(groups[i%nfiles], o)
	}
	for i, grp := range groups {
		d := d1
		if i%2 == 1 {
			d = d2
		}
		var data []byte
		var name string
		switch g.r.IntN(4) {
		case 0: // YAML multi-document
			name = fmt.Sprintf("f%d.yaml", i)
			for _, o := range grp {
				b, err := yaml.Marshal(o)
				if err != nil {
					return nil, err
				}
				data = append(data, "---\n"...)
				data = append(data, b...)
			}
		case 1: // concatenated JSON values
			name = fmt.Sprintf("f%d.json", i)
			for _, o := range grp {
				b, err := json.MarshalIndent(o, "", "  ")
				if err != nil {
					return nil, err
				}
				data = append(data, b...)
				data = append(data, '\n')
			}
		case 2: // kind: List in YAML
			name = fmt.Sprintf("f%d.yml", i)
			b, err := yaml.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": grp})
			if err != nil {
				return nil, err
			}
			data = b
		case 3: // kind: List in JSON
			name = fmt.Sprintf("f%d.json", i)
			b, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": grp})
			if err != nil {
				return nil, err
			}
			data = b
		}
		if err := os.WriteFile(filepath.Join(d, name), data, 0o644); err != nil {
			return nil, err
		}
	}
	return []string{d1, filepath.Join(dir, "m2")}, nil
}
