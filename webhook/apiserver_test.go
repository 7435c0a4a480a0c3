package webhook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jsonpatch "gomodules.xyz/jsonpatch/v2"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	chartfiles "github.com/strictgate/strictgate/charts/strictgate/files"
	"github.com/strictgate/strictgate/internal/contract"
	"github.com/strictgate/strictgate/internal/testenv"
	"github.com/strictgate/strictgate/test/controlplane"
	"github.com/strictgate/strictgate/webhook/defaultdeny"
)

// env is one real kube-apiserver with strictgate's webhook server running against it,
// shared by the subtests of TestAPIServer (starting a control plane costs seconds).
type env struct {
	t       *testing.T
	rc      *rest.Config // admin (system:masters)
	admin   client.Client
	self    client.Client // the webhook's own service account
	cfg     Config
	webhook string // https://host:port of the admission server
	caPool  *x509.CertPool
	probe   string // http://host:port of /healthz, /readyz
	metrics string // http://host:port of /metrics
	certDir string

	writes *writeCounter
}

// writeCounter counts the default-deny controller's writes per namespace.
type writeCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (w *writeCounter) add(ns string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n[ns]++
}

func (w *writeCounter) get(ns string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n[ns]
}

// countingClient counts writes; reads pass through.
type countingClient struct {
	client.Client
	writes *writeCounter
}

func (c countingClient) Create(ctx context.Context, o client.Object, opts ...client.CreateOption) error {
	c.writes.add(o.GetNamespace())
	return c.Client.Create(ctx, o, opts...)
}

func (c countingClient) Update(ctx context.Context, o client.Object, opts ...client.UpdateOption) error {
	c.writes.add(o.GetNamespace())
	return c.Client.Update(ctx, o, opts...)
}

func (c countingClient) Patch(ctx context.Context, o client.Object, p client.Patch, opts ...client.PatchOption) error {
	c.writes.add(o.GetNamespace())
	return c.Client.Patch(ctx, o, p, opts...)
}

func (c countingClient) Delete(ctx context.Context, o client.Object, opts ...client.DeleteOption) error {
	c.writes.add(o.GetNamespace())
	return c.Client.Delete(ctx, o, opts...)
}

// servicePathsToURLs makes envtest's URL rewrite produce single-slash URLs: it joins
// host and path with a "/" of its own.
func servicePathsToURLs(w *chartfiles.Webhooks) {
	for i := range w.Mutating.Webhooks {
		p := strings.TrimPrefix(*w.Mutating.Webhooks[i].ClientConfig.Service.Path, "/")
		w.Mutating.Webhooks[i].ClientConfig.Service.Path = &p
	}
	for i := range w.Validating.Webhooks {
		p := strings.TrimPrefix(*w.Validating.Webhooks[i].ClientConfig.Service.Path, "/")
		w.Validating.Webhooks[i].ClientConfig.Service.Path = &p
	}
}

const testLabelerPath = "/test-add-label"

