package webhook

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/strictgate/strictgate/certs"
)

// histogramCount is how many requests RequestDuration has seen for path and result.
func histogramCount(t *testing.T, path, result string) uint64 {
	t.Helper()
	m := &dto.Metric{}
	if err := RequestDuration.WithLabelValues(path, result).(prometheus.Histogram).Write(m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// counterValue reads a counter from controller-runtime's registry by name and labels.
func counterValue(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

type badInput struct {
	name, body, contentType string
}

// badInputs are HTTP bodies no handler may answer with a panic, a 5xx or an admission.
func badInputs() []badInput {
	review := func(req string) string {
		return `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":` + req + `}`
	}
	podReq := func(obj string) string {
		return review(`{"uid":"u1","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"team-a","operation":"CREATE","object":` + obj + `}`)
	}
	full := podReq(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"x"}]}}`)
	huge := podReq(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","annotations":{"a":"` + strings.Repeat("x", 8<<20) + `"}},"spec":{}}`)
	return []badInput{
		{name: "empty body"},
		{name: "not JSON", body: "hello"},
		{name: "JSON null", body: "null"},
		{name: "JSON array", body: "[1,2,3]"},
		{name: "truncated review", body: full[:len(full)/2]},
		{name: "review without request", body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`},
		{name: "empty request", body: review(`{}`)},
		{name: "wrong review kind", body: `{"apiVersion":"v1","kind":"Pod"}`},
		{name: "wrong content type", body: full, contentType: "text/plain"},
		{name: "object is a string", body: podReq(`"pod"`)},
		{name: "object is a number", body: podReq(`42`)},
		{name: "spec is a list", body: podReq(`{"apiVersion":"v1","kind":"Pod","spec":[]}`)},
		{name: "readinessGates is an object", body: podReq(`{"apiVersion":"v1","kind":"Pod","spec":{"readinessGates":{"a":1}}}`)},
		{name: "labels are a list", body: review(`{"uid":"u","kind":{"version":"v1","kind":"Namespace"},"operation":"CREATE","object":{"metadata":{"labels":[1]}}}`)},
		{name: "huge object", body: huge},
	}
}

// checkRejected asserts a handler's HTTP answer to bad input: no 5xx, and either a
// 4xx status or an AdmissionReview that does not admit with a 4xx result code.
func checkRejected(t *testing.T, status int, body []byte) {
	t.Helper()
	if status >= 500 {
		t.Fatalf("status %d: %s", status, truncate(body))
	}
	if strings.Contains(string(body), "goroutine ") || strings.Contains(string(body), "panic") {
		t.Fatalf("answer carries a panic or stack: %s", truncate(body))
	}
	if status >= 400 {
		return
	}
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &ar); err != nil || ar.Response == nil {
		t.Fatalf("status %d with an unreadable AdmissionReview (%v): %s", status, err, truncate(body))
	}
	if ar.Response.Allowed {
		t.Fatalf("bad input admitted: %s", truncate(body))
	}
	if ar.Response.Result == nil || ar.Response.Result.Code < 400 || ar.Response.Result.Code >= 500 || ar.Response.Result.Message == "" {
		t.Fatalf("want a 4xx result with a message, got %+v", ar.Response.Result)
	}
}

func truncate(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

// writeTestCert replaces the serving certificate in dir with a fresh self-signed one
// and returns its serial number.
func writeTestCert(t *testing.T, dir, host string) string {
	t.Helper()
	b, err := certs.Generate([]string{host, "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.Write(dir, b); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b.Cert)
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.String()
}
