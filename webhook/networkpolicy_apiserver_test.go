package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	chartfiles "github.com/strictgate/strictgate/charts/strictgate/files"
	"github.com/strictgate/strictgate/internal/contract"
	"github.com/strictgate/strictgate/test/controlplane"
	"github.com/strictgate/strictgate/webhook/hygiene"
)

const (
	hygNamespace = "hygiene"
	hygGuarded   = "guarded"
	hygSA        = "system:serviceaccount:strictgate:strictgate-webhook"
)

// warningRecorder collects the API server's warning headers (admission warnings).
type warningRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warningRecorder) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, msg)
}

func (w *warningRecorder) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.msgs
	w.msgs = nil
	return out
}

// hygEnv is a real kube-apiserver calling the hygiene validator over TLS, the
// validator running in a controller-runtime manager exactly as SetupNetworkPolicyValidator
// wires it in production.
type hygEnv struct {
	rc       *rest.Config
	admin    client.Client
	warnings *warningRecorder
	engine   *hygiene.Engine
	rulesDir string
	cache    client.Reader
}

// chartValidatingWebhook is the chart's validating webhook for path, alone, with its
// service path in the form envtest rewrites into a URL of the local server.
func chartValidatingWebhook(t *testing.T, path string) *admissionregistrationv1.ValidatingWebhookConfiguration {
	t.Helper()
	hooks, err := chartfiles.DecodeWebhooks()
	if err != nil {
		t.Fatal(err)
	}
	cfg := hooks.Validating.DeepCopy()
	cfg.Webhooks = nil
	for _, h := range hooks.Validating.Webhooks {
		if *h.ClientConfig.Service.Path == path {
			p := strings.TrimPrefix(path, "/")
			h.ClientConfig.Service.Path = &p
			cfg.Webhooks = append(cfg.Webhooks, h)
		}
	}
	if len(cfg.Webhooks) != 1 {
		t.Fatalf("chart has %d webhooks for %s, want 1", len(cfg.Webhooks), path)
	}
	return cfg
}

