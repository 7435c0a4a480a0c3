package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/strictgate/strictgate/test/controlplane"
)

// writeKubeconfig writes a kubeconfig for cfg whose only context, named context,
// defaults to namespace.
func writeKubeconfig(t *testing.T, cfg *rest.Config, context, namespace string) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts[context] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin", Namespace: namespace}
	kc.CurrentContext = "missing" // only --context reaches the cluster
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// mustCreate panics on err: the test fails with the stack of the failed API call.
func mustCreate[T any](obj T, err error) T {
	if err != nil {
		panic(err)
	}
	return obj
}

func runPod(t *testing.T, cs kubernetes.Interface, ns, name, ip string, labels map[string]string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	p := mustCreate(cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "c", Image: "probe"}}}}, metav1.CreateOptions{}))
	if ip == "" {
		return p
	}
	p.Status.Phase, p.Status.PodIP, p.Status.PodIPs = corev1.PodRunning, ip, []corev1.PodIP{{IP: ip}}
	return mustCreate(cs.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}))
}

// TestLiveExplainCLI: explain and verdict find the cluster through --kubeconfig and
// --context, or $KUBECONFIG, and take the selector's namespace from the context.
func TestLiveExplainCLI(t *testing.T) {
	cfg := controlplane.Start(t, nil)
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	mustCreate(cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}))
	runPod(t, cs, "shop", "frontend", "10.244.0.10", map[string]string{"app": "frontend"})
	runPod(t, cs, "shop", "backend", "10.244.0.11", map[string]string{"app": "backend"})
	mustCreate(cs.NetworkingV1().NetworkPolicies("shop").Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "isolate-backend"},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "backend"}}},
	}, metav1.CreateOptions{}))
	kc := writeKubeconfig(t, cfg, "sg", "shop")
	t.Setenv("KUBERNETES_SERVICE_HOST", "")

	for _, tc := range []struct {
		name   string
		env    string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"kubeconfig and context", "", []string{"explain", "--kubeconfig", kc, "--context", "sg", "--src", "shop/frontend", "--dst", "shop/backend", "--port", "9090"}, 0,
			"shop/frontend (10.244.0.10) → shop/backend (10.244.0.11) TCP/9090: DENY\n  egress at shop/frontend: allowed: no NetworkPolicy selects shop/frontend for egress", ""},
		{"$KUBECONFIG, selector in the context's namespace", kc, []string{"verdict", "--context", "sg", "-l", "app=frontend", "--dst-selector", "app=backend", "--port", "80"}, 0,
			`{"verdict":"deny","src":"shop/frontend","dst":"shop/backend"`, ""},
		{"-n overrides the context's namespace", kc, []string{"verdict", "--context", "sg", "-n", "default", "-l", "app=frontend", "--dst", "shop/backend", "--port", "80"}, 1,
			"", `src: no running pod in namespace default matches "app=frontend"`},
		{"unknown context", "", []string{"explain", "--kubeconfig", kc, "--context", "nope", "--src", "shop/frontend", "--dst", "shop/backend", "--port", "80"}, 1,
			"", `context "nope" does not exist`},
		{"current context missing", "", []string{"explain", "--kubeconfig", kc, "--src", "shop/frontend", "--dst", "shop/backend", "--port", "80"}, 1,
			"", `live cluster: load kubeconfig: invalid configuration: [context was not found for specified context: missing`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("KUBECONFIG", tc.env)
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tc.code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
				t.Fatalf("stdout %q (want %q)\nstderr %q (want %q)", stdout.String(), tc.stdout, stderr.String(), tc.stderr)
			}
		})
	}
}
