package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	jsonpatch "gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/strictgate/strictgate/internal/contract"
)

// fakeNamespaces is an in-memory NamespaceGetter for pure handler tests; the
// API-server path is covered by TestAPIServer.
type fakeNamespaces map[string]*corev1.Namespace

func (f fakeNamespaces) GetNamespace(_ context.Context, name string) (*corev1.Namespace, error) {
	if name == "broken" {
		return nil, errors.New("cache unavailable")
	}
	if ns, ok := f[name]; ok {
		return ns, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, name)
}

func testNamespaces() fakeNamespaces {
	return fakeNamespaces{
		"team-a": nsNamed("team-a"),
		"optout": nsNamed("optout", contract.EnforceLabel, contract.EnforceDisabled),
		"legacy": nsNamed("legacy"),
	}
}

func testMutator() *PodMutator {
	return &PodMutator{Scope: contract.Scope{OwnNamespace: "strictgate", Excluded: []string{"legacy"}}, Namespaces: testNamespaces()}
}

func podJSON(t testing.TB, p *corev1.Pod) []byte {
	p.APIVersion, p.Kind = "v1", "Pod"
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func podRequest(ns string, op admissionv1.Operation, raw []byte) admission.Request {
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       "uid-1",
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: ns,
		Operation: op,
		Object:    runtime.RawExtension{Raw: raw},
	}}
}

// applyPatch applies resp's JSON patch to raw, as the API server would.
func applyPatch(t testing.TB, raw []byte, resp admission.Response) []byte {
	t.Helper()
	if len(resp.Patches) == 0 {
		return raw
	}
	pb, err := json.Marshal(resp.Patches)
	if err != nil {
		t.Fatal(err)
	}
	patch, err := jsonpatchapply.DecodePatch(pb)
	if err != nil {
		t.Fatalf("decode patch %s: %v", pb, err)
	}
	out, err := patch.Apply(raw)
	if err != nil {
		t.Fatalf("apply patch %s: %v", pb, err)
	}
	return out
}

func TestPodMutator(t *testing.T) {
	other := corev1.PodReadinessGate{ConditionType: "example.com/other"}
	ours := corev1.PodReadinessGate{ConditionType: contract.ConditionType}
	pod := func(gates []corev1.PodReadinessGate, hostNet bool) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{ReadinessGates: gates, HostNetwork: hostNet}}
	}
	tests := []struct {
		name      string
		ns        string
		op        admissionv1.Operation
		raw       []byte
		wantCode  int32 // 0: allowed
		wantGates []string
		wantPatch bool
	}{
		{"no gates", "team-a", admissionv1.Create, podJSON(t, pod(nil, false)), 0, []string{contract.ConditionType}, true},
		{"empty gate list", "team-a", admissionv1.Create, podJSON(t, pod([]corev1.PodReadinessGate{}, false)), 0, []string{contract.ConditionType}, true},
		{"other gate kept first", "team-a", admissionv1.Create, podJSON(t, pod([]corev1.PodReadinessGate{other}, false)), 0, []string{"example.com/other", contract.ConditionType}, true},
		{"already gated", "team-a", admissionv1.Create, podJSON(t, pod([]corev1.PodReadinessGate{other, ours}, false)), 0, []string{"example.com/other", contract.ConditionType}, false},
		{"explicit null gates", "team-a", admissionv1.Create, []byte(`{"apiVersion":"v1","kind":"Pod","spec":{"readinessGates":null}}`), 0, []string{contract.ConditionType}, true},
		{"host network", "team-a", admissionv1.Create, podJSON(t, pod(nil, true)), 0, nil, false},
		{"opted out", "optout", admissionv1.Create, podJSON(t, pod(nil, false)), 0, nil, false},
		{"configured exclusion", "legacy", admissionv1.Create, podJSON(t, pod(nil, false)), 0, nil, false},
		{"own namespace, no lookup needed", "strictgate", admissionv1.Create, podJSON(t, pod(nil, false)), 0, nil, false},
		{"kube-system", "kube-system", admissionv1.Create, podJSON(t, pod(nil, false)), 0, nil, false},
		{"update is not mutated", "team-a", admissionv1.Update, podJSON(t, pod(nil, false)), 0, nil, false},
		{"namespace lookup fails: fail closed", "broken", admissionv1.Create, podJSON(t, pod(nil, false)), http.StatusServiceUnavailable, nil, false},
		// Not found is an answer, not an outage: enforced by default (found by test/webhookprobe).
		{"unknown namespace: enforced by default", "nowhere", admissionv1.Create, podJSON(t, pod(nil, false)), 0, []string{contract.ConditionType}, true},
		{"no namespace in request", "", admissionv1.Create, podJSON(t, pod(nil, false)), http.StatusBadRequest, nil, false},
		// Found by test/webhookprobe: "a/b" made the live namespace GET fail (a 503).
		{"namespace with a slash", "a/b", admissionv1.Create, podJSON(t, pod(nil, false)), http.StatusBadRequest, nil, false},
		{"namespace not a DNS label", "Team_A", admissionv1.Create, podJSON(t, pod(nil, false)), http.StatusBadRequest, nil, false},
		{"no object", "team-a", admissionv1.Create, nil, http.StatusBadRequest, nil, false},
		{"not JSON", "team-a", admissionv1.Create, []byte("{"), http.StatusBadRequest, nil, false},
		{"object of another kind", "team-a", admissionv1.Create, []byte(`{"apiVersion":"v1","kind":"Namespace","spec":{}}`), http.StatusBadRequest, nil, false},
		{"no spec", "team-a", admissionv1.Create, []byte(`{"apiVersion":"v1","kind":"Pod"}`), http.StatusBadRequest, nil, false},
		{"field names are case-sensitive", "team-a", admissionv1.Create, []byte(`{"apiVersion":"v1","kind":"Pod","spec":{"HostNetwork":true}}`), 0, []string{contract.ConditionType}, true},
	}
	m := testMutator()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := m.Handle(context.Background(), podRequest(tt.ns, tt.op, tt.raw))
			if tt.wantCode != 0 {
				if resp.Allowed || resp.Result == nil || resp.Result.Code != tt.wantCode || resp.Result.Message == "" {
					t.Fatalf("response %+v, want code %d with a message", resp.Result, tt.wantCode)
				}
				return
			}
			if !resp.Allowed {
				t.Fatalf("denied: %+v", resp.Result)
			}
			if got := len(resp.Patches) > 0; got != tt.wantPatch {
				t.Fatalf("patch = %v, want %v", resp.Patches, tt.wantPatch)
			}
			if tt.wantGates == nil {
				return
			}
			out := applyPatch(t, tt.raw, resp)
			var got corev1.Pod
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			var types []string
			for _, g := range got.Spec.ReadinessGates {
				types = append(types, string(g.ConditionType))
			}
			if fmt.Sprint(types) != fmt.Sprint(tt.wantGates) {
				t.Fatalf("gates %v, want %v", types, tt.wantGates)
			}
			// Calling again on the result (re-invocation) must not patch.
			if again := m.Handle(context.Background(), podRequest(tt.ns, tt.op, out)); !again.Allowed || len(again.Patches) != 0 {
				t.Fatalf("second call: allowed=%v patches=%v", again.Allowed, again.Patches)
			}
		})
	}
}

