package verdict

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/strictgate/strictgate/agent/compile"
	"github.com/strictgate/strictgate/agent/rules"
)

// Query is the first packet of a flow as seen at one pod, in one direction.
type Query struct {
	Pod   types.NamespacedName
	PodIP netip.Addr
	// Direction is Egress when the pod sends, Ingress when it receives.
	Direction rules.Direction
	// Remote is the other end's address (destination for egress, source for ingress).
	Remote   netip.Addr
	Protocol rules.Protocol
	// Port is the destination port (0 for ICMP).
	Port uint16
}

// Engine decides queries the way the datapath does. The compiled rules it judges by
// are given when it is made (see Engines).
type Engine interface {
	Judge(ctx context.Context, q Query) (rules.Verdict, rules.RuleID, error)
	Close() error
}

// EngineFactory makes an engine for a compiled cluster. nodeIPs are the addresses of
// the pods' own node, with which traffic is always allowed.
type EngineFactory func(c *compile.Compiler, pods []PodAddr, nodeIPs []netip.Addr) (Engine, error)

// PodAddr is a pod that has rules, and its addresses.
type PodAddr struct {
	Pod types.NamespacedName
	IPs []netip.Addr
}

// Engines are the available engines by name: "go" always, "bpf" once package
// verdict/bpfengine is imported.
var Engines = map[string]EngineFactory{
	"go": NewGoEngine,
}

// goEngine is rules.Lookup over the compiled rules, plus the datapath's own rule that
// a pod's node may always talk to it.
type goEngine struct {
	c     *compile.Compiler
	nodes []netip.Addr
}

// NewGoEngine returns the Go model of the datapath.
func NewGoEngine(c *compile.Compiler, _ []PodAddr, nodeIPs []netip.Addr) (Engine, error) {
	return &goEngine{c: c, nodes: nodeIPs}, nil
}

func (g *goEngine) Judge(_ context.Context, q Query) (rules.Verdict, rules.RuleID, error) {
	r, ok := g.c.Rules(q.Pod)
	if !ok {
		return rules.Deny, rules.RuleNone, fmt.Errorf("pod %s has no compiled rules", q.Pod)
	}
	if slices.Contains(g.nodes, q.Remote.Unmap()) {
		return rules.Allow, rules.RuleHost, nil
	}
	v, id := r.Dir(q.Direction).Lookup(q.Remote, q.Protocol, q.Port)
	return v, id, nil
}

func (g *goEngine) Close() error { return nil }

// Outcome is the judgement of one direction at one pod.
type Outcome struct {
	Pod     string `json:"pod"`
	State   string `json:"state"`
	Verdict string `json:"verdict"`
	// Reason: "rule" (a policy rule allowed it), "unisolated" (no policy selects the pod
	// for this direction), "host" (the pod's own node), "no-rule" (isolated and no rule
	// admits it).
	Reason string `json:"reason"`
	// Policies decided it: the allowing rule's policy, or every policy that isolates the
	// pod when none admitted the flow.
	Policies []string `json:"policies"`
	// Rule is the allowing rule, when a rule allowed it.
	Rule *RuleOut `json:"rule,omitempty"`
	// IsolatedBy lists the policies selecting the pod for this direction.
	IsolatedBy []string `json:"isolated_by"`
	// Tier decided it: Admin or Baseline (a ClusterNetworkPolicy rule), NetworkPolicy,
	// or empty (unisolated, host).
	Tier string `json:"tier,omitempty"`
	// ClusterPolicies lists "Tier/name" of the ClusterNetworkPolicies that apply to the
	// pod in this direction, in evaluation order.
	ClusterPolicies []string `json:"cluster_policies,omitempty"`

	remote   netip.Addr
	id       rules.RuleID
	podIP    netip.Addr
	dir      rules.Direction
	port     uint16
	protocol rules.Protocol
}