func startEnv(t *testing.T) *env {
	t.Helper()
	hooks, err := chartfiles.DecodeWebhooks()
	if err != nil {
		t.Fatal(err)
	}
	servicePathsToURLs(hooks)

	// A second mutating webhook that runs after ours and changes the pod: the API
	// server must then re-invoke ours (reinvocationPolicy IfNeeded), which must not
	// add the gate twice.
	labelerPath := strings.TrimPrefix(testLabelerPath, "/")
	none := admissionregistrationv1.SideEffectClassNone
	labeler := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "zz-test-labeler"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "labeler.test.strictgate.dev",
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             &none,
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Name: "x", Namespace: "x", Path: &labelerPath}},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			ObjectSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"test.strictgate.dev/relabel": "yes"}},
		}},
	}

	e := &envtest.Environment{
		WebhookInstallOptions: envtest.WebhookInstallOptions{
			LocalServingHost:   "127.0.0.1",
			MutatingWebhooks:   []*admissionregistrationv1.MutatingWebhookConfiguration{hooks.Mutating, labeler},
			ValidatingWebhooks: []*admissionregistrationv1.ValidatingWebhookConfiguration{hooks.Validating},
		},
	}
	rc := controlplane.Start(t, e)
	admin, err := client.New(rc, client.Options{Scheme: Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	cfg := DefaultConfig()
	cfg.Host = e.WebhookInstallOptions.LocalServingHost
	cfg.Port = e.WebhookInstallOptions.LocalServingPort
	cfg.CertDir = e.WebhookInstallOptions.LocalServingCertDir
	cfg.ExcludedNamespaces = []string{"legacy"}
	cfg.MetricsAddr = testenv.FreeAddr(t)
	cfg.ProbeAddr = testenv.FreeAddr(t)
	cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod = 6*time.Second, 4*time.Second, time.Second

	// Run the manager as the webhook's service account with exactly the chart's RBAC,
	// so a missing permission fails here rather than in a cluster.
	mustCreate(t, admin, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: cfg.Namespace}})
	role, err := chartfiles.DecodeWebhookRole()
	if err != nil {
		t.Fatal(err)
	}
	saName := strings.TrimPrefix(cfg.ServiceAccount, "system:serviceaccount:"+cfg.Namespace+":")
	sa := rbacv1.Subject{Kind: "ServiceAccount", Name: saName, Namespace: cfg.Namespace}
	mustCreate(t, admin, role)
	mustCreate(t, admin, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{sa},
	})
	mustCreate(t, admin, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "strictgate-webhook-leader-election", Namespace: cfg.Namespace},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch"}},
			{APIGroups: []string{"", "events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		},
	})
	mustCreate(t, admin, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "strictgate-webhook-leader-election", Namespace: cfg.Namespace},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "strictgate-webhook-leader-election"},
		Subjects:   []rbacv1.Subject{sa},
	})
	saRC := rest.CopyConfig(rc)
	saRC.Impersonate = rest.ImpersonationConfig{
		UserName: cfg.ServiceAccount,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + cfg.Namespace, "system:authenticated"},
	}

	writes := &writeCounter{n: map[string]int{}}
	mctx, cancel := context.WithCancel(ctx)
	mgr, err := newManager(mctx, saRC, cfg, func(c client.Client) client.Client {
		return countingClient{Client: c, writes: writes}
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	mgr.GetWebhookServer().Register(testLabelerPath, &admission.Webhook{Handler: admission.HandlerFunc(
		func(context.Context, admission.Request) admission.Response {
			return admission.Patched("test relabel", jsonPatchOp("add", "/metadata/labels/test.strictgate.dev~1relabeled", "yes"))
		})})
	done := make(chan struct{})
	var mgrErr error
	go func() { mgrErr = mgr.Start(mctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
			if mgrErr != nil {
				t.Errorf("manager: %v", mgrErr)
			}
		case <-time.After(30 * time.Second):
			t.Error("manager did not stop within 30s")
		}
	})

	self, err := client.New(saRC, client.Options{Scheme: Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.WebhookInstallOptions.LocalServingCAData)
	en := &env{
		t: t, rc: rc, admin: admin, self: self, cfg: cfg, caPool: pool, writes: writes,
		webhook: "https://" + net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)),
		probe:   "http://" + cfg.ProbeAddr, metrics: "http://" + cfg.MetricsAddr,
		certDir: cfg.CertDir,
	}
	eventually(t, 60*time.Second, "webhook ready", func() error {
		select {
		case <-done:
			t.Fatalf("manager stopped: %v", mgrErr)
		default:
		}
		return httpOK(en.probe + "/readyz")
	})
	return en
}

func jsonPatchOp(op, path string, value any) jsonpatch.JsonPatchOperation {
	return jsonpatch.JsonPatchOperation{Operation: op, Path: path, Value: value}
}

func httpOK(url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return nil
}

func mustCreate(t *testing.T, c client.Client, o client.Object) {
	t.Helper()
	if err := c.Create(context.Background(), o); err != nil {
		t.Fatalf("create %T %s: %v", o, o.GetName(), err)
	}
}

// eventually retries f until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// as returns a client that impersonates user with groups (and extra).
func (e *env) as(user string, groups []string, extra map[string][]string) client.Client {
	rc := rest.CopyConfig(e.rc)
	rc.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: append(groups, "system:authenticated"), Extra: extra}
	c, err := client.New(rc, client.Options{Scheme: Scheme()})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// clientset is a typed client as the cluster admin, for the APIs controller-runtime's
// client does not cover (TokenRequest).
func (e *env) clientset(t *testing.T) *kubernetes.Clientset {
	cs, err := kubernetes.NewForConfig(e.rc)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// grant gives group the verbs on resources cluster-wide (test identities need RBAC to
// reach admission at all, so a refusal in a test comes from admission, not RBAC).
func (e *env) grant(name, group string, rules ...rbacv1.PolicyRule) {
	mustCreate(e.t, e.admin, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules})
	mustCreate(e.t, e.admin, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: group}},
	})
}