// TestPodMutatorConditionTypes: with two configured condition types every missing one
// is added, in the configured order, after the pod's own gates; a gate already present
// is not added twice; and the result is a fixed point.
func TestPodMutatorConditionTypes(t *testing.T) {
	const up = "networking.k8s.io/pod-network-ready"
	types := []string{contract.ConditionType, up}
	gates := func(ts ...string) []corev1.PodReadinessGate {
		var out []corev1.PodReadinessGate
		for _, t := range ts {
			out = append(out, corev1.PodReadinessGate{ConditionType: corev1.PodConditionType(t)})
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		gates []corev1.PodReadinessGate
		want  []string
		patch bool
	}{
		{"no gates", nil, types, true},
		{"empty list", []corev1.PodReadinessGate{}, types, true},
		{"other gate kept first", gates("example.com/other"), []string{"example.com/other", contract.ConditionType, up}, true},
		{"first present: second added", gates(contract.ConditionType), types, true},
		{"second present: first appended", gates(up), []string{up, contract.ConditionType}, true},
		{"both present", gates(up, contract.ConditionType), []string{up, contract.ConditionType}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := testMutator()
			m.ConditionTypes = types
			raw := podJSON(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{ReadinessGates: tc.gates}})
			resp := m.Handle(context.Background(), podRequest("team-a", admissionv1.Create, raw))
			if !resp.Allowed || (len(resp.Patches) > 0) != tc.patch {
				t.Fatalf("allowed=%v patches=%v, want patch %v", resp.Allowed, resp.Patches, tc.patch)
			}
			out := applyPatch(t, raw, resp)
			var got corev1.Pod
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			var gotTypes []string
			for _, g := range got.Spec.ReadinessGates {
				gotTypes = append(gotTypes, string(g.ConditionType))
			}
			if !slices.Equal(gotTypes, tc.want) {
				t.Fatalf("gates %v, want %v", gotTypes, tc.want)
			}
			if again := m.Handle(context.Background(), podRequest("team-a", admissionv1.Create, out)); !again.Allowed || len(again.Patches) != 0 {
				t.Fatalf("second call: allowed=%v patches=%v", again.Allowed, again.Patches)
			}
		})
	}
}

