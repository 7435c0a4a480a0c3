// Package conformance is an independent, deliberately naive model of Kubernetes
// NetworkPolicy (networking.k8s.io/v1) used to check `strictgate verdict` from the
// outside. It is written from the API reference, not from agent/compile: per flow it
// asks "is the destination isolated for ingress, and does any rule of any selecting
// policy admit the source?" and the same for the source's egress, with no flattening,
// no longest-prefix match and no caching, so that it is easy to check by reading.
//
// agent/compile has a second naive model (reference_test.go), on purpose: it works at
// the compiler's layer (per direction, per rule index) and this one at the CLI's; its
// header says why they are kept apart.
//
// Where the API leaves a choice to the implementation, the model follows the choices
// agent/compile/doc.go documents (hostNetwork pods are neither targets nor peers,
// traffic to a ClusterIP is judged as traffic to every ready backend, a pod is a
// selector-based backend unless its Ready condition is explicitly False).
//
// Flows the random tests never generate, because the API leaves them open: a pod to its own address (it goes over the pod's loopback
// and never meets the datapath; upstream e2e netpol ignores loopback results, older
// suites expected them allowed, `strictgate verdict` judges both ends and can say
// deny), ends without an IP or terminated, and address families that differ. A
// NetworkPolicy named port means any container port of that name and protocol in
// spec.containers (kube-network-policies does the same); ports of restartable init
// containers (sidecars) are not considered, although the endpoints controller's
// FindPort does consider them for Service targetPorts.
package conformance

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Cluster is the state a flow is judged against.
type Cluster struct {
	Namespaces     []*corev1.Namespace
	Pods           []*corev1.Pod
	Policies       []*networkingv1.NetworkPolicy
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	// NodeIPs are addresses of the pods' node: traffic with them is always allowed.
	NodeIPs []netip.Addr
}

// Flow is one connection attempt, as in `strictgate verdict --flows`.
type Flow struct {
	Src      string `json:"src"`
	Dst      string `json:"dst"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol,omitempty"`
}

// Judgement is the model's answer with a human-readable trace.
type Judgement struct {
	Allow bool
	Why   []string
}

func (j *Judgement) note(format string, a ...any) { j.Why = append(j.Why, fmt.Sprintf(format, a...)) }

// ErrUndefined marks flows the model refuses to judge (an end that cannot send or
// receive: no IP, terminated, no common address family).
type ErrUndefined struct{ Reason string }

func (e ErrUndefined) Error() string { return e.Reason }

// addrs returns a pod's addresses in the order status.podIP, status.podIPs.
func addrs(p *corev1.Pod) []netip.Addr {
	var out []netip.Addr
	add := func(s string) {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return
		}
		a = a.Unmap()
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	add(p.Status.PodIP)
	for _, ip := range p.Status.PodIPs {
		add(ip.IP)
	}
	return out
}

// live says whether a pod takes part in pod networking: it has an address, is on the
// pod network and has not terminated. Only live pods are policy targets and peers.
func live(p *corev1.Pod) bool {
	return len(addrs(p)) > 0 && !p.Spec.HostNetwork &&
		p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

func (c *Cluster) pod(ns, name string) *corev1.Pod {
	for _, p := range c.Pods {
		if p.Namespace == ns && p.Name == name {
			return p
		}
	}
	return nil
}

// podAt returns the live pod owning address a, if any.
func (c *Cluster) podAt(a netip.Addr) *corev1.Pod {
	for _, p := range c.Pods {
		if live(p) && slices.Contains(addrs(p), a) {
			return p
		}
	}
	return nil
}

// nsLabels returns a namespace's labels; namespaces without an object exist implicitly,
// and every namespace carries kubernetes.io/metadata.name (the API server sets it).
func (c *Cluster) nsLabels(name string) labels.Set {
	out := labels.Set{}
	for _, n := range c.Namespaces {
		if n.Name == name {
			for k, v := range n.Labels {
				out[k] = v
			}
		}
	}
	out["kubernetes.io/metadata.name"] = name
	return out
}

func selects(sel *metav1.LabelSelector, l map[string]string) bool {
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		panic(fmt.Sprintf("bad selector %v: %v", sel, err))
	}
	return s.Matches(labels.Set(l))
}

