package webhook

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/strictgate/strictgate/internal/contract"
	"github.com/strictgate/strictgate/test/controlplane"
	"github.com/strictgate/strictgate/webhook/defaultdeny"
)

// cnpCRDPath is the module's own CRD for a channel (the chart ships the standard one;
// the experimental one carries the fields strictgate must refuse, such as domainNames,
// which the standard schema prunes before any webhook sees them).
func cnpCRDPath(t *testing.T, channel string) string {
	t.Helper()
	dir, err := moduleDir("sigs.k8s.io/network-policy-api")
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "config", "crd", channel, "policy.networking.k8s.io_clusternetworkpolicies.yaml")
}

// moduleDir is where the go command keeps module mod at the version go.mod pins.
func moduleDir(mod string) (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", mod).Output()
	return strings.TrimSpace(string(out)), err
}

// TestClusterNetworkPolicyAPIServer runs the validator behind a real kube-apiserver
// with the module's experimental-channel CRD and the chart's webhook configuration:
// every case of cnpCases, in both served versions, is admitted or refused as the
// table says, a refused UPDATE leaves the stored object as it was, and what the CRD's
// schema refuses is refused before the webhook (the handler agrees, see
// TestClusterNetworkPolicyValidator).
func TestClusterNetworkPolicyAPIServer(t *testing.T) {
	env := &envtest.Environment{
		CRDInstallOptions:     envtest.CRDInstallOptions{Paths: []string{cnpCRDPath(t, "experimental")}},
		WebhookInstallOptions: envtest.WebhookInstallOptions{ValidatingWebhooks: []*admissionregistrationv1.ValidatingWebhookConfiguration{chartValidatingWebhook(t, PathValidateClusterNetworkPolicy)}},
	}
	rc := controlplane.Start(t, env)
	wo := &env.WebhookInstallOptions
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
	ctx, cancel := context.WithCancel(context.Background())
	// Wired as newManager wires it: the built-in hygiene rules, pods and namespaces
	// from the manager's cache, ClusterNetworkPolicies read live.
	engine, err := NewHygieneEngine(ctx, DefaultNetworkPolicyConfig())
	if err != nil {
		t.Fatal(err)
	}
	h := NewClusterNetworkPolicyValidator(engine, ReaderCNPFacts{Cached: mgr.GetClient(), Live: mgr.GetAPIReader()}, hygSA)
	mgr.GetWebhookServer().Register(PathValidateClusterNetworkPolicy, Instrumented(PathValidateClusterNetworkPolicy, h))
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
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	res := func(version string) dynamic.ResourceInterface {
		return dyn.Resource(schema.GroupVersionResource{Group: CNPGroup, Version: version, Resource: "clusternetworkpolicies"})
	}
	decode := func(t *testing.T, raw []byte) *unstructured.Unstructured {
		t.Helper()
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil {
			t.Fatal(err)
		}
		return u
	}

	for _, tc := range cnpCases() {
		for _, version := range []string{"v1beta1", "v1alpha2"} {
			t.Run(tc.name+"/"+version, func(t *testing.T) {
				name := strings.ToLower(strings.ReplaceAll(tc.name, " ", "-")) + "-" + version
				_, err := res(version).Create(ctx, decode(t, cnpObject(version, name, tc.spec)), metav1.CreateOptions{})
				checkAPIServerVerdict(t, err, tc)
			})
		}
	}

	admin, err := client.New(rc, client.Options{Scheme: Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("hygiene rules", func(t *testing.T) { testCNPHygiene(t, ctx, admin, mgr.GetClient(), res, decode) })

	// The policy enforcement.defaultDeny=baseline generates passes every check, even
	// when written by someone other than strictgate (whose writes skip the rules).
	t.Run("generated baseline policy is admitted", func(t *testing.T) {
		p, err := defaultdeny.BaselinePolicy(contract.Scope{OwnNamespace: "strictgate", Excluded: []string{"legacy"}}, true, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		p.Name = "baseline-copy" // the generated name is strictgate's alone (below)
		if err := admin.Create(ctx, p); err != nil {
			t.Fatalf("baseline policy refused: %v", err)
		}
	})

	t.Run("only strictgate may create, change or delete the generated policy", func(t *testing.T) {
		mustCreate(t, admin, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "cnp-writer"}, Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{CNPGroup}, Resources: []string{"clusternetworkpolicies"}, Verbs: []string{"get", "create", "update", "delete"},
		}}})
		mustCreate(t, admin, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "cnp-writer"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cnp-writer"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "strictgate", Name: "strictgate-webhook"}},
		})
		src := rest.CopyConfig(rc)
		src.Impersonate = rest.ImpersonationConfig{UserName: hygSA, Groups: []string{"system:serviceaccounts", "system:authenticated"}}
		self, err := client.New(src, client.Options{Scheme: Scheme()})
		if err != nil {
			t.Fatal(err)
		}
		gen, err := defaultdeny.BaselinePolicy(contract.Scope{OwnNamespace: "strictgate"}, true, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		const refusal = "is generated by strictgate (enforcement.defaultDeny: baseline) and only strictgate's controller"
		if err := admin.Create(ctx, gen.DeepCopy()); err == nil || !strings.Contains(err.Error(), refusal) {
			t.Fatalf("admin create: %v, want refusal", err)
		}
		hygEventually(t, 10*time.Second, "strictgate's service account may create it (RBAC binding seen)", func() error {
			return self.Create(ctx, gen.DeepCopy())
		})
		var cur cnpv1beta1.ClusterNetworkPolicy
		if err := admin.Get(ctx, client.ObjectKey{Name: gen.Name}, &cur); err != nil {
			t.Fatal(err)
		}
		edited := cur.DeepCopy()
		edited.Spec.Ingress = nil
		if err := admin.Update(ctx, edited); err == nil || !strings.Contains(err.Error(), refusal) {
			t.Fatalf("admin update: %v, want refusal", err)
		}
		if err := admin.Delete(ctx, &cur); err == nil || !strings.Contains(err.Error(), refusal) {
			t.Fatalf("admin delete: %v, want refusal", err)
		}
		var after cnpv1beta1.ClusterNetworkPolicy
		if err := admin.Get(ctx, client.ObjectKey{Name: gen.Name}, &after); err != nil || after.ResourceVersion != cur.ResourceVersion {
			t.Fatalf("the generated policy changed: %v (resourceVersion %s -> %s)", err, cur.ResourceVersion, after.ResourceVersion)
		}
		// Other policies' deletes are not even sent to the webhook (matchConditions).
		if err := admin.Delete(ctx, &cnpv1beta1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "baseline-copy"}}); err != nil {
			t.Fatalf("delete of an ordinary policy: %v", err)
		}
		if err := self.Delete(ctx, &after); err != nil {
			t.Fatalf("strictgate's own delete: %v", err)
		}
	})

	t.Run("update adding an unsupported field changes nothing", func(t *testing.T) {
		const name = "update-target"
		base := `{"tier":"Admin","priority":20,` + cnpSubject + `,"egress":[{"action":"Accept","to":[{"namespaces":{"matchLabels":{"team":"b"}}}]}]}`
		created, err := res("v1beta1").Create(ctx, decode(t, cnpObject("v1beta1", name, base)), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		bad := decode(t, cnpObject("v1beta1", name, `{"tier":"Admin","priority":20,`+cnpSubject+`,"egress":[{"action":"Accept","to":[{"domainNames":["*.example.com"]}]}]}`))
		bad.SetResourceVersion(created.GetResourceVersion())
		bad.SetAPIVersion(CNPGroup + "/v1alpha2")
		// Through the other served version: the same webhook judges it.
		_, err = res("v1alpha2").Update(ctx, bad, metav1.UpdateOptions{})
		if err == nil || !strings.Contains(err.Error(), "domainNames: Forbidden: not supported by strictgate") {
			t.Fatalf("update with domainNames: %v, want refusal naming the field", err)
		}
		got, err := res("v1beta1").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.GetResourceVersion() != created.GetResourceVersion() {
			t.Fatalf("stored object changed: resourceVersion %s -> %s", created.GetResourceVersion(), got.GetResourceVersion())
		}
	})
}

