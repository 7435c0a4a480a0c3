package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

func TestInstrumentedResults(t *testing.T) {
	ok := admission.HandlerFunc(func(context.Context, admission.Request) admission.Response { return admission.Allowed("") })
	deny := admission.HandlerFunc(func(context.Context, admission.Request) admission.Response { return admission.Denied("no") })
	bad := admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
		return admission.Errored(http.StatusBadRequest, errTest)
	})
	boom := admission.HandlerFunc(func(context.Context, admission.Request) admission.Response { panic("boom") })
	body := review(t, admissionv1.AdmissionRequest{UID: "u"})
	tests := []struct {
		path   string
		h      admission.Handler
		body   []byte
		result string
	}{
		{"/t-allowed", ok, body, ResultAllowed},
		{"/t-denied", deny, body, ResultDenied},
		{"/t-error", bad, body, ResultError},
		{"/t-panic", boom, body, ResultPanic},
		{"/t-invalid", ok, []byte("{"), ResultInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.result, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, tt.path, bytes.NewReader(tt.body))
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			Instrumented(tt.path, tt.h).ServeHTTP(w, r)
			if got := histogramCount(t, tt.path, tt.result); got != 1 {
				t.Fatalf("%s{result=%s} = %d, want 1", tt.path, tt.result, got)
			}
			var ar admissionv1.AdmissionReview
			if err := json.Unmarshal(w.Body.Bytes(), &ar); err != nil || ar.Response == nil {
				t.Fatalf("answer %q: %v", w.Body.String(), err)
			}
			if tt.result == ResultPanic && (ar.Response.Allowed || ar.Response.Result.Code != http.StatusInternalServerError) {
				t.Fatalf("panic answered %+v, want a recovered 500 denial", ar.Response.Result)
			}
		})
	}
}

var errTest = testError("test error")

type testError string

func (e testError) Error() string { return string(e) }
