// Package webhookprobe is a black-box test of `strictgate webhook`: it builds the real
// binary, runs it against a real kube-apiserver + etcd with certificates it generates,
// and probes it from outside over HTTPS the way an API server, a scanner or a
// confused client would: TLS versions, malformed and hostile AdmissionReviews, wrong
// methods, paths and kinds, huge bodies, re-invocation, dryRun, the probe and metrics
// endpoints, certificate rotation, and what the process writes to its logs.
package webhookprobe

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/strictgate/strictgate/certs"
)

const (
	pathPod = "/mutate-v1-pod"
	pathNS  = "/validate-v1-namespace"
	pathNP  = "/validate-networking-v1-networkpolicy"
	gate    = "strictgate.dev/policy-programmed"
)

var allPaths = []string{pathPod, pathNS, pathNP}

func TestWebhookProbe(t *testing.T) {
	start := time.Now()
	p := startWebhook(t)
	t.Logf("control plane + binary + webhook ready in %v", time.Since(start).Round(time.Millisecond))

	t.Run("probes", func(t *testing.T) { probeHealth(t, p) })
	t.Run("TLS", func(t *testing.T) { probeTLS(t, p) })
	t.Run("pod mutation", func(t *testing.T) { probePodMutation(t, p) })
	t.Run("namespace validator", func(t *testing.T) { probeNamespace(t, p) })
	t.Run("networkpolicy hygiene", func(t *testing.T) { probeNetworkPolicy(t, p) })
	t.Run("AdmissionReview v1beta1", func(t *testing.T) { probeV1beta1(t, p) })
	t.Run("malformed bodies", func(t *testing.T) { probeMalformed(t, p) })
	t.Run("HTTP methods, paths, content types", func(t *testing.T) { probeHTTP(t, p) })
	t.Run("huge bodies", func(t *testing.T) { probeHuge(t, p) })
	t.Run("concurrent requests", func(t *testing.T) { probeConcurrent(t, p) })
	t.Run("metrics", func(t *testing.T) { probeMetrics(t, p) })
	t.Run("certificate rotation", func(t *testing.T) { probeRotation(t, p) })
	t.Run("no certificate: never ready", func(t *testing.T) { probeNoCert(t, p) })
	t.Run("logs", func(t *testing.T) { probeLogs(t, p) })
	t.Run("graceful stop", func(t *testing.T) { probeStop(t, p) })
}

// --- probes --------------------------------------------------------------------

func probeHealth(t *testing.T, p *proc) {
	c := &http.Client{Timeout: 5 * time.Second}
	for _, tt := range []struct {
		path string
		code int
		want string
	}{
		{"/healthz", 200, "ok"},
		{"/readyz", 200, "ok"},
		// The verbose form names the TLS check: ready means a TLS handshake worked.
		{"/readyz?verbose", 200, "[+]webhook-tls ok"},
		{"/readyz/webhook-tls", 200, "ok"},
	} {
		resp, err := c.Get(p.probes + tt.path)
		if err != nil {
			t.Fatalf("GET %s: %v", tt.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.code || !strings.Contains(string(body), tt.want) {
			t.Errorf("GET %s: %d %q, want %d containing %q", tt.path, resp.StatusCode, body, tt.code, tt.want)
		}
	}
}

func probeTLS(t *testing.T, p *proc) {
	addr := strings.TrimPrefix(p.base, "https://")
	dial := func(cfg *tls.Config) (*tls.Conn, error) {
		cfg.RootCAs = p.caPool
		return tls.DialWithDialer(dialer(), "tcp", addr, cfg)
	}
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12} {
		conn, err := dial(&tls.Config{MinVersion: v, MaxVersion: v}) //nolint:gosec // probing that old versions are refused
		if err == nil {
			conn.Close()
			t.Errorf("%s handshake succeeded, want TLS 1.3 only", tls.VersionName(v))
		}
	}
	// A TLS 1.2 client offering every cipher suite it knows, including the insecure
	// ones, is refused too.
	var all []uint16
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		all = append(all, s.ID)
	}
	if conn, err := dial(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: all}); err == nil { //nolint:gosec
		conn.Close()
		t.Error("TLS 1.2 handshake with every cipher suite offered succeeded")
	}

	conn, err := dial(&tls.Config{MinVersion: tls.VersionTLS13, NextProtos: []string{"h2", "http/1.1"}, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS 1.3 handshake verifying the served certificate against our CA: %v", err)
	}
	st := conn.ConnectionState()
	conn.Close()
	if st.Version != tls.VersionTLS13 {
		t.Errorf("negotiated %s, want TLS 1.3", tls.VersionName(st.Version))
	}
	if st.NegotiatedProtocol == "h2" {
		t.Errorf("negotiated HTTP/2; the admission server is HTTP/1.1 only (rapid-reset exposure)")
	}
	// Plain HTTP on the TLS port gets no admission answer.
	c := &http.Client{Timeout: 5 * time.Second}
	if resp, err := c.Post("http://"+addr+pathPod, "application/json", strings.NewReader("{}")); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("plain HTTP on the TLS port: %d %s", resp.StatusCode, body)
		}
	}
}

