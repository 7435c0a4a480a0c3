package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	cnp "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/strictgate/strictgate/webhook/hygiene"
)

// CNPFacts are the cluster facts the ClusterNetworkPolicy hygiene rules read.
type CNPFacts interface {
	ClusterNetworkPolicies(ctx context.Context) ([]cnp.ClusterNetworkPolicy, error)
	Namespaces(ctx context.Context) ([]corev1.Namespace, error)
	// Pods with namespace "" is every pod of the cluster.
	Pods(ctx context.Context, namespace string) ([]corev1.Pod, error)
}

// ReaderCNPFacts serves CNPFacts: namespaces and pods from Cached (the informers the
// NetworkPolicy rules already keep), ClusterNetworkPolicies from Live. CNP writes are
// rare platform-team operations, so a live list at admission costs nothing worth an
// informer (and keeps the webhook's RBAC to list only).
type ReaderCNPFacts struct {
	Cached client.Reader
	Live   client.Reader
}

// ClusterNetworkPolicies implements CNPFacts.
func (f ReaderCNPFacts) ClusterNetworkPolicies(ctx context.Context) ([]cnp.ClusterNetworkPolicy, error) {
	var l cnp.ClusterNetworkPolicyList
	if err := f.Live.List(ctx, &l); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// Namespaces implements CNPFacts.
func (f ReaderCNPFacts) Namespaces(ctx context.Context) ([]corev1.Namespace, error) {
	return ReaderFacts{Reader: f.Cached}.Namespaces(ctx)
}

// Pods implements CNPFacts.
func (f ReaderCNPFacts) Pods(ctx context.Context, namespace string) ([]corev1.Pod, error) {
	return ReaderFacts{Reader: f.Cached}.Pods(ctx, namespace)
}

// NewClusterNetworkPolicyValidator is the validator with the hygiene rules: rules nil
// judges only what strictgate supports; facts nil runs the rules without cluster facts
// (SG014 goes quiet); self is strictgate's own service account, whose writes (the
// baseline default-deny policy) custom rules must never stop.
func NewClusterNetworkPolicyValidator(rules NetworkPolicyRules, facts CNPFacts, self string) *ClusterNetworkPolicyValidator {
	return &ClusterNetworkPolicyValidator{rules: rules, facts: facts, self: self}
}

// judge evaluates the hygiene rules for an object that passed validation.
func (v *ClusterNetworkPolicyValidator) judge(ctx context.Context, req admission.Request, obj *cnp.ClusterNetworkPolicy, raw []byte) admission.Response {
	if v.rules == nil || (v.self != "" && req.UserInfo.Username == v.self) {
		return admission.Allowed("")
	}
	start := time.Now()
	dry := req.DryRun != nil && *req.DryRun
	var warnings []string
	cluster, err := v.clusterFacts(ctx, obj)
	if err != nil {
		warnings = append(warnings, "strictgate: cluster facts unavailable, rules comparing ClusterNetworkPolicies were skipped: "+err.Error())
		cluster = nil
	}
	input, err := cnpInput(req, raw, cluster)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	findings, err := v.rules.Evaluate(ctx, input)
	hygiene.ObserveEvaluation(time.Since(start), dry)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	var denials []string
	var causes []metav1.StatusCause
	for _, f := range findings {
		hygiene.CountFinding(f, dry)
		switch f.Action {
		case hygiene.Deny:
			denials = append(denials, f.Message)
			causes = append(causes, metav1.StatusCause{Type: metav1.CauseType("strictgate.dev/" + f.ID), Message: f.Message})
		case hygiene.Warn:
			warnings = append(warnings, f.Message)
		}
	}
	if len(denials) == 0 {
		resp := admission.Allowed("")
		resp.Warnings = warnings
		return resp
	}
	resp := admission.Denied(fmt.Sprintf("ClusterNetworkPolicy %s refused by strictgate hygiene rules: %s", obj.Name, strings.Join(denials, "; ")))
	resp.Result.Details = &metav1.StatusDetails{Name: obj.Name, Group: CNPGroup, Kind: "clusternetworkpolicies", Causes: causes}
	resp.Warnings = warnings
	return resp
}

// clusterFacts renders input.cluster: every other ClusterNetworkPolicy with the number
// of existing pods both policies' subjects select (sharedPods), selector matching done
// here with the API machinery's own code.
func (v *ClusterNetworkPolicyValidator) clusterFacts(ctx context.Context, obj *cnp.ClusterNetworkPolicy) (map[string]any, error) {
	if v.facts == nil {
		return nil, fmt.Errorf("no cluster facts configured")
	}
	others, err := v.facts.ClusterNetworkPolicies(ctx)
	if err != nil {
		return nil, fmt.Errorf("list ClusterNetworkPolicies: %w", err)
	}
	nss, err := v.facts.Namespaces(ctx)
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	pods, err := v.facts.Pods(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	nsLabels := make(map[string]labels.Set, len(nss))
	for _, ns := range nss {
		nsLabels[ns.Name] = ns.Labels
	}
	mine := subjectPods(&obj.Spec.Subject, pods, nsLabels)
	list := []any{}
	for i := range others {
		o := &others[i]
		if o.Name == obj.Name {
			continue // its stored version
		}
		theirs := subjectPods(&o.Spec.Subject, pods, nsLabels)
		shared := 0
		for k := range mine {
			if theirs[k] {
				shared++
			}
		}
		pol, err := toJSONValue(o)
		if err != nil {
			return nil, err
		}
		list = append(list, map[string]any{"name": o.Name, "sharedPods": shared, "policy": pol})
	}
	return map[string]any{"clusterNetworkPolicies": list}, nil
}

// subjectPods are the existing pods (namespace/name) a subject selects; host-network
// pods are never subjects.
func subjectPods(s *cnp.ClusterNetworkPolicySubject, pods []corev1.Pod, nsLabels map[string]labels.Set) map[string]bool {
	var nsSel, podSel labels.Selector
	switch {
	case s.Namespaces != nil:
		nsSel, podSel = cnpSelector(s.Namespaces), labels.Everything()
	case s.Pods != nil:
		nsSel, podSel = cnpSelector(&s.Pods.NamespaceSelector), cnpSelector(&s.Pods.PodSelector)
	default:
		return nil
	}
	out := map[string]bool{}
	for i := range pods {
		p := &pods[i]
		if p.Spec.HostNetwork {
			continue
		}
		nl, ok := nsLabels[p.Namespace]
		if ok && nsSel.Matches(nl) && podSel.Matches(labels.Set(p.Labels)) {
			out[p.Namespace+"/"+p.Name] = true
		}
	}
	return out
}

func cnpSelector(s *metav1.LabelSelector) labels.Selector {
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return labels.Nothing() // validation refused it already; match nothing
	}
	return sel
}

func toJSONValue(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	return out, json.Unmarshal(b, &out)
}

// cnpInput is the input document for a ClusterNetworkPolicy (policies/README.md,
// "ClusterNetworkPolicy input"): kind, request, policy (as the API renders it), config
// limits and, when they could be read, cluster facts.
func cnpInput(req admission.Request, raw []byte, cluster map[string]any) (ast.Value, error) {
	var pol any
	if err := json.Unmarshal(raw, &pol); err != nil {
		return nil, fmt.Errorf("decode ClusterNetworkPolicy: %w", err)
	}
	if m, ok := pol.(map[string]any); ok {
		delete(m, "status")
		if md, ok := m["metadata"].(map[string]any); ok {
			delete(md, "managedFields")
		}
	}
	user, err := toJSONValue(req.UserInfo)
	if err != nil {
		return nil, err
	}
	doc := map[string]any{
		"kind": "ClusterNetworkPolicy",
		"request": map[string]any{
			"uid": string(req.UID), "operation": string(req.Operation), "dryRun": req.DryRun != nil && *req.DryRun,
			"name": req.Name, "version": req.Kind.Version, "userInfo": user,
		},
		"policy": pol,
	}
	if cluster != nil {
		doc["cluster"] = cluster
	}
	v, err := ast.InterfaceToValue(doc)
	if err != nil {
		return nil, fmt.Errorf("build hygiene input: %w", err)
	}
	obj := v.(ast.Object)
	obj.Insert(ast.StringTerm("limits"), hygiene.LimitsTerm())
	return obj, nil
}
