package netpol

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func parseTestdata(t *testing.T) *Report {
	t.Helper()
	r, err := ParseJUnitFile("testdata/junit.xml")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.keepMatching(Focus); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestParseJUnit(t *testing.T) {
	r := parseTestdata(t)
	if got := len(r.Specs); got != 3 {
		t.Fatalf("%d specs, want the 3 netpol ones (suite nodes and other SIGs' specs apart): %+v", got, r.Specs)
	}
	if got := len(r.SuiteNodes); got != 2 {
		t.Errorf("%d suite nodes, want 2", got)
	}
	if p, f, s := r.Passed(), r.Failed(), r.Skipped(); p != 1 || f != 1 || s != 1 {
		t.Errorf("passed/failed/skipped = %d/%d/%d, want 1/1/1", p, f, s)
	}
	fail := r.Failures()
	if len(fail) != 1 || !strings.Contains(fail[0].Name, "'default-deny-ingress'") || strings.HasPrefix(fail[0].Name, "[It]") {
		t.Fatalf("failures %+v: want the default-deny-ingress spec, named without Ginkgo's [It] prefix", fail)
	}
	if fail[0].Duration != 69700*time.Millisecond {
		t.Errorf("duration %s, want 69.7s", fail[0].Duration)
	}
	if !strings.Contains(fail[0].Failure, "Had 2 wrong results") {
		t.Errorf("failure text %q", fail[0].Failure)
	}
	if len(r.Ran()) != 2 {
		t.Errorf("ran %d specs, want 2", len(r.Ran()))
	}
}

func TestParseJUnitRejectsGarbage(t *testing.T) {
	for _, in := range []string{"", "<testsuites></testsuites>", "not xml"} {
		if _, err := ParseJUnit([]byte(in)); err == nil {
			t.Errorf("ParseJUnit(%q): no error", in)
		}
	}
}

func TestSuiteNodeFailureFailsTheRun(t *testing.T) {
	r, err := ParseJUnit([]byte(`<testsuites><testsuite>
<testcase name="[SynchronizedBeforeSuite]" status="failed" time="1"><failure>no nodes</failure></testcase>
<testcase name="[It] [sig-network] Netpol API x" status="skipped" time="0"><skipped/></testcase>
</testsuite></testsuites>`))
	if err != nil {
		t.Fatal(err)
	}
	if r.Failed() != 1 || len(r.Failures()) != 1 || len(r.Ran()) != 0 {
		t.Fatalf("failed %d, failures %v, ran %d: a failed suite node must count as a failure", r.Failed(), r.Failures(), len(r.Ran()))
	}
}

func TestMatrixDiff(t *testing.T) {
	r := parseTestdata(t)
	d, ok := MatrixDiff(r.Failures()[0].Log)
	if !ok {
		t.Fatal("no matrices found in the failed spec's log")
	}
	// ns-x/a -> ns-x/a and ns-y/a -> ns-y/a differ too, but a pod's traffic to itself
	// is not judged (as the suite ignores it).
	want := []Mismatch{
		{From: "ns-x/a", To: "ns-y/a", Expected: "allowed", Observed: "blocked"},
		{From: "ns-y/a", To: "ns-x/a", Expected: "blocked", Observed: "allowed"},
	}
	if len(d.Mismatches) != len(want) {
		t.Fatalf("mismatches %v, want %v", d.Mismatches, want)
	}
	for i := range want {
		if d.Mismatches[i] != want[i] {
			t.Errorf("mismatch %d = %v, want %v", i, d.Mismatches[i], want[i])
		}
	}
	if d.Summary != "reachability: correct:2, incorrect:2, result=false" {
		t.Errorf("summary %q", d.Summary)
	}
	s := d.String()
	if n := strings.Count(s, "!X") + strings.Count(s, "!."); n != 2 {
		t.Errorf("the observed matrix marks %d cells as differing, want 2:\n%s", n, s)
	}
	for _, w := range []string{"ns-y/a -> ns-x/a: expected blocked, observed allowed", "!.", "!X"} {
		if !strings.Contains(s, w) {
			t.Errorf("diff text lacks %q:\n%s", w, s)
		}
	}
	if _, ok := MatrixDiff("no tables here\n[FAILED] timed out waiting for pods"); ok {
		t.Error("MatrixDiff found matrices in a log without any")
	}
}

func TestWriteMarkdown(t *testing.T) {
	r := parseTestdata(t)
	r.Took = 75 * time.Second
	var b bytes.Buffer
	err := WriteMarkdown(&b, Document{
		KubernetesVersion: "v1.37.2", StrictgateVersion: "v0.0.0-test", Date: time.Unix(0, 0),
		Suite: "suite", ValuesFile: ValuesFile, Values: "mode: strict", SCTP: "not available", Command: "make conformance",
		Runs: []FamilyRun{
			{Family: "IPv4", Cluster: "dual-stack, IPv4 primary", Report: r},
			{Family: "IPv6", Cluster: "dual-stack, IPv6 primary", Err: errors.New("cluster did not start")},
		},
		Took: 10 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, w := range []string{
		"| Kubernetes | v1.37.2",
		"| strictgate | v0.0.0-test |",
		"| IPv4 | dual-stack, IPv4 primary | 1 | 1 | 1 | 1m15s |",
		"| IPv6 | dual-stack, IPv6 primary | – | – | – | not run: cluster did not start |",
		"| [sig-network] Netpol API should support creating NetworkPolicy API operations | pass 1.3s | not run |",
		"should support a 'default-deny-ingress' policy [Feature:NetworkPolicy] | **FAIL** 1m9.7s | not run |",
		"| skip | not run |",
		"ns-y/a -> ns-x/a: expected blocked, observed allowed",
		"```yaml\nmode: strict\n```",
		"with builds, cluster restarts and installs: 10m0s.",
	} {
		if !strings.Contains(md, w) {
			t.Errorf("CONFORMANCE.md lacks %q:\n%s", w, md)
		}
	}
	if strings.Contains(md, "sig-apps") || strings.Contains(md, "[ReportAfterSuite]") {
		t.Errorf("CONFORMANCE.md lists specs outside the suite or passed suite nodes:\n%s", md)
	}
}

func TestValuesProfile(t *testing.T) {
	text, v, err := Values()
	if err != nil {
		t.Fatal(err)
	}
	if v["mode"] != "strict" {
		t.Errorf("mode %v, want strict", v["mode"])
	}
	// No generated default-deny, said with the chart value or with both components'
	// flag (they must agree): the suite expects all traffic allowed before its policies.
	enf, _ := v["enforcement"].(map[string]any)
	wh, _ := v["webhook"].(map[string]any)
	ag, _ := v["agent"].(map[string]any)
	hasFlag := func(m map[string]any) bool {
		args, _ := m["extraArgs"].([]any)
		for _, a := range args {
			if a == "--default-deny=false" {
				return true
			}
		}
		return false
	}
	if enf["defaultDeny"] != false && !(hasFlag(wh) && hasFlag(ag)) {
		t.Errorf("the profile keeps the generated default-deny (enforcement %v, webhook %v, agent %v)", enf, wh, ag)
	}
	hy, _ := wh["hygiene"].(map[string]any)
	if hy["defaultAction"] != "warn" {
		t.Errorf("webhook.hygiene.defaultAction %v, want warn", hy["defaultAction"])
	}
	if !strings.Contains(text, "#") {
		t.Error("the profile must say why each value is set")
	}
}
