package webhook

import (
	"github.com/open-policy-agent/opa/v1/ast"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// ClusterNetworkPolicyHygieneInput is the hygiene input the ClusterNetworkPolicy
// validator builds for req's object, without cluster facts (so SG014 is quiet): what
// the stateless rules see. The chart's differential test (charts/hygienecel_test.go)
// feeds it to the Rego built-ins to compare them with their CEL twins.
func ClusterNetworkPolicyHygieneInput(req admission.Request) (ast.Value, error) {
	return cnpInput(req, req.Object.Raw, nil)
}
