// Command scale runs the scale harness (package test/scale) on its own kube-apiserver +
// etcd and prints one Markdown table row per mode. `make scale` runs it at issue 11's
// size; flags scale it down.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/strictgate/strictgate/test/controlplane"
	"github.com/strictgate/strictgate/test/scale"
)

func main() {
	cfg := scale.DefaultConfig()
	flag.IntVar(&cfg.Pods, "pods", cfg.Pods, "pod objects at the start")
	flag.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "simulated nodes")
	flag.IntVar(&cfg.Policies, "policies", cfg.Policies, "NetworkPolicies")
	flag.IntVar(&cfg.Agents, "agents", cfg.Agents, "in-process agents on random nodes")
	flag.Float64Var(&cfg.ChurnRate, "churn-rate", cfg.ChurnRate, "pod lives (create + delete) per second, cluster-wide")
	flag.DurationVar(&cfg.ChurnDuration, "churn", cfg.ChurnDuration, "churn duration")
	flag.IntVar(&cfg.PodsPerNS, "pods-per-namespace", cfg.PodsPerNS, "pods per namespace")
	flag.Int64Var(&cfg.Seed, "seed", cfg.Seed, "random seed")
	modes := flag.String("modes", string(scale.ModeToday), "comma-separated agent designs to measure, in order")
	flag.Parse()
	if err := cfg.Validate(); err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, cfg, strings.Split(*modes, ",")); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, cfg scale.Config, modes []string) error {
	dir, err := controlplane.AssetsDir()
	if err != nil {
		return err
	}
	env := &envtest.Environment{BinaryAssetsDirectory: dir}
	rc, err := env.Start()
	if err != nil {
		return fmt.Errorf("start kube-apiserver + etcd: %w", err)
	}
	defer func() { _ = env.Stop() }()
	h, err := scale.New(ctx, rc, cfg, log.Printf)
	if err != nil {
		return err
	}
	var rows []string
	for _, m := range modes {
		r, err := h.Measure(ctx, scale.Mode(m))
		if err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
		rows = append(rows, row(r))
	}
	fmt.Printf("\n%d pods, %d nodes, %d NetworkPolicies, %d agents, churn %g pod lives/s for %s\n\n",
		cfg.Pods, cfg.Nodes, cfg.Policies, cfg.Agents, cfg.ChurnRate, cfg.ChurnDuration)
	fmt.Println("| design | sync MB/agent | sync objects/agent | full pods/agent (foreign) | churn KB/s/agent | churn objects/s/agent | heap MB/agent | RSS MB (all agents) | latency p50 / p99 ms | apiserver CPU s: sync / churn |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range rows {
		fmt.Println(r)
	}
	return nil
}

func row(r scale.Result) string {
	sec := r.ChurnSeconds
	if sec == 0 {
		sec = 1
	}
	return fmt.Sprintf("| %s | %.1f | %d | %d (%d) | %.1f | %.1f | %.1f | %d | %.1f / %.1f | %.1f / %.1f |",
		r.Mode, float64(r.Sync.Bytes)/1e6, r.Sync.Objects, r.Sync.FullPods, r.Sync.ForeignPod,
		float64(r.Churn.Bytes)/1e3/sec, float64(r.Churn.Objects)/sec, float64(r.HeapPerAgent)/1e6, r.RSS>>20,
		float64(r.Percentile(50).Microseconds())/1e3, float64(r.Percentile(99).Microseconds())/1e3,
		r.APICPUSync, r.APICPUChurn)
}