// policyTypes applies the API server's defaulting: when omitted, Ingress always and
// Egress iff there are egress rules.
func policyTypes(np *networkingv1.NetworkPolicy) (ingress, egress bool) {
	if len(np.Spec.PolicyTypes) == 0 {
		return true, len(np.Spec.Egress) > 0
	}
	for _, t := range np.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			ingress = true
		case networkingv1.PolicyTypeEgress:
			egress = true
		}
	}
	return ingress, egress
}

// selecting returns the policies that select pod p for a direction.
func (c *Cluster) selecting(p *corev1.Pod, egress bool) []*networkingv1.NetworkPolicy {
	var out []*networkingv1.NetworkPolicy
	for _, np := range c.Policies {
		if np.Namespace != p.Namespace {
			continue
		}
		in, eg := policyTypes(np)
		if (egress && !eg) || (!egress && !in) {
			continue
		}
		if selects(&np.Spec.PodSelector, p.Labels) {
			out = append(out, np)
		}
	}
	return out
}

// peerMatches says whether a peer of a policy in namespace polNS admits address a
// (owned by live pod remote, or nil).
func (c *Cluster) peerMatches(polNS string, pe networkingv1.NetworkPolicyPeer, a netip.Addr, remote *corev1.Pod) bool {
	if pe.IPBlock != nil {
		cidr := netip.MustParsePrefix(pe.IPBlock.CIDR).Masked()
		if !cidr.Contains(a) {
			return false
		}
		for _, e := range pe.IPBlock.Except {
			if netip.MustParsePrefix(e).Masked().Contains(a) {
				return false
			}
		}
		return true
	}
	if remote == nil {
		return false
	}
	switch {
	case pe.PodSelector != nil && pe.NamespaceSelector != nil:
		return selects(pe.NamespaceSelector, c.nsLabels(remote.Namespace)) && selects(pe.PodSelector, remote.Labels)
	case pe.NamespaceSelector != nil:
		return selects(pe.NamespaceSelector, c.nsLabels(remote.Namespace))
	case pe.PodSelector != nil:
		return remote.Namespace == polNS && selects(pe.PodSelector, remote.Labels)
	}
	return false // a peer with nothing set is invalid
}

// namedPortIs says whether port is a container port of pod p with that name and
// protocol. Validation forbids duplicate names only within a container, so several
// containers may share one; a NetworkPolicy named port is "a named port on a pod" and
// means any of them.
func namedPortIs(p *corev1.Pod, name string, proto corev1.Protocol, port int) bool {
	if p == nil {
		return false
	}
	for _, ctr := range p.Spec.Containers {
		for _, cp := range ctr.Ports {
			pp := cp.Protocol
			if pp == "" {
				pp = corev1.ProtocolTCP
			}
			if cp.Name == name && pp == proto && int(cp.ContainerPort) == port {
				return true
			}
		}
	}
	return false
}

// namedPort resolves a Service's named targetPort against a pod's container ports for
// a protocol as the endpoints controller does: the first match wins.
func namedPort(p *corev1.Pod, name string, proto corev1.Protocol) (int32, bool) {
	if p == nil {
		return 0, false
	}
	for _, ctr := range p.Spec.Containers {
		for _, cp := range ctr.Ports {
			pp := cp.Protocol
			if pp == "" {
				pp = corev1.ProtocolTCP
			}
			if cp.Name == name && pp == proto {
				return cp.ContainerPort, true
			}
		}
	}
	return 0, false
}

// portMatches says whether a rule's ports admit (proto, port) to destination pod dstPod
// (nil when the destination is not a pod). ICMP carries no port: only a rule without
// ports admits it.
func portMatches(ports []networkingv1.NetworkPolicyPort, dstPod *corev1.Pod, proto string, port int) bool {
	if len(ports) == 0 {
		return true
	}
	for _, pp := range ports {
		pr := corev1.ProtocolTCP
		if pp.Protocol != nil {
			pr = *pp.Protocol
		}
		if string(pr) != proto {
			continue
		}
		if pp.Port == nil {
			return true
		}
		if pp.Port.Type == intstr.String {
			if namedPortIs(dstPod, pp.Port.StrVal, pr, port) {
				return true
			}
			continue
		}
		lo, hi := int(pp.Port.IntVal), int(pp.Port.IntVal)
		if pp.EndPort != nil {
			hi = int(*pp.EndPort)
		}
		if lo <= port && port <= hi {
			return true
		}
	}
	return false
}

