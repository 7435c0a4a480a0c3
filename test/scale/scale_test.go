package scale_test

import (
	"context"
	"testing"
	"time"

	"github.com/strictgate/strictgate/test/controlplane"
	"github.com/strictgate/strictgate/test/scale"
)

// TestScaleTiny runs the harness at a size that fits in `make test` on a real API server
// and checks what it counts, so that `make scale`'s figures can be trusted: in today's
// design every agent receives every pod object in full, its own node's pods get rules,
// and every local pod the churn starts is seen with its rules.
func TestScaleTiny(t *testing.T) {
	rc := controlplane.Start(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := scale.Config{
		Pods: 60, Nodes: 4, Policies: 12, Agents: 2,
		ChurnRate: 20, ChurnDuration: 2 * time.Second,
		PodsPerNS: 20, Seed: 7, Workers: 4,
	}
	h, err := scale.New(ctx, rc, cfg, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	syncBytes := map[scale.Mode]int64{}
	for _, tc := range []struct {
		mode scale.Mode
		// allPods: every agent receives every pod in full at sync.
		allPods bool
	}{
		{scale.ModeToday, true},
		{scale.ModeTodayJSON, true},
		{scale.ModeLocalPods, false},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			live, err := h.LivePods(ctx)
			if err != nil {
				t.Fatal(err)
			}
			r, err := h.Measure(ctx, tc.mode)
			if err != nil {
				t.Fatal(err)
			}
			syncBytes[tc.mode] = r.Sync.Bytes
			if r.Sync.Bytes == 0 || r.Churn.Bytes == 0 {
				t.Errorf("bytes at sync %d, during churn %d: the counting transport saw nothing", r.Sync.Bytes, r.Churn.Bytes)
			}
			if tc.allPods && r.Sync.FullPods != int64(live) {
				t.Errorf("each agent received %d full pods at sync, want all %d", r.Sync.FullPods, live)
			}
			if tc.allPods && r.Sync.ForeignPod == 0 {
				t.Errorf("no foreign pods received at sync in mode %s", tc.mode)
			}
			if !tc.allPods && (r.Sync.ForeignPod != 0 || r.Churn.ForeignPod != 0) {
				t.Errorf("mode %s received %d full pods of other nodes at sync, %d during churn, want none", tc.mode, r.Sync.ForeignPod, r.Churn.ForeignPod)
			}
			if r.LocalCompiled == 0 {
				t.Errorf("no local pod has rules after sync")
			}
			if r.Missed != 0 {
				t.Errorf("%d local churn pods never got rules", r.Missed)
			}
			if r.APICPUSync <= 0 {
				t.Errorf("kube-apiserver CPU during sync = %v, want > 0", r.APICPUSync)
			}
		})
	}
	// client-go's typed clients ask for protobuf by default: today's agent already gets
	// fewer bytes than JSON would cost (BENCHMARKS.md, "Scale").
	if p, j := syncBytes[scale.ModeToday], syncBytes[scale.ModeTodayJSON]; p >= j {
		t.Errorf("sync bytes: default (protobuf) %d >= JSON %d", p, j)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := scale.DefaultConfig()
	for _, tc := range []struct {
		name string
		edit func(*scale.Config)
		bad  bool
	}{
		{"defaults", func(*scale.Config) {}, false},
		{"more agents than nodes", func(c *scale.Config) { c.Agents = c.Nodes + 1 }, true},
		{"no pods", func(c *scale.Config) { c.Pods = 0 }, true},
		{"negative churn", func(c *scale.Config) { c.ChurnRate = -1 }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			if err := c.Validate(); (err != nil) != tc.bad {
				t.Errorf("Validate() = %v, want error %v", err, tc.bad)
			}
		})
	}
}
