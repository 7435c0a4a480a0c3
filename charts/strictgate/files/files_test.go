package chartfiles

import (
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
