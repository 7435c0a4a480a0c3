package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/strictgate/strictgate/test/cluster"
	"github.com/strictgate/strictgate/test/e2e/harness"
)

// Ports of the traffic suites' server (agent crash, agent upgrade).
const (
	trafficStreamPort = 9000 // long-lived connections from the client: allowed
	trafficLatePort   = 8084 // attacker → server: allowed only by a policy made while the agent is away
	trafficClosePort  = 8085 // attacker → server: allowed until that policy is deleted while the agent is away
	trafficHoldConns  = 20
)

// traffic is a server, a client holding connections to it and an attacker flooding
// it with what its policy forbids, in a namespace of their own.
type traffic struct {
	t          *testing.T
	cl         *cluster.Cluster
	ns         string
	serverIP   netip.Addr
	attackerIP netip.Addr
	ltt        map[string]metav1.Time // gate lastTransitionTime of each pod at the start
	mu         sync.Mutex
	flaps      []string
}

func newTraffic(t *testing.T, cl *cluster.Cluster, ns string) *traffic {
	t.Helper()
	namespace(t, cl, ns, nil)
	waitDefaultDeny(t, cl, ns)
	ctx := ctxFor(t, 5*time.Minute)
	tcp := corev1.ProtocolTCP
	port := func(n int32) []networkingv1.NetworkPolicyPort {
		p := intstr.FromInt32(n)
		return []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p}}
	}
	from := func(app string) []networkingv1.NetworkPolicyPeer {
		return []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}}}
	}
	ingress := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	egress := []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	for _, p := range []*networkingv1.NetworkPolicy{
		harness.NetworkPolicy(ns, "server-from-client", map[string]string{"app": "server"}, ingress,
			[]networkingv1.NetworkPolicyIngressRule{{From: from("client"), Ports: port(trafficStreamPort)}}, nil),
		harness.NetworkPolicy(ns, "server-close-from-attacker", map[string]string{"app": "server"}, ingress,
			[]networkingv1.NetworkPolicyIngressRule{{From: from("attacker"), Ports: port(trafficClosePort)}}, nil),
		harness.NetworkPolicy(ns, "client-to-server", map[string]string{"app": "client"}, egress,
			nil, []networkingv1.NetworkPolicyEgressRule{{To: from("server"), Ports: port(trafficStreamPort)}}),
		harness.NetworkPolicy(ns, "attacker-to-namespace", map[string]string{"app": "attacker"}, egress,
			nil, []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}}}),
	} {
		if _, err := cl.Client.NetworkingV1().NetworkPolicies(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create policy %s: %v", p.Name, err)
		}
	}
	server := harness.ProbePod(ns, "server", map[string]string{"app": "server"})
	server.Spec.Containers[0].Args = []string{"serve", "--log-recv", "--stream", fmt.Sprint(trafficStreamPort),
		"--tcp", fmt.Sprintf("%d,%d,%d", floodTCPPort, trafficLatePort, trafficClosePort), "--udp", fmt.Sprint(floodUDPPort)}
	if _, err := cl.Client.CoreV1().Pods(ns).Create(ctx, server, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s := waitReady(t, cl, ns, "server")
	tr := &traffic{t: t, cl: cl, ns: ns, serverIP: netip.MustParseAddr(s.Status.PodIP), ltt: map[string]metav1.Time{}}

	client := harness.ProbePod(ns, "client", map[string]string{"app": "client"})
	client.Spec.Containers[0].Args = []string{"hold", "--conns", fmt.Sprint(trafficHoldConns), "--every", "100ms",
		netip.AddrPortFrom(tr.serverIP, trafficStreamPort).String()}
	client.Spec.Containers[0].ReadinessProbe = nil // it serves nothing; Ready = running + gate
	ip := tr.serverIP
	attacker := floodProbePod(ns, "attacker", map[string]string{"app": "attacker"},
		fmt.Sprintf("tcp:%s:%d,udp:%s:%d,tcp:%s:%d,tcp:%s:%d", ip, floodTCPPort, ip, floodUDPPort, ip, trafficLatePort, ip, trafficClosePort))
	attacker.Spec.Containers[0].Args = append(attacker.Spec.Containers[0].Args, "--flood-interval", "20ms")
	for _, p := range []*corev1.Pod{client, attacker} {
		if _, err := cl.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	a := waitReady(t, cl, ns, "attacker")
	tr.attackerIP = netip.MustParseAddr(a.Status.PodIP)
	waitReady(t, cl, ns, "client")
	if err := harness.Eventually(ctx, time.Minute, func() error {
		log, err := cl.Logs(ctx, ns, "client", "probe")
		if err != nil {
			return err
		}
		if !strings.Contains(log, fmt.Sprintf("probe: hold up %d ", trafficHoldConns)) {
			return fmt.Errorf("client has not opened its %d connections yet:\n%s", trafficHoldConns, log)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return tr
}

// watchFlaps records every status of the namespace's pods whose gate condition is not
// True or has another lastTransitionTime than at the start, until the test ends.
func (tr *traffic) watchFlaps() {
	t := tr.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pods, err := tr.cl.Client.CoreV1().Pods(tr.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		c := harness.Condition(&p, harness.GateCondition)
		if c == nil || c.Status != corev1.ConditionTrue {
			t.Fatalf("pod %s: gate not True at the start: %+v", p.Name, c)
		}
		tr.ltt[p.Name] = c.LastTransitionTime
	}
	w, err := tr.cl.Client.CoreV1().Pods(tr.ns).Watch(ctx, metav1.ListOptions{ResourceVersion: pods.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); w.Stop(); <-done })
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			c := harness.Condition(p, harness.GateCondition)
			tr.mu.Lock()
			if c == nil || c.Status != corev1.ConditionTrue || !c.LastTransitionTime.Equal(ptrTime(tr.ltt[p.Name])) {
				tr.flaps = append(tr.flaps, fmt.Sprintf("%s at %s: %+v", p.Name, time.Now().Format(time.RFC3339Nano), c))
			}
			tr.mu.Unlock()
		}
	}()
}

func ptrTime(t metav1.Time) *metav1.Time { return &t }

// check reads the pods' logs and asserts the traffic zeros: no forbidden packet at the
// server (8083/tcp, 8081/udp always; 8084 before opened), no held connection broken,
// no condition flap. It returns the server's log.
func (tr *traffic) check(label string, opened time.Time) harness.ProbeLog {
	t := tr.t
	t.Helper()
	ctx := ctxFor(t, time.Minute)
	sl, err := tr.cl.Logs(ctx, tr.ns, "server", "probe")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := tr.cl.Logs(ctx, tr.ns, "client", "probe")
	if err != nil {
		t.Fatal(err)
	}
	slog, clog := harness.ParseProbeLog(sl), harness.ParseProbeLog(cl)
	forbidden := append(slog.From(tr.attackerIP, "tcp", floodTCPPort), slog.From(tr.attackerIP, "udp", floodUDPPort)...)
	for _, x := range slog.From(tr.attackerIP, "tcp", trafficLatePort) {
		if opened.IsZero() || x.At.Before(opened) {
			forbidden = append(forbidden, x)
		}
	}
	var broken []string
	lastOK := ""
	for _, h := range clog.Holds {
		if strings.Contains(h, " broken ") {
			broken = append(broken, h)
		}
		if strings.Contains(h, " ok ") {
			lastOK = h
		}
	}
	tr.mu.Lock()
	flaps := append([]string(nil), tr.flaps...)
	tr.mu.Unlock()
	t.Logf("FAILCLOSED %s forbidden_delivered=%d held_conns_broken=%d/%d condition_flaps=%d (last: %s)", label, len(forbidden), len(broken), trafficHoldConns, len(flaps), lastOK)
	for _, x := range forbidden {
		t.Errorf("%s: forbidden %s %s → %s delivered at %s", label, x.Proto, x.Remote, x.Local, x.At.Format(time.RFC3339Nano))
	}
	for _, b := range broken {
		t.Errorf("%s: allowed connection broken: %s", label, b)
	}
	for _, f := range flaps {
		t.Errorf("%s: condition flapped: %s", label, f)
	}
	if !strings.Contains(lastOK, fmt.Sprintf("probe: hold ok %d ", trafficHoldConns)) {
		t.Errorf("%s: the client does not report %d live connections: %q", label, trafficHoldConns, lastOK)
	}
	return slog
}

// changePolicies makes the two changes whose enforcement is timed after the agent
// returns: 8084 opens for the attacker, 8085 closes.
func (tr *traffic) changePolicies() time.Time {
	t := tr.t
	t.Helper()
	ctx := ctxFor(t, time.Minute)
	tcp := corev1.ProtocolTCP
	p := intstr.FromInt32(trafficLatePort)
	np := harness.NetworkPolicy(tr.ns, "server-late-from-attacker", map[string]string{"app": "server"}, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		[]networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "attacker"}}}},
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p}},
		}}, nil)
	changed := time.Now()
	if _, err := tr.cl.Client.NetworkingV1().NetworkPolicies(tr.ns).Create(ctx, np, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := tr.cl.Client.NetworkingV1().NetworkPolicies(tr.ns).Delete(ctx, "server-close-from-attacker", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	return changed
}

// enforcedAfter waits until both changes are in force and returns how long after back
// each took: the first attacker connection accepted on 8084, the last one on 8085.
func (tr *traffic) enforcedAfter(back time.Time) (open, closed time.Duration) {
	t := tr.t
	t.Helper()
	ctx := ctxFor(t, 2*time.Minute)
	var firstLate time.Time
	if err := harness.Eventually(ctx, 90*time.Second, func() error {
		sl, err := tr.cl.Logs(ctx, tr.ns, "server", "probe")
		if err != nil {
			return err
		}
		late := harness.ParseProbeLog(sl).From(tr.attackerIP, "tcp", trafficLatePort)
		if len(late) == 0 {
			return fmt.Errorf("the policy made while the agent was away is not enforced yet (no attacker connection on %d)", trafficLatePort)
		}
		firstLate = late[0].At
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the attacker keeps firing at 8085: give any late accept time to show
	sl, err := tr.cl.Logs(ctx, tr.ns, "server", "probe")
	if err != nil {
		t.Fatal(err)
	}
	closing := harness.ParseProbeLog(sl).From(tr.attackerIP, "tcp", trafficClosePort)
	if len(closing) == 0 {
		t.Fatalf("the attacker never reached %d, which was allowed at the start", trafficClosePort)
	}
	last := closing[len(closing)-1].At
	// One programming round applies both changes to the server: 8085 must be closed by
	// the time 8084 is open (a connection in flight may still land a moment later).
	if last.After(firstLate.Add(time.Second)) {
		t.Errorf("attacker still accepted on %d at %s, more than 1s after %d opened at %s: the deleted policy is still enforced",
			trafficClosePort, last.Format(time.RFC3339Nano), trafficLatePort, firstLate.Format(time.RFC3339Nano))
	}
	closed = last.Sub(back)
	if closed < 0 {
		closed = 0
	}
	return firstLate.Sub(back), closed
}

// TestPrivilegedAgentSIGKILLUnderTraffic (issue 8, suite 3): the agent container is
// killed with SIGKILL three times in a row (the second and third time as soon as it
// runs again) while 20 allowed connections are held open and an attacker floods what
// the policy forbids. Pinned maps and links keep enforcing: 0 forbidden packets
// delivered, 0 held connections broken, 0 condition flaps; policy changes made while
// the agent is down are in force within N seconds of its return (printed).
func TestPrivilegedAgentSIGKILLUnderTraffic(t *testing.T) {
	cl, _ := setup(t)
	tr := newTraffic(t, cl, "e2e-kill")
	tr.watchFlaps()
	ctx := ctxFor(t, 10*time.Minute)
	var changed, back time.Time
	for i := 1; i <= 3; i++ {
		agent, err := harness.AgentPod(ctx, cl.Client)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := harness.ContainerStatus(agent, "agent")
		id, err := harness.KillContainer(ctx, cl.Client, harness.Namespace, agent.Name, "agent")
		if err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		if i == 3 {
			changed = tr.changePolicies() // while the agent is down
		}
		if err := harness.Eventually(ctx, 3*time.Minute, func() error {
			p, err := cl.Client.CoreV1().Pods(harness.Namespace).Get(ctx, agent.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			now, _ := harness.ContainerStatus(p, "agent")
			if now.RestartCount <= st.RestartCount || now.State.Running == nil {
				return fmt.Errorf("agent container not restarted yet (restarts %d, state %+v)", now.RestartCount, now.State)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		back = time.Now()
		t.Logf("FAILCLOSED agent-sigkill kill=%d container=%.12s back_after=%s", i, id, ms(back.Sub(killed)))
	}
	open, closed := tr.enforcedAfter(back)
	// back is when the API showed the container running again, a little after the
	// process started: the agent may have applied the changes just before (N < 0).
	t.Logf("FAILCLOSED agent-sigkill policy_changed_while_down=%s before the agent was seen running; enforced_after_return: opened=%s closed<=%s",
		ms(back.Sub(changed)), ms(open), ms(closed))
	if open > time.Minute {
		t.Errorf("a policy made while the agent was down took %s after its return to be enforced", open)
	}
	tr.check("agent-sigkill", changed)
}

// TestPrivilegedAgentDownAtPodStart (issue 8, suite 8): with the agent's pods gone (its
// DaemonSet paused by a nodeSelector no node has), a pod started in strict mode is
// closed from CNI ADD and stays unready with no condition; the prober's flood reaches
// nothing, allowed flow included. When the agent returns the pod is programmed,
// turns Ready, and only the allowed flow gets through.
func TestPrivilegedAgentDownAtPodStart(t *testing.T) {
	cl, _ := setup(t)
	f := newFlood(t, cl, "e2e-agent-down")
	ctx := ctxFor(t, 10*time.Minute)
	resume := pauseAgents(t, ctx, cl)
	f.startTarget()
	const down = 15 * time.Second
	if f.watchTarget(down, func(p *corev1.Pod) error {
		if _, ok := harness.GateTrue(p); ok {
			return fmt.Errorf("condition True with no agent running: %+v", harness.Condition(p, harness.GateCondition))
		}
		return nil
	}) {
		t.Fatal("target Ready with no agent running")
	}
	r := f.collect() // the pod has its IP: CNI ADD ran without the agent
	t.Logf("FAILCLOSED agent-down while_down=%s forbidden=%d allowed_accepted=%d (want 0: unprogrammed = closed)", down, len(r.forbidden()), len(r.allowedIn))
	for _, x := range append(r.forbidden(), r.allowedIn...) {
		t.Errorf("with no agent: %s %s → %s delivered at +%s", x.Proto, x.Remote, x.Local, x.At.Sub(r.created))
	}
	resumedAt, back := resume()
	if !f.watchTarget(2*time.Minute, nil) {
		t.Fatalf("target not Ready within 2m of the agent's return: %+v", f.r.target.Status.Conditions)
	}
	time.Sleep(2 * time.Second)
	r = f.collect()
	t.Logf("FAILCLOSED agent-down agent_running_seen=+%s after resume; target Ready seen +%s, first allowed success +%s after resume; forbidden_over_life=%d",
		ms(back.Sub(resumedAt)), ms(r.readySeen.Sub(resumedAt)), ms(r.firstOK.At.Sub(resumedAt)), len(r.forbidden()))
	for _, x := range r.forbidden() {
		t.Errorf("forbidden %s %s → %s delivered at +%s", x.Proto, x.Remote, x.Local, x.At.Sub(r.created))
	}
	for _, x := range r.allowedIn {
		if x.At.Before(resumedAt) {
			t.Errorf("allowed flow accepted at %s, before the agent was let back at %s", x.At.Format(time.RFC3339Nano), resumedAt.Format(time.RFC3339Nano))
		}
	}
	if !r.hasOK {
		t.Error("the allowed flow never succeeded after the agent returned")
	}
	if err := waitAgentReady(ctx, cl); err != nil {
		t.Error(err)
	}
}

func waitAgentReady(ctx context.Context, cl *cluster.Cluster) error {
	return harness.Eventually(ctx, 2*time.Minute, func() error {
		p, err := harness.AgentPod(ctx, cl.Client)
		if err != nil {
			return err
		}
		return harness.Ready(p)
	})
}

// TestPrivilegedAgentUpgrade (issue 8, suite 4): `helm upgrade` to an image of another
// version (a second build with another version string, so another tag) rolls the agent
// DaemonSet — the old agent gets SIGTERM, the new one adopts the pinned datapath —
// under the same traffic as the SIGKILL suite, with a policy change made while the old
// agent is gone: the same zeros, and the change in force within N of the new agent.
func TestPrivilegedAgentUpgrade(t *testing.T) {
	cl, in := setup(t)
	tr := newTraffic(t, cl, "e2e-upgrade")
	tr.watchFlaps()
	ctx := ctxFor(t, 15*time.Minute)
	bin := filepath.Join(t.TempDir(), "strictgate")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w -X main.version=e2e-upgrade", "-o", bin, "github.com/strictgate/strictgate/cmd/strictgate")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the upgrade: %v\n%s", err, out)
	}
	old, err := harness.AgentPod(ctx, cl.Client)
	if err != nil {
		t.Fatal(err)
	}
	upgraded := make(chan error, 1)
	var next *harness.Install
	started := time.Now()
	go func() {
		var err error
		next, err = harness.InstallStrictgate(ctx, cl, harness.Options{Mode: in.Mode, Binary: bin, Log: os.Stderr})
		upgraded <- err
	}()
	// The change is made once the old agent is gone, before the new one runs.
	var changed time.Time
	if err := harness.Eventually(ctx, 3*time.Minute, func() error {
		_, err := cl.Client.CoreV1().Pods(harness.Namespace).Get(ctx, old.Name, metav1.GetOptions{})
		if err == nil {
			return fmt.Errorf("old agent %s still there", old.Name)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	changed = tr.changePolicies()
	if err := <-upgraded; err != nil {
		t.Fatalf("helm upgrade: %v", err)
	}
	installMu.Lock()
	installed = next // same mode and values, newer image: later suites may keep it
	installMu.Unlock()
	agent, err := harness.AgentPod(ctx, cl.Client)
	if err != nil {
		t.Fatal(err)
	}
	if agent.Spec.Containers[0].Image != next.Image.Ref {
		t.Fatalf("agent runs %s, want %s", agent.Spec.Containers[0].Image, next.Image.Ref)
	}
	st, _ := harness.ContainerStatus(agent, "agent")
	back := st.State.Running.StartedAt.Time // second precision: N is rounded up to a second at most
	open, closed := tr.enforcedAfter(back)
	t.Logf("FAILCLOSED agent-upgrade rollout=%s (helm upgrade to %s); policy changed once the old agent was gone; enforced after the new agent started: opened=%s closed<=%s",
		ms(time.Since(started)), next.Image.Tag, ms(open), ms(closed))
	if open > time.Minute {
		t.Errorf("a policy made during the upgrade took %s after the new agent started to be enforced", open)
	}
	tr.check("agent-upgrade", changed)
}

// pauseAgents keeps the agent off the node (harness.PauseAgents) until the returned
// resume is called, which reports when the agent was let back and when it ran again. A
// test that ends before resuming lets the agent back in its cleanup.
func pauseAgents(t *testing.T, ctx context.Context, cl *cluster.Cluster) (resume func() (resumedAt, running time.Time)) {
	t.Helper()
	if err := harness.PauseAgents(ctx, cl.Client); err != nil {
		t.Fatal(err)
	}
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			if _, _, err := harness.ResumeAgents(context.Background(), cl.Client); err != nil {
				t.Errorf("resume agents: %v", err)
				forgetInstall()
			}
		}
	})
	return func() (time.Time, time.Time) {
		t.Helper()
		at, running, err := harness.ResumeAgents(ctx, cl.Client)
		if err != nil {
			t.Fatal(err)
		}
		resumed = true
		return at, running
	}
}
