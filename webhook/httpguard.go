package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionv1beta1 "k8s.io/api/admission/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
)

// MaxRequestBytes is the largest admission request body accepted: controller-runtime's
// own limit (two objects of at most 3 MiB each plus 1 MiB for the rest).
const MaxRequestBytes = 7 << 20

// bodyReadTimeout bounds how long a client may take to send its body once the headers
// are in. The API server sends the whole review at once and gives up on a webhook
// after at most 30s; a client trickling bytes only ties up a connection.
var bodyReadTimeout = 30 * time.Second

// screen refuses, before anything is decoded, HTTP requests that no API server sends
// and that controller-runtime's decoder would otherwise accept: methods other than
// POST (it reads a body from a GET just as well), bodies over MaxRequestBytes, bodies
// that are not JSON (it falls back to YAML and protobuf), and JSON documents that are
// not an admission.k8s.io/v1 or v1beta1 AdmissionReview (it decodes any apiVersion and
// kind into an AdmissionReview and echoes them back). It returns the request to pass
// on, with the body it read, or nil after it has answered.
//
// Refusals carry a real 4xx status and an AdmissionReview with the reason; the body is
// never quoted back or logged, since it may hold Secrets or tokens.
func screen(w http.ResponseWriter, r *http.Request) *http.Request {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		refuse(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s: admission reviews are sent with POST", r.Method))
		return nil
	}
	if r.Body == nil {
		refuse(w, http.StatusBadRequest, "request body is empty: want an admission.k8s.io/v1 AdmissionReview")
		return nil
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyReadTimeout)) // unsupported by test recorders; nothing to do then
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxRequestBytes+1))
	r.Body.Close()
	switch {
	case err != nil:
		refuse(w, http.StatusBadRequest, fmt.Sprintf("read request body: %v", err))
		return nil
	case len(body) > MaxRequestBytes:
		refuse(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", MaxRequestBytes))
		return nil
	case len(bytes.TrimSpace(body)) == 0:
		refuse(w, http.StatusBadRequest, "request body is empty: want an admission.k8s.io/v1 AdmissionReview")
		return nil
	}
	var tm metav1.TypeMeta
	if err := kjson.UnmarshalCaseSensitivePreserveInts(body, &tm); err != nil {
		refuse(w, http.StatusBadRequest, "request body is not a JSON object (want an admission.k8s.io/v1 AdmissionReview): "+jsonErrorSummary(err))
		return nil
	}
	if tm.Kind != "AdmissionReview" || (tm.APIVersion != admissionv1.SchemeGroupVersion.String() && tm.APIVersion != admissionv1beta1.SchemeGroupVersion.String()) {
		refuse(w, http.StatusBadRequest, fmt.Sprintf("request body is apiVersion %q kind %q: want an admission.k8s.io/v1 (or v1beta1) AdmissionReview", tm.APIVersion, tm.Kind))
		return nil
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return r
}

// jsonErrorSummary says what is wrong with a JSON document without quoting it.
func jsonErrorSummary(err error) string {
	if ok, offset := kjson.SyntaxErrorOffset(err); ok {
		return fmt.Sprintf("syntax error at byte %d", offset)
	}
	return "not an object with string apiVersion and kind"
}

// refuse answers with status and an AdmissionReview that denies with msg.
func refuse(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	reason := metav1.StatusReasonBadRequest
	switch status {
	case http.StatusMethodNotAllowed:
		reason = metav1.StatusReasonMethodNotAllowed
	case http.StatusRequestEntityTooLarge:
		reason = metav1.StatusReasonRequestEntityTooLarge
	}
	_ = json.NewEncoder(w).Encode(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
		Response: &admissionv1.AdmissionResponse{
			Allowed: false,
			Result:  &metav1.Status{Status: metav1.StatusFailure, Code: int32(status), Message: msg, Reason: reason},
		},
	})
}
