package main

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/strictgate/strictgate/agent/gate"
	"github.com/strictgate/strictgate/internal/contract"
	"github.com/strictgate/strictgate/internal/plugin"
	"github.com/strictgate/strictgate/test/controlplane"
)

func TestIsPlugin(t *testing.T) {
	for argv0, want := range map[string]bool{
		"/usr/local/bin/kubectl-strictgate": true, "kubectl-strictgate": true, `C:\bin\kubectl-strictgate.exe`: false,
		"kubectl-strictgate.exe": true, "/bin/strictgate": false, "strictgate": false, "kubectl-strictgate-old": false,
	} {
		if got := isPlugin(argv0); got != want {
			t.Errorf("isPlugin(%q) = %v, want %v", argv0, got, want)
		}
	}
	var out bytes.Buffer
	if code := dispatch("kubectl strictgate", pluginCommands, []string{"--help"}, &out, &out); code != 0 {
		t.Fatalf("plugin help: exit %d", code)
	}
	for _, c := range []string{"explain", "inspect", "status"} {
		if !strings.Contains(out.String(), "\n  "+c+" ") {
			t.Errorf("plugin help lacks %s:\n%s", c, out.String())
		}
	}
	if strings.Contains(out.String(), "\n  webhook ") {
		t.Errorf("plugin offers the webhook:\n%s", out.String())
	}
}

// setStatus writes what the kubelet and the agent would have reported.
func setStatus(t *testing.T, cs kubernetes.Interface, p *corev1.Pod, phase corev1.PodPhase, conds ...corev1.PodCondition) {
	t.Helper()
	p.Status.Phase, p.Status.Conditions = phase, conds
	mustCreate(cs.CoreV1().Pods(p.Namespace).UpdateStatus(context.Background(), p, metav1.UpdateOptions{}))
}

func cond(typ corev1.PodConditionType, status corev1.ConditionStatus, reason, msg string, at time.Time) corev1.PodCondition {
	return corev1.PodCondition{Type: typ, Status: status, Reason: reason, Message: msg, LastTransitionTime: metav1.NewTime(at)}
}

