package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/strictgate/strictgate/test/cluster"
	"github.com/strictgate/strictgate/test/e2e/harness"
)

const webhookDeployment = harness.Release + "-webhook"

// scaleWebhook sets the webhook Deployment's replicas and waits until that many pods
// are Ready (0: until none is left).
func scaleWebhook(ctx context.Context, t *testing.T, cl *cluster.Cluster, n int) {
	t.Helper()
	patch := []byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, n))
	if _, err := cl.Client.AppsV1().Deployments(harness.Namespace).Patch(ctx, webhookDeployment, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("scale %s to %d: %v", webhookDeployment, n, err)
	}
	if err := harness.Eventually(ctx, 3*time.Minute, func() error {
		pods, err := cl.Client.CoreV1().Pods(harness.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=webhook"})
		if err != nil {
			return err
		}
		ready := 0
		for i := range pods.Items {
			if harness.Ready(&pods.Items[i]) == nil {
				ready++
			}
		}
		if (n == 0 && len(pods.Items) > 0) || ready < n {
			return fmt.Errorf("%d webhook pods, %d ready, want %d", len(pods.Items), ready, n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestPrivilegedWebhookOutage (issue 8, suite 5). With the webhook scaled to 0, and
// separately with its pods running but black-holed: pods and NetworkPolicies of
// enforced namespaces are refused (failurePolicy Fail) with the API server naming the
// webhook and the cause; kube-system still admits pods; the agent keeps enforcing; the
// webhook's own pods can be recreated (no deadlock) and a new pod is gated and
// programmed again. With failurePolicy Ignore a pod is admitted ungated and the
// datapath still holds it to its namespace's default-deny.
func TestPrivilegedWebhookOutage(t *testing.T) {
	// A to C are about the webhook's pod mutator (gate.injection=webhook, the only way
	// before Kubernetes 1.36); D about the MutatingAdmissionPolicy auto picks here.
	byWebhook := map[string]any{"gate": map[string]any{"injection": "webhook"}}
	cl, _ := setupWith(t, "strict", byWebhook)
	const ns = "e2e-webhook-out"
	namespace(t, cl, ns, nil)
	waitDefaultDeny(t, cl, ns)
	ctx := ctxFor(t, 15*time.Minute)
	tcp := corev1.ProtocolTCP
	p8080 := intstr.FromInt32(8080)
	sel := func(a string) []networkingv1.NetworkPolicyPeer {
		return []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": a}}}}
	}
	for _, p := range []*networkingv1.NetworkPolicy{
		harness.NetworkPolicy(ns, "server-in", map[string]string{"app": "server"}, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			[]networkingv1.NetworkPolicyIngressRule{{From: sel("client"), Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p8080}}}}, nil),
		harness.NetworkPolicy(ns, "client-out", map[string]string{"app": "client"}, []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			nil, []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}}}),
	} {
		if _, err := cl.Client.NetworkingV1().NetworkPolicies(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	startPod(t, cl, ns, "server", map[string]string{"app": "server"})
	startPod(t, cl, ns, "client", map[string]string{"app": "client"})
	server := waitReady(t, cl, ns, "server")
	waitReady(t, cl, ns, "client")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		scaleWebhook(ctx, t, cl, 2) // the chart's default; helm would not notice a drift
	})
	enforcing := func(label string) {
		t.Helper()
		for _, c := range []struct {
			port int
			want bool
		}{{8080, true}, {8082, false}} {
			_, connErr, err := harness.Connect(ctx, cl, ns, "client", "tcp", fmt.Sprintf("%s:%d", server.Status.PodIP, c.port), connTimeout)
			if err != nil {
				t.Fatal(err)
			}
			if (connErr == nil) != c.want {
				t.Errorf("%s: client → server:%d connected=%v, want %v", label, c.port, connErr == nil, c.want)
			}
		}
	}
	refused := func(label string) string {
		t.Helper()
		start := time.Now()
		_, err := cl.Client.CoreV1().Pods(ns).Create(ctx, harness.ProbePod(ns, "during-outage", nil), metav1.CreateOptions{})
		if err == nil {
			t.Fatalf("%s: a pod in enforced namespace %s was admitted with failurePolicy Fail and no webhook", label, ns)
		}
		msg := err.Error()
		if !strings.Contains(msg, "strictgate") || !strings.Contains(msg, "failed calling webhook") {
			t.Errorf("%s: refusal does not name strictgate's webhook and the failed call: %v", label, err)
		}
		np := harness.NetworkPolicy(ns, "during-outage", map[string]string{"app": "x"}, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, nil, nil)
		if _, err := cl.Client.NetworkingV1().NetworkPolicies(ns).Create(ctx, np, metav1.CreateOptions{}); err == nil {
			t.Errorf("%s: a NetworkPolicy was admitted without its hygiene check", label)
		}
		t.Logf("FAILCLOSED webhook-outage %s pod refused after %s: %v", label, ms(time.Since(start)), err)
		return msg
	}
	systemPodWorks := func(label string) {
		t.Helper()
		p := harness.ProbePod("kube-system", "e2e-during-webhook-outage", nil)
		if _, err := cl.Client.CoreV1().Pods("kube-system").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Errorf("%s: kube-system refused a pod: %v", label, err)
			return
		}
		defer cl.Client.CoreV1().Pods("kube-system").Delete(context.Background(), p.Name, metav1.DeleteOptions{})
		waitReady(t, cl, "kube-system", p.Name)
	}
	recovered := func(label, name string) {
		t.Helper()
		start := time.Now()
		if err := harness.Eventually(ctx, time.Minute, func() error {
			_, err := cl.Client.CoreV1().Pods(ns).Create(ctx, harness.ProbePod(ns, name, map[string]string{"app": name}), metav1.CreateOptions{})
			return err
		}); err != nil {
			t.Fatalf("%s: no pod admitted after recovery: %v", label, err)
		}
		p := waitReady(t, cl, ns, name)
		if !harness.HasGate(p) {
			t.Errorf("%s: the pod admitted after recovery has no readiness gate", label)
		}
		t.Logf("FAILCLOSED webhook-outage %s recovered: new gated pod Ready %s after the webhook was back", label, ms(time.Since(start)))
	}

	// A: no webhook pod at all.
	scaleWebhook(ctx, t, cl, 0)
	refused("scaled-to-0")
	systemPodWorks("scaled-to-0")
	enforcing("scaled-to-0")
	scaleWebhook(ctx, t, cl, 2) // the release namespace is never gated: no deadlock
	recovered("scaled-to-0", "after-scale")

	// B: webhook pods running, their address black-holed from the API server.
	pods, err := cl.Client.CoreV1().Pods(harness.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=webhook"})
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, p := range pods.Items {
		ips = append(ips, p.Status.PodIP)
	}
	hole := fmt.Sprintf("table ip strictgate-e2e-blackhole {\n chain out { type filter hook output priority 0; ip daddr { %s } tcp dport 9443 drop; }\n}\n", strings.Join(ips, ", "))
	nft := exec.CommandContext(ctx, "nft", "-f", "-")
	nft.Stdin = strings.NewReader(hole)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("black-hole the webhook: %v\n%s", err, out)
	}
	unhole := func() { exec.Command("nft", "delete", "table", "ip", "strictgate-e2e-blackhole").Run() }
	t.Cleanup(unhole)
	refused("black-holed")
	enforcing("black-holed")
	unhole()
	recovered("black-holed", "after-blackhole")

	// C: failurePolicy Ignore: admitted without the gate, still closed by the datapath.
	cl, _ = setupWith(t, "strict", map[string]any{"gate": byWebhook["gate"], "webhook": map[string]any{"admission": map[string]any{"pods": map[string]any{"failurePolicy": "Ignore"}}}})
	scaleWebhook(ctx, t, cl, 0)
	startPod(t, cl, ns, "ungated", map[string]string{"app": "ungated"})
	ungated := waitReady(t, cl, ns, "ungated")
	if harness.HasGate(ungated) {
		t.Errorf("failurePolicy Ignore, webhook down: the pod got the gate anyway?")
	}
	_, connErr, err := harness.Connect(ctx, cl, ns, "client", "tcp", ungated.Status.PodIP+":8080", connTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("FAILCLOSED webhook-outage ignore: ungated pod admitted; client → ungated:8080 (default-deny) connected=%v", connErr == nil)
	if connErr == nil {
		t.Errorf("a pod admitted ungated while the webhook was down is open: default-deny not enforced by the datapath")
	}
	enforcing("ignore")

	// D: the gate by MutatingAdmissionPolicy (the chart's default on this 1.37 cluster):
	// no webhook is in the pod's path, so with the webhook gone pods are still created,
	// gated, programmed and Ready; only NetworkPolicy hygiene waits for the webhook.
	cl, _ = setupWith(t, "strict", nil)
	if _, err := cl.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "strictgate-webhook", metav1.GetOptions{}); err == nil {
		t.Fatal("the default install registers the pod mutator on a cluster that serves MutatingAdmissionPolicy")
	}
	scaleWebhook(ctx, t, cl, 0)
	start := time.Now()
	startPod(t, cl, ns, "by-policy", map[string]string{"app": "by-policy"})
	p := waitReady(t, cl, ns, "by-policy")
	if !harness.HasGate(p) {
		t.Fatal("webhook down, gate by policy: the pod was created without the readiness gate")
	}
	t.Logf("FAILCLOSED webhook-outage policy: pod created, gated and Ready %s with no webhook running", ms(time.Since(start)))
	np := harness.NetworkPolicy(ns, "during-outage-policy", map[string]string{"app": "x"}, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, nil, nil)
	if _, err := cl.Client.NetworkingV1().NetworkPolicies(ns).Create(ctx, np, metav1.CreateOptions{}); err == nil {
		t.Error("gate by policy, webhook down: a NetworkPolicy was admitted without its hygiene check")
	}
	_, connErr, err = harness.Connect(ctx, cl, ns, "client", "tcp", p.Status.PodIP+":8080", connTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if connErr == nil {
		t.Error("a pod gated by the policy while the webhook was down is open: default-deny not enforced")
	}
	scaleWebhook(ctx, t, cl, 2)
	enforcing("policy")
}
