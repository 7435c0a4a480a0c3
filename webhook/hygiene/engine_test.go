package hygiene

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// openIngress is an input with one ingress rule without peers (SG001).
var openIngress = ast.MustParseTerm(`{
	"request": {"operation": "CREATE", "namespace": "app", "name": "p"},
	"policy": {"metadata": {"name": "p", "namespace": "app"}, "spec": {"podSelector": {}, "ingress": [{}]}}
}`).Value

// customRule denies policies labelled forbidden=yes; its test passes.
const customRule = `package strictgate.rules.forbidden_label

id := "CUSTOM001-forbidden-label"

action := "deny"

violation contains msg if {
	input.policy.metadata.labels.forbidden == "yes"
	msg := sprintf("%s: remove the forbidden label", [id])
}
`

const customRuleTest = `package strictgate.rules.forbidden_label_test

import data.strictgate.rules.forbidden_label

test_flags_label if {
	count(forbidden_label.violation) == 1 with input as {"policy": {"metadata": {"labels": {"forbidden": "yes"}}}}
}
`

var labelledForbidden = ast.MustParseTerm(`{
	"request": {"operation": "CREATE", "namespace": "app", "name": "p"},
	"policy": {"metadata": {"name": "p", "namespace": "app", "labels": {"forbidden": "yes"}}, "spec": {"podSelector": {}}}
}`).Value

func newEngine(t *testing.T, opts Options) *Engine {
	t.Helper()
	opts.Log = logr.Discard()
	e, err := New(context.Background(), opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

func ids(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.ID+"="+string(f.Action))
	}
	return out
}

func evaluate(t *testing.T, e *Engine, in ast.Value) []Finding {
	t.Helper()
	fs, err := e.Evaluate(context.Background(), in)
	if err != nil {
		t.Fatalf("Evaluate: %v", err)
	}
	return fs
}

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestBuiltinsLoadAndEvaluate(t *testing.T) {
	e := newEngine(t, Options{})
	fs := evaluate(t, e, openIngress)
	if got := strings.Join(ids(fs), ","); got != "SG001-open-rule=deny" {
		t.Fatalf("findings = %s, want SG001-open-rule=deny", got)
	}
	if !strings.Contains(fs[0].Message, "spec.ingress[0]") || !strings.Contains(fs[0].Message, "strictgate.dev/allow-open-rule") {
		t.Errorf("message does not say where and how to fix: %q", fs[0].Message)
	}
	compliant := ast.MustParseTerm(`{
		"request": {"operation": "CREATE", "namespace": "app", "name": "p"},
		"policy": {"metadata": {"name": "p", "namespace": "app"}, "spec": {
			"podSelector": {"matchLabels": {"app": "web"}},
			"policyTypes": ["Ingress"],
			"ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "lb"}}}], "ports": [{"port": 8080, "protocol": "TCP"}]}]
		}}
	}`).Value
	if fs := evaluate(t, e, compliant); len(fs) != 0 {
		t.Errorf("compliant policy has findings %v", fs)
	}
	st := e.Status()
	if !st.Healthy || len(st.Rules) != 14 || st.Revision == "" {
		t.Fatalf("status = %+v, want healthy with 14 rules (SG001–SG011 for NetworkPolicies, SG012–SG014 for ClusterNetworkPolicies)", st)
	}
	for _, r := range st.Rules {
		if r.Source != "builtin" || !strings.HasPrefix(r.ID, "SG0") {
			t.Errorf("rule %+v: want a builtin SG0xx rule", r)
		}
	}
}

func TestPreparedQueryIsReused(t *testing.T) {
	e := newEngine(t, Options{})
	before := e.current.Load()
	evaluate(t, e, openIngress)
	// Compiling the rule set allocates hundreds of thousands of objects; an
	// evaluation of the prepared query allocates a few thousand at most.
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := e.Evaluate(context.Background(), openIngress); err != nil {
			t.Fatal(err)
		}
	})
	if e.current.Load() != before {
		t.Fatal("Evaluate replaced the rule set")
	}
	if allocs > 20000 {
		t.Fatalf("Evaluate allocates %.0f objects per call: is it compiling?", allocs)
	}
	t.Logf("%.0f allocations per evaluation", allocs)
}