func (e *env) namespace(name string, labels map[string]string) {
	mustCreate(e.t, e.admin, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}})
}

func testPod(name string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.invalid/pause:1"}}},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

func gateCount(p *corev1.Pod) int {
	n := 0
	for _, g := range p.Spec.ReadinessGates {
		if g.ConditionType == contract.ConditionType {
			n++
		}
	}
	return n
}

func TestAPIServer(t *testing.T) {
	e := startEnv(t)
	t.Run("Probes", e.testProbes)
	t.Run("PodGate", e.testPodGate)
	t.Run("NamespaceOptOut", e.testNamespaceOptOut)
	t.Run("DefaultDeny", e.testDefaultDeny)
	t.Run("GateGuard", e.testGateGuard)
	t.Run("BadInput", e.testBadInput)
	t.Run("Metrics", e.testMetrics)
	t.Run("DashboardMetrics", e.testDashboardMetrics)
	// Last: it replaces the serving certificate, which the API server does not trust.
	t.Run("CertReload", e.testCertReload)
}

func (e *env) testProbes(t *testing.T) {
	for _, p := range []string{"/healthz", "/readyz"} {
		if err := httpOK(e.probe + p); err != nil {
			t.Error(err)
		}
	}
	// TLS 1.2 clients are refused: the server speaks TLS 1.3 only.
	conn, err := tls.Dial("tcp", strings.TrimPrefix(e.webhook, "https://"), &tls.Config{RootCAs: e.caPool, MaxVersion: tls.VersionTLS12})
	if err == nil {
		conn.Close()
		t.Fatal("TLS 1.2 handshake succeeded")
	}
	conn, err = tls.Dial("tcp", strings.TrimPrefix(e.webhook, "https://"), &tls.Config{RootCAs: e.caPool})
	if err != nil {
		t.Fatalf("TLS 1.3 handshake: %v", err)
	}
	defer conn.Close()
	if v := conn.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Fatalf("negotiated %x, want TLS 1.3", v)
	}
}

func (e *env) testPodGate(t *testing.T) {
	ctx := context.Background()
	e.namespace("pods-enforced", nil)
	e.namespace("pods-optout", map[string]string{contract.EnforceLabel: contract.EnforceDisabled})
	e.namespace("legacy", nil) // excluded by configuration
	tests := []struct {
		name, ns  string
		pod       *corev1.Pod
		wantGates int
	}{
		{"enforced namespace gets the gate", "pods-enforced", testPod("plain"), 1},
		{"gate already present is not duplicated", "pods-enforced", testPod("has-gate", func(p *corev1.Pod) {
			p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "example.com/other"}, {ConditionType: contract.ConditionType}}
		}), 1},
		{"other gates are kept and ours appended", "pods-enforced", testPod("other-gate", func(p *corev1.Pod) {
			p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "example.com/other"}}
		}), 1},
		{"re-invocation after another webhook changed the pod", "pods-enforced", testPod("reinvoked", func(p *corev1.Pod) {
			p.Labels = map[string]string{"test.strictgate.dev/relabel": "yes"}
		}), 1},
		{"host network is not gated", "pods-enforced", testPod("hostnet", func(p *corev1.Pod) { p.Spec.HostNetwork = true }), 0},
		{"opted-out namespace", "pods-optout", testPod("optout"), 0},
		{"configured exclusion", "legacy", testPod("legacy"), 0},
		{"kube-system", "kube-system", testPod("system"), 0},
		{"own namespace", e.cfg.Namespace, testPod("own"), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := histogramCount(t, PathMutatePod, ResultAllowed)
			tt.pod.Namespace = tt.ns
			if err := e.admin.Create(ctx, tt.pod); err != nil {
				t.Fatal(err)
			}
			got := &corev1.Pod{}
			if err := e.admin.Get(ctx, client.ObjectKeyFromObject(tt.pod), got); err != nil {
				t.Fatal(err)
			}
			if n := gateCount(got); n != tt.wantGates {
				t.Fatalf("pod has %d strictgate gates (%v), want %d", n, got.Spec.ReadinessGates, tt.wantGates)
			}
			if tt.name == "other gates are kept and ours appended" && (len(got.Spec.ReadinessGates) != 2 || got.Spec.ReadinessGates[0].ConditionType != "example.com/other") {
				t.Fatalf("readiness gates %v: the existing gate must stay first", got.Spec.ReadinessGates)
			}
			if strings.HasPrefix(tt.name, "re-invocation") {
				if got.Labels["test.strictgate.dev/relabeled"] != "yes" {
					t.Fatal("the test labeler did not run; re-invocation was not exercised")
				}
				if n := histogramCount(t, PathMutatePod, ResultAllowed) - before; n != 2 {
					t.Fatalf("pod mutator ran %d times for the pod, want 2 (first call + re-invocation)", n)
				}
			}
		})
	}
}

