// Package hygiene evaluates strictgate's NetworkPolicy hygiene rules: the built-in
// Rego of policies/ plus the user's rules from a watched directory. A rule set is
// parsed, its Rego tests are run and it is compiled into one prepared query before
// it replaces the one in force; a set that fails any step leaves the last good one
// in force. Evaluation never compiles: every request reuses the prepared query.
package hygiene

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/tester"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/strictgate/strictgate/policies"
)

// FindingsQuery is the one query the engine prepares (policies/engine.rego).
const FindingsQuery = "data.strictgate.hygiene.findings"

// ActionsFile is the optional file in the custom rules directory that overrides rule
// actions (see ParseActionsFile). actions.yml and actions.json are accepted too.
const ActionsFile = "actions.yaml"

// SourceCEL is the RuleInfo.Source of a built-in rule the API server judges instead
// (Options.JudgedByAPIServer).
const SourceCEL = "apiserver-cel"

// DefaultPollInterval is how often the custom rules directory is checked.
const DefaultPollInterval = time.Second

// unsafeBuiltins are refused in every rule: a hygiene rule judges the request and the
// cluster facts it is given, it never reaches the network or the host.
var unsafeBuiltins = map[string]struct{}{
	"http.send":          {},
	"net.lookup_ip_addr": {},
	"opa.runtime":        {},
}

var rulesRef = ast.MustParseRef("data.strictgate.rules")

// libRef is where helper packages belong (data.strictgate.lib and below).
var libRef = ast.MustParseRef("data.strictgate.lib")

// reservedRef is the engine's own package; user modules may not redefine it.
var reservedRef = ast.MustParseRef("data.strictgate.hygiene")

// Options configure an Engine.
type Options struct {
	// Builtins holds the built-in modules; nil means policies.FS.
	Builtins fs.FS
	// Dir is the custom rules directory (a mounted ConfigMap); empty disables it.
	// *.rego files there are added to the built-ins; a rule package with the id (or
	// the package path) of a built-in replaces it together with its tests.
	Dir string
	// Actions override rule actions by id (the --hygiene-action flag). The
	// actions.yaml file of Dir, when present, overrides these in turn.
	Actions Actions
	// DefaultAction is the strongest action a rule takes unless Actions (or
	// actions.yaml) names it (the --hygiene-default-action flag): "" or Deny keeps
	// every rule's own action, Warn turns denials into warnings, DryRun makes every
	// rule only log and count — so an adopter starts in warn with one value.
	DefaultAction Action
	// JudgedByAPIServer are ids of built-in rules the API server judges itself (the
	// chart's CEL ValidatingAdmissionPolicies, webhook.hygiene.cel): the engine does not
	// evaluate them, so a rule is judged once. They stay in Status (Source SourceCEL) and
	// count as known for Actions. A custom rule replacing one of them is evaluated: only
	// the built-in has a CEL twin.
	JudgedByAPIServer []string
	// PollInterval is how often Start checks Dir; 0 means DefaultPollInterval.
	PollInterval time.Duration
	// TestTimeout bounds the Rego tests of one reload; 0 means 30s.
	TestTimeout time.Duration
	// Log receives reload results; the zero value uses controller-runtime's logger.
	Log logr.Logger
}

// Finding is one rule violation found in a request.
type Finding struct {
	// ID is the rule's stable id, e.g. "SG001-open-rule".
	ID string
	// Action is what to do with it, after configuration overrides.
	Action Action
	// Message says what is wrong and how to fix it.
	Message string
}

// RuleInfo describes a rule of the set in force.
type RuleInfo struct {
	ID string `json:"id"`
	// Package is the Rego package path, e.g. "data.strictgate.rules.sg001".
	Package string `json:"package"`
	// Action is the effective action (rule default, then flags, then actions.yaml).
	Action Action `json:"action"`
	// Source is "builtin", SourceCEL or the file name in the custom rules directory.
	Source string `json:"source"`
}

// Status is the engine's state, for the webhook's readiness/status output.
type Status struct {
	// Healthy is false when the newest rules on disk failed to load; the last good
	// set (at worst the built-ins alone) stays in force.
	Healthy bool `json:"healthy"`
	// Revision is a digest of the sources in force.
	Revision string `json:"revision"`
	// LoadedAt is when the set in force was loaded.
	LoadedAt time.Time `json:"loadedAt"`
	// LastAttempt and LastError describe the newest load attempt.
	LastAttempt time.Time `json:"lastAttempt"`
	LastError   string    `json:"lastError,omitempty"`
	// Rules lists the rules in force, sorted by id.
	Rules []RuleInfo `json:"rules"`
	// Warnings are non-fatal configuration problems, e.g. an action for an unknown rule.
	Warnings []string `json:"warnings,omitempty"`
}

