package charts

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"flag"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/strictgate/strictgate/agent"
	"github.com/strictgate/strictgate/internal/contract"
	webhook "github.com/strictgate/strictgate/webhook"
)

const testNamespace = "strictgate"

// rendered is one `helm template` output, decoded.
type rendered struct {
	t    *testing.T
	objs []*unstructured.Unstructured
}

func helm(t *testing.T) *Helm {
	t.Helper()
	h, err := New("")
	if err != nil {
		t.Fatalf("build helm: %v", err)
	}
	return h
}

func render(t *testing.T, release string, values map[string]any) *rendered {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := helm(t).Template(ctx, release, testNamespace, values)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	objs, err := Decode(out)
	if err != nil {
		t.Fatal(err)
	}
	return &rendered{t: t, objs: objs}
}

func (r *rendered) kinds() map[string]int {
	k := map[string]int{}
	for _, o := range r.objs {
		k[o.GetKind()]++
	}
	return k
}

func (r *rendered) byKind(kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range r.objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// one converts the single object of kind named name (any name when "") into T.
func one[T any](r *rendered, kind, name string) *T {
	r.t.Helper()
	var found []*unstructured.Unstructured
	for _, o := range r.byKind(kind) {
		if name == "" || o.GetName() == name {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		r.t.Fatalf("want exactly one %s %q, got %d (kinds: %v)", kind, name, len(found), r.kinds())
	}
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(found[0].Object, out, true); err != nil {
		r.t.Fatalf("%s %s does not convert strictly to %T: %v", kind, found[0].GetName(), out, err)
	}
	return out
}

func TestLintStrict(t *testing.T) {
	h := helm(t)
	kv, err := KubeVersion()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		set  []string
	}{
		{"defaults", nil},
		{"cert-manager", []string{"certManager.enabled=true"}},
		{"audit with monitoring", []string{"mode=audit", "metrics.serviceMonitor.enabled=true", "metrics.prometheusRule.enabled=true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"lint", "--strict", Dir(), "--namespace", testNamespace, "--kube-version", kv}
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			out, err := h.Run(context.Background(), args...)
			if err != nil {
				t.Fatalf("helm lint --strict: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "0 chart(s) failed") {
				t.Fatalf("helm lint output does not report success:\n%s", out)
			}
		})
	}
}

// TestValuesSchemaRejects: a misspelt key or a value out of range must fail the
// install with a message naming it, not be ignored.
func TestValuesSchemaRejects(t *testing.T) {
	h := helm(t)
	for _, tc := range []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"unknown mode", map[string]any{"mode": "permissive"}, "/mode"},
		{"unknown top-level key", map[string]any{"mod": "strict"}, "mod"},
		{"unknown nested key", map[string]any{"webhook": map[string]any{"replica": 3}}, "replica"},
		{"bad pull policy", map[string]any{"image": map[string]any{"pullPolicy": "Sometimes"}}, "pullPolicy"},
		{"bad failure policy", map[string]any{"webhook": map[string]any{"admission": map[string]any{"pods": map[string]any{"failurePolicy": "Open"}}}}, "failurePolicy"},
		{"timeout above API limit", map[string]any{"webhook": map[string]any{"admission": map[string]any{"timeoutSeconds": 31}}}, "timeoutSeconds"},
		{"zero replicas", map[string]any{"webhook": map[string]any{"replicas": 0}}, "replicas"},
		{"port out of range", map[string]any{"agent": map[string]any{"metricsPort": 70000}}, "metricsPort"},
		{"bad duration", map[string]any{"certManager": map[string]any{"duration": "90 days"}}, "duration"},
		{"bad excluded namespace", map[string]any{"enforcement": map[string]any{"excludedNamespaces": []any{"Not_A_Namespace"}}}, "excludedNamespaces"},
		{"defaultDeny not a bool", map[string]any{"enforcement": map[string]any{"defaultDeny": "no"}}, "defaultDeny"},
		{"namespace selector misspelt", map[string]any{"enforcement": map[string]any{"namespaceSelector": map[string]any{"matchLabel": map[string]any{"a": "b"}}}}, "matchLabel"},
		{"namespace selector bad operator", map[string]any{"enforcement": map[string]any{"namespaceSelector": map[string]any{"matchExpressions": []any{map[string]any{"key": "a", "operator": "Has"}}}}}, "operator"},
		{"bad validation action", map[string]any{"gateGuard": map[string]any{"validationActions": []any{"Block"}}}, "validationActions"},
		{"bad digest", map[string]any{"image": map[string]any{"digest": "latest"}}, "digest"},
		{"bad hygiene action", map[string]any{"webhook": map[string]any{"hygiene": map[string]any{"actions": map[string]any{"SG001": "block"}}}}, "actions"},
		{"bad hygiene default action", map[string]any{"webhook": map[string]any{"hygiene": map[string]any{"defaultAction": "off"}}}, "defaultAction"},
		{"custom rule file name", map[string]any{"webhook": map[string]any{"hygiene": map[string]any{"customRules": map[string]any{"rule.txt": "x"}}}}, "rule.txt"},
		{"unknown verdict filter", map[string]any{"agent": map[string]any{"policyEventLogs": map[string]any{"verdicts": "some"}}}, "verdicts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.Template(context.Background(), "strictgate", testNamespace, tc.values)
			if err == nil {
				t.Fatalf("helm template accepted invalid values %v", tc.values)
			}
			if !strings.Contains(err.Error(), "schema") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error does not come from the schema or does not name %q:\n%v", tc.want, err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	r := render(t, "strictgate", nil)

	wantKinds := map[string]int{
		"ServiceAccount": 2, "Secret": 1, "ClusterRole": 4, "ClusterRoleBinding": 4, "Role": 2, "RoleBinding": 2,
		"Service": 3, "Deployment": 1, "DaemonSet": 1, "PodDisruptionBudget": 1,
		"MutatingWebhookConfiguration": 1, "ValidatingWebhookConfiguration": 1,
		"ValidatingAdmissionPolicy": 1, "ValidatingAdmissionPolicyBinding": 1,
		"Job": 1, // the pre-delete CNI cleanup hook
	}
	if got := r.kinds(); !maps.Equal(got, wantKinds) {
		t.Fatalf("rendered kinds:\n got  %v\n want %v", got, wantKinds)
	}

	t.Run("names match the components' defaults", func(t *testing.T) {
		// The release "strictgate" in namespace "strictgate" is the documented install;
		// the webhook's built-in defaults name these same objects.
		def := webhook.DefaultConfig()
		for _, want := range []string{def.ServiceAccount, def.AgentServiceAccount} {
			ns, sa, _ := strings.Cut(strings.TrimPrefix(want, "system:serviceaccount:"), ":")
			if ns != testNamespace {
				t.Fatalf("default service account %s is not in %s", want, testNamespace)
			}
			one[corev1.ServiceAccount](r, "ServiceAccount", sa)
		}
	})

	t.Run("webhook deployment", func(t *testing.T) {
		d := one[appsv1.Deployment](r, "Deployment", "strictgate-webhook")
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
			t.Errorf("replicas = %v, want 2", d.Spec.Replicas)
		}
		if d.Spec.Strategy.RollingUpdate == nil || d.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue() != 0 {
			t.Errorf("rolling update must keep every replica (maxUnavailable 0): %+v", d.Spec.Strategy)
		}
		c := onlyContainer(t, d.Spec.Template.Spec.Containers)
		args := argMap(c.Args)
		for flag, want := range map[string]string{
			"--namespace":             testNamespace,
			"--service-account":       "system:serviceaccount:strictgate:strictgate-webhook",
			"--agent-service-account": "system:serviceaccount:strictgate:strictgate-agent",
			"--leader-elect":          "true",
			"--leader-election-id":    "strictgate-webhook",
			"--cert-dir":              "/tls",
			"--port":                  "9443",
			"--opt-out-group":         webhook.DefaultOptOutGroup,
			"--dns-policy":            "true",
			"--default-deny":          "true",
			"--max-connections":       strconv.Itoa(webhook.DefaultMaxConnections),
		} {
			if args[flag] != want {
				t.Errorf("webhook flag %s = %q, want %q (args %v)", flag, args[flag], want, c.Args)
			}
		}
		if c.Args[0] != "webhook" {
			t.Errorf("first arg %q, want the webhook sub-command", c.Args[0])
		}
		if c.Image != "ghcr.io/strictgate/strictgate:0.1.0" || c.ImagePullPolicy != corev1.PullIfNotPresent {
			t.Errorf("image %s %s, want appVersion tag and IfNotPresent", c.Image, c.ImagePullPolicy)
		}
		if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
			t.Errorf("readiness probe %+v, want GET /readyz", c.ReadinessProbe)
		}
		assertRestricted(t, d.Spec.Template.Spec, c)
		if d.Spec.Template.Spec.HostNetwork {
			t.Error("webhook must not use the host network")
		}
		// The webhook writes its rotated certificate into a memory-backed emptyDir.
		if vol := d.Spec.Template.Spec.Volumes; len(vol) != 1 || vol[0].Name != "tls" || vol[0].EmptyDir == nil || vol[0].EmptyDir.Medium != corev1.StorageMediumMemory {
			t.Errorf("webhook volumes %+v, want only the memory-backed tls emptyDir", vol)
		}
		pdb := one[policyv1.PodDisruptionBudget](r, "PodDisruptionBudget", "strictgate-webhook")
		if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 {
			t.Errorf("PDB minAvailable %v, want 1", pdb.Spec.MinAvailable)
		}
		if !maps.Equal(pdb.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels) {
			t.Errorf("PDB selector %v != deployment selector %v", pdb.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels)
		}
	})

	t.Run("TLS: the webhook owns and rotates its certificates", func(t *testing.T) {
		sec := one[corev1.Secret](r, "Secret", "strictgate-webhook-cert")
		if sec.Type != corev1.SecretTypeOpaque || len(sec.Data)+len(sec.StringData) != 0 {
			t.Errorf("rotated Secret: type %s, %d keys; want an empty Opaque Secret (the webhook writes it)", sec.Type, len(sec.Data)+len(sec.StringData))
		}
		for _, wh := range webhookClientConfigs(r) {
			if len(wh.cfg.CABundle) != 0 {
				t.Errorf("webhook %s has a caBundle; the webhook injects it (helm upgrade must leave it alone)", wh.name)
			}
		}
		// The rendered flags parse and validate in the webhook's own configuration.
		d := one[appsv1.Deployment](r, "Deployment", "strictgate-webhook")
		cfg := webhook.DefaultConfig()
		fs := flag.NewFlagSet("webhook", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		cfg.BindFlags(fs)
		var args []string // the process's own logging flags are bound by cmd/strictgate
		for _, a := range onlyContainer(t, d.Spec.Template.Spec.Containers).Args[1:] {
			if !strings.HasPrefix(a, "-v=") && !strings.HasPrefix(a, "--v=") {
				args = append(args, a)
			}
		}
		if err := fs.Parse(args); err != nil {
			t.Fatalf("rendered webhook args: %v", err)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("rendered webhook args do not validate: %v", err)
		}
		rot := cfg.CertRotation
		if !rot.Enabled || rot.Secret != sec.Name || rot.MutatingWebhookConfiguration != "strictgate-webhook" || rot.ValidatingWebhookConfiguration != "strictgate-webhook" ||
			!slices.Equal(rot.DNSNames, []string{"strictgate-webhook.strictgate.svc", "strictgate-webhook.strictgate.svc.cluster.local"}) {
			t.Errorf("rotation flags %+v", rot)
		}
		if rot.CALifetime != 8760*time.Hour || rot.CertLifetime != 2160*time.Hour || rot.RenewBefore != 720*time.Hour {
			t.Errorf("rotation lifetimes %v / %v / %v, want the values' 8760h / 2160h / 720h", rot.CALifetime, rot.CertLifetime, rot.RenewBefore)
		}
	})

	t.Run("mutating webhook", func(t *testing.T) {
		m := one[admissionregistrationv1.MutatingWebhookConfiguration](r, "MutatingWebhookConfiguration", "strictgate-webhook")
		if len(m.Webhooks) != 1 {
			t.Fatalf("want one mutating webhook, got %d", len(m.Webhooks))
		}
		w := m.Webhooks[0]
		assertRules(t, w.Rules, "", "pods", admissionregistrationv1.Create)
		if *w.FailurePolicy != admissionregistrationv1.Fail || *w.SideEffects != admissionregistrationv1.SideEffectClassNone ||
			*w.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy || *w.TimeoutSeconds > 10 {
			t.Errorf("mutating webhook: failurePolicy %s sideEffects %s reinvocation %s timeout %d; want Fail, None, IfNeeded, <= 10s",
				*w.FailurePolicy, *w.SideEffects, *w.ReinvocationPolicy, *w.TimeoutSeconds)
		}
		if w.ClientConfig.Service == nil || w.ClientConfig.Service.Path == nil || *w.ClientConfig.Service.Path != webhook.PathMutatePod ||
			w.ClientConfig.Service.Name != "strictgate-webhook" || w.ClientConfig.Service.Namespace != testNamespace {
			t.Errorf("mutating webhook calls %+v", w.ClientConfig.Service)
		}
		assertExcludes(t, w.NamespaceSelector, "kube-system", "kube-public", "kube-node-lease", testNamespace)
		if w.ObjectSelector == nil || len(w.ObjectSelector.MatchLabels)+len(w.ObjectSelector.MatchExpressions) != 0 {
			t.Errorf("default objectSelector %+v, want empty (every pod)", w.ObjectSelector)
		}
	})

	t.Run("validating webhooks", func(t *testing.T) {
		v := one[admissionregistrationv1.ValidatingWebhookConfiguration](r, "ValidatingWebhookConfiguration", "strictgate-webhook")
		byPath := map[string]admissionregistrationv1.ValidatingWebhook{}
		for _, w := range v.Webhooks {
			byPath[*w.ClientConfig.Service.Path] = w
			if *w.SideEffects != admissionregistrationv1.SideEffectClassNone || *w.TimeoutSeconds > 10 {
				t.Errorf("%s: sideEffects %s timeout %d", w.Name, *w.SideEffects, *w.TimeoutSeconds)
			}
		}
		np, ok := byPath[webhook.PathValidateNetworkPolicy]
		if !ok {
			t.Fatalf("no webhook for %s", webhook.PathValidateNetworkPolicy)
		}
		assertRules(t, np.Rules, "networking.k8s.io", "networkpolicies", admissionregistrationv1.Create, admissionregistrationv1.Update, admissionregistrationv1.Delete)
		ns, ok := byPath[webhook.PathValidateNamespace]
		if !ok {
			t.Fatalf("no webhook for %s", webhook.PathValidateNamespace)
		}
		assertRules(t, ns.Rules, "", "namespaces", admissionregistrationv1.Create, admissionregistrationv1.Update)
		if ns.NamespaceSelector != nil && (len(ns.NamespaceSelector.MatchExpressions) > 0 || len(ns.NamespaceSelector.MatchLabels) > 0) {
			t.Errorf("the namespace guard must see every namespace (a selector would let the labelling request skip it): %+v", ns.NamespaceSelector)
		}
		cnp, ok := byPath[webhook.PathValidateClusterNetworkPolicy]
		if !ok {
			t.Fatalf("no webhook for %s", webhook.PathValidateClusterNetworkPolicy)
		}
		assertRules(t, cnp.Rules, webhook.CNPGroup, "clusternetworkpolicies", admissionregistrationv1.Create, admissionregistrationv1.Update, admissionregistrationv1.Delete)
		if len(cnp.MatchConditions) != 1 || !strings.Contains(cnp.MatchConditions[0].Expression, "'"+contract.DefaultDenyPolicy+"'") {
			t.Errorf("ClusterNetworkPolicy webhook must be sent only the generated policy's DELETEs: %+v", cnp.MatchConditions)
		}
		if got := cnp.Rules[0].APIVersions; len(got) != 2 || got[0] != "v1beta1" || got[1] != "v1alpha2" {
			t.Errorf("ClusterNetworkPolicy webhook versions %v, want both served versions [v1beta1 v1alpha2]", got)
		}
		if len(v.Webhooks) != 3 {
			t.Errorf("want 3 validating webhooks, got %d", len(v.Webhooks))
		}
	})

	t.Run("gate guard", func(t *testing.T) {
		p := one[admissionregistrationv1.ValidatingAdmissionPolicy](r, "ValidatingAdmissionPolicy", "")
		b := one[admissionregistrationv1.ValidatingAdmissionPolicyBinding](r, "ValidatingAdmissionPolicyBinding", "")
		if b.Spec.PolicyName != p.Name {
			t.Errorf("binding names policy %q, policy is %q", b.Spec.PolicyName, p.Name)
		}
		if !slices.Equal(b.Spec.ValidationActions, []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}) {
			t.Errorf("validationActions %v, want [Deny]", b.Spec.ValidationActions)
		}
		if len(p.Spec.Validations) == 0 || !strings.Contains(p.Spec.MatchConstraints.ResourceRules[0].Resources[0], "pods/status") {
			t.Errorf("policy does not guard pods/status: %+v", p.Spec)
		}
		// The policy recognises the agent through RBAC: the setter role must be bound to
		// the agent's service account and to nobody else.
		setter := one[rbacv1.ClusterRole](r, "ClusterRole", "strictgate-gate-setter")
		crb := one[rbacv1.ClusterRoleBinding](r, "ClusterRoleBinding", "strictgate-gate-setter")
		if crb.RoleRef.Name != setter.Name || len(crb.Subjects) != 1 || crb.Subjects[0].Kind != "ServiceAccount" ||
			crb.Subjects[0].Name != "strictgate-agent" || crb.Subjects[0].Namespace != testNamespace {
			t.Errorf("gate setter binding %+v, want only the agent's service account", crb)
		}
	})

	t.Run("RBAC is exactly least privilege", func(t *testing.T) {
		assertRBAC(t, one[rbacv1.ClusterRole](r, "ClusterRole", "strictgate-webhook").Rules, []string{
			"/namespaces get", "/namespaces list", "/namespaces watch",
			"/pods get", "/pods list", "/pods watch",
			"networking.k8s.io/networkpolicies get", "networking.k8s.io/networkpolicies list", "networking.k8s.io/networkpolicies watch",
			"networking.k8s.io/networkpolicies create", "networking.k8s.io/networkpolicies update", "networking.k8s.io/networkpolicies delete",
			"policy.networking.k8s.io/clusternetworkpolicies list",
		})
		role := one[rbacv1.Role](r, "Role", "strictgate-webhook")
		if role.Namespace != testNamespace {
			t.Errorf("leader-election Role in %q, want the release namespace", role.Namespace)
		}
		assertRBAC(t, role.Rules, []string{
			"coordination.k8s.io/leases get", "coordination.k8s.io/leases create", "coordination.k8s.io/leases update",
			"/events create", "/events patch", "events.k8s.io/events create", "events.k8s.io/events patch",
		})
		assertRBAC(t, one[rbacv1.ClusterRole](r, "ClusterRole", "strictgate-agent").Rules, []string{
			"/pods get", "/pods list", "/pods watch",
			"/namespaces get", "/namespaces list", "/namespaces watch",
			"/services get", "/services list", "/services watch",
			"/nodes get", "/nodes list", "/nodes watch",
			"/pods/status patch",
			"networking.k8s.io/networkpolicies get", "networking.k8s.io/networkpolicies list", "networking.k8s.io/networkpolicies watch",
			"discovery.k8s.io/endpointslices get", "discovery.k8s.io/endpointslices list", "discovery.k8s.io/endpointslices watch",
			"policy.networking.k8s.io/clusternetworkpolicies get", "policy.networking.k8s.io/clusternetworkpolicies list", "policy.networking.k8s.io/clusternetworkpolicies watch",
			"/events create", "/events patch", // Events on pods, in their namespaces
		})
		assertRBAC(t, one[rbacv1.ClusterRole](r, "ClusterRole", "strictgate-gate-setter").Rules, []string{
			"strictgate.dev/pods/policy-programmed update",
		})
		// Certificate rotation: the one Secret and the two webhook configurations, by
		// name; listing Secrets only in the release namespace.
		certRole := one[rbacv1.Role](r, "Role", "strictgate-webhook-cert")
		if certRole.Namespace != testNamespace {
			t.Errorf("certificate Role in %q, want the release namespace", certRole.Namespace)
		}
		assertRBAC(t, certRole.Rules, []string{
			"/secrets get", "/secrets list", "/secrets watch", "/secrets update strictgate-webhook-cert",
		})
		assertRBAC(t, one[rbacv1.ClusterRole](r, "ClusterRole", "strictgate-webhook-cert").Rules, []string{
			"admissionregistration.k8s.io/mutatingwebhookconfigurations get strictgate-webhook",
			"admissionregistration.k8s.io/mutatingwebhookconfigurations list strictgate-webhook",
			"admissionregistration.k8s.io/mutatingwebhookconfigurations watch strictgate-webhook",
			"admissionregistration.k8s.io/mutatingwebhookconfigurations update strictgate-webhook",
			"admissionregistration.k8s.io/validatingwebhookconfigurations get strictgate-webhook",
			"admissionregistration.k8s.io/validatingwebhookconfigurations list strictgate-webhook",
			"admissionregistration.k8s.io/validatingwebhookconfigurations watch strictgate-webhook",
			"admissionregistration.k8s.io/validatingwebhookconfigurations update strictgate-webhook",
		})
		for _, kind := range []string{"ClusterRoleBinding", "RoleBinding"} {
			for _, o := range r.byKind(kind) {
				subjects, _, _ := unstructured.NestedSlice(o.Object, "subjects")
				for _, s := range subjects {
					s := s.(map[string]any)
					if s["kind"] != "ServiceAccount" || s["namespace"] != testNamespace {
						t.Errorf("%s %s binds %v; only the release's service accounts may be bound", kind, o.GetName(), s)
					}
				}
			}
		}
	})

	t.Run("agent daemonset", func(t *testing.T) {
		ds := one[appsv1.DaemonSet](r, "DaemonSet", "strictgate-agent")
		spec := ds.Spec.Template.Spec
		if !spec.HostNetwork || spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
			t.Errorf("agent hostNetwork=%v dnsPolicy=%s, want host network with ClusterFirstWithHostNet", spec.HostNetwork, spec.DNSPolicy)
		}
		if spec.ServiceAccountName != "strictgate-agent" {
			t.Errorf("agent service account %q", spec.ServiceAccountName)
		}
		if spec.PriorityClassName != "system-node-critical" {
			t.Errorf("agent priorityClassName %q, want system-node-critical", spec.PriorityClassName)
		}
		if len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != corev1.TolerationOpExists {
			t.Errorf("agent tolerations %+v, want to run on every node", spec.Tolerations)
		}
		c := onlyContainer(t, spec.Containers)
		args := argMap(c.Args)
		if c.Args[0] != "agent" || args["--mode"] != "strict" || args["--node-name"] != "$(NODE_NAME)" ||
			args["--pin-root"] != "/sys/fs/bpf/strictgate" || args["--metrics-addr"] != ":9965" || args["--event-mode"] != "deny" {
			t.Errorf("agent args %v, want the agent sub-command in strict mode, node name, pins under /sys/fs/bpf, metrics on 9965, DENY events", c.Args)
		}
		if args["--namespace"] != testNamespace || slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--exclude-namespace") }) {
			t.Errorf("agent args %v, want --namespace=%s (the webhook's) and no further exclusions by default", c.Args, testNamespace)
		}
		if len(c.Env) != 1 || c.Env[0].Name != "NODE_NAME" || c.Env[0].ValueFrom == nil || c.Env[0].ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
			t.Errorf("agent env %+v, want NODE_NAME from spec.nodeName", c.Env)
		}
		if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
			t.Errorf("agent probes %+v / %+v", c.ReadinessProbe, c.LivenessProbe)
		}
		sc := c.SecurityContext
		if sc == nil || (sc.Privileged != nil && *sc.Privileged) {
			t.Fatalf("agent must not be privileged: %+v", sc)
		}
		if *sc.AllowPrivilegeEscalation || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("agent: allowPrivilegeEscalation %v readOnlyRootFilesystem %v", *sc.AllowPrivilegeEscalation, *sc.ReadOnlyRootFilesystem)
		}
		if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("agent drops %v, want ALL", sc.Capabilities.Drop)
		}
		gotCaps := slices.Sorted(slices.Values(sc.Capabilities.Add))
		if want := []corev1.Capability{"BPF", "NET_ADMIN", "PERFMON", "SYS_ADMIN"}; !slices.Equal(gotCaps, want) {
			t.Errorf("agent capabilities %v, want exactly %v", gotCaps, want)
		}
		paths := map[string]bool{}
		for _, v := range spec.Volumes {
			if v.HostPath == nil {
				t.Errorf("unexpected non-hostPath volume %s on the agent", v.Name)
				continue
			}
			paths[v.HostPath.Path] = true
		}
		if want := map[string]bool{"/sys/fs/bpf": true, "/opt/cni/bin": true, "/etc/cni/net.d": true, "/etc/cni/net.d/strictgate": true}; !maps.Equal(paths, want) {
			t.Errorf("agent hostPaths %v, want exactly %v", paths, want)
		}
		// The CNI installer writes only to the CNI directories and has no capabilities.
		if len(spec.InitContainers) != 1 {
			t.Fatalf("want one CNI install init container, got %d", len(spec.InitContainers))
		}
		ic := spec.InitContainers[0]
		icArgs := argMap(ic.Args)
		if !slices.Equal(ic.Args[:2], []string{"cni", "install"}) || icArgs["--mode"] != "strict" || icArgs["--pin-root"] != args["--pin-root"] {
			t.Errorf("CNI installer args %v: want `cni install` with the agent's mode and pin root", ic.Args)
		}
		if ic.SecurityContext == nil || !slices.Equal(ic.SecurityContext.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(ic.SecurityContext.Capabilities.Add) != 0 {
			t.Errorf("CNI installer security context %+v, want no capabilities", ic.SecurityContext)
		}
		for _, m := range ic.VolumeMounts {
			if m.Name == "bpffs" {
				t.Error("the CNI installer does not need bpffs")
			}
		}
		// Program at CNI ADD (default): the plugin on the host and the agent in its
		// container name the same socket, the agent mounts only strictgate's own
		// subdirectory of the CNI configuration, and both use the same timeout.
		if icArgs["--agent-socket"] != "/etc/cni/net.d/strictgate/agent.sock" || args["--cni-socket"] != "/run/strictgate-cni/agent.sock" ||
			icArgs["--program-timeout"] != "3s" || args["--cni-timeout"] != "3s" {
			t.Errorf("program at ADD: installer args %v, agent args %v: want the socket in /etc/cni/net.d/strictgate and 3s on both sides", ic.Args, c.Args)
		}
		mounts := map[string]string{}
		for _, m := range c.VolumeMounts {
			mounts[m.Name] = m.MountPath
		}
		if mounts["cni-socket"] != "/run/strictgate-cni" || mounts["cni-conf"] != "" || mounts["cni-bin"] != "" {
			t.Errorf("agent mounts %v: want the socket directory only, not the CNI directories", mounts)
		}
		for _, m := range c.VolumeMounts {
			if m.Name == "bpffs" && m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationBidirectional {
				t.Errorf("bpffs mount propagation Bidirectional needs a privileged container")
			}
		}
	})

	t.Run("CNI cleanup hook", func(t *testing.T) {
		j := one[batchv1.Job](r, "Job", "strictgate-cni-cleanup")
		if j.Annotations["helm.sh/hook"] != "pre-delete" {
			t.Errorf("cleanup Job hook %q, want pre-delete (before the agents go)", j.Annotations["helm.sh/hook"])
		}
		spec := j.Spec.Template.Spec
		c := onlyContainer(t, spec.Containers)
		if !slices.Equal(c.Args, []string{"cni", "uninstall", "--conf-dir=/host/cni/net.d"}) {
			t.Errorf("cleanup args %v", c.Args)
		}
		if len(spec.Volumes) != 1 || spec.Volumes[0].HostPath == nil || spec.Volumes[0].HostPath.Path != "/etc/cni/net.d" {
			t.Errorf("cleanup volumes %+v, want only the CNI configuration directory", spec.Volumes)
		}
		if c.SecurityContext == nil || len(c.SecurityContext.Capabilities.Add) != 0 || spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("cleanup pod must need no capabilities and no API access: %+v", c.SecurityContext)
		}
		if spec.Affinity == nil || spec.Affinity.PodAntiAffinity == nil || len(spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 1 {
			t.Errorf("cleanup pods must spread one per node (required anti-affinity): %+v", spec.Affinity)
		}
		if *j.Spec.Completions != *j.Spec.Parallelism {
			t.Errorf("completions %d != parallelism %d", *j.Spec.Completions, *j.Spec.Parallelism)
		}
	})

	t.Run("metrics services", func(t *testing.T) {
		for name, port := range map[string]int32{"strictgate-webhook-metrics": 8080, "strictgate-agent-metrics": 9965} {
			svc := one[corev1.Service](r, "Service", name)
			if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "metrics" || svc.Spec.Ports[0].Port != port {
				t.Errorf("service %s ports %+v, want metrics:%d", name, svc.Spec.Ports, port)
			}
		}
	})

	assertNames(t, r)
}

