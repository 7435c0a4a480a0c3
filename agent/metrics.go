package agent

import (
	"errors"
	"net"
	"net/netip"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"

	"github.com/strictgate/strictgate/agent/datapath"
)

// metrics are the agent's own metrics; the kernel's verdict counters are exported by
// agent/events.
type metrics struct {
	programming    prometheus.Histogram
	gateLatency    prometheus.Histogram
	datapathErrors *prometheus.CounterVec
	pods           []prometheus.Collector
}

// latencyBuckets span 1 ms to ~16 s.
var latencyBuckets = prometheus.ExponentialBuckets(0.001, 2, 15)

func newMetrics(a *Agent) *metrics {
	m := &metrics{
		programming: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "strictgate_policy_programming_seconds",
			Help:    "Time from a change of a pod, policy, namespace or service to the pod's new rules being in the kernel.",
			Buckets: latencyBuckets,
		}),
		gateLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "strictgate_gate_latency_seconds",
			Help:    "Time from the agent seeing a pod's IP to the pod's strictgate.dev/policy-programmed condition turning True.",
			Buckets: latencyBuckets,
		}),
		datapathErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strictgate_datapath_errors_total",
			Help: "Failed datapath operations, by operation.",
		}, []string{"op"}),
	}
	count := func(s podStatus) func() float64 {
		return func() float64 {
			a.mu.Lock()
			defer a.mu.Unlock()
			n := 0
			for _, st := range a.pods {
				if st.status == s {
					n++
				}
			}
			return float64(n)
		}
	}
	m.pods = []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "strictgate_pods_programmed", Help: "Local pods whose policy is programmed in the kernel."}, count(statusProgrammed)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "strictgate_pods_gated", Help: "Local pods waiting for their policy to be programmed."}, count(statusPending)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "strictgate_pods_failed", Help: "Local pods whose policy could not be programmed."}, count(statusFailed)),
	}
	return m
}

func (m *metrics) register(r prometheus.Registerer) error {
	var errs []error
	for _, c := range append([]prometheus.Collector{m.programming, m.gateLatency, m.datapathErrors}, m.pods...) {
		errs = append(errs, r.Register(c))
	}
	return errors.Join(errs...)
}

// LocalAddrs returns the addresses of this network namespace's interfaces, loopback and
// IPv6 link-local excluded: the node's own addresses, as pods see them.
func LocalAddrs() ([]netip.Addr, error) {
	list, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range list {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() && ip.Is6() || a.IP.Equal(net.IPv6zero) {
			continue
		}
		out = append(out, ip)
	}
	return out, nil
}

// StatsSource reads the datapath's node-wide statistics (*datapath.Datapath).
type StatsSource interface {
	Stats() (datapath.Stats, error)
}

// datapathStat is one field of datapath.Stats exported as a counter.
type datapathStat struct {
	desc *prometheus.Desc
	get  func(datapath.Stats) uint64
}

// datapathStats are the kernel's node-wide counters (sg_stats), read at scrape time. They
// are per-CPU counters in a pinned map that survives agent restarts, so they only ever
// grow while the node's datapath exists: Prometheus counters as they are.
var datapathStats = []datapathStat{
	{prometheus.NewDesc("strictgate_datapath_events_sent_total",
		"Policy events the datapath wrote to its ring buffer for the agent's policy event log.", nil, nil),
		func(s datapath.Stats) uint64 { return s.EventsSent }},
	{prometheus.NewDesc("strictgate_datapath_events_lost_total",
		"Policy events the datapath could not write because the ring buffer was full (the agent read too slowly); the packets were still judged and counted, only their log lines are missing.", nil, nil),
		func(s datapath.Stats) uint64 { return s.EventsLost }},
	{prometheus.NewDesc("strictgate_datapath_events_rate_limited_total",
		"Policy events the datapath suppressed because the per-CPU event rate limit (agent.policyEventLogs rate and burst) was exceeded; the packets were still judged and counted.", nil, nil),
		func(s datapath.Stats) uint64 { return s.EventsRateLimited }},
	{prometheus.NewDesc("strictgate_datapath_no_pod_packets_total",
		"Packets dropped on an interface that carries strictgate's programs but has no pod entry.", nil, nil),
		func(s datapath.Stats) uint64 { return s.NoPod }},
	{prometheus.NewDesc("strictgate_datapath_unparseable_packets_total",
		"Packets the datapath could not parse (dropped unless their direction was open).", nil, nil),
		func(s datapath.Stats) uint64 { return s.Unparseable }},
	{prometheus.NewDesc("strictgate_datapath_fragments_unknown_total",
		"Non-first IP fragments whose first fragment the datapath had not seen.", nil, nil),
		func(s datapath.Stats) uint64 { return s.FragmentUnknown }},
	{prometheus.NewDesc("strictgate_datapath_conntrack_created_total",
		"Connection tracking entries the datapath created.", nil, nil),
		func(s datapath.Stats) uint64 { return s.ConntrackCreated }},
	{prometheus.NewDesc("strictgate_datapath_conntrack_recheck_denied_total",
		"Tracked connections cut because a newer policy denies them.", nil, nil),
		func(s datapath.Stats) uint64 { return s.ConntrackRecheckDenied }},
	{prometheus.NewDesc("strictgate_datapath_conntrack_expired_total",
		"Connection tracking entries found expired.", nil, nil),
		func(s datapath.Stats) uint64 { return s.ConntrackExpired }},
}

var statsReadErrDesc = prometheus.NewDesc("strictgate_datapath_stats_read_errors_total",
	"Failed reads of the datapath's node-wide statistics at scrape time.", nil, nil)

// StatsCollector exports the datapath's node-wide statistics, among them the policy
// events lost (ring buffer full) and rate-limited, at scrape time.
type StatsCollector struct {
	src    StatsSource
	mu     sync.Mutex
	errors float64
}

// NewStatsCollector reads src at every scrape.
func NewStatsCollector(src StatsSource) *StatsCollector { return &StatsCollector{src: src} }

// Describe implements prometheus.Collector.
func (c *StatsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, s := range datapathStats {
		ch <- s.desc
	}
	ch <- statsReadErrDesc
}

// Collect implements prometheus.Collector. A failed read exports no stale values, only
// the error counter, so a broken read shows as such rather than as a flat line.
func (c *StatsCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.src.Stats()
	c.mu.Lock()
	if err != nil {
		c.errors++
	}
	ch <- prometheus.MustNewConstMetric(statsReadErrDesc, prometheus.CounterValue, c.errors)
	c.mu.Unlock()
	if err != nil {
		return
	}
	for _, s := range datapathStats {
		ch <- prometheus.MustNewConstMetric(s.desc, prometheus.CounterValue, float64(s.get(st)))
	}
}
