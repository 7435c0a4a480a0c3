package agent

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/strictgate/strictgate/agent/cniserver"
	"github.com/strictgate/strictgate/agent/datapath"
	"github.com/strictgate/strictgate/agent/eventlog/hostfile"
	"github.com/strictgate/strictgate/agent/events"
	"github.com/strictgate/strictgate/internal/contract"
)

// RESTConfig loads kubeconfig, or the in-cluster configuration when it is empty.
func RESTConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster configuration (pass --kubeconfig outside a cluster): %w", err)
		}
		return c, nil
	}
	c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", kubeconfig, err)
	}
	return c, nil
}

// ConfigureDatapath applies the node-wide switches of cfg.
func ConfigureDatapath(d *datapath.Datapath, cfg Config) error {
	em, err := contract.ParseEventLogMode(string(cfg.EventMode))
	if err != nil {
		return err
	}
	if err := d.SetEventMode(events.DatapathMode(em)); err != nil {
		return fmt.Errorf("set event mode: %w", err)
	}
	burst := uint32(cfg.EventRate / 5)
	if burst == 0 && cfg.EventRate > 0 {
		burst = 1
	}
	if err := d.SetRateLimit(uint32(cfg.EventRate), burst); err != nil {
		return fmt.Errorf("set event rate: %w", err)
	}
	if err := d.SetGlobalAudit(cfg.Mode == contract.ModeAudit); err != nil {
		return fmt.Errorf("set audit: %w", err)
	}
	if err := d.SetAllowHost(cfg.AllowHost); err != nil {
		return fmt.Errorf("set allow-host: %w", err)
	}
	return nil
}

// Main runs the agent process: datapath, API client, event log, metrics server and the
// reconciler, until ctx ends. stdout receives the policy event log.
func Main(ctx context.Context, cfg Config, stdout io.Writer, log logr.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	rc, err := RESTConfig(cfg.Kubeconfig)
	if err != nil {
		return err
	}
	rc.UserAgent = "strictgate-agent/" + cfg.NodeName
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	// Adopt the pins (keeping rules, conntrack and counters) and move attached pods onto
	// this binary's programs.
	dp, err := datapath.Open(datapath.Options{PinRoot: cfg.PinRoot, UpgradePrograms: true})
	if err != nil {
		return fmt.Errorf("open datapath: %w", err)
	}
	defer dp.Close()
	// Pods whose interfaces vanished while no agent ran (e.g. deleted during an
	// uninstall) were dropped by Open; say so, since their pins are gone now.
	for _, c := range dp.Collected() {
		log.Info("collected stale datapath entry", "ifindex", c.Ifindex, "slot", c.Slot, "reason", c.Reason)
	}
	if err := ConfigureDatapath(dp, cfg); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	rec, stopEvents := NewEventRecorder(ctx, cs, cfg.NodeName)
	defer stopEvents()
	cnps, err := cnpclient.NewForConfig(rc)
	if err != nil {
		return err
	}
	a, err := New(cfg, Deps{Client: cs, Datapath: NewDatapath(dp, cfg.Mode == contract.ModeAudit), Events: rec, Registerer: reg, Log: log, ClusterPolicies: cnps})
	if err != nil {
		return err
	}
	reg.MustRegister(events.NewCollector(dp, a.NamespaceOfIfindex), NewStatsCollector(dp))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 4)

	w := stdout
	if cfg.EventLogFile != "" && cfg.EventLogMaxSizeMB > 0 {
		// A size-rotated node file for log shippers: the same lines as stdout.
		f, err := hostfile.Open(hostfile.Options{Path: cfg.EventLogFile, MaxSizeMB: cfg.EventLogMaxSizeMB, MaxBackups: cfg.EventLogMaxBackups})
		if err != nil {
			return err
		}
		defer f.Close()
		w = io.MultiWriter(stdout, f)
	} else if cfg.EventLogFile != "" {
		f, err := os.OpenFile(cfg.EventLogFile, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o640)
		if err != nil {
			return fmt.Errorf("open event log: %w", err)
		}
		defer f.Close()
		w = io.MultiWriter(stdout, f)
	}
	if cfg.EventMode != contract.EventLogNone { // Validate parsed it
		rd, err := dp.NewEventReader()
		if err != nil {
			return err
		}
		go func() { errc <- events.Run(ctx, rd, events.NewLogger(w, cfg.NodeName, cfg.EventMode, a)) }()
	}
	if cfg.MetricsAddr != "" {
		srv, err := serveMetrics(ctx, cfg.MetricsAddr, reg, a)
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	if cfg.CNISocket != "" {
		srv := &cniserver.Server{Path: cfg.CNISocket, Handler: a.ProgramAtAdd, Timeout: cfg.CNITimeout, Log: log.WithName("cni")}
		l, err := srv.Listen()
		if err != nil {
			return err
		}
		go func() { errc <- srv.Serve(ctx, l) }()
	}
	go func() { errc <- a.Run(ctx) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		if err != nil {
			return err
		}
	}
	cancel()
	return nil
}
