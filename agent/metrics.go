package agent

import (
	"errors"
	"net"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
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
