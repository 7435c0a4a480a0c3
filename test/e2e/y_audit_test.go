package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/strictgate/strictgate/test/e2e/harness"
)

// TestPrivilegedAuditModeDropsNothing switches the release to mode=audit with helm
// upgrade (the agents roll, the CNI installer re-chains the plugin in audit mode): a
// connection that default-deny forbids goes through and is logged as AUDIT. The
// release is switched back to strict afterwards.
func TestPrivilegedAuditModeDropsNothing(t *testing.T) {
	cl, in := setup(t)
	ctx := ctxFor(t, 10*time.Minute)
	upgrade := func(mode string) {
		t.Helper()
		if _, err := harness.InstallStrictgate(ctx, cl, harness.Options{Mode: mode, Binary: in.StrictgateBinary(), Log: os.Stderr}); err != nil {
			t.Fatalf("helm upgrade to mode %s: %v", mode, err)
		}
	}
	upgrade("audit")
	t.Cleanup(func() { upgrade("strict") })
	b, err := os.ReadFile(cl.Config.CNIConfDir + "/" + cl.Config.CNIConfFile)
	if err != nil || !strings.Contains(string(b), `"mode": "audit"`) {
		t.Errorf("CNI entry not switched to audit: %v\n%s", err, b)
	}

	const ns = "e2e-audit"
	namespace(t, cl, ns, nil)
	start := time.Now()
	// The default-deny controller creates the policy a moment after the namespace; a
	// pod programmed before that has no policy at all (nothing to audit).
	waitDefaultDeny(t, cl, ns)
	startPod(t, cl, ns, "server", map[string]string{"app": "server"})
	startPod(t, cl, ns, "client", map[string]string{"app": "client"})
	server := waitReady(t, cl, ns, "server")
	client := waitReady(t, cl, ns, "client")
	for _, p := range []*corev1.Pod{server, client} {
		c := harness.Condition(p, harness.GateCondition)
		if c == nil || !strings.Contains(c.Message, "audit mode") || !strings.Contains(c.Message, "strictgate-default-deny") {
			t.Fatalf("pod %s condition %+v: want programmed in audit mode with strictgate-default-deny", p.Name, c)
		}
	}

	// strictgate-default-deny is there; audit mode must still let the connection pass.
	target := server.Status.PodIP + ":8080"
	if err := harness.Eventually(ctx, 15*time.Second, func() error {
		ans, connErr, err := harness.Connect(ctx, cl, ns, "client", "tcp", target, connTimeout)
		if err != nil {
			return err
		}
		if connErr != nil {
			return fmt.Errorf("audit mode dropped %s: %v", target, connErr)
		}
		t.Logf("audit mode: client -> %s answered %q", target, ans)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := harness.Eventually(ctx, 20*time.Second, func() error {
		log, err := harness.AgentLog(ctx, cl.Client, start)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(log, "\n") {
			var ev struct{ Verdict, SrcIP, DstIP string }
			if json.Unmarshal([]byte(line), &ev) == nil && ev.Verdict == "AUDIT" && ev.SrcIP == client.Status.PodIP && ev.DstIP == server.Status.PodIP {
				t.Logf("policy event log: %s", line)
				return nil
			}
			if strings.Contains(line, `"verdict":"DENY"`) && strings.Contains(line, server.Status.PodIP) {
				return fmt.Errorf("DENY in audit mode: %s", line)
			}
		}
		return fmt.Errorf("no AUDIT line for %s -> %s in the agent log:\n%s", client.Status.PodIP, server.Status.PodIP, log)
	}); err != nil {
		t.Error(err)
	}
}
