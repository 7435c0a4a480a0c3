// Package inspect compares what a node's kernel holds for its pods with what the
// compiler computes for them now: the answer of `strictgate inspect`, run inside the
// agent pod. It only reads: the datapath comes in through read-only handles
// (datapath.OpenReadOnly) and the cluster state as a compile.State.
package inspect

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/strictgate/strictgate/agent/compile"
	"github.com/strictgate/strictgate/agent/datapath"
	"github.com/strictgate/strictgate/agent/gate"
	"github.com/strictgate/strictgate/agent/netdev"
	"github.com/strictgate/strictgate/agent/rules"
)

// Kernel is what inspect reads from the datapath (*datapath.Datapath).
type Kernel interface {
	Pods() ([]datapath.Pod, error)
	ProgrammedRules(ifindex int) (*rules.PodRules, error)
	// HostAddrs are the node's own addresses as the agent programmed them.
	HostAddrs() ([]netip.Addr, error)
}

// Interfaces finds pods' host-side interfaces (netdev.Finder).
type Interfaces interface {
	HostInterface(ip netip.Addr) (netdev.Interface, error)
}

// Inspector answers for the pods of one node.
type Inspector struct {
	// Types are the condition types the agent sets (its --condition-types); New sets
	// gate.Default.
	Types  gate.Types
	node   string
	kernel Interfaces
	k      Kernel
	c      *compile.Compiler
	pods   map[types.NamespacedName]*corev1.Pod
}

// New compiles state as the agent on node does (compile.BuildLenient) and reads k.
// The node's own addresses come from the kernel, where the agent wrote them: the
// compiler needs them exactly as the agent had them (a Service whose backend is a
// node address, such as the kubernetes Service on a control-plane node, gets a
// ClusterIP entry only then), or every egress-isolated pod would show false drift.
func New(node string, state compile.State, k Kernel, ifs Interfaces) (*Inspector, error) {
	hostAddrs, err := k.HostAddrs()
	if err != nil {
		return nil, fmt.Errorf("read the node's addresses from the datapath: %w", err)
	}
	in := &Inspector{Types: gate.Default, node: node, kernel: ifs, k: k, pods: map[types.NamespacedName]*corev1.Pod{},
		c: compile.BuildLenient(state, compile.Options{Node: node, NodeIPs: hostAddrs}, nil)}
	for _, p := range state.Pods {
		in.pods[types.NamespacedName{Namespace: p.Namespace, Name: p.Name}] = p
	}
	return in, nil
}

// Report is what inspect says about one pod (or one kernel entry no pod claims).
type Report struct {
	Pod       string `json:"pod,omitempty"`
	IP        string `json:"ip,omitempty"`
	Interface string `json:"interface,omitempty"`
	Ifindex   int    `json:"ifindex,omitempty"`
	// Attach is how the programs are attached: tcx, tc, none (registered only), or
	// "" without a kernel entry.
	Attach string `json:"attach"`
	// Mode is audit (nothing dropped) or enforce.
	Mode       string     `json:"mode,omitempty"`
	Generation uint32     `json:"generation"`
	Condition  *Condition `json:"condition,omitempty"`
	// Conditions are the pod's conditions of each configured type, when more than one
	// type is configured.
	Conditions []Condition `json:"conditions,omitempty"`
	Ingress    Direction   `json:"ingress"`
	Egress     Direction   `json:"egress"`
	// InSync: the kernel holds exactly the rules the compiler computes now.
	InSync bool `json:"in_sync"`
	// Problem says why the kernel could not be compared (no IP, no interface, no entry).
	Problem string `json:"problem,omitempty"`
}

