// Command demo is `make demo`: strictgate end to end on the one-node cluster of this
// machine, narrated. It starts (or reuses) the cluster, imports strictgate's image,
// helm-installs the chart in strict mode, starts probe pods, shows the readiness gate
// holding a pod NotReady until the agent has programmed its policy, applies
// NetworkPolicies, shows connections allowed and dropped, explains a denied flow, and
// shows the DENY policy event log and network_policy_drop_count_total.
//
// Every step states what it expects; the demo exits 1 if any expectation fails. It can
// be run again at any time: it recreates its namespace and upgrades the release. It
// uninstalls strictgate at the end unless --keep is given (other users of the cluster,
// e.g. `make test`, expect a plain cluster).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/strictgate/strictgate/test/cluster"
	"github.com/strictgate/strictgate/test/controlplane"
	"github.com/strictgate/strictgate/test/e2e/harness"
)

const (
	ns          = "demo"
	agentPort   = 9965
	connTimeout = 2 * time.Second
)

type demo struct {
	ctx    context.Context
	cl     *cluster.Cluster
	in     *harness.Install
	start  time.Time
	step   int
	passed int
	failed []string
}

func main() {
	keep := flag.Bool("keep", false, "leave strictgate and the demo namespace installed at the end (to explore with kubectl)")
	mode := flag.String("mode", "strict", "enforcement mode: strict, standard or audit")
	binary := flag.String("binary", "", "static strictgate binary to put into the image (default: bin/strictgate if `make build` made it, else build one)")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "demo: the one-node cluster needs root (network namespaces, routes, nftables, containers): run `sudo make demo`")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	d := &demo{ctx: ctx, start: time.Now()}
	cfg, err := cluster.DefaultConfig()
	if err == nil {
		// Installing strictgate changes the cluster for everyone: wait until no test
		// process uses it, and keep them waiting while the demo runs.
		fmt.Println("(taking the one-node cluster for the demo; waits while test processes use it)")
		err = cluster.WithExclusiveLock(cfg, 45*time.Minute, func() error { return d.run(cfg, *mode, *binary, *keep) })
	}
	if err != nil {
		fmt.Printf("\n\033[31mdemo stopped: %v\033[0m\n", err)
		os.Exit(1)
	}
	fmt.Printf("\n%d expectations held", d.passed)
	if len(d.failed) > 0 {
		fmt.Printf(", \033[31m%d failed:\033[0m\n", len(d.failed))
		for _, f := range d.failed {
			fmt.Println("  ✗", f)
		}
		os.Exit(1)
	}
	fmt.Printf(" — demo done in %s.\n", time.Since(d.start).Round(time.Second))
}

func (d *demo) section(title string) {
	d.step++
	fmt.Printf("\n\033[1m── %d. %s\033[0m\n", d.step, title)
}

func (d *demo) say(format string, args ...any) { fmt.Printf("   "+format+"\n", args...) }

func (d *demo) expect(ok bool, what string, detail string) {
	if ok {
		d.passed++
		fmt.Printf("   \033[32m✓\033[0m %s%s\n", what, suffix(detail))
		return
	}
	d.failed = append(d.failed, what+suffix(detail))
	fmt.Printf("   \033[31m✗ %s%s\033[0m\n", what, suffix(detail))
}

func suffix(s string) string {
	if s == "" {
		return ""
	}
	return "  (" + s + ")"
}

