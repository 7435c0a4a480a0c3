package netpol

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/strictgate/strictgate/internal/testenv"
	"github.com/strictgate/strictgate/test/cluster"
)

// subset is the part of the suite `make test` runs (the whole suite is `make
// conformance`): one spec per kind of NetworkPolicy semantics a regression would most
// likely break. Each entry is a spec's text after "[sig-network] Netpol ".
var subset = []string{
	// default deny, both directions
	"NetworkPolicy between server and client should support a 'default-deny-ingress' policy",
	"NetworkPolicy between server and client should deny egress from all pods in a namespace",
	// namespaceSelector; podSelector AND namespaceSelector (one peer); OR (two peers)
	"NetworkPolicy between server and client should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector",
	"NetworkPolicy between server and client should enforce policy based on PodSelector and NamespaceSelector",
	"NetworkPolicy between server and client should enforce policy based on PodSelector or NamespaceSelector",
	// matchExpressions
	"NetworkPolicy between server and client should enforce policy based on PodSelector with MatchExpressions",
	"NetworkPolicy between server and client should enforce policy based on NamespaceSelector with MatchExpressions",
	// a named port, resolved per destination pod
	"NetworkPolicy between server and client should allow ingress access on one named port",
	// endPort: the suite's only endPort spec at this version checks the API's validation
	// (and strictgate's webhook in front of it); the datapath's port ranges are covered
	// by agent/compile and agent/datapath tests.
	"Netpol API should support creating NetworkPolicy API with endport field",
	// ipBlock with except, matching pod IPs
	"NetworkPolicy between server and client should enforce except clause while egress access to server in CIDR block",
	// egress to another namespace
	"NetworkPolicy between server and client should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector",
	// updates while traffic flows: a policy, a pod's labels
	"NetworkPolicy between server and client should enforce updated policy",
	"NetworkPolicy between server and client should allow ingress access from updated pod",
	// UDP
	"[LinuxOnly] NetworkPolicy between server and client using UDP should enforce policy based on Ports",
}

// subsetFocus matches exactly the subset's specs: each text must be followed by the
// spec's labels or the end, so no longer spec name that starts the same way slips in.
func subsetFocus() string {
	alts := make([]string, len(subset))
	for i, s := range subset {
		alts[i] = regexp.QuoteMeta(strings.TrimPrefix(s, "Netpol "))
	}
	return `\[sig-network\] Netpol (?:` + strings.Join(alts, "|") + `)(?: \[|$)`
}

func TestSubsetFocusSelectsEachSpecOnce(t *testing.T) {
	re := regexp.MustCompile(subsetFocus())
	for _, s := range subset {
		name := "[sig-network] Netpol " + strings.TrimPrefix(s, "Netpol ") + " [Feature:NetworkPolicy]"
		if !re.MatchString(name) {
			t.Errorf("focus does not select %q", name)
		}
		if re.MatchString("[sig-network] Netpol " + strings.TrimPrefix(s, "Netpol ") + " using default ns label") {
			t.Errorf("focus selects a longer spec name that starts like %q", s)
		}
	}
	if re.MatchString("[sig-network] Netpol [Feature:SCTPConnectivity] [LinuxOnly] NetworkPolicy between server and client using SCTP should enforce policy based on Ports [Feature:NetworkPolicy]") {
		t.Error("focus selects the SCTP variant of the UDP spec")
	}
	if len(subset) < 12 {
		t.Errorf("the subset has %d specs; issue 9 asks for at least 12", len(subset))
	}
}

// TestPrivilegedNetpolSubset runs the subset of the upstream netpol e2e suite,
// unmodified, against strictgate helm-installed in strict mode with the conformance
// profile, and requires every one of its specs to run and pass.
func TestPrivilegedNetpolSubset(t *testing.T) {
	testenv.RequireRoot(t, "runs the upstream netpol e2e specs against strictgate on the one-node cluster")
	cl := cluster.EnsureExclusive(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	start := time.Now()
	s, err := Build(ctx, cl.Config.ToolsDir, cl.Config.CacheDir, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("suite and agnhost built or found in %s", s.BuildTook.Round(time.Second))
	dir := filepath.Join(cl.Config.CacheDir, "conformance", "subset")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "suite.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	rep, err := OnCluster(ctx, cl, s, ClusterOptions{Focus: subsetFocus(), ReportDir: filepath.Join(dir, "report"), Log: logf, Procs: 2})
	if err != nil {
		t.Fatalf("%v (suite output: %s)", err, logPath)
	}
	for _, f := range rep.Failures() {
		t.Errorf("FAIL %s\n%s", f.Name, FailureSummary(f))
	}
	ran := map[string]bool{}
	for _, sp := range rep.Ran() {
		ran[sp.Name] = true
	}
	for _, want := range subset {
		found := 0
		for name := range ran {
			if strings.HasPrefix(name, "[sig-network] Netpol "+strings.TrimPrefix(want, "Netpol ")) {
				found++
			}
		}
		if found != 1 {
			t.Errorf("spec %q ran %d times, want once: the suite at this version may have renamed it", want, found)
		}
	}
	if len(ran) != len(subset) {
		t.Errorf("%d specs ran, want the subset's %d", len(ran), len(subset))
	}
	t.Logf("%d specs: %d passed, %d failed in %s (suite %s; total with build and install %s; output %s)",
		len(ran), rep.Passed(), rep.Failed(), rep.Took.Round(time.Second), filepath.Base(s.Binary), time.Since(start).Round(time.Second), logPath)
}
