package charts

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/strictgate/strictgate/test/controlplane"
	"github.com/strictgate/strictgate/webhook"
)

type apiClients struct {
	dyn    dynamic.Interface
	mapper meta.RESTMapper
	kube   kubernetes.Interface
}

func newClients(t *testing.T, cfg *rest.Config) apiClients {
	t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return apiClients{
		dyn:    dynamic.NewForConfigOrDie(cfg),
		mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)),
		kube:   kubernetes.NewForConfigOrDie(cfg),
	}
}

func (c apiClients) resource(o *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := o.GroupVersionKind()
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, err
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return c.dyn.Resource(m.Resource).Namespace(o.GetNamespace()), nil
	}
	return c.dyn.Resource(m.Resource), nil
}

// TestRenderedObjectsOnAPIServer sends every rendered object of several value sets to a
// real kube-apiserver: defaults and validation (CEL in the gate guard and the webhooks'
// matchConditions compiled, selectors, probes, capabilities, priority classes, RBAC
// escalation checks) are the server's, not ours.
func TestRenderedObjectsOnAPIServer(t *testing.T) {
	cfg := controlplane.Start(t, &envtest.Environment{CRDInstallOptions: envtest.CRDInstallOptions{Paths: upstreamCRDPaths(t)}})
	c := newClients(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := c.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNamespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		values map[string]any
		dryRun bool
	}{
		{"cert-manager on (dry run)", map[string]any{"certManager": map[string]any{"enabled": true}, "metrics": map[string]any{"serviceMonitor": map[string]any{"enabled": true}, "prometheusRule": map[string]any{"enabled": true}}}, true},
		{"cert-manager with a ClusterIssuer, standard mode (dry run)", map[string]any{"mode": "standard", "certManager": map[string]any{"enabled": true, "issuerRef": map[string]any{"kind": "ClusterIssuer", "name": "corp-ca", "group": "cert-manager.io"}}, "metrics": map[string]any{"serviceMonitor": map[string]any{"enabled": true}}}, true},
		{"audit, warn-only guard (dry run)", map[string]any{"mode": "audit", "gateGuard": map[string]any{"validationActions": []any{"Warn"}}}, true},
		{"excluded namespaces (dry run)", map[string]any{"enforcement": map[string]any{"excludedNamespaces": []any{"monitoring"}}}, true},
		{"gate by MutatingAdmissionPolicy (dry run)", map[string]any{"gate": map[string]any{"injection": "policy"}}, true},
		{"plain enforcer with a namespace selector (dry run)", map[string]any{"enforcement": map[string]any{"defaultDeny": false, "namespaceSelector": map[string]any{
			"matchLabels": map[string]any{"tier": "prod"}, "matchExpressions": []any{map[string]any{"key": "env", "operator": "Exists"}}}}}, true},
		// Last and for real: the objects must also be readable back as created.
		{"defaults (created)", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, "strictgate", tc.values)
			// Strict: a field the schema does not know is an error, not silently pruned
			// (custom resources would otherwise lose a misspelt field without a word).
			opts := metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict}
			if tc.dryRun {
				opts.DryRun = []string{metav1.DryRunAll}
			}
			created := 0
			for _, o := range r.objs {
				ri, err := c.resource(o)
				if err != nil {
					t.Errorf("%s %s: no such resource on the API server: %v", o.GetKind(), o.GetName(), err)
					continue
				}
				if _, err := ri.Create(ctx, o, opts); err != nil {
					t.Errorf("API server rejects %s %s: %v", o.GetKind(), o.GetName(), err)
					continue
				}
				created++
			}
			if created < 15 {
				t.Errorf("only %d objects went to the API server", created)
			}
			if tc.dryRun {
				return
			}
			// The API server's defaults must not have changed what matters, e.g. it keeps
			// the capability list and the webhook's CEL match conditions.
			ds, err := c.kube.AppsV1().DaemonSets(testNamespace).Get(ctx, "strictgate-agent", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			caps := ds.Spec.Template.Spec.Containers[0].SecurityContext.Capabilities.Add
			if len(caps) != 4 {
				t.Errorf("stored agent capabilities %v", caps)
			}
			mw, err := c.kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "strictgate-webhook", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(mw.Webhooks) != 1 || len(mw.Webhooks[0].MatchConditions) != 1 {
				t.Errorf("stored mutating webhook %+v", mw.Webhooks)
			}
		})
	}

	// The upstream schemas are really in force: a custom resource the chart could
	// render wrongly is refused, so the passes above mean something.
	r := render(t, "strictgate", map[string]any{"certManager": map[string]any{"enabled": true}, "metrics": map[string]any{"serviceMonitor": map[string]any{"enabled": true}}})
	for _, tc := range []struct {
		kind   string
		mutate func(o map[string]any)
	}{
		{"Certificate", func(o map[string]any) { o["spec"].(map[string]any)["secretNmae"] = "typo" }},
		{"Certificate", func(o map[string]any) { delete(o["spec"].(map[string]any), "secretName") }},
		{"Issuer", func(o map[string]any) { o["spec"] = map[string]any{"selfSigned": "yes"} }},
		{"ServiceMonitor", func(o map[string]any) { o["spec"].(map[string]any)["endpoints"] = "metrics" }},
	} {
		var obj *unstructured.Unstructured
		for _, o := range r.objs {
			if o.GetKind() == tc.kind {
				obj = o.DeepCopy()
				break
			}
		}
		if obj == nil {
			t.Fatalf("chart rendered no %s", tc.kind)
		}
		tc.mutate(obj.Object)
		ri, err := c.resource(obj)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ri.Create(ctx, obj, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: metav1.FieldValidationStrict}); err == nil {
			t.Errorf("broken %s accepted: the upstream CRD's schema is not in force", tc.kind)
		}
	}
}