// ruleSet is one compiled, tested generation of rules. It is immutable once built, so
// requests read it without locks.
type ruleSet struct {
	query    rego.PreparedEvalQuery
	actions  Actions
	ceiling  Action // Options.DefaultAction
	rules    []RuleInfo
	warnings []string
	revision string
	loadedAt time.Time
}

// Engine holds the rule set in force and replaces it when the custom directory changes.
type Engine struct {
	opts     Options
	log      logr.Logger
	builtins map[string][]byte

	current atomic.Pointer[ruleSet]

	mu          sync.Mutex // serialises reloads and guards the fields below
	lastDigest  string     // digest of the last directory snapshot attempted
	lastAttempt time.Time
	lastErr     error
}

// New loads the built-in rules and, when opts.Dir is set, the custom ones. A broken
// custom set at start-up is not fatal: the built-ins alone go into force and Status
// reports the error (the same as a broken set later). New fails only when the
// built-ins themselves cannot be loaded.
func New(ctx context.Context, opts Options) (*Engine, error) {
	if opts.Builtins == nil {
		opts.Builtins = policies.FS
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.TestTimeout <= 0 {
		opts.TestTimeout = 30 * time.Second
	}
	if opts.DefaultAction != "" {
		if _, err := ParseAction(string(opts.DefaultAction)); err != nil {
			return nil, fmt.Errorf("default hygiene action: %w", err)
		}
	}
	e := &Engine{opts: opts, log: opts.Log}
	if e.log.GetSink() == nil {
		e.log = ctrl.Log.WithName("hygiene")
	}
	builtins, err := readBuiltins(opts.Builtins)
	if err != nil {
		return nil, err
	}
	e.builtins = builtins

	base, err := e.build(ctx, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("load built-in hygiene rules: %w", err)
	}
	e.install(base)
	if opts.Dir == "" {
		rulesetHealthy.Set(1)
		return e, nil
	}
	_ = e.Reload(ctx) // a broken custom set is reported through Status and metrics
	return e, nil
}

// Evaluate runs the prepared query on input (see BuildInput) and returns the findings
// with their configured actions, sorted by rule id then message.
func (e *Engine) Evaluate(ctx context.Context, input ast.Value) ([]Finding, error) {
	rs := e.current.Load()
	res, err := rs.query.Eval(ctx, rego.EvalParsedInput(input))
	if err != nil {
		return nil, fmt.Errorf("evaluate hygiene rules: %w", err)
	}
	if len(res) == 0 || len(res[0].Expressions) == 0 {
		return nil, nil
	}
	items, ok := res[0].Expressions[0].Value.([]any)
	if !ok {
		return nil, fmt.Errorf("evaluate hygiene rules: %s is %T, want a set", FindingsQuery, res[0].Expressions[0].Value)
	}
	out := make([]Finding, 0, len(items))
	for _, it := range items {
		m, _ := it.(map[string]any)
		id, _ := m["id"].(string)
		msg, _ := m["msg"].(string)
		act, _ := m["action"].(string)
		f := Finding{ID: id, Message: msg, Action: Action(act).Cap(rs.ceiling)}
		if over, ok := rs.actions.lookup(id); ok {
			f.Action = over
		}
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ID != out[j].ID {
			return out[i].ID < out[j].ID
		}
		return out[i].Message < out[j].Message
	})
	return out, nil
}

// Status reports the rule set in force and the newest load attempt.
func (e *Engine) Status() Status {
	rs := e.current.Load()
	e.mu.Lock()
	defer e.mu.Unlock()
	st := Status{
		Healthy:     e.lastErr == nil,
		Revision:    rs.revision,
		LoadedAt:    rs.loadedAt,
		LastAttempt: e.lastAttempt,
		Rules:       slices.Clone(rs.rules),
		Warnings:    slices.Clone(rs.warnings),
	}
	if e.lastErr != nil {
		st.LastError = e.lastErr.Error()
	}
	return st
}

