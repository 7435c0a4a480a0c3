package e2e

import (
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/strictgate/strictgate/test/e2e/harness"
)

const ownerRule = `package strictgate.rules.owner_label

import data.strictgate.lib

id := "E2E001-owner-label"

action := "deny"

violation contains msg if {
	not lib.obj(lib.obj(input.policy, "metadata"), "labels").owner
	msg := sprintf("%s: NetworkPolicy %s/%s has no owner label", [id, lib.namespace, lib.name])
}
`

const ownerRuleTest = `package strictgate.rules.owner_label_test

import data.strictgate.rules.owner_label

test_missing_owner if {
	count(owner_label.violation) == 1 with input as {"request": {"namespace": "a", "name": "b"}, "policy": {"metadata": {}}}
}

test_owner_present if {
	count(owner_label.violation) == 0 with input as {"policy": {"metadata": {"labels": {"owner": "a"}}}}
}
`

// TestPrivilegedCustomHygieneRule: a custom Rego rule given as chart values
// (webhook.hygiene.customRules → ConfigMap → --hygiene-rules-dir) is enforced by the
// running webhook on the cluster.
func TestPrivilegedCustomHygieneRule(t *testing.T) {
	cl, _ := setupWith(t, "strict", map[string]any{"webhook": map[string]any{"hygiene": map[string]any{
		"customRules": map[string]any{"owner.rego": ownerRule, "owner_test.rego": ownerRuleTest},
	}}})
	ctx := ctxFor(t, 10*time.Minute)

	const ns = "e2e-hygiene"
	namespace(t, cl, ns, nil)
	np := harness.NetworkPolicy(ns, "no-owner", map[string]string{"app": "x"}, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, nil, nil)
	// The rolled-out webhook pods read the mounted rules at start; allow a moment for
	// both replicas to have loaded them.
	if err := harness.Eventually(ctx, 30*time.Second, func() error {
		_, err := cl.Client.NetworkingV1().NetworkPolicies(ns).Create(ctx, np, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil {
			return errorString("policy without owner label admitted")
		}
		if !strings.Contains(err.Error(), "E2E001-owner-label") {
			return err
		}
		t.Logf("custom rule refused: %v", err)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	np.Labels = map[string]string{"owner": "e2e"}
	if _, err := cl.Client.NetworkingV1().NetworkPolicies(ns).Create(ctx, np, metav1.CreateOptions{}); err != nil {
		t.Fatalf("policy with owner label refused: %v", err)
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }
