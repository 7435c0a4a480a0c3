package bpf

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/strictgate/strictgate/agent/rules"
)

// TestLimitsMatchRules checks that include/limits.h says what agent/rules/limits.go says:
// the compiler refuses what the maps cannot hold only if both agree.
func TestLimitsMatchRules(t *testing.T) {
	f, err := os.Open("include/limits.h")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	defines := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 3 && fields[0] == "#define" {
			if v, err := strconv.Atoi(fields[2]); err == nil {
				defines[fields[1]] = v
			}
		}
	}
	for name, want := range map[string]int{
		"SG_MAX_PODS":                       rules.MaxPods,
		"SG_MAX_PREFIXES":                   rules.MaxPrefixes,
		"SG_MAX_PREFIXES_PER_POD_DIRECTION": rules.MaxPrefixesPerPodDirection,
		"SG_MAX_PORT_RULES_PER_ENTRY":       rules.MaxPortRulesPerEntry,
		"SG_MAX_PORT_RULES":                 rules.MaxPortRules,
		"SG_MAX_CONNTRACK":                  rules.MaxConntrack,
	} {
		got, ok := defines[name]
		if !ok {
			t.Errorf("include/limits.h does not define %s", name)
			continue
		}
		if got != want {
			t.Errorf("include/limits.h: %s = %d, agent/rules/limits.go says %d", name, got, want)
		}
	}
}

// TestStructsMatchRules checks the enum values shared with agent/rules.
func TestStructsMatchRules(t *testing.T) {
	b, err := os.ReadFile("include/strictgate.h")
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	for text, want := range map[string]int{
		"SG_DIR_INGRESS = ":              int(rules.Ingress),
		"SG_DIR_EGRESS = ":               int(rules.Egress),
		"SG_STATE_UNPROGRAMMED_DENY = ":  int(rules.StateUnprogrammedDeny),
		"SG_STATE_UNPROGRAMMED_ALLOW = ": int(rules.StateUnprogrammedAllow),
		"SG_STATE_ISOLATED = ":           int(rules.StateIsolated),
		"SG_STATE_UNISOLATED = ":         int(rules.StateUnisolated),
		"SG_VERDICT_DENY = ":             int(rules.Deny),
		"SG_VERDICT_ALLOW = ":            int(rules.Allow),
	} {
		i := strings.Index(src, text)
		if i < 0 {
			t.Errorf("include/strictgate.h lacks %q", text)
			continue
		}
		rest := src[i+len(text):]
		n, err := strconv.Atoi(rest[:strings.IndexAny(rest, ",\n")])
		if err != nil || n != want {
			t.Errorf("include/strictgate.h: %s%s, agent/rules says %d", text, rest[:strings.IndexAny(rest, ",\n")], want)
		}
	}
	for text, want := range map[string]rules.RuleID{
		"SG_RULE_NONE ":         rules.RuleNone,
		"SG_RULE_UNISOLATED ":   rules.RuleUnisolated,
		"SG_RULE_UNPROGRAMMED ": rules.RuleUnprogrammed,
		"SG_RULE_HOST ":         rules.RuleHost,
		"SG_RULE_CONNTRACK ":    rules.RuleConntrack,
	} {
		i := strings.Index(src, "#define "+text)
		if i < 0 {
			t.Errorf("include/strictgate.h lacks #define %s", text)
			continue
		}
		rest := strings.TrimSpace(src[i+len("#define "+text):])
		v := strings.TrimSuffix(strings.Fields(rest)[0], "u")
		n, err := strconv.ParseUint(v, 0, 32)
		if err != nil || rules.RuleID(n) != want {
			t.Errorf("include/strictgate.h: %s= %s, agent/rules says %#x", text, v, uint32(want))
		}
	}
}