func probePodMutation(t *testing.T, p *proc) {
	type want int
	const (
		noPatch want = iota
		patched
	)
	for _, tt := range []struct {
		name   string
		ns, op string
		dryRun bool
		spec   obj
		objNS  string // metadata.namespace in the object (empty: absent, as on CREATE)
		want   want
		gates  []string // readinessGates expected after applying the patch
	}{
		{name: "plain pod in an enforced namespace", ns: nsEnforced, op: "CREATE", want: patched, gates: []string{gate}},
		{name: "dryRun pod gets the same patch", ns: nsEnforced, op: "CREATE", dryRun: true, want: patched, gates: []string{gate}},
		{name: "other gates are kept, ours appended", ns: nsEnforced, op: "CREATE",
			spec: obj{"readinessGates": []any{obj{"conditionType": "example.com/other"}}},
			want: patched, gates: []string{"example.com/other", gate}},
		{name: "empty gate list", ns: nsEnforced, op: "CREATE", spec: obj{"readinessGates": []any{}}, want: patched, gates: []string{gate}},
		{name: "gate already present (re-invocation)", ns: nsEnforced, op: "CREATE",
			spec: obj{"readinessGates": []any{obj{"conditionType": "example.com/other"}, obj{"conditionType": gate}}}, want: noPatch},
		{name: "hostNetwork pod", ns: nsEnforced, op: "CREATE", spec: obj{"hostNetwork": true}, want: noPatch},
		{name: "kube-system", ns: "kube-system", op: "CREATE", want: noPatch},
		{name: "kube-public", ns: "kube-public", op: "CREATE", want: noPatch},
		{name: "kube-node-lease", ns: "kube-node-lease", op: "CREATE", want: noPatch},
		{name: "strictgate's own namespace", ns: nsOwn, op: "CREATE", want: noPatch},
		{name: "--exclude-namespace", ns: nsExcluded, op: "CREATE", want: noPatch},
		{name: "opted-out namespace", ns: nsOptedOut, op: "CREATE", want: noPatch},
		{name: "namespace that does not exist: enforced by default", ns: "probe-no-such-namespace", op: "CREATE", want: patched, gates: []string{gate}},
		{name: "object claims kube-system, request says enforced: the request decides", ns: nsEnforced, op: "CREATE",
			objNS: "kube-system", want: patched, gates: []string{gate}},
		{name: "object claims an enforced namespace, request says kube-system", ns: "kube-system", op: "CREATE",
			objNS: nsEnforced, want: noPatch},
		{name: "UPDATE is never patched (gates are immutable)", ns: nsEnforced, op: "UPDATE", want: noPatch},
	} {
		t.Run(tt.name, func(t *testing.T) {
			uid := "pod-" + strings.ReplaceAll(tt.name, " ", "-")
			object := pod("p1", tt.spec)
			if tt.objNS != "" {
				object["metadata"].(obj)["namespace"] = tt.objNS
			}
			req := podRequest(uid, tt.ns, tt.op, object)
			req["dryRun"] = tt.dryRun
			out := p.admit(t, pathPod, reviewJSON(t, "admission.k8s.io/v1", req))
			r := out.Response
			if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" || string(r.UID) != uid {
				t.Errorf("answer is %s %s uid %q, want admission.k8s.io/v1 AdmissionReview uid %q", out.APIVersion, out.Kind, r.UID, uid)
			}
			if !r.Allowed {
				t.Fatalf("pod refused: %+v", r.Result)
			}
			if tt.want == noPatch {
				if len(r.Patch) != 0 {
					t.Fatalf("unexpected patch %s", r.Patch)
				}
				return
			}
			if r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch {
				t.Fatalf("patchType %v, want JSONPatch", r.PatchType)
			}
			patchedPod := applyPatch(t, mustJSON(t, object), r.Patch)
			if got := gatesOf(t, patchedPod); !equalStrings(got, tt.gates) {
				t.Fatalf("readinessGates after the patch %v, want %v (patch %s)", got, tt.gates, r.Patch)
			}
			// Idempotence: the API server re-invokes the webhook with the patched pod
			// (reinvocationPolicy: IfNeeded); the answer must be "allowed, no patch".
			var again obj
			if err := json.Unmarshal(patchedPod, &again); err != nil {
				t.Fatal(err)
			}
			req2 := podRequest(uid+"-again", tt.ns, tt.op, again)
			out2 := p.admit(t, pathPod, reviewJSON(t, "admission.k8s.io/v1", req2))
			if !out2.Response.Allowed || len(out2.Response.Patch) != 0 {
				t.Fatalf("re-invocation with the patched pod: allowed=%v patch %s, want allowed without patch",
					out2.Response.Allowed, out2.Response.Patch)
			}
		})
	}
}

func applyPatch(t *testing.T, doc, patch []byte) []byte {
	t.Helper()
	pt, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatalf("patch %s does not decode as RFC 6902 JSON Patch: %v", patch, err)
	}
	out, err := pt.Apply(doc)
	if err != nil {
		t.Fatalf("patch %s does not apply to the pod: %v", patch, err)
	}
	return out
}

