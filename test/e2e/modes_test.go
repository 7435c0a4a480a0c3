package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	corev1 "k8s.io/api/core/v1"

	"github.com/strictgate/strictgate/test/e2e/harness"
)

// TestPrivilegedAuditModeDropsNothing switches the release to mode=audit with helm
// upgrade (the agents roll, the CNI installer re-chains the plugin in audit mode): a
// connection that default-deny forbids goes through and is logged as AUDIT.
func TestPrivilegedAuditModeDropsNothing(t *testing.T) {
	cl, _ := setupWith(t, "audit", auditValues)
	ctx := ctxFor(t, 10*time.Minute)
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

// TestPrivilegedStartupFloodStandard (issue 8, suite 2): the strict suite's flood with
// the release in mode=standard, where a pod is allow-all until programmed. It measures
// and prints the window in which forbidden packets pass (greppable: FAILCLOSED), and
// asserts that it closes: nothing forbidden arrives once the gate is True.
func TestPrivilegedStartupFloodStandard(t *testing.T) {
	cl, _ := setupWith(t, "standard", nil)
	r := startupFlood(t, cl, "e2e-flood-standard")
	_, last, win := r.window()
	t.Logf("FAILCLOSED standard-window forbidden=%d window=%.1fms gate_seen=+%.1fms (strict: 0 forbidden by construction)",
		len(r.forbidden()), float64(win)/1e6, float64(r.gateSeen.Sub(r.created))/1e6)
	for _, x := range r.forbidden() {
		if x.At.After(r.gateSeen) {
			t.Errorf("forbidden %s %s → %s delivered at +%s, after the gate was seen True at +%s",
				x.Proto, x.Remote, x.Local, x.At.Sub(r.created), r.gateSeen.Sub(r.created))
		}
	}
	if len(r.forbidden()) > 0 && last.After(r.gateSeen) {
		t.Errorf("the window did not close when the pod was programmed")
	}
	if !r.hasOK {
		t.Errorf("the allowed flow never succeeded")
	}

	// The agent is usually faster than the container runtime, so the window above is
	// often empty. A slow agent (here: away for 5 s while the pod starts, as
	// TestPrivilegedAgentDownAtPodStart does in strict mode, where 0 gets through)
	// shows what standard mode lets through meanwhile.
	f := newFlood(t, cl, "e2e-flood-standard-slow")
	ctx := ctxFor(t, 5*time.Minute)
	resume := pauseAgents(t, ctx, cl)
	f.startTarget()
	f.watchTarget(5*time.Second, nil)
	resumedAt, _ := resume()
	if !f.watchTarget(2*time.Minute, nil) {
		t.Fatal("target not Ready after the agent returned")
	}
	time.Sleep(floodAfterReady)
	r = f.collect()
	first, last, win := r.window()
	t.Logf("FAILCLOSED standard-window-slow-agent agent_away=%s forbidden=%d (in %d, out %d) window=%.1fms first=+%.1fms last=+%.1fms gate_seen=+%.1fms after create",
		ms(resumedAt.Sub(r.created)), len(r.forbidden()), len(r.forbiddenIn), len(r.forbiddenOut), float64(win)/1e6,
		float64(first.Sub(r.created))/1e6, float64(last.Sub(r.created))/1e6, float64(r.gateSeen.Sub(r.created))/1e6)
	if len(r.forbidden()) == 0 {
		t.Errorf("standard mode let nothing through while no agent ran: the pod was not open (unprogrammed-allow) before it was programmed")
	}
	for _, x := range r.forbidden() {
		if x.At.After(r.gateSeen) {
			t.Errorf("forbidden %s %s → %s delivered at +%s, after the gate was seen True", x.Proto, x.Remote, x.Local, x.At.Sub(r.created))
		}
	}
}

// auditValues: the audit suites count every event, so the event rate limit (which
// only thins the log; the drop counters stay exact) is off.
var auditValues = map[string]any{"agent": map[string]any{"policyEventLogs": map[string]any{"rateLimit": 0}}}

// TestPrivilegedStartupFloodAudit (issue 8, suite 2, audit): the same flood in
// mode=audit drops nothing, and every forbidden flow that reached a socket is in the
// agent's policy event log as AUDIT with the pods' and the policy's names — or among
// the events the kernel counted as not delivered (ring buffer full), which the flood
// can cause.
func TestPrivilegedStartupFloodAudit(t *testing.T) {
	cl, _ := setupWith(t, "audit", auditValues)
	start := time.Now()
	limited0, lost0 := eventStats(t)
	r := startupFlood(t, cl, "e2e-flood-audit")
	if len(r.forbiddenIn) == 0 || len(r.forbiddenOut) == 0 {
		t.Fatalf("audit mode dropped the forbidden flood: %d in, %d out delivered", len(r.forbiddenIn), len(r.forbiddenOut))
	}
	ctx := ctxFor(t, time.Minute)
	// A flow is one 5-tuple: the datapath reports its first packet; the rest are
	// conntrack hits (entries marked audited).
	type flow struct {
		proto    string
		src, dst string
	}
	want := map[flow]harness.Recv{}
	// A UDP socket's local address is the wildcard it listens on: the pod's IP is
	// where the datagram was going.
	at := func(x harness.Recv, pod netip.Addr) string { return netip.AddrPortFrom(pod, x.Local.Port()).String() }
	targetIP, proberIP := netip.MustParseAddr(r.target.Status.PodIP), r.proberIP
	for _, x := range r.forbiddenIn {
		want[flow{x.Proto, x.Remote.String(), at(x, targetIP)}] = x
	}
	for _, x := range r.forbiddenOut {
		want[flow{x.Proto, x.Remote.String(), at(x, proberIP)}] = x
	}
	var missing []flow
	var lastLog string
	var audits, unnamed int
	var nameless []flow // flows whose only AUDIT events lack a pod's name
	err := harness.Eventually(ctx, 20*time.Second, func() error {
		log, err := harness.AgentLog(ctx, cl.Client, start)
		if err != nil {
			return err
		}
		lastLog = log
		audits, unnamed = 0, 0
		seen, seenNameless := map[flow]bool{}, map[flow]bool{}
		for _, line := range strings.Split(log, "\n") {
			var ev struct {
				Verdict, Protocol, SrcIP, DstIP, SrcPod, DstPod, SrcNamespace, DstNamespace, Policy string
				SrcPort, DstPort                                                                    uint16
			}
			if json.Unmarshal([]byte(line), &ev) != nil || ev.Verdict != "AUDIT" {
				continue
			}
			audits++
			src := netip.AddrPortFrom(netip.MustParseAddr(ev.SrcIP).Unmap(), ev.SrcPort).String()
			dst := netip.AddrPortFrom(netip.MustParseAddr(ev.DstIP).Unmap(), ev.DstPort).String()
			f := flow{strings.ToLower(ev.Protocol), src, dst}
			if ev.SrcPod == "" || ev.DstPod == "" || ev.Policy == "" {
				unnamed++
				seenNameless[f] = true
				continue
			}
			seen[f] = true
		}
		missing, nameless = missing[:0], nameless[:0]
		for f := range want {
			switch {
			case seen[f]:
			case seenNameless[f]:
				// Known gap (reported): the agent names pods when it writes the event,
				// so an event from a pod's first milliseconds, before the agent has
				// indexed its IP and interface, has no name.
				nameless = append(nameless, f)
			default:
				missing = append(missing, f)
			}
		}
		// The kernel's event stream is bounded (ring buffer; rate limit, off here): an
		// event it could not deliver is counted instead. Each flow is logged or counted.
		limited, lost := eventStats(t)
		if uncounted := len(missing) - int(limited-limited0+lost-lost0); uncounted > 0 {
			return fmt.Errorf("%d of %d forbidden flows delivered in audit mode have no AUDIT event and only %d events were counted lost, e.g. %+v",
				len(missing), len(want), limited-limited0+lost-lost0, missing[0])
		}
		return nil
	})
	limited, lost := eventStats(t)
	t.Logf("FAILCLOSED audit forbidden_packets_delivered=%d flows=%d flows_without_audit_event=%d flows_with_unnamed_event_only=%d (kernel during the flood: events rate-limited %d, lost to a full ring buffer %d)",
		len(r.forbidden()), len(want), len(missing), len(nameless), limited-limited0, lost-lost0)
	if len(want)-len(missing)-len(nameless) < len(want)*9/10 {
		t.Errorf("only %d of %d forbidden flows have an AUDIT event with both pods' and the policy's names", len(want)-len(missing)-len(nameless), len(want))
	}
	if err != nil {
		t.Error(err)
		lines := strings.Split(lastLog, "\n")
		t.Logf("agent log since the start: %d lines, %d AUDIT (%d without names); first lines:\n%s", len(lines), audits, unnamed, strings.Join(lines[:min(len(lines), 15)], "\n"))
	}
}

// eventStats reads the datapath's global counters of events the kernel suppressed
// (token bucket) and lost (ring buffer full): the agent does not export them.
func eventStats(t *testing.T) (rateLimited, lost uint64) {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(harness.PinRoot+"/maps/sg_stats", &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		t.Logf("open sg_stats: %v", err)
		return 0, 0
	}
	defer m.Close()
	sum := func(idx uint32) uint64 {
		var per []uint64
		if err := m.Lookup(idx, &per); err != nil {
			t.Logf("read sg_stats[%d]: %v", idx, err)
		}
		var n uint64
		for _, v := range per {
			n += v
		}
		return n
	}
	// enum sg_stat in bpf/include/strictgate.h: EVENTS_RATELIMITED = 7, EVENTS_LOST = 8.
	return sum(7), sum(8)
}