func startHygieneEnv(t *testing.T) *hygEnv {
	t.Helper()
	env := &envtest.Environment{WebhookInstallOptions: envtest.WebhookInstallOptions{
		ValidatingWebhooks: []*admissionregistrationv1.ValidatingWebhookConfiguration{chartValidatingWebhook(t, PathValidateNetworkPolicy)},
	}}
	rc := controlplane.Start(t, env)
	wo := &env.WebhookInstallOptions

	ctx, cancel := context.WithCancel(context.Background())
	mgr, err := ctrl.NewManager(rc, ctrl.Options{
		Scheme:                 Scheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		WebhookServer: crwebhook.NewServer(crwebhook.Options{
			Host: wo.LocalServingHost, Port: wo.LocalServingPort, CertDir: wo.LocalServingCertDir, TLSOpts: TLSOptions(),
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.ServiceAccount = hygSA
	hc := DefaultNetworkPolicyConfig()
	hc.RulesDir = t.TempDir()
	hc.PollInterval = 200 * time.Millisecond
	hc.MaxPortRange = 100
	engine, err := SetupNetworkPolicyValidator(ctx, mgr, cfg, hc)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	hygEventually(t, 30*time.Second, "webhook server serving TLS", func() error {
		req, _ := http.NewRequest(http.MethodGet, "/", nil)
		return mgr.GetWebhookServer().StartedChecker()(req)
	})
	syncCtx, syncCancel := context.WithTimeout(ctx, 30*time.Second)
	defer syncCancel()
	if !mgr.GetCache().WaitForCacheSync(syncCtx) {
		t.Fatal("informer caches did not sync")
	}

	warnings := &warningRecorder{}
	wrc := rest.CopyConfig(rc)
	wrc.WarningHandlerWithContext = warnings
	admin, err := client.New(wrc, client.Options{Scheme: Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return &hygEnv{rc: rc, admin: admin, warnings: warnings, engine: engine, rulesDir: hc.RulesDir, cache: mgr.GetClient()}
}

func hygEventually(t *testing.T, timeout time.Duration, what string, f func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := f()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// impersonate returns a client acting as user (RBAC and admission see that user).
func (h *hygEnv) impersonate(t *testing.T, user string, groups ...string) client.Client {
	t.Helper()
	rc := rest.CopyConfig(h.rc)
	rc.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: append(groups, "system:authenticated")}
	c, err := client.New(rc, client.Options{Scheme: Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func hygPod(name string, labels map[string]string, ports ...corev1.ContainerPort) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: hygNamespace, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.invalid/app:1", Ports: ports}}},
	}
}

// seed creates the namespaces and pods the rules look at, and waits until the
// validator's cache sees them.
func (h *hygEnv) seed(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for _, ns := range []string{hygNamespace, hygGuarded} {
		if err := h.admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	// alice and strictgate's service account may edit NetworkPolicies as far as RBAC goes.
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "np-editor"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: []string{"get", "list", "create", "update", "patch", "delete"}}},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "np-editor"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "np-editor"},
		Subjects: []rbacv1.Subject{
			{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"},
			{Kind: rbacv1.ServiceAccountKind, Namespace: "strictgate", Name: "strictgate-webhook"},
		},
	}
	for _, o := range []client.Object{role, binding} {
		if err := h.admin.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []*corev1.Pod{
		hygPod("web", map[string]string{"app": "web"}, corev1.ContainerPort{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}),
		hygPod("db", map[string]string{"app": "db"}, corev1.ContainerPort{Name: "postgres", ContainerPort: 5432, Protocol: corev1.ProtocolTCP}),
	} {
		if err := h.admin.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	hygEventually(t, 10*time.Second, "pods in the validator's cache", func() error {
		var l corev1.PodList
		if err := h.cache.List(ctx, &l, client.InNamespace(hygNamespace)); err != nil {
			return err
		}
		if len(l.Items) != 2 {
			return fmt.Errorf("cache has %d pods", len(l.Items))
		}
		return nil
	})
}

// create applies np as admin and returns the warnings the client got and the error.
func (h *hygEnv) create(t *testing.T, np *networkingv1.NetworkPolicy, opts ...client.CreateOption) ([]string, error) {
	t.Helper()
	h.warnings.take()
	err := h.admin.Create(context.Background(), np, opts...)
	return h.warnings.take(), err
}

func (h *hygEnv) cleanup(t *testing.T, np *networkingv1.NetworkPolicy) {
	t.Helper()
	if err := h.admin.Delete(context.Background(), np); err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("delete %s: %v", np.Name, err)
	}
}

func hygMetric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// np builds a policy in the hygiene namespace selecting the web pod.
func np(name string, mutate func(*networkingv1.NetworkPolicySpec)) *networkingv1.NetworkPolicy {
	p := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: hygNamespace},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}
	mutate(&p.Spec)
	return p
}

var (
	tcp = corev1.ProtocolTCP
	udp = corev1.ProtocolUDP
)

func portNum(n int) *intstr.IntOrString { v := intstr.FromInt32(int32(n)); return &v }

func portName(s string) *intstr.IntOrString { v := intstr.FromString(s); return &v }

func fromDB() []networkingv1.NetworkPolicyPeer {
	return []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}}}
}

func ipBlock(cidr string, except ...string) []networkingv1.NetworkPolicyPeer {
	return []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}}
}

func egressOnly(s *networkingv1.NetworkPolicySpec, rules ...networkingv1.NetworkPolicyEgressRule) {
	s.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	s.Egress = rules
}

var dnsRule = networkingv1.NetworkPolicyEgressRule{
	To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}}}},
	Ports: []networkingv1.NetworkPolicyPort{
		{Protocol: &udp, Port: portNum(53)},
		{Protocol: &tcp, Port: portNum(53)},
	},
}

func manyPorts(n int) []networkingv1.NetworkPolicyPort {
	out := make([]networkingv1.NetworkPolicyPort, n)
	for i := range out {
		out[i] = networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: portNum(i + 1)}
	}
	return out
}

