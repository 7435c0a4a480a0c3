package enforce

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
		{"other value of the label keeps enforcement", ns("team-a", map[string]string{Label: "enabled"}), true},
		{"upper-case value is not the opt-out value", ns("team-a", map[string]string{Label: "Disabled"}), true},
		{"opted out", ns("team-a", map[string]string{Label: Disabled}), false},
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