func gatesOf(t *testing.T, podJSON []byte) []string {
	t.Helper()
	var p struct {
		Spec struct {
			ReadinessGates []struct {
				ConditionType string `json:"conditionType"`
			} `json:"readinessGates"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(podJSON, &p); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, g := range p.Spec.ReadinessGates {
		out = append(out, g.ConditionType)
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func probeNamespace(t *testing.T, p *proc) {
	optOut := obj{"strictgate.dev/enforce": "disabled"}
	for _, tt := range []struct {
		name          string
		old, new      obj
		user          obj
		allowed       bool
		wantInMessage string
	}{
		{"normal user adds the opt-out label", obj{}, optOut, normalUser, false, "strictgate:enforcement-admins"},
		{"normal user changes another label", obj{"a": "1"}, obj{"a": "2"}, normalUser, true, ""},
		{"normal user removes the opt-out label", optOut, obj{}, normalUser, true, ""},
		{"system:masters adds the opt-out label", obj{}, optOut, masterUser, true, ""},
		{"normal user creates an opted-out namespace", nil, optOut, normalUser, false, "strictgate:enforcement-admins"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			uid := "ns-" + strings.ReplaceAll(tt.name, " ", "-")
			req := namespaceUpdate(uid, "team-x", tt.old, tt.new, tt.user)
			if tt.old == nil {
				req["operation"] = "CREATE"
				delete(req, "oldObject")
			}
			out := p.admit(t, pathNS, reviewJSON(t, "admission.k8s.io/v1", req))
			r := out.Response
			if string(r.UID) != uid {
				t.Errorf("uid %q, want %q", r.UID, uid)
			}
			if r.Allowed != tt.allowed {
				t.Fatalf("allowed=%v (%+v), want %v", r.Allowed, r.Result, tt.allowed)
			}
			if !tt.allowed && (r.Result == nil || r.Result.Code != http.StatusForbidden || !strings.Contains(r.Result.Message, tt.wantInMessage)) {
				t.Errorf("denial %+v, want 403 naming %q", r.Result, tt.wantInMessage)
			}
		})
	}
}

func probeNetworkPolicy(t *testing.T, p *proc) {
	for _, tt := range []struct {
		name    string
		op      string
		object  obj
		user    obj
		dryRun  bool
		allowed bool
		rule    string
	}{
		{"compliant policy", "CREATE", compliantPolicy(nsEnforced, "ok"), normalUser, false, true, ""},
		{"0.0.0.0/0 without except", "CREATE", anyCIDRPolicy(nsEnforced, "open"), normalUser, false, false, "SG002"},
		{"dryRun: same verdict", "CREATE", anyCIDRPolicy(nsEnforced, "probe-dryrun-open"), normalUser, true, false, "SG002"},
		{"UPDATE to 0.0.0.0/0", "UPDATE", anyCIDRPolicy(nsEnforced, "open"), normalUser, false, false, "SG002"},
		{"DELETE of the generated default-deny by a user", "DELETE",
			networkPolicy(nsEnforced, "strictgate-default-deny", obj{"podSelector": obj{}, "policyTypes": []any{"Ingress", "Egress"}}),
			normalUser, false, false, "SG011"},
		{"DELETE of a user's policy", "DELETE", compliantPolicy(nsEnforced, "ok"), normalUser, false, true, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			uid := "np-" + strings.ReplaceAll(tt.name, " ", "-")
			out := p.admit(t, pathNP, reviewJSON(t, "admission.k8s.io/v1", npRequest(uid, nsEnforced, tt.op, tt.object, tt.user, tt.dryRun)))
			r := out.Response
			if string(r.UID) != uid || out.APIVersion != "admission.k8s.io/v1" {
				t.Errorf("answer %s uid %q, want admission.k8s.io/v1 uid %q", out.APIVersion, r.UID, uid)
			}
			if r.Allowed != tt.allowed {
				t.Fatalf("allowed=%v (%+v), want %v", r.Allowed, r.Result, tt.allowed)
			}
			if len(r.Patch) != 0 {
				t.Errorf("a validating webhook answered with a patch: %s", r.Patch)
			}
			if !tt.allowed && (r.Result == nil || r.Result.Code != http.StatusForbidden || !strings.Contains(r.Result.Message, tt.rule)) {
				t.Errorf("denial %+v, want 403 naming %s", r.Result, tt.rule)
			}
		})
	}
	// Values the API server's validation would reject (only a direct call can send
	// them) are refused as invalid (422), never judged by the hygiene rules or failed
	// with an evaluation error (5xx); the empty spec at the end is valid.
	for i, spec := range []obj{
		{"podSelector": obj{}, "ingress": []any{obj{"from": []any{obj{"ipBlock": obj{"cidr": "not-a-cidr", "except": []any{"x"}}}}}}},
		{"podSelector": obj{}, "egress": []any{obj{"to": []any{obj{"ipBlock": obj{"cidr": "300.1.1.1/33"}}}}}, "policyTypes": []any{"Egress"}},
		{"podSelector": obj{}, "ingress": []any{obj{"ports": []any{obj{"port": "", "endPort": -5, "protocol": "ICMP"}}}}},
		{"podSelector": obj{}, "ingress": []any{obj{"ports": []any{obj{"port": 70000, "endPort": 1}}}}},
		{"podSelector": obj{"matchExpressions": []any{obj{"key": "a", "operator": "Bogus", "values": []any{"x"}}}}, "policyTypes": []any{"Sideways"}},
		{"podSelector": obj{}, "ingress": []any{obj{"from": []any{obj{}}}}, "egress": []any{obj{"to": []any{obj{"namespaceSelector": obj{"matchLabels": obj{"": ""}}}}}}},
		{},
	} {
		uid := fmt.Sprintf("np-garbage-%d", i)
		out := p.admit(t, pathNP, reviewJSON(t, "admission.k8s.io/v1", npRequest(uid, nsEnforced, "CREATE", networkPolicy(nsEnforced, uid, spec), normalUser, false)))
		r := out.Response
		if string(r.UID) != uid {
			t.Errorf("%s: uid %q", uid, r.UID)
		}
		if len(spec) == 0 {
			if !r.Allowed && (r.Result == nil || r.Result.Code >= 500 || r.Result.Message == "") {
				t.Errorf("%s (%v): refusal %+v, want a 4xx verdict with a message", uid, spec, r.Result)
			}
			continue
		}
		if r.Allowed || r.Result == nil || r.Result.Code != http.StatusUnprocessableEntity || !strings.Contains(r.Result.Message, "is invalid") {
			t.Errorf("%s (%v): answer allowed=%v %+v, want refused 422 as invalid", uid, spec, r.Allowed, r.Result)
		}
	}
	// A dryRun request leaves no trace: no enforcement event in the logs.
	if strings.Contains(p.stderr.String(), "probe-dryrun-open") {
		t.Errorf("a dryRun request was logged as an enforcement event:\n%s", grepLines(p.stderr.String(), "probe-dryrun-open"))
	}
}

func probeV1beta1(t *testing.T, p *proc) {
	// The API server sends v1beta1 only if a configuration lists it first; the answer
	// must then be a v1beta1 AdmissionReview with the same uid, or a refusal.
	uid := "beta-1"
	req := podRequest(uid, nsEnforced, "CREATE", pod("beta", nil))
	code, body := p.post(t, http.MethodPost, pathPod, "application/json", reviewJSON(t, "admission.k8s.io/v1beta1", req))
	if code != http.StatusOK {
		assertRefused(t, code, body, uid)
		return
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &out); err != nil || out.Response == nil {
		t.Fatalf("answer %s: %v", body, err)
	}
	if out.APIVersion != "admission.k8s.io/v1beta1" || string(out.Response.UID) != uid {
		t.Fatalf("v1beta1 request answered as %s uid %q, want admission.k8s.io/v1beta1 uid %q", out.APIVersion, out.Response.UID, uid)
	}
	if out.Response.Allowed {
		applyPatch(t, mustJSON(t, pod("beta", nil)), out.Response.Patch)
	}
}

// assertRefused requires a clear refusal: an HTTP 4xx, or HTTP 200 carrying an
// AdmissionReview with allowed=false, a message and a 4xx code — never a 5xx, never a
// patch, never an admission. wantUID, when set, must be echoed.
func assertRefused(t *testing.T, code int, body []byte, wantUID string) {
	t.Helper()
	if bytes.Contains(body, []byte("goroutine ")) || bytes.Contains(body, []byte(".go:")) {
		t.Errorf("answer carries a stack trace: %.300s", body)
	}
	switch {
	case code >= 400 && code < 500:
		// A 4xx may carry an AdmissionReview; if it does, it must say why.
		var out admissionv1.AdmissionReview
		if json.Unmarshal(body, &out) == nil && out.Response != nil {
			if out.Response.Allowed || out.Response.Result == nil || out.Response.Result.Message == "" {
				t.Errorf("HTTP %d with an AdmissionReview that does not refuse with a message: %.300s", code, body)
			}
			if out.APIVersion == "" || out.Kind != "AdmissionReview" {
				t.Errorf("HTTP %d with an AdmissionReview without apiVersion/kind: %.300s", code, body)
			}
		}
		return
	case code != http.StatusOK:
		t.Errorf("HTTP %d (%.200s), want a 4xx or a denial", code, body)
		return
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &out); err != nil || out.Response == nil {
		t.Errorf("HTTP 200 without an AdmissionReview response (%v): %.300s", err, body)
		return
	}
	r := out.Response
	if out.APIVersion == "" || out.Kind != "AdmissionReview" {
		t.Errorf("refusal without apiVersion/kind (the API server could not read it): %.300s", body)
	}
	switch {
	case r.Allowed:
		t.Errorf("admitted: %.300s", body)
	case len(r.Patch) != 0:
		t.Errorf("refusal carries a patch: %.300s", body)
	case r.Result == nil || strings.TrimSpace(r.Result.Message) == "":
		t.Errorf("refusal without a message: %.300s", body)
	case r.Result.Code < 400 || r.Result.Code >= 500:
		t.Errorf("refusal with code %d (want 4xx): %.300s", r.Result.Code, body)
	}
	if wantUID != "" && string(r.UID) != wantUID {
		t.Errorf("refusal uid %q, want %q", r.UID, wantUID)
	}
}

func probeMalformed(t *testing.T, p *proc) {
	valid := map[string]obj{
		pathPod: podRequest("U", nsEnforced, "CREATE", pod("p", nil)),
		pathNS:  namespaceUpdate("U", "team-x", obj{}, obj{"strictgate.dev/enforce": "disabled"}, masterUser),
		pathNP:  npRequest("U", nsEnforced, "CREATE", compliantPolicy(nsEnforced, "ok"), normalUser, false),
	}
	wrongObject := map[string]obj{
		pathPod: namespaceObj("x", nil),
		pathNS:  pod("x", nil),
		pathNP:  pod("x", nil),
	}
	wrongKind := map[string][2]obj{
		pathPod: {npKind, npRes},
		pathNS:  {podKind, podRes},
		pathNP:  {podKind, podRes},
	}
	clone := func(o obj) obj {
		var c obj
		b, _ := json.Marshal(o)
		_ = json.Unmarshal(b, &c)
		return c
	}
	for _, path := range allPaths {
		full := string(reviewJSON(t, "admission.k8s.io/v1", valid[path]))
		with := func(mut func(r obj)) string {
			r := clone(valid[path])
			mut(r)
			return string(reviewJSON(t, "admission.k8s.io/v1", r))
		}
		cases := []struct {
			name, body, uid string
		}{
			{"empty body", "", ""},
			{"not JSON", "hello", ""},
			{"JSON null", "null", ""},
			{"JSON string", `"AdmissionReview"`, ""},
			{"JSON array", "[1,2,3]", ""},
			{"empty object", "{}", ""},
			{"truncated review (half)", full[:len(full)/2], ""},
			{"truncated review (one byte short)", full[:len(full)-1], ""},
			{"trailing garbage", full + "}{", ""},
			{"review without request", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, ""},
			{"request null", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}`, ""},
			{"request is a string", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":"x"}`, ""},
			{"empty request", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}`, ""},
			{"request key in the wrong case", strings.Replace(full, `"request":`, `"Request":`, 1), ""},
			{"request without uid", with(func(r obj) { delete(r, "uid") }), ""},
			{"uid is a number", with(func(r obj) { r["uid"] = 42 }), ""},
			{"review with a response instead of a request", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"U","allowed":true}}`, ""},
			{"wrong apiVersion admission.k8s.io/v2", strings.Replace(full, `"admission.k8s.io/v1"`, `"admission.k8s.io/v2"`, 1), ""},
			{"wrong apiVersion v1", strings.Replace(full, `"admission.k8s.io/v1"`, `"v1"`, 1), ""},
			{"wrong apiVersion group", strings.Replace(full, `"admission.k8s.io/v1"`, `"evil.example/v1"`, 1), ""},
			{"wrong kind", strings.Replace(full, `"kind":"AdmissionReview"`, `"kind":"AdmissionRequest"`, 1), ""},
			{"kind of another resource", with(func(r obj) { r["kind"], r["resource"] = wrongKind[path][0], wrongKind[path][1] }), "U"},
			{"object of another resource", with(func(r obj) { r["object"], r["oldObject"] = wrongObject[path], wrongObject[path] }), "U"},
			{"subresource", with(func(r obj) { r["subResource"] = "status" }), "U"},
			{"object missing", with(func(r obj) { delete(r, "object"); delete(r, "oldObject") }), "U"},
			{"object is a string", with(func(r obj) { r["object"] = "pod"; r["oldObject"] = "pod" }), ""},
			{"object is a number", with(func(r obj) { r["object"] = 7; r["oldObject"] = 7 }), ""},
			{"object is an array", with(func(r obj) { r["object"] = []any{1}; r["oldObject"] = []any{1} }), "U"},
			{"object with wrong field types", with(func(r obj) {
				bad := obj{"apiVersion": "v1", "kind": "Pod", "metadata": "x", "spec": []any{1}}
				if path == pathNP {
					bad = obj{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": obj{"name": 5}, "spec": obj{"podSelector": "all"}}
				}
				if path == pathNS {
					bad = obj{"apiVersion": "v1", "kind": "Namespace", "metadata": obj{"labels": []any{"a"}}}
				}
				r["object"], r["oldObject"] = bad, bad
			}), "U"},
			{"deeply nested object", strings.Replace(full, `"object":{`, `"object":{"x":`+strings.Repeat("[", 100000)+strings.Repeat("]", 100000)+`,`, 1), ""},
			{"operation unknown", with(func(r obj) { r["operation"] = "EXPLODE" }), ""},
			// (The Namespace path ignores request.namespace: Namespaces are cluster-scoped.)
			{"namespace with a slash", with(func(r obj) { r["namespace"] = "a/b" }), "U"},
			{"namespace not a DNS label", with(func(r obj) { r["namespace"] = "UPPER_case" }), "U"},
			{"namespace of 300 characters", with(func(r obj) { r["namespace"] = strings.Repeat("a", 300) }), "U"},
		}
		for _, tt := range cases {
			if path == pathNS && strings.HasPrefix(tt.name, "namespace ") {
				continue
			}
			t.Run(path+"/"+tt.name, func(t *testing.T) {
				code, body := p.post(t, http.MethodPost, path, "application/json", []byte(tt.body))
				if tt.name == "operation unknown" {
					// An operation the webhook has no opinion on may be allowed, but
					// never patched, never 5xx.
					if code >= 500 {
						t.Errorf("HTTP %d: %s", code, body)
					}
					var out admissionv1.AdmissionReview
					if json.Unmarshal(body, &out) == nil && out.Response != nil && len(out.Response.Patch) > 0 {
						t.Errorf("unknown operation patched: %s", body)
					}
					return
				}
				assertRefused(t, code, body, tt.uid)
			})
		}
	}
	// The server survives all of that and still answers properly.
	out := p.admit(t, pathPod, reviewJSON(t, "admission.k8s.io/v1", podRequest("after-malformed", nsEnforced, "CREATE", pod("p", nil))))
	if !out.Response.Allowed || len(out.Response.Patch) == 0 {
		t.Errorf("after the malformed bodies, a valid pod got %+v", out.Response)
	}
}