func TestNetworkPolicyHygieneOnAPIServer(t *testing.T) {
	h := startHygieneEnv(t)
	h.seed(t)
	t.Run("rules", h.testRules)
	t.Run("validation agrees with the API server", h.testValidationAgrees)
	t.Run("dry-run", h.testDryRun)
	t.Run("protected policies", h.testProtected)
	t.Run("custom rules", h.testCustomRules)
	t.Run("finalizer removal while deleting", h.testFinalizer)
}

// testFinalizer: a non-compliant policy (written by strictgate's service account,
// which is not judged) with a finalizer can still be deleted: the finalizer removal
// is an UPDATE of the terminating object, which hygiene must not refuse.
func (h *hygEnv) testFinalizer(t *testing.T) {
	ctx := context.Background()
	sa := h.impersonate(t, hygSA, "system:serviceaccounts")
	bad := np("finalized", func(s *networkingv1.NetworkPolicySpec) { s.Ingress = []networkingv1.NetworkPolicyIngressRule{{}} })
	bad.Finalizers = []string{"test.strictgate.dev/hold"}
	if err := sa.Create(ctx, bad); err != nil {
		t.Fatalf("service account create: %v", err)
	}
	if err := h.admin.Delete(ctx, bad); err != nil {
		t.Fatalf("delete: %v", err)
	}
	var cur networkingv1.NetworkPolicy
	if err := h.admin.Get(ctx, client.ObjectKeyFromObject(bad), &cur); err != nil {
		t.Fatal(err)
	}
	if cur.DeletionTimestamp == nil {
		t.Fatal("policy not terminating")
	}
	// A real update of the terminating, non-compliant policy: only the finalizer goes.
	cur.Finalizers = nil
	if err := h.admin.Update(ctx, &cur); err != nil {
		t.Fatalf("finalizer removal refused: %v", err)
	}
}