// TestPluginStatus: status on a real API server, pods with the conditions an agent and
// a kubelet would have set; the enforcement scope comes from the agent pod's arguments.
func TestPluginStatus(t *testing.T) {
	cfg := controlplane.Start(t, nil)
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	for ns, labels := range map[string]map[string]string{"shop": nil, "batch": nil, "legacy": {contract.EnforceLabel: contract.EnforceDisabled}, "strictgate": nil} {
		mustCreate(cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, metav1.CreateOptions{}))
	}
	agentPod := mustCreate(cs.CoreV1().Pods("strictgate").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "strictgate-agent-x1", Namespace: "strictgate",
			Labels: map[string]string{"app.kubernetes.io/name": "strictgate", "app.kubernetes.io/component": "agent"}},
		Spec: corev1.PodSpec{NodeName: "node-a", HostNetwork: true, Containers: []corev1.Container{{Name: "agent", Image: "strictgate",
			Args: []string{"agent", "--node-name=$(NODE_NAME)", "--namespace=strictgate", "--exclude-namespace=batch", "--mode=strict",
				"--pin-root=/sys/fs/bpf/custom/strictgate", "--default-deny=true", "-v=2"}}}},
	}, metav1.CreateOptions{}))
	setStatus(t, cs, agentPod, corev1.PodRunning, cond(corev1.PodReady, corev1.ConditionTrue, "", "", time.Now()))

	pod := func(ns, name string, gated, hostNet bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: corev1.PodSpec{NodeName: "node-a", HostNetwork: hostNet, Containers: []corev1.Container{{Name: "c", Image: "probe"}}}}
		if gated {
			p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: gate.ConditionType}}
		}
		return mustCreate(cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}))
	}
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	p := pod("shop", "from-ip", true, false)
	setStatus(t, cs, p, corev1.PodRunning, cond(corev1.PodReadyToStartContainers, corev1.ConditionTrue, "", "", t0),
		cond(gate.ConditionType, corev1.ConditionTrue, contract.ReasonProgrammed, "Policy programmed", t0.Add(3*time.Second)),
		cond(corev1.PodReady, corev1.ConditionTrue, "", "", t0.Add(3*time.Second)))
	p = pod("shop", "from-creation", true, false)
	setStatus(t, cs, p, corev1.PodRunning, cond(gate.ConditionType, corev1.ConditionTrue, contract.ReasonProgrammed, "", p.CreationTimestamp.Add(5*time.Second)))
	p = pod("shop", "waiting", true, false)
	setStatus(t, cs, p, corev1.PodRunning, cond(gate.ConditionType, corev1.ConditionFalse, contract.ReasonWaitingForDefaultDeny, "waiting for shop/strictgate-default-deny", t0))
	pod("shop", "no-condition", true, false)
	p = pod("shop", "failed", true, false)
	setStatus(t, cs, p, corev1.PodRunning, cond(gate.ConditionType, corev1.ConditionFalse, contract.ReasonProgrammingFailed, "too many prefixes", t0))
	for _, n := range []struct {
		ns, name string
		hostNet  bool
	}{{"shop", "ungated", false}, {"shop", "hostnet", true}, {"batch", "job", false}, {"legacy", "old", false}} {
		setStatus(t, cs, pod(n.ns, n.name, false, n.hostNet), corev1.PodRunning, cond(corev1.PodReady, corev1.ConditionTrue, "", "", t0))
	}
	setStatus(t, cs, pod("shop", "done", true, false), corev1.PodSucceeded)

	kc := writeKubeconfig(t, cfg, "sg", "shop")
	t.Setenv("KUBECONFIG", kc)
	var stdout, stderr bytes.Buffer
	if code := dispatch("kubectl strictgate", pluginCommands, []string{"status", "--context", "sg", "-o", "json"}, &stdout, &stderr); code != 0 {
		t.Fatalf("status: exit %d: %s", code, stderr.String())
	}
	var r plugin.Report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.ReadyUngated, []string{"shop/ungated"}) {
		t.Errorf("ready but ungated: %q, want only shop/ungated (batch is excluded by the agent's args, legacy opted out, hostnet on the host network)", r.ReadyUngated)
	}
	enforced := map[string]bool{}
	got := map[string]plugin.PodStatus{}
	for _, ns := range r.Namespaces {
		enforced[ns.Name] = ns.Enforced
		for _, p := range ns.Pods {
			got[ns.Name+"/"+p.Name] = p
		}
	}
	if want := map[string]bool{"shop": true, "batch": false, "legacy": false, "strictgate": false}; !mapsEqual(enforced, want) {
		t.Errorf("enforced namespaces %v, want %v", enforced, want)
	}
	secs := func(p plugin.PodStatus) float64 {
		if p.ProgrammedAfter == nil {
			return -1
		}
		return *p.ProgrammedAfter
	}
	for key, want := range map[string]struct {
		gate, reason, since string
		after               float64
	}{
		"shop/from-ip":       {plugin.GateProgrammed, contract.ReasonProgrammed, "ip", 3},
		"shop/from-creation": {plugin.GateProgrammed, contract.ReasonProgrammed, "creation", 5},
		"shop/waiting":       {plugin.GateWaiting, contract.ReasonWaitingForDefaultDeny, "", -1},
		"shop/no-condition":  {plugin.GateWaiting, "NoCondition", "", -1},
		"shop/failed":        {plugin.GateFailed, contract.ReasonProgrammingFailed, "", -1},
		"shop/ungated":       {plugin.GateUngated, "", "", -1},
		"shop/hostnet":       {plugin.GateUngated, "HostNetwork", "", -1},
		"batch/job":          {plugin.GateUngated, "", "", -1},
	} {
		p, ok := got[key]
		if !ok || p.Gate != want.gate || p.Reason != want.reason || p.Since != want.since || secs(p) != want.after {
			t.Errorf("%s: %+v (after %v), want %+v", key, p, secs(p), want)
		}
	}
	if _, ok := got["shop/done"]; ok {
		t.Error("a finished pod is listed")
	}

	stdout.Reset()
	if code := dispatch("kubectl strictgate", pluginCommands, []string{"status", "--context", "sg", "-n", "shop"}, &stdout, &stderr); code != 0 {
		t.Fatalf("status text: exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"NAMESPACE shop (enforced)", "from-ip", "3s from ip", "waiting: WaitingForDefaultDeny", "failed: ProgrammingFailed", "too many prefixes",
		"Ready but ungated in enforced namespaces (1): shop/ungated"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, stdout.String())
		}
	}
	if strings.Contains(stdout.String(), "batch") {
		t.Errorf("-n shop shows other namespaces:\n%s", stdout.String())
	}

	// inspect: the agent pod of the target's node, with the agent's own pin root.
	target := mustCreate(cs.CoreV1().Pods("shop").Get(ctx, "from-ip", metav1.GetOptions{}))
	found, err := plugin.FindAgent(ctx, cs, "strictgate", plugin.DefaultAgentSelector, target.Spec.NodeName)
	if err != nil || found.Name != "strictgate-agent-x1" {
		t.Fatalf("FindAgent: %v, %v", found, err)
	}
	cmd, err := plugin.InspectCommand(found, "shop/from-ip", "json")
	if want := []string{"strictgate", "inspect", "--pin-root=/sys/fs/bpf/custom/strictgate", "--condition-types=" + contract.ConditionType, "-o", "json", "shop/from-ip"}; err != nil || !slices.Equal(cmd, want) {
		t.Fatalf("InspectCommand = %q, %v; want %q", cmd, err, want)
	}
	if _, err := plugin.FindAgent(ctx, cs, "strictgate", plugin.DefaultAgentSelector, "node-b"); err == nil || !strings.Contains(err.Error(), "no strictgate agent pod on node node-b") {
		t.Fatalf("FindAgent on a node without agent: %v", err)
	}
	// No kubelet behind envtest: the exec itself fails, naming the agent pod it went to.
	stderr.Reset()
	if code := dispatch("kubectl strictgate", pluginCommands, []string{"inspect", "--context", "sg", "shop/from-ip"}, &stdout, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "strictgate inspect in agent pod strictgate/strictgate-agent-x1") {
		t.Fatalf("plugin inspect: exit %d, stderr %s", code, stderr.String())
	}
	stderr.Reset()
	if code := dispatch("kubectl strictgate", pluginCommands, []string{"inspect", "--context", "sg", "--all"}, &stdout, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "--all needs --node NODE") {
		t.Fatalf("plugin inspect --all without node: exit %d, stderr %s", code, stderr.String())
	}
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}