func probeHTTP(t *testing.T, p *proc) {
	podReview := reviewJSON(t, "admission.k8s.io/v1", podRequest("http-1", nsEnforced, "CREATE", pod("p", nil)))
	for _, path := range allPaths {
		for _, tt := range []struct {
			name, method, contentType string
			body                      []byte
		}{
			{"GET without body", http.MethodGet, "", nil},
			{"GET with a valid review", http.MethodGet, "application/json", podReview},
			{"PUT with a valid review", http.MethodPut, "application/json", podReview},
			{"DELETE", http.MethodDelete, "", nil},
			{"text/plain", http.MethodPost, "text/plain", podReview},
			{"no content type", http.MethodPost, "", podReview},
			{"YAML content type", http.MethodPost, "application/yaml", podReview},
			{"form content type", http.MethodPost, "application/x-www-form-urlencoded", podReview},
		} {
			t.Run(path+"/"+tt.name, func(t *testing.T) {
				code, body := p.post(t, tt.method, path, tt.contentType, tt.body)
				assertRefused(t, code, body, "")
			})
		}
	}
	// A media-type parameter is still JSON.
	out := p.admitCT(t, pathPod, "application/json; charset=utf-8", podReview)
	if !out.Response.Allowed || len(out.Response.Patch) == 0 || out.Response.UID != "http-1" {
		t.Errorf("application/json; charset=utf-8: %+v", out.Response)
	}

	// Headers beyond the server's limit are refused, not buffered.
	req, _ := http.NewRequest(http.MethodPost, p.base+pathPod, bytes.NewReader(podReview))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Probe", strings.Repeat("h", 2<<20))
	if resp, err := p.httpClient().Do(req); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Errorf("2 MiB header: %d %.200s, want 431", resp.StatusCode, body)
		}
	}
	for _, path := range []string{"/", "/mutate-v1-pods", "/mutate-v1-pod/x", "/metrics", "/healthz", "/readyz", "/../mutate-v1-pod", "/validate", "/%2e%2e/etc/passwd"} {
		t.Run("unknown path "+path, func(t *testing.T) {
			code, body := p.post(t, http.MethodPost, path, "application/json", podReview)
			switch {
			case code >= 400 && code < 500:
			case code >= 300 && code < 400:
				// The mux redirects an unclean path to its clean form; the probe
				// client does not follow redirects, and a redirect admits nothing.
			case code == http.StatusOK:
				assertRefused(t, code, body, "")
			default:
				t.Errorf("POST %s: %d %s, want 404", path, code, body)
			}
		})
	}
}