// TestValueSets renders other value sets and checks what each changes.
func TestValueSets(t *testing.T) {
	for _, tc := range []struct {
		name    string
		release string
		values  map[string]any
		check   func(t *testing.T, r *rendered)
	}{
		{
			name: "TLS without rotation: Helm-generated CA signs a serving certificate for the Service", release: "strictgate",
			values: map[string]any{"selfSignedCert": map[string]any{"rotate": false}},
			check: func(t *testing.T, r *rendered) {
				sec := one[corev1.Secret](r, "Secret", "strictgate-webhook-tls")
				if sec.Type != corev1.SecretTypeTLS {
					t.Errorf("secret type %s, want kubernetes.io/tls", sec.Type)
				}
				ca := decodeCert(t, sec.Data["ca.crt"])
				leaf := decodeCert(t, sec.Data["tls.crt"])
				if len(sec.Data["tls.key"]) == 0 {
					t.Fatal("tls.key is empty")
				}
				roots := x509.NewCertPool()
				roots.AddCert(ca)
				for _, dns := range []string{"strictgate-webhook.strictgate.svc", "strictgate-webhook.strictgate.svc.cluster.local"} {
					if _, err := leaf.Verify(x509.VerifyOptions{DNSName: dns, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
						t.Errorf("serving certificate does not verify for %s against ca.crt: %v", dns, err)
					}
				}
				for _, wh := range webhookClientConfigs(r) {
					if string(wh.cfg.CABundle) != string(sec.Data["ca.crt"]) {
						t.Errorf("webhook %s caBundle differs from the Secret's ca.crt", wh.name)
					}
				}
				if n := len(r.byKind("Role")); n != 1 {
					t.Errorf("%d Roles without rotation, want only leader election's", n)
				}
				d := one[appsv1.Deployment](r, "Deployment", "strictgate-webhook")
				if vol := d.Spec.Template.Spec.Volumes; len(vol) != 1 || vol[0].Secret == nil || vol[0].Secret.SecretName != "strictgate-webhook-tls" {
					t.Errorf("webhook volumes %+v, want only the TLS Secret", vol)
				}
				if args := onlyContainer(t, d.Spec.Template.Spec.Containers).Args; slices.Contains(args, "--cert-rotation") {
					t.Errorf("webhook args %v rotate certificates with rotate=false", args)
				}
			},
		},
		{
			name: "gate by MutatingAdmissionPolicy: no pod mutator, no mutating configuration to keep", release: "strictgate",
			values: map[string]any{"gate": map[string]any{"injection": "policy"}},
			check: func(t *testing.T, r *rendered) {
				if n := len(r.byKind("MutatingWebhookConfiguration")); n != 0 {
					t.Errorf("%d MutatingWebhookConfigurations beside the gate policy", n)
				}
				b := one[admissionregistrationv1.MutatingAdmissionPolicyBinding](r, "MutatingAdmissionPolicyBinding", "strictgate-readiness-gate")
				p := one[admissionregistrationv1.MutatingAdmissionPolicy](r, "MutatingAdmissionPolicy", "strictgate-readiness-gate")
				if b.Spec.PolicyName != p.Name {
					t.Errorf("binding names %q, policy is %q", b.Spec.PolicyName, p.Name)
				}
				assertExcludes(t, b.Spec.MatchResources.NamespaceSelector, "kube-system", "kube-public", "kube-node-lease", testNamespace)
				if *p.Spec.FailurePolicy != admissionregistrationv1.Fail {
					t.Errorf("policy failurePolicy %s, want Fail", *p.Spec.FailurePolicy)
				}
				args := onlyContainer(t, one[appsv1.Deployment](r, "Deployment", "strictgate-webhook").Spec.Template.Spec.Containers).Args
				if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--mutating-webhook-configuration") }) {
					t.Errorf("webhook args %v name a mutating configuration that is not rendered", args)
				}
				assertRBAC(t, one[rbacv1.ClusterRole](r, "ClusterRole", "strictgate-webhook-cert").Rules, []string{
					"admissionregistration.k8s.io/validatingwebhookconfigurations get strictgate-webhook",
					"admissionregistration.k8s.io/validatingwebhookconfigurations list strictgate-webhook",
					"admissionregistration.k8s.io/validatingwebhookconfigurations watch strictgate-webhook",
					"admissionregistration.k8s.io/validatingwebhookconfigurations update strictgate-webhook",
				})
			},
		},
		{
			name: "program at CNI ADD off: no socket on either side", release: "strictgate",
			values: map[string]any{"agent": map[string]any{"cni": map[string]any{"programAtAdd": false}}},
			check: func(t *testing.T, r *rendered) {
				spec := one[appsv1.DaemonSet](r, "DaemonSet", "strictgate-agent").Spec.Template.Spec
				all := append(slices.Clone(onlyContainer(t, spec.Containers).Args), spec.InitContainers[0].Args...)
				for _, a := range all {
					if strings.HasPrefix(a, "--cni-socket") || strings.HasPrefix(a, "--agent-socket") {
						t.Errorf("programAtAdd=false still passes %s", a)
					}
				}
				for _, v := range spec.Volumes {
					if v.Name == "cni-socket" {
						t.Error("programAtAdd=false still mounts the socket directory")
					}
				}
			},
		},
		{
			name: "cert-manager", release: "strictgate",
			values: map[string]any{"certManager": map[string]any{"enabled": true}},
			check: func(t *testing.T, r *rendered) {
				if n := len(r.byKind("Secret")); n != 0 {
					t.Errorf("cert-manager mode renders %d Secrets; cert-manager writes the Secret", n)
				}
				cert := r.named("Certificate", "strictgate-webhook")
				dns, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
				if !slices.Equal(dns, []string{"strictgate-webhook.strictgate.svc", "strictgate-webhook.strictgate.svc.cluster.local"}) {
					t.Errorf("certificate dnsNames %v", dns)
				}
				if s, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName"); s != "strictgate-webhook-tls" {
					t.Errorf("certificate secretName %q, want the Secret the Deployment mounts", s)
				}
				if k, _, _ := unstructured.NestedString(cert.Object, "spec", "issuerRef", "name"); k != "strictgate-ca" {
					t.Errorf("serving certificate issued by %q, want the chart's CA issuer", k)
				}
				if n := len(r.byKind("Issuer")); n != 2 {
					t.Errorf("want the self-signed and the CA Issuer, got %d", n)
				}
				for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
					o := r.named(kind, "strictgate-webhook")
					if got := o.GetAnnotations()["cert-manager.io/inject-ca-from"]; got != "strictgate/strictgate-webhook" {
						t.Errorf("%s inject-ca-from = %q", kind, got)
					}
				}
				for _, wh := range webhookClientConfigs(r) {
					if len(wh.cfg.CABundle) != 0 {
						t.Errorf("webhook %s has a caBundle; cainjector owns it", wh.name)
					}
				}
			},
		},
		{
			name: "cert-manager with an existing issuer", release: "strictgate",
			values: map[string]any{"certManager": map[string]any{"enabled": true, "issuerRef": map[string]any{"kind": "ClusterIssuer", "name": "corp-ca", "group": "cert-manager.io"}}},
			check: func(t *testing.T, r *rendered) {
				if n := len(r.byKind("Issuer")); n != 0 {
					t.Errorf("with issuerRef the chart must not create Issuers, got %d", n)
				}
				cert := r.named("Certificate", "strictgate-webhook")
				if k, _, _ := unstructured.NestedString(cert.Object, "spec", "issuerRef", "kind"); k != "ClusterIssuer" {
					t.Errorf("issuerRef kind %q", k)
				}
			},
		},
		{
			name: "audit mode", release: "strictgate",
			values: map[string]any{"mode": "audit"},
			check: func(t *testing.T, r *rendered) {
				ds := one[appsv1.DaemonSet](r, "DaemonSet", "strictgate-agent")
				if got := argMap(ds.Spec.Template.Spec.Containers[0].Args)["--mode"]; got != "audit" {
					t.Errorf("agent --mode=%q, want audit", got)
				}
				for _, ic := range ds.Spec.Template.Spec.InitContainers {
					if got := argMap(ic.Args)["--mode"]; got != "audit" {
						t.Errorf("CNI installer --mode=%q, want audit", got)
					}
				}
			},
		},
		{
			name: "test cluster image", release: "strictgate",
			values: map[string]any{"image": map[string]any{"repository": "strictgate.local/strictgate", "tag": "dev", "pullPolicy": "Never"}},
			check: func(t *testing.T, r *rendered) {
				for _, kind := range []string{"Deployment", "DaemonSet"} {
					for _, o := range r.byKind(kind) {
						cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
						ics, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "initContainers")
						for _, c := range append(cs, ics...) {
							c := c.(map[string]any)
							if c["image"] != "strictgate.local/strictgate:dev" || c["imagePullPolicy"] != "Never" {
								t.Errorf("%s %s container %s: image %v pull %v", kind, o.GetName(), c["name"], c["image"], c["imagePullPolicy"])
							}
						}
					}
				}
			},
		},
		{
			// Helm's maximum release name (53); with "-strictgate" appended the base
			// name alone is 64 characters, so every name must be cut.
			name: "long release name", release: strings.Repeat("long-release-", 4) + "x",
			values: nil,
			check: func(t *testing.T, r *rendered) {
				// assertNames runs for every case; here the names must also stay distinct.
				seen := map[string]string{}
				for _, o := range r.objs {
					key := o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
					if prev, dup := seen[key]; dup {
						t.Errorf("truncation made two objects the same name: %s (%s)", key, prev)
					}
					seen[key] = key
				}
			},
		},
		{
			name: "excluded namespaces and opt-out groups", release: "strictgate",
			values: map[string]any{"enforcement": map[string]any{"excludedNamespaces": []any{"monitoring", "ingress"}, "optOutGroups": []any{"ops", "sre"}, "dnsPolicy": false}},
			check: func(t *testing.T, r *rendered) {
				m := one[admissionregistrationv1.MutatingWebhookConfiguration](r, "MutatingWebhookConfiguration", "")
				assertExcludes(t, m.Webhooks[0].NamespaceSelector, "kube-system", testNamespace, "monitoring", "ingress")
				d := one[appsv1.Deployment](r, "Deployment", "")
				args := d.Spec.Template.Spec.Containers[0].Args
				for _, want := range []string{"--exclude-namespace=monitoring", "--exclude-namespace=ingress", "--opt-out-group=ops,sre", "--dns-policy=false"} {
					if !slices.Contains(args, want) {
						t.Errorf("webhook args %v lack %s", args, want)
					}
				}
				// The agent holds pods of enforced namespaces until their default-deny
				// exists: it must get exactly the webhook's scope.
				ds := one[appsv1.DaemonSet](r, "DaemonSet", "")
				agentArgs := onlyContainer(t, ds.Spec.Template.Spec.Containers).Args
				if got, want := scopeArgs(agentArgs), scopeArgs(args); !slices.Equal(got, want) ||
					!slices.Equal(want, []string{"--namespace=" + testNamespace, "--exclude-namespace=monitoring", "--exclude-namespace=ingress", "--default-deny=true"}) {
					t.Errorf("agent scope args %v, webhook's %v: want the same --namespace and --exclude-namespace", got, want)
				}
			},
		},
		{
			name: "plain enforcer: no default-deny, a namespace selector", release: "strictgate",
			values: map[string]any{"enforcement": map[string]any{
				"defaultDeny": false,
				"namespaceSelector": map[string]any{
					"matchLabels":      map[string]any{"tier": "prod"},
					"matchExpressions": []any{map[string]any{"key": "env", "operator": "NotIn", "values": []any{"dev"}}},
				},
			}},
			check: func(t *testing.T, r *rendered) {
				args := one[appsv1.Deployment](r, "Deployment", "").Spec.Template.Spec.Containers[0].Args
				agentArgs := onlyContainer(t, one[appsv1.DaemonSet](r, "DaemonSet", "").Spec.Template.Spec.Containers).Args
				if got, want := scopeArgs(agentArgs), scopeArgs(args); !slices.Equal(got, want) {
					t.Errorf("agent scope args %v, webhook's %v: want the same", got, want)
				}
				// The flags parse in both components and mean the chart's selector.
				wcfg := webhook.DefaultConfig()
				acfg := agent.DefaultConfig()
				for _, bind := range []func(*flag.FlagSet){wcfg.BindFlags, acfg.RegisterFlags} {
					fs := flag.NewFlagSet("x", flag.ContinueOnError)
					bind(fs)
					var scope []string
					for _, a := range scopeArgs(args) {
						if !strings.HasPrefix(a, "--namespace=") {
							scope = append(scope, a)
						}
					}
					if err := fs.Parse(scope); err != nil {
						t.Fatalf("rendered scope flags %v: %v", scope, err)
					}
				}
				if wcfg.DefaultDeny || acfg.DefaultDeny {
					t.Errorf("--default-deny not false: webhook %v, agent %v", wcfg.DefaultDeny, acfg.DefaultDeny)
				}
				// The pod mutator's selector is the exclusions AND the user's selector.
				m := one[admissionregistrationv1.MutatingWebhookConfiguration](r, "MutatingWebhookConfiguration", "")
				assertExcludes(t, m.Webhooks[0].NamespaceSelector, "kube-system", testNamespace)
				sel, err := metav1.LabelSelectorAsSelector(m.Webhooks[0].NamespaceSelector)
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range []struct {
					labels map[string]string
					want   bool
				}{
					{map[string]string{"kubernetes.io/metadata.name": "shop", "tier": "prod"}, true},
					{map[string]string{"kubernetes.io/metadata.name": "shop", "tier": "prod", "env": "dev"}, false},
					{map[string]string{"kubernetes.io/metadata.name": "shop"}, false},
					{map[string]string{"kubernetes.io/metadata.name": "kube-system", "tier": "prod"}, false},
					{map[string]string{"kubernetes.io/metadata.name": "shop", "tier": "prod", "strictgate.dev/enforce": "disabled"}, false},
				} {
					ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: c.labels["kubernetes.io/metadata.name"], Labels: c.labels}}
					if got := sel.Matches(labels.Set(c.labels)); got != c.want {
						t.Errorf("pod webhook selector %v on %v = %v, want %v", sel, c.labels, got, c.want)
					}
					if got := wcfg.Scope().Enforced(ns); got != c.want {
						t.Errorf("webhook scope on %v = %v, want %v (the configuration must agree with the handler)", c.labels, got, c.want)
					}
				}
			},
		},
		{
			name: "gate guard warn only, no RBAC", release: "strictgate",
			values: map[string]any{"gateGuard": map[string]any{"validationActions": []any{"Warn", "Audit"}}, "rbac": map[string]any{"create": false}},
			check: func(t *testing.T, r *rendered) {
				for _, kind := range []string{"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"} {
					if n := len(r.byKind(kind)); n != 0 {
						t.Errorf("rbac.create=false still renders %d %s", n, kind)
					}
				}
				b := one[admissionregistrationv1.ValidatingAdmissionPolicyBinding](r, "ValidatingAdmissionPolicyBinding", "")
				if !slices.Equal(b.Spec.ValidationActions, []admissionregistrationv1.ValidationAction{"Warn", "Audit"}) {
					t.Errorf("validationActions %v", b.Spec.ValidationActions)
				}
			},
		},
		{
			name: "gate guard off, ignore failures, one replica", release: "strictgate",
			values: map[string]any{
				"gateGuard": map[string]any{"enabled": false},
				// One replica: no PDB even though it is enabled (it would block drains).
				"webhook": map[string]any{"replicas": 1,
					"admission": map[string]any{"pods": map[string]any{"failurePolicy": "Ignore", "objectSelector": map[string]any{"matchLabels": map[string]any{"gated": "yes"}}}}},
			},
			check: func(t *testing.T, r *rendered) {
				for _, kind := range []string{"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "PodDisruptionBudget"} {
					if n := len(r.byKind(kind)); n != 0 {
						t.Errorf("%s rendered although disabled", kind)
					}
				}
				m := one[admissionregistrationv1.MutatingWebhookConfiguration](r, "MutatingWebhookConfiguration", "")
				if *m.Webhooks[0].FailurePolicy != admissionregistrationv1.Ignore || m.Webhooks[0].ObjectSelector.MatchLabels["gated"] != "yes" {
					t.Errorf("pod webhook %+v", m.Webhooks[0])
				}
			},
		},
		{
			name: "custom hygiene rules", release: "strictgate",
			values: map[string]any{"webhook": map[string]any{"hygiene": map[string]any{
				"defaultAction": "warn",
				"actions":       map[string]any{"SG007": "deny", "SG009": "dryrun"},
				"customRules":   map[string]any{"team.rego": "package x\n", "team_test.rego": "package x_test\n"},
			}}},
			check: func(t *testing.T, r *rendered) {
				cm := one[corev1.ConfigMap](r, "ConfigMap", "strictgate-hygiene-rules")
				if cm.Data["team.rego"] != "package x\n" || len(cm.Data) != 2 {
					t.Errorf("rules ConfigMap data %v", cm.Data)
				}
				d := one[appsv1.Deployment](r, "Deployment", "")
				args := d.Spec.Template.Spec.Containers[0].Args
				for _, want := range []string{"--hygiene-default-action=warn", "--hygiene-action=SG007=deny", "--hygiene-action=SG009=dryrun", "--hygiene-rules-dir=/etc/strictgate/hygiene"} {
					if !slices.Contains(args, want) {
						t.Errorf("webhook args %v lack %s", args, want)
					}
				}
				mounted := false
				for _, v := range d.Spec.Template.Spec.Volumes {
					mounted = mounted || (v.ConfigMap != nil && v.ConfigMap.Name == cm.Name)
				}
				for _, m := range d.Spec.Template.Spec.Containers[0].VolumeMounts {
					if m.SubPath != "" {
						t.Errorf("mount %s uses subPath: ConfigMap updates would never arrive", m.Name)
					}
				}
				if !mounted {
					t.Error("rules ConfigMap is not mounted")
				}
			},
		},
		{
			name: "monitoring", release: "strictgate",
			values: map[string]any{"metrics": map[string]any{
				"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "prom"}},
				"prometheusRule": map[string]any{"enabled": true},
			}},
			check: func(t *testing.T, r *rendered) {
				if n := len(r.byKind("ServiceMonitor")); n != 2 {
					t.Errorf("want ServiceMonitors for webhook and agent, got %d", n)
				}
				for _, sm := range r.byKind("ServiceMonitor") {
					if sm.GetLabels()["release"] != "prom" {
						t.Errorf("ServiceMonitor %s lacks the extra label", sm.GetName())
					}
					sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
					matched := 0
					for _, svc := range r.byKind("Service") {
						if labelsMatch(sel, svc.GetLabels()) {
							matched++
						}
					}
					if matched != 1 {
						t.Errorf("ServiceMonitor %s selects %d Services, want exactly its metrics Service", sm.GetName(), matched)
					}
				}
				pr := one[unstructured.Unstructured](r, "PrometheusRule", "")
				groups, _, _ := unstructured.NestedSlice(pr.Object, "spec", "groups")
				rules := groups[0].(map[string]any)["rules"].([]any)
				expr := rules[0].(map[string]any)["expr"]
				if expr != "sum(rate(network_policy_drop_count_total[1m])) > 0" {
					t.Errorf("alert expr %q, want the seed's", expr)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, tc.release, tc.values)
			tc.check(t, r)
			assertNames(t, r)
		})
	}
}

