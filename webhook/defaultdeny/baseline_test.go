package defaultdeny

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	cnp "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/strictgate/strictgate/internal/contract"
)

// TestEnforcedNamespaceSelector: the Baseline policy's subject selects exactly the
// namespaces contract.Scope enforces, for every scope and namespace of the table.
func TestEnforcedNamespaceSelector(t *testing.T) {
	mustSel := func(s string) labels.Selector {
		sel, err := contract.ParseNamespaceSelector(s)
		if err != nil {
			t.Fatal(err)
		}
		return sel
	}
	scopes := map[string]contract.Scope{
		"zero":          {},
		"own+excluded":  {OwnNamespace: "strictgate", Excluded: []string{"legacy", "kube-system"}},
		"selector eq":   {OwnNamespace: "strictgate", Selector: mustSel("team=a")},
		"selector set":  {Selector: mustSel("env in (prod,staging),!legacy,tier!=db,owner")},
		"selector json": {Selector: mustSel(`{"matchExpressions":[{"key":"env","operator":"NotIn","values":["dev"]}]}`)},
	}
	var namespaces []*corev1.Namespace
	for _, name := range []string{"default", "kube-system", "kube-public", "kube-node-lease", "strictgate", "legacy", "shop"} {
		for _, l := range []map[string]string{
			nil,
			{"team": "a"},
			{"team": "b", "env": "prod", "owner": "x"},
			{"env": "staging", "owner": "y", "tier": "db"},
			{"env": "prod", "owner": "y", "legacy": "true"},
			{"env": "dev", "owner": "z"},
			{"team": "a", contract.EnforceLabel: contract.EnforceDisabled},
			{"team": "a", contract.EnforceLabel: "enabled"},
		} {
			ls := map[string]string{namespaceNameLabel: name}
			for k, v := range l {
				ls[k] = v
			}
			namespaces = append(namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: ls}})
		}
	}
	for name, scope := range scopes {
		t.Run(name, func(t *testing.T) {
			ls, err := EnforcedNamespaceSelector(scope)
			if err != nil {
				t.Fatal(err)
			}
			sel, err := metav1.LabelSelectorAsSelector(ls)
			if err != nil {
				t.Fatal(err)
			}
			enforced := 0
			for _, ns := range namespaces {
				want := scope.Enforced(ns)
				if got := sel.Matches(labels.Set(ns.Labels)); got != want {
					t.Errorf("namespace %s %v: selector matches %v, scope enforces %v", ns.Name, ns.Labels, got, want)
				}
				if want {
					enforced++
				}
			}
			if enforced == 0 {
				t.Fatal("the table enforces no namespace under this scope: it tests nothing")
			}
		})
	}
	t.Run("Gt cannot be expressed", func(t *testing.T) {
		_, err := EnforcedNamespaceSelector(contract.Scope{Selector: mustSel("rank>3")})
		if err == nil || !strings.Contains(err.Error(), "cannot be expressed") {
			t.Fatalf("err %v, want a refusal", err)
		}
	})
}

func TestBaselinePolicy(t *testing.T) {
	for _, dns := range []bool{false, true} {
		p, err := BaselinePolicy(contract.Scope{OwnNamespace: "strictgate"}, dns, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if p.Name != contract.DefaultDenyPolicy || p.Labels[contract.ManagedByLabel] != contract.ManagedBy || p.Spec.Tier != cnp.BaselineTier || p.Spec.Priority != BaselinePriority {
			t.Fatalf("metadata/tier %+v %+v", p.ObjectMeta, p.Spec)
		}
		last := p.Spec.Egress[len(p.Spec.Egress)-1]
		if last.Action != cnp.ClusterNetworkPolicyRuleActionDeny || len(last.To) != 2 || p.Spec.Ingress[0].Action != cnp.ClusterNetworkPolicyRuleActionDeny {
			t.Fatalf("the policy must end in deny-all both ways: %+v", p.Spec)
		}
		if want := map[bool]int{false: 1, true: 2}[dns]; len(p.Spec.Egress) != want {
			t.Fatalf("dns=%v: %d egress rules, want %d", dns, len(p.Spec.Egress), want)
		}
		if dns && (p.Spec.Egress[0].Action != cnp.ClusterNetworkPolicyRuleActionAccept || p.Spec.Egress[0].To[0].Pods.PodSelector.MatchLabels["k8s-app"] != "kube-dns") {
			t.Fatalf("dns allowance must come first: %+v", p.Spec.Egress[0])
		}
	}
}
