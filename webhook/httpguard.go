package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionv1beta1 "k8s.io/api/admission/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	kjson "sigs.k8s.io/json"
)

// MaxRequestBytes is the largest admission request body accepted: controller-runtime's
// own limit (two objects of at most 3 MiB each plus 1 MiB for the rest).
const MaxRequestBytes = 7 << 20

// bodyReadTimeout bounds how long a client may take to send its body once the headers
// are in. The API server sends the whole review at once and gives up on a webhook
// after at most 30s; a client trickling bytes only ties up a connection.
var bodyReadTimeout = 30 * time.Second

// serveAdmission is the HTTP side of every admission path; wh.Handle does the rest
// (panic recovery, uid and patch completion). It replaces admission.Webhook.ServeHTTP,
// which accepted what no API server sends — a body on GET or PUT, YAML and protobuf
// bodies, any apiVersion and kind (decoded as an AdmissionReview and echoed back) —
// answered decoding errors with an AdmissionReview without apiVersion, refused
// "application/json; charset=utf-8", and logged every bad request at error level.
//
// Requests that are not an AdmissionReview get a real 4xx status (405, 413, 415, 400)
// and an AdmissionReview saying why; AdmissionReviews get 200 and the handler's answer
// in the same apiVersion, with the request's uid. Bodies are never quoted back or
// logged: they may hold Secrets or tokens.
func serveAdmission(w http.ResponseWriter, r *http.Request, wh *admission.Webhook) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	apiVersion := admissionv1.SchemeGroupVersion.String()
	refuse := func(status int, msg string) {
		ctrl.Log.WithName("admission-http").V(1).Info("refused a request that is not an AdmissionReview",
			"path", r.URL.Path, "remote", r.RemoteAddr, "status", status, "reason", msg)
		writeReview(w, status, apiVersion, &admissionv1.AdmissionResponse{
			Result: &metav1.Status{Status: metav1.StatusFailure, Code: int32(status), Message: msg, Reason: reasonFor(status)},
		})
	}

	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		refuse(http.StatusMethodNotAllowed, fmt.Sprintf("method %s: admission reviews are sent with POST", r.Method))
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		refuse(http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q: want application/json", r.Header.Get("Content-Type")))
		return
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyReadTimeout)) // unsupported by test recorders; nothing to do then
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxRequestBytes+1))
	switch {
	case err != nil:
		refuse(http.StatusBadRequest, fmt.Sprintf("read request body: %v", err))
		return
	case len(body) > MaxRequestBytes:
		refuse(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", MaxRequestBytes))
		return
	case len(bytes.TrimSpace(body)) == 0:
		refuse(http.StatusBadRequest, "request body is empty: want an admission.k8s.io/v1 AdmissionReview")
		return
	}

	// v1 and v1beta1 AdmissionReviews are the same JSON; decode both into v1 with the
	// API server's JSON rules (case-sensitive field names).
	var review struct {
		metav1.TypeMeta `json:",inline"`
		Request         *admissionv1.AdmissionRequest `json:"request"`
	}
	if err := kjson.UnmarshalCaseSensitivePreserveInts(body, &review); err != nil {
		refuse(http.StatusBadRequest, "request body is not a JSON AdmissionReview: "+jsonErrorSummary(err))
		return
	}
	if review.Kind != "AdmissionReview" || (review.APIVersion != admissionv1.SchemeGroupVersion.String() && review.APIVersion != admissionv1beta1.SchemeGroupVersion.String()) {
		refuse(http.StatusBadRequest, fmt.Sprintf("request body is apiVersion %q kind %q: want an admission.k8s.io/v1 (or v1beta1) AdmissionReview", review.APIVersion, review.Kind))
		return
	}
	var req admission.Request
	if review.Request != nil {
		req.AdmissionRequest = *review.Request
	}
	// The handlers refuse a request without a uid (a review without "request" is one).
	resp := wh.Handle(r.Context(), req)
	writeReview(w, http.StatusOK, review.APIVersion, &resp.AdmissionResponse)
}

func writeReview(w http.ResponseWriter, status int, apiVersion string, resp *admissionv1.AdmissionResponse) {
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: apiVersion, Kind: "AdmissionReview"},
		Response: resp,
	})
}

func reasonFor(status int) metav1.StatusReason {
	switch status {
	case http.StatusMethodNotAllowed:
		return metav1.StatusReasonMethodNotAllowed
	case http.StatusRequestEntityTooLarge:
		return metav1.StatusReasonRequestEntityTooLarge
	case http.StatusUnsupportedMediaType:
		return metav1.StatusReasonUnsupportedMediaType
	default:
		return metav1.StatusReasonBadRequest
	}
}

// jsonErrorSummary says what is wrong with a JSON document without quoting it: a
// syntax error's offset, or a type error (which names the field and the JSON type,
// at most a number literal, never a string's content).
func jsonErrorSummary(err error) string {
	if ok, offset := kjson.SyntaxErrorOffset(err); ok {
		return fmt.Sprintf("syntax error at byte %d", offset)
	}
	msg := err.Error()
	if len(msg) > 200 { // a number literal can be megabytes long
		msg = msg[:200] + "…"
	}
	return msg
}