func (e *env) testNamespaceOptOut(t *testing.T) {
	ctx := context.Background()
	e.grant("test-namespace-editors", "test:namespace-editors",
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "create", "update", "patch"}})
	alice := e.as("alice", []string{"test:namespace-editors"}, nil)
	admin := e.as("carol", []string{"test:namespace-editors", DefaultOptOutGroup}, nil)

	setLabel := func(c client.Client, name string, value *string) error {
		ns := &corev1.Namespace{}
		if err := c.Get(ctx, types.NamespacedName{Name: name}, ns); err != nil {
			return err
		}
		if ns.Labels == nil {
			ns.Labels = map[string]string{}
		}
		if value == nil {
			delete(ns.Labels, contract.EnforceLabel)
		} else {
			ns.Labels[contract.EnforceLabel] = *value
		}
		return c.Update(ctx, ns)
	}
	disabled, other := contract.EnforceDisabled, "enabled"
	wantDenied := func(t *testing.T, err error) {
		t.Helper()
		if err == nil {
			t.Fatal("allowed, want denied")
		}
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), DefaultOptOutGroup) {
			t.Fatalf("error %v: want a Forbidden admission denial naming %s", err, DefaultOptOutGroup)
		}
	}

	t.Run("normal user cannot create an opted-out namespace", func(t *testing.T) {
		wantDenied(t, alice.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns-a", Labels: map[string]string{contract.EnforceLabel: contract.EnforceDisabled}}}))
	})
	t.Run("normal user can create a namespace", func(t *testing.T) {
		if err := alice.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns-a", Labels: map[string]string{"team": "a"}}}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("normal user cannot add the label", func(t *testing.T) { wantDenied(t, setLabel(alice, "ns-a", &disabled)) })
	t.Run("normal user cannot set another value either", func(t *testing.T) { wantDenied(t, setLabel(alice, "ns-a", &other)) })
	t.Run("admin group can add the label", func(t *testing.T) {
		if err := setLabel(admin, "ns-a", &disabled); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("normal user can edit other labels of an opted-out namespace", func(t *testing.T) {
		ns := &corev1.Namespace{}
		if err := alice.Get(ctx, types.NamespacedName{Name: "ns-a"}, ns); err != nil {
			t.Fatal(err)
		}
		ns.Labels["team"] = "b"
		if err := alice.Update(ctx, ns); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("normal user can remove the label", func(t *testing.T) {
		if err := setLabel(alice, "ns-a", nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("admin group can create an opted-out namespace", func(t *testing.T) {
		if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns-b", Labels: map[string]string{contract.EnforceLabel: contract.EnforceDisabled}}}); err != nil {
			t.Fatal(err)
		}
	})
}

func (e *env) getNP(ns, name string) (*networkingv1.NetworkPolicy, error) {
	np := &networkingv1.NetworkPolicy{}
	err := e.admin.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, np)
	return np, err
}

// wantGenerated waits until ns has exactly the generated policies it should.
func (e *env) wantGenerated(t *testing.T, ns string, present bool) {
	t.Helper()
	want := map[string]*networkingv1.NetworkPolicy{
		contract.DefaultDenyPolicy: defaultdeny.DenyPolicy(ns),
		contract.AllowDNSPolicy:    defaultdeny.DNSPolicyFor(ns, defaultdeny.DefaultDNSNamespace, defaultdeny.DefaultDNSPodLabels),
	}
	eventually(t, 20*time.Second, fmt.Sprintf("generated policies in %s present=%v", ns, present), func() error {
		for name, w := range want {
			np, err := e.getNP(ns, name)
			switch {
			case present && err != nil:
				return err
			case present && !defaultdeny.UpToDate(np, w):
				return fmt.Errorf("%s differs: %+v", name, np.Spec)
			case !present && err == nil:
				return fmt.Errorf("%s still exists", name)
			case !present && !apierrors.IsNotFound(err):
				return err
			}
		}
		return nil
	})
}

func reconciles(t *testing.T) float64 {
	t.Helper()
	return counterValue(t, "controller_runtime_reconcile_total", map[string]string{"controller": "strictgate-defaultdeny", "result": "success"})
}

func (e *env) testDefaultDeny(t *testing.T) {
	ctx := context.Background()
	ns := "dd-app"
	e.namespace(ns, nil)

	t.Run("created for a new namespace", func(t *testing.T) { e.wantGenerated(t, ns, true) })
	t.Run("not created in excluded namespaces", func(t *testing.T) {
		e.namespace("dd-optout", map[string]string{contract.EnforceLabel: contract.EnforceDisabled})
		time.Sleep(time.Second)
		e.wantGenerated(t, "dd-optout", false)
		e.wantGenerated(t, "kube-system", false)
		e.wantGenerated(t, e.cfg.Namespace, false)
	})
	t.Run("others may not edit or delete them", func(t *testing.T) {
		// Hygiene rule SG011 (webhook/networkpolicy.go) guards them even against
		// cluster admins; the tests below change them as strictgate's own account to
		// simulate drift.
		np, err := e.getNP(ns, contract.DefaultDenyPolicy)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.admin.Delete(ctx, np); err == nil || !strings.Contains(err.Error(), "SG011") {
			t.Fatalf("admin delete: %v, want an SG011 denial", err)
		}
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		if err := e.admin.Update(ctx, np); err == nil || !strings.Contains(err.Error(), "SG011") {
			t.Fatalf("admin update: %v, want an SG011 denial", err)
		}
	})
	t.Run("re-created after deletion", func(t *testing.T) {
		for _, name := range []string{contract.DefaultDenyPolicy, contract.AllowDNSPolicy} {
			np, err := e.getNP(ns, name)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.self.Delete(ctx, np); err != nil {
				t.Fatal(err)
			}
			eventually(t, 20*time.Second, "re-created "+name, func() error {
				again, err := e.getNP(ns, name)
				if err != nil {
					return err
				}
				if again.UID == np.UID {
					return errors.New("still the old object")
				}
				return nil
			})
		}
		e.wantGenerated(t, ns, true)
	})
	t.Run("restored after an edit", func(t *testing.T) {
		np, err := e.getNP(ns, contract.AllowDNSPolicy)
		if err != nil {
			t.Fatal(err)
		}
		np.Spec.Egress = nil // now it only isolates egress: a change with teeth
		delete(np.Labels, contract.ManagedByLabel)
		if err := e.self.Update(ctx, np); err != nil {
			t.Fatal(err)
		}
		deny, err := e.getNP(ns, contract.DefaultDenyPolicy)
		if err != nil {
			t.Fatal(err)
		}
		deny.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		if err := e.self.Update(ctx, deny); err != nil {
			t.Fatal(err)
		}
		e.wantGenerated(t, ns, true)
	})
	t.Run("steady state makes no writes", func(t *testing.T) {
		e.wantGenerated(t, ns, true)
		time.Sleep(2 * time.Second) // let the restore's own watch events settle
		writes := e.writes.get(ns)
		runs := reconciles(t)
		// Touch the namespace and a policy's metadata: both reconcile, neither may write.
		// (The policy is touched as strictgate's own account: SG011 refuses others.)
		nsObj := &corev1.Namespace{}
		if err := e.admin.Get(ctx, types.NamespacedName{Name: ns}, nsObj); err != nil {
			t.Fatal(err)
		}
		nsObj.Labels["touched"] = "yes"
		if err := e.admin.Update(ctx, nsObj); err != nil {
			t.Fatal(err)
		}
		np, err := e.getNP(ns, contract.DefaultDenyPolicy)
		if err != nil {
			t.Fatal(err)
		}
		np.Annotations = map[string]string{"touched": "yes"}
		if err := e.self.Update(ctx, np); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "reconciles after the touches", func() error {
			if got := reconciles(t); got < runs+2 {
				return fmt.Errorf("%v reconciles since, want 2", got-runs)
			}
			return nil
		})
		time.Sleep(2 * time.Second)
		if got := e.writes.get(ns); got != writes {
			t.Fatalf("controller wrote %d times in steady state", got-writes)
		}
	})
	t.Run("removed on opt-out and back on opt-in", func(t *testing.T) {
		set := func(v *string) {
			nsObj := &corev1.Namespace{}
			if err := e.admin.Get(ctx, types.NamespacedName{Name: ns}, nsObj); err != nil {
				t.Fatal(err)
			}
			if v == nil {
				delete(nsObj.Labels, contract.EnforceLabel)
			} else {
				nsObj.Labels[contract.EnforceLabel] = *v
			}
			if err := e.admin.Update(ctx, nsObj); err != nil {
				t.Fatal(err)
			}
		}
		disabled := contract.EnforceDisabled
		set(&disabled)
		e.wantGenerated(t, ns, false)
		set(nil)
		e.wantGenerated(t, ns, true)
	})
	t.Run("someone else's policy under our name is not deleted on opt-out", func(t *testing.T) {
		e.namespace("dd-foreign", map[string]string{contract.EnforceLabel: contract.EnforceDisabled})
		foreign := defaultdeny.DenyPolicy("dd-foreign")
		foreign.Labels = nil
		mustCreate(t, e.admin, foreign)
		time.Sleep(2 * time.Second)
		if _, err := e.getNP("dd-foreign", contract.DefaultDenyPolicy); err != nil {
			t.Fatalf("user's policy was touched: %v", err)
		}
	})
}

// Gate guard -----------------------------------------------------------------

func (e *env) testGateGuard(t *testing.T) {
	ctx := context.Background()
	g, err := chartfiles.DecodeGateGuard()
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, e.admin, g.SetterRole)
	mustCreate(t, e.admin, g.Policy)
	mustCreate(t, e.admin, g.Binding)
	agentName := strings.TrimPrefix(e.cfg.AgentServiceAccount, "system:serviceaccount:"+e.cfg.Namespace+":")
	mustCreate(t, e.admin, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "strictgate-agent-gate-setter"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: g.SetterRole.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: agentName, Namespace: e.cfg.Namespace}},
	})
	// Every identity below may write pods/status as far as RBAC goes; only the policy
	// decides.
	const writers = "test:status-writers"
	e.grant("test-status-writers", writers,
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods/status"}, Verbs: []string{"update", "patch"}})

	ns := "gate"
	e.namespace(ns, nil)
	pod := testPod("p", func(p *corev1.Pod) { p.Namespace = ns; p.Spec.NodeName = "node-a" })
	mustCreate(t, e.admin, pod)

	nodeExtra := func(node string) map[string][]string {
		return map[string][]string{"authentication.kubernetes.io/node-name": {node}}
	}
	agentGroups := []string{"system:serviceaccounts", "system:serviceaccounts:" + e.cfg.Namespace, writers}
	agentOnA := e.as(e.cfg.AgentServiceAccount, agentGroups, nodeExtra("node-a"))
	agentOnB := e.as(e.cfg.AgentServiceAccount, agentGroups, nodeExtra("node-b"))
	agentNoNode := e.as(e.cfg.AgentServiceAccount, agentGroups, nil)
	random := e.as("mallory", []string{writers}, nil)
	otherSA := e.as("system:serviceaccount:gate:default", []string{"system:serviceaccounts", writers}, nodeExtra("node-a"))
	kubelet := e.as("system:node:node-a", []string{"system:nodes", writers}, nil)

	var attempt atomic.Int32
	// setCondition changes condType on the pod's status (a new message each time, so
	// every attempt is a change).
	setCondition := func(c client.Client, condType string, status corev1.ConditionStatus, remove bool) error {
		p := &corev1.Pod{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(pod), p); err != nil {
			return err
		}
		msg := fmt.Sprintf("attempt %d", attempt.Add(1))
		var conds []corev1.PodCondition
		found := false
		for _, cond := range p.Status.Conditions {
			if string(cond.Type) == condType {
				found = true
				if remove {
					continue
				}
				cond.Status, cond.Message, cond.Reason = status, msg, "Test"
			}
			conds = append(conds, cond)
		}
		if !found && !remove {
			conds = append(conds, corev1.PodCondition{Type: corev1.PodConditionType(condType), Status: status, Reason: "Test", Message: msg, LastTransitionTime: metav1.Now()})
		}
		p.Status.Conditions = conds
		return c.Status().Update(ctx, p)
	}
	isPolicyDenial := func(err error) bool {
		return err != nil && (apierrors.IsInvalid(err) || apierrors.IsForbidden(err)) && strings.Contains(err.Error(), g.Policy.Name)
	}
	// checkGuard: err is nil when allowed, a refusal by the gate guard itself otherwise.
	checkGuard := func(t *testing.T, err error, wantAllow bool) {
		t.Helper()
		switch {
		case wantAllow && err != nil:
			t.Fatalf("refused: %v", err)
		case !wantAllow && err == nil:
			t.Fatal("allowed, want refused by the gate guard")
		case !wantAllow && !isPolicyDenial(err):
			t.Fatalf("refused, but not by the gate guard: %v", err)
		}
	}

	// The API server picks the policy up asynchronously; until then the random user
	// gets through. Wait until it is refused.
	eventually(t, 30*time.Second, "gate guard active", func() error {
		err := setCondition(random, contract.ConditionType, corev1.ConditionTrue, false)
		if err != nil && strings.Contains(err.Error(), g.Policy.Name) {
			return nil
		}
		return fmt.Errorf("random user's change: %v", err)
	})
	// Put the condition into a known state as the legitimate agent.
	if err := setCondition(agentOnA, contract.ConditionType, corev1.ConditionFalse, false); err != nil {
		t.Fatalf("agent on the pod's node: %v", err)
	}

	tests := []struct {
		name      string
		c         client.Client
		condType  string
		remove    bool
		wantAllow bool
	}{
		{"random user sets the gate", random, contract.ConditionType, false, false},
		{"random user removes the gate", random, contract.ConditionType, true, false},
		{"agent of another node", agentOnB, contract.ConditionType, false, false},
		{"service account without the setter role", otherSA, contract.ConditionType, false, false},
		{"kubelet changes the gate", kubelet, contract.ConditionType, false, false},
		{"agent of the pod's node", agentOnA, contract.ConditionType, false, true},
		{"agent with a token not bound to a node", agentNoNode, contract.ConditionType, false, false},
		{"agent with a token not bound to a node removes the gate", agentNoNode, contract.ConditionType, true, false},
		{"kubelet changes another condition", kubelet, string(corev1.ContainersReady), false, true},
		{"random user changes another condition", random, "example.com/other", false, true},
		{"agent of another node changes another condition", agentOnB, "example.com/other", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkGuard(t, setCondition(tt.c, tt.condType, corev1.ConditionTrue, tt.remove), tt.wantAllow)
		})
	}

	// The same with real credentials: service-account tokens issued by the API server
	// (TokenRequest), authenticated by it, with the node claim it adds itself to tokens
	// bound to a scheduled pod — no impersonation.
	t.Run("RealTokens", func(t *testing.T) {
		for _, n := range []string{"node-a", "node-b"} {
			mustCreate(t, e.admin, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}})
		}
		if err := e.admin.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: agentName, Namespace: e.cfg.Namespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		// The agent's RBAC for status writes, given to the service account itself
		// (tokens carry only the service-account groups, not the test's writers group).
		mustCreate(t, e.admin, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "test-agent-status-writer"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "test-status-writers"},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: agentName, Namespace: e.cfg.Namespace}},
		})
		agentPod := func(name, node string) *corev1.Pod {
			p := testPod(name, func(p *corev1.Pod) {
				p.Namespace, p.Spec.NodeName, p.Spec.ServiceAccountName = e.cfg.Namespace, node, agentName
			})
			mustCreate(t, e.admin, p)
			return p
		}
		podA, podB := agentPod("agent-on-a", "node-a"), agentPod("agent-on-b", "node-b")

		cs := e.clientset(t)
		token := func(bound *corev1.Pod) string {
			req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}
			if bound != nil {
				req.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: bound.Name, UID: bound.UID}
			}
			tr, err := cs.CoreV1().ServiceAccounts(e.cfg.Namespace).CreateToken(ctx, agentName, req, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("token request: %v", err)
			}
			return tr.Status.Token
		}
		withToken := func(tok string) client.Client {
			rc := rest.AnonymousClientConfig(e.rc)
			rc.BearerToken = tok
			c, err := client.New(rc, client.Options{Scheme: Scheme()})
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		unboundTok, boundBTok, boundATok := token(nil), token(podB), token(podA)
		unbound, boundB, boundA := withToken(unboundTok), withToken(boundBTok), withToken(boundATok)

		// The claim the guard relies on is really there (and only there).
		for _, c := range []struct{ name, tok, want string }{
			{"unbound", unboundTok, ""}, {"bound to a pod on node-b", boundBTok, "node-b"}, {"bound to a pod on node-a", boundATok, "node-a"},
		} {
			rev, err := cs.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: c.tok}}, metav1.CreateOptions{})
			if err != nil || !rev.Status.Authenticated {
				t.Fatalf("%s token does not authenticate: %v %+v", c.name, err, rev.Status)
			}
			if got := strings.Join(rev.Status.User.Extra["authentication.kubernetes.io/node-name"], ","); got != c.want {
				t.Fatalf("%s token: node-name claim %q, want %q", c.name, got, c.want)
			}
		}

		tests := []struct {
			name      string
			c         client.Client
			status    corev1.ConditionStatus
			remove    bool
			wantAllow bool
		}{
			{"unbound token sets True", unbound, corev1.ConditionTrue, false, false},
			{"unbound token flips to False", unbound, corev1.ConditionFalse, false, false},
			{"unbound token removes", unbound, "", true, false},
			{"token of an agent pod on another node sets True", boundB, corev1.ConditionTrue, false, false},
			{"token of an agent pod on another node flips to False", boundB, corev1.ConditionFalse, false, false},
			{"token of an agent pod on another node removes", boundB, "", true, false},
			{"token of the agent pod on the pod's node sets True", boundA, corev1.ConditionTrue, false, true},
			{"token of the agent pod on the pod's node flips to False", boundA, corev1.ConditionFalse, false, true},
			{"token of the agent pod on the pod's node removes", boundA, "", true, true},
			{"token of the agent pod on the pod's node sets it again", boundA, corev1.ConditionTrue, false, true},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				checkGuard(t, setCondition(tt.c, contract.ConditionType, tt.status, tt.remove), tt.wantAllow)
			})
		}
	})
}

