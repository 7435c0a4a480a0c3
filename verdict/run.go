package verdict

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/strictgate/strictgate/agent/compile"
	"github.com/strictgate/strictgate/agent/rules"
)

// Options are the inputs of `strictgate verdict` and `strictgate explain`.
type Options struct {
	// Manifests are files or directories (offline mode).
	Manifests []string
	// Client, instead of Manifests, reads the objects from a live cluster (FromCluster).
	Client kubernetes.Interface
	// ClusterPolicies, with Client, also reads ClusterNetworkPolicies (FromClusterWith).
	ClusterPolicies cnpclient.Interface
	// SrcSelector and DstSelector, with Flow, pick the single flow's ends by label
	// selector among the pods of Namespace ("default" if empty): exactly one pod must
	// match.
	SrcSelector, DstSelector string
	Namespace                string
	// FlowsName names the flows input in errors ("-" for stdin); Flows is read if set,
	// else the file FlowsName. Flow (if set) is a single flow instead.
	FlowsName string
	Flows     io.Reader
	Flow      *Flow
	// Engine is "go" (default) or "bpf".
	Engine  string
	NodeIPs []netip.Addr
	// Warn receives non-fatal notes (skipped kinds); may be nil.
	Warn func(string)
}

func (o *Options) load(ctx context.Context) (*Evaluator, []Flow, error) {
	switch {
	case len(o.Manifests) > 0 && o.Client != nil:
		return nil, nil, fmt.Errorf("manifests and a live cluster are mutually exclusive: pass one")
	case len(o.Manifests) == 0 && o.Client == nil:
		return nil, nil, fmt.Errorf("no manifests: pass --manifests PATH (a file or directory)")
	case (o.SrcSelector != "" || o.DstSelector != "") && o.Flow == nil:
		return nil, nil, fmt.Errorf("label selectors pick the ends of a single flow, not of --flows")
	}
	var flows []Flow
	switch {
	case o.Flow != nil:
		f := *o.Flow
		if o.SrcSelector != "" {
			f.Src = "selector" // resolved once the objects are read
		}
		if o.DstSelector != "" {
			f.Dst = "selector"
		}
		if err := f.check(); err != nil {
			return nil, nil, fmt.Errorf("bad flow: %w", err)
		}
		flows = []Flow{*o.Flow}
	case o.Flows != nil || o.FlowsName != "":
		r := o.Flows
		if r == nil {
			f, err := os.Open(o.FlowsName)
			if err != nil {
				return nil, nil, fmt.Errorf("read flows: %w", err)
			}
			defer f.Close()
			r = f
		}
		var err error
		if flows, err = ReadFlows(o.FlowsName, r); err != nil {
			return nil, nil, err
		}
	default:
		return nil, nil, fmt.Errorf("no flows: pass --flows FILE (or - for stdin), or --src/--dst/--port")
	}
	var m *Manifests
	var err error
	if o.Client != nil {
		m, err = FromClusterWith(ctx, o.Client, o.ClusterPolicies)
	} else {
		m, err = Load(o.Manifests, o.Warn)
	}
	if err != nil {
		return nil, nil, err
	}
	if o.Flow != nil {
		ns := o.Namespace
		if ns == "" {
			ns = "default"
		}
		for _, s := range []struct {
			sel string
			to  *string
			end string
		}{{o.SrcSelector, &flows[0].Src, "src"}, {o.DstSelector, &flows[0].Dst, "dst"}} {
			if s.sel == "" {
				continue
			}
			if *s.to != "" {
				return nil, nil, fmt.Errorf("%s: give the pod by name or by selector, not both", s.end)
			}
			if *s.to, err = m.SelectPod(ns, s.sel); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", s.end, err)
			}
		}
	}
	engine := o.Engine
	if engine == "" {
		engine = "go"
	}
	ev, err := NewEvaluator(m, engine, o.NodeIPs)
	if err != nil {
		return nil, nil, err
	}
	return ev, flows, nil
}