// admits judges one direction at live pod p: remote is the other end's address (and
// live pod, if any); dstPod is the pod the ports are resolved against.
func (c *Cluster) admits(j *Judgement, p *corev1.Pod, egress bool, remote netip.Addr, remotePod, dstPod *corev1.Pod, proto string, port int) bool {
	dir := "ingress"
	if egress {
		dir = "egress"
	}
	if slices.Contains(c.NodeIPs, remote) {
		j.note("%s at %s/%s: %s is the node: allowed", dir, p.Namespace, p.Name, remote)
		return true
	}
	pols := c.selecting(p, egress)
	if len(pols) == 0 {
		j.note("%s at %s/%s: not isolated", dir, p.Namespace, p.Name)
		return true
	}
	for _, np := range pols {
		var peersList [][]networkingv1.NetworkPolicyPeer
		var portsList [][]networkingv1.NetworkPolicyPort
		if egress {
			for _, r := range np.Spec.Egress {
				peersList, portsList = append(peersList, r.To), append(portsList, r.Ports)
			}
		} else {
			for _, r := range np.Spec.Ingress {
				peersList, portsList = append(peersList, r.From), append(portsList, r.Ports)
			}
		}
		for i := range peersList {
			peerOK := len(peersList[i]) == 0
			for _, pe := range peersList[i] {
				if c.peerMatches(np.Namespace, pe, remote, remotePod) {
					peerOK = true
					break
				}
			}
			if peerOK && portMatches(portsList[i], dstPod, proto, port) {
				j.note("%s at %s/%s: allowed by %s/%s %s[%d]", dir, p.Namespace, p.Name, np.Namespace, np.Name, dir, i)
				return true
			}
		}
	}
	j.note("%s at %s/%s: isolated, no rule admits %s %s/%d", dir, p.Namespace, p.Name, remote, proto, port)
	return false
}

type end struct {
	ips []netip.Addr
	pod *corev1.Pod // live pod, or nil
}

func (c *Cluster) resolve(s string) (end, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return end{ips: []netip.Addr{a}, pod: c.podAt(a)}, nil
	}
	ns, name, ok := strings.Cut(s, "/")
	if !ok {
		return end{}, fmt.Errorf("bad end %q", s)
	}
	p := c.pod(ns, name)
	if p == nil {
		return end{}, fmt.Errorf("no pod %s", s)
	}
	ips := addrs(p)
	if len(ips) == 0 {
		return end{}, ErrUndefined{"pod " + s + " has no IP"}
	}
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return end{}, ErrUndefined{"pod " + s + " has terminated"}
	}
	e := end{ips: ips}
	if live(p) {
		e.pod = p
	}
	return e, nil
}

// backend is one ready backend of a Service port.
type backend struct {
	addr netip.Addr
	port int
	pod  *corev1.Pod
}

// serviceAt returns whether a is a ClusterIP, whether the service has port
// (proto, port), and its ready backends for it.
func (c *Cluster) serviceAt(a netip.Addr, proto string, port int) (svc *corev1.Service, hasPort bool, bes []backend) {
	for _, s := range c.Services {
		ips := slices.Clone(s.Spec.ClusterIPs)
		if len(ips) == 0 && s.Spec.ClusterIP != "" {
			ips = []string{s.Spec.ClusterIP}
		}
		for _, ip := range ips {
			if ip == corev1.ClusterIPNone || ip == "" {
				continue
			}
			if netip.MustParseAddr(ip).Unmap() == a {
				svc = s
			}
		}
		if svc != nil {
			break
		}
	}
	if svc == nil {
		return nil, false, nil
	}
	for _, sp := range svc.Spec.Ports {
		pr := sp.Protocol
		if pr == "" {
			pr = corev1.ProtocolTCP
		}
		if string(pr) != proto || int(sp.Port) != port {
			continue
		}
		hasPort = true
		bes = append(bes, c.backends(svc, sp, pr, a.Is4())...)
	}
	return svc, hasPort, bes
}