func (r *rendered) named(kind, name string) *unstructured.Unstructured {
	r.t.Helper()
	for _, o := range r.byKind(kind) {
		if o.GetName() == name {
			return o
		}
	}
	r.t.Fatalf("no %s %s (kinds %v)", kind, name, r.kinds())
	return nil
}

func labelsMatch(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}

// assertNames: every name and label value fits Kubernetes' limits (63 for Service
// names, label values, and what we promise for everything else).
func assertNames(t *testing.T, r *rendered) {
	t.Helper()
	for _, o := range r.objs {
		name := o.GetName()
		if len(name) > 63 {
			t.Errorf("%s name %q is %d characters, want <= 63", o.GetKind(), name, len(name))
		}
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			t.Errorf("%s name %q: %v", o.GetKind(), name, errs)
		}
		if o.GetKind() == "Service" {
			if errs := validation.IsDNS1035Label(name); len(errs) > 0 {
				t.Errorf("Service name %q: %v", name, errs)
			}
		}
		for k, v := range o.GetLabels() {
			if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
				t.Errorf("%s %s label %s=%q: %v", o.GetKind(), name, k, v, errs)
			}
		}
	}
}

func onlyContainer(t *testing.T, cs []corev1.Container) corev1.Container {
	t.Helper()
	if len(cs) != 1 {
		t.Fatalf("want one container, got %d", len(cs))
	}
	return cs[0]
}

