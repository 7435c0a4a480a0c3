// Package e2e holds strictgate's end-to-end suites: the chart helm-installed on the real
// one-node cluster (test/cluster), real pods of the probe image, real connections
// through the kernel, kube-proxy and strictgate's eBPF datapath. The tests need root
// and skip loudly without it; they run in `make test` and `make e2e`.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/strictgate/strictgate/test/cluster"
	"github.com/strictgate/strictgate/test/e2e/harness"
)

const connTimeout = 2 * time.Second

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func namespace(t *testing.T, cl *cluster.Cluster, name string, labels map[string]string) {
	t.Helper()
	ctx := ctxFor(t, 4*time.Minute)
	if err := harness.CreateNamespace(ctx, cl.Client, name, labels); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := harness.DeleteNamespace(ctx, cl.Client, name); err != nil {
			t.Logf("cleanup: %v", err)
		}
	})
}

func startPod(t *testing.T, cl *cluster.Cluster, ns, name string, labels map[string]string) {
	t.Helper()
	ctx := ctxFor(t, 3*time.Minute)
	if _, err := cl.Client.CoreV1().Pods(ns).Create(ctx, harness.ProbePod(ns, name, labels), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s/%s: %v", ns, name, err)
	}
}

func waitReady(t *testing.T, cl *cluster.Cluster, ns, name string) *corev1.Pod {
	t.Helper()
	p, err := harness.WaitPod(ctxFor(t, 3*time.Minute), cl.Client, ns, name, 2*time.Minute, harness.Ready)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitDefaultDeny waits for the webhook's controller to generate the namespace's policy.
func waitDefaultDeny(t *testing.T, cl *cluster.Cluster, ns string) {
	t.Helper()
	ctx := ctxFor(t, time.Minute)
	if err := harness.Eventually(ctx, 30*time.Second, func() error {
		_, err := cl.Client.NetworkingV1().NetworkPolicies(ns).Get(ctx, "strictgate-default-deny", metav1.GetOptions{})
		return err
	}); err != nil {
		t.Fatalf("strictgate-default-deny in %s: %v", ns, err)
	}
}

// TestPrivilegedGateHoldsPodUntilProgrammed watches a pod from creation to Ready and
// checks, on every status the API server reports, that the pod is never Ready while
// strictgate's condition is not True, and that the agent set the condition.
func TestPrivilegedGateHoldsPodUntilProgrammed(t *testing.T) {
	cl, _ := setup(t)
	const ns = "e2e-gate"
	namespace(t, cl, ns, nil)
	ctx := ctxFor(t, 3*time.Minute)

	// The default-deny controller gives every enforced namespace its policy.
	if err := harness.Eventually(ctx, 30*time.Second, func() error {
		_, err := cl.Client.NetworkingV1().NetworkPolicies(ns).Get(ctx, "strictgate-default-deny", metav1.GetOptions{})
		return err
	}); err != nil {
		t.Fatalf("strictgate-default-deny in %s: %v", ns, err)
	}
	// The NetworkPolicy webhook is wired (TLS, caBundle, Service): hygiene rule SG011
	// refuses deleting the generated policy to anyone but strictgate itself.
	err := cl.Client.NetworkingV1().NetworkPolicies(ns).Delete(ctx, "strictgate-default-deny", metav1.DeleteOptions{})
	if err == nil || !strings.Contains(err.Error(), "SG011") {
		t.Errorf("admin deleting strictgate-default-deny: %v, want the webhook's SG011 denial", err)
	} else {
		t.Logf("webhook refused: %v", err)
	}

	w, err := cl.Client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", "gated").String()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	created := time.Now()
	startPod(t, cl, ns, "gated", map[string]string{"app": "gated"})

	var sawContainersReadyFirst bool
	var gateAt, readyAt time.Time
	var lastSeen *corev1.Pod
	defer func() {
		if t.Failed() && lastSeen != nil {
			t.Logf("last pod status: phase %s ip %q conditions %+v", lastSeen.Status.Phase, lastSeen.Status.PodIP, lastSeen.Status.Conditions)
			if log, err := harness.AgentLog(context.Background(), cl.Client, created); err == nil {
				t.Logf("agent log since create:\n%s", log)
			}
		}
	}()
	for ev := range w.ResultChan() {
		if ev.Type == watch.Error {
			t.Fatalf("watch: %v", ev.Object)
		}
		p, ok := ev.Object.(*corev1.Pod)
		if !ok {
			continue
		}
		lastSeen = p
		if !harness.HasGate(p) {
			t.Fatalf("pod %s has no readiness gate %s: %+v", p.Name, harness.GateCondition, p.Spec.ReadinessGates)
		}
		gate := harness.Condition(p, harness.GateCondition)
		ready := harness.Condition(p, corev1.PodReady)
		cready := harness.Condition(p, corev1.ContainersReady)
		gateTrue := gate != nil && gate.Status == corev1.ConditionTrue
		if ready != nil && ready.Status == corev1.ConditionTrue && !gateTrue {
			t.Fatalf("pod Ready while %s is %v", harness.GateCondition, gate)
		}
		if cready != nil && cready.Status == corev1.ConditionTrue && !gateTrue {
			// The kubelet reports the containers ready and the pod still NotReady:
			// exactly what the gate is for (seen only when the agent is slower than the
			// readiness probe).
			sawContainersReadyFirst = true
		}
		if gateTrue && gateAt.IsZero() {
			gateAt = time.Now()
			if gate.Reason == "" || gate.Message == "" {
				t.Errorf("gate condition without reason/message: %+v", gate)
			}
			t.Logf("condition %s=True after %s: reason %s, %q", harness.GateCondition, gateAt.Sub(created).Round(time.Millisecond), gate.Reason, gate.Message)
		}
		if ready != nil && ready.Status == corev1.ConditionTrue {
			readyAt = time.Now()
			break
		}
	}
	if readyAt.IsZero() {
		t.Fatal("pod never became Ready")
	}
	if readyAt.Before(gateAt) {
		t.Fatalf("Ready observed at %s before the gate at %s", readyAt, gateAt)
	}
	t.Logf("pod Ready %s after create (gate first: containers ready while gated seen=%v)", readyAt.Sub(created).Round(time.Millisecond), sawContainersReadyFirst)

	// The gate guard (ValidatingAdmissionPolicy) refuses anyone but the agent: even the
	// cluster admin cannot flip the condition.
	patch := []byte(`{"status":{"conditions":[{"type":"` + harness.GateCondition + `","status":"False","reason":"Spoofed"}]}}`)
	_, err = cl.Client.CoreV1().Pods(ns).Patch(ctx, "gated", types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if err == nil || !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
		t.Errorf("admin patching %s: err %v, want the gate guard's refusal", harness.GateCondition, err)
	} else {
		t.Logf("gate guard refused the admin: %v", err)
	}

	// A hostNetwork pod is not gated (the webhook's matchCondition skips it).
	hp := harness.ProbePod(ns, "hostnet", nil)
	hp.Spec.HostNetwork = true
	hp.Spec.Containers[0].Args = []string{"serve", "--tcp", "18080", "--udp", "", "--http", "18082"}
	hp.Spec.Containers[0].Ports = nil
	hp.Spec.Containers[0].ReadinessProbe = nil
	got, err := cl.Client.CoreV1().Pods(ns).Create(ctx, hp, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if harness.HasGate(got) {
		t.Error("hostNetwork pod got the readiness gate")
	}
	_ = cl.Client.CoreV1().Pods(ns).Delete(ctx, "hostnet", metav1.DeleteOptions{})
}

// TestPrivilegedDefaultDenyThenAllowExactPort: in an enforced namespace nothing talks
// until a policy allows it, and an allow policy opens exactly its port and protocol.
func TestPrivilegedDefaultDenyThenAllowExactPort(t *testing.T) {
	cl, _ := setup(t)
	const ns = "e2e-allow"
	namespace(t, cl, ns, nil)
	waitDefaultDeny(t, cl, ns)
	startPod(t, cl, ns, "server", map[string]string{"app": "server"})
	startPod(t, cl, ns, "client", map[string]string{"app": "client"})
	server := waitReady(t, cl, ns, "server")
	waitReady(t, cl, ns, "client")
	ctx := ctxFor(t, 5*time.Minute)

	expect := func(proto string, port int, want bool) {
		t.Helper()
		target := fmt.Sprintf("%s:%d", server.Status.PodIP, port)
		// Programming is asynchronous: allow a few seconds for a change to land, but
		// never accept the opposite answer at the end.
		err := harness.Eventually(ctx, 15*time.Second, func() error {
			ans, connErr, err := harness.Connect(ctx, cl, ns, "client", proto, target, connTimeout)
			if err != nil {
				return err
			}
			if (connErr == nil) != want {
				return fmt.Errorf("%s %s: connected=%v (%q %v), want %v", proto, target, connErr == nil, ans, connErr, want)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	expect("tcp", 8080, false)
	expect("udp", 8081, false)

	tcp := corev1.ProtocolTCP
	port := intstr.FromInt32(8080)
	np := []*networkingv1.NetworkPolicy{
		harness.NetworkPolicy(ns, "server-from-client", map[string]string{"app": "server"}, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			[]networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
			}}, nil),
		harness.NetworkPolicy(ns, "client-to-server", map[string]string{"app": "client"}, []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			nil, []networkingv1.NetworkPolicyEgressRule{{
				To:    []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
			}}),
	}
	for _, p := range np {
		if _, err := cl.Client.NetworkingV1().NetworkPolicies(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create policy %s: %v", p.Name, err)
		}
	}
	expect("tcp", 8080, true)
	expect("tcp", 8082, false) // same protocol, other port
	expect("udp", 8081, false) // other protocol
}

// flowCase is one connection of the verdict comparison.
type flowCase struct {
	fromNS, from string
	to           string // "ns/pod" or "svc:ns/name"
	port         int
	proto        string // tcp or udp
	want         bool   // what NetworkPolicy semantics say
}

// TestPrivilegedTrafficMatchesVerdict (issue 5): pods in two namespaces, policies with
// pod, namespace and port selectors, and a Service with a named target port; every
// connection, pod-to-pod and through the ClusterIP via kube-proxy, must have the outcome
// `strictgate verdict` computes from the very objects read back from the API server.
func TestPrivilegedTrafficMatchesVerdict(t *testing.T) {
	cl, in := setup(t)
	namespace(t, cl, "e2e-x", map[string]string{"e2e-ns": "x"})
	namespace(t, cl, "e2e-y", map[string]string{"e2e-ns": "y"})
	waitDefaultDeny(t, cl, "e2e-x")
	waitDefaultDeny(t, cl, "e2e-y")
	ctx := ctxFor(t, 10*time.Minute)
	start := time.Now()

	startPod(t, cl, "e2e-x", "a", map[string]string{"app": "a"})
	startPod(t, cl, "e2e-x", "b", map[string]string{"app": "b"})
	startPod(t, cl, "e2e-y", "c", map[string]string{"app": "c"})
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "svc-b", Namespace: "e2e-x"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "b"},
			Ports: []corev1.ServicePort{
				{Name: "echo", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("tcp")},
				{Name: "web", Port: 81, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8082)},
			},
		},
	}
	svc, err := cl.Client.CoreV1().Services("e2e-x").Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tcp := corev1.ProtocolTCP
	p8080, p8082 := intstr.FromInt32(8080), intstr.FromInt32(8082)
	sel := func(k, v string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{k: v}}
	}
	policies := []*networkingv1.NetworkPolicy{
		// b accepts TCP 8080 from a only.
		harness.NetworkPolicy("e2e-x", "b-ingress", map[string]string{"app": "b"}, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			[]networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", "a")}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p8080}},
			}}, nil),
		// a may send to b on 8080 and 8082 (b's ingress still refuses 8082).
		harness.NetworkPolicy("e2e-x", "a-egress", map[string]string{"app": "a"}, []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			nil, []networkingv1.NetworkPolicyEgressRule{{
				To:    []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", "b")}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p8080}, {Protocol: &tcp, Port: &p8082}},
			}}),
		// c (other namespace) may send to b on 8080: namespace AND pod selector.
		harness.NetworkPolicy("e2e-y", "c-egress", map[string]string{"app": "c"}, []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			nil, []networkingv1.NetworkPolicyEgressRule{{
				To:    []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("e2e-ns", "x"), PodSelector: sel("app", "b")}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p8080}},
			}}),
	}
	for _, p := range policies {
		if _, err := cl.Client.NetworkingV1().NetworkPolicies(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create policy %s/%s: %v", p.Namespace, p.Name, err)
		}
	}
	for _, p := range [][2]string{{"e2e-x", "a"}, {"e2e-x", "b"}, {"e2e-y", "c"}} {
		waitReady(t, cl, p[0], p[1])
	}
	// Endpoints must include b before ClusterIP flows mean anything.
	if err := harness.Eventually(ctx, time.Minute, func() error {
		l, err := cl.Client.DiscoveryV1().EndpointSlices("e2e-x").List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=svc-b"})
		if err != nil {
			return err
		}
		for _, s := range l.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					return nil
				}
			}
		}
		return fmt.Errorf("svc-b has no ready endpoint")
	}); err != nil {
		t.Fatal(err)
	}

	cases := []flowCase{
		{"e2e-x", "a", "e2e-x/b", 8080, "tcp", true},
		{"e2e-x", "a", "e2e-x/b", 8082, "tcp", false}, // egress allows, b's ingress does not
		{"e2e-x", "a", "e2e-x/b", 8081, "udp", false},
		{"e2e-x", "b", "e2e-x/a", 8080, "tcp", false}, // b's egress: default-deny
		{"e2e-y", "c", "e2e-x/b", 8080, "tcp", false}, // c's egress allows, b's ingress names only a
		{"e2e-x", "a", "e2e-y/c", 8080, "tcp", false},
		{"e2e-x", "a", "svc:e2e-x/svc-b", 80, "tcp", true},  // → named port tcp = 8080
		{"e2e-x", "a", "svc:e2e-x/svc-b", 81, "tcp", false}, // → 8082: b refuses
		{"e2e-y", "c", "svc:e2e-x/svc-b", 80, "tcp", false},
	}

	// What verdict says, from the objects as the API server has them.
	dir := t.TempDir()
	if err := harness.DumpState(ctx, cl.Client, dir, "e2e-x", "e2e-y"); err != nil {
		t.Fatal(err)
	}
	verdicts := runVerdict(t, in.StrictgateBinary(), dir, cl, svc, cases)

	for i, c := range cases {
		var target string
		if strings.HasPrefix(c.to, "svc:") {
			target = svc.Spec.ClusterIP
		} else {
			nsName := strings.SplitN(c.to, "/", 2)
			p, err := cl.Client.CoreV1().Pods(nsName[0]).Get(ctx, nsName[1], metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			target = p.Status.PodIP
		}
		addr := fmt.Sprintf("%s:%d", target, c.port)
		name := fmt.Sprintf("%s/%s->%s:%d/%s", c.fromNS, c.from, c.to, c.port, c.proto)
		if verdicts[i] != c.want {
			t.Errorf("%s: strictgate verdict says allow=%v, NetworkPolicy semantics say %v", name, verdicts[i], c.want)
		}
		var last string
		err := harness.Eventually(ctx, 15*time.Second, func() error {
			ans, connErr, err := harness.Connect(ctx, cl, c.fromNS, c.from, c.proto, addr, connTimeout)
			if err != nil {
				return err
			}
			last = fmt.Sprintf("answer %q err %v", ans, connErr)
			if (connErr == nil) != verdicts[i] {
				return fmt.Errorf("%s (%s): cluster connected=%v, verdict allow=%v: %s", name, addr, connErr == nil, verdicts[i], last)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
			continue
		}
		t.Logf("%-40s verdict allow=%-5v cluster agrees (%s)", name, verdicts[i], last)
	}

	// The denials are in the agent's policy event log and in the drop counter.
	ip := func(ns, name string) string {
		p, err := cl.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p.Status.PodIP
	}
	aIP, bIP := ip("e2e-x", "a"), ip("e2e-x", "b")
	if err := harness.Eventually(ctx, 20*time.Second, func() error {
		log, err := harness.AgentLog(ctx, cl.Client, start)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(log, "\n") {
			if !strings.Contains(line, "DENY") {
				continue
			}
			var ev struct {
				Verdict, SrcIP, DstIP, Policy string
				DstPort                       int
			}
			if json.Unmarshal([]byte(line), &ev) == nil && ev.Verdict == "DENY" && ev.SrcIP == aIP && ev.DstIP == bIP && ev.DstPort == 8082 {
				t.Logf("policy event log: %s", line)
				return nil
			}
		}
		return fmt.Errorf("no DENY line for %s -> %s:8082 in the agent log since %s", aIP, bIP, start.Format(time.RFC3339))
	}); err != nil {
		t.Error(err)
	}
}

// TestPrivilegedDropCounterIncreases: a denied connection raises
// network_policy_drop_count_total, which the seed's alert is built on.
func TestPrivilegedDropCounterIncreases(t *testing.T) {
	cl, _ := setup(t)
	const ns = "e2e-drops"
	namespace(t, cl, ns, nil)
	waitDefaultDeny(t, cl, ns)
	startPod(t, cl, ns, "server", map[string]string{"app": "server"})
	startPod(t, cl, ns, "client", map[string]string{"app": "client"})
	server := waitReady(t, cl, ns, "server")
	waitReady(t, cl, ns, "client")
	ctx := ctxFor(t, 3*time.Minute)

	scrape := func() float64 {
		text, err := harness.AgentMetrics(ctx, cl, 9965)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(text, "network_policy_drop_count_total") {
			t.Fatalf("agent /metrics has no network_policy_drop_count_total")
		}
		return harness.MetricSum(text, "network_policy_drop_count_total", `namespace="`+ns+`"`)
	}
	before := scrape()
	for range 3 {
		if _, connErr, err := harness.Connect(ctx, cl, ns, "client", "tcp", server.Status.PodIP+":8080", connTimeout); err != nil {
			t.Fatal(err)
		} else if connErr == nil {
			t.Fatal("default-deny namespace: connection succeeded")
		}
	}
	var after float64
	if err := harness.Eventually(ctx, 15*time.Second, func() error {
		after = scrape()
		if after < before+3 {
			return fmt.Errorf("network_policy_drop_count_total{namespace=%q} %v -> %v, want at least +3 (three refused SYNs)", ns, before, after)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("network_policy_drop_count_total{namespace=%q}: %v -> %v", ns, before, after)
}

// runVerdict asks `strictgate verdict` about every case and returns allow per case.
func runVerdict(t *testing.T, bin, dir string, cl *cluster.Cluster, svc *corev1.Service, cases []flowCase) []bool {
	t.Helper()
	var flows strings.Builder
	for _, c := range cases {
		dst := c.to
		if strings.HasPrefix(c.to, "svc:") {
			dst = svc.Spec.ClusterIP
		}
		fmt.Fprintf(&flows, `{"src":%q,"dst":%q,"port":%d,"protocol":%q}`+"\n", c.fromNS+"/"+c.from, dst, c.port, strings.ToUpper(c.proto))
	}
	cmd := exec.Command(bin, "verdict", "--manifests", dir, "--flows", "-")
	cmd.Stdin = strings.NewReader(flows.String())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("strictgate verdict: %v\n%s\nflows:\n%s", err, stderr.String(), flows.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(cases) {
		t.Fatalf("strictgate verdict printed %d lines for %d flows:\n%s", len(lines), len(cases), out)
	}
	res := make([]bool, len(cases))
	for i, l := range lines {
		var v struct{ Verdict string }
		if err := json.Unmarshal([]byte(l), &v); err != nil || (v.Verdict != "allow" && v.Verdict != "deny") {
			t.Fatalf("verdict line %d %q: %v", i, l, err)
		}
		res[i] = v.Verdict == "allow"
	}
	return res
}