// Condition is the pod's strictgate readiness condition: in Report.Condition the
// summary of every configured type (gate.Types.Current), in Report.Conditions one per
// type present.
type Condition struct {
	Type    string `json:"type,omitempty"`
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// Direction compares one direction of a pod.
type Direction struct {
	Kernel   Rules `json:"kernel"`
	Compiled Rules `json:"compiled"`
	// Added are entries the compiler computes that the kernel lacks; Removed are
	// entries the kernel holds that the compiler no longer computes.
	Added   []string `json:"added,omitempty"`
	Removed []string `json:"removed,omitempty"`
}

// Rules summarises a direction's rules.
type Rules struct {
	State     string `json:"state"`
	Prefixes  int    `json:"prefixes"`
	PortRules int    `json:"port_rules"`
}

// ErrNotLocal is returned (wrapped) for a pod scheduled on another node.
var ErrNotLocal = errors.New("pod is not on this node")

// Pod inspects one pod of this node.
func (in *Inspector) Pod(key types.NamespacedName) (*Report, error) {
	p, ok := in.pods[key]
	if !ok {
		return nil, fmt.Errorf("pod %s not found", key)
	}
	if p.Spec.NodeName != in.node {
		where := p.Spec.NodeName
		if where == "" {
			where = "no node yet"
		}
		return nil, fmt.Errorf("%w: %s runs on %s, this is %s: run inspect in the agent pod of its node (kubectl strictgate inspect finds it)", ErrNotLocal, key, where, in.node)
	}
	if p.Spec.HostNetwork {
		return nil, fmt.Errorf("pod %s uses the host network: strictgate does not program it", key)
	}
	kp, err := in.kernelPods()
	if err != nil {
		return nil, err
	}
	return in.report(p, kp)
}

// All inspects every pod of this node, then lists kernel entries no pod claims.
func (in *Inspector) All() ([]*Report, error) {
	kp, err := in.kernelPods()
	if err != nil {
		return nil, err
	}
	var keys []types.NamespacedName
	for k, p := range in.pods {
		if p.Spec.NodeName == in.node && !p.Spec.HostNetwork && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b types.NamespacedName) int { return strings.Compare(a.String(), b.String()) })
	var out []*Report
	claimed := map[int]bool{}
	for _, k := range keys {
		r, err := in.report(in.pods[k], kp)
		if err != nil {
			return nil, err
		}
		claimed[r.Ifindex] = true
		out = append(out, r)
	}
	var orphans []int
	for ifindex := range kp {
		if !claimed[ifindex] {
			orphans = append(orphans, ifindex)
		}
	}
	slices.Sort(orphans)
	for _, ifindex := range orphans {
		r := &Report{Ifindex: ifindex, Problem: "kernel entry of no pod on this node (the agent collects it)"}
		in.fillKernel(r, kp[ifindex])
		out = append(out, r)
	}
	return out, nil
}

func (in *Inspector) kernelPods() (map[int]datapath.Pod, error) {
	pods, err := in.k.Pods()
	if err != nil {
		return nil, fmt.Errorf("read pod entries: %w", err)
	}
	out := map[int]datapath.Pod{}
	for _, p := range pods {
		out[p.Ifindex] = p
	}
	return out, nil
}

func (in *Inspector) fillKernel(r *Report, kp datapath.Pod) {
	r.Attach, r.Generation, r.Mode = kp.Attach.String(), kp.Generation, "enforce"
	if kp.Audit {
		r.Mode = "audit"
	}
	r.Ingress.Kernel.State, r.Egress.Kernel.State = kp.Ingress.String(), kp.Egress.String()
}

