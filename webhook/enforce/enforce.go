// Package enforce decides whether strictgate enforces a namespace. It is pure: the
// mutating webhook, the namespace validator, the default-deny controller and the agent
// all ask the same question and must get the same answer, so the answer lives here once.
package enforce

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
)

const (
	// Label is the per-namespace opt-out label (DESIGN.md).
	Label = "strictgate.dev/enforce"
	// Disabled is the only value of Label that switches enforcement off.
	Disabled = "disabled"
)

// AlwaysExcluded are namespaces that are never enforced whatever the configuration:
// the control plane's own namespaces must keep working when strictgate is broken.
var AlwaysExcluded = []string{"kube-system", "kube-public", "kube-node-lease"}

// Scope says which namespaces are not enforced besides AlwaysExcluded and the opt-out
// label. The zero value excludes only AlwaysExcluded.
type Scope struct {
	// OwnNamespace is strictgate's own namespace; its webhook and agent pods must start
	// without waiting for themselves.
	OwnNamespace string
	// Excluded is the configured list of further namespaces.
	Excluded []string
}

// ExcludedByName reports whether name is excluded whatever its labels say.
func (s Scope) ExcludedByName(name string) bool {
	if name == "" {
		return false
	}
	return slices.Contains(AlwaysExcluded, name) || name == s.OwnNamespace || slices.Contains(s.Excluded, name)
}

// Enforced reports whether pods in ns get the readiness gate and ns gets the generated
// default-deny policies. A nil namespace is not enforced: callers that cannot find the
// namespace must decide themselves whether that is an error (the pod mutator fails
// closed instead of calling this with nil).
func (s Scope) Enforced(ns *corev1.Namespace) bool {
	if ns == nil || s.ExcludedByName(ns.Name) {
		return false
	}
	// A namespace being deleted gets no new generated objects: creating them would only
	// fight the namespace controller.
	if ns.DeletionTimestamp != nil {
		return false
	}
	return !OptedOut(ns.Labels)
}

// OptedOut reports whether labels carry the opt-out label with its one meaningful value.
func OptedOut(labels map[string]string) bool {
	return labels[Label] == Disabled
}