func (d *demo) run(cfg cluster.Config, mode, binary string, keep bool) error {
	fmt.Println("\033[1mstrictgate demo\033[0m — NetworkPolicy that fails closed at pod start-up, and says when it is in force.")

	d.section("One-node Kubernetes cluster (etcd, kube-apiserver, kubelet, containerd, kube-proxy, ptp CNI)")
	t0 := time.Now()
	d.say("starting or reusing the cluster (the very first run builds it from source: ~15 minutes) ...")
	cl, err := cluster.Up(d.ctx, cfg, prefixWriter{"   cluster: "})
	if err != nil {
		return err
	}
	d.cl = cl
	how := "started"
	if cl.Reused {
		how = "reused the running cluster"
	}
	d.say("%s in %s: node %s (%s), pods %s, services %s", how, time.Since(t0).Round(100*time.Millisecond), cl.NodeName, cl.NodeIP, cl.PodCIDR, cl.ServiceCIDR)
	d.say("kubectl: export KUBECONFIG=%s", cl.Kubeconfig)

	d.section("helm install strictgate (mode " + mode + ")")
	if binary == "" {
		binary = harness.RepoBinary(controlplane.RepoRoot())
	}
	if binary != "" {
		d.say("image from %s (make build, CGO_ENABLED=0)", binary)
	}
	in, err := harness.InstallStrictgate(d.ctx, cl, harness.Options{Mode: mode, Binary: binary, Log: prefixWriter{"   "}})
	if err != nil {
		return err
	}
	d.in = in
	d.say("helm upgrade --install %s %s --namespace %s --set mode=%s,image.repository=%s,image.tag=%s,image.pullPolicy=Never --wait",
		harness.Release, "charts/strictgate", harness.Namespace, mode, in.Image.Repository, in.Image.Tag)
	d.printPods(harness.Namespace)
	d.expect(true, fmt.Sprintf("webhook (2 replicas) and agent ready %s after helm started", in.HelmTook.Round(100*time.Millisecond)), "")

	d.section("A fresh namespace is enforced: strictgate-default-deny appears on its own")
	if err := harness.CreateNamespace(d.ctx, cl.Client, ns, nil); err != nil {
		return err
	}
	var generated []string
	err = harness.Eventually(d.ctx, 30*time.Second, func() error {
		l, err := cl.Client.NetworkingV1().NetworkPolicies(ns).List(d.ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		generated = generated[:0]
		for _, p := range l.Items {
			generated = append(generated, p.Name)
		}
		if len(generated) < 2 {
			return fmt.Errorf("policies in %s: %v", ns, generated)
		}
		return nil
	})
	d.say("kubectl get networkpolicy -n %s → %s", ns, strings.Join(generated, ", "))
	d.expect(err == nil, "default-deny and allow-dns generated by the webhook's controller", errString(err))

	d.section("The readiness gate: a pod is not Ready until its policy is in the kernel")
	if err := d.gateTimeline(); err != nil {
		return err
	}
	for _, p := range []struct{ name, app string }{{"frontend", "frontend"}, {"intruder", "intruder"}} {
		if _, err := cl.Client.CoreV1().Pods(ns).Create(d.ctx, harness.ProbePod(ns, p.name, map[string]string{"app": p.app}), metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	svc, err := cl.Client.CoreV1().Services(ns).Create(d.ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "backend", Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "backend"},
			Ports: []corev1.ServicePort{{Name: "echo", Port: 80, TargetPort: intstr.FromString("tcp"), Protocol: corev1.ProtocolTCP}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	pods := map[string]*corev1.Pod{}
	for _, name := range []string{"backend", "frontend", "intruder"} {
		p, err := harness.WaitPod(d.ctx, cl.Client, ns, name, 2*time.Minute, harness.Ready)
		if err != nil {
			return err
		}
		pods[name] = p
	}
	d.printPods(ns)
	d.say("Service backend: ClusterIP %s port 80 → targetPort tcp (8080)", svc.Spec.ClusterIP)

	d.section("Default deny: nothing talks yet")
	backend := pods["backend"].Status.PodIP
	d.connect("frontend", "tcp", backend+":8080", false, "frontend → backend:8080")
	d.connect("frontend", "tcp", svc.Spec.ClusterIP+":80", false, "frontend → Service backend:80")

	d.section("Apply policies: frontend may reach backend on TCP 8080 — nothing else")
	tcp := corev1.ProtocolTCP
	port := intstr.FromInt32(8080)
	for _, p := range []*networkingv1.NetworkPolicy{
		harness.NetworkPolicy(ns, "backend-from-frontend", map[string]string{"app": "backend"}, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			[]networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "frontend"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
			}}, nil),
		harness.NetworkPolicy(ns, "frontend-to-backend", map[string]string{"app": "frontend"}, []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			nil, []networkingv1.NetworkPolicyEgressRule{{
				To:    []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "backend"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
			}}),
	} {
		if _, err := cl.Client.NetworkingV1().NetworkPolicies(ns).Create(d.ctx, p, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("apply %s: %w", p.Name, err)
		}
		d.say("kubectl apply networkpolicy %s", p.Name)
	}
	d.connect("frontend", "tcp", backend+":8080", true, "frontend → backend:8080")
	d.connect("frontend", "tcp", svc.Spec.ClusterIP+":80", true, "frontend → Service backend:80 (kube-proxy DNAT to 8080)")
	d.connect("frontend", "tcp", backend+":8082", false, "frontend → backend:8082 (other port)")
	d.connect("frontend", "udp", backend+":8081", false, "frontend → backend:8081/udp (other protocol)")
	d.connect("intruder", "tcp", backend+":8080", false, "intruder → backend:8080 (not selected by any allow)")

	d.section("strictgate explain: why was intruder → backend:8080 denied?")
	dir, err := os.MkdirTemp("", "strictgate-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := harness.DumpState(d.ctx, cl.Client, dir, ns); err != nil {
		return err
	}
	d.say("$ strictgate explain --manifests <objects of namespace %s> --src %s/intruder --dst %s/backend --port 8080", ns, ns, ns)
	out, err := exec.CommandContext(d.ctx, in.StrictgateBinary(), "explain", "--manifests", dir,
		"--src", ns+"/intruder", "--dst", ns+"/backend", "--port", "8080", "--protocol", "TCP").CombinedOutput()
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		d.say("  │ %s", l)
	}
	d.expect(err == nil && strings.Contains(strings.ToLower(string(out)), "den"), "explain names the denial", errString(err))

	d.section("Policy event log: DENY lines from the agent (kubectl logs ... | grep DENY)")
	var denies []string
	err = harness.Eventually(d.ctx, 20*time.Second, func() error {
		log, err := harness.AgentLog(d.ctx, cl.Client, d.start)
		if err != nil {
			return err
		}
		denies = denies[:0]
		sc := bufio.NewScanner(strings.NewReader(log))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var ev map[string]any
			// The connections the demo made (TCP/UDP between its pods); other drops,
			// e.g. IPv6 neighbour discovery, are counted but not shown.
			if json.Unmarshal(sc.Bytes(), &ev) == nil && ev["verdict"] == "DENY" && ev["srcNamespace"] == ns && ev["dstNamespace"] == ns &&
				(ev["protocol"] == "TCP" || ev["protocol"] == "UDP") {
				denies = append(denies, sc.Text())
			}
		}
		if len(denies) == 0 {
			return fmt.Errorf("no DENY line for namespace %s yet", ns)
		}
		return nil
	})
	for i, l := range denies {
		if i == 4 {
			d.say("  … %d more", len(denies)-4)
			break
		}
		d.say("  %s", l)
	}
	d.expect(err == nil, fmt.Sprintf("%d DENY lines for the demo's connections name the pods, namespaces and policy", len(denies)), errString(err))

	d.section("Metrics: network_policy_drop_count_total (the seed's alert: sum(rate(...[1m])) > 0)")
	text, err := harness.AgentMetrics(d.ctx, cl, agentPort)
	if err != nil {
		return err
	}
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "network_policy_drop_count_total{") && strings.Contains(l, `namespace="`+ns+`"`) {
			d.say("  %s", l)
		}
	}
	drops := harness.MetricSum(text, "network_policy_drop_count_total", `namespace="`+ns+`"`)
	d.expect(drops > 0, "the drops are counted in the kernel and exported", fmt.Sprintf("%v packets in namespace %s", drops, ns))

	if keep {
		d.section("Left running (--keep)")
		d.say("export KUBECONFIG=%s", cl.Kubeconfig)
		d.say("kubectl get pods -n %s -o wide; kubectl -n strictgate logs ds/strictgate-agent | grep DENY", ns)
		d.say("remove: helm uninstall strictgate -n strictgate (and make cluster-down)")
		return nil
	}
	d.section("Clean up: helm uninstall (the cluster keeps running; make cluster-down stops it)")
	if err := harness.DeleteNamespace(d.ctx, cl.Client, ns); err != nil {
		return err
	}
	err = in.Uninstall(d.ctx)
	d.expect(err == nil, "strictgate uninstalled and unchained from the CNI configuration", errString(err))
	return nil
}