// Reload loads the custom directory if it changed since the last attempt. On failure
// the set in force is kept and the error is returned, logged and counted.
func (e *Engine) Reload(ctx context.Context) error {
	if e.opts.Dir == "" {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()

	files, actionsData, digest, err := snapshot(e.opts.Dir)
	if err == nil && digest == e.lastDigest {
		return e.lastErr
	}
	e.lastAttempt = time.Now()
	var rs *ruleSet
	if err == nil {
		e.lastDigest = digest
		rs, err = e.build(ctx, files, actionsData)
	} else {
		// Unreadable now, but try again next time even if the digest repeats.
		e.lastDigest = ""
	}
	if err != nil {
		repeated := e.lastErr != nil && e.lastErr.Error() == err.Error()
		e.lastErr = err
		rulesetHealthy.Set(0)
		if repeated {
			return err // an unreadable directory is retried every poll; say so once
		}
		rulesetReloads.WithLabelValues("failure").Inc()
		e.log.Error(err, "custom hygiene rules rejected; keeping the rule set in force", "dir", e.opts.Dir, "revision", e.current.Load().revision)
		return err
	}
	e.lastErr = nil
	e.install(rs)
	rulesetHealthy.Set(1)
	rulesetReloads.WithLabelValues("success").Inc()
	e.log.Info("hygiene rule set loaded", "dir", e.opts.Dir, "revision", rs.revision, "rules", len(rs.rules), "warnings", rs.warnings)
	return nil
}

// Start polls the custom directory until ctx ends (manager.Runnable). Polling, rather
// than inotify, sees ConfigMap updates reliably: the kubelet swaps the ..data symlink,
// and a digest of the files read through it changes exactly when the content does.
func (e *Engine) Start(ctx context.Context) error {
	if e.opts.Dir == "" {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(e.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			_ = e.Reload(ctx)
		}
	}
}

// NeedLeaderElection is false: every replica serves admission and needs the rules.
func (e *Engine) NeedLeaderElection() bool { return false }

func (e *Engine) install(rs *ruleSet) {
	e.current.Store(rs)
	rulesetRules.Set(float64(len(rs.rules)))
	rulesetLoaded.Set(float64(rs.loadedAt.Unix()))
}

func readBuiltins(fsys fs.FS) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".rego") {
			return err
		}
		b, err := fs.ReadFile(fsys, path)
		if err != nil {
			return err
		}
		out[path] = b
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read built-in hygiene rules: %w", err)
	}
	return out, nil
}

