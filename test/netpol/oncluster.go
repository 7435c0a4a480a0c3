package netpol

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/strictgate/strictgate/charts"
	"github.com/strictgate/strictgate/test/cluster"
	"github.com/strictgate/strictgate/test/e2e/harness"
)

// ClusterOptions shape one run on a cluster.
type ClusterOptions struct {
	Focus, Skip string
	ReportDir   string
	// NoInstall runs the suite against the cluster as it is (no strictgate): to check
	// the suite itself, where every isolating spec must fail.
	NoInstall bool
	// Keep leaves strictgate installed afterwards.
	Keep bool
	// Values are the chart values; nil means the conformance profile.
	Values map[string]any
	// Log receives progress and the suite's output.
	Log io.Writer
	// Procs is the number of parallel suite processes (RunOptions.Procs).
	Procs int
}

// OnCluster imports the suite's agnhost image, helm-installs strictgate with the
// conformance profile, runs the suite and uninstalls strictgate again (the cluster is
// shared: other suites expect plain Kubernetes). The caller holds the cluster
// exclusively (cluster.EnsureExclusive, cluster.WithExclusiveLock).
func OnCluster(ctx context.Context, cl *cluster.Cluster, s Suite, o ClusterOptions) (rep *Report, err error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	ref, err := ImportAgnhost(ctx, cl, s)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Log, "netpol: %s imported into the node's containerd\n", ref)
	if !o.NoInstall {
		if o.Values == nil {
			if _, o.Values, err = Values(); err != nil {
				return nil, err
			}
		}
		in, err := Install(ctx, cl, o.Values, o.Log)
		if err != nil {
			// A failed `helm upgrade --install --wait` leaves a release behind; the
			// cluster is shared, so take it out again.
			uctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			if uerr := uninstall(uctx, cl); uerr != nil {
				fmt.Fprintf(o.Log, "netpol: clean up after the failed install: %v\n", uerr)
			}
			return nil, fmt.Errorf("install strictgate: %w", err)
		}
		if !o.Keep {
			defer func() {
				uctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				defer cancel()
				if uerr := in.Uninstall(uctx); uerr != nil && err == nil {
					err = fmt.Errorf("uninstall strictgate: %w", uerr)
				}
			}()
		}
	}
	fmt.Fprintf(o.Log, "netpol: running %s --ginkgo.focus=%q --ginkgo.skip=%q in %d process(es) (primary family %s)\n", s.Binary, o.Focus, o.Skip, max(o.Procs, 1), cl.Config.PrimaryFamily())
	return s.Run(ctx, RunOptions{
		Kubeconfig: cl.Kubeconfig,
		Kubectl:    cl.Kubectl(),
		Focus:      o.Focus,
		Skip:       o.Skip,
		ReportDir:  o.ReportDir,
		Out:        o.Log,
		Procs:      o.Procs,
	})
}

// uninstall removes a release that a failed install left behind (helm uninstall, the
// CNI chain entry, the datapath pins), like harness.Install.Uninstall.
func uninstall(ctx context.Context, cl *cluster.Cluster) error {
	h, err := charts.New(cl.Kubeconfig)
	if err != nil {
		return err
	}
	return (&harness.Install{Cluster: cl, Helm: h}).Uninstall(ctx)
}