// gateTimeline creates the backend pod and prints every change of its readiness as the
// API server reports it.
func (d *demo) gateTimeline() error {
	w, err := d.cl.Client.CoreV1().Pods(ns).Watch(d.ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", "backend").String()})
	if err != nil {
		return err
	}
	defer w.Stop()
	created := time.Now()
	p, err := d.cl.Client.CoreV1().Pods(ns).Create(d.ctx, harness.ProbePod(ns, "backend", map[string]string{"app": "backend"}), metav1.CreateOptions{})
	if err != nil {
		return err
	}
	d.expect(harness.HasGate(p), "the webhook added readiness gate strictgate.dev/policy-programmed at CREATE", "")
	d.say("%-8s  %-8s  %-12s  %-15s  %-16s  %s", "t", "PHASE", "IP", "CONTAINERS", "READINESS GATES", "READY")
	last := ""
	held, readyBeforeGate, gateSeen := false, false, false
	deadline := time.After(2 * time.Minute)
	for {
		select {
		case <-deadline:
			return fmt.Errorf("pod backend not Ready within 2 minutes")
		case ev, ok := <-w.ResultChan():
			if !ok {
				return fmt.Errorf("watch of pod backend ended")
			}
			if ev.Type == watch.Error {
				return fmt.Errorf("watch: %v", ev.Object)
			}
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			cready := status(harness.Condition(p, corev1.ContainersReady))
			ready := status(harness.Condition(p, corev1.PodReady))
			gate := harness.Condition(p, harness.GateCondition)
			gates := harness.GateSummary(p)
			row := fmt.Sprintf("%-8s  %-12s  %-15s  %-16s  %s", p.Status.Phase, orDash(p.Status.PodIP), cready, gates, ready)
			if row == last {
				continue
			}
			last = row
			note := ""
			if cready == "True" && (gate == nil || gate.Status != corev1.ConditionTrue) {
				held = true
				note = "  ← containers ready, pod held NotReady by the gate"
			}
			if ready == "True" && (gate == nil || gate.Status != corev1.ConditionTrue) {
				readyBeforeGate = true
			}
			if gate != nil && gate.Status == corev1.ConditionTrue && !gateSeen {
				gateSeen = true
				note = fmt.Sprintf("  ← agent: %s (%s)", gate.Reason, gate.Message)
			}
			if ready == "True" {
				note = "  ← kubelet: every gate True and containers ready"
			}
			d.say("+%-7s  %s%s", fmt.Sprintf("%.2fs", time.Since(created).Seconds()), row, note)
			if ready == "True" {
				d.expect(!readyBeforeGate, "Ready only after strictgate.dev/policy-programmed=True (set by the agent on this node)",
					fmt.Sprintf("Ready %.2fs after create", time.Since(created).Seconds()))
				if held {
					d.say("  the kubelet reported the containers ready before the policy was programmed, and the gate kept the pod out of Service endpoints")
				}
				return nil
			}
		}
	}
}

func status(c *corev1.PodCondition) string {
	if c == nil {
		return "-"
	}
	return string(c.Status)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// connect runs the probe client in a pod and checks the outcome. Programming is
// asynchronous (milliseconds), so a few retries are allowed before the answer counts.
func (d *demo) connect(from, proto, target string, want bool, what string) {
	var got string
	err := harness.Eventually(d.ctx, 15*time.Second, func() error {
		ans, connErr, err := harness.Connect(d.ctx, d.cl, ns, from, proto, target, connTimeout)
		if err != nil {
			return err
		}
		if connErr != nil {
			got = "dropped: " + connErr.Error()
		} else {
			got = "answered: " + ans
		}
		if (connErr == nil) != want {
			return fmt.Errorf("%s", got)
		}
		return nil
	})
	verb := "DROPPED"
	if want {
		verb = "ALLOWED"
	}
	d.expect(err == nil, fmt.Sprintf("%-58s %s", what, verb), got)
}

func (d *demo) printPods(namespace string) {
	pods, err := d.cl.Client.CoreV1().Pods(namespace).List(d.ctx, metav1.ListOptions{})
	if err != nil {
		d.say("list pods: %v", err)
		return
	}
	d.say("$ kubectl get pods -n %s -o wide", namespace)
	d.say("  %-36s %-8s %-9s %-14s %s", "NAME", "READY", "STATUS", "IP", "READINESS GATES")
	for _, p := range pods.Items {
		ready := 0
		for _, s := range p.Status.ContainerStatuses {
			if s.Ready {
				ready++
			}
		}
		d.say("  %-36s %-8s %-9s %-14s %s", p.Name, fmt.Sprintf("%d/%d", ready, len(p.Spec.Containers)), p.Status.Phase, p.Status.PodIP, harness.GateSummary(&p))
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// prefixWriter indents progress output of the cluster and the installer.
type prefixWriter struct{ prefix string }

func (w prefixWriter) Write(b []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		fmt.Println(w.prefix + l)
	}
	return len(b), nil
}
