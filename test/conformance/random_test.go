package conformance

import (
	"flag"
	"math/rand/v2"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/strictgate/strictgate/internal/testenv"
)

var (
	scenarios = flag.Int("conformance.scenarios", 60, "random scenarios per engine run (try 2000)")
	seedBase  = flag.Uint64("conformance.seed", 1, "first seed; scenario i uses seed+i")
	keep      = flag.Bool("conformance.keep", false, "keep the manifests of failing scenarios (path is logged)")
)

// checkScenario generates scenario seed, runs the CLI with extra flags and compares
// every flow with the model. It returns the number of mismatches.
func checkScenario(t *testing.T, seed uint64, nflows int, extra ...string) int {
	t.Helper()
	g := &gen{r: rand.New(rand.NewPCG(seed, 0x5eed)), big: seed%4 == 3}
	c := g.cluster()
	flows := g.flows(c, nflows)
	if len(flows) == 0 {
		return 0
	}
	dir, err := os.MkdirTemp("", "sg-conf-")
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := g.write(c, dir)
	if err != nil {
		t.Fatal(err)
	}
	if seed%2 == 0 {
		// The node's address (what host-network pods use) is always let through.
		c.NodeIPs = []netip.Addr{netip.MustParseAddr(nodeIP)}
		extra = append(extra, "--node-ip", nodeIP)
	}
	got := verdicts(t, flows, extra, dirs...)
	for _, r := range got {
		stats[r.Verdict]++
	}
	bad := 0
	for i, f := range flows {
		j, _ := c.Judge(f)
		want := "deny"
		if j.Allow {
			want = "allow"
		}
		if len(j.Why) > 1 && strings.Contains(j.Why[1], "ClusterIP") {
			stats["service-"+want]++
		}
		if got[i].Verdict != want {
			bad++
			if bad <= 3 {
				t.Errorf("seed %d flow %+v: strictgate says %s, model says %s:\n  %s", seed, f, got[i].Verdict, want, strings.Join(j.Why, "\n  "))
			}
		}
	}
	if bad > 0 && *keep {
		t.Logf("seed %d: manifests kept in %s", seed, dir)
	} else {
		os.RemoveAll(dir)
	}
	return bad
}

// stats counts verdicts, so a run can show that both answers were exercised.
var stats = map[string]int{}

// TestRandomScenarios compares the Go engine with the model on random clusters.
func TestRandomScenarios(t *testing.T) {
	failed := 0
	for i := range uint64(*scenarios) {
		if checkScenario(t, *seedBase+i, 40) > 0 {
			failed++
			if failed >= 5 {
				t.Fatalf("stopping after %d failing scenarios", failed)
			}
		}
	}
	t.Logf("verdicts: %v", stats)
	if stats["allow"] == 0 || stats["deny"] == 0 {
		t.Errorf("the generator exercised only one verdict: %v", stats)
	}
}

// TestPrivilegedBPFRandomScenarios runs a subset of the random scenarios through the
// real eBPF programs (BPF_PROG_TEST_RUN), which must agree with the model too.
func TestPrivilegedBPFRandomScenarios(t *testing.T) {
	testenv.RequireRoot(t, "runs --engine=bpf (BPF_PROG_TEST_RUN)")
	n := max(*scenarios/6, 5)
	failed := 0
	for i := range uint64(n) {
		if checkScenario(t, *seedBase+i, 40, "--engine=bpf") > 0 {
			failed++
			if failed >= 5 {
				t.Fatalf("stopping after %d failing scenarios", failed)
			}
		}
	}
}
