package hygiene

import (
	"context"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// benchInput is a typical application policy without cluster facts.
var benchInput = ast.MustParseTerm(`{"request":{"operation":"CREATE","namespace":"shop","name":"web"},"policy":{"metadata":{"name":"web","namespace":"shop"},"spec":{"podSelector":{"matchLabels":{"app":"web"}},"policyTypes":["Ingress","Egress"],
"ingress":[{"from":[{"podSelector":{"matchLabels":{"app":"app1"}}},{"namespaceSelector":{"matchLabels":{"a":"b"}},"podSelector":{"matchLabels":{"app":"nginx"}}}],"ports":[{"protocol":"TCP","port":8080}]}],
"egress":[{"to":[{"podSelector":{"matchLabels":{"app":"app2"}}}],"ports":[{"protocol":"TCP","port":"http"}]},{"to":[{"ipBlock":{"cidr":"10.20.0.0/16","except":["10.20.1.0/24"]}}],"ports":[{"protocol":"TCP","port":443}]}]}}}`).Value

// BenchmarkEvaluate is the Rego part of a request alone: all built-in rules, prepared query.
func BenchmarkEvaluate(b *testing.B) {
	e, err := New(context.Background(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Evaluate(context.Background(), benchInput); err != nil {
			b.Fatal(err)
		}
	}
}
