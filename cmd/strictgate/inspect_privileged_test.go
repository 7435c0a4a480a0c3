package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/strictgate/strictgate/agent/compile"
	"github.com/strictgate/strictgate/agent/datapath"
	"github.com/strictgate/strictgate/agent/inspect"
	"github.com/strictgate/strictgate/agent/netdev/netdevtest"
	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/test/controlplane"
	"github.com/strictgate/strictgate/verdict"
)

// TestPrivilegedInspectCLI runs `strictgate inspect` as the agent pod would: flags,
// kubeconfig, the pinned datapath at --pin-root and the node's interfaces (the agent
// package's test covers drift).
func TestPrivilegedInspectCLI(t *testing.T) {
	if !netdevtest.Isolate(t) {
		return
	}
	const root = "/sys/fs/bpf/strictgate" // a private bpffs (Isolate)
	cfg := controlplane.Start(t, nil)
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	web := netdevtest.AddPod(t, "web", netip.MustParseAddr("10.204.0.2"))
	runPod(t, cs, "default", "web", web.IP.String(), map[string]string{"app": "web"})
	mustCreate(cs.NetworkingV1().NetworkPolicies("default").Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "isolate-web"},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
	}, metav1.CreateOptions{}))

	// Program web as the agent would (the agent itself is tested in agent/inspect).
	dp, err := datapath.Open(datapath.Options{PinRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Remove()
	if _, err := dp.Attach(web.HostIndex, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
		t.Fatal(err)
	}
	m, err := verdict.FromCluster(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := compile.BuildLenient(m.State, compile.Options{Node: "node-a"}, nil).Rules(types.NamespacedName{Namespace: "default", Name: "web"})
	if !ok {
		t.Fatal("no rules for web")
	}
	if _, err := dp.Program(web.HostIndex, r); err != nil {
		t.Fatal(err)
	}

	kc := writeKubeconfig(t, cfg, "sg", "default")
	var stdout, stderr bytes.Buffer
	args := []string{"inspect", "default/web", "--kubeconfig", kc, "--context", "sg", "--node", "node-a", "--pin-root", root, "-o", "json"}
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var rep inspect.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, stdout.String())
	}
	if !rep.InSync || rep.Interface != web.Host || rep.Attach != "tcx" || rep.Ingress.Kernel.State != "isolated" || rep.Egress.Kernel.State != "unisolated" {
		t.Fatalf("report: %s", stdout.String())
	}
	stdout.Reset()
	if code := run([]string{"inspect", "--all", "--kubeconfig", kc, "--context", "sg", "--node", "node-a", "--pin-root", root}, &stdout, &stderr); code != 0 {
		t.Fatalf("--all: exit %d: %s", code, stderr.String())
	}
	if lines := strings.Split(strings.TrimSpace(stdout.String()), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], "default/web ") || !strings.HasSuffix(lines[1], "in sync") {
		t.Fatalf("--all table:\n%s", stdout.String())
	}
	stderr.Reset()
	if code := run([]string{"inspect", "default/web", "--kubeconfig", kc, "--context", "sg", "--node", "node-a", "--pin-root", root + "-absent"}, &stdout, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "no datapath pinned at "+root+"-absent") {
		t.Fatalf("absent pin root: exit %d: %s", code, stderr.String())
	}
}
