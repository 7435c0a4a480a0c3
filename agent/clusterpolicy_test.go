package agent_test

import (
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/strictgate/strictgate/agent"
	"github.com/strictgate/strictgate/agent/gate"
	"github.com/strictgate/strictgate/agent/netdev"
	"github.com/strictgate/strictgate/agent/netdev/netdevtest"
	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/test/controlplane"
)

func cnpPods(sel map[string]string) *cnpv1beta1.NamespacedPod {
	return &cnpv1beta1.NamespacedPod{PodSelector: metav1.LabelSelector{MatchLabels: sel}}
}

func cnpTCP(p int32) []cnpv1beta1.ClusterNetworkPolicyProtocol {
	return []cnpv1beta1.ClusterNetworkPolicyProtocol{{TCP: &cnpv1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: &cnpv1beta1.Port{Number: p}}}}
}

// TestPrivilegedClusterNetworkPolicy: real kube-apiserver without the CRD at first (the
// agent enforces NetworkPolicy and says so once), then the chart's CRD installed while
// the agent runs; Admin and Baseline tiers through the real eBPF datapath with real
// sockets: Admin Deny beats a NetworkPolicy allow, Admin Accept beats NetworkPolicy
// isolation, Pass falls to NetworkPolicy, a Baseline deny applies only where no
// NetworkPolicy isolates the pod; the gate stays True throughout.
func TestPrivilegedClusterNetworkPolicy(t *testing.T) {
	if !netdevtest.Isolate(t) {
		return
	}
	const pinRoot = "/sys/fs/bpf/strictgate"
	rc := controlplane.Start(t, nil)
	cs := kubernetes.NewForConfigOrDie(rc)
	cnps := cnpclient.NewForConfigOrDie(rc)
	ctx := context.Background()
	createNode(t, cs)

	web := netdevtest.AddPod(t, "web", netip.MustParseAddr("10.202.0.2"))
	client := netdevtest.AddPod(t, "client", netip.MustParseAddr("10.202.0.3"))
	other := netdevtest.AddPod(t, "other", netip.MustParseAddr("10.202.0.4"))
	for _, p := range []*netdevtest.Pod{web, client} {
		p.ListenTCP(t, 8080)
		p.ListenTCP(t, 9090)
	}
	tcp := func(from, to *netdevtest.Pod, port int) bool {
		return from.ProbeTCP(to.IP, port, 400*time.Millisecond) == nil
	}
	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("not within 20s: %s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err := client.ProbeTCP(web.IP, 8080, 3*time.Second); err != nil {
		t.Fatalf("plumbing: %v", err)
	}
	dp := openPinnedDatapath(t, pinRoot)
	for _, p := range []*netdevtest.Pod{web, client, other} {
		if _, err := dp.Attach(p.HostIndex, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
			t.Fatal(err)
		}
	}
	must(cs.NetworkingV1().NetworkPolicies("default").Create(ctx,
		policy("allow-web", "web", map[string]string{"app": "client"}, port(corev1.ProtocolTCP, 8080)), metav1.CreateOptions{}))
	startPod(t, cs, "default", "web", nodeName, web.IP.String(), map[string]string{"app": "web"})
	startPod(t, cs, "default", "client", nodeName, client.IP.String(), map[string]string{"app": "client"})
	startPod(t, cs, "default", "other", nodeName, other.IP.String(), map[string]string{"app": "other"})

	logs := &syncBuffer{}
	cfg := testConfig()
	cfg.CRDPollPeriod = 200 * time.Millisecond
	if err := agent.ConfigureDatapath(dp, cfg); err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(cfg, agent.Deps{Client: cs, Datapath: agent.NewDatapath(dp, false), Interfaces: netdev.New(nil),
		Gate: gate.New(cs.CoreV1()), ClusterPolicies: cnps,
		Log: funcr.New(func(prefix, args string) { logs.Write([]byte(prefix + " " + args + "\n")) }, funcr.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()
	t.Cleanup(func() { cancel(); <-done })
	for _, n := range []string{"web", "client", "other"} {
		waitCondition(t, cs, "default", n, isTrue)
	}
	if !tcp(client, web, 8080) || tcp(other, web, 8080) {
		t.Fatal("without the CRD: NetworkPolicy is not enforced as usual")
	}
	time.Sleep(time.Second) // several polls
	if n := strings.Count(logs.String(), "ClusterNetworkPolicy CRD"); n != 1 {
		t.Fatalf("the missing CRD is logged %d times, want once:\n%s", n, logs.String())
	}

	if _, err := envtest.InstallCRDs(rc, envtest.CRDInstallOptions{Paths: []string{filepath.Join("..", "charts", "strictgate", "crds")}}); err != nil {
		t.Fatal(err)
	}
	eventually("the agent notices the CRD", func() bool { return strings.Contains(logs.String(), "CRD installed") })

	admin := must(cnps.PolicyV1beta1().ClusterNetworkPolicies().Create(ctx, &cnpv1beta1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "platform"},
		Spec: cnpv1beta1.ClusterNetworkPolicySpec{Tier: cnpv1beta1.AdminTier, Priority: 10,
			Subject: cnpv1beta1.ClusterNetworkPolicySubject{Pods: cnpPods(map[string]string{"app": "web"})},
			Ingress: []cnpv1beta1.ClusterNetworkPolicyIngressRule{{Name: "no-client-8080", Action: cnpv1beta1.ClusterNetworkPolicyRuleActionDeny,
				From: []cnpv1beta1.ClusterNetworkPolicyIngressPeer{{Pods: cnpPods(map[string]string{"app": "client"})}}, Protocols: cnpTCP(8080)}}},
	}, metav1.CreateOptions{}))
	eventually("Admin Deny beats the NetworkPolicy allow (client -> web:8080 dropped)", func() bool { return !tcp(client, web, 8080) })

	admin.Spec.Ingress = []cnpv1beta1.ClusterNetworkPolicyIngressRule{
		{Name: "monitoring", Action: cnpv1beta1.ClusterNetworkPolicyRuleActionAccept,
			From: []cnpv1beta1.ClusterNetworkPolicyIngressPeer{{Pods: cnpPods(map[string]string{"app": "other"})}}, Protocols: cnpTCP(8080)},
		{Name: "to-np", Action: cnpv1beta1.ClusterNetworkPolicyRuleActionPass,
			From: []cnpv1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{}}}},
	}
	must(cnps.PolicyV1beta1().ClusterNetworkPolicies().Update(ctx, admin, metav1.UpdateOptions{}))
	eventually("Admin Accept beats NetworkPolicy isolation (other -> web:8080)", func() bool { return tcp(other, web, 8080) })
	if !tcp(client, web, 8080) || tcp(client, web, 9090) {
		t.Fatal("Pass does not fall to NetworkPolicy: want client -> web 8080 allowed, 9090 dropped")
	}

	if !tcp(web, client, 9090) {
		t.Fatal("before the Baseline: client is not isolated, web -> client:9090 must pass")
	}
	must(cnps.PolicyV1beta1().ClusterNetworkPolicies().Create(ctx, &cnpv1beta1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "baseline-deny"},
		Spec: cnpv1beta1.ClusterNetworkPolicySpec{Tier: cnpv1beta1.BaselineTier, Priority: 50,
			Subject: cnpv1beta1.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{}},
			Ingress: []cnpv1beta1.ClusterNetworkPolicyIngressRule{{Name: "deny-all", Action: cnpv1beta1.ClusterNetworkPolicyRuleActionDeny,
				From: []cnpv1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{}}}}}},
	}, metav1.CreateOptions{}))
	eventually("Baseline deny applies to the NetworkPolicy-unisolated client", func() bool { return !tcp(web, client, 9090) })
	if !tcp(client, web, 8080) {
		t.Fatal("Baseline deny reached web, which NetworkPolicy isolates (NetworkPolicy decides there)")
	}
	for _, n := range []string{"web", "client", "other"} {
		waitCondition(t, cs, "default", n, isTrue)
	}
	if kp, err := dp.Pod(client.HostIndex); err != nil || kp.Ingress != rules.StateIsolated {
		t.Fatalf("client's kernel entry with a Baseline tier: %+v, %v", kp, err)
	}
}
