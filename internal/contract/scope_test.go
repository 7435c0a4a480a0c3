package contract

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ns(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func TestEnforced(t *testing.T) {
	scope := Scope{OwnNamespace: "strictgate", Excluded: []string{"legacy"}}
	now := metav1.Now()
	deleting := ns("going", nil)
	deleting.DeletionTimestamp = &now
	tests := []struct {
		name string
		ns   *corev1.Namespace
		want bool
	}{
		{"plain namespace is enforced", ns("team-a", nil), true},
		{"other value of the label keeps enforcement", ns("team-a", map[string]string{EnforceLabel: "enabled"}), true},
		{"upper-case value is not the opt-out value", ns("team-a", map[string]string{EnforceLabel: "EnforceDisabled"}), true},
		{"opted out", ns("team-a", map[string]string{EnforceLabel: EnforceDisabled}), false},
		{"kube-system", ns("kube-system", nil), false},
		{"kube-public", ns("kube-public", nil), false},
		{"kube-node-lease", ns("kube-node-lease", nil), false},
		{"own namespace", ns("strictgate", nil), false},
		{"configured list", ns("legacy", nil), false},
		{"default is enforced", ns("default", nil), true},
		{"terminating", deleting, false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := scope.Enforced(tt.ns); got != tt.want {
				t.Fatalf("Enforced = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestZeroScopeHasNoOwnNamespace(t *testing.T) {
	// An empty OwnNamespace must not make the empty name (cluster-scoped) excluded or
	// enforced by accident.
	var s Scope
	if s.ExcludedByName("") {
		t.Fatal("empty name excluded")
	}
	if !s.Enforced(ns("strictgate", nil)) {
		t.Fatal("zero scope excluded strictgate without being told")
	}
}

func TestSelector(t *testing.T) {
	tests := []struct {
		name, selector string
		labels         map[string]string
		want           bool
	}{
		{"empty selects all", "", nil, true},
		{"empty JSON selects all", "{}", map[string]string{"a": "b"}, true},
		{"JSON matchLabels match", `{"matchLabels":{"team":"a"}}`, map[string]string{"team": "a"}, true},
		{"JSON matchLabels miss", `{"matchLabels":{"team":"a"}}`, map[string]string{"team": "b"}, false},
		{"JSON expressions AND labels", `{"matchLabels":{"team":"a"},"matchExpressions":[{"key":"env","operator":"In","values":["prod"]}]}`, map[string]string{"team": "a", "env": "dev"}, false},
		{"JSON DoesNotExist", `{"matchExpressions":[{"key":"legacy","operator":"DoesNotExist"}]}`, map[string]string{"team": "a"}, true},
		{"kubectl syntax", "team=a,env in (prod,staging)", map[string]string{"team": "a", "env": "staging"}, true},
		{"kubectl syntax miss", "team=a,!legacy", map[string]string{"team": "a", "legacy": ""}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := ParseNamespaceSelector(tt.selector)
			if err != nil {
				t.Fatal(err)
			}
			scope := Scope{Selector: sel}
			// The selector narrows enforcement; it never overrides the opt-out label
			// or the excluded names.
			if got := scope.Enforced(ns("team-a", tt.labels)); got != tt.want {
				t.Fatalf("Enforced = %v, want %v", got, tt.want)
			}
			optedOut := map[string]string{EnforceLabel: EnforceDisabled}
			for k, v := range tt.labels {
				optedOut[k] = v
			}
			if scope.Enforced(ns("team-a", optedOut)) || scope.Enforced(ns("kube-system", tt.labels)) {
				t.Fatal("selector re-enabled an opted-out or excluded namespace")
			}
		})
	}
}

func TestParseSelectorErrors(t *testing.T) {
	for _, s := range []string{
		`{"matchLabels":{"team":"a"}`,                                       // truncated
		`{"matchLabel":{"team":"a"}}`,                                       // misspelt field
		`{"matchExpressions":[{"key":"env","operator":"Has","values":[]}]}`, // unknown operator
		`{"matchExpressions":[{"key":"env","operator":"In"}]}`,              // In without values
		`{} {}`,                                  // two documents
		"team==a=b",                              // bad syntax
		"bad key!=x",                             // invalid key
		`{"matchLabels":{"team":"not a value"}}`, // invalid value
	} {
		if sel, err := ParseNamespaceSelector(s); err == nil {
			t.Errorf("ParseNamespaceSelector(%q) = %v, want an error", s, sel)
		}
	}
	if sel, err := ParseNamespaceSelector(`{"matchLabels":{}}`); err != nil || sel != nil {
		t.Fatalf("selector without requirements = %v, %v; want nil, nil", sel, err)
	}
}
