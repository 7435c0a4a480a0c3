package verdict

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/strictgate/strictgate/test/controlplane"
)

// TestLiveClusterNetworkPolicy: --kubeconfig reads ClusterNetworkPolicies from a real
// API server with the chart's CRD (none and no error without it) and names the Admin
// Deny that decided.
func TestLiveClusterNetworkPolicy(t *testing.T) {
	ctx := context.Background()
	bare := controlplane.Start(t, nil)
	if m, err := FromClusterWith(ctx, kubernetes.NewForConfigOrDie(bare), cnpclient.NewForConfigOrDie(bare)); err != nil || len(m.State.ClusterNetworkPolicies) != 0 {
		t.Fatalf("without the CRD: %v, %d policies; want no error and none", err, len(m.State.ClusterNetworkPolicies))
	}

	rc := controlplane.Start(t, &envtest.Environment{CRDInstallOptions: envtest.CRDInstallOptions{Paths: []string{filepath.Join("..", "charts", "strictgate", "crds")}}})
	cs := kubernetes.NewForConfigOrDie(rc)
	cnps := cnpclient.NewForConfigOrDie(rc)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{})
	must(err)
	for name, ip := range map[string]string{"web": "10.244.0.2", "client": "10.244.0.3"} {
		p, err := cs.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", Labels: map[string]string{"app": name}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}}, metav1.CreateOptions{})
		must(err)
		p.Status.PodIP, p.Status.PodIPs, p.Status.Phase = ip, []corev1.PodIP{{IP: ip}}, corev1.PodRunning
		_, err = cs.CoreV1().Pods("shop").UpdateStatus(ctx, p, metav1.UpdateOptions{})
		must(err)
	}
	_, err = cnps.PolicyV1beta1().ClusterNetworkPolicies().Create(ctx, &cnpv1beta1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "platform"},
		Spec: cnpv1beta1.ClusterNetworkPolicySpec{Tier: cnpv1beta1.AdminTier, Priority: 1,
			Subject: cnpv1beta1.ClusterNetworkPolicySubject{Pods: &cnpv1beta1.NamespacedPod{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}},
			Ingress: []cnpv1beta1.ClusterNetworkPolicyIngressRule{{Name: "no-client", Action: cnpv1beta1.ClusterNetworkPolicyRuleActionDeny,
				From: []cnpv1beta1.ClusterNetworkPolicyIngressPeer{{Pods: &cnpv1beta1.NamespacedPod{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}}}}}}}},
		metav1.CreateOptions{})
	must(err)
	var out bytes.Buffer
	must(Run(ctx, Options{Client: cs, ClusterPolicies: cnps, Flows: strings.NewReader(`{"src":"shop/client","dst":"shop/web","port":80}` + "\n"), FlowsName: "-"}, &out))
	for _, want := range []string{`"verdict":"deny"`, `"reason":"deny-rule"`, `"tier":"Admin"`, `"policy":"platform"`, `"name":"no-client"`, `"action":"Deny"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("live verdict lacks %s: %s", want, out.String())
		}
	}
	out.Reset()
	must(Run(ctx, Options{Client: cs, Flows: strings.NewReader(`{"src":"shop/client","dst":"shop/web","port":80}` + "\n"), FlowsName: "-"}, &out))
	if !strings.Contains(out.String(), `"verdict":"allow"`) {
		t.Errorf("without the ClusterPolicies client the CNP must not be read: %s", out.String())
	}
}
