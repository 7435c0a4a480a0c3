package policies_test

import (
	"context"
	"io/fs"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/tester"

	"github.com/strictgate/strictgate/policies"
)

// TestRego runs every *_test.rego of the embedded rule set through OPA's tester, so
// that `go test ./policies/` fails on any failing or erroring Rego test.
func TestRego(t *testing.T) {
	modules := map[string]*ast.Module{}
	err := fs.WalkDir(policies.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		src, err := fs.ReadFile(policies.FS, path)
		if err != nil {
			return err
		}
		m, err := ast.ParseModuleWithOpts(path, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return err
		}
		modules[path] = m
		return nil
	})
	if err != nil {
		t.Fatalf("load embedded policies: %v", err)
	}
	ch, err := tester.NewRunner().SetModules(modules).RaiseBuiltinErrors(true).RunTests(context.Background(), nil)
	if err != nil {
		t.Fatalf("compile embedded policies: %v", err)
	}
	n := 0
	for r := range ch {
		n++
		name := r.Package + "." + r.Name
		switch {
		case r.Error != nil:
			t.Errorf("%s: error: %v", name, r.Error)
		case r.Fail:
			t.Errorf("%s: FAIL at %v", name, r.FailedAt)
		case r.Skip:
			t.Errorf("%s: skipped (todo_ tests are not allowed)", name)
		}
	}
	if n == 0 {
		t.Fatal("no Rego tests found in policies.FS")
	}
	t.Logf("%d Rego tests", n)
}
