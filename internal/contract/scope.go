package contract

// Which namespaces strictgate enforces. The mutating webhook, the namespace validator,
// the default-deny controller and the agent all ask the same question and must get the
// same answer, so the answer lives here once (docs/design.md, "Which namespaces are
// enforced").

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

const (
	// EnforceLabel is the per-namespace opt-out label (docs/design.md).
	EnforceLabel = "strictgate.dev/enforce"
	// EnforceDisabled is the only value of EnforceLabel that switches enforcement off.
	EnforceDisabled = "disabled"
)

// AlwaysExcluded are namespaces that are never enforced whatever the configuration:
// the control plane's own namespaces must keep working when strictgate is broken.
var AlwaysExcluded = []string{"kube-system", "kube-public", "kube-node-lease"}

// Scope says which namespaces are enforced: those Selector matches, minus
// AlwaysExcluded, OwnNamespace, Excluded and those carrying the opt-out label. The zero
// value enforces every namespace but AlwaysExcluded.
type Scope struct {
	// OwnNamespace is strictgate's own namespace; its webhook and agent pods must start
	// without waiting for themselves.
	OwnNamespace string
	// Excluded is the configured list of further namespaces.
	Excluded []string
	// Selector, when set, limits enforcement to the namespaces whose labels it matches
	// (chart value enforcement.namespaceSelector); nil matches every namespace.
	Selector labels.Selector
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
	if s.Selector != nil && !s.Selector.Matches(labels.Set(ns.Labels)) {
		return false
	}
	return !OptedOut(ns.Labels)
}

// ParseNamespaceSelector parses a namespace selector as the --namespace-selector flags of the
// webhook and the agent take it: a metav1.LabelSelector in JSON (what the chart passes:
// {"matchLabels":{...},"matchExpressions":[...]}) or the label-selector syntax of
// kubectl -l ("team=a,env in (prod,staging),!legacy"). An empty string, {} and a
// selector without requirements all select every namespace and give nil, so that "no
// selector" has one representation.
func ParseNamespaceSelector(s string) (labels.Selector, error) {
	s = strings.TrimSpace(s)
	var sel labels.Selector
	if strings.HasPrefix(s, "{") {
		var ls metav1.LabelSelector
		dec := json.NewDecoder(strings.NewReader(s))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ls); err != nil {
			return nil, fmt.Errorf("namespace selector %s: not a LabelSelector (matchLabels, matchExpressions): %w", s, err)
		}
		if dec.More() {
			return nil, fmt.Errorf("namespace selector %s: text after the LabelSelector", s)
		}
		var err error
		if sel, err = metav1.LabelSelectorAsSelector(&ls); err != nil {
			return nil, fmt.Errorf("namespace selector %s: %w", s, err)
		}
	} else {
		var err error
		if sel, err = labels.Parse(s); err != nil {
			return nil, fmt.Errorf("namespace selector %q: %w", s, err)
		}
	}
	if sel.Empty() {
		return nil, nil
	}
	return sel, nil
}

// OptedOut reports whether labels carry the opt-out label with its one meaningful value.
func OptedOut(labels map[string]string) bool {
	return labels[EnforceLabel] == EnforceDisabled
}

// NamespaceSelectorFlag is the flag.Value of --namespace-selector: it parses with ParseNamespaceSelector
// into *dst. The webhook and the agent bind the same flag so that they read the chart's
// one value the same way.
type NamespaceSelectorFlag struct{ Dst *labels.Selector }

// String implements flag.Value.
func (f NamespaceSelectorFlag) String() string {
	if f.Dst == nil || *f.Dst == nil {
		return ""
	}
	return (*f.Dst).String()
}

// Set implements flag.Value.
func (f NamespaceSelectorFlag) Set(s string) error {
	sel, err := ParseNamespaceSelector(s)
	if err != nil {
		return err
	}
	*f.Dst = sel
	return nil
}

// NamespaceSelectorUsage is the help text of --namespace-selector.
const NamespaceSelectorUsage = `enforce only namespaces whose labels match this selector: a LabelSelector as JSON ({"matchLabels":{...},"matchExpressions":[...]}) or kubectl -l syntax; empty = every namespace (excluded and opted-out namespaces stay unenforced)`
