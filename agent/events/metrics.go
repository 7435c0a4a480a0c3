package events

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strictgate/strictgate/agent/datapath"
	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/internal/contract"
)

// CounterSource reads the kernel's per-pod counters (*datapath.Datapath).
type CounterSource interface {
	Counters() ([]datapath.PodCounters, error)
}

// UnknownNamespace labels counters of interfaces the agent cannot name yet (a pod the
// CNI plugin attached before the agent saw it).
const UnknownNamespace = "unknown"

var (
	dropCountDesc = prometheus.NewDesc("network_policy_drop_count_total",
		"Packets dropped by NetworkPolicy, from the kernel's counters.", []string{"direction", "namespace"}, nil)
	dropBytesDesc = prometheus.NewDesc("network_policy_drop_bytes_total",
		"Bytes dropped by NetworkPolicy, from the kernel's counters.", []string{"direction", "namespace"}, nil)
	packetsDesc = prometheus.NewDesc("strictgate_policy_verdict_packets_total",
		"Packets judged by the datapath, by verdict (ACCEPT, DENY, AUDIT), from the kernel's counters.", []string{"direction", "namespace", "verdict"}, nil)
	bytesDesc = prometheus.NewDesc("strictgate_policy_verdict_bytes_total",
		"Bytes judged by the datapath, by verdict, from the kernel's counters.", []string{"direction", "namespace", "verdict"}, nil)
	scrapeErrDesc = prometheus.NewDesc("strictgate_counter_read_errors_total",
		"Failed reads of the kernel's counters at scrape time.", nil, nil)
)

type counts = [2][contract.NumVerdicts]datapath.Counter

// slotID identifies one registration of a pod: a slot reused by another interface is
// another pod.
type slotID struct {
	ifindex int
	slot    uint32
}

type slotSeen struct {
	ns   string
	base counts // part of last already attributed elsewhere (a previous namespace label)
	last counts
}

// Collector exports the kernel counters at scrape time. Counters of pods that went
// away (and of slots reused) are folded into per-namespace totals, so every exported
// series only ever grows, as Prometheus counters must.
type Collector struct {
	src       CounterSource
	namespace func(ifindex int) (string, bool)

	mu      sync.Mutex
	seen    map[slotID]*slotSeen
	retired map[string]*counts
	errors  float64
}

// NewCollector reads src and labels each interface with namespace(ifindex).
func NewCollector(src CounterSource, namespace func(ifindex int) (string, bool)) *Collector {
	return &Collector{src: src, namespace: namespace, seen: map[slotID]*slotSeen{}, retired: map[string]*counts{}}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dropCountDesc, dropBytesDesc, packetsDesc, bytesDesc, scrapeErrDesc} {
		ch <- d
	}
}

func addCounts(dst *counts, a, sub counts) {
	for d := range dst {
		for v := range dst[d] {
			dst[d][v].Packets += a[d][v].Packets - sub[d][v].Packets
			dst[d][v].Bytes += a[d][v].Bytes - sub[d][v].Bytes
		}
	}
}

func decreased(now, before counts) bool {
	for d := range now {
		for v := range now[d] {
			if now[d][v].Packets < before[d][v].Packets || now[d][v].Bytes < before[d][v].Bytes {
				return true
			}
		}
	}
	return false
}

func (c *Collector) retire(ns string, s *slotSeen) {
	r := c.retired[ns]
	if r == nil {
		r = &counts{}
		c.retired[ns] = r
	}
	addCounts(r, s.last, s.base)
}

// Totals reads the kernel and returns the monotonic totals per namespace.
func (c *Collector) Totals() (map[string]counts, error) {
	cur, err := c.src.Counters()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.errors++
		return nil, err
	}
	present := map[slotID]bool{}
	totals := map[string]counts{}
	for _, pc := range cur {
		id := slotID{pc.Ifindex, pc.Slot}
		present[id] = true
		ns, ok := c.namespace(pc.Ifindex)
		if !ok {
			ns = UnknownNamespace
		}
		s := c.seen[id]
		switch {
		case s == nil:
			s = &slotSeen{ns: ns}
			c.seen[id] = s
		case decreased(pc.ByDir, s.last): // counters were reset: a new registration
			c.retire(s.ns, s)
			s.base, s.ns = counts{}, ns
		case s.ns != ns:
			c.retire(s.ns, s)
			s.base, s.ns = s.last, ns
		}
		s.last = pc.ByDir
		t := totals[ns]
		addCounts(&t, s.last, s.base)
		totals[ns] = t
	}
	for id, s := range c.seen {
		if !present[id] {
			c.retire(s.ns, s)
			delete(c.seen, id)
		}
	}
	for ns, r := range c.retired {
		t := totals[ns]
		addCounts(&t, *r, counts{})
		totals[ns] = t
	}
	return totals, nil
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	totals, err := c.Totals()
	c.mu.Lock()
	ch <- prometheus.MustNewConstMetric(scrapeErrDesc, prometheus.CounterValue, c.errors)
	c.mu.Unlock()
	if err != nil {
		return
	}
	verdicts := []datapath.Verdict{datapath.VerdictAllow, datapath.VerdictDeny, datapath.VerdictAudit}
	for ns, t := range totals {
		for _, d := range []rules.Direction{rules.Ingress, rules.Egress} {
			deny := t[d][datapath.VerdictDeny]
			ch <- prometheus.MustNewConstMetric(dropCountDesc, prometheus.CounterValue, float64(deny.Packets), d.String(), ns)
			ch <- prometheus.MustNewConstMetric(dropBytesDesc, prometheus.CounterValue, float64(deny.Bytes), d.String(), ns)
			for _, v := range verdicts {
				ch <- prometheus.MustNewConstMetric(packetsDesc, prometheus.CounterValue, float64(t[d][v].Packets), d.String(), ns, v.LogName())
				ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.CounterValue, float64(t[d][v].Bytes), d.String(), ns, v.LogName())
			}
		}
	}
}
