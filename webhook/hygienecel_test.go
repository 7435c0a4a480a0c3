package webhook

import (
	"context"
	"strings"
	"testing"

	"github.com/strictgate/strictgate/webhook/hygiene"
)

// TestHygieneEngineSkipsCELRules: --hygiene-cel-rules reaches the engine (the rules are
// listed as judged by the API server) and an id that is no built-in fails start-up with
// its name.
func TestHygieneEngineSkipsCELRules(t *testing.T) {
	c := DefaultNetworkPolicyConfig()
	c.CELRules = []string{"SG001-open-rule", "SG012-cnp-admin-accept-all"}
	e, err := NewHygieneEngine(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	sources := map[string]string{}
	for _, r := range e.Status().Rules {
		sources[r.ID] = r.Source
	}
	if sources["SG001-open-rule"] != hygiene.SourceCEL || sources["SG012-cnp-admin-accept-all"] != hygiene.SourceCEL || sources["SG002-any-cidr"] != "builtin" {
		t.Fatalf("rule sources %v", sources)
	}
	c.CELRules = []string{"SG001-open-rul"}
	if _, err := NewHygieneEngine(context.Background(), c); err == nil || !strings.Contains(err.Error(), "SG001-open-rul") {
		t.Fatalf("misspelt CEL rule: err %v, want it named", err)
	}
}
