package cni_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/strictgate/strictgate/agent"
	"github.com/strictgate/strictgate/agent/cniserver"
	"github.com/strictgate/strictgate/agent/datapath"
	"github.com/strictgate/strictgate/agent/gate"
	"github.com/strictgate/strictgate/agent/netdev"
	"github.com/strictgate/strictgate/agent/netdev/netdevtest"
	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/cni"
	"github.com/strictgate/strictgate/internal/contract"
	"github.com/strictgate/strictgate/test/controlplane"
)

const testNode = "node-a"

// addPod runs the plugin's ADD as the runtime does, with the pod's CNI_ARGS.
func addPod(t *testing.T, conf []byte, p *netdevtest.Pod, ns, name string) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envPlugin+"=1",
		"CNI_COMMAND=ADD", "CNI_CONTAINERID=c-"+name, "CNI_NETNS="+p.NetnsPath(),
		"CNI_IFNAME=eth0", "CNI_PATH=/opt/cni/bin",
		"CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE="+ns+";K8S_POD_NAME="+name+";K8S_POD_INFRA_CONTAINER_ID=c-"+name)
	cmd.Stdin = bytes.NewReader(conf)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ADD of %s: %v; stdout %s stderr %s", name, err, out.String(), stderr.String())
	}
}

func addConf(t *testing.T, pinRoot, socket string, timeout time.Duration, prev any, logFile string) []byte {
	t.Helper()
	e := cni.EntryWith(contract.ModeStrict, pinRoot, cni.Options{LogFile: logFile, AgentSocket: socket, ProgramTimeout: timeout})
	e["cniVersion"] = "1.1.0"
	e["name"] = "k8s-pod-network"
	e["prevResult"] = prev
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// gatedPod creates a pod bound to the node as the scheduler leaves it: no IP in its
// status yet (the kubelet writes that only after the sandbox, i.e. after CNI ADD).
func gatedPod(t *testing.T, cs kubernetes.Interface, name string, labels map[string]string) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:       testNode,
			ReadinessGates: []corev1.PodReadinessGate{{ConditionType: gate.ConditionType}},
			Containers:     []corev1.Container{{Name: "c", Image: "probe"}},
		},
	}
	p, err := cs.CoreV1().Pods("default").Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func reportIP(t *testing.T, cs kubernetes.Interface, p *corev1.Pod, ip netip.Addr) {
	t.Helper()
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = ip.String()
	p.Status.PodIPs = []corev1.PodIP{{IP: ip.String()}}
	if _, err := cs.CoreV1().Pods("default").UpdateStatus(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func condition(t *testing.T, cs kubernetes.Interface, name string) (corev1.PodCondition, bool) {
	t.Helper()
	p, err := cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range p.Status.Conditions {
		if c.Type == gate.ConditionType {
			return c, true
		}
	}
	return corev1.PodCondition{}, false
}

func waitTrue(t *testing.T, cs kubernetes.Interface, name string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, ok := condition(t, cs, name); ok && c.Status == corev1.ConditionTrue {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("condition of %s never True", name)
}

// TestPrivilegedProgramAtAdd: real API server, real agent with its real socket server,
// real eBPF, the plugin run as the runtime runs it. A new client pod whose egress is
// isolated reaches the existing server on its node the moment ADD returns; without
// program-at-ADD (or with the agent unreachable) it is deny-all until the agent's
// normal path, and ADD still succeeds.
func TestPrivilegedProgramAtAdd(t *testing.T) {
	if !netdevtest.Isolate(t) {
		return
	}
	const pinRoot = "/sys/fs/bpf/strictgate"
	rc := controlplane.Start(t, nil)
	cs := kubernetes.NewForConfigOrDie(rc)
	ctx := context.Background()
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: testNode}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	web := netdevtest.AddPod(t, "web", netip.MustParseAddr("10.201.0.2"))
	fresh := netdevtest.AddPod(t, "fresh", netip.MustParseAddr("10.201.0.3"))
	late := netdevtest.AddPod(t, "late", netip.MustParseAddr("10.201.0.4"))
	lost := netdevtest.AddPod(t, "lost", netip.MustParseAddr("10.201.0.5"))
	web.ListenTCP(t, 8080)
	if err := fresh.ProbeTCP(web.IP, 8080, 3*time.Second); err != nil {
		t.Fatalf("plumbing: %v", err)
	}

	tcp := intstr.FromInt(8080)
	proto := corev1.ProtocolTCP
	ports := []networkingv1.NetworkPolicyPort{{Protocol: &proto, Port: &tcp}}
	sel := func(app string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}
	}
	for _, np := range []*networkingv1.NetworkPolicy{
		{ // web admits clients only
			ObjectMeta: metav1.ObjectMeta{Name: "web-from-clients", Namespace: "default"},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: *sel("web"), PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("client")}}, Ports: ports}}},
		},
		{ // clients may talk only to web
			ObjectMeta: metav1.ObjectMeta{Name: "clients-to-web", Namespace: "default"},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: *sel("client"), PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
				Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("web")}}, Ports: ports}}},
		},
	} {
		if _, err := cs.NetworkingV1().NetworkPolicies("default").Create(ctx, np, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	dp, err := datapath.Open(datapath.Options{PinRoot: pinRoot})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if d, err := datapath.Open(datapath.Options{PinRoot: pinRoot}); err == nil {
			d.Remove()
		}
	})
	cfg := agent.DefaultConfig()
	cfg.NodeName = testNode
	cfg.MetricsAddr = ""
	cfg.Namespace = "strictgate"
	cfg.ExcludedNamespaces = []string{"default"} // no default-deny controller runs here
	if err := agent.ConfigureDatapath(dp, cfg); err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(cfg, agent.Deps{Client: cs, Datapath: agent.NewDatapath(dp, false), Interfaces: netdev.New(nil),
		Log: testr.New(t), HostAddrs: func() ([]netip.Addr, error) { return nil, nil }})
	if err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = a.Run(actx) }()
	<-a.Ready()
	socket := filepath.Join(t.TempDir(), "strictgate", "agent.sock")
	srv := &cniserver.Server{Path: socket, Handler: a.ProgramAtAdd, Timeout: 3 * time.Second, Log: testr.New(t)}
	l, err := srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(actx, l) }()

	// web exists and is programmed the ordinary way.
	webPod := gatedPod(t, cs, "web", map[string]string{"app": "web"})
	if _, err := dp.Attach(web.HostIndex, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
		t.Fatal(err)
	}
	reportIP(t, cs, webPod, web.IP)
	waitTrue(t, cs, "web")

	logFile := filepath.Join(t.TempDir(), "cni.log")
	t.Run("program at ADD: allowed from the first instruction, condition still the agent's", func(t *testing.T) {
		p := gatedPod(t, cs, "fresh", map[string]string{"app": "client"})
		addPod(t, addConf(t, pinRoot, socket, 3*time.Second, result(fresh), logFile), fresh, "default", "fresh")
		// One attempt, right after ADD returned: what an entrypoint does first.
		if err := fresh.ProbeTCP(web.IP, 8080, time.Second); err != nil {
			log, _ := os.ReadFile(logFile)
			t.Fatalf("fresh -> web right after ADD: %v (web must admit the new IP, fresh's egress must be programmed); plugin log:\n%s", err, log)
		}
		kp, err := dp.Pod(fresh.HostIndex)
		if err != nil || kp.Egress != rules.StateIsolated || kp.Ingress != rules.StateUnisolated {
			t.Fatalf("kernel entry of fresh after ADD: %+v, %v; want egress isolated by its policy, ingress open", kp, err)
		}
		if err := fresh.ProbeTCP(late.IP, 8080, 300*time.Millisecond); err == nil {
			t.Fatal("fresh reached a pod its egress policy does not allow")
		}
		// Only the normal reconcile sets the condition, once the API server shows the IP.
		if c, ok := condition(t, cs, "fresh"); ok {
			t.Fatalf("condition set at ADD (%+v): it belongs to the agent's reconcile", c)
		}
		reportIP(t, cs, p, fresh.IP)
		waitTrue(t, cs, "fresh")
		if log, _ := os.ReadFile(logFile); !strings.Contains(string(log), "programmed default/fresh at ADD") {
			t.Errorf("plugin log lacks the programmed line:\n%s", log)
		}
	})

	t.Run("inconsistent or unknown requests program nothing", func(t *testing.T) {
		rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
		defer rcancel()
		for _, tc := range []struct {
			name    string
			req     cniserver.Request
			wantErr string
		}{
			{"interface is not the IP's", cniserver.Request{Version: cniserver.Version, Namespace: "default", Name: "web", IPs: []string{web.IP.String()}, IfIndex: late.HostIndex}, "routed to"},
			{"pod unknown to the API server", cniserver.Request{Version: cniserver.Version, Namespace: "default", Name: "ghost", IPs: []string{late.IP.String()}, IfIndex: late.HostIndex}, "not found"},
		} {
			resp, err := cniserver.Program(rctx, socket, &tc.req)
			if err != nil || resp.Programmed || !strings.Contains(resp.Error, tc.wantErr) {
				t.Errorf("%s: %+v, %v; want refused with %q", tc.name, resp, err, tc.wantErr)
			}
		}
		if _, err := dp.Pod(late.HostIndex); err == nil {
			t.Error("a refused request left a datapath entry on late's interface")
		}
	})

	for _, tc := range []struct{ name, socket string }{
		{"late", ""}, // program at ADD off: today's strict mode
		{"lost", filepath.Join(t.TempDir(), "no.sock")}, // agent unreachable
	} {
		t.Run("without the agent at ADD: "+tc.name+" stays deny-all and ADD succeeds", func(t *testing.T) {
			p := map[string]*netdevtest.Pod{"late": late, "lost": lost}[tc.name]
			pod := gatedPod(t, cs, tc.name, map[string]string{"app": "client"})
			addPod(t, addConf(t, pinRoot, tc.socket, 200*time.Millisecond, result(p), logFile), p, "default", tc.name)
			if err := p.ProbeTCP(web.IP, 8080, 300*time.Millisecond); err == nil {
				t.Fatalf("%s carried traffic before the agent programmed it", tc.name)
			}
			kp, err := dp.Pod(p.HostIndex)
			if err != nil || kp.Egress != rules.StateUnprogrammedDeny || kp.Ingress != rules.StateUnprogrammedDeny {
				t.Fatalf("kernel entry of %s: %+v, %v; want unprogrammed-deny", tc.name, kp, err)
			}
			reportIP(t, cs, pod, p.IP)
			waitTrue(t, cs, tc.name)
			if err := p.ProbeTCP(web.IP, 8080, 2*time.Second); err != nil {
				t.Fatalf("%s -> web after the normal path: %v", tc.name, err)
			}
		})
	}
}
