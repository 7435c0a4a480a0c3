package webhook

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestServeAdmission: requests no API server sends are refused with a 4xx and a
// reason, without quoting the body; AdmissionReviews are answered in their own
// apiVersion. Found by test/webhookprobe: controller-runtime's ServeHTTP processed
// GET/PUT bodies, any apiVersion/kind (echoing it back) and YAML, and refused
// "application/json; charset=utf-8".
func TestServeAdmission(t *testing.T) {
	const secret = "s3cr3t-token-value"
	pod := podJSON(t, &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x", Env: []corev1.EnvVar{{Name: "T", Value: secret}}}}}})
	good := string(review(t, podRequest("team-a", admissionv1.Create, pod).AdmissionRequest))
	beta := strings.Replace(good, `"admission.k8s.io/v1"`, `"admission.k8s.io/v1beta1"`, 1)
	h := Instrumented(PathMutatePod, testMutator())
	noUID := strings.Replace(beta, `"uid":"uid-1",`, ``, 1)
	numUID := strings.Replace(good, `"uid":"uid-1"`, `"uid":42`, 1)
	for _, tt := range []struct {
		name, method, body string
		code               int    // HTTP status
		allowed            bool   // for 200 answers
		apiVersion         string // of the answer
		contentType        string // default application/json
	}{
		{"charset parameter", http.MethodPost, good, 200, true, "admission.k8s.io/v1", "application/json; charset=utf-8"},
		{"text/plain", http.MethodPost, good, 415, false, "admission.k8s.io/v1", "text/plain"},
		{"no Content-Type", http.MethodPost, good, 415, false, "admission.k8s.io/v1", "-"},
		{"YAML Content-Type", http.MethodPost, good, 415, false, "admission.k8s.io/v1", "application/yaml"},
		{"v1beta1 without uid: refused in v1beta1", http.MethodPost, noUID, 200, false, "admission.k8s.io/v1beta1", ""},
		{"uid is a number", http.MethodPost, numUID, 400, false, "admission.k8s.io/v1", ""},
		{"v1 review", http.MethodPost, good, 200, true, "admission.k8s.io/v1", ""},
		{"v1beta1 review", http.MethodPost, beta, 200, true, "admission.k8s.io/v1beta1", ""},
		{"GET", http.MethodGet, good, 405, false, "admission.k8s.io/v1", ""},
		{"PUT", http.MethodPut, good, 405, false, "admission.k8s.io/v1", ""},
		{"empty", http.MethodPost, "", 400, false, "admission.k8s.io/v1", ""},
		{"whitespace", http.MethodPost, " \n", 400, false, "admission.k8s.io/v1", ""},
		{"null", http.MethodPost, "null", 400, false, "admission.k8s.io/v1", ""},
		{"array", http.MethodPost, `["` + secret + `"]`, 400, false, "admission.k8s.io/v1", ""},
		{"truncated", http.MethodPost, good[:len(good)-40], 400, false, "admission.k8s.io/v1", ""},
		{"YAML", http.MethodPost, "apiVersion: admission.k8s.io/v1\nkind: AdmissionReview\nrequest: {uid: " + secret + "}\n", 400, false, "admission.k8s.io/v1", ""},
		{"other apiVersion", http.MethodPost, strings.Replace(good, `"admission.k8s.io/v1"`, `"evil.example/v1"`, 1), 400, false, "admission.k8s.io/v1", ""},
		{"future apiVersion", http.MethodPost, strings.Replace(good, `"admission.k8s.io/v1"`, `"admission.k8s.io/v2"`, 1), 400, false, "admission.k8s.io/v1", ""},
		{"other kind", http.MethodPost, strings.Replace(good, `"kind":"AdmissionReview"`, `"kind":"Pod"`, 1), 400, false, "admission.k8s.io/v1", ""},
		{"no apiVersion", http.MethodPost, strings.Replace(good, `"apiVersion":"admission.k8s.io/v1",`, ``, 1), 400, false, "admission.k8s.io/v1", ""},
		{"apiVersion in the wrong case", http.MethodPost, strings.Replace(good, `"apiVersion"`, `"APIVERSION"`, 1), 400, false, "admission.k8s.io/v1", ""},
		{"too large", http.MethodPost, good[:len(good)-1] + `,"x":"` + strings.Repeat("x", MaxRequestBytes) + `"}`, 413, false, "admission.k8s.io/v1", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, PathMutatePod, strings.NewReader(tt.body))
			switch tt.contentType {
			case "":
				r.Header.Set("Content-Type", "application/json")
			case "-":
			default:
				r.Header.Set("Content-Type", tt.contentType)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.code {
				t.Fatalf("HTTP %d, want %d: %.300s", w.Code, tt.code, w.Body.String())
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			if bytes.Contains(w.Body.Bytes(), []byte(secret)) {
				t.Errorf("answer quotes the request body: %.300s", w.Body.String())
			}
			var ar admissionv1.AdmissionReview
			if err := json.Unmarshal(w.Body.Bytes(), &ar); err != nil || ar.Response == nil {
				t.Fatalf("answer is not an AdmissionReview (%v): %.300s", err, w.Body.String())
			}
			if ar.APIVersion != tt.apiVersion || ar.Kind != "AdmissionReview" {
				t.Errorf("answer is %s %s, want %s AdmissionReview", ar.APIVersion, ar.Kind, tt.apiVersion)
			}
			if ar.Response.Allowed != tt.allowed {
				t.Fatalf("allowed=%v, want %v: %+v", ar.Response.Allowed, tt.allowed, ar.Response.Result)
			}
			if !tt.allowed && (ar.Response.Result == nil || ar.Response.Result.Code < 400 || ar.Response.Result.Code >= 500 ||
				(tt.code != 200 && ar.Response.Result.Code != int32(tt.code)) || ar.Response.Result.Message == "") {
				t.Errorf("refusal %+v, want a 4xx (%d) with a message", ar.Response.Result, tt.code)
			}
			if tt.allowed && !strings.Contains(tt.body, `"uid":"`+string(ar.Response.UID)+`"`) {
				t.Errorf("answer uid %q is not the request's", ar.Response.UID)
			}
			if tt.code == 405 && w.Header().Get("Allow") != http.MethodPost {
				t.Errorf("405 without Allow: POST")
			}
		})
	}
}

// TestNetworkPolicyValidatorRefusesNonRequests: like the other handlers, a request
// without a uid or with a namespace that cannot exist is refused; both were judged
// and admitted (found by test/webhookprobe).
func TestNetworkPolicyValidatorRefusesNonRequests(t *testing.T) {
	for _, tt := range []struct {
		name, uid, ns, want string
	}{
		{"no uid", "", "shop", "uid"},
		{"namespace with a slash", "u", "a/b", "namespace"},
		{"namespace of 300 characters", "u", strings.Repeat("a", 300), "namespace"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := npRequest(admissionv1.Create, `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"p"},"spec":{"podSelector":{}}}`, "")
			req.UID = types.UID(tt.uid)
			req.Namespace = tt.ns
			resp := newTestValidator(t, nil).Handle(context.Background(), req)
			if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusBadRequest || !strings.Contains(resp.Result.Message, tt.want) {
				t.Fatalf("%+v, want a 400 about the %s", resp.Result, tt.want)
			}
		})
	}
}

// TestServeAdmissionSlowBody: a client that sends its headers and then trickles (or withholds)
// the body is cut off after bodyReadTimeout instead of holding a connection forever.
func TestServeAdmissionSlowBody(t *testing.T) {
	old := bodyReadTimeout
	bodyReadTimeout = 300 * time.Millisecond
	defer func() { bodyReadTimeout = old }()
	srv := httptest.NewServer(Instrumented(PathMutatePod, testMutator()))
	defer srv.Close()

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"apiVersion\":", PathMutatePod)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body within 10s: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("stalled body: HTTP %d, want 400", resp.StatusCode)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stalled body answered after %v", d)
	}
}