// RuleOut names a rule: spec.<direction>[index] of a policy. For a
// ClusterNetworkPolicy rule Policy is the policy's name and Tier, Name (the rule's
// name) and Action (Accept, Deny, Pass) are set.
type RuleOut struct {
	Policy    string `json:"policy"`
	Direction string `json:"direction"`
	Index     int    `json:"index"`
	Tier      string `json:"tier,omitempty"`
	Name      string `json:"name,omitempty"`
	Action    string `json:"action,omitempty"`
}

func ruleOut(ref compile.RuleRef) (*RuleOut, string) {
	if ref.Tier != "" {
		return &RuleOut{Policy: ref.Policy.Name, Direction: ref.Direction.String(), Index: ref.Index, Tier: ref.Tier, Name: ref.Name, Action: ref.Action}, ref.Tier + "/" + ref.Policy.Name
	}
	return &RuleOut{Policy: ref.Policy.String(), Direction: ref.Direction.String(), Index: ref.Index}, ref.Policy.String()
}

// BackendOut is one backend of a Service flow.
type BackendOut struct {
	IP      string   `json:"ip"`
	Port    int      `json:"port"`
	Pod     string   `json:"pod,omitempty"`
	Ingress *Outcome `json:"ingress,omitempty"`
}

// ServiceOut explains a flow to a ClusterIP.
type ServiceOut struct {
	Name     string       `json:"name"`
	Backends []BackendOut `json:"backends"`
}

// Result is the output line for one flow.
type Result struct {
	Verdict  string      `json:"verdict"`
	Src      string      `json:"src"`
	Dst      string      `json:"dst"`
	SrcIP    string      `json:"src_ip"`
	DstIP    string      `json:"dst_ip"`
	Port     int         `json:"port"`
	Protocol string      `json:"protocol"`
	Reason   string      `json:"reason,omitempty"`
	Egress   *Outcome    `json:"egress,omitempty"`
	Ingress  *Outcome    `json:"ingress,omitempty"`
	Service  *ServiceOut `json:"service,omitempty"`
}

// Evaluator judges flows against compiled manifests with an engine.
type Evaluator struct {
	C      *compile.Compiler
	engine Engine
	pods   map[types.NamespacedName]*corev1.Pod
	// source names where the objects came from, for errors.
	source string
	// services are looked up by name for "namespace/service:port" ends.
	services map[types.NamespacedName]*corev1.Service
	byIP     map[netip.Addr]types.NamespacedName // addresses of pods that have rules
	nodes    []netip.Addr
}

// NewEvaluator compiles the manifests and makes the named engine.
func NewEvaluator(m *Manifests, engine string, nodeIPs []netip.Addr) (*Evaluator, error) {
	factory, ok := Engines[engine]
	if !ok {
		names := slices.Sorted(func(yield func(string) bool) {
			for k := range Engines {
				if !yield(k) {
					return
				}
			}
		})
		return nil, fmt.Errorf("unknown engine %q (available: %s)", engine, strings.Join(names, ", "))
	}
	c, err := compile.Build(m.State, compile.Options{NodeIPs: nodeIPs})
	if err != nil {
		return nil, fmt.Errorf("compile manifests: %w", err)
	}
	e := &Evaluator{C: c, pods: map[types.NamespacedName]*corev1.Pod{}, services: map[types.NamespacedName]*corev1.Service{},
		byIP: map[netip.Addr]types.NamespacedName{}, nodes: nodeIPs, source: m.source()}
	for _, s := range m.State.Services {
		e.services[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s
	}
	var addrs []PodAddr
	for _, p := range m.State.Pods {
		k := types.NamespacedName{Namespace: p.Namespace, Name: p.Name}
		e.pods[k] = p
		if _, ok := c.Rules(k); !ok {
			continue
		}
		pa := PodAddr{Pod: k}
		for _, ip := range podIPs(p) {
			if prev, dup := e.byIP[ip]; dup {
				return nil, fmt.Errorf("pods %s and %s both have IP %s", prev, k, ip)
			}
			e.byIP[ip] = k
			pa.IPs = append(pa.IPs, ip)
		}
		addrs = append(addrs, pa)
	}
	if e.engine, err = factory(c, addrs, nodeIPs); err != nil {
		return nil, fmt.Errorf("start %s engine: %w", engine, err)
	}
	return e, nil
}

// Close releases the engine.
func (e *Evaluator) Close() error { return e.engine.Close() }

func podIPs(p *corev1.Pod) []netip.Addr {
	var out []netip.Addr
	add := func(s string) {
		if a, err := netip.ParseAddr(s); err == nil && !slices.Contains(out, a.Unmap()) {
			out = append(out, a.Unmap())
		}
	}
	add(p.Status.PodIP)
	for _, ip := range p.Status.PodIPs {
		add(ip.IP)
	}
	return out
}

// end is one resolved end of a flow.
type end struct {
	name  string
	ips   []netip.Addr
	pod   types.NamespacedName
	isPod bool // a pod with rules: its direction is judged
}

func (e *Evaluator) resolve(s string) (end, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		en := end{name: s, ips: []netip.Addr{a}}
		if k, ok := e.byIP[a]; ok {
			en.pod, en.isPod = k, true
		}
		return en, nil
	}
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return end{}, fmt.Errorf("%q is neither an IP nor namespace/pod", s)
	}
	k := types.NamespacedName{Namespace: ns, Name: name}
	p, ok := e.pods[k]
	if !ok {
		return end{}, fmt.Errorf("pod %s is not in %s", k, e.source)
	}
	ips := podIPs(p)
	if len(ips) == 0 {
		return end{}, fmt.Errorf("pod %s has no IP (set status.podIP)", k)
	}
	_, hasRules := e.C.Rules(k)
	return end{name: s, ips: ips, pod: k, isPod: hasRules}, nil
}

