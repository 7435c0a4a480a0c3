package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// fuzzHandlers are the handlers FuzzAdmission drives, in a fixed order (the fuzzer's
// first argument picks one). Panics are not recovered here: a panic must fail the
// fuzz run, not become an error response.
func fuzzHandlers(tb testing.TB) []struct {
	path string
	h    http.Handler
} {
	mk := func(h admission.Handler) http.Handler {
		return (&admission.Webhook{Handler: h}).WithRecoverPanic(false)
	}
	return []struct {
		path string
		h    http.Handler
	}{
		{PathMutatePod, mk(testMutator())},
		{PathValidateNamespace, mk(&NamespaceValidator{Groups: []string{DefaultOptOutGroup}})},
		{PathValidateNetworkPolicy, mk(newTestValidator(tb, benchFacts(10)))},
		{PathValidateClusterNetworkPolicy, mk(&ClusterNetworkPolicyValidator{})},
	}
}

func review(t testing.TB, req admissionv1.AdmissionRequest) []byte {
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  &req,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzAdmission sends arbitrary HTTP bodies through AdmissionReview decoding and each
// handler (pod mutator, namespace validator, NetworkPolicy hygiene validator). Whatever comes in, the answer is a well-formed AdmissionReview, never a
// 5xx other than the mutator's deliberate fail-closed 503, and a patch, when there is
// one, applies to the object and adds exactly one gate.
func FuzzAdmission(f *testing.F) {
	for _, bi := range badInputs() {
		if len(bi.body) < 1<<16 {
			f.Add(uint8(0), []byte(bi.body))
			f.Add(uint8(1), []byte(bi.body))
		}
	}
	good := podRequest("team-a", admissionv1.Create, podJSON(f, &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}}))
	f.Add(uint8(0), review(f, good.AdmissionRequest))
	gated := podRequest("team-a", admissionv1.Create, podJSON(f, &corev1.Pod{Spec: corev1.PodSpec{ReadinessGates: []corev1.PodReadinessGate{{ConditionType: "x"}}}}))
	f.Add(uint8(0), review(f, gated.AdmissionRequest))
	f.Add(uint8(1), review(f, nsRequest(admissionv1.Update, []string{"devs"}, nil, map[string]string{"strictgate.dev/enforce": "disabled"}).AdmissionRequest))
	f.Add(uint8(1), review(f, nsRequest(admissionv1.Create, []string{DefaultOptOutGroup}, nil, map[string]string{"strictgate.dev/enforce": "disabled"}).AdmissionRequest))

	for _, seed := range NetworkPolicyFuzzSeeds() {
		for _, op := range []admissionv1.Operation{admissionv1.Create, admissionv1.Update, admissionv1.Delete} {
			req := npRequest(op, "", "")
			if op == admissionv1.Delete {
				req.OldObject.Raw = seed
			} else {
				req.Object.Raw = seed
			}
			f.Add(uint8(2), review(f, req.AdmissionRequest))
		}
	}

	for _, tc := range cnpCases() {
		for _, op := range []admissionv1.Operation{admissionv1.Create, admissionv1.Update} {
			f.Add(uint8(3), review(f, cnpRequest("v1beta1", op, cnpObject("v1beta1", "p", tc.spec)).AdmissionRequest))
		}
	}

	handlers := fuzzHandlers(f)
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		hh := handlers[int(which)%len(handlers)]
		r := httptest.NewRequest(http.MethodPost, hh.path, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		hh.h.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("HTTP %d", w.Code)
		}
		var ar admissionv1.AdmissionReview
		if err := json.Unmarshal(w.Body.Bytes(), &ar); err != nil || ar.Response == nil {
			t.Fatalf("answer is not an AdmissionReview (%v): %q", err, w.Body.String())
		}
		res := ar.Response
		if !res.Allowed {
			if res.Result == nil || res.Result.Message == "" {
				t.Fatalf("refusal without a message: %+v", res)
			}
			if c := res.Result.Code; c >= 500 && !(hh.path == PathMutatePod && c == http.StatusServiceUnavailable) {
				t.Fatalf("result code %d: %s", c, res.Result.Message)
			}
			return
		}
		if len(res.Patch) == 0 {
			return
		}
		if hh.path != PathMutatePod {
			t.Fatalf("%s returned a patch", hh.path)
		}
		// Only a real request can have been patched; re-decode it to check the patch.
		var in admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &in); err != nil || in.Request == nil {
			t.Fatalf("patched a body that is not an AdmissionReview: %v", err)
		}
		var ops []map[string]any
		if err := json.Unmarshal(res.Patch, &ops); err != nil || len(ops) != 1 {
			t.Fatalf("patch %s: want one operation", res.Patch)
		}
		out := applyPatch(t, in.Request.Object.Raw, admission.Response{Patches: toOps(t, res.Patch)})
		var before, after struct {
			Spec struct {
				ReadinessGates []corev1.PodReadinessGate `json:"readinessGates"`
			} `json:"spec"`
		}
		_ = json.Unmarshal(in.Request.Object.Raw, &before)
		if err := json.Unmarshal(out, &after); err != nil {
			t.Fatalf("patched object does not decode: %v", err)
		}
		if gateCount(&corev1.Pod{Spec: corev1.PodSpec{ReadinessGates: after.Spec.ReadinessGates}}) != 1 ||
			len(after.Spec.ReadinessGates) != len(before.Spec.ReadinessGates)+1 {
			t.Fatalf("gates before %v, after %v", before.Spec.ReadinessGates, after.Spec.ReadinessGates)
		}
	})
}
