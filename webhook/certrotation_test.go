package webhook

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/strictgate/strictgate/certs"
	chartfiles "github.com/strictgate/strictgate/charts/strictgate/files"
	"github.com/strictgate/strictgate/internal/testenv"
	"github.com/strictgate/strictgate/test/controlplane"
)

// TestCertRotationOnAPIServer runs the webhook with certificate rotation against a real
// kube-apiserver, as its service account with exactly the chart's RBAC, with lifetimes
// of seconds: the CA and the serving certificate are rotated several times while pods
// and NetworkPolicies are created without a pause, and every admission request is
// answered (failurePolicy Fail: a TLS failure would refuse the object).
func TestCertRotationOnAPIServer(t *testing.T) {
	rc := controlplane.Start(t, nil)
	admin, err := client.New(rc, client.Options{Scheme: Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	cfg := DefaultConfig()
	_, portStr, _ := net.SplitHostPort(testenv.FreeAddr(t))
	port, _ := strconv.Atoi(portStr)
	cfg.Host, cfg.Port = "", port
	cfg.CertDir = t.TempDir()
	cfg.MetricsAddr, cfg.ProbeAddr = "0", testenv.FreeAddr(t)
	cfg.LeaderElection = false
	cfg.CertRotation = CertRotationConfig{
		Enabled: true, Secret: "strictgate-webhook-cert", DNSNames: []string{"localhost"},
		MutatingWebhookConfiguration: "strictgate-webhook", ValidatingWebhookConfiguration: "strictgate-webhook",
		CALifetime: 30 * time.Second, CertLifetime: 12 * time.Second, RenewBefore: 8 * time.Second,
		CheckInterval: time.Second, PropagationDelay: 2 * time.Second,
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}

	// The chart's objects: the webhook configurations without a caBundle (pointing at
	// https://localhost:<port>), the empty Secret, the RBAC.
	hooks, err := chartfiles.DecodeWebhooks()
	if err != nil {
		t.Fatal(err)
	}
	url := func(cc *admissionregistrationv1.WebhookClientConfig) {
		u := fmt.Sprintf("https://localhost:%d%s", port, *cc.Service.Path)
		cc.Service, cc.URL, cc.CABundle = nil, &u, nil
	}
	for i := range hooks.Mutating.Webhooks {
		url(&hooks.Mutating.Webhooks[i].ClientConfig)
	}
	for i := range hooks.Validating.Webhooks {
		url(&hooks.Validating.Webhooks[i].ClientConfig)
	}
	mustCreate(t, admin, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: cfg.Namespace}})
	mustCreate(t, admin, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: cfg.CertRotation.Secret, Namespace: cfg.Namespace}})
	mustCreate(t, admin, hooks.Mutating)
	mustCreate(t, admin, hooks.Validating)

	saName := strings.TrimPrefix(cfg.ServiceAccount, "system:serviceaccount:"+cfg.Namespace+":")
	sa := rbacv1.Subject{Kind: "ServiceAccount", Name: saName, Namespace: cfg.Namespace}
	webhookRole, err := chartfiles.DecodeWebhookRole()
	if err != nil {
		t.Fatal(err)
	}
	certRole, certClusterRole, err := chartfiles.DecodeWebhookCertRBAC()
	if err != nil {
		t.Fatal(err)
	}
	for _, cr := range []*rbacv1.ClusterRole{webhookRole, certClusterRole} {
		mustCreate(t, admin, cr)
		mustCreate(t, admin, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: cr.Name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: cr.Name},
			Subjects:   []rbacv1.Subject{sa},
		})
	}
	mustCreate(t, admin, certRole)
	mustCreate(t, admin, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: certRole.Name, Namespace: cfg.Namespace},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: certRole.Name},
		Subjects:   []rbacv1.Subject{sa},
	})
	saRC := rest.CopyConfig(rc)
	saRC.Impersonate = rest.ImpersonationConfig{
		UserName: cfg.ServiceAccount,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + cfg.Namespace, "system:authenticated"},
	}

	// Two replicas rotate, inject and sync at once, as the chart's two pods do; the
	// API server calls the first.
	second := cfg
	second.CertDir, second.ProbeAddr = t.TempDir(), testenv.FreeAddr(t)
	_, portStr2, _ := net.SplitHostPort(testenv.FreeAddr(t))
	second.Port, _ = strconv.Atoi(portStr2)
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 2)
	for _, c := range []Config{cfg, second} {
		mgr, err := newManager(mctx, saRC, c, nil)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		go func() { done <- mgr.Start(mctx) }()
	}
	t.Cleanup(func() {
		cancel()
		for range 2 {
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("manager: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("manager did not stop within 30s")
			}
		}
	})
	eventually(t, 60*time.Second, "webhook ready with a rotated certificate", func() error {
		select {
		case err := <-done:
			t.Fatalf("manager stopped: %v", err)
		default:
		}
		if err := httpOK("http://" + second.ProbeAddr + "/readyz"); err != nil {
			return err
		}
		return httpOK("http://" + cfg.ProbeAddr + "/readyz")
	})

	mustCreate(t, admin, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "rot"}})
	secret := client.ObjectKey{Namespace: cfg.Namespace, Name: cfg.CertRotation.Secret}
	seenCA, seenCert := map[string]bool{}, map[string]bool{}
	observe := func() {
		s := &corev1.Secret{}
		if err := admin.Get(ctx, secret, s); err != nil {
			t.Errorf("read the rotated Secret: %v", err)
			return
		}
		seenCA[string(s.Data[certs.CAFile])] = true
		seenCert[string(s.Data[certs.CertFile])] = true
	}
	// Admission without a pause across rotations: 45s is two CA lifetimes past
	// renewal and about eleven serving-certificate renewals.
	var admitted, failed int
	for end := time.Now().Add(45 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		observe()
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "p-", Namespace: "rot"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.invalid/x:1"}}},
		}
		if err := admin.Create(ctx, pod); err != nil {
			failed++
			t.Errorf("pod refused during rotation: %v", err)
			continue
		}
		if len(pod.Spec.ReadinessGates) != 1 {
			t.Errorf("pod created without the gate: %+v", pod.Spec.ReadinessGates)
		}
		admitted++
		if admitted%10 == 0 { // the validating configuration too
			np := &networkingv1.NetworkPolicy{
				ObjectMeta: metav1.ObjectMeta{GenerateName: "np-", Namespace: "rot"},
				Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
			}
			if err := admin.Create(ctx, np); err != nil {
				failed++
				t.Errorf("NetworkPolicy refused during rotation: %v", err)
			}
		}
	}
	observe()
	t.Logf("%d pods admitted, %d refused; %d CAs and %d serving certificates seen", admitted, failed, len(seenCA), len(seenCert))
	if len(seenCA) < 2 || len(seenCert) < 5 {
		t.Fatalf("only %d CAs and %d serving certificates in 45s: the rotation did not happen as configured", len(seenCA), len(seenCert))
	}

	// The bundle keeps the current CA and at most MaxBundleCAs of the previous ones.
	s := &corev1.Secret{}
	if err := admin.Get(ctx, secret, s); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "caBundle holds the current CA first", func() error {
		m := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := admin.Get(ctx, client.ObjectKey{Name: "strictgate-webhook"}, m); err != nil {
			return err
		}
		b := m.Webhooks[0].ClientConfig.CABundle
		if !bytes.HasPrefix(b, s.Data[certs.CAFile]) {
			return fmt.Errorf("caBundle does not start with the Secret's CA")
		}
		if n := countPEM(b); n > certs.MaxBundleCAs || n < 1 {
			return fmt.Errorf("caBundle has %d certificates", n)
		}
		return nil
	})
}

func countPEM(b []byte) int {
	n := 0
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return n
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err == nil {
			n++
		}
	}
}