func (h *hygEnv) testRules(t *testing.T) {
	type outcome int
	const (
		denied outcome = iota
		warned
	)
	for _, tc := range []struct {
		id        string
		want      outcome
		bad, good func(*networkingv1.NetworkPolicySpec)
		annotate  bool // good = bad + the SG001 exemption annotation
		wantText  string
	}{
		{
			id:  "SG001-open-rule",
			bad: func(s *networkingv1.NetworkPolicySpec) { s.Ingress = []networkingv1.NetworkPolicyIngressRule{{}} },
			good: func(s *networkingv1.NetworkPolicySpec) {
				s.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: fromDB()}}
			},
			wantText: "spec.ingress[0]",
		},
		{
			id:       "SG001-open-rule",
			bad:      func(s *networkingv1.NetworkPolicySpec) { s.Ingress = []networkingv1.NetworkPolicyIngressRule{{}} },
			annotate: true,
		},
		{
			id: "SG002-any-cidr",
			bad: func(s *networkingv1.NetworkPolicySpec) {
				egressOnly(s, dnsRule, networkingv1.NetworkPolicyEgressRule{To: ipBlock("0.0.0.0/0")})
			},
			good: func(s *networkingv1.NetworkPolicySpec) {
				egressOnly(s, dnsRule, networkingv1.NetworkPolicyEgressRule{To: ipBlock("0.0.0.0/0", "10.0.0.0/8", "169.254.0.0/16")})
			},
			wantText: `"0.0.0.0/0"`,
		},
		{
			id: "SG003-all-namespaces",
			bad: func(s *networkingv1.NetworkPolicySpec) {
				s.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}}}}
			},
			good: func(s *networkingv1.NetworkPolicySpec) {
				s.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": hygNamespace}}}}}}
			},
		},
		{
			id: "SG004-cloud-metadata",
			bad: func(s *networkingv1.NetworkPolicySpec) {
				egressOnly(s, dnsRule, networkingv1.NetworkPolicyEgressRule{To: ipBlock("169.254.0.0/16")})
			},
			good: func(s *networkingv1.NetworkPolicySpec) {
				egressOnly(s, dnsRule, networkingv1.NetworkPolicyEgressRule{To: ipBlock("169.254.0.0/16", "169.254.169.254/32")})
			},
			wantText: "169.254.169.254/32",
		},
		{
			id: "SG005-policy-types",
			bad: func(s *networkingv1.NetworkPolicySpec) {
				s.Egress = []networkingv1.NetworkPolicyEgressRule{dnsRule} // policyTypes stays [Ingress]
			},
			good: func(s *networkingv1.NetworkPolicySpec) {
				s.PolicyTypes = append(s.PolicyTypes, networkingv1.PolicyTypeEgress)
				s.Egress = []networkingv1.NetworkPolicyEgressRule{dnsRule}
			},
		},
		{
			id: "SG006-port-range",
			bad: func(s *networkingv1.NetworkPolicySpec) {
				end := int32(2000)
				s.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: fromDB(), Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: portNum(1000), EndPort: &end}}}}
			},
			good: func(s *networkingv1.NetworkPolicySpec) {
				end := int32(1099)
				s.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: fromDB(), Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: portNum(1000), EndPort: &end}}}}
			},
			wantText: "more than the allowed 100",
		},
		{
			id:       "SG007-unmatched-selector",
			want:     warned,
			bad:      func(s *networkingv1.NetworkPolicySpec) { s.PodSelector.MatchLabels["app"] = "ghost" },
			good:     func(s *networkingv1.NetworkPolicySpec) {},
			wantText: "spec.podSelector matches no pod",
		},
		{
			id:   "SG007-unmatched-selector",
			want: warned,
			bad: func(s *networkingv1.NetworkPolicySpec) {
				s.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{"ghost"}}}}}}}}
			},
			good: func(s *networkingv1.NetworkPolicySpec) {
				s.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: fromDB()}}
			},
			wantText: "spec.ingress[0].from[0] selects no existing pod",
		},
		{
			id:   "SG008-unknown-named-port",
			want: warned,
			bad: func(s *networkingv1.NetworkPolicySpec) {
				s.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: fromDB(), Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: portName("metrics")}}}}
			},
			good: func(s *networkingv1.NetworkPolicySpec) {
				s.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: fromDB(), Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: portName("http")}}}}
			},
			wantText: `"metrics"/TCP`,
		},
		{
			id:   "SG009-no-dns-egress",
			want: warned,
			bad: func(s *networkingv1.NetworkPolicySpec) {
				egressOnly(s, networkingv1.NetworkPolicyEgressRule{To: fromDB(), Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: portName("postgres")}}})
			},
			good: func(s *networkingv1.NetworkPolicySpec) {
				egressOnly(s, dnsRule, networkingv1.NetworkPolicyEgressRule{To: fromDB(), Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: portName("postgres")}}})
			},
			wantText: "pod web",
		},
		{
			id: "SG010-datapath-limits",
			bad: func(s *networkingv1.NetworkPolicySpec) {
				s.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: fromDB(), Ports: manyPorts(513)}}
			},
			good: func(s *networkingv1.NetworkPolicySpec) {
				s.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: fromDB(), Ports: manyPorts(512)}}
			},
			wantText: "MaxPortRulesPerEntry = 512",
		},
	} {
		name := tc.id
		if tc.annotate {
			name += "/exempted"
		}
		t.Run(name, func(t *testing.T) {
			slug := strings.ToLower(strings.SplitN(tc.id, "-", 2)[0])
			bad := np(slug+"-bad", tc.bad)
			if tc.annotate {
				bad.Annotations = map[string]string{"strictgate.dev/allow-open-rule": "public health checks from the load balancer"}
				warnings, err := h.create(t, bad)
				if err != nil {
					t.Fatalf("exempted policy refused: %v", err)
				}
				for _, w := range warnings {
					if strings.Contains(w, tc.id) {
						t.Errorf("exempted policy warned: %s", w)
					}
				}
				h.cleanup(t, bad)
				return
			}

			warnings, err := h.create(t, bad)
			switch tc.want {
			case denied:
				if err == nil {
					h.cleanup(t, bad)
					t.Fatalf("violating policy admitted (warnings %q)", warnings)
				}
				if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), tc.id) || !strings.Contains(err.Error(), tc.wantText) {
					t.Fatalf("error %q: want Forbidden naming %s and %q", err, tc.id, tc.wantText)
				}
				var status apierrors.APIStatus
				if errors.As(err, &status) && status.Status().Details != nil {
					found := false
					for _, c := range status.Status().Details.Causes {
						found = found || string(c.Type) == "strictgate.dev/"+tc.id
					}
					if !found {
						t.Errorf("status causes %+v lack strictgate.dev/%s", status.Status().Details.Causes, tc.id)
					}
				}
			case warned:
				if err != nil {
					t.Fatalf("warn-only rule refused the policy: %v", err)
				}
				h.cleanup(t, bad)
				joined := strings.Join(warnings, "\n")
				if !strings.Contains(joined, tc.id) || !strings.Contains(joined, tc.wantText) {
					t.Fatalf("warnings %q: want one naming %s and %q", warnings, tc.id, tc.wantText)
				}
			}

			good := np(slug+"-good", tc.good)
			warnings, err = h.create(t, good)
			if err != nil {
				t.Fatalf("compliant policy refused: %v", err)
			}
			h.cleanup(t, good)
			for _, w := range warnings {
				if strings.Contains(w, tc.id) {
					t.Errorf("compliant policy warned by %s: %s", tc.id, w)
				}
			}
		})
	}
}