// TestHelmInstallUpgradeUninstall installs the chart with helm into a real API server
// (no nodes: nothing runs, which is all this test needs), checks that an upgrade keeps
// the Helm-generated CA (lookup), and that uninstall leaves no admission objects.
func TestHelmInstallUpgradeUninstall(t *testing.T) {
	cfg, h := helmOnAPIServer(t)
	c := newClients(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// No nodes and no controllers here: the pre-delete CNI cleanup Job would never run,
	// so uninstall would wait for it in vain. The e2e suite checks that hook for real.
	noHook := map[string]any{"agent": map[string]any{"cni": map[string]any{"uninstallOnDelete": false}},
		// Helm's lookup of its own certificate is what this test checks; the webhook's
		// rotation (and the gate policy auto picks on this API server) is
		// TestHelmUpgradeKeepsRotatedCertificates'.
		"selfSignedCert": map[string]any{"rotate": false}, "gate": map[string]any{"injection": "webhook"}}
	if out, err := h.Upgrade(ctx, "strictgate", testNamespace, noHook); err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	} else if !strings.Contains(string(out), "rollout status") {
		t.Errorf("install output lacks the NOTES (what to do next):\n%s", out)
	} else if !strings.Contains(string(out), "If the webhook is down, pods in enforced namespaces are refused") ||
		!strings.Contains(string(out), "rollout restart deployment/strictgate-webhook") {
		// gate.injection=webhook with failurePolicy Fail: the API server's refusal cannot
		// say how to recover, so the NOTES must.
		t.Errorf("install output lacks the webhook-outage recovery hint:\n%s", out)
	} else if !strings.Contains(string(out), "never rotates") {
		t.Errorf("NOTES do not say that selfSignedCert.rotate=false never rotates:\n%s", out)
	} else if strings.Contains(string(out), "WARNING: the gate guard") {
		t.Errorf("default install warns about the gate guard:\n%s", out)
	}
	// The chart's crds/ installed the ClusterNetworkPolicy CRD: a v1beta1 object is
	// stored and served as v1alpha2 too (both versions, as upstream publishes them).
	cnps := cnpclient.NewForConfigOrDie(cfg)
	// No webhook server runs here, and the chart's ClusterNetworkPolicy validator fails
	// closed: take it out of the configuration for the probe (the API server would
	// otherwise dial a Service that has no endpoints) and put it back unchanged after.
	vwcs := c.kube.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	vwc0, err := vwcs.Get(ctx, "strictgate-webhook", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	noCNP := vwc0.DeepCopy()
	noCNP.Webhooks = slices.DeleteFunc(noCNP.Webhooks, func(w admissionregistrationv1.ValidatingWebhook) bool {
		return *w.ClientConfig.Service.Path == webhook.PathValidateClusterNetworkPolicy
	})
	if len(noCNP.Webhooks) != len(vwc0.Webhooks)-1 {
		t.Fatalf("chart has no ClusterNetworkPolicy webhook to set aside")
	}
	if noCNP, err = vwcs.Update(ctx, noCNP, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	probe := &cnpv1beta1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "chart-crd-probe"},
		Spec: cnpv1beta1.ClusterNetworkPolicySpec{Tier: cnpv1beta1.BaselineTier, Priority: 7,
			Subject: cnpv1beta1.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{}}}}
	if _, err := cnps.PolicyV1beta1().ClusterNetworkPolicies().Create(ctx, probe, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create a v1beta1 ClusterNetworkPolicy after helm install (chart crds/): %v", err)
	}
	if got, err := cnps.PolicyV1alpha2().ClusterNetworkPolicies().Get(ctx, probe.Name, metav1.GetOptions{}); err != nil || got.Spec.Priority != 7 {
		t.Fatalf("read it back as v1alpha2: %v %+v", err, got)
	}
	noCNP.Webhooks = vwc0.Webhooks
	if _, err := vwcs.Update(ctx, noCNP, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	sec1, err := c.kube.CoreV1().Secrets(testNamespace).Get(ctx, "strictgate-webhook-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	caBundle := func() []string {
		var out []string
		mw, err := c.kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "strictgate-webhook", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		vw, err := c.kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "strictgate-webhook", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range mw.Webhooks {
			out = append(out, string(w.ClientConfig.CABundle))
		}
		for _, w := range vw.Webhooks {
			out = append(out, string(w.ClientConfig.CABundle))
		}
		return out
	}
	before := caBundle()
	for _, b := range before {
		if b != string(sec1.Data["ca.crt"]) {
			t.Fatal("installed caBundle differs from the Secret's ca.crt")
		}
	}

	// An upgrade that changes something else keeps the certificate and the caBundles.
	// A guard that only warns is said at install, not installed silently weaker.
	if out, err := h.Upgrade(ctx, "strictgate", testNamespace, map[string]any{"webhook": map[string]any{"replicas": 3}, "agent": noHook["agent"], "selfSignedCert": noHook["selfSignedCert"], "gate": noHook["gate"],
		"gateGuard": map[string]any{"validationActions": []any{"Warn"}}}); err != nil {
		t.Fatalf("helm upgrade: %v\n%s", err, out)
	} else if !strings.Contains(string(out), "WARNING: the gate guard is in Warn mode only") {
		t.Errorf("upgrade to a warn-only gate guard does not say so:\n%s", out)
	}
	sec2, err := c.kube.CoreV1().Secrets(testNamespace).Get(ctx, "strictgate-webhook-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(sec2.Data["tls.crt"]) != string(sec1.Data["tls.crt"]) || string(sec2.Data["ca.crt"]) != string(sec1.Data["ca.crt"]) {
		t.Error("helm upgrade regenerated the webhook certificate; it must be kept (lookup)")
	}
	if after := caBundle(); !slices.Equal(after, before) {
		t.Error("helm upgrade changed the caBundles")
	}
	d, err := c.kube.AppsV1().Deployments(testNamespace).Get(ctx, "strictgate-webhook", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 3 {
		t.Errorf("upgrade did not apply replicas=3: %d", *d.Spec.Replicas)
	}

	if out, err := h.Uninstall(ctx, "strictgate", testNamespace); err != nil {
		t.Fatalf("helm uninstall: %v\n%s", err, out)
	}
	for _, check := range []struct {
		what string
		list func() (int, error)
	}{
		{"MutatingWebhookConfigurations", func() (int, error) {
			l, err := c.kube.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
			if err != nil {
				return 0, err
			}
			return len(l.Items), nil
		}},
		{"ValidatingWebhookConfigurations", func() (int, error) {
			l, err := c.kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
			if err != nil {
				return 0, err
			}
			return len(l.Items), nil
		}},
		{"ValidatingAdmissionPolicies", func() (int, error) {
			l, err := c.kube.AdmissionregistrationV1().ValidatingAdmissionPolicies().List(ctx, metav1.ListOptions{})
			if err != nil {
				return 0, err
			}
			return len(l.Items), nil
		}},
		{"strictgate ClusterRoles", func() (int, error) {
			l, err := c.kube.RbacV1().ClusterRoles().List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/part-of=strictgate"})
			if err != nil {
				return 0, err
			}
			return len(l.Items), nil
		}},
	} {
		n, err := check.list()
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("after helm uninstall %d %s remain", n, check.what)
		}
	}
	if _, err := c.kube.CoreV1().Secrets(testNamespace).Get(ctx, "strictgate-webhook-tls", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("webhook TLS Secret after uninstall: %v", err)
	}
	// Helm never deletes crds/ (that would delete every user's ClusterNetworkPolicy).
	if _, err := cnps.PolicyV1beta1().ClusterNetworkPolicies().Get(ctx, probe.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("ClusterNetworkPolicy after helm uninstall: %v (the CRD must stay)", err)
	}
}

