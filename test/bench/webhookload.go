package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/strictgate/strictgate/test/bench/webhookload"
)

// serveWebhookLoadFlag makes this binary the load test's server process (started by
// webhookLoadSection with its own binary): it prints one JSON line (address and
// certificate) and serves until its stdin closes. A separate process keeps the
// server's allocations and RSS apart from the load generator's.
const serveWebhookLoadFlag = "-serve-webhook-load"

type loadServerHello struct {
	Addr string `json:"addr"`
	Cert []byte `json:"cert"` // DER
}

func serveWebhookLoad() error {
	// The handlers log through controller-runtime; the load test's requests are
	// compliant, so there is nothing to log, and an unset logger would complain.
	ctrllog.SetLogger(logr.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, err := webhookload.NewHandlers(ctx, webhookload.NewFixture())
	if err != nil {
		return err
	}
	cert, _, err := webhookload.SelfSigned()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	if err := json.NewEncoder(os.Stdout).Encode(loadServerHello{Addr: ln.Addr().String(), Cert: cert.Certificate[0]}); err != nil {
		return err
	}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin) // the parent closes it to stop us
		cancel()
	}()
	return webhookload.Serve(ctx, ln, h, cert)
}

// loadSeries is one ladder of the load test.
type loadSeries struct {
	name, kind string // kind: mutation, strictgate, baseline
	pods       int
	steps      []webhookload.Step
}

// webhookLoadRates is the rate ladder (requests per second), about ×1.5 per step.
var webhookLoadRates = []float64{25, 40, 60, 100, 150, 250, 400, 600, 1000, 1500, 2000, 3000, 4500, 6000, 8000}

// webhookLoadSection runs the load test (issue 13, table 1) against a server process
// and renders its section.
func webhookLoadSection(step time.Duration) (Section, error) {
	self, err := os.Executable()
	if err != nil {
		return Section{}, err
	}
	cmd := exec.Command(self, serveWebhookLoadFlag)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return Section{}, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return Section{}, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return Section{}, err
	}
	defer func() {
		stdin.Close()
		_ = cmd.Wait()
	}()
	var hello loadServerHello
	if err := json.NewDecoder(bufio.NewReader(stdout)).Decode(&hello); err != nil {
		return Section{}, fmt.Errorf("load server: %w", err)
	}
	leaf, err := x509.ParseCertificate(hello.Cert)
	if err != nil {
		return Section{}, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	const workers = 64
	c := webhookload.Client(pool, workers)
	base := "https://" + hello.Addr
	stats := webhookload.StatsFrom(c, base)
	ctx := context.Background()

	// The decisions must agree before anything is timed (the server checks the same
	// thing in TestBaselineAgrees; here it is the running binary's handlers).
	agreeH, err := webhookload.NewHandlers(ctx, webhookload.NewFixture())
	if err != nil {
		return Section{}, err
	}
	var reqs []webhookload.Target
	series := []*loadSeries{}
	pod, err := webhookload.PodRequest(webhookload.Namespace(10))
	if err != nil {
		return Section{}, err
	}
	body, err := webhookload.ReviewBody(pod)
	if err != nil {
		return Section{}, err
	}
	reqs = append(reqs, webhookload.Target{Name: "pod mutation", URL: base + webhookload.PathMutatePod, Body: body, Expect: []byte(`"patch":`)})
	series = append(series, &loadSeries{name: "pod mutation", kind: "mutation"})
	for _, n := range webhookload.PodCounts {
		r := webhookload.NetworkPolicyRequest(webhookload.Namespace(n), false)
		if resp := agreeH.Strictgate.Handle(ctx, r); !resp.Allowed || len(resp.Warnings) > 0 {
			return Section{}, fmt.Errorf("the load test's policy is not compliant in %s: %+v", r.Namespace, resp.Result)
		}
		body, err := webhookload.ReviewBody(r)
		if err != nil {
			return Section{}, err
		}
		for _, k := range []struct{ kind, path string }{{"strictgate", webhookload.PathValidateNP}, {"baseline", webhookload.PathGatekeeperNP}} {
			name := fmt.Sprintf("NetworkPolicy, %s, %d pods", k.kind, n)
			reqs = append(reqs, webhookload.Target{Name: name, URL: base + k.path, Body: body, Expect: []byte(`"allowed":true`)})
			series = append(series, &loadSeries{name: name, kind: k.kind, pods: n})
		}
	}
	if err := webhookload.CheckAgreement(ctx, agreeH, webhookload.AgreementRequests()); err != nil {
		return Section{}, err
	}

	start := time.Now()
	for i, t := range reqs {
		// Warm connections, caches and the JIT-free but lazily built parts.
		webhookload.Run(ctx, c, t, 100, time.Second, workers, stats)
		fmt.Fprintf(os.Stderr, "bench: webhook load: %s\n", t.Name)
		series[i].steps = webhookload.Ladder(ctx, c, t, webhookLoadRates, step, workers, stats)
	}
	took := time.Since(start)
	rss := procStatus(cmd.Process.Pid, "VmHWM")
	return Section{Name: "Webhook under load", Owner: owner, Body: renderWebhookLoad(series, step, workers, took, rss)}, nil
}