// pickAddrs chooses a source and destination address of the same family.
func pickAddrs(src, dst end) (netip.Addr, netip.Addr, error) {
	for _, s := range src.ips {
		for _, d := range dst.ips {
			if s.Is4() == d.Is4() {
				return s, d, nil
			}
		}
	}
	return netip.Addr{}, netip.Addr{}, fmt.Errorf("%s and %s have no addresses of the same IP family", src.name, dst.name)
}

func (e *Evaluator) judge(ctx context.Context, pod types.NamespacedName, podIP netip.Addr, d rules.Direction, remote netip.Addr, proto rules.Protocol, port uint16) (*Outcome, error) {
	r, _ := e.C.Rules(pod)
	v, id, err := e.engine.Judge(ctx, Query{Pod: pod, PodIP: podIP, Direction: d, Remote: remote, Protocol: proto, Port: port})
	if err != nil {
		return nil, fmt.Errorf("judge %s at %s: %w", d, pod, err)
	}
	o := &Outcome{Pod: pod.String(), State: r.Dir(d).State.String(), Verdict: v.String(), Policies: []string{}, IsolatedBy: []string{},
		remote: remote, id: id, podIP: podIP, dir: d, port: port, protocol: proto}
	for _, p := range e.C.SelectingPolicies(pod, d) {
		o.IsolatedBy = append(o.IsolatedBy, p.String())
	}
	o.ClusterPolicies = e.C.SelectingClusterPolicies(pod, d)
	switch {
	case id == rules.RuleHost:
		o.Reason = "host"
	case id == rules.RuleUnisolated:
		o.Reason = "unisolated"
	case v == rules.Deny:
		// The datapath names only what it allows; a tier Deny is found per packet.
		if ref, ok := e.C.TierDecision(pod, d, remote, proto, port); ok && ref.Action == "Deny" {
			o.Reason = "deny-rule"
			var name string
			o.Rule, name = ruleOut(ref)
			o.Policies = []string{name}
			o.Tier = ref.Tier
			break
		}
		o.Reason = "no-rule"
		o.Policies = o.IsolatedBy
		if len(o.IsolatedBy) > 0 {
			o.Tier = compile.TierNetworkPolicy
		}
	default:
		ref, ok := e.C.Rule(id)
		if !ok {
			return nil, fmt.Errorf("judge %s at %s: engine returned unknown rule %d", d, pod, id)
		}
		o.Reason = "rule"
		var name string
		o.Rule, name = ruleOut(ref)
		o.Policies = []string{name}
		o.Tier = ref.TierOf()
	}
	return o, nil
}

