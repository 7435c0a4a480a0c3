package webhookload

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

func handlers(t *testing.T) *Handlers {
	t.Helper()
	h, err := NewHandlers(context.Background(), NewFixture())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestBaselineAgrees: the Gatekeeper-style baseline must reach strictgate's decisions
// on every request the load test sends, or the comparison measures different work.
func TestBaselineAgrees(t *testing.T) {
	h := handlers(t)
	reqs := AgreementRequests()
	if err := CheckAgreement(context.Background(), h, reqs); err != nil {
		t.Fatal(err)
	}
	for _, r := range reqs {
		resp := h.Strictgate.Handle(context.Background(), r)
		if open := r.Name == "open"; resp.Allowed == open || (!open && len(resp.Warnings) > 0) {
			t.Errorf("%s/%s: allowed=%v warnings=%q; the compliant policy must pass cleanly and the open one be refused", r.Namespace, r.Name, resp.Allowed, resp.Warnings)
		}
	}
}

// TestCheckAgreementCatchesDifference: a baseline that decides otherwise is reported.
func TestCheckAgreementCatchesDifference(t *testing.T) {
	h := handlers(t)
	h.Baseline = admission.HandlerFunc(func(context.Context, admission.Request) admission.Response { return admission.Allowed("") })
	if err := CheckAgreement(context.Background(), h, []admission.Request{NetworkPolicyRequest(Namespace(10), true)}); err == nil {
		t.Fatal("a baseline allowing the open policy agreed with strictgate")
	}
}

// TestServeAndRun drives the real HTTPS server at a low rate: every request answered
// as expected, latencies and allocations reported; a TLS 1.2 client is refused.
func TestServeAndRun(t *testing.T) {
	h := handlers(t)
	cert, pool, err := SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, h, cert) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	base := "https://" + ln.Addr().String()
	c := Client(pool, 4)
	pod, err := PodRequest(Namespace(10))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path   string
		req    admission.Request
		expect string
	}{
		{PathMutatePod, pod, `"patch":`},
		{PathValidateNP, NetworkPolicyRequest(Namespace(5000), false), `"allowed":true`},
		{PathGatekeeperNP, NetworkPolicyRequest(Namespace(5000), false), `"allowed":true`},
		{PathValidateNP, NetworkPolicyRequest(Namespace(10), true), `"allowed":false`},
	} {
		body, err := ReviewBody(tc.req)
		if err != nil {
			t.Fatal(err)
		}
		s := Run(ctx, c, Target{Name: tc.path, URL: base + tc.path, Body: body, Expect: []byte(tc.expect)}, 100, 300*time.Millisecond, 4, StatsFrom(c, base))
		if s.Sent != 30 || s.OK != s.Sent || s.Failed != 0 || s.P50 <= 0 || s.P99 < s.P50 || s.AllocsPerRequest <= 0 {
			t.Errorf("%s: %+v", tc.path, s)
		}
	}
	// An answer without the expected marker is a failure, not a success.
	body, _ := ReviewBody(NetworkPolicyRequest(Namespace(10), true))
	if s := Run(ctx, c, Target{URL: base + PathValidateNP, Body: body, Expect: []byte(`"allowed":true`)}, 100, 50*time.Millisecond, 2, StatsFrom(c, base)); s.OK != 0 || s.Failed != s.Sent || !strings.Contains(s.FirstError, "lacks") {
		t.Errorf("refused policy counted as success: %+v", s)
	}
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12}}}
	if _, err := old.Get(base + PathStats); err == nil {
		t.Error("a TLS 1.2 client was served")
	}
}

func TestQuantile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{nil, 0.5, 0},
		{ms(7), 0.99, 7 * time.Millisecond},
		{ms(hundred...), 0.5, 50 * time.Millisecond},
		{ms(hundred...), 0.99, 99 * time.Millisecond},
		{ms(hundred...), 0.999, 100 * time.Millisecond},
	} {
		if got := Quantile(tc.in, tc.q); got != tc.want {
			t.Errorf("Quantile(%d values, %v) = %v, want %v", len(tc.in), tc.q, got, tc.want)
		}
	}
}

func TestMaxRateUnder(t *testing.T) {
	steps := []Step{
		{Rate: 100, Achieved: 100, P99: time.Millisecond},
		{Rate: 200, Achieved: 199, P99: 3 * time.Millisecond},
		{Rate: 400, Achieved: 398, P99: 6 * time.Millisecond}, // over the limit
		{Rate: 800, Achieved: 500, P99: time.Millisecond},     // did not keep up
		{Rate: 1600, Achieved: 1600, P99: time.Millisecond, Failed: 1},
	}
	if got := MaxRateUnder(steps, 5*time.Millisecond); got != 200 {
		t.Errorf("MaxRateUnder = %v, want 200", got)
	}
	if got := Throughput(steps); got != 1600 {
		t.Errorf("Throughput = %v, want 1600", got)
	}
	if !steps[3].Saturated() || steps[1].Saturated() {
		t.Error("Saturated misjudges a step")
	}
}