func renderWebhookLoad(series []*loadSeries, step time.Duration, workers int, took time.Duration, rss string) string {
	var b strings.Builder
	b.WriteString("## Webhook under load (real HTTPS, keep-alive)\n\n")
	b.WriteString("`test/bench/webhookload`: a server process with the webhook's own handlers and TLS options (TLS 1.3,\n")
	b.WriteString("HTTP/1.1) on loopback, and an open-loop load generator in the `make bench` process: requests are\n")
	fmt.Fprintf(&b, "scheduled at a fixed rate for %s per step (×1.5 per step, after 1 s of warm-up at 100 req/s), up to %d in\n", step, workers)
	b.WriteString("flight over keep-alive connections, and each latency runs from the request's *scheduled* time, so\n")
	b.WriteString("queueing counts. A ladder stops at the first step that fails a request, falls 5 % behind its rate or\n")
	b.WriteString("has p99 over 100 ms. Generator and server share the machine's two cores, as a webhook shares its\n")
	b.WriteString("node; the server's cluster facts come from memory (pods behind the informer-fed label index).\n\n")
	b.WriteString("The **baseline** is the same Rego rules behind the same server, evaluated Gatekeeper-style: per request\n")
	b.WriteString("the object's JSON decoded into generic maps, the input assembled from them and the namespace's whole\n")
	b.WriteString("inventory (every pod, with selector matching done in Go — generous to the baseline) and converted\n")
	b.WriteString("with `ast.InterfaceToValue`, then the same prepared query. Before timing, both are checked to reach\n")
	b.WriteString("the same decisions (`webhookload.CheckAgreement`).\n\n")
	b.WriteString("**Goals**: pod mutation p99 ≤ 1 ms at 2,000 req/s; NetworkPolicy validation p99 ≤ 2 ms at 500 req/s at\n")
	b.WriteString("every pod count; ≥ 5× the baseline's throughput (the highest rate achieved, at saturation).\n\n")
	b.WriteString("| requests | highest rate with p99 < 5 ms | at the goal rate: p50 / p99 / p99.9 | throughput (saturated at) | allocs / request |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: |\n")
	var verdicts []string
	peak := map[string]float64{}
	for _, s := range series {
		goalRate, goalP99 := 500.0, 2*time.Millisecond
		if s.kind == "mutation" {
			goalRate, goalP99 = 2000, time.Millisecond
		}
		top := webhookload.MaxRateUnder(s.steps, 5*time.Millisecond)
		thr := webhookload.Throughput(s.steps)
		peak[fmt.Sprintf("%s/%d", s.kind, s.pods)] = thr
		at := "not reached"
		var atStep *webhookload.Step
		for i := range s.steps {
			if s.steps[i].Rate == goalRate {
				atStep = &s.steps[i]
				at = fmt.Sprintf("%s / %s / %s", ms(s.steps[i].P50), ms(s.steps[i].P99), ms(s.steps[i].P999))
			}
		}
		sat := fmt.Sprintf("≥ %.0f req/s (not saturated)", thr)
		allocs := 0.0
		if n := len(s.steps); n > 0 {
			if last := s.steps[n-1]; last.Saturated() {
				sat = fmt.Sprintf("%.0f req/s (%.0f)", thr, last.Rate)
			}
			for _, st := range s.steps {
				allocs = max(allocs, st.AllocsPerRequest)
			}
		}
		fmt.Fprintf(&b, "| %s | %.0f req/s | %s | %s | %.0f |\n", s.name, top, at, sat, allocs)
		if s.kind != "baseline" {
			ok := atStep != nil && !atStep.Saturated() && atStep.P99 <= goalP99
			verdicts = append(verdicts, fmt.Sprintf("%s: p99 ≤ %s at %.0f req/s %s", s.name, ms(goalP99), goalRate, met(ok)))
		}
	}
	for _, n := range webhookload.PodCounts {
		sg, bl := peak[fmt.Sprintf("strictgate/%d", n)], peak[fmt.Sprintf("baseline/%d", n)]
		if bl <= 0 {
			verdicts = append(verdicts, fmt.Sprintf("NetworkPolicy at %d pods: the baseline answered nothing", n))
			continue
		}
		verdicts = append(verdicts, fmt.Sprintf("NetworkPolicy at %d pods: %.0f req/s, %.1f× the baseline's %.0f (goal ≥ 5×) %s", n, sg, sg/bl, bl, met(sg >= 5*bl)))
	}
	fmt.Fprintf(&b, "\nServer peak RSS %s; the run took %s.\n\n", rss, took.Round(time.Second))
	for _, v := range verdicts {
		b.WriteString("- " + v + "\n")
	}
	b.WriteString("\nBoth evaluate the same Rego; what differs is how the input is built. The baseline's cost grows with\n")
	b.WriteString("the namespace (every pod converted per request), strictgate's does not (typed objects rendered straight\n")
	b.WriteString("to OPA values, only the selected pods, from the label index); in a small namespace the rules' own\n")
	b.WriteString("evaluation dominates both. Tail latencies include garbage collection and the generator's own CPU on\n")
	b.WriteString("the same two cores.\n")
	return b.String()
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) + " ms"
}

// procStatus is one field of /proc/PID/status ("VmHWM" -> "123456 kB"), or "unknown".
func procStatus(pid int, field string) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && k == field {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				if kb, err := strconv.Atoi(f[0]); err == nil {
					return fmt.Sprintf("%.0f MB", float64(kb)/1024)
				}
			}
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
