package bpfengine_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/strictgate/strictgate/agent/compile"
	"github.com/strictgate/strictgate/agent/compile/compiletest"
	"github.com/strictgate/strictgate/internal/testenv"
	"github.com/strictgate/strictgate/verdict"
	_ "github.com/strictgate/strictgate/verdict/bpfengine"
)

// TestPrivilegedEnginesAgree compiles random clusters and judges random flows with the
// Go engine (rules.Lookup) and the bpf engine (the real eBPF program through
// BPF_PROG_TEST_RUN): every answer — verdict, deciding rule, state, per direction and
// per Service backend — must be identical.
func TestPrivilegedEnginesAgree(t *testing.T) {
	testenv.RequireRoot(t, "loads eBPF programs (the bpf engine)")
	scenarios := 150
	if testing.Short() {
		scenarios = 10
	}
	ctx := context.Background()
	node := netip.MustParseAddr("10.0.2.2") // also a pod address in some scenarios: host wins in both
	checked, allowed, byRule := 0, 0, 0
	// The second half adds ClusterNetworkPolicies: the tiers folded by the compiler
	// must mean the same in the kernel.
	for seed := range 2 * scenarios {
		gen := compiletest.RandCluster
		if seed >= scenarios {
			gen = compiletest.RandTieredCluster
		}
		s := compile.State(gen(rand.New(rand.NewPCG(uint64(seed), 42))))
		m := &verdict.Manifests{State: s}
		goEv, err := verdict.NewEvaluator(m, "go", []netip.Addr{node})
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		bpfEv, err := verdict.NewEvaluator(m, "bpf", []netip.Addr{node})
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		var ends []string
		for _, p := range s.Pods {
			if p.Status.PodIP != "" {
				ends = append(ends, p.Namespace+"/"+p.Name, p.Namespace+"/"+p.Name) // pods twice: more policy decisions
			}
		}
		for _, a := range compiletest.Remotes(compiletest.Cluster(s)) {
			ends = append(ends, a.String())
		}
		r := rand.New(rand.NewPCG(uint64(seed), 99))
		for range 150 {
			f := verdict.Flow{Src: ends[r.IntN(len(ends))], Dst: ends[r.IntN(len(ends))], Port: []int{53, 80, 81, 443, 5005, 8080}[r.IntN(6)], Protocol: []string{"TCP", "UDP", "SCTP", "ICMP"}[r.IntN(4)]}
			if f.Protocol == "ICMP" {
				f.Port = 0
			}
			if f.Src == f.Dst {
				continue
			}
			g, gerr := goEv.Evaluate(ctx, f)
			b, berr := bpfEv.Evaluate(ctx, f)
			if (gerr == nil) != (berr == nil) {
				t.Fatalf("seed %d flow %+v: go error %v, bpf error %v", seed, f, gerr, berr)
			}
			if gerr != nil {
				continue // e.g. families differ: both refuse
			}
			gj, _ := json.Marshal(g)
			bj, _ := json.Marshal(b)
			checked++
			if g.Verdict == "allow" {
				allowed++
			}
			if (g.Egress != nil && g.Egress.Rule != nil) || (g.Ingress != nil && g.Ingress.Rule != nil) {
				byRule++
			}
			if string(gj) != string(bj) {
				t.Fatalf("seed %d flow %+v: engines disagree\ngo:  %s\nbpf: %s", seed, f, gj, bj)
			}
		}
		goEv.Close()
		bpfEv.Close()
	}
	t.Logf("%d flows agree (%d allowed, %d decided by a policy rule)", checked, allowed, byRule)
	if checked < scenarios*50 || byRule < checked/20 || allowed == checked || allowed == 0 {
		t.Errorf("lopsided inputs (%d flows, %d allowed, %d by rule): the test proves little", checked, allowed, byRule)
	}
}
