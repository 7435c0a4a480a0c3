package agent_test

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/strictgate/strictgate/agent"
	"github.com/strictgate/strictgate/agent/datapath"
	"github.com/strictgate/strictgate/agent/netdev/netdevtest"
	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/internal/contract"
	"github.com/strictgate/strictgate/internal/testenv"
	"github.com/strictgate/strictgate/test/controlplane"
)

func writeKubeconfig(t *testing.T, rc *rest.Config) string {
	t.Helper()
	c := clientcmdapi.NewConfig()
	c.Clusters["test"] = &clientcmdapi.Cluster{Server: rc.Host, CertificateAuthorityData: rc.CAData}
	c.AuthInfos["test"] = &clientcmdapi.AuthInfo{ClientCertificateData: rc.CertData, ClientKeyData: rc.KeyData, Token: rc.BearerToken}
	c.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "test"}
	c.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*c, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func httpGet(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestPrivilegedMainAuditMode runs the whole agent process (agent.Main, as `strictgate
// agent` does) in audit mode: nothing is dropped, would-be drops are logged as AUDIT to
// the event log file and counted, /metrics and /readyz answer.
func TestPrivilegedMainAuditMode(t *testing.T) {
	if !netdevtest.Isolate(t) {
		return
	}
	rc := controlplane.Start(t, nil)
	cs := kubernetes.NewForConfigOrDie(rc)
	ctx := context.Background()
	createNode(t, cs, netdevtest.NodeIP.String())

	web := netdevtest.AddPod(t, "web", netip.MustParseAddr("10.201.0.2"))
	other := netdevtest.AddPod(t, "other", netip.MustParseAddr("10.201.0.4"))
	web.ListenTCP(t, 8080)

	// Deny all ingress to web.
	deny := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "deny-web", Namespace: "default"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}
	must(cs.NetworkingV1().NetworkPolicies("default").Create(ctx, deny, metav1.CreateOptions{}))
	startPod(t, cs, "default", "web", nodeName, web.IP.String(), map[string]string{"app": "web"})
	startPod(t, cs, "default", "other", nodeName, other.IP.String(), map[string]string{"app": "other"})

	cfg := agent.DefaultConfig()
	cfg.NodeName = nodeName
	cfg.Mode = contract.ModeAudit
	cfg.ExcludedNamespaces = []string{"default"} // no default-deny controller runs here
	cfg.Kubeconfig = writeKubeconfig(t, rc)
	cfg.MetricsAddr = testenv.FreeAddr(t)
	cfg.EventLogFile = filepath.Join(t.TempDir(), "events.log")
	cfg.EventLogMaxSizeMB, cfg.EventLogMaxBackups = 1, 1 // the size-rotated node file (hostFile in the chart)
	cfg.PinRoot = "/sys/fs/bpf/strictgate"               // private bpffs (Isolate)
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	stdout := &syncBuffer{}
	go func() { done <- agent.Main(mctx, cfg, stdout, testr.New(t)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent.Main: %v", err)
		}
		if d, err := datapath.Open(datapath.Options{PinRoot: cfg.PinRoot}); err == nil {
			d.Remove()
		}
	})

	waitCondition(t, cs, "default", "web", isTrue)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code, _ := httpGet("http://" + cfg.MetricsAddr + "/readyz"); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("/readyz never OK")
		}
		time.Sleep(50 * time.Millisecond)
	}
	d, err := datapath.Open(datapath.Options{PinRoot: cfg.PinRoot})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if kp := must(d.Pod(web.HostIndex)); kp.Ingress != rules.StateIsolated || !kp.Audit {
		t.Fatalf("web's kernel entry %+v: want isolated ingress with audit", kp)
	}
	if err := other.ProbeTCP(web.IP, 8080, 2*time.Second); err != nil {
		t.Fatalf("audit mode dropped a packet: %v", err)
	}

	var log string
	deadline = time.Now().Add(5 * time.Second)
	for !strings.Contains(log, `"verdict":"AUDIT"`) {
		b, _ := os.ReadFile(cfg.EventLogFile)
		log = string(b)
		if time.Now().After(deadline) {
			t.Fatalf("no AUDIT event in the event log file:\n%s", log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(log, `"dstPod":"web"`) || !strings.Contains(log, `"policy":"default-deny"`) {
		t.Fatalf("AUDIT event lacks pod or policy:\n%s", log)
	}
	// The node file holds the very lines of stdout (stdout is written first), one JSON
	// object per line that jq parses, and grep finds the verdict lines jq selects.
	if out := stdout.String(); !strings.HasPrefix(out, log) {
		t.Fatalf("event log file is not the lines of stdout:\nfile:\n%s\nstdout:\n%s", log, out)
	}
	if out, err := exec.Command("jq", "-e", "-c", ".verdict", cfg.EventLogFile).CombinedOutput(); err != nil {
		t.Fatalf("jq cannot parse the event log file: %v\n%s", err, out)
	}
	jqN, err := exec.Command("jq", "-c", `select(.verdict == "AUDIT")`, cfg.EventLogFile).Output()
	if err != nil {
		t.Fatal(err)
	}
	grepN, err := exec.Command("grep", `"verdict":"AUDIT"`, cfg.EventLogFile).Output()
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(grepN), "\n"); n == 0 || n != strings.Count(string(jqN), "\n") {
		t.Fatalf("grep finds %d AUDIT lines, jq %d", n, strings.Count(string(jqN), "\n"))
	}
	_, metrics := httpGet("http://" + cfg.MetricsAddr + "/metrics")
	for _, want := range []string{
		`strictgate_policy_verdict_packets_total{direction="ingress",namespace="default",verdict="AUDIT"}`,
		`network_policy_drop_count_total{direction="ingress",namespace="default"} 0`,
		"strictgate_pods_programmed 2",
		"strictgate_gate_latency_seconds_count 2",
		"strictgate_policy_programming_seconds_count",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", grep(metrics, "strictgate_", "network_policy"))
	}
	// The AUDIT counter counts packets, not 0.
	for _, l := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(l, `strictgate_policy_verdict_packets_total{direction="ingress",namespace="default",verdict="AUDIT"}`) && strings.HasSuffix(l, " 0") {
			t.Errorf("AUDIT packets not counted: %s", l)
		}
	}
}

func grep(s string, prefixes ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "\n")
}