func TestActions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		flags   Actions
		def     Action // Options.DefaultAction
		file    string
		want    string
		warning string
	}{
		{name: "rule default", want: "SG001-open-rule=deny"},
		{name: "default action deny keeps the rule's own", def: Deny, want: "SG001-open-rule=deny"},
		{name: "default action warn", def: Warn, want: "SG001-open-rule=warn"},
		{name: "default action dryrun", def: DryRun, want: "SG001-open-rule=dryrun"},
		{name: "a per-rule action beats the default action", def: DryRun, flags: Actions{"SG001": Deny}, want: "SG001-open-rule=deny"},
		{name: "the file beats the default action", def: Warn, file: "SG001-open-rule: deny\n", want: "SG001-open-rule=deny"},
		{name: "flag by short id", flags: Actions{"SG001": Warn}, want: "SG001-open-rule=warn"},
		{name: "flag by full id", flags: Actions{"SG001-open-rule": DryRun}, want: "SG001-open-rule=dryrun"},
		{name: "file beats flag", flags: Actions{"SG001": Warn}, file: "SG001-open-rule: dryrun\n", want: "SG001-open-rule=dryrun"},
		{name: "unknown rule warns", flags: Actions{"SG999": Warn}, want: "SG001-open-rule=deny", warning: `unknown rule "SG999"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := ""
			if tc.file != "" {
				dir = t.TempDir()
				write(t, dir, ActionsFile, tc.file)
			}
			e := newEngine(t, Options{Actions: tc.flags, DefaultAction: tc.def, Dir: dir})
			if got := strings.Join(ids(evaluate(t, e, openIngress)), ","); got != tc.want {
				t.Errorf("findings = %s, want %s", got, tc.want)
			}
			st := e.Status()
			if !st.Healthy {
				t.Fatalf("unhealthy: %s", st.LastError)
			}
			if tc.warning != "" && !strings.Contains(strings.Join(st.Warnings, ";"), tc.warning) {
				t.Errorf("warnings = %v, want one containing %s", st.Warnings, tc.warning)
			}
			for _, r := range st.Rules {
				if r.ID == "SG001-open-rule" && r.ID+"="+string(r.Action) != tc.want {
					t.Errorf("status rule %+v, want %s", r, tc.want)
				}
			}
		})
	}
}

// TestActionCap: a ceiling only weakens (a rule that ships as warn stays warn under
// deny, and is not raised), and an unknown default action is refused at start.
func TestActionCap(t *testing.T) {
	for _, tc := range []struct{ a, ceiling, want Action }{
		{Deny, "", Deny}, {Deny, Deny, Deny}, {Deny, Warn, Warn}, {Deny, DryRun, DryRun},
		{Warn, Deny, Warn}, {Warn, Warn, Warn}, {Warn, DryRun, DryRun},
		{DryRun, Deny, DryRun}, {DryRun, Warn, DryRun},
	} {
		if got := tc.a.Cap(tc.ceiling); got != tc.want {
			t.Errorf("%s capped at %q = %s, want %s", tc.a, tc.ceiling, got, tc.want)
		}
	}
	if _, err := New(context.Background(), Options{DefaultAction: "block"}); err == nil || !strings.Contains(err.Error(), "default hygiene action") {
		t.Fatalf("New with default action %q: %v, want a clear error", "block", err)
	}
}

func TestParseActions(t *testing.T) {
	a, err := ParseActions("SG001=warn, SG007-unmatched-selector=DENY,SG009=dry-run")
	if err != nil {
		t.Fatal(err)
	}
	if a.String() != "SG001=warn,SG007-unmatched-selector=deny,SG009=dryrun" {
		t.Errorf("parsed %s", a)
	}
	for _, bad := range []string{"SG001", "SG001=block", "=warn"} {
		if _, err := ParseActions(bad); err == nil {
			t.Errorf("ParseActions(%q) succeeded", bad)
		}
	}
	if _, err := ParseActionsFile([]byte("SG001: nope")); err == nil {
		t.Error("ParseActionsFile accepted an unknown action")
	}
}

func TestCustomRulesAndOverrides(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		in    ast.Value
		want  string
	}{
		{
			name:  "custom rule added",
			files: map[string]string{"forbidden.rego": customRule, "forbidden_test.rego": customRuleTest},
			in:    labelledForbidden,
			want:  "CUSTOM001-forbidden-label=deny",
		},
		{
			// Same id, other package: the built-in and its tests (which would fail
			// against this rule) are replaced.
			name: "override by id",
			files: map[string]string{"open.rego": `package strictgate.rules.my_open_rule
id := "SG001-open-rule"
action := "warn"
violation contains "SG001-open-rule: our own wording" if count(input.policy.spec.ingress) > 0
`},
			in:   openIngress,
			want: "SG001-open-rule=warn",
		},
		{
			name: "override by package turns a rule off",
			files: map[string]string{"off.rego": `package strictgate.rules.sg001
id := "SG001-open-rule"
violation := set()
`},
			in:   openIngress,
			want: "",
		},
		{
			name: "helpers in their own package",
			files: map[string]string{
				"lib.rego": "package strictgate.lib.team\nbad_label := \"yes\"\n",
				"rule.rego": `package strictgate.rules.team
import data.strictgate.lib.team
id := "TEAM-label"
action := "warn"
violation contains "TEAM-label: label" if input.policy.metadata.labels.forbidden == team.bad_label
`,
			},
			in:   labelledForbidden,
			want: "TEAM-label=warn",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tc.files {
				write(t, dir, name, content)
			}
			e := newEngine(t, Options{Dir: dir})
			if st := e.Status(); !st.Healthy {
				t.Fatalf("custom set rejected: %s", st.LastError)
			}
			if got := strings.Join(ids(evaluate(t, e, tc.in)), ","); got != tc.want {
				t.Errorf("findings = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestBrokenSetKeepsLastGood(t *testing.T) {
	for _, tc := range []struct {
		name, file, content, wantErr string
	}{
		{"syntax error", "broken.rego", "package strictgate.rules.broken\nviolation contains msg if {", "parse broken.rego"},
		{"compile error", "broken.rego", "package strictgate.rules.broken\nviolation contains msg if { msg := undefined_function(1) }", "undefined function"},
		{"failing test", "broken_test.rego", "package strictgate.rules.broken_test\ntest_fails if { 1 == 2 }", "test(s) failed"},
		{"reserved package", "broken.rego", "package strictgate.hygiene\nfindings := set()", "cannot be redefined"},
		{"network builtin", "broken.rego", "package strictgate.rules.broken\nviolation contains x if { x := http.send({\"method\": \"get\", \"url\": \"http://127.0.0.1\"}) }", "unsafe built-in"},
		{"duplicate id", "broken.rego", "package strictgate.rules.dup\nid := \"CUSTOM001-forbidden-label\"\nviolation := set()", "declared by both"},
		{"bad actions file", ActionsFile, "SG001: explode", "unknown action"},
		{"nested rule package", "broken.rego", "package strictgate.rules.team.x\nviolation contains \"x\"", "nested too deep"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, "forbidden.rego", customRule)
			e := newEngine(t, Options{Dir: dir})
			good := e.Status()
			if !good.Healthy {
				t.Fatalf("good set rejected: %s", good.LastError)
			}
			failures := testutil.ToFloat64(rulesetReloads.WithLabelValues("failure"))

			write(t, dir, tc.file, tc.content)
			err := e.Reload(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Reload error = %v, want one containing %q", err, tc.wantErr)
			}
			st := e.Status()
			if st.Healthy || st.Revision != good.Revision || !strings.Contains(st.LastError, tc.wantErr) {
				t.Errorf("status after broken reload = %+v, want unhealthy, revision %s kept", st, good.Revision)
			}
			if testutil.ToFloat64(rulesetHealthy) != 0 {
				t.Error("strictgate_hygiene_ruleset_healthy is not 0")
			}
			if got := testutil.ToFloat64(rulesetReloads.WithLabelValues("failure")); got != failures+1 {
				t.Errorf("reload failures %v -> %v, want +1", failures, got)
			}
			if got := strings.Join(ids(evaluate(t, e, labelledForbidden)), ","); got != "CUSTOM001-forbidden-label=deny" {
				t.Errorf("last good set not in force: findings %q", got)
			}

			// Fixing the directory restores health.
			if err := os.Remove(filepath.Join(dir, tc.file)); err != nil {
				t.Fatal(err)
			}
			if tc.file == "forbidden.rego" {
				write(t, dir, "forbidden.rego", customRule)
			}
			if err := e.Reload(context.Background()); err != nil {
				t.Fatalf("Reload after fix: %v", err)
			}
			if !e.Status().Healthy || testutil.ToFloat64(rulesetHealthy) != 1 {
				t.Error("not healthy after the broken file was removed")
			}
		})
	}
}

func TestBrokenSetAtStartUsesBuiltins(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "broken.rego", "package strictgate.rules.x\nviolation contains if {")
	e := newEngine(t, Options{Dir: dir})
	if e.Status().Healthy {
		t.Fatal("healthy with a broken custom set")
	}
	if got := strings.Join(ids(evaluate(t, e, openIngress)), ","); got != "SG001-open-rule=deny" {
		t.Errorf("built-ins not in force: %q", got)
	}
}

// waitFor polls cond for up to 10s.
func waitFor(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < 10*time.Second {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within 10s", what)
	return 0
}

func TestHotReload(t *testing.T) {
	dir := t.TempDir()
	e := newEngine(t, Options{Dir: dir, PollInterval: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.Start(ctx) }()
	defer func() { cancel(); <-done }()

	if len(evaluate(t, e, labelledForbidden)) != 0 {
		t.Fatal("custom rule in force before it was written")
	}
	write(t, dir, "forbidden.rego", customRule)
	took := waitFor(t, "custom rule enforced", func() bool { return len(evaluate(t, e, labelledForbidden)) == 1 })
	t.Logf("custom rule in force after %v", took)

	write(t, dir, "broken.rego", "package strictgate.rules.broken\nviolation contains {")
	waitFor(t, "broken set reported", func() bool { return !e.Status().Healthy })
	if len(evaluate(t, e, labelledForbidden)) != 1 {
		t.Fatal("broken file dropped the last good set")
	}
}

// TestConfigMapSymlinkSwap mimics the kubelet's atomic writer: files are symlinks
// into ..data, which is swapped to a new timestamped directory on update.
func TestConfigMapSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	gen := func(name, content string) {
		d := filepath.Join(dir, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, d, "forbidden.rego", content)
	}
	gen("..2026_11_22_v1", "package strictgate.rules.forbidden_label\nid := \"CUSTOM001-forbidden-label\"\nviolation := set()\n")
	if err := os.Symlink("..2026_11_22_v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/forbidden.rego", filepath.Join(dir, "forbidden.rego")); err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, Options{Dir: dir})
	if !e.Status().Healthy || len(evaluate(t, e, labelledForbidden)) != 0 {
		t.Fatalf("first generation: healthy=%v", e.Status().Healthy)
	}
	rev := e.Status().Revision

	gen("..2026_11_22_v2", customRule)
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink("..2026_11_22_v2", tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := e.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.Status().Revision == rev || len(evaluate(t, e, labelledForbidden)) != 1 {
		t.Fatal("second generation not loaded after the ..data swap")
	}
}

func TestMissingDirectoryIsUnhealthyNotFatal(t *testing.T) {
	e := newEngine(t, Options{Dir: filepath.Join(t.TempDir(), "absent")})
	if e.Status().Healthy || !strings.Contains(e.Status().LastError, "read custom rules directory") {
		t.Fatalf("status %+v", e.Status())
	}
	if len(evaluate(t, e, openIngress)) != 1 {
		t.Fatal("built-ins not in force")
	}
}

// TestReadmeExample loads the worked example of policies/README.md (kept verbatim in
// testdata/readme-example) as a custom rules directory.
func TestReadmeExample(t *testing.T) {
	e := newEngine(t, Options{Dir: "testdata/readme-example"})
	if st := e.Status(); !st.Healthy {
		t.Fatalf("README example rejected: %s", st.LastError)
	}
	fs := evaluate(t, e, ast.MustParseTerm(`{"request": {"operation": "CREATE", "namespace": "shop", "name": "web"},
		"policy": {"metadata": {"name": "web", "namespace": "shop"}, "spec": {"podSelector": {}}}}`).Value)
	if len(fs) != 1 || fs[0].ID != "ACME001-owner-label" || fs[0].Action != Warn ||
		fs[0].Message != "ACME001-owner-label: NetworkPolicy shop/web has no owner label; add metadata.labels.owner: <team>" {
		t.Fatalf("findings %+v", fs)
	}
}

func TestStatus(t *testing.T) {
	dir := t.TempDir()
	e := newEngine(t, Options{Dir: dir})
	if st := e.Status(); !st.Healthy || len(st.Rules) != 14 {
		t.Fatalf("healthy status: %+v", st)
	}
	write(t, dir, "x.rego", "package strictgate.rules.x\nviolation contains {")
	_ = e.Reload(context.Background())
	if st := e.Status(); st.Healthy || !strings.Contains(st.LastError, "x.rego") {
		t.Fatalf("broken status: %+v", st)
	}
}

// TestEvaluateDuringReloads runs requests while rule sets are swapped (go test -race
// checks the hand-over); every evaluation sees one whole generation.
func TestEvaluateDuringReloads(t *testing.T) {
	dir := t.TempDir()
	e := newEngine(t, Options{Dir: dir})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			for ctx.Err() == nil {
				fs, err := e.Evaluate(ctx, labelledForbidden)
				if err != nil && ctx.Err() == nil {
					errs <- err
					return
				}
				if len(fs) > 1 {
					errs <- fmt.Errorf("findings from two generations: %v", fs)
					return
				}
			}
			errs <- nil
		}()
	}
	for i := range 6 {
		if i%2 == 0 {
			write(t, dir, "forbidden.rego", customRule)
		} else {
			write(t, dir, "forbidden.rego", strings.Replace(customRule, "remove the forbidden label", fmt.Sprintf("generation %d", i), 1))
		}
		if err := e.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestHelperOutsideRulesWarns(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "helper.rego", "package acme.helpers\nviolation contains \"never evaluated\"")
	e := newEngine(t, Options{Dir: dir})
	st := e.Status()
	if !st.Healthy || !strings.Contains(strings.Join(st.Warnings, ";"), "helper.rego: package data.acme.helpers is not under strictgate.rules") {
		t.Fatalf("status %+v", st)
	}
}

// TestJudgedByAPIServer: built-ins the chart's CEL policies judge are not evaluated (a
// rule judged once), stay listed in Status with their action, take action overrides
// without an "unknown rule" warning; a custom rule replacing one is evaluated; an id
// that is no built-in is refused.
func TestJudgedByAPIServer(t *testing.T) {
	openAllNamespaces := ast.MustParseTerm(`{
		"request": {"operation": "CREATE", "namespace": "app", "name": "p"},
		"policy": {"metadata": {"name": "p", "namespace": "app"}, "spec": {"podSelector": {}, "ingress": [{}, {"from": [{"namespaceSelector": {}}]}]}}
	}`).Value
	for _, tc := range []struct {
		name    string
		skip    []string
		actions Actions
		custom  map[string]string
		want    string
	}{
		{name: "none skipped", want: "SG001-open-rule=deny,SG003-all-namespaces=deny"},
		{name: "SG001 skipped", skip: []string{"SG001-open-rule"}, want: "SG003-all-namespaces=deny"},
		{name: "both skipped, overrides known", skip: []string{"SG001-open-rule", "SG003-all-namespaces"}, actions: Actions{"SG001": Warn}, want: ""},
		{name: "custom replacement still judged", skip: []string{"SG001-open-rule"}, custom: map[string]string{
			"open.rego": "package strictgate.rules.sg001\n\nid := \"SG001-open-rule\"\n\naction := \"warn\"\n\nviolation contains \"SG001-open-rule: custom\" if input.policy.spec.ingress\n",
		}, want: "SG001-open-rule=warn,SG003-all-namespaces=deny"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{JudgedByAPIServer: tc.skip, Actions: tc.actions}
			if tc.custom != nil {
				opts.Dir = t.TempDir()
				for n, c := range tc.custom {
					write(t, opts.Dir, n, c)
				}
			}
			e := newEngine(t, opts)
			if got := strings.Join(ids(evaluate(t, e, openAllNamespaces)), ","); got != tc.want {
				t.Fatalf("findings %q, want %q", got, tc.want)
			}
			st := e.Status()
			if !st.Healthy || len(st.Warnings) != 0 {
				t.Fatalf("status healthy=%v warnings=%v error=%q", st.Healthy, st.Warnings, st.LastError)
			}
			for _, id := range tc.skip {
				var info *RuleInfo
				for i := range st.Rules {
					if st.Rules[i].ID == id {
						info = &st.Rules[i]
					}
				}
				replaced := tc.custom != nil
				switch {
				case info == nil:
					t.Fatalf("%s missing from Status.Rules", id)
				case replaced && info.Source == SourceCEL:
					t.Fatalf("%s: a custom replacement is listed as judged by the API server", id)
				case !replaced && info.Source != SourceCEL:
					t.Fatalf("%s: source %q, want %q", id, info.Source, SourceCEL)
				case !replaced && tc.actions != nil && id == "SG001-open-rule" && info.Action != Warn:
					t.Fatalf("%s: action %q, want the override warn", id, info.Action)
				}
			}
		})
	}
	if _, err := New(context.Background(), Options{JudgedByAPIServer: []string{"SG999-nope"}, Log: logr.Discard()}); err == nil || !strings.Contains(err.Error(), `"SG999-nope"`) {
		t.Fatalf("unknown id: err %v, want it named", err)
	}
}
