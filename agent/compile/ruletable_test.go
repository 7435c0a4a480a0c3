package compile

import (
	"math/rand/v2"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/internal/contract"
)

// TestRuleIDsStable: a rule's ID depends only on (policy, direction, index), whatever
// the order policies arrive in, and is never one of the reserved IDs.
func TestRuleIDsStable(t *testing.T) {
	var s State
	for seed := uint64(0); len(s.Policies) < 5; seed++ {
		s = randState(rand.New(rand.NewPCG(seed, 5)))
	}
	a, err := Build(s, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rev := s
	rev.Policies = append([]*networkingv1.NetworkPolicy(nil), s.Policies...)
	for i, j := 0, len(rev.Policies)-1; i < j; i, j = i+1, j-1 {
		rev.Policies[i], rev.Policies[j] = rev.Policies[j], rev.Policies[i]
	}
	b, err := Build(rev, Options{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for id, ref := range a.table.byID {
		n++
		if id == rules.RuleNone || id > maxRuleID {
			t.Errorf("%v got reserved id %#x", ref, id)
		}
		if got, ok := b.RuleID(ref); !ok || got != id {
			t.Errorf("%v: id %d in one order, %d in the other", ref, id, got)
		}
	}
	if n == 0 {
		t.Fatal("no rules")
	}
}

func TestRuleIDCollision(t *testing.T) {
	tab := newRuleTable()
	r1 := RuleRef{Policy: types.NamespacedName{Namespace: "x", Name: "p"}, Direction: rules.Egress, Index: 2}
	other := RuleRef{Policy: types.NamespacedName{Namespace: "y", Name: "q"}}
	h := hashRef(r1)
	tab.byID[h], tab.byRef[other] = other, h // pretend another rule hashed there first
	if id := tab.assign(r1); id == h || id == rules.RuleNone || id > maxRuleID {
		t.Fatalf("collision not resolved: %d (hash %d)", id, h)
	}
	if id := tab.assign(r1); tab.byID[id] != r1 {
		t.Fatalf("second assign gave %d", id)
	}
	tab.release(r1)
	if _, ok := tab.byRef[r1]; ok {
		t.Fatal("release kept the rule")
	}
}

func TestCheckLimits(t *testing.T) {
	ok := &rules.PodRules{Ingress: rules.DirectionRules{State: rules.StateIsolated, Entries: []rules.Entry{{Ports: make([]rules.PortRule, contract.MaxPortRulesPerEntry)}}}}
	if err := CheckLimits(ok); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
	tooManyPorts := &rules.PodRules{Egress: rules.DirectionRules{State: rules.StateIsolated, Entries: []rules.Entry{{Ports: make([]rules.PortRule, contract.MaxPortRulesPerEntry+1)}}}}
	if err := CheckLimits(tooManyPorts); err == nil {
		t.Fatal("too many port rules accepted")
	}
	tooManyPrefixes := &rules.PodRules{Ingress: rules.DirectionRules{State: rules.StateIsolated, Entries: make([]rules.Entry, contract.MaxPrefixesPerPodDirection+1)}}
	if err := CheckLimits(tooManyPrefixes); err == nil {
		t.Fatal("too many prefixes accepted")
	}
}