func (c *Cluster) backends(svc *corev1.Service, sp corev1.ServicePort, pr corev1.Protocol, v4 bool) []backend {
	var slices_ []*discoveryv1.EndpointSlice
	for _, es := range c.EndpointSlices {
		if es.Namespace == svc.Namespace && es.Labels[discoveryv1.LabelServiceName] == svc.Name {
			slices_ = append(slices_, es)
		}
	}
	var out []backend
	if len(slices_) > 0 {
		for _, es := range slices_ {
			for _, ep := range es.Endpoints {
				if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
					continue
				}
				for _, p := range es.Ports {
					epr := corev1.ProtocolTCP
					if p.Protocol != nil {
						epr = *p.Protocol
					}
					name := ""
					if p.Name != nil {
						name = *p.Name
					}
					if epr != pr || name != sp.Name || p.Port == nil {
						continue
					}
					for _, s := range ep.Addresses {
						a := netip.MustParseAddr(s).Unmap()
						if a.Is4() == v4 {
							out = append(out, backend{addr: a, port: int(*p.Port), pod: c.podAt(a)})
						}
					}
				}
			}
		}
		return out
	}
	if len(svc.Spec.Selector) == 0 {
		return nil
	}
	for _, p := range c.Pods {
		if p.Namespace != svc.Namespace || !live(p) || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(p.Labels)) {
			continue
		}
		notReady := false
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionFalse {
				notReady = true
			}
		}
		if notReady {
			continue
		}
		tp := int(sp.Port)
		switch {
		case sp.TargetPort.Type == intstr.String && sp.TargetPort.StrVal != "":
			n, ok := namedPort(p, sp.TargetPort.StrVal, pr)
			if !ok {
				continue // the endpoints controller leaves the pod out of this port
			}
			tp = int(n)
		case sp.TargetPort.Type == intstr.Int && sp.TargetPort.IntVal != 0:
			tp = int(sp.TargetPort.IntVal)
		}
		for _, a := range addrs(p) {
			if a.Is4() == v4 {
				out = append(out, backend{addr: a, port: tp, pod: p})
				break
			}
		}
	}
	return out
}

// Judge decides a flow.
func (c *Cluster) Judge(f Flow) (Judgement, error) {
	var j Judgement
	proto := strings.ToUpper(f.Protocol)
	if proto == "" {
		proto = "TCP"
	}
	port := f.Port
	if proto == "ICMP" {
		port = 0
	}
	src, err := c.resolve(f.Src)
	if err != nil {
		return j, err
	}
	dst, err := c.resolve(f.Dst)
	if err != nil {
		return j, err
	}
	var srcIP, dstIP netip.Addr
found:
	for _, s := range src.ips {
		for _, d := range dst.ips {
			if s.Is4() == d.Is4() {
				srcIP, dstIP = s, d
				break found
			}
		}
	}
	if !srcIP.IsValid() {
		return j, ErrUndefined{"no common address family"}
	}
	j.note("%s → %s %s/%d", srcIP, dstIP, proto, port)
	allow := true
	svc, hasPort, bes := (*corev1.Service)(nil), false, []backend(nil)
	if dst.pod == nil {
		svc, hasPort, bes = c.serviceAt(dstIP, proto, port)
	}
	if svc != nil {
		j.note("%s is the ClusterIP of %s/%s (port %v, %d backends)", dstIP, svc.Namespace, svc.Name, hasPort, len(bes))
		if !hasPort || len(bes) == 0 {
			allow = false
		}
		for _, b := range bes {
			if src.pod != nil && !c.admits(&j, src.pod, true, b.addr, b.pod, b.pod, proto, b.port) {
				allow = false
			}
			if b.pod != nil && !c.admits(&j, b.pod, false, srcIP, src.pod, b.pod, proto, b.port) {
				allow = false
			}
		}
		j.Allow = allow
		return j, nil
	}
	if src.pod != nil && !c.admits(&j, src.pod, true, dstIP, dst.pod, dst.pod, proto, port) {
		allow = false
	}
	if dst.pod != nil && !c.admits(&j, dst.pod, false, srcIP, src.pod, dst.pod, proto, port) {
		allow = false
	}
	j.Allow = allow
	return j, nil
}