// snapshot reads the custom directory's *.rego files and actions file. A ConfigMap
// volume holds symlinks into ..data, itself a symlink to a timestamped directory the
// kubelet swaps atomically; reading through the resolved ..data gives one consistent
// generation even while an update lands.
func snapshot(dir string) (rego map[string][]byte, actions []byte, digest string, err error) {
	base := dir
	if resolved, err := filepath.EvalSymlinks(filepath.Join(dir, "..data")); err == nil {
		base = resolved
	}
	entries, err := os.ReadDir(base)
	if err != nil {
		return nil, nil, "", fmt.Errorf("read custom rules directory: %w", err)
	}
	h := sha256.New()
	rego = map[string][]byte{}
	for _, ent := range entries {
		name := ent.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		isRego := strings.HasSuffix(name, ".rego")
		isActions := name == ActionsFile || name == "actions.yml" || name == "actions.json"
		if !isRego && !isActions {
			continue
		}
		path := filepath.Join(base, name)
		fi, err := os.Stat(path) // follows symlinks
		if err != nil {
			return nil, nil, "", fmt.Errorf("read custom rule %s: %w", name, err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, "", fmt.Errorf("read custom rule %s: %w", name, err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(b))
		h.Write(b)
		if isRego {
			rego[name] = b
		} else {
			if actions != nil {
				return nil, nil, "", fmt.Errorf("custom rules directory has more than one actions file; keep only %s", ActionsFile)
			}
			actions = b
		}
	}
	return rego, actions, hex.EncodeToString(h.Sum(nil))[:16], nil
}

// module is a parsed source with what the engine needs to know about it.
type module struct {
	file    string // "builtin/<path>" or "custom/<name>"
	source  string // "builtin" or the custom file name
	mod     *ast.Module
	test    bool
	pkg     string // package path, e.g. data.strictgate.rules.sg001
	ruleID  string // constant `id`, for rule packages
	action  string // constant `action`, for rule packages
	isRule  bool   // package directly under data.strictgate.rules
	content []byte
}

func parse(file, source string, content []byte) (*module, error) {
	m, err := ast.ParseModuleWithOpts(file, string(content), ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, fmt.Errorf("%s: empty module, want a package declaration", file)
	}
	out := &module{file: file, source: source, mod: m, content: content, pkg: m.Package.Path.String()}
	out.test = strings.HasSuffix(file, "_test.rego") || strings.HasSuffix(out.pkg, "_test")
	path := m.Package.Path
	if len(path) == len(rulesRef)+1 && path.HasPrefix(rulesRef) {
		out.isRule = !out.test
		out.ruleID = constString(m, "id")
		out.action = constString(m, "action")
		if out.ruleID == "" {
			if s, ok := path[len(path)-1].Value.(ast.String); ok {
				out.ruleID = string(s)
			}
		}
	}
	return out, nil
}

// constString returns the value of `name := "..."` in m, or "".
func constString(m *ast.Module, name string) string {
	for _, r := range m.Rules {
		if r.Head == nil || r.Head.Value == nil || !r.Head.Name.Equal(ast.Var(name)) || len(r.Head.Args) > 0 {
			continue
		}
		if s, ok := r.Head.Value.Value.(ast.String); ok {
			return string(s)
		}
	}
	return ""
}

func newCompiler() *ast.Compiler {
	//lint:ignore SA1019 WithCapabilities would drop these builtins, so a rule calling one would fail as an unknown function instead of with the "unsafe built-in" error an author can act on (engine_test "network builtin").
	return ast.NewCompiler().
		WithDefaultRegoVersion(ast.RegoV1).
		WithUnsafeBuiltins(unsafeBuiltins)
}

// build parses, overrides, tests and compiles one generation of rules.
func (e *Engine) build(ctx context.Context, custom map[string][]byte, actionsData []byte) (*ruleSet, error) {
	var mods []*module
	for _, path := range sortedKeys(e.builtins) {
		m, err := parse("builtin/"+path, "builtin", e.builtins[path])
		if err != nil {
			return nil, fmt.Errorf("parse built-in %s: %w", path, err)
		}
		mods = append(mods, m)
	}
	var errs []error
	var user []*module
	for _, name := range sortedKeys(custom) {
		m, err := parse("custom/"+name, name, custom[name])
		if err != nil {
			errs = append(errs, fmt.Errorf("parse %s: %w", name, err))
			continue
		}
		if m.mod.Package.Path.HasPrefix(reservedRef) {
			errs = append(errs, fmt.Errorf("%s: package %s is strictgate's engine and cannot be redefined; put rules under package strictgate.rules.<name>", name, m.pkg))
			continue
		}
		if !m.test && len(m.mod.Package.Path) > len(rulesRef)+1 && m.mod.Package.Path.HasPrefix(rulesRef) {
			errs = append(errs, fmt.Errorf("%s: package %s is nested too deep and would never be evaluated; rule packages are strictgate.rules.<name>", name, m.pkg))
			continue
		}
		user = append(user, m)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	// A custom rule package replaces the built-in with the same id or package path,
	// and the built-in's tests go with it (they test the replaced rule).
	overriddenIDs, overriddenPkgs := map[string]bool{}, map[string]bool{}
	for _, m := range user {
		if m.isRule {
			overriddenIDs[m.ruleID] = true
			overriddenPkgs[m.pkg] = true
		}
	}
	dropped := map[string]bool{}
	for _, m := range mods {
		if m.isRule && (overriddenIDs[m.ruleID] || overriddenPkgs[m.pkg]) {
			dropped[m.pkg] = true
			dropped[m.pkg+"_test"] = true
		}
	}
	// Built-ins the API server judges go too, with their tests; they stay listed.
	var rules []RuleInfo
	for _, m := range mods {
		if m.isRule && !dropped[m.pkg] && slices.Contains(e.opts.JudgedByAPIServer, m.ruleID) {
			dropped[m.pkg] = true
			dropped[m.pkg+"_test"] = true
			rules = append(rules, RuleInfo{ID: m.ruleID, Package: m.pkg, Action: ruleAction(m.action), Source: SourceCEL})
		}
	}
	for _, id := range e.opts.JudgedByAPIServer {
		// A typo would leave the rule judged twice or, worse, hide that the chart and
		// the webhook disagree on which rules have a CEL twin.
		if !slices.ContainsFunc(mods, func(m *module) bool { return m.isRule && m.ruleID == id }) {
			return nil, fmt.Errorf("rule %q judged by the API server is not a built-in rule", id)
		}
	}
	all := make([]*module, 0, len(mods)+len(user))
	for _, m := range mods {
		if !dropped[m.pkg] {
			all = append(all, m)
		}
	}
	all = append(all, user...)

	if err := e.runTests(ctx, all); err != nil {
		return nil, err
	}

	runtime := map[string]*ast.Module{}
	h := sha256.New()
	seenIDs := map[string]string{}
	for _, m := range all {
		fmt.Fprintf(h, "%s\x00%d\x00", m.file, len(m.content))
		h.Write(m.content)
		if m.test {
			continue
		}
		runtime[m.file] = m.mod
		if !m.isRule {
			continue
		}
		if other, dup := seenIDs[m.ruleID]; dup && other != m.pkg {
			return nil, fmt.Errorf("rule id %q is declared by both %s and %s; ids must be unique", m.ruleID, other, m.pkg)
		}
		if _, dup := seenIDs[m.ruleID]; dup {
			continue // a package split over several files
		}
		seenIDs[m.ruleID] = m.pkg
		rules = append(rules, RuleInfo{ID: m.ruleID, Package: m.pkg, Action: ruleAction(m.action), Source: m.source})
	}

	compiler := newCompiler()
	if compiler.Compile(runtime); compiler.Failed() {
		return nil, fmt.Errorf("compile hygiene rules: %w", compiler.Errors)
	}
	pq, err := rego.New(
		rego.Query(FindingsQuery),
		rego.Compiler(compiler),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("prepare hygiene query: %w", err)
	}

	actions := e.opts.Actions.merge(nil)
	if actionsData != nil {
		fileActions, err := ParseActionsFile(actionsData)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ActionsFile, err)
		}
		actions = actions.merge(fileActions)
		h.Write(actionsData)
	}
	var warnings []string
	for _, m := range user {
		if !m.test && !m.isRule && !m.mod.Package.Path.HasPrefix(libRef) {
			warnings = append(warnings, fmt.Sprintf("%s: package %s is not under strictgate.rules, so it is only a helper; rules there are never evaluated", m.source, m.pkg))
		}
	}
	for key := range actions {
		if !slices.ContainsFunc(rules, func(r RuleInfo) bool {
			_, ok := (Actions{key: Deny}).lookup(r.ID)
			return ok
		}) {
			warnings = append(warnings, fmt.Sprintf("action configured for unknown rule %q", key))
		}
	}
	sort.Strings(warnings)
	for i := range rules {
		rules[i].Action = rules[i].Action.Cap(e.opts.DefaultAction)
		if act, ok := actions.lookup(rules[i].ID); ok {
			rules[i].Action = act
		}
	}
	sort.Slice(rules, func(i, j int) bool { return rules[i].ID < rules[j].ID })
	return &ruleSet{
		query:    pq,
		actions:  actions,
		ceiling:  e.opts.DefaultAction,
		rules:    rules,
		warnings: warnings,
		revision: hex.EncodeToString(h.Sum(nil))[:16],
		loadedAt: time.Now(),
	}, nil
}

// runTests runs every test_ rule of the set with OPA's tester; any failure or error
// rejects the set.
func (e *Engine) runTests(ctx context.Context, all []*module) error {
	modules := make(map[string]*ast.Module, len(all))
	for _, m := range all {
		// The tester compiles in place; give it copies so the runtime compile starts clean.
		modules[m.file] = m.mod.Copy()
	}
	ctx, cancel := context.WithTimeout(ctx, e.opts.TestTimeout)
	defer cancel()
	ch, err := tester.NewRunner().
		SetCompiler(newCompiler()).
		SetModules(modules).
		SetTimeout(e.opts.TestTimeout).
		RunTests(ctx, nil)
	if err != nil {
		return fmt.Errorf("compile hygiene rules with their tests: %w", err)
	}
	var failed []string
	for r := range ch {
		switch {
		case r.Error != nil:
			failed = append(failed, fmt.Sprintf("%s.%s: error: %v", r.Package, r.Name, r.Error))
		case r.Fail:
			failed = append(failed, fmt.Sprintf("%s.%s (%s): failed", r.Package, r.Name, r.Location))
		}
	}
	if len(failed) > 0 {
		sort.Strings(failed)
		return fmt.Errorf("%d hygiene rule test(s) failed: %s", len(failed), strings.Join(failed, "; "))
	}
	return nil
}

// ruleAction is a rule's declared action, deny when absent or unknown.
func ruleAction(declared string) Action {
	if _, err := ParseAction(declared); err != nil {
		return Deny
	}
	return Action(declared)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