func nsRequest(op admissionv1.Operation, groups []string, oldLabels, newLabels map[string]string) admission.Request {
	raw := func(l map[string]string) []byte {
		b, _ := json.Marshal(&corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: l}})
		return b
	}
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       "uid-1",
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Namespace"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "namespaces"},
		Name:      "n",
		Operation: op,
		UserInfo:  authenticationv1.UserInfo{Username: "u", Groups: groups},
		Object:    runtime.RawExtension{Raw: raw(newLabels)},
	}}
	if op == admissionv1.Update {
		req.OldObject = runtime.RawExtension{Raw: raw(oldLabels)}
	}
	return req
}

func TestNamespaceValidator(t *testing.T) {
	v := &NamespaceValidator{Groups: []string{"admins"}}
	off := map[string]string{contract.EnforceLabel: contract.EnforceDisabled}
	odd := map[string]string{contract.EnforceLabel: "maybe"}
	plain := map[string]string{"team": "a"}
	user, admin, master := []string{"devs"}, []string{"devs", "admins"}, []string{SuperuserGroup}
	tests := []struct {
		name      string
		op        admissionv1.Operation
		groups    []string
		old, new  map[string]string
		wantAllow bool
	}{
		{"user creates plain namespace", admissionv1.Create, user, nil, plain, true},
		{"user creates opted-out namespace", admissionv1.Create, user, nil, off, false},
		{"admin creates opted-out namespace", admissionv1.Create, admin, nil, off, true},
		{"superuser creates opted-out namespace", admissionv1.Create, master, nil, off, true},
		{"user adds the label", admissionv1.Update, user, plain, off, false},
		{"user sets another value", admissionv1.Update, user, plain, odd, false},
		{"user flips another value to disabled", admissionv1.Update, user, odd, off, false},
		{"admin adds the label", admissionv1.Update, admin, plain, off, true},
		{"user removes the label", admissionv1.Update, user, off, plain, true},
		{"user keeps the label unchanged", admissionv1.Update, user, off, off, true},
		{"user edits other labels", admissionv1.Update, user, plain, map[string]string{"team": "b"}, true},
		{"no groups at all", admissionv1.Update, nil, nil, off, false},
		{"delete is not judged", admissionv1.Delete, user, nil, off, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := v.Handle(context.Background(), nsRequest(tt.op, tt.groups, tt.old, tt.new))
			if resp.Allowed != tt.wantAllow {
				t.Fatalf("allowed = %v, want %v (%+v)", resp.Allowed, tt.wantAllow, resp.Result)
			}
			if !resp.Allowed {
				if resp.Result.Code != http.StatusForbidden || !strings.Contains(resp.Result.Message, "admins") || !strings.Contains(resp.Result.Message, "remove the label") {
					t.Fatalf("denial %+v does not say who may and what to do instead", resp.Result)
				}
			}
		})
	}
	t.Run("malformed old object", func(t *testing.T) {
		req := nsRequest(admissionv1.Update, user, plain, off)
		req.OldObject.Raw = []byte(`{"metadata":{"labels":"x"}}`)
		if resp := v.Handle(context.Background(), req); resp.Allowed || resp.Result.Code != http.StatusBadRequest {
			t.Fatalf("response %+v, want 400", resp.Result)
		}
	})
}

// toOps decodes a JSON patch from a response body back into operations.
func toOps(t testing.TB, patch []byte) []jsonpatch.JsonPatchOperation {
	t.Helper()
	var ops []jsonpatch.JsonPatchOperation
	if err := json.Unmarshal(patch, &ops); err != nil {
		t.Fatalf("decode patch %s: %v", patch, err)
	}
	return ops
}

// TestPodMutatorNamespaceSelector: with enforcement.namespaceSelector only matching
// namespaces are gated; the selector never gates an excluded or opted-out namespace.
func TestPodMutatorNamespaceSelector(t *testing.T) {
	sel, err := contract.ParseNamespaceSelector(`{"matchLabels":{"strictgate.dev/tier":"enforced"}}`)
	if err != nil {
		t.Fatal(err)
	}
	m := &PodMutator{Scope: contract.Scope{OwnNamespace: "strictgate", Selector: sel}, Namespaces: fakeNamespaces{
		"selected":        nsNamed("selected", "strictgate.dev/tier", "enforced"),
		"unselected":      nsNamed("unselected", "strictgate.dev/tier", "other"),
		"unlabelled":      nsNamed("unlabelled"),
		"selected-optout": nsNamed("selected-optout", "strictgate.dev/tier", "enforced", contract.EnforceLabel, contract.EnforceDisabled),
	}}
	raw := podJSON(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}})
	for ns, wantGate := range map[string]bool{"selected": true, "unselected": false, "unlabelled": false, "selected-optout": false, "kube-system": false} {
		resp := m.Handle(context.Background(), podRequest(ns, admissionv1.Create, raw))
		if !resp.Allowed {
			t.Fatalf("%s: refused: %+v", ns, resp.Result)
		}
		if got := len(resp.Patches) > 0; got != wantGate {
			t.Errorf("%s: gated = %v, want %v (%s)", ns, got, wantGate, resp.Result.Message)
		}
	}
}
