// Package chartfiles exposes the chart's static manifests to Go, so the Helm chart
// (through .Files.Get) and the tests use byte-for-byte the same objects.
package chartfiles

import (
	"bufio"
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"slices"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

// GateGuardYAML is files/gate-guard.yaml: the ValidatingAdmissionPolicy, its binding
// and the ClusterRole that marks the agent.
//
//go:embed gate-guard.yaml
var GateGuardYAML []byte

// WebhooksYAML is files/webhooks.yaml: the Mutating- and ValidatingWebhookConfiguration.
//
//go:embed webhooks.yaml
var WebhooksYAML []byte

// WebhookRBACYAML is files/webhook-rbac.yaml: the webhook's ClusterRole.
//
//go:embed webhook-rbac.yaml
var WebhookRBACYAML []byte

// WebhookCertRBACYAML is files/webhook-cert-rbac.yaml: the Role and ClusterRole of
// the webhook's certificate rotation.
//
//go:embed webhook-cert-rbac.yaml
var WebhookCertRBACYAML []byte

// DecodeWebhookCertRBAC decodes WebhookCertRBACYAML.
func DecodeWebhookCertRBAC() (*rbacv1.Role, *rbacv1.ClusterRole, error) {
	objs, err := decodeAll(WebhookCertRBACYAML)
	if err != nil {
		return nil, nil, fmt.Errorf("decode webhook-cert-rbac.yaml: %w", err)
	}
	var role *rbacv1.Role
	var cr *rbacv1.ClusterRole
	for _, o := range objs {
		switch o := o.(type) {
		case *rbacv1.Role:
			role = o
		case *rbacv1.ClusterRole:
			cr = o
		default:
			return nil, nil, fmt.Errorf("decode webhook-cert-rbac.yaml: unexpected %T", o)
		}
	}
	if role == nil || cr == nil {
		return nil, nil, errors.New("decode webhook-cert-rbac.yaml: want a Role and a ClusterRole")
	}
	return role, cr, nil
}

// DecodeWebhookRole decodes WebhookRBACYAML.
func DecodeWebhookRole() (*rbacv1.ClusterRole, error) {
	objs, err := decodeAll(WebhookRBACYAML)
	if err != nil {
		return nil, fmt.Errorf("decode webhook-rbac.yaml: %w", err)
	}
	if len(objs) != 1 {
		return nil, fmt.Errorf("decode webhook-rbac.yaml: want one ClusterRole, got %d objects", len(objs))
	}
	role, ok := objs[0].(*rbacv1.ClusterRole)
	if !ok {
		return nil, fmt.Errorf("decode webhook-rbac.yaml: unexpected %T", objs[0])
	}
	return role, nil
}

// HygieneCELYAML is files/hygiene-cel.yaml: the stateless hygiene rules as
// ValidatingAdmissionPolicies, one binding each.
//
//go:embed hygiene-cel.yaml
var HygieneCELYAML []byte

// HygieneCELRuleIDAnnotation names the Rego rule a policy of hygiene-cel.yaml stands for.
const HygieneCELRuleIDAnnotation = "strictgate.dev/rule-id"

// HygieneCEL holds the decoded objects of hygiene-cel.yaml, by policy name.
type HygieneCEL struct {
	Policies map[string]*admissionregistrationv1.ValidatingAdmissionPolicy
	Bindings map[string]*admissionregistrationv1.ValidatingAdmissionPolicyBinding
}

// DecodeHygieneCEL decodes HygieneCELYAML strictly and checks its shape: every policy
// names its rule and has exactly one binding, which the chart rewrites.
func DecodeHygieneCEL() (*HygieneCEL, error) {
	objs, err := decodeAll(HygieneCELYAML)
	if err != nil {
		return nil, fmt.Errorf("decode hygiene-cel.yaml: %w", err)
	}
	h := &HygieneCEL{Policies: map[string]*admissionregistrationv1.ValidatingAdmissionPolicy{}, Bindings: map[string]*admissionregistrationv1.ValidatingAdmissionPolicyBinding{}}
	ids := map[string]bool{}
	for _, o := range objs {
		switch o := o.(type) {
		case *admissionregistrationv1.ValidatingAdmissionPolicy:
			id := o.Annotations[HygieneCELRuleIDAnnotation]
			if id == "" || ids[id] {
				return nil, fmt.Errorf("decode hygiene-cel.yaml: policy %s: rule id %q missing or repeated", o.Name, id)
			}
			ids[id] = true
			h.Policies[o.Name] = o
		case *admissionregistrationv1.ValidatingAdmissionPolicyBinding:
			if h.Bindings[o.Spec.PolicyName] != nil {
				return nil, fmt.Errorf("decode hygiene-cel.yaml: policy %s has two bindings", o.Spec.PolicyName)
			}
			h.Bindings[o.Spec.PolicyName] = o
		default:
			return nil, fmt.Errorf("decode hygiene-cel.yaml: unexpected %T", o)
		}
	}
	if len(h.Policies) == 0 || len(h.Policies) != len(h.Bindings) {
		return nil, fmt.Errorf("decode hygiene-cel.yaml: %d policies, %d bindings: want one binding per policy", len(h.Policies), len(h.Bindings))
	}
	for name := range h.Bindings {
		if h.Policies[name] == nil {
			return nil, fmt.Errorf("decode hygiene-cel.yaml: binding for unknown policy %s", name)
		}
	}
	return h, nil
}

// RuleIDs are the rule ids of the policies, sorted.
func (h *HygieneCEL) RuleIDs() []string {
	var ids []string
	for _, p := range h.Policies {
		ids = append(ids, p.Annotations[HygieneCELRuleIDAnnotation])
	}
	slices.Sort(ids)
	return ids
}

// GateGuard holds the decoded objects of gate-guard.yaml.
type GateGuard struct {
	Policy     *admissionregistrationv1.ValidatingAdmissionPolicy
	Binding    *admissionregistrationv1.ValidatingAdmissionPolicyBinding
	SetterRole *rbacv1.ClusterRole
}

// Webhooks holds the decoded objects of webhooks.yaml.
type Webhooks struct {
	Mutating   *admissionregistrationv1.MutatingWebhookConfiguration
	Validating *admissionregistrationv1.ValidatingWebhookConfiguration
}

// DecodeGateGuard decodes GateGuardYAML, strictly: an unknown field is an error.
func DecodeGateGuard() (*GateGuard, error) {
	objs, err := decodeAll(GateGuardYAML)
	if err != nil {
		return nil, fmt.Errorf("decode gate-guard.yaml: %w", err)
	}
	g := &GateGuard{}
	for _, o := range objs {
		switch o := o.(type) {
		case *admissionregistrationv1.ValidatingAdmissionPolicy:
			g.Policy = o
		case *admissionregistrationv1.ValidatingAdmissionPolicyBinding:
			g.Binding = o
		case *rbacv1.ClusterRole:
			g.SetterRole = o
		default:
			return nil, fmt.Errorf("decode gate-guard.yaml: unexpected %T", o)
		}
	}
	if g.Policy == nil || g.Binding == nil || g.SetterRole == nil {
		return nil, fmt.Errorf("decode gate-guard.yaml: want a policy, a binding and a ClusterRole")
	}
	return g, nil
}

// DecodeWebhooks decodes WebhooksYAML, strictly.
func DecodeWebhooks() (*Webhooks, error) {
	objs, err := decodeAll(WebhooksYAML)
	if err != nil {
		return nil, fmt.Errorf("decode webhooks.yaml: %w", err)
	}
	w := &Webhooks{}
	for _, o := range objs {
		switch o := o.(type) {
		case *admissionregistrationv1.MutatingWebhookConfiguration:
			w.Mutating = o
		case *admissionregistrationv1.ValidatingWebhookConfiguration:
			w.Validating = o
		default:
			return nil, fmt.Errorf("decode webhooks.yaml: unexpected %T", o)
		}
	}
	if w.Mutating == nil || w.Validating == nil {
		return nil, fmt.Errorf("decode webhooks.yaml: want one mutating and one validating configuration")
	}
	return w, nil
}

func decodeAll(data []byte) ([]runtime.Object, error) {
	dec := serializer.NewCodecFactory(clientgoscheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []runtime.Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if onlyComments(doc) {
			continue
		}
		obj, _, err := dec.Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", len(out)+1, err)
		}
		out = append(out, obj)
	}
}

func onlyComments(doc []byte) bool {
	for _, line := range bytes.Split(doc, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' {
			return false
		}
	}
	return true
}