func (in *Inspector) report(p *corev1.Pod, kp map[int]datapath.Pod) (*Report, error) {
	key := types.NamespacedName{Namespace: p.Namespace, Name: p.Name}
	r := &Report{Pod: key.String()}
	if c, ok := in.Types.Current(p); ok {
		r.Condition = &Condition{Status: string(c.Status), Reason: c.Reason, Message: c.Message}
	}
	if len(in.Types) > 1 {
		for _, pc := range p.Status.Conditions {
			if slices.Contains(in.Types, pc.Type) {
				r.Conditions = append(r.Conditions, Condition{Type: string(pc.Type), Status: string(pc.Status), Reason: pc.Reason, Message: pc.Message})
			}
		}
	}
	want, hasRules := in.c.Rules(key)
	if hasRules {
		for _, d := range []rules.Direction{rules.Ingress, rules.Egress} {
			dir := r.dir(d)
			dir.Compiled = summary(want.Dir(d))
		}
	}
	ip, ok := firstIP(p)
	if !ok {
		r.Problem = "no IP yet: the CNI plugin holds the pod in the mode's unprogrammed state"
		return r, nil
	}
	r.IP = ip.String()
	ifc, err := in.kernel.HostInterface(ip)
	if err != nil {
		r.Problem = fmt.Sprintf("no host-side interface for %s: %v", ip, err)
		return r, nil
	}
	r.Interface, r.Ifindex = ifc.Name, ifc.Index
	entry, ok := kp[ifc.Index]
	if !ok {
		r.Problem = "no datapath entry on its interface: not attached"
		return r, nil
	}
	in.fillKernel(r, entry)
	got, err := in.k.ProgrammedRules(ifc.Index)
	if err != nil {
		return nil, fmt.Errorf("read rules of %s (ifindex %d): %w", key, ifc.Index, err)
	}
	for _, d := range []rules.Direction{rules.Ingress, rules.Egress} {
		dir := r.dir(d)
		dir.Kernel = summary(got.Dir(d))
		if hasRules {
			dir.Added, dir.Removed = in.diff(want.Dir(d), got.Dir(d))
		}
	}
	r.InSync = hasRules && entry.Attach != datapath.AttachNone &&
		got.Ingress.State == want.Ingress.State && got.Egress.State == want.Egress.State &&
		datapath.RulesDigest(got) == datapath.RulesDigest(want)
	if !hasRules {
		r.Problem = "the compiler computes no rules for it"
	}
	return r, nil
}

func (r *Report) dir(d rules.Direction) *Direction {
	if d == rules.Egress {
		return &r.Egress
	}
	return &r.Ingress
}

func summary(dr *rules.DirectionRules) Rules {
	s := Rules{State: dr.State.String()}
	if dr.State != rules.StateIsolated {
		return s // the datapath ignores rules of other states
	}
	s.Prefixes = len(dr.Entries)
	for _, e := range dr.Entries {
		s.PortRules += len(e.Ports)
	}
	return s
}

// diff lists single (prefix, port rule) entries in want but not got (added) and in got
// but not want (removed). A changed state with no rules shows as the state alone.
func (in *Inspector) diff(want, got *rules.DirectionRules) (added, removed []string) {
	if want.State != got.State {
		added = append(added, "state "+want.State.String())
		removed = append(removed, "state "+got.State.String())
	}
	w, g := in.atoms(want), in.atoms(got)
	for _, a := range w {
		if !slices.Contains(g, a) {
			added = append(added, a)
		}
	}
	for _, a := range g {
		if !slices.Contains(w, a) {
			removed = append(removed, a)
		}
	}
	return added, removed
}

func (in *Inspector) atoms(dr *rules.DirectionRules) []string {
	if dr.State != rules.StateIsolated {
		return nil
	}
	var out []string
	for _, e := range dr.Entries {
		if len(e.Ports) == 0 {
			out = append(out, e.Prefix.String()+" (no ports)")
		}
		for _, p := range e.Ports {
			out = append(out, fmt.Sprintf("%s %s (%s)", e.Prefix, portText(p), in.ruleName(p.Rule)))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func portText(p rules.PortRule) string {
	switch {
	case p.Protocol == rules.ProtocolAny:
		return "any protocol"
	case p.AnyPort():
		return p.Protocol.String() + " any port"
	case p.First == p.Last:
		return fmt.Sprintf("%s/%d", p.Protocol, p.First)
	}
	return fmt.Sprintf("%s/%d-%d", p.Protocol, p.First, p.Last)
}

func (in *Inspector) ruleName(id rules.RuleID) string {
	if id == rules.RuleHost {
		// A ClusterIP whose backends are all on the node: no policy rule, the datapath's
		// node allowance (compile/doc.go).
		return "backends on the node"
	}
	if ref, ok := in.c.Rule(id); ok {
		return fmt.Sprintf("%s %s[%d]", ref.Policy, ref.Direction, ref.Index)
	}
	return fmt.Sprintf("rule %d, of no current policy", id)
}

func firstIP(p *corev1.Pod) (netip.Addr, bool) {
	for _, s := range append([]string{p.Status.PodIP}, ipsOf(p)...) {
		if a, err := netip.ParseAddr(s); err == nil {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

func ipsOf(p *corev1.Pod) []string {
	var out []string
	for _, ip := range p.Status.PodIPs {
		out = append(out, ip.IP)
	}
	return out
}