// ReasonLoopback is Result.Reason for traffic from an address to itself.
const ReasonLoopback = "loopback: traffic to the pod's own address never leaves its network namespace"

// Evaluate judges one flow.
func (e *Evaluator) Evaluate(ctx context.Context, f Flow) (*Result, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	proto, _ := f.proto()
	if _, ok := parseServiceRef(f.Src); ok {
		return nil, fmt.Errorf("src: %q names a service; a flow starts at a pod or an IP", f.Src)
	}
	var dst end
	if ref, ok := parseServiceRef(f.Dst); ok {
		ips, port, err := e.servicePort(ref, proto)
		if err != nil {
			return nil, fmt.Errorf("dst: %w", err)
		}
		if f.Port != 0 && f.Port != port {
			return nil, fmt.Errorf("dst: %s is port %d, but the flow's port is %d: drop one", f.Dst, port, f.Port)
		}
		f.Port = port
		dst = end{name: f.Dst, ips: ips}
	}
	port := uint16(f.Port)
	if proto == rules.ProtocolICMP {
		port = 0
	}
	src, err := e.resolve(f.Src)
	if err != nil {
		return nil, fmt.Errorf("src: %w", err)
	}
	if dst.name == "" {
		if dst, err = e.resolve(f.Dst); err != nil {
			return nil, fmt.Errorf("dst: %w", err)
		}
	}
	srcIP, dstIP, err := pickAddrs(src, dst)
	if err != nil {
		return nil, err
	}
	res := &Result{Src: f.Src, Dst: f.Dst, SrcIP: srcIP.String(), DstIP: dstIP.String(), Port: f.Port, Protocol: proto.String()}
	if srcIP == dstIP {
		// A pod talking to its own address uses the loopback device inside its own network
		// namespace: no hook on the host side ever sees it, and the upstream netpol truth
		// tables expect it allowed (AllowLoopback).
		res.Verdict, res.Reason = rules.Allow.String(), ReasonLoopback
		return res, nil
	}
	allow := true
	if src.isPod {
		if res.Egress, err = e.judge(ctx, src.pod, srcIP, rules.Egress, dstIP, proto, port); err != nil {
			return nil, err
		}
		allow = res.Egress.Verdict == rules.Allow.String()
	}
	if sp, isSvc := e.C.ServiceAt(dstIP, proto, port); isSvc && !dst.isPod {
		// Traffic to a ClusterIP is judged as traffic to the Service's backends: every
		// ready backend must admit it (kube-proxy may pick any of them).
		res.Service = &ServiceOut{Name: sp.Service.String(), Backends: []BackendOut{}}
		switch {
		case !sp.HasPort:
			allow = false
			res.Reason = fmt.Sprintf("service %s has no port %s/%d", sp.Service, proto, port)
		case len(sp.Backends) == 0:
			allow = false
			res.Reason = fmt.Sprintf("service %s has no ready backend for %s/%d", sp.Service, proto, port)
		}
		for _, b := range sp.Backends {
			bo := BackendOut{IP: b.Addr.String(), Port: int(b.Port)}
			if k, ok := e.byIP[b.Addr]; ok {
				bo.Pod = k.String()
				if bo.Ingress, err = e.judge(ctx, k, b.Addr, rules.Ingress, srcIP, proto, b.Port); err != nil {
					return nil, err
				}
				allow = allow && bo.Ingress.Verdict == rules.Allow.String()
			}
			res.Service.Backends = append(res.Service.Backends, bo)
		}
	} else if dst.isPod {
		if res.Ingress, err = e.judge(ctx, dst.pod, dstIP, rules.Ingress, srcIP, proto, port); err != nil {
			return nil, err
		}
		allow = allow && res.Ingress.Verdict == rules.Allow.String()
	}
	res.Verdict = rules.Deny.String()
	if allow {
		res.Verdict = rules.Allow.String()
	}
	return res, nil
}