// probeConcurrent sends many reviews at once: each answer belongs to its request.
func probeConcurrent(t *testing.T, p *proc) {
	const n = 64
	errs := make(chan error, n)
	for i := range n {
		go func() {
			uid := fmt.Sprintf("conc-%d", i)
			ns := nsEnforced
			if i%2 == 1 {
				ns = nsOptedOut
			}
			b, _ := json.Marshal(obj{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": podRequest(uid, ns, "CREATE", pod("c", nil))})
			resp, err := p.httpClient().Post(p.base+pathPod, "application/json", bytes.NewReader(b))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			var out admissionv1.AdmissionReview
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Response == nil {
				errs <- fmt.Errorf("%s: %d, %v", uid, resp.StatusCode, err)
				return
			}
			if string(out.Response.UID) != uid || !out.Response.Allowed || (len(out.Response.Patch) > 0) != (ns == nsEnforced) {
				errs <- fmt.Errorf("%s in %s: answer uid %q allowed %v patch %q", uid, ns, out.Response.UID, out.Response.Allowed, out.Response.Patch)
				return
			}
			errs <- nil
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func probeHuge(t *testing.T, p *proc) {
	// Just under the 7 MiB request limit: a large but legal pod is still judged.
	bigPod := pod("big", nil)
	bigPod["metadata"].(obj)["annotations"] = obj{"a": strings.Repeat("x", 5<<20)}
	start := time.Now()
	out := p.admit(t, pathPod, reviewJSON(t, "admission.k8s.io/v1", podRequest("big-1", nsEnforced, "CREATE", bigPod)))
	if !out.Response.Allowed || len(out.Response.Patch) == 0 || string(out.Response.UID) != "big-1" {
		t.Errorf("5 MiB pod: %+v", out.Response)
	}
	t.Logf("5 MiB pod answered in %v", time.Since(start).Round(time.Millisecond))

	// A NetworkPolicy as large as the request limit allows: judged (SG010 names the
	// datapath limit) in bounded time, not evaluated for minutes.
	var rules []any
	for i := 0; len(rules) < 4200; i++ { // 67200 prefixes > MaxPrefixesPerPodDirection (65536)
		var peers []any
		for j := 0; j < 16; j++ {
			peers = append(peers, obj{"ipBlock": obj{"cidr": fmt.Sprintf("10.%d.%d.0/24", i%250, j)}})
		}
		rules = append(rules, obj{"from": peers, "ports": []any{obj{"protocol": "TCP", "port": 1000 + i%1000}}})
	}
	bigNP := networkPolicy(nsEnforced, "big", obj{"podSelector": obj{}, "policyTypes": []any{"Ingress"}, "ingress": rules})
	body := reviewJSON(t, "admission.k8s.io/v1", npRequest("big-np", nsEnforced, "CREATE", bigNP, normalUser, false))
	// The bound is on the CPU time the webhook process spends, not on the wall clock:
	// a loaded machine stretches the latter without the judgement costing more.
	cpuBefore := p.cpuTime(t)
	start = time.Now()
	out = p.admit(t, pathNP, body)
	took := time.Since(start)
	cpu := p.cpuTime(t) - cpuBefore
	t.Logf("%d KiB NetworkPolicy (%d rules x 16 peers) judged in %v (webhook CPU %v): allowed=%v %.200s", len(body)>>10, len(rules), took.Round(time.Millisecond), cpu, out.Response.Allowed, out.Response.Result.Message)
	if out.Response.Allowed || !strings.Contains(out.Response.Result.Message, "SG010") {
		t.Errorf("huge NetworkPolicy: allowed=%v %+v, want SG010 denial", out.Response.Allowed, out.Response.Result)
	}
	if cpu > 10*time.Second {
		t.Errorf("huge NetworkPolicy cost the webhook %v of CPU: more than the API server's longest webhook timeout even on an idle machine", cpu)
	}

	// Over the limit: refused with 413, for every path.
	hugePod := pod("huge", nil)
	hugePod["metadata"].(obj)["annotations"] = obj{"a": strings.Repeat("x", 8<<20)}
	for _, path := range allPaths {
		code, body := p.post(t, http.MethodPost, path, "application/json", reviewJSON(t, "admission.k8s.io/v1", podRequest("huge-1", nsEnforced, "CREATE", hugePod)))
		assertRefused(t, code, body, "")
		if code == http.StatusOK && !bytes.Contains(body, []byte("413")) && !bytes.Contains(body, []byte("too large")) {
			t.Errorf("%s: 8 MiB body refused without saying it is too large: %.300s", path, body)
		}
	}
	// A never-ending body of whitespace is cut off at the limit, not read forever.
	pr, pw := io.Pipe()
	go func() {
		chunk := bytes.Repeat([]byte(" "), 64<<10)
		for i := 0; i < 256; i++ { // 16 MiB
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPost, p.base+pathPod, pr)
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.httpClient().Do(req)
	if err != nil {
		t.Logf("16 MiB streamed body: %v (server closed the connection: acceptable)", err)
		pr.Close()
		return
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	pr.Close()
	assertRefused(t, resp.StatusCode, body, "")
}

var bucketRE = regexp.MustCompile(`strictgate_webhook_request_duration_seconds_bucket\{([^}]*)\} (\d+)`)

func probeMetrics(t *testing.T, p *proc) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(p.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	subMS := map[string]bool{}
	counted := map[string]bool{}
	for _, m := range bucketRE.FindAllStringSubmatch(string(body), -1) {
		labels := m[1]
		le := regexp.MustCompile(`le="([^"]+)"`).FindStringSubmatch(labels)
		if le == nil {
			continue
		}
		if v, err := strconv.ParseFloat(le[1], 64); err == nil && v < 1e-3 {
			subMS[le[1]] = true
		}
		for _, path := range allPaths {
			if strings.Contains(labels, `path="`+path+`"`) && le[1] == "+Inf" && m[2] != "0" {
				counted[path] = true
			}
		}
	}
	if len(subMS) < 2 {
		t.Errorf("latency histogram has %d sub-millisecond buckets %v, want several", len(subMS), subMS)
	}
	for _, path := range allPaths {
		if !counted[path] {
			t.Errorf("no request counted for %s in strictgate_webhook_request_duration_seconds", path)
		}
	}
	for _, want := range []string{`result="invalid"`, `result="allowed"`, `result="denied"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics has no series with %s", want)
		}
	}
}

func probeRotation(t *testing.T, p *proc) {
	old := p.bundle
	start := time.Now()
	b := p.writeCerts(t) // new CA and serving certificate, swapped in as the kubelet does
	addr := strings.TrimPrefix(p.base, "https://")
	newLeaf := pemDER(t, b.Cert)
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := tls.DialWithDialer(dialer(), "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reading which certificate is served
		if err == nil {
			served := conn.ConnectionState().PeerCertificates[0].Raw
			conn.Close()
			if bytes.Equal(served, newLeaf) {
				break
			}
			if !bytes.Equal(served, pemDER(t, old.Cert)) {
				t.Fatal("served certificate is neither the old nor the new one")
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("new certificate not served within 30s of replacing the files (last error %v)", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("first rotation picked up after %v", time.Since(start).Round(time.Millisecond))
	// A broken update (key of another certificate, then garbage) keeps the last good
	// certificate in force and the process ready.
	other, err := certs.Generate([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ cert, key []byte }{{b.Cert, other.Key}, {[]byte("garbage"), []byte("garbage")}, {nil, nil}} {
		p.installSecretVolume(t, bad.cert, bad.key, b.CACert)
		time.Sleep(1500 * time.Millisecond) // the watcher sees the swap at once; give it time to act
		conn, err := tls.DialWithDialer(dialer(), "tcp", addr, &tls.Config{RootCAs: p.caPool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatalf("after a broken certificate update the last good one is no longer served: %v", err)
		}
		if served := conn.ConnectionState().PeerCertificates[0].Raw; !bytes.Equal(served, newLeaf) {
			t.Errorf("after a broken update a different certificate is served")
		}
		conn.Close()
		if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(p.probes + "/readyz"); err != nil || resp.StatusCode != 200 {
			t.Errorf("/readyz after a broken certificate update: %v %v", resp, err)
		} else {
			resp.Body.Close()
		}
	}
	// And a good update after the broken ones is picked up.
	start = time.Now()
	b = p.writeCerts(t)
	newLeaf = pemDER(t, b.Cert)
	deadline = time.Now().Add(30 * time.Second)
	for {
		conn, err := tls.DialWithDialer(dialer(), "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reading which certificate is served
		if err == nil {
			served := conn.ConnectionState().PeerCertificates[0].Raw
			conn.Close()
			if bytes.Equal(served, newLeaf) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("good certificate after broken updates not served within 30s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("good rotation after broken ones picked up after %v", time.Since(start).Round(time.Millisecond))

	// Clients trusting only the new CA get answers; the process was not restarted.
	out := p.admit(t, pathPod, reviewJSON(t, "admission.k8s.io/v1", podRequest("after-rotation", nsEnforced, "CREATE", pod("p", nil))))
	if !out.Response.Allowed || len(out.Response.Patch) == 0 {
		t.Errorf("after rotation: %+v", out.Response)
	}
	select {
	case <-p.exited:
		t.Fatal("process exited during rotation")
	default:
	}
	c := &http.Client{Timeout: 5 * time.Second}
	if resp, err := c.Get(p.probes + "/readyz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("/readyz after rotation: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}

func pemDER(t *testing.T, p []byte) []byte {
	t.Helper()
	b, _ := pem.Decode(p)
	if b == nil {
		t.Fatal("certificate is not PEM")
	}
	return b.Bytes
}

func dialer() *net.Dialer {
	return &net.Dialer{Timeout: 5 * time.Second, Deadline: time.Now().Add(10 * time.Second)}
}

// probeLogs sends bodies with secrets in them, broken in the ways that make decoders
// quote their input, and then reads everything the process wrote.
func probeLogs(t *testing.T, p *proc) {
	const marker = "sgprobe-SECRET-7f3a9c"
	secretPod := pod("s", obj{"containers": []any{obj{"name": "c", "image": "i", "env": []any{obj{"name": "TOKEN", "value": marker}}}}})
	full := string(reviewJSON(t, "admission.k8s.io/v1", podRequest("secret-1", nsEnforced, "CREATE", secretPod)))
	bodies := []string{
		full,
		full[:strings.Index(full, marker)+len(marker)+3],          // truncated right after the secret
		strings.Replace(full, `"kind":"AdmissionReview",`, "", 1), // no kind
		strings.Replace(full, `"apiVersion":"admission.k8s.io/v1",`, "", 1),
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","object":{"a":"` + marker + `",}}}`,
		"Authorization: Bearer " + marker,
		"apiVersion: admission.k8s.io/v1\nkind: AdmissionReview\nrequest: {uid: " + marker + ", object: [",
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"` + marker + `"}}`,
	}
	for _, path := range allPaths {
		for _, b := range bodies {
			p.post(t, http.MethodPost, path, "application/json", []byte(b))
		}
		p.post(t, http.MethodPost, path, "text/plain", []byte(full))
	}
	time.Sleep(200 * time.Millisecond) // let the log lines land
	logs := p.stderr.String()
	if strings.Contains(logs, marker) {
		t.Errorf("request content reached the logs:\n%s", grepLines(logs, marker))
	}
	for _, s := range p.secrets {
		if s != "" && strings.Contains(logs, s) {
			t.Errorf("a credential (private key or token) reached the logs")
		}
	}
	for _, bad := range []string{"PRIVATE KEY", "goroutine ", "panic:", "[recovered]", "Bearer "} {
		if strings.Contains(logs, bad) {
			t.Errorf("logs contain %q:\n%s", bad, grepLines(logs, bad))
		}
	}
	// Every line is JSON (the documented log format), so log shippers can parse it.
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if line != "" && !json.Valid([]byte(line)) {
			t.Errorf("log line is not JSON: %.200s", line)
		}
	}
	t.Logf("the process wrote %d log lines, %d bytes", strings.Count(logs, "\n"), len(logs))
	if os.Getenv("WEBHOOKPROBE_DUMP_LOGS") != "" {
		t.Logf("stderr:\n%s", logs)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			if len(l) > 400 {
				l = l[:400] + fmt.Sprintf("…(%d bytes)", len(l))
			}
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// probeNoCert starts further processes whose certificate directory is empty, or holds
// a certificate with another certificate's key, or garbage: none may ever report
// ready (each may exit, naming the certificate file).
func probeNoCert(t *testing.T, p *proc) {
	a, err := certs.Generate([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, err := certs.Generate([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name      string
		cert, key []byte
	}{
		{"empty directory", nil, nil},
		{"key of another certificate", a.Cert, b.Key},
		{"garbage", []byte("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"), []byte("nope")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.cert != nil {
				if err := os.WriteFile(filepath.Join(dir, certs.CertFile), tt.cert, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, certs.KeyFile), tt.key, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			probeNeverReady(t, p, dir)
		})
	}
}

func probeNeverReady(t *testing.T, p *proc, empty string) {
	port, probePort := freePort(t), freePort(t)
	out := &syncBuffer{}
	cmd := exec.Command(p.bin, "webhook", "--kubeconfig="+p.kubecfg, "--namespace="+nsOwn, "--cert-dir="+empty,
		"--host=127.0.0.1", fmt.Sprintf("--port=%d", port), "--metrics-bind-address=0",
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", probePort), "--leader-elect=false")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
		}
	}()
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			if err == nil {
				t.Fatalf("exited 0 without a certificate:\n%s", out.String())
			}
			if !strings.Contains(out.String(), "tls.crt") {
				t.Errorf("exit without a usable certificate does not name tls.crt:\n%s", out.String())
			}
			exited <- err // for the deferred cleanup
			return
		default:
		}
		if resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", probePort)); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Fatalf("/readyz is 200 with no certificate to serve")
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// probeStop sends SIGTERM as the kubelet does: the process stops within seconds (it
// releases its Lease) and exits 0, with nothing but JSON on stderr.
func probeStop(t *testing.T, p *proc) {
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("still running 20s after SIGTERM")
	}
	t.Logf("stopped %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	if p.exitErr != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", p.exitErr, tail(p.stderr.String(), 2000))
	}
	logs := p.stderr.String()
	for _, bad := range []string{"goroutine ", "panic:"} {
		if strings.Contains(logs, bad) {
			t.Errorf("logs contain %q:\n%s", bad, grepLines(logs, bad))
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if line != "" && !json.Valid([]byte(line)) {
			t.Errorf("log line is not JSON: %.200s", line)
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