// TestHelmUpgradeKeepsRotatedCertificates: with the default certificate rotation the
// webhook writes the Secret's data and the caBundles; helm upgrade must leave both as
// the webhook wrote them (neither manifest has those fields), and the chart's RBAC must
// let the webhook's service account do exactly what rotation does.
func TestHelmUpgradeKeepsRotatedCertificates(t *testing.T) {
	cfg, h := helmOnAPIServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	values := map[string]any{"agent": map[string]any{"cni": map[string]any{"uninstallOnDelete": false}}}
	if out, err := h.Upgrade(ctx, "strictgate", testNamespace, values); err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}

	// As the webhook's service account, with the chart's RBAC: what the rotator, the
	// injector and the syncer do.
	saCfg := rest.CopyConfig(cfg)
	saCfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + testNamespace + ":strictgate-webhook",
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + testNamespace, "system:authenticated"},
	}
	sa := kubernetes.NewForConfigOrDie(saCfg)
	// This API server serves MutatingAdmissionPolicy: gate.injection=auto installs the
	// policy and registers no pod mutator, so only the validating configuration's
	// caBundle is the webhook's to keep.
	c := kubernetes.NewForConfigOrDie(cfg)
	if _, err := c.AdmissionregistrationV1().MutatingAdmissionPolicies().Get(ctx, "strictgate-readiness-gate", metav1.GetOptions{}); err != nil {
		t.Fatalf("auto did not install the gate policy on a server that serves it: %v", err)
	}
	if _, err := c.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "strictgate-webhook", metav1.GetOptions{}); err == nil {
		t.Error("the pod mutator is registered beside the gate policy")
	}
	byName := metav1.ListOptions{FieldSelector: "metadata.name=strictgate-webhook"}
	if _, err := sa.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx, byName); err != nil {
		t.Fatalf("list the validating configuration by name: %v", err)
	}
	if _, err := sa.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx, metav1.ListOptions{}); err == nil {
		t.Error("the webhook may list every ValidatingWebhookConfiguration; want only its own")
	}
	if _, err := sa.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, byName); err == nil {
		t.Error("the webhook may read MutatingWebhookConfigurations although none is its own")
	}
	if _, err := sa.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{}); err == nil {
		t.Error("the webhook may list Secrets outside its namespace")
	}
	sec, err := sa.CoreV1().Secrets(testNamespace).Get(ctx, "strictgate-webhook-cert", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	written := map[string][]byte{"ca.crt": []byte("CA"), "ca.key": []byte("CAKEY"), "tls.crt": []byte("CRT"), "tls.key": []byte("KEY")}
	sec.Data = written
	if _, err := sa.CoreV1().Secrets(testNamespace).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update the rotated Secret: %v", err)
	}
	bundle := []byte("-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n")
	vw, err := sa.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "strictgate-webhook", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range vw.Webhooks {
		vw.Webhooks[i].ClientConfig.CABundle = bundle
	}
	if _, err := sa.AdmissionregistrationV1().ValidatingWebhookConfigurations().Update(ctx, vw, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("inject the caBundle: %v", err)
	}

	values["webhook"] = map[string]any{"replicas": 3}
	if out, err := h.Upgrade(ctx, "strictgate", testNamespace, values); err != nil {
		t.Fatalf("helm upgrade: %v\n%s", err, out)
	}
	after, err := c.CoreV1().Secrets(testNamespace).Get(ctx, "strictgate-webhook-cert", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range written {
		if string(after.Data[k]) != string(v) {
			t.Errorf("helm upgrade changed the rotated Secret's %s", k)
		}
	}
	vw, err = c.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "strictgate-webhook", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cc := range clientConfigsOfValidating(vw.Webhooks) {
		if string(cc.CABundle) != string(bundle) {
			t.Error("helm upgrade removed or changed the injected caBundle")
		}
	}
	if out, err := h.Uninstall(ctx, "strictgate", testNamespace); err != nil {
		t.Fatalf("helm uninstall: %v\n%s", err, out)
	}
}

func clientConfigsOfValidating(ws []admissionregistrationv1.ValidatingWebhook) []admissionregistrationv1.WebhookClientConfig {
	var out []admissionregistrationv1.WebhookClientConfig
	for _, w := range ws {
		out = append(out, w.ClientConfig)
	}
	return out
}

// helmOnAPIServer starts a real API server (no nodes) and a helm that talks to it.
func helmOnAPIServer(t *testing.T) (*rest.Config, *Helm) {
	t.Helper()
	env := &envtest.Environment{}
	cfg := controlplane.Start(t, env)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := New(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, h
}