func (h *hygEnv) testDryRun(t *testing.T) {
	labels := map[string]string{"rule": "SG001-open-rule", "action": "deny", "dry_run": "true"}
	before := hygMetric(t, "strictgate_hygiene_findings_total", labels)
	beforeReal := hygMetric(t, "strictgate_hygiene_findings_total", map[string]string{"rule": "SG001-open-rule", "action": "deny", "dry_run": "false"})
	bad := np("dry-run", func(s *networkingv1.NetworkPolicySpec) { s.Ingress = []networkingv1.NetworkPolicyIngressRule{{}} })
	_, err := h.create(t, bad, client.DryRunAll)
	if err == nil || !strings.Contains(err.Error(), "SG001-open-rule") {
		t.Fatalf("dry-run create: %v, want the same denial as a real one", err)
	}
	if got := hygMetric(t, "strictgate_hygiene_findings_total", labels); got != before+1 {
		t.Errorf("findings{dry_run=true} %v -> %v, want +1", before, got)
	}
	if got := hygMetric(t, "strictgate_hygiene_findings_total", map[string]string{"rule": "SG001-open-rule", "action": "deny", "dry_run": "false"}); got != beforeReal {
		t.Errorf("a dry-run request counted as enforcement: findings{dry_run=false} %v -> %v", beforeReal, got)
	}
}

func (h *hygEnv) testProtected(t *testing.T) {
	ctx := context.Background()
	alice := h.impersonate(t, "alice")
	sa := h.impersonate(t, hygSA, "system:serviceaccounts", "system:serviceaccounts:strictgate")

	for _, name := range []string{contract.DefaultDenyPolicy, contract.AllowDNSPolicy} {
		t.Run(name, func(t *testing.T) {
			gen := &networkingv1.NetworkPolicy{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: hygGuarded},
				Spec: networkingv1.NetworkPolicySpec{
					PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
				},
			}
			if name == contract.AllowDNSPolicy {
				gen.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
				gen.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{dnsRule}
			}
			if err := sa.Create(ctx, gen); err != nil {
				t.Fatalf("service account create: %v", err)
			}
			key := client.ObjectKeyFromObject(gen)

			for _, who := range []struct {
				name string
				c    client.Client
			}{{"alice", alice}, {"admin", h.admin}} {
				var cur networkingv1.NetworkPolicy
				if err := h.admin.Get(ctx, key, &cur); err != nil {
					t.Fatal(err)
				}
				cur.Labels = map[string]string{"tampered": "yes"}
				err := who.c.Update(ctx, &cur)
				if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "SG011-protected-policy") {
					t.Errorf("%s update: %v, want Forbidden by SG011-protected-policy", who.name, err)
				}
				err = who.c.Delete(ctx, &cur)
				if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "SG011-protected-policy") {
					t.Errorf("%s delete: %v, want Forbidden by SG011-protected-policy", who.name, err)
				}
			}

			var cur networkingv1.NetworkPolicy
			if err := sa.Get(ctx, key, &cur); err != nil {
				t.Fatal(err)
			}
			cur.Labels = map[string]string{"app.kubernetes.io/managed-by": "strictgate"}
			if err := sa.Update(ctx, &cur); err != nil {
				t.Fatalf("service account update refused: %v", err)
			}
			if err := sa.Delete(ctx, &cur); err != nil {
				t.Fatalf("service account delete refused: %v", err)
			}
		})
	}
}