// evaluateAll judges every flow before anything is printed, so that a bad flow leaves
// no partial output.
func evaluateAll(ctx context.Context, o *Options) (*Evaluator, []*Result, error) {
	ev, flows, err := o.load(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer ev.Close()
	results := make([]*Result, 0, len(flows))
	for i, f := range flows {
		r, err := ev.Evaluate(ctx, f)
		if err != nil {
			where := "flow"
			if o.Flow == nil {
				where = fmt.Sprintf("%s: flow %d", o.FlowsName, i+1)
			}
			return nil, nil, fmt.Errorf("%s (%s → %s): %w", where, f.Src, f.Dst, err)
		}
		results = append(results, r)
	}
	return ev, results, nil
}

// Run prints one JSON line per flow, in order.
func Run(ctx context.Context, o Options, out io.Writer) error {
	_, results, err := evaluateAll(ctx, &o)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for _, r := range results {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	_, err = out.Write(buf.Bytes())
	return err
}

// Explain prints the same answers for a person.
func Explain(ctx context.Context, o Options, out io.Writer) error {
	ev, results, err := evaluateAll(ctx, &o)
	if err != nil {
		return err
	}
	var b strings.Builder
	for i, r := range results {
		if i > 0 {
			b.WriteString("\n")
		}
		ev.explain(&b, r)
	}
	_, err = io.WriteString(out, b.String())
	return err
}

func portText(proto string, port int) string {
	if proto == rules.ProtocolICMP.String() {
		return proto
	}
	return fmt.Sprintf("%s/%d", proto, port)
}

func endText(name, ip string) string {
	if name == ip {
		return ip
	}
	return fmt.Sprintf("%s (%s)", name, ip)
}

func (e *Evaluator) explain(b *strings.Builder, r *Result) {
	fmt.Fprintf(b, "%s → %s %s: %s\n", endText(r.Src, r.SrcIP), endText(r.Dst, r.DstIP), portText(r.Protocol, r.Port), strings.ToUpper(r.Verdict))
	if r.Reason == ReasonLoopback {
		fmt.Fprintf(b, "  %s\n", r.Reason)
		return
	}
	if r.Egress == nil {
		fmt.Fprintf(b, "  egress: %s is not a pod with rules here; the source imposes nothing\n", r.Src)
	} else {
		fmt.Fprintf(b, "  egress at %s: %s\n", r.Egress.Pod, e.outcomeText(r.Egress, r.DstIP))
	}
	switch {
	case r.Service != nil:
		fmt.Fprintf(b, "  %s is the ClusterIP of service %s; traffic to it is judged as traffic to every ready backend\n", r.DstIP, r.Service.Name)
		if r.Reason != "" {
			fmt.Fprintf(b, "  %s: nothing to reach\n", r.Reason)
		}
		for _, be := range r.Service.Backends {
			if be.Ingress == nil {
				fmt.Fprintf(b, "  backend %s:%d: not a pod with rules here; imposes nothing\n", be.IP, be.Port)
				continue
			}
			fmt.Fprintf(b, "  backend %s:%d, ingress at %s: %s\n", be.IP, be.Port, be.Pod, e.outcomeText(be.Ingress, r.SrcIP))
		}
	case r.Ingress == nil:
		fmt.Fprintf(b, "  ingress: %s is not a pod with rules here; the destination imposes nothing\n", r.Dst)
	default:
		fmt.Fprintf(b, "  ingress at %s: %s\n", r.Ingress.Pod, e.outcomeText(r.Ingress, r.SrcIP))
	}
}

func (e *Evaluator) outcomeText(o *Outcome, remote string) string {
	what := portText(o.protocol.String(), int(o.port))
	switch o.Reason {
	case "host":
		if _, isSvc := e.C.ServiceAt(o.remote, o.protocol, o.port); isSvc && o.dir == rules.Egress {
			return fmt.Sprintf("allowed: every ready backend of ClusterIP %s is on the pod's own node, which the datapath always lets through", o.remote)
		}
		return fmt.Sprintf("allowed: %s is the pod's own node, which the datapath always lets through (kubelet probes)", o.remote)
	case "unisolated":
		if len(o.ClusterPolicies) > 0 {
			return fmt.Sprintf("allowed: no NetworkPolicy selects %s for %s and no rule of %s matches, so the default (allow) applies", o.Pod, o.dir, strings.Join(o.ClusterPolicies, ", "))
		}
		return fmt.Sprintf("allowed: no NetworkPolicy selects %s for %s, so it is not isolated", o.Pod, o.dir)
	case "rule", "deny-rule":
		list := "spec.ingress"
		if o.Rule.Direction == rules.Egress.String() {
			list = "spec.egress"
		}
		if o.Rule.Tier != "" {
			verb := map[string]string{"Accept": "allowed", "Deny": "denied", "Pass": "allowed (Pass to the default)"}[o.Rule.Action]
			name := ""
			if o.Rule.Name != "" {
				name = fmt.Sprintf(" %q", o.Rule.Name)
			}
			return fmt.Sprintf("%s by %s-tier ClusterNetworkPolicy %s rule%s (%s[%d], %s), which matches %s on %s", verb, o.Rule.Tier, o.Rule.Policy, name, list, o.Rule.Index, o.Rule.Action, o.remote, what)
		}
		return fmt.Sprintf("allowed by %s rule %d (%s[%d]), which admits %s on %s", o.Rule.Policy, o.Rule.Index, list, o.Rule.Index, o.remote, what)
	}
	pols := strings.Join(o.IsolatedBy, ", ")
	peer := "from"
	if o.dir == rules.Egress {
		peer = "to"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "denied: pod %s is isolated for %s by %s; no rule of %s admits %s %s on %s", o.Pod, o.dir, pols, pols, peer, o.remote, what)
	pod, _ := cutKey(o.Pod)
	if sp, isSvc := e.C.ServiceAt(o.remote, o.protocol, o.port); isSvc && o.dir == rules.Egress {
		fmt.Fprintf(&b, "\n      %s is a ClusterIP: the rules must allow every ready backend on its target port", o.remote)
		r, _ := e.C.Rules(pod)
		for _, be := range sp.Backends {
			if slices.Contains(e.nodes, be.Addr) {
				continue // the pod's own node: always allowed
			}
			if v, _ := r.Egress.Lookup(be.Addr, o.protocol, be.Port); v != rules.Allow {
				fmt.Fprintf(&b, "\n      backend %s:%d is not allowed", be.Addr, be.Port)
			}
		}
		return b.String()
	}
	for _, name := range o.IsolatedBy {
		key, _ := cutKey(name)
		n, _ := e.C.RuleCount(key, o.dir)
		if n == 0 {
			fmt.Fprintf(&b, "\n      %s has no %s rules: it only isolates", name, o.dir)
			continue
		}
		for i := range n {
			m, ok := e.C.MatchRule(compile.RuleRef{Policy: key, Direction: o.dir, Index: i}, pod, o.remote, o.protocol, o.port)
			if !ok {
				continue
			}
			var why string
			switch {
			case !m.Peer && !m.Port:
				why = fmt.Sprintf("its peers do not include %s and its ports do not include %s", o.remote, what)
			case !m.Peer:
				why = fmt.Sprintf("its peers do not include %s", o.remote)
			case !m.Port:
				why = fmt.Sprintf("admits %s, but not on %s", o.remote, what)
			default:
				why = "admits it"
			}
			fmt.Fprintf(&b, "\n      %s %s[%d]: %s", name, o.dir, i, why)
		}
	}
	return b.String()
}

func cutKey(s string) (types.NamespacedName, bool) {
	ns, name, ok := strings.Cut(s, "/")
	return types.NamespacedName{Namespace: ns, Name: name}, ok
}
