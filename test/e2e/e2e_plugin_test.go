package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/strictgate/strictgate/agent/inspect"
	"github.com/strictgate/strictgate/internal/plugin"
	"github.com/strictgate/strictgate/test/cluster"
	"github.com/strictgate/strictgate/test/e2e/harness"
)

// kubectlPlugin runs `kubectl strictgate ARGS` with the real kubectl, which finds the
// strictgate binary on PATH under the plugin name kubectl-strictgate, exactly as a user's
// `make install-plugin` leaves it. It returns stdout, stderr and the run error.
type kubectlPlugin struct {
	cl   *cluster.Cluster
	path string // PATH holding kubectl-strictgate
}

func newKubectlPlugin(t *testing.T, cl *cluster.Cluster, binary string) *kubectlPlugin {
	t.Helper()
	if binary == "" {
		t.Fatal("no strictgate binary for the plugin")
	}
	dir := t.TempDir()
	if err := os.Symlink(binary, filepath.Join(dir, "kubectl-strictgate")); err != nil {
		t.Fatal(err)
	}
	return &kubectlPlugin{cl: cl, path: dir + string(os.PathListSeparator) + os.Getenv("PATH")}
}

func (k *kubectlPlugin) run(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, k.cl.Kubectl(), append([]string{"strictgate"}, args...)...)
	// kubectl hands a plugin its arguments verbatim and its environment: the plugin
	// resolves the cluster from $KUBECONFIG as kubectl itself would.
	cmd.Env = append(os.Environ(), "PATH="+k.path, "KUBECONFIG="+k.cl.Kubeconfig)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

func (k *kubectlPlugin) inspect(ctx context.Context, pod string) (*inspect.Report, error) {
	out, stderr, err := k.run(ctx, "inspect", "-o", "json", pod)
	if err != nil {
		return nil, fmt.Errorf("kubectl strictgate inspect %s: %v\n%s", pod, err, stderr)
	}
	var r inspect.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return nil, fmt.Errorf("inspect %s printed %q: %v", pod, out, err)
	}
	return &r, nil
}

