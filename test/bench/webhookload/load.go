package webhookload

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Client is the load generator's HTTPS client: keep-alive connections (the API
// server's webhook client keeps them too), TLS 1.3, trusting only pool.
func Client(pool *x509.CertPool, conns int) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13},
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			MaxConnsPerHost:     conns,
			IdleConnTimeout:     time.Minute,
		},
	}
}

// Target is one kind of request: a path, the body POSTed, and a marker the answer
// must contain (e.g. `"allowed":true`), so a fast error never counts as a success.
type Target struct {
	Name, URL string
	Body      []byte
	Expect    []byte
}

// Step is the outcome of one rate: requests are scheduled at a fixed rate (open
// loop) and each latency is measured from its scheduled time, so queueing behind a
// slow server counts (no coordinated omission).
type Step struct {
	Rate     float64       `json:"rate"`
	Duration time.Duration `json:"duration"`
	Sent     int           `json:"sent"`
	OK       int           `json:"ok"`
	Failed   int           `json:"failed"`
	Achieved float64       `json:"achieved"` // successful requests per second
	P50      time.Duration `json:"p50"`
	P99      time.Duration `json:"p99"`
	P999     time.Duration `json:"p999"`
	// AllocsPerRequest is the server's heap allocations over the step divided by the
	// requests it answered (HTTP, TLS and admission included).
	AllocsPerRequest float64 `json:"allocsPerRequest"`
	FirstError       string  `json:"firstError,omitempty"`
}

// Saturated reports whether the server did not keep up at this rate.
func (s Step) Saturated() bool {
	return s.Failed > 0 || s.Achieved < 0.95*s.Rate || s.P99 > 100*time.Millisecond
}

// Run sends t at rate requests per second for d with at most workers in flight.
func Run(ctx context.Context, c *http.Client, t Target, rate float64, d time.Duration, workers int, stats func() (Stats, error)) Step {
	n := int(rate * d.Seconds())
	step := Step{Rate: rate, Duration: d, Sent: n}
	before, _ := stats()
	due := make(chan time.Time, workers)
	type result struct {
		lat time.Duration
		err error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	next := 0
	var mu sync.Mutex
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for at := range due {
				err := do(ctx, c, t)
				lat := time.Since(at)
				mu.Lock()
				results[next] = result{lat, err}
				next++
				mu.Unlock()
			}
		}()
	}
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	for i := range n {
		at := start.Add(time.Duration(i) * interval)
		if w := time.Until(at); w > 0 {
			time.Sleep(w)
		}
		due <- at
	}
	close(due)
	wg.Wait()
	elapsed := time.Since(start)
	after, _ := stats()

	lats := make([]time.Duration, 0, n)
	for _, r := range results {
		if r.err != nil {
			step.Failed++
			if step.FirstError == "" {
				step.FirstError = r.err.Error()
			}
			continue
		}
		step.OK++
		lats = append(lats, r.lat)
	}
	step.Achieved = float64(step.OK) / elapsed.Seconds()
	slices.Sort(lats)
	step.P50, step.P99, step.P999 = Quantile(lats, 0.50), Quantile(lats, 0.99), Quantile(lats, 0.999)
	if answered := step.OK + step.Failed; answered > 0 && after.Mallocs > before.Mallocs {
		step.AllocsPerRequest = float64(after.Mallocs-before.Mallocs) / float64(answered)
	}
	return step
}

// Quantile of sorted latencies (nearest rank); 0 for none.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

func do(ctx context.Context, c *http.Client, t Target) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(t.Body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, body)
	}
	if !bytes.Contains(body, t.Expect) {
		return fmt.Errorf("answer lacks %s: %.300s", t.Expect, body)
	}
	return nil
}

// Ladder raises the rate through rates until a step saturates (that step is kept:
// it shows what saturation looks like) and returns the steps.
func Ladder(ctx context.Context, c *http.Client, t Target, rates []float64, d time.Duration, workers int, stats func() (Stats, error)) []Step {
	var out []Step
	for _, r := range rates {
		if ctx.Err() != nil {
			break
		}
		s := Run(ctx, c, t, r, d, workers, stats)
		out = append(out, s)
		if s.Saturated() {
			break
		}
	}
	return out
}

// MaxRateUnder is the highest rate whose step answered everything at that rate with
// p99 under limit; 0 when none did.
func MaxRateUnder(steps []Step, limit time.Duration) float64 {
	best := 0.0
	for _, s := range steps {
		if s.Failed == 0 && s.Achieved >= 0.95*s.Rate && s.P99 < limit && s.Rate > best {
			best = s.Rate
		}
	}
	return best
}

// Throughput is the highest rate any step achieved (successful requests per second).
func Throughput(steps []Step) float64 {
	best := 0.0
	for _, s := range steps {
		best = max(best, s.Achieved)
	}
	return best
}

// StatsFrom reads the server's PathStats.
func StatsFrom(c *http.Client, base string) func() (Stats, error) {
	return func() (Stats, error) {
		resp, err := c.Get(base + PathStats)
		if err != nil {
			return Stats{}, err
		}
		defer resp.Body.Close()
		var s Stats
		return s, json.NewDecoder(resp.Body).Decode(&s)
	}
}
