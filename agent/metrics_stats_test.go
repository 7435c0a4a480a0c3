package agent

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/strictgate/strictgate/agent/datapath"
	"github.com/strictgate/strictgate/agent/datapath/packet"
	"github.com/strictgate/strictgate/agent/events"
	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/charts"
	"github.com/strictgate/strictgate/internal/testenv"
)

// scrape GETs a Prometheus text exposition and returns every sample by its series
// (name plus labels as written) and the set of metric names from the # TYPE lines.
func scrape(t testing.TB, url string) (map[string]float64, map[string]bool) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	samples, names := map[string]float64{}, map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if f := strings.Fields(l); len(f) >= 4 && f[0] == "#" && f[1] == "TYPE" {
			names[f[2]] = true
			continue
		}
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", l, err)
		}
		samples[l[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return samples, names
}

// TestPrivilegedDatapathEventStatsMetrics forces a real datapath to lose events (ring
// buffer full, nobody reading) and to rate-limit them, and reads both back from the
// agent's metrics server.
func TestPrivilegedDatapathEventStatsMetrics(t *testing.T) {
	testenv.RequireRoot(t, "loads eBPF programs")
	d, err := datapath.Open(datapath.Options{Ephemeral: true})
	if err != nil {
		t.Fatalf("open datapath: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	const pod = 400
	if _, err := d.Register(pod, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
		t.Fatal(err)
	}
	iso := &rules.PodRules{Ingress: rules.DirectionRules{State: rules.StateIsolated}, Egress: rules.DirectionRules{State: rules.StateIsolated}}
	if _, err := d.Program(pod, iso); err != nil {
		t.Fatal(err)
	}
	if err := d.SetEventMode(datapath.EventsAll); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(NewStatsCollector(d))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	addr := testenv.FreeAddr(t)
	if _, err := serveMetrics(ctx, addr, reg, &Agent{log: logr.Discard(), ready: make(chan struct{})}); err != nil {
		t.Fatal(err)
	}
	url := "http://" + addr + "/metrics"

	port := uint16(20000)
	deny := func(n int) {
		for i := 0; i < n; i++ {
			port++ // a new flow each time: no conntrack entry meets it
			if _, err := d.RunPacket(pod, rules.Egress, packet.Flow(packet.ProtoUDP, netip.MustParseAddr("10.0.0.1"), port, netip.MustParseAddr("10.6.6.6"), 53)); err != nil {
				t.Fatal(err)
			}
		}
	}
	const (
		sent    = "strictgate_datapath_events_sent_total"
		lost    = "strictgate_datapath_events_lost_total"
		limited = "strictgate_datapath_events_rate_limited_total"
	)
	before, names := scrape(t, url)
	for _, n := range []string{sent, lost, limited, "strictgate_datapath_stats_read_errors_total"} {
		if !names[n] {
			t.Fatalf("metric %s not exported; got %v", n, names)
		}
	}

	// No limit and nobody reading: 256 KiB of ring buffer hold a few thousand events, so
	// 6000 denials must overflow it.
	if err := d.SetRateLimit(0, 0); err != nil {
		t.Fatal(err)
	}
	deny(6000)
	afterLoss, _ := scrape(t, url)
	st, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if got := afterLoss[lost] - before[lost]; got == 0 || got != float64(st.EventsLost) {
		t.Errorf("%s rose by %v after 6000 unread events; the kernel counts %d lost", lost, got, st.EventsLost)
	}
	if got := afterLoss[sent] - before[sent]; got == 0 || got+afterLoss[lost]-before[lost] != 6000 {
		t.Errorf("%s rose by %v, lost by %v: want them to sum to the 6000 events", sent, got, afterLoss[lost]-before[lost])
	}
	if afterLoss[limited] != before[limited] {
		t.Errorf("%s moved without a rate limit: %v -> %v", limited, before[limited], afterLoss[limited])
	}

	// One event per second per CPU: of 50 denials at most one per CPU gets through
	// (the ring is still full, so it is lost), the rest are rate-limited.
	if err := d.SetRateLimit(1, 1); err != nil {
		t.Fatal(err)
	}
	deny(50)
	afterLimit, _ := scrape(t, url)
	gotLimited := afterLimit[limited] - afterLoss[limited]
	gotOther := afterLimit[sent] + afterLimit[lost] - afterLoss[sent] - afterLoss[lost]
	if gotLimited < 48 || gotLimited+gotOther != 50 {
		t.Errorf("%s rose by %v and sent+lost by %v after 50 denials at 1/s: want ≥ 48 limited, 50 in all", limited, gotLimited, gotOther)
	}
	if afterLimit["strictgate_datapath_stats_read_errors_total"] != 0 {
		t.Errorf("stats read errors: %v", afterLimit["strictgate_datapath_stats_read_errors_total"])
	}
}

// failingStats is a StatsSource whose reads fail.
type failingStats struct{}

func (failingStats) Stats() (datapath.Stats, error) { return datapath.Stats{}, fmt.Errorf("map gone") }

func TestStatsCollectorReadError(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewStatsCollector(failingStats{}))
	for want := 1; want <= 2; want++ {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		if len(mfs) != 1 || mfs[0].GetName() != "strictgate_datapath_stats_read_errors_total" || mfs[0].GetMetric()[0].GetCounter().GetValue() != float64(want) {
			t.Fatalf("scrape %d of a failing source: %v; want only the error counter at %d", want, mfs, want)
		}
	}
}

// dashboardMetrics returns every metric name the chart's Grafana dashboard queries.
func dashboardMetrics(t *testing.T) map[string][]string {
	t.Helper()
	m, err := charts.DashboardMetrics()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// webhookMetric reports the webhook's metric names (checked against a scrape of the
// running webhook in webhook/dashboard_test.go); the agent's test checks all others.
func webhookMetric(name string) bool {
	return strings.HasPrefix(name, "strictgate_webhook_") || strings.HasPrefix(name, "strictgate_hygiene_")
}

// TestPrivilegedDashboardAgentMetricsExported checks every agent metric the dashboard
// queries against a scrape of the agent's metrics (all of its collectors, over a real
// datapath holding a pod), so a panel naming a metric the agent does not export fails.
func TestPrivilegedDashboardAgentMetricsExported(t *testing.T) {
	testenv.RequireRoot(t, "loads eBPF programs")
	d, err := datapath.Open(datapath.Options{Ephemeral: true})
	if err != nil {
		t.Fatalf("open datapath: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	if _, err := d.Register(401, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	a := &Agent{log: logr.Discard(), ready: make(chan struct{})}
	if err := newMetrics(a).register(reg); err != nil {
		t.Fatal(err)
	}
	reg.MustRegister(events.NewCollector(d, func(int) (string, bool) { return "shop", true }), NewStatsCollector(d))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	addr := testenv.FreeAddr(t)
	if _, err := serveMetrics(ctx, addr, reg, a); err != nil {
		t.Fatal(err)
	}
	_, names := scrape(t, "http://"+addr+"/metrics")
	want := dashboardMetrics(t)
	if len(want) < 8 {
		t.Fatalf("dashboard names only %d metrics: %v", len(want), want)
	}
	for m, panels := range want {
		base := m
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(m, suf); ok && (names[b] || webhookMetric(b)) {
				base = b
			}
		}
		if webhookMetric(base) {
			continue
		}
		if !names[base] {
			t.Errorf("dashboard panels %q query %s, which the agent does not export", panels, m)
		}
	}
}
