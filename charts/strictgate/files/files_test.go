package chartfiles

import (
	"slices"
	"strings"
	"testing"
)

func TestManifestsDecode(t *testing.T) {
	g, err := DecodeGateGuard()
	if err != nil {
		t.Fatal(err)
	}
	if g.Binding.Spec.PolicyName != g.Policy.Name {
		t.Fatalf("binding points at %q, policy is %q", g.Binding.Spec.PolicyName, g.Policy.Name)
	}
	if g.Binding.Spec.ParamRef != nil {
		t.Fatal("binding has a paramRef: the manifest must stay install-independent")
	}
	// The ClusterRole must grant exactly what the policy's authorizer check asks for.
	r := g.SetterRole.Rules
	if len(r) != 1 || r[0].APIGroups[0] != "strictgate.dev" || r[0].Resources[0] != "pods/policy-programmed" || r[0].Verbs[0] != "update" {
		t.Fatalf("setter role rules %+v do not match the policy's authorizer check", r)
	}
	if !strings.Contains(g.Policy.Spec.Validations[0].Expression, "resource('pods').subresource('policy-programmed')") {
		t.Fatal("policy no longer checks pods/policy-programmed: keep it in step with the ClusterRole")
	}

	w, err := DecodeWebhooks()
	if err != nil {
		t.Fatal(err)
	}
	paths := map[string]bool{}
	for _, h := range w.Mutating.Webhooks {
		paths[*h.ClientConfig.Service.Path] = true
	}
	for _, h := range w.Validating.Webhooks {
		paths[*h.ClientConfig.Service.Path] = true
	}
	for _, p := range []string{"/mutate-v1-pod", "/validate-v1-namespace", "/validate-networking-v1-networkpolicy", "/validate-policy-networking-k8s-io-clusternetworkpolicy"} {
		if !paths[p] {
			t.Errorf("webhooks.yaml has no webhook for %s", p)
		}
	}
}

func TestWebhookRoleDecodes(t *testing.T) {
	r, err := DecodeWebhookRole()
	if err != nil {
		t.Fatal(err)
	}
	for _, rule := range r.Rules {
		for _, v := range rule.Verbs {
			if v == "*" {
				t.Fatal("webhook role grants '*': keep it least-privilege")
			}
		}
	}
}

// TestHygieneCELDecodes: the file decodes strictly, one binding per policy, and holds
// exactly the built-in rules that judge the policy object alone (the others read
// cluster state: policies/README.md, "CEL"). A new stateless built-in belongs here.
func TestHygieneCELDecodes(t *testing.T) {
	h, err := DecodeHygieneCEL()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"SG001-open-rule", "SG002-any-cidr", "SG003-all-namespaces", "SG004-cloud-metadata", "SG005-policy-types", "SG006-port-range", "SG012-cnp-admin-accept-all", "SG013-cnp-cuts-dns"}
	if got := h.RuleIDs(); !slices.Equal(got, want) {
		t.Fatalf("CEL rules %v, want %v", got, want)
	}
	for name, p := range h.Policies {
		if a := p.Annotations["strictgate.dev/action"]; a != "deny" && a != "warn" && a != "dryrun" {
			t.Errorf("%s: strictgate.dev/action %q, want the Rego rule's action", name, a)
		}
		if len(p.Spec.Validations) != 1 || p.Spec.Validations[0].MessageExpression == "" {
			t.Errorf("%s: want one validation with a messageExpression", name)
		}
	}
}