// testCNPHygiene: the built-in ClusterNetworkPolicy rules refuse through the real API
// server, SG014 with the cluster's pods as facts.
func testCNPHygiene(t *testing.T, ctx context.Context, admin client.Client, cache client.Reader, res func(string) dynamic.ResourceInterface, decode func(*testing.T, []byte) *unstructured.Unstructured) {
	create := func(name, spec string) error {
		_, err := res("v1beta1").Create(ctx, decode(t, cnpObject("v1beta1", name, spec)), metav1.CreateOptions{})
		return err
	}
	for _, tc := range []struct{ name, spec, want string }{
		{"accept-all", `{"tier":"Admin","priority":30,"subject":{"namespaces":{}},"ingress":[{"action":"Accept","from":[{"namespaces":{}}]}]}`,
			"SG012-cnp-admin-accept-all: ClusterNetworkPolicy accept-all spec.ingress[0].from[0] accepts all ingress traffic on all ports"},
		{"cuts-dns", `{"tier":"Admin","priority":31,"subject":{"namespaces":{}},"egress":[{"action":"Deny","to":[{"networks":["0.0.0.0/0"]}]}]}`,
			"SG013-cnp-cuts-dns: ClusterNetworkPolicy cuts-dns spec.egress[0] denies UDP/TCP 53 to the DNS pods in kube-system"},
	} {
		if err := create(tc.name, tc.spec); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a refusal containing %q", tc.name, err, tc.want)
		}
		if _, err := res("v1beta1").Get(ctx, tc.name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("%s was stored: %v", tc.name, err)
		}
	}

	mustCreate(t, admin, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a", Labels: map[string]string{"team": "a"}}})
	mustCreate(t, admin, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "team-a"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.invalid/x"}}}})
	hygEventually(t, 30*time.Second, "the cache sees pod team-a/web", func() error {
		var p corev1.Pod
		return cache.Get(ctx, client.ObjectKey{Namespace: "team-a", Name: "web"}, &p)
	})
	if err := create("mon-accept", `{"tier":"Admin","priority":50,"subject":{"namespaces":{"matchLabels":{"team":"a"}}},"ingress":[{"action":"Accept","from":[{"namespaces":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]}]}`); err != nil {
		t.Fatal(err)
	}
	conflicting := `{"tier":"Admin","priority":%d,"subject":{"pods":{"namespaceSelector":{"matchLabels":{"team":"a"}},"podSelector":{}}},"ingress":[{"action":"Deny","from":[{"namespaces":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]}]}`
	err := create("mon-deny", fmt.Sprintf(conflicting, 50))
	want := "SG014-cnp-priority-conflict: ClusterNetworkPolicy mon-deny and mon-accept are both Admin tier at priority 50, their subjects share 1 pods, and their ingress rules contradict (mon-deny: Deny; mon-accept: Accept)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("same priority: %v, want a refusal containing %q", err, want)
	}
	if err := create("mon-deny", fmt.Sprintf(conflicting, 51)); err != nil {
		t.Fatalf("distinct priority refused: %v", err)
	}
}

func checkAPIServerVerdict(t *testing.T, err error, tc cnpCase) {
	t.Helper()
	if len(tc.want) == 0 {
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatal("admitted, want refusal")
	}
	if !apierrors.IsInvalid(err) && !apierrors.IsForbidden(err) && !apierrors.IsBadRequest(err) {
		t.Fatalf("error %v is not a refusal", err)
	}
	webhookSaid := strings.Contains(err.Error(), "refused by strictgate")
	if tc.schema {
		// The API server's schema answers first; the webhook is never called.
		if webhookSaid {
			t.Fatalf("the CRD schema should refuse this before the webhook: %v", err)
		}
		return
	}
	if !webhookSaid {
		t.Fatalf("refused, but not by strictgate's webhook: %v", err)
	}
	for _, w := range tc.want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("refusal %q does not contain %q", err.Error(), w)
		}
	}
}