// HTTP-level bad input ---------------------------------------------------------

func (e *env) httpsClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.caPool}}}
}

func (e *env) testBadInput(t *testing.T) {
	hc := e.httpsClient()
	for _, tt := range badInputs() {
		for _, path := range []string{PathMutatePod, PathValidateNamespace, PathValidateNetworkPolicy} {
			t.Run(path+"/"+tt.name, func(t *testing.T) {
				ct := tt.contentType
				if ct == "" {
					ct = "application/json"
				}
				resp, err := hc.Post(e.webhook+path, ct, strings.NewReader(tt.body))
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				checkRejected(t, resp.StatusCode, body)
			})
		}
	}
	t.Run("GET", func(t *testing.T) {
		resp, err := hc.Get(e.webhook + PathMutatePod)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("GET: %s", resp.Status)
		}
	})
}

// Metrics ---------------------------------------------------------------------

func (e *env) testMetrics(t *testing.T) {
	resp, err := http.Get(e.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`strictgate_webhook_request_duration_seconds_bucket{path="/mutate-v1-pod",result="allowed",le="5e-05"}`,
		`strictgate_webhook_request_duration_seconds_count{path="/validate-v1-namespace",result="denied"}`,
		`strictgate_webhook_request_duration_seconds_count{path="/mutate-v1-pod",result="invalid"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	resp, err = http.Get(e.metrics + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var status struct {
		Hygiene struct {
			Healthy bool
			Rules   []json.RawMessage
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&status); err != nil {
		t.Fatalf("/status: %v", err)
	}
	if !status.Hygiene.Healthy || len(status.Hygiene.Rules) == 0 {
		t.Fatalf("/status = %+v, want healthy built-in hygiene rules", status)
	}
}

// CertReload --------------------------------------------------------------------

func (e *env) testCertReload(t *testing.T) {
	addr := strings.TrimPrefix(e.webhook, "https://")
	serial := func() (string, error) {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only reading the served certificate
		if err != nil {
			return "", err
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
	}
	before, err := serial()
	if err != nil {
		t.Fatal(err)
	}
	want := writeTestCert(t, e.certDir, e.cfg.Host)
	if want == before {
		t.Fatal("test certificate has the old serial")
	}
	eventually(t, 20*time.Second, "new certificate served", func() error {
		after, err := serial()
		if err != nil {
			return err
		}
		if after != want {
			return fmt.Errorf("serving serial %s, want %s", after, want)
		}
		return nil
	})
}