// TestPrivilegedKubectlPlugin (issue 12): `kubectl strictgate inspect` finds the agent pod
// of the pod's node and runs `strictgate inspect` in it through pods/exec on the real
// cluster; what it reports is the kernel of this machine: the pod's interface and
// attachment, its rules in sync with what the compiler computes, and a policy change
// visible in the kernel's rule counts. `status` lists the pods as programmed, and bad
// requests fail with a message and a non-zero exit.
func TestPrivilegedKubectlPlugin(t *testing.T) {
	cl, in := setup(t)
	const ns = "e2e-plugin"
	namespace(t, cl, ns, nil)
	waitDefaultDeny(t, cl, ns)
	startPod(t, cl, ns, "server", map[string]string{"app": "server"})
	startPod(t, cl, ns, "client", map[string]string{"app": "client"})
	server := waitReady(t, cl, ns, "server")
	waitReady(t, cl, ns, "client")
	ctx := ctxFor(t, 5*time.Minute)
	k := newKubectlPlugin(t, cl, in.StrictgateBinary())

	before, err := k.inspect(ctx, ns+"/server")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("inspect %s/server: attach=%s mode=%s generation=%d ingress kernel=%+v", ns, before.Attach, before.Mode, before.Generation, before.Ingress.Kernel)
	switch {
	case before.Pod != ns+"/server" || before.IP != server.Status.PodIP:
		t.Errorf("inspect names %q at %q, want %s/server at %s", before.Pod, before.IP, ns, server.Status.PodIP)
	case before.Interface == "" || before.Ifindex == 0:
		t.Errorf("inspect shows no host interface: %+v", before)
	case before.Attach != "tcx" && before.Attach != "tc":
		t.Errorf("attach %q, want tcx or tc", before.Attach)
	case before.Mode != "enforce":
		t.Errorf("mode %q in strict mode, want enforce", before.Mode)
	case !before.InSync || before.Problem != "":
		t.Errorf("kernel not in sync with the compiler: problem=%q ingress=%+v egress=%+v", before.Problem, before.Ingress, before.Egress)
	case before.Condition == nil || before.Condition.Status != string(corev1.ConditionTrue):
		t.Errorf("condition %+v, want True", before.Condition)
	case before.Ingress.Kernel.State != "isolated" || before.Ingress.Kernel.PortRules != 0:
		// strictgate-default-deny isolates it and nothing admits anything yet.
		t.Errorf("ingress kernel %+v under default deny, want isolated with no port rules", before.Ingress.Kernel)
	}

	// A policy admitting client -> server:8080 must reach this kernel, and inspect must
	// show it there, still in sync.
	tcp := corev1.ProtocolTCP
	port := intstr.FromInt32(8080)
	np := harness.NetworkPolicy(ns, "server-from-client", map[string]string{"app": "server"}, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		[]networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}}},
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
		}}, nil)
	if _, err := cl.Client.NetworkingV1().NetworkPolicies(ns).Create(ctx, np, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var after *inspect.Report
	if err := harness.Eventually(ctx, 30*time.Second, func() error {
		r, err := k.inspect(ctx, ns+"/server")
		if err != nil {
			return err
		}
		if r.Ingress.Kernel.PortRules == 0 || !r.InSync {
			return fmt.Errorf("ingress kernel %+v in_sync=%v after the allow policy", r.Ingress.Kernel, r.InSync)
		}
		after = r
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if after.Generation == before.Generation {
		t.Errorf("generation %d unchanged after re-programming", after.Generation)
	}
	t.Logf("after the allow policy: generation %d -> %d, ingress kernel %+v", before.Generation, after.Generation, after.Ingress.Kernel)

	// --all on the node: one report per local pod, both of ours in sync.
	out, stderr, err := k.run(ctx, "inspect", "--all", "--node", cl.NodeName, "-o", "json")
	if err != nil {
		t.Fatalf("inspect --all: %v\n%s", err, stderr)
	}
	var all []inspect.Report
	if err := json.Unmarshal([]byte(out), &all); err != nil {
		t.Fatalf("inspect --all printed %q: %v", out, err)
	}
	seen := map[string]bool{}
	for _, r := range all {
		if strings.HasPrefix(r.Pod, ns+"/") {
			seen[r.Pod] = r.InSync
		}
	}
	if !seen[ns+"/server"] || !seen[ns+"/client"] {
		t.Errorf("inspect --all in sync per pod of %s: %v, want server and client both true", ns, seen)
	}

	// status: both pods programmed and Ready, none Ready but ungated.
	out, stderr, err = k.run(ctx, "status", "-n", ns, "-o", "json")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, stderr)
	}
	var st plugin.Report
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status printed %q: %v", out, err)
	}
	gates := map[string]string{}
	for _, n := range st.Namespaces {
		if n.Name != ns {
			continue
		}
		if !n.Enforced {
			t.Errorf("status says %s is not enforced", ns)
		}
		for _, p := range n.Pods {
			gates[p.Name] = p.Gate
			if p.Gate == plugin.GateProgrammed && p.ProgrammedAfter == nil {
				t.Errorf("status: %s programmed without a time to programmed", p.Name)
			}
		}
	}
	if gates["server"] != plugin.GateProgrammed || gates["client"] != plugin.GateProgrammed {
		t.Errorf("status gates %v, want server and client programmed", gates)
	}
	if len(st.ReadyUngated) != 0 {
		t.Errorf("status: ready but ungated %v", st.ReadyUngated)
	}

	// A pod that does not exist: a clear error, non-zero exit, nothing printed on stdout.
	out, stderr, err = k.run(ctx, "inspect", ns+"/no-such-pod")
	if err == nil || out != "" || !strings.Contains(stderr, "no-such-pod") || !strings.Contains(stderr, "not found") {
		t.Errorf("inspect of a missing pod: err=%v stdout=%q stderr=%q, want a not-found error", err, out, stderr)
	}
}