// scopeArgs returns the --namespace and --exclude-namespace arguments, in order.
func scopeArgs(args []string) []string {
	var out []string
	for _, a := range args {
		if strings.HasPrefix(a, "--namespace=") || strings.HasPrefix(a, "--exclude-namespace=") ||
			strings.HasPrefix(a, "--namespace-selector=") || strings.HasPrefix(a, "--default-deny=") {
			out = append(out, a)
		}
	}
	return out
}

func argMap(args []string) map[string]string {
	m := map[string]string{}
	for _, a := range args {
		if k, v, ok := strings.Cut(a, "="); ok {
			m[k] = v
		}
	}
	return m
}

func assertRestricted(t *testing.T, spec corev1.PodSpec, c corev1.Container) {
	t.Helper()
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v, want runAsNonRoot and RuntimeDefault seccomp", psc)
	}
	sc := c.SecurityContext
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
		t.Errorf("container securityContext %+v, want the restricted profile", sc)
	}
}

func assertRules(t *testing.T, rules []admissionregistrationv1.RuleWithOperations, group, resource string, ops ...admissionregistrationv1.OperationType) {
	t.Helper()
	if len(rules) != 1 {
		t.Fatalf("want one rule, got %+v", rules)
	}
	r := rules[0]
	if !slices.Equal(r.APIGroups, []string{group}) || !slices.Equal(r.Resources, []string{resource}) ||
		!slices.Equal(slices.Sorted(slices.Values(r.Operations)), slices.Sorted(slices.Values(ops))) {
		t.Errorf("rule %+v, want group %q resource %q operations %v", r, group, resource, ops)
	}
}

