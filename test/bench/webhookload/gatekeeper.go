package webhookload

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/strictgate/strictgate/internal/contract"
	"github.com/strictgate/strictgate/webhook"
	"github.com/strictgate/strictgate/webhook/hygiene"
)

// Gatekeeper is the baseline: strictgate's own Rego rules, evaluated the way an
// OPA/Gatekeeper-style admission engine evaluates constraints. Per request it decodes
// the object's JSON into generic maps, assembles the input from them plus the
// namespace's whole synced inventory (every pod, as Gatekeeper's data.inventory holds
// every synced object), converts that document with ast.InterfaceToValue, and runs the
// same prepared query (a cached compiler, as Gatekeeper keeps one per template).
//
// It is deliberately generous to the baseline: selector matching is done in Go (a
// Gatekeeper template would iterate data.inventory in Rego), and the inventory's
// generic pod maps are built once, at sync, not per request.
type Gatekeeper struct {
	rules    webhook.NetworkPolicyRules
	limits   any
	config   map[string]any
	nsLabels map[string]labels.Set
	nsOrder  []string
	pods     map[string][]inventoryPod
	policies map[string][]inventoryPolicy
}

type inventoryPod struct {
	name   string
	labels labels.Set
	doc    map[string]any // name, labels, ports
	named  [][2]string    // named ports (name, protocol)
}

type inventoryPolicy struct {
	name string
	sel  labels.Selector
	doc  map[string]any // metadata, spec
}

// NewGatekeeper syncs the fixture into the baseline's inventory.
func NewGatekeeper(rules webhook.NetworkPolicyRules, f *Fixture) (*Gatekeeper, error) {
	g := &Gatekeeper{rules: rules, nsLabels: map[string]labels.Set{}, pods: map[string][]inventoryPod{}, policies: map[string][]inventoryPolicy{}}
	var err error
	if g.limits, err = ast.JSON(hygiene.LimitsTerm().Value); err != nil {
		return nil, err
	}
	g.config = map[string]any{
		"protectedPolicies": toAny(contract.GeneratedPolicies()),
		"privilegedUsers":   toAny(webhook.ControlPlaneDeleters),
	}
	for _, ns := range f.Namespaces {
		g.nsLabels[ns.Name] = labels.Set(ns.Labels)
		g.nsOrder = append(g.nsOrder, ns.Name)
	}
	for ns, pods := range f.Pods {
		for i := range pods {
			p := &pods[i]
			var ports []any
			var named [][2]string
			for _, c := range p.Spec.Containers {
				for _, cp := range c.Ports {
					proto := string(cp.Protocol)
					if proto == "" {
						proto = string(corev1.ProtocolTCP)
					}
					port := map[string]any{"containerPort": int(cp.ContainerPort), "protocol": proto}
					if cp.Name != "" {
						port["name"] = cp.Name
						named = append(named, [2]string{cp.Name, proto})
					}
					ports = append(ports, port)
				}
			}
			g.pods[ns] = append(g.pods[ns], inventoryPod{name: p.Name, labels: labels.Set(p.Labels), named: named,
				doc: map[string]any{"name": p.Name, "labels": stringMap(p.Labels), "ports": ports}})
		}
	}
	for ns, pols := range f.Policies {
		for i := range pols {
			p := &pols[i]
			sel, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector)
			if err != nil {
				return nil, err
			}
			doc, err := generic(map[string]any{
				"metadata": map[string]any{"name": p.Name, "namespace": p.Namespace},
				"spec":     p.Spec,
			})
			if err != nil {
				return nil, err
			}
			g.policies[ns] = append(g.policies[ns], inventoryPolicy{name: p.Name, sel: sel, doc: doc.(map[string]any)})
		}
	}
	return g, nil
}

// Handle implements admission.Handler.
func (g *Gatekeeper) Handle(ctx context.Context, req admission.Request) admission.Response {
	input, err := g.input(req)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	v, err := ast.InterfaceToValue(input)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	findings, err := g.rules.Evaluate(ctx, v)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	var denials, warnings []string
	for _, f := range findings {
		switch f.Action {
		case hygiene.Deny:
			denials = append(denials, f.Message)
		case hygiene.Warn:
			warnings = append(warnings, f.Message)
		}
	}
	resp := admission.Allowed("")
	if len(denials) > 0 {
		resp = admission.Denied(fmt.Sprintf("NetworkPolicy %s/%s refused by strictgate hygiene rules: %s", req.Namespace, req.Name, strings.Join(denials, "; ")))
	}
	resp.Warnings = warnings
	return resp
}