const apiCustomRule = `package strictgate.rules.forbidden_label

id := "CUSTOM001-forbidden-label"

action := "deny"

violation contains msg if {
	input.policy.metadata.labels.forbidden == "yes"
	msg := sprintf("%s: remove the label forbidden=yes", [id])
}
`

const apiCustomRuleTest = `package strictgate.rules.forbidden_label_test

import data.strictgate.rules.forbidden_label

test_flags_label if {
	count(forbidden_label.violation) == 1 with input as {"policy": {"metadata": {"labels": {"forbidden": "yes"}}}}
}

test_ignores_others if {
	count(forbidden_label.violation) == 0 with input as {"policy": {"metadata": {"labels": {"forbidden": "no"}}}}
}
`

func (h *hygEnv) testCustomRules(t *testing.T) {
	labelled := func(name string) *networkingv1.NetworkPolicy {
		p := np(name, func(s *networkingv1.NetworkPolicySpec) {
			s.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: fromDB()}}
		})
		p.Labels = map[string]string{"forbidden": "yes"}
		return p
	}
	// Before the rule exists the policy is fine.
	probe := labelled("custom-probe")
	if _, err := h.create(t, probe); err != nil {
		t.Fatalf("before the custom rule: %v", err)
	}
	h.cleanup(t, probe)

	for name, content := range map[string]string{"forbidden.rego": apiCustomRule, "forbidden_test.rego": apiCustomRuleTest} {
		if err := os.WriteFile(filepath.Join(h.rulesDir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	took := hygEventually(t, 10*time.Second, "custom rule enforced", func() error {
		p := labelled("custom-probe")
		_, err := h.create(t, p)
		if err == nil {
			h.cleanup(t, p)
			return errors.New("admitted")
		}
		if !strings.Contains(err.Error(), "CUSTOM001-forbidden-label") {
			return err
		}
		return nil
	})
	t.Logf("custom rule enforced %v after it was written", took)

	// A broken file (and, separately, a failing test) leaves the last good set in force.
	for _, broken := range []struct{ file, content string }{
		{"broken.rego", "package strictgate.rules.broken\nviolation contains msg if {\n"},
		{"broken_test.rego", "package strictgate.rules.forbidden_label_test\ntest_wrong if { 1 == 2 }\n"},
	} {
		path := filepath.Join(h.rulesDir, broken.file)
		if err := os.WriteFile(path, []byte(broken.content), 0o644); err != nil {
			t.Fatal(err)
		}
		hygEventually(t, 10*time.Second, "broken set reported", func() error {
			if h.engine.Status().Healthy {
				return errors.New("still healthy")
			}
			return nil
		})
		if v := hygMetric(t, "strictgate_hygiene_ruleset_healthy", nil); v != 0 {
			t.Errorf("strictgate_hygiene_ruleset_healthy = %v, want 0", v)
		}
		if st := h.engine.Status(); st.LastError == "" {
			t.Errorf("status has no error: %+v", st)
		}
		p := labelled("custom-after-broken")
		_, err := h.create(t, p)
		if err == nil || !strings.Contains(err.Error(), "CUSTOM001-forbidden-label") {
			h.cleanup(t, p)
			t.Fatalf("after %s: %v, want the last good set (with CUSTOM001) still enforcing", broken.file, err)
		}
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		hygEventually(t, 10*time.Second, "healthy again", func() error {
			if !h.engine.Status().Healthy {
				return errors.New(h.engine.Status().LastError)
			}
			return nil
		})
	}
}