func assertExcludes(t *testing.T, sel *metav1.LabelSelector, namespaces ...string) {
	t.Helper()
	if sel == nil {
		t.Fatal("no namespaceSelector")
	}
	var names, optOut []string
	for _, e := range sel.MatchExpressions {
		if e.Operator != metav1.LabelSelectorOpNotIn {
			continue
		}
		switch e.Key {
		case "kubernetes.io/metadata.name":
			names = e.Values
		case "strictgate.dev/enforce":
			optOut = e.Values
		}
	}
	for _, ns := range namespaces {
		if !slices.Contains(names, ns) {
			t.Errorf("namespaceSelector %+v does not exclude %s", sel, ns)
		}
	}
	if !slices.Equal(optOut, []string{"disabled"}) {
		t.Errorf("namespaceSelector %+v does not exclude namespaces labelled strictgate.dev/enforce=disabled", sel)
	}
}

// assertRBAC compares rules as a set of "group/resource verb" grants: no more, no less.
func assertRBAC(t *testing.T, rules []rbacv1.PolicyRule, want []string) {
	t.Helper()
	got := map[string]bool{}
	for _, r := range rules {
		if len(r.NonResourceURLs) > 0 {
			t.Errorf("unexpected rule shape %+v", r)
		}
		names := ""
		if len(r.ResourceNames) > 0 {
			names = " " + strings.Join(r.ResourceNames, ",")
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					if g == "*" || res == "*" || v == "*" {
						t.Errorf("wildcard in %+v", r)
					}
					got[g+"/"+res+" "+v+names] = true
				}
			}
		}
	}
	wantSet := map[string]bool{}
	for _, w := range want {
		wantSet[w] = true
	}
	if !maps.Equal(got, wantSet) {
		var extra, missing []string
		for g := range got {
			if !wantSet[g] {
				extra = append(extra, g)
			}
		}
		for w := range wantSet {
			if !got[w] {
				missing = append(missing, w)
			}
		}
		slices.Sort(extra)
		slices.Sort(missing)
		t.Errorf("RBAC grants differ: extra %v, missing %v", extra, missing)
	}
}

type namedClientConfig struct {
	name string
	cfg  admissionregistrationv1.WebhookClientConfig
}

func webhookClientConfigs(r *rendered) []namedClientConfig {
	var out []namedClientConfig
	for _, m := range r.byKind("MutatingWebhookConfiguration") {
		mw := one[admissionregistrationv1.MutatingWebhookConfiguration](r, "MutatingWebhookConfiguration", m.GetName())
		for _, w := range mw.Webhooks {
			out = append(out, namedClientConfig{w.Name, w.ClientConfig})
		}
	}
	for _, v := range r.byKind("ValidatingWebhookConfiguration") {
		vw := one[admissionregistrationv1.ValidatingWebhookConfiguration](r, "ValidatingWebhookConfiguration", v.GetName())
		for _, w := range vw.Webhooks {
			out = append(out, namedClientConfig{w.Name, w.ClientConfig})
		}
	}
	if len(out) == 0 {
		r.t.Fatal("no webhooks rendered")
	}
	return out
}

func decodeCert(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	if raw, err := base64.StdEncoding.DecodeString(string(data)); err == nil && strings.HasPrefix(string(raw), "-----BEGIN") {
		data = raw
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("not a PEM certificate: %.40q", data)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	return c
}