func (g *Gatekeeper) input(req admission.Request) (map[string]any, error) {
	var obj map[string]any
	if err := json.Unmarshal(req.Object.Raw, &obj); err != nil {
		return nil, fmt.Errorf("decode object: %w", err)
	}
	meta, _ := obj["metadata"].(map[string]any)
	spec, _ := obj["spec"].(map[string]any)
	subset := map[string]any{}
	for _, k := range []string{"name", "namespace", "uid", "labels", "annotations"} {
		if v, ok := meta[k]; ok {
			subset[k] = v
		}
	}
	policy := map[string]any{"metadata": subset, "spec": spec}
	user, err := generic(req.UserInfo)
	if err != nil {
		return nil, err
	}
	dryRun := req.DryRun != nil && *req.DryRun
	request := map[string]any{
		"uid": string(req.UID), "operation": string(req.Operation), "dryRun": dryRun,
		"namespace": req.Namespace, "name": req.Name, "userInfo": user, "object": policy,
	}
	ns := req.Namespace
	own, err := selectorOf(spec["podSelector"])
	if err != nil {
		return nil, err
	}
	others := map[string]any{}
	var otherSel []inventoryPolicy
	for _, p := range g.policies[ns] {
		if p.name != req.Name {
			others[p.name] = p.doc
			otherSel = append(otherSel, p)
		}
	}
	pods := make([]any, 0, len(g.pods[ns]))
	for _, p := range g.pods[ns] {
		doc := make(map[string]any, len(p.doc)+2)
		for k, v := range p.doc {
			doc[k] = v
		}
		selectedBy := []any{}
		for _, o := range otherSel {
			if o.sel.Matches(p.labels) {
				selectedBy = append(selectedBy, o.name)
			}
		}
		doc["selected"] = own.Matches(p.labels)
		doc["policies"] = selectedBy
		pods = append(pods, doc)
	}
	peers, err := g.peers(ns, spec)
	if err != nil {
		return nil, err
	}
	cluster := map[string]any{
		"namespace": map[string]any{"name": ns, "labels": stringMap(g.nsLabels[ns]), "terminating": false},
		"pods":      pods,
		"podCount":  len(pods),
		"policies":  others,
		"peers":     peers,
	}
	return map[string]any{"request": request, "policy": policy, "limits": g.limits, "config": g.config, "cluster": cluster}, nil
}

// peers scans the inventory for every pod/namespace-selector peer of spec.
func (g *Gatekeeper) peers(ns string, spec map[string]any) ([]any, error) {
	out := []any{}
	for _, dir := range []struct{ name, list, key string }{{"ingress", "ingress", "from"}, {"egress", "egress", "to"}} {
		rules, _ := spec[dir.list].([]any)
		for i, r := range rules {
			rule, _ := r.(map[string]any)
			peers, _ := rule[dir.key].([]any)
			for j, p := range peers {
				peer, _ := p.(map[string]any)
				podSelDoc, hasPod := peer["podSelector"]
				nsSelDoc, hasNS := peer["namespaceSelector"]
				if !hasPod && !hasNS {
					continue
				}
				nss := []string{ns}
				if hasNS {
					nsSel, err := selectorOf(nsSelDoc)
					if err != nil {
						return nil, err
					}
					nss = nss[:0]
					for _, name := range g.nsOrder {
						if nsSel.Matches(g.nsLabels[name]) {
							nss = append(nss, name)
						}
					}
				}
				podSel := labels.Everything()
				if hasPod {
					var err error
					if podSel, err = selectorOf(podSelDoc); err != nil {
						return nil, err
					}
				}
				count := 0
				named := map[[2]string]bool{}
				for _, n := range nss {
					for _, pod := range g.pods[n] {
						if podSel.Matches(pod.labels) {
							count++
							for _, k := range pod.named {
								named[k] = true
							}
						}
					}
				}
				keys := make([][2]string, 0, len(named))
				for k := range named {
					keys = append(keys, k)
				}
				sort.Slice(keys, func(a, b int) bool {
					if keys[a][0] != keys[b][0] {
						return keys[a][0] < keys[b][0]
					}
					return keys[a][1] < keys[b][1]
				})
				namedDocs := make([]any, len(keys))
				for k, key := range keys {
					namedDocs[k] = map[string]any{"name": key[0], "protocol": key[1]}
				}
				out = append(out, map[string]any{"direction": dir.name, "rule": i, "peer": j, "pods": count, "namedPorts": namedDocs})
			}
		}
	}
	return out, nil
}

// selectorOf turns a generic label selector (nil: none given) into a selector, by a
// JSON round trip as an unstructured-object engine would.
func selectorOf(doc any) (labels.Selector, error) {
	if doc == nil {
		return labels.Everything(), nil
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	var ls metav1.LabelSelector
	if err := json.Unmarshal(raw, &ls); err != nil {
		return nil, fmt.Errorf("label selector: %w", err)
	}
	return metav1.LabelSelectorAsSelector(&ls)
}

// generic is v as encoding/json's generic value (maps, slices, float64, string, bool).
func generic(v any) (any, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	return out, json.Unmarshal(raw, &out)
}

func stringMap(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}
