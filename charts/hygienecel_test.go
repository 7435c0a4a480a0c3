package charts

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/open-policy-agent/opa/v1/ast"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/strictgate/strictgate/test/controlplane"
	"github.com/strictgate/strictgate/webhook"
	"github.com/strictgate/strictgate/webhook/hygiene"
)

// celPhase is one set of chart values under which the CEL policies and the Rego
// built-ins must decide the same.
type celPhase struct {
	name          string
	defaultAction hygiene.Action
	actions       hygiene.Actions
	maxPortRange  int
}

// TestHygieneCELMatchesRego is the differential test of files/hygiene-cel.yaml: a corpus
// of NetworkPolicies and ClusterNetworkPolicies (hand-written edge cases and seeded
// random ones) is submitted to a real kube-apiserver, with the chart's CRD, on which only
// the chart's hygiene ValidatingAdmissionPolicies are installed (no webhook runs), under
// several action settings. For every object the
// answer — refused or not, by which rule with which messages, the warnings, and the
// audit annotations of [Audit] bindings — must equal what the Rego built-ins decide for
// the same object (webhook/hygiene in-process, with the webhook's action rules), for
// the rules the chart offers as CEL. The object given to Rego is the one the API server
// stores (defaults applied), read back by a dry-run as strictgate's service account,
// which the policies must let through unjudged, as the webhook does.
func TestHygieneCELMatchesRego(t *testing.T) {
	auditDir := t.TempDir()
	auditLog := filepath.Join(auditDir, "audit.log")
	auditPolicy := filepath.Join(auditDir, "policy.yaml")
	if err := os.WriteFile(auditPolicy, []byte(`apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    resources: [{group: networking.k8s.io, resources: [networkpolicies]}, {group: policy.networking.k8s.io, resources: [clusternetworkpolicies]}]
  - level: None
`), 0o600); err != nil {
		t.Fatal(err)
	}
	// The chart's ClusterNetworkPolicy CRD (crds/), as Helm installs it.
	env := &envtest.Environment{CRDInstallOptions: envtest.CRDInstallOptions{Paths: []string{filepath.Join("strictgate", "crds")}}}
	env.ControlPlane.GetAPIServer().Configure().
		Set("audit-log-path", auditLog).
		Set("audit-policy-file", auditPolicy)
	cfg := controlplane.Start(t, env)
	c := newClients(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	const ns = "shop"
	if _, err := c.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	warnings := &warningRecorder{}
	userCfg := rest.CopyConfig(cfg)
	userCfg.WarningHandlerWithContext = warnings
	user := kubernetes.NewForConfigOrDie(userCfg)
	// strictgate's webhook service account as the chart names it for release
	// "strictgate" in namespace testNamespace; system:masters so RBAC lets it write.
	selfCfg := rest.CopyConfig(cfg)
	selfCfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + testNamespace + ":strictgate-webhook", Groups: []string{"system:masters", "system:authenticated"}}
	self := kubernetes.NewForConfigOrDie(selfCfg)
	selfDyn := dynamic.NewForConfigOrDie(selfCfg)
	userDyn := dynamic.NewForConfigOrDie(userCfg)

	// The stored form of every corpus object; objects the API server refuses as invalid
	// are never judged by admission, so they drop out here.
	var stored []celObject
	invalid := map[string]int{}
	for i, np := range hygieneCorpus(rand.New(rand.NewPCG(15, 2026)), 150) {
		np = np.DeepCopy()
		np.Name = fmt.Sprintf("np-%03d", i)
		out, err := self.NetworkingV1().NetworkPolicies(ns).Create(ctx, np, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		switch {
		case apierrors.IsInvalid(err):
			invalid["NetworkPolicy"]++
			continue
		case err != nil:
			t.Fatalf("dry-run %s as strictgate's service account: %v", np.Name, err)
		}
		stored = append(stored, celObject{label: np.Name, np: out})
	}
	nps := len(stored)
	for i, cp := range cnpCorpus(rand.New(rand.NewPCG(15, 2027)), 100) {
		cp.Name = fmt.Sprintf("cnp-%03d", i)
		o, err := runtime.DefaultUnstructuredConverter.ToUnstructured(cp)
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{Object: o}
		u.SetAPIVersion("policy.networking.k8s.io/v1beta1")
		u.SetKind("ClusterNetworkPolicy")
		out, err := selfDyn.Resource(cnpResource).Create(ctx, u, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		switch {
		case apierrors.IsInvalid(err):
			invalid["ClusterNetworkPolicy"]++
			continue
		case err != nil:
			t.Fatalf("dry-run %s as strictgate's service account: %v", cp.Name, err)
		}
		stored = append(stored, celObject{label: cp.Name, cnp: out})
	}
	if nps < 150 || len(stored)-nps < 75 {
		t.Fatalf("only %d NetworkPolicies and %d ClusterNetworkPolicies of the corpus are valid: the generators test too little", nps, len(stored)-nps)
	}
	t.Logf("corpus: %d NetworkPolicies, %d ClusterNetworkPolicies valid; refused by API validation: %v", nps, len(stored)-nps, invalid)

	phases := []celPhase{
		{name: "defaults", defaultAction: hygiene.Deny},
		{name: "warn", defaultAction: hygiene.Warn, maxPortRange: 100},
		{name: "mixed", defaultAction: hygiene.DryRun, actions: hygiene.Actions{"SG001": hygiene.Warn, "SG002-any-cidr": hygiene.Deny, "SG005": hygiene.Deny, "SG013": hygiene.Warn}},
	}
	counts := map[string]int{}
	var installed, celIDs []string
	for pi, ph := range phases {
		t.Run(ph.name, func(t *testing.T) {
			values := map[string]any{"cel": map[string]any{"enabled": true}, "defaultAction": string(ph.defaultAction)}
			if ph.maxPortRange > 0 {
				values["maxPortRange"] = ph.maxPortRange
			}
			if ph.actions != nil {
				acts := map[string]any{}
				for k, v := range ph.actions {
					acts[k] = string(v)
				}
				values["actions"] = acts
			}
			r := render(t, "strictgate", map[string]any{"webhook": map[string]any{"hygiene": values}})
			ids := installCELPolicies(ctx, t, c, r, &installed)
			celIDs = ids.ruleIDs()
			engine, err := hygiene.New(ctx, hygiene.Options{DefaultAction: ph.defaultAction, Actions: ph.actions, Log: testr.New(t)})
			if err != nil {
				t.Fatal(err)
			}
			inputs := hygiene.NewInputBuilder(hygiene.Settings{MaxPortRange: ph.maxPortRange})
			// expect is Rego's verdict on o submitted as name (CNP messages name the policy).
			expect := func(o celObject, name string) celVerdict {
				var in ast.Value
				var err error
				if o.np != nil {
					np := o.np.DeepCopy()
					np.Name = name
					in, err = inputs.Build(ctx, &hygiene.Review{Operation: "CREATE", Namespace: ns, Name: name, Object: np}, nil)
				} else {
					u := o.cnp.DeepCopy()
					u.SetName(name)
					raw, merr := u.MarshalJSON()
					if merr != nil {
						t.Fatal(merr)
					}
					in, err = webhook.ClusterNetworkPolicyHygieneInput(admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
						UID: "differential", Operation: admissionv1.Create, Name: name,
						Kind: metav1.GroupVersionKind{Group: "policy.networking.k8s.io", Version: "v1beta1", Kind: "ClusterNetworkPolicy"}, Object: runtime.RawExtension{Raw: raw},
					}})
				}
				if err != nil {
					t.Fatal(err)
				}
				fs, err := engine.Evaluate(ctx, in)
				if err != nil {
					t.Fatal(err)
				}
				v := celVerdict{}
				for _, f := range fs {
					if slices.Contains(celIDs, f.ID) {
						v.add(f.Action, f.ID, f.Message)
					}
				}
				return v
			}
			submit := func(o celObject, name string) (celVerdict, error) {
				warnings.take()
				var err error
				if o.np != nil {
					np := o.np.DeepCopy()
					np.Name, np.ResourceVersion, np.UID, np.CreationTimestamp, np.ManagedFields = name, "", "", metav1.Time{}, nil
					_, err = user.NetworkingV1().NetworkPolicies(ns).Create(ctx, np, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
				} else {
					u := o.cnp.DeepCopy()
					u.SetName(name)
					u.SetResourceVersion("")
					u.SetUID("")
					u.SetCreationTimestamp(metav1.Time{})
					u.SetManagedFields(nil)
					_, err = userDyn.Resource(cnpResource).Create(ctx, u, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
				}
				return ids.parse(err, warnings.take())
			}

			// The API server loads policies and bindings asynchronously: wait until the
			// two sentinels (NetworkPolicy and ClusterNetworkPolicy), which between them
			// break every rule, are judged as Rego judges them.
			sentinels := []celObject{stored[0], stored[nps]}
			var broken []string
			for _, o := range sentinels {
				broken = append(broken, expect(o, "sentinel").all()...)
			}
			sort.Strings(broken)
			if !slices.Equal(broken, celIDs) {
				t.Fatalf("sentinels break %v, want every CEL rule %v", broken, celIDs)
			}
			for si, o := range sentinels {
				deadline := time.Now().Add(30 * time.Second)
				for {
					name := fmt.Sprintf("sentinel-%d-%d", pi, si)
					got, err := submit(o, name)
					want := expect(o, name)
					if err == nil && got.matches(want) {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("policies not in force within 30s: sentinel %s got %+v (%v), want %+v", o.label, got, err, want)
					}
					time.Sleep(200 * time.Millisecond)
				}
			}

			// strictgate's own service account is not judged (its default-deny
			// controller must always be able to write), as in the webhook.
			for si, o := range sentinels {
				name := fmt.Sprintf("self-%d-%d", pi, si)
				warnings.take()
				var err error
				if o.np != nil {
					np := o.np.DeepCopy()
					np.Name, np.ResourceVersion, np.UID, np.CreationTimestamp, np.ManagedFields = name, "", "", metav1.Time{}, nil
					_, err = self.NetworkingV1().NetworkPolicies(ns).Create(ctx, np, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
				} else {
					u := o.cnp.DeepCopy()
					u.SetName(name)
					u.SetResourceVersion("")
					u.SetUID("")
					u.SetManagedFields(nil)
					_, err = selfDyn.Resource(cnpResource).Create(ctx, u, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
				}
				if err != nil {
					t.Errorf("strictgate's service account refused for sentinel %s: %v", o.label, err)
				}
			}
			if pi == 0 {
				checkUpdateAndDeletion(ctx, t, self, user, ns, stored[0].np, ids)
			}

			wantAudit := map[string]findingSet{}
			for i, o := range stored {
				name := fmt.Sprintf("p%d-%03d", pi, i)
				want := expect(o, name)
				got, err := submit(o, name)
				if err != nil {
					t.Fatalf("%s (%s): %v", name, o.label, err)
				}
				if !got.matches(want) {
					t.Errorf("%s: CEL and Rego disagree\n object: %s\n CEL  deny %v warn %v\n Rego deny %v warn %v",
						o.label, o.specJSON(), got.deny, got.warn, want.deny, want.warn)
				}
				wantAudit[name] = want.dryrun
				for _, id := range want.all() {
					counts[id]++
				}
			}
			// [Audit] bindings leave their findings in the audit log only.
			gotAudit := readAuditFailures(t, auditLog, fmt.Sprintf("p%d-", pi), len(stored), ids)
			for name, want := range wantAudit {
				if got := gotAudit[name]; !got.equal(want) {
					t.Errorf("%s: audit annotations %v, Rego dryrun findings %v", name, got, want)
				}
			}
		})
	}
	// With the policies in force the webhook skips exactly these rules (the chart passes
	// them as --hygiene-cel-rules): the NetworkPolicy sentinel then has no finding of them.
	skipping, err := hygiene.New(ctx, hygiene.Options{JudgedByAPIServer: celIDs, Log: testr.New(t)})
	if err != nil {
		t.Fatalf("the chart's CEL rules %v are not all built-in rules: %v", celIDs, err)
	}
	in, err := hygiene.NewInputBuilder(hygiene.Settings{}).Build(ctx, &hygiene.Review{Operation: "CREATE", Namespace: ns, Name: "s", Object: stored[0].np}, nil)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := skipping.Evaluate(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if slices.Contains(celIDs, f.ID) {
			t.Errorf("webhook skipping the CEL rules still found %s", f.ID)
		}
	}
	// Every rule must have been exercised, or the comparison proves little for it.
	for _, id := range celIDs {
		if counts[id] < 3*len(phases) {
			t.Errorf("rule %s found only %d times in the corpus over %d phases: add cases", id, counts[id], len(phases))
		}
	}
	t.Logf("findings per rule over all phases: %v", counts)
}

// checkUpdateAndDeletion: an UPDATE is judged like a CREATE, but once a policy is being
// deleted its finalizer removals go through (the webhook's rule too), so a bad policy can
// always be deleted. bad breaks deny rules; self stored it (unjudged).
func checkUpdateAndDeletion(ctx context.Context, t *testing.T, self, user kubernetes.Interface, ns string, bad *networkingv1.NetworkPolicy, ids celPolicies) {
	t.Helper()
	np := bad.DeepCopy()
	np.Name, np.ResourceVersion, np.UID, np.CreationTimestamp, np.ManagedFields = "finalized", "", "", metav1.Time{}, nil
	np.Finalizers = []string{"example.com/hold"}
	created, err := self.NetworkingV1().NetworkPolicies(ns).Create(ctx, np, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create as strictgate's service account: %v", err)
	}
	created.Labels = map[string]string{"touched": "yes"}
	_, err = user.NetworkingV1().NetworkPolicies(ns).Update(ctx, created, metav1.UpdateOptions{})
	if v, perr := ids.parse(err, nil); perr != nil || len(v.deny) != 1 {
		t.Fatalf("UPDATE of a bad policy: %v (parsed %+v, %v), want refused by a hygiene policy", err, v, perr)
	}
	if err := user.NetworkingV1().NetworkPolicies(ns).Delete(ctx, created.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("DELETE of a bad policy refused: %v", err)
	}
	deleting, err := user.NetworkingV1().NetworkPolicies(ns).Get(ctx, created.Name, metav1.GetOptions{})
	if err != nil || deleting.DeletionTimestamp == nil {
		t.Fatalf("policy with a finalizer not terminating after DELETE: %v", err)
	}
	deleting.Finalizers = nil
	if _, err := user.NetworkingV1().NetworkPolicies(ns).Update(ctx, deleting, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("finalizer removal of a policy being deleted refused: %v", err)
	}
}

var cnpResource = schema.GroupVersionResource{Group: "policy.networking.k8s.io", Version: "v1beta1", Resource: "clusternetworkpolicies"}

// celObject is one corpus object as the API server stores it: a NetworkPolicy or a
// ClusterNetworkPolicy.
type celObject struct {
	label string
	np    *networkingv1.NetworkPolicy
	cnp   *unstructured.Unstructured
}

func (o celObject) specJSON() string {
	if o.np != nil {
		return specJSON(o.np)
	}
	b, _ := json.Marshal(o.cnp.Object["spec"])
	return string(b)
}

// findingSet maps rule id to its sorted messages. In a set read from the API server,
// moreFindings stands for each finding the message only counted ("; and N more").
type findingSet map[string][]string

const moreFindings = "\x00more"

// equal compares an API server's set s with Rego's o: the same rules, and for each the
// same messages, except that counted ones match any message s does not list.
func (s findingSet) equal(o findingSet) bool {
	if len(s) != len(o) {
		return false
	}
	for id, msgs := range s {
		want := o[id]
		if len(msgs) != len(want) {
			return false
		}
		for _, m := range msgs {
			if m != moreFindings && !slices.Contains(want, m) {
				return false
			}
		}
	}
	return true
}

type celVerdict struct {
	deny, warn, dryrun findingSet
}

// matches compares the API server's verdict v with Rego's want. The API server reports
// only the first policy that denies, so v.deny holds one of want's deny rules.
func (v celVerdict) matches(want celVerdict) bool {
	if len(want.deny) == 0 {
		if len(v.deny) != 0 {
			return false
		}
	} else {
		if len(v.deny) != 1 {
			return false
		}
		for id := range v.deny {
			if !v.deny.equal(findingSet{id: want.deny[id]}) {
				return false
			}
		}
	}
	return v.warn.equal(want.warn)
}

func (v *celVerdict) add(a hygiene.Action, id, msg string) {
	set := map[hygiene.Action]*findingSet{hygiene.Deny: &v.deny, hygiene.Warn: &v.warn, hygiene.DryRun: &v.dryrun}[a]
	if *set == nil {
		*set = findingSet{}
	}
	(*set)[id] = append((*set)[id], msg)
	sort.Strings((*set)[id])
}

func (v celVerdict) all() []string {
	var ids []string
	for _, s := range []findingSet{v.deny, v.warn, v.dryrun} {
		for id := range s {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// celPolicies knows the installed policies: name → rule id.
type celPolicies struct {
	byPolicy map[string]string
}

func (p celPolicies) ruleIDs() []string {
	var ids []string
	for _, id := range p.byPolicy {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

var (
	deniedRE = regexp.MustCompile(`^ValidatingAdmissionPolicy '([^']+)' with binding '[^']+' denied request: (.*)$`)
	moreRE   = regexp.MustCompile(`; and (\d+) more$`)
	warnRE   = regexp.MustCompile(`^Validation failed for ValidatingAdmissionPolicy '([^']+)' with binding '[^']+': (.*)$`)
)

// split undoes the policies' messageExpression: the findings of rule id joined by
// "; " (every message starts with "<id>: "), at most 10 and then "; and N more".
func split(id, joined string) []string {
	more := 0
	if m := moreRE.FindStringSubmatch(joined); m != nil {
		joined = strings.TrimSuffix(joined, m[0])
		more, _ = strconv.Atoi(m[1])
	}
	var out []string
	for i, m := range strings.Split(joined, "; "+id+": ") {
		if i > 0 {
			m = id + ": " + m
		}
		out = append(out, m)
	}
	for range more {
		out = append(out, moreFindings)
	}
	sort.Strings(out)
	return out
}

// parse reads the API server's answer: the denial (only the first denying policy is
// reported, so deny holds one rule) and the warnings.
func (p celPolicies) parse(err error, warns []string) (celVerdict, error) {
	v := celVerdict{}
	if err != nil {
		if !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
			return v, err
		}
		var msg string
		if se, ok := err.(apierrors.APIStatus); ok {
			msg = se.Status().Message
		}
		// The message is "networkpolicies.networking.k8s.io \"x\" is forbidden: ValidatingAdmissionPolicy ..."
		if _, rest, ok := strings.Cut(msg, "is forbidden: "); ok {
			msg = rest
		}
		m := deniedRE.FindStringSubmatch(msg)
		if m == nil || p.byPolicy[m[1]] == "" {
			return v, fmt.Errorf("refused, but not by a hygiene policy: %w", err)
		}
		v.deny = findingSet{p.byPolicy[m[1]]: split(p.byPolicy[m[1]], m[2])}
	}
	for _, w := range warns {
		m := warnRE.FindStringSubmatch(w)
		if m == nil || p.byPolicy[m[1]] == "" {
			return v, fmt.Errorf("warning not from a hygiene policy: %q", w)
		}
		if v.warn == nil {
			v.warn = findingSet{}
		}
		v.warn[p.byPolicy[m[1]]] = split(p.byPolicy[m[1]], m[2])
	}
	return v, nil
}

// installCELPolicies replaces the hygiene policies and bindings installed before with
// r's and returns what they are.
func installCELPolicies(ctx context.Context, t *testing.T, c apiClients, r *rendered, installed *[]string) celPolicies {
	t.Helper()
	ar := c.kube.AdmissionregistrationV1()
	for _, name := range *installed {
		if err := ar.ValidatingAdmissionPolicyBindings().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		if err := ar.ValidatingAdmissionPolicies().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	}
	*installed = nil
	p := celPolicies{byPolicy: map[string]string{}}
	for _, kind := range []string{"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} {
		var objs []*unstructured.Unstructured
		for _, o := range r.byKind(kind) {
			if o.GetLabels()["app.kubernetes.io/component"] == "hygiene-cel" {
				objs = append(objs, o)
			}
		}
		if len(objs) == 0 {
			t.Fatalf("chart rendered no %s with webhook.hygiene.cel.enabled", kind)
		}
		for _, o := range objs {
			ri, err := c.resource(o)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ri.Create(ctx, o, metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict}); err != nil {
				t.Fatalf("create %s %s: %v", kind, o.GetName(), err)
			}
			if kind == "ValidatingAdmissionPolicy" {
				p.byPolicy[o.GetName()] = o.GetAnnotations()["strictgate.dev/rule-id"]
				*installed = append(*installed, o.GetName())
			}
		}
	}
	// The API server compiles every expression at creation (a compile error refused
	// the create above); type-checking warnings come from kube-controller-manager,
	// which envtest does not run, so evaluation errors show as sentinel failures.
	return p
}

// readAuditFailures waits until the audit log has the ResponseComplete events of n
// requests for objects named prefix*, and returns their validation failures by name.
func readAuditFailures(t *testing.T, path, prefix string, n int, p celPolicies) map[string]findingSet {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := map[string]findingSet{}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var ev struct {
				Stage       string                `json:"stage"`
				ObjectRef   struct{ Name string } `json:"objectRef"`
				Annotations map[string]string     `json:"annotations"`
			}
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Fatalf("audit log line: %v", err)
			}
			if ev.Stage != "ResponseComplete" || !strings.HasPrefix(ev.ObjectRef.Name, prefix) {
				continue
			}
			set := findingSet{}
			if raw := ev.Annotations["validation.policy.admission.k8s.io/validation_failure"]; raw != "" {
				var fails []struct {
					Message string `json:"message"`
					Policy  string `json:"policy"`
				}
				if err := json.Unmarshal([]byte(raw), &fails); err != nil {
					t.Fatalf("audit annotation %q: %v", raw, err)
				}
				for _, fl := range fails {
					id := p.byPolicy[fl.Policy]
					if id == "" {
						t.Fatalf("audit failure from an unknown policy %s", fl.Policy)
					}
					set[id] = split(id, fl.Message)
				}
			}
			if len(set) == 0 {
				set = nil
			}
			out[ev.ObjectRef.Name] = set
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		if len(out) >= n {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit log has %d of %d events for %s*", len(out), n, prefix)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func specJSON(np *networkingv1.NetworkPolicy) string {
	b, _ := json.Marshal(struct {
		Annotations map[string]string              `json:"annotations,omitempty"`
		Spec        networkingv1.NetworkPolicySpec `json:"spec"`
	}{np.Annotations, np.Spec})
	return string(b)
}

// hygieneCorpus is the hand-written edge cases, the first of which breaks every CEL
// rule (the sentinel), followed by n random policies from rnd.
func hygieneCorpus(rnd *rand.Rand, n int) []*networkingv1.NetworkPolicy {
	port := func(p intstr.IntOrString) *intstr.IntOrString { return &p }
	num := func(n int) *intstr.IntOrString { return port(intstr.FromInt32(int32(n))) }
	named := func(s string) *intstr.IntOrString { return port(intstr.FromString(s)) }
	end := func(n int32) *int32 { return &n }
	proto := func(p corev1.Protocol) *corev1.Protocol { return &p }
	block := func(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
		return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
	}
	allNS := networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{}}
	sel := func(kv ...string) *metav1.LabelSelector {
		s := &metav1.LabelSelector{MatchLabels: map[string]string{}}
		for i := 0; i+1 < len(kv); i += 2 {
			s.MatchLabels[kv[i]] = kv[i+1]
		}
		return s
	}
	pol := func(annotations map[string]string, types []networkingv1.PolicyType, in []networkingv1.NetworkPolicyIngressRule, eg []networkingv1.NetworkPolicyEgressRule) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Annotations: annotations},
			Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: types, Ingress: in, Egress: eg},
		}
	}
	ingress := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	egress := []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	both := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	type in = networkingv1.NetworkPolicyIngressRule
	type eg = networkingv1.NetworkPolicyEgressRule
	type pp = networkingv1.NetworkPolicyPort
	type peers = []networkingv1.NetworkPolicyPeer
	exempt := map[string]string{"strictgate.dev/allow-open-rule": "public health checks"}

	out := []*networkingv1.NetworkPolicy{
		// The sentinel: SG001 (egress[0]), SG002 + SG004 (egress[1]), SG003 (egress[2]),
		// SG005 (ingress rules under Egress only), SG006 (2001 ports).
		pol(nil, egress,
			[]in{{From: peers{{PodSelector: sel("app", "a")}}}},
			[]eg{{}, {To: peers{block("0.0.0.0/0")}}, {To: peers{allNS}, Ports: []pp{{Port: num(1000), EndPort: end(3000)}}}}),
		// SG001
		pol(nil, ingress, []in{{}}, nil),
		pol(nil, ingress, []in{{Ports: []pp{{Port: num(80)}}}}, nil),
		pol(exempt, both, []in{{}}, []eg{{}}),
		pol(map[string]string{"strictgate.dev/allow-open-rule": " \t "}, ingress, []in{{}}, nil),
		pol(map[string]string{"strictgate.dev/allow-open-rule": ""}, ingress, []in{{}}, nil),
		pol(map[string]string{"strictgate.dev/allow-open-rule": "\u00a0"}, ingress, []in{{}}, nil),
		pol(map[string]string{"strictgate.dev/allow-open-rule": "x"}, ingress, []in{{}}, nil),
		pol(nil, ingress, []in{{From: peers{}}}, nil),
		pol(nil, both, []in{{}, {}, {From: peers{{PodSelector: sel()}}}}, []eg{{Ports: []pp{{Port: num(53), Protocol: proto(corev1.ProtocolUDP)}}}}),
		// SG002
		pol(nil, egress, nil, []eg{{To: peers{block("::/0")}}}),
		pol(nil, ingress, []in{{From: peers{block("0.0.0.0/0", "10.0.0.0/8")}}}, nil),
		pol(nil, ingress, []in{{From: peers{block("0.0.0.0/0"), block("::/0"), block("10.0.0.0/8")}}}, nil),
		pol(nil, egress, nil, []eg{{To: peers{block("0.0.0.0/1")}}}),
		// SG003
		pol(nil, ingress, []in{{From: peers{allNS}}}, nil),
		pol(nil, ingress, []in{{From: peers{{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: &metav1.LabelSelector{}}}}}, nil),
		pol(nil, ingress, []in{{From: peers{{NamespaceSelector: sel("team", "a")}}}}, nil),
		pol(nil, ingress, []in{{From: peers{{NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: metav1.LabelSelectorOpExists}}}}}}}, nil),
		pol(nil, both, []in{{From: peers{allNS, allNS}}}, []eg{{To: peers{allNS}}}),
		// SG004
		pol(nil, egress, nil, []eg{{To: peers{block("169.254.169.254/32")}}}),
		pol(nil, egress, nil, []eg{{To: peers{block("169.254.0.0/16", "169.254.169.254/32")}}}),
		pol(nil, egress, nil, []eg{{To: peers{block("169.254.0.0/16", "169.254.169.0/24")}}}),
		pol(nil, egress, nil, []eg{{To: peers{block("169.254.0.0/16", "169.254.168.0/24")}}}),
		pol(nil, egress, nil, []eg{{To: peers{block("fd00::/8")}}}),
		pol(nil, egress, nil, []eg{{To: peers{block("fd00:ec2::254/128")}}}),
		pol(nil, egress, nil, []eg{{To: peers{block("::/0", "fd00:ec2::/32")}}}),
		pol(nil, egress, nil, []eg{{To: peers{block("0.0.0.0/0", "169.254.169.254/32"), block("::/0", "fd00:ec2::254/128")}}}),
		pol(nil, ingress, []in{{From: peers{block("169.254.169.254/32")}}}, nil),
		pol(nil, egress, nil, []eg{{Ports: []pp{{Port: num(80)}}}}),
		pol(nil, egress, nil, []eg{{Ports: []pp{{Port: num(443)}}}}),
		pol(nil, egress, nil, []eg{{Ports: []pp{{Port: num(80), Protocol: proto(corev1.ProtocolUDP)}}}}),
		pol(nil, egress, nil, []eg{{Ports: []pp{{Port: num(1), EndPort: end(80)}}}}),
		pol(nil, egress, nil, []eg{{Ports: []pp{{Port: num(80), EndPort: end(81)}}}}),
		pol(nil, egress, nil, []eg{{Ports: []pp{{Port: num(81), EndPort: end(1000)}}}}),
		pol(nil, egress, nil, []eg{{Ports: []pp{{Port: named("http")}}}}),
		pol(nil, egress, nil, []eg{{Ports: []pp{{Protocol: proto(corev1.ProtocolTCP)}}}}),
		pol(nil, egress, nil, []eg{{Ports: []pp{{Protocol: proto(corev1.ProtocolSCTP)}}}}),
		pol(nil, egress, nil, []eg{{Ports: []pp{{Port: num(53), Protocol: proto(corev1.ProtocolUDP)}, {Port: num(53)}}}}),
		pol(exempt, egress, nil, []eg{{}}),
		// SG005 (policyTypes absent: the API server infers them, so never a finding)
		pol(nil, ingress, nil, []eg{{To: peers{{PodSelector: sel()}}}, {To: peers{{PodSelector: sel()}}}}),
		pol(nil, egress, []in{{From: peers{{PodSelector: sel()}}}}, nil),
		pol(nil, nil, []in{{From: peers{{PodSelector: sel()}}}}, []eg{{To: peers{{PodSelector: sel()}}}}),
		pol(nil, both, nil, nil),
		pol(nil, []networkingv1.PolicyType{networkingv1.PolicyTypeEgress, networkingv1.PolicyTypeIngress}, []in{{From: peers{{PodSelector: sel()}}}}, nil),
		// SG006
		pol(nil, ingress, []in{{From: peers{{PodSelector: sel()}}, Ports: []pp{{Port: num(1), EndPort: end(1024)}}}}, nil),
		pol(nil, ingress, []in{{From: peers{{PodSelector: sel()}}, Ports: []pp{{Port: num(1), EndPort: end(1025)}}}}, nil),
		pol(nil, ingress, []in{{From: peers{{PodSelector: sel()}}, Ports: []pp{{Port: num(8000), EndPort: end(8100)}, {Port: num(8000), EndPort: end(8099)}}}}, nil),
		pol(nil, ingress, []in{{From: peers{{PodSelector: sel()}}, Ports: []pp{{Port: num(1), EndPort: end(65535)}}}}, nil),
		pol(nil, ingress, []in{{From: peers{{PodSelector: sel()}}, Ports: []pp{{Port: num(100), EndPort: end(90)}}}}, nil),
		pol(nil, ingress, []in{{From: peers{{PodSelector: sel()}}, Ports: []pp{{EndPort: end(90)}}}}, nil),
		pol(nil, ingress, []in{{From: peers{{PodSelector: sel()}}, Ports: []pp{{Port: named("http"), EndPort: end(90)}}}}, nil),
		// Many findings of one rule: the message lists 10 and counts the rest.
		pol(nil, ingress, []in{{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}}, nil),
		// Clean.
		pol(nil, both, []in{{From: peers{{PodSelector: sel("app", "web")}}, Ports: []pp{{Port: num(8080)}}}},
			[]eg{{To: peers{block("10.0.0.0/8")}, Ports: []pp{{Port: num(5432)}}}}),
	}
	for range n {
		out = append(out, randomHygienePolicy(rnd))
	}
	return out
}

// randomHygienePolicy draws a policy from the features the CEL rules look at, mostly
// valid (the API server refuses the rest before admission).
func randomHygienePolicy(rnd *rand.Rand) *networkingv1.NetworkPolicy {
	pick := func(n int) int { return rnd.IntN(n) }
	cidrs := map[string][]string{
		"0.0.0.0/0":          {"10.0.0.0/8", "169.254.169.254/32", "169.254.0.0/16", "0.0.0.0/1"},
		"::/0":               {"fd00:ec2::254/128", "fd00::/8", "2001:db8::/32"},
		"10.0.0.0/8":         {"10.1.0.0/16"},
		"169.254.0.0/16":     {"169.254.169.254/32", "169.254.169.0/24", "169.254.1.0/24"},
		"169.254.169.254/32": nil,
		"fd00::/8":           {"fd00:ec2::/32", "fd00:1::/32"},
		"fd00:ec2::254/128":  nil,
		"128.0.0.0/1":        {"169.254.0.0/16"},
		"0.0.0.0/1":          {"10.0.0.0/8"},
		"192.168.1.0/24":     {"192.168.1.128/25"},
	}
	keys := make([]string, 0, len(cidrs))
	for k := range cidrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	selector := func() *metav1.LabelSelector {
		switch pick(4) {
		case 0:
			return &metav1.LabelSelector{}
		case 1:
			return &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
		case 2:
			return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: metav1.LabelSelectorOpIn, Values: []string{"prod"}}}}
		}
		return nil
	}
	peer := func() networkingv1.NetworkPolicyPeer {
		if pick(2) == 0 {
			c := keys[pick(len(keys))]
			var except []string
			for _, e := range cidrs[c] {
				if pick(3) == 0 {
					except = append(except, e)
				}
			}
			return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: c, Except: except}}
		}
		p := networkingv1.NetworkPolicyPeer{NamespaceSelector: selector(), PodSelector: selector()}
		if p.NamespaceSelector == nil && p.PodSelector == nil {
			p.PodSelector = &metav1.LabelSelector{}
		}
		return p
	}
	peerList := func() []networkingv1.NetworkPolicyPeer {
		if pick(3) == 0 {
			return nil
		}
		var ps []networkingv1.NetworkPolicyPeer
		for range 1 + pick(3) {
			ps = append(ps, peer())
		}
		return ps
	}
	ports := func() []networkingv1.NetworkPolicyPort {
		var ps []networkingv1.NetworkPolicyPort
		for range pick(4) {
			var p networkingv1.NetworkPolicyPort
			if pick(3) > 0 {
				pr := []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}[pick(3)]
				p.Protocol = &pr
			}
			switch pick(5) {
			case 0: // no port: all ports of the protocol
			case 1:
				v := intstr.FromString([]string{"http", "dns", "metrics"}[pick(3)])
				p.Port = &v
			default:
				n := []int32{1, 53, 79, 80, 81, 443, 8080, 30000}[pick(8)]
				v := intstr.FromInt32(n)
				p.Port = &v
				if pick(2) == 0 {
					e := n + int32([]int{0, 1, 99, 100, 1023, 1024, 2000, 20000}[pick(8)])
					if e > 65535 {
						e = 65535
					}
					p.EndPort = &e
				}
			}
			ps = append(ps, p)
		}
		return ps
	}
	np := &networkingv1.NetworkPolicy{}
	np.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}
	switch pick(5) {
	case 0:
		np.Annotations = map[string]string{"strictgate.dev/allow-open-rule": []string{"", " ", "because", "\t\n"}[pick(4)]}
	case 1:
		np.Annotations = map[string]string{"other": "x"}
	}
	for range pick(4) {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: peerList(), Ports: ports()})
	}
	for range pick(4) {
		np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: peerList(), Ports: ports()})
	}
	switch pick(4) {
	case 0:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	case 1:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	case 2:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	}
	return np
}

// warningRecorder collects the API server's warnings (client-go hands every Warning
// header to it).
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

// TestHygieneCELValues: webhook.hygiene.cel renders one policy and binding per rule of
// files/hygiene-cel.yaml with the release's names, each binding's validationActions
// computed as the webhook computes the rule's action, the release's service account in
// the not-strictgate condition, maxPortRange and failurePolicy from the values, and the
// webhook told to skip exactly those rules (unless skipInWebhook is off). Off by default.
func TestHygieneCELValues(t *testing.T) {
	policies := func(r *rendered) (map[string]*admissionregistrationv1.ValidatingAdmissionPolicy, map[string]*admissionregistrationv1.ValidatingAdmissionPolicyBinding) {
		ps := map[string]*admissionregistrationv1.ValidatingAdmissionPolicy{}
		bs := map[string]*admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
		for _, o := range r.byKind("ValidatingAdmissionPolicy") {
			if o.GetLabels()["app.kubernetes.io/component"] == "hygiene-cel" {
				ps[o.GetName()] = one[admissionregistrationv1.ValidatingAdmissionPolicy](r, "ValidatingAdmissionPolicy", o.GetName())
			}
		}
		for _, o := range r.byKind("ValidatingAdmissionPolicyBinding") {
			if o.GetLabels()["app.kubernetes.io/component"] == "hygiene-cel" {
				bs[o.GetName()] = one[admissionregistrationv1.ValidatingAdmissionPolicyBinding](r, "ValidatingAdmissionPolicyBinding", o.GetName())
			}
		}
		return ps, bs
	}
	celArg := func(r *rendered) string {
		d := one[appsv1.Deployment](r, "Deployment", "")
		for _, a := range d.Spec.Template.Spec.Containers[0].Args {
			if v, ok := strings.CutPrefix(a, "--hygiene-cel-rules="); ok {
				return v
			}
		}
		return ""
	}

	t.Run("off by default", func(t *testing.T) {
		r := render(t, "strictgate", nil)
		if ps, bs := policies(r); len(ps)+len(bs) != 0 {
			t.Fatalf("%d hygiene policies and %d bindings rendered by default", len(ps), len(bs))
		}
		if a := celArg(r); a != "" {
			t.Fatalf("webhook skips %q by default", a)
		}
	})

	r := render(t, "edge", map[string]any{"webhook": map[string]any{
		"admission": map[string]any{"networkPolicies": map[string]any{"failurePolicy": "Ignore"}},
		"hygiene": map[string]any{
			"cel":           map[string]any{"enabled": true},
			"defaultAction": "warn",
			"maxPortRange":  200,
			"actions":       map[string]any{"SG002": "deny", "SG003-all-namespaces": "dryrun", "SG004-other-id": "deny"},
		},
	}})
	ps, bs := policies(r)
	want := map[string]admissionregistrationv1.ValidationAction{
		"SG001-open-rule":            admissionregistrationv1.Warn,  // deny capped at warn
		"SG002-any-cidr":             admissionregistrationv1.Deny,  // prefix override beats the cap
		"SG003-all-namespaces":       admissionregistrationv1.Audit, // full-id override
		"SG004-cloud-metadata":       admissionregistrationv1.Warn,  // another id's override does not apply
		"SG005-policy-types":         admissionregistrationv1.Warn,
		"SG006-port-range":           admissionregistrationv1.Warn,
		"SG012-cnp-admin-accept-all": admissionregistrationv1.Warn,
		"SG013-cnp-cuts-dns":         admissionregistrationv1.Warn,
	}
	if len(ps) != len(want) || len(bs) != len(want) {
		t.Fatalf("%d policies, %d bindings; want %d of each", len(ps), len(bs), len(want))
	}
	var ids []string
	for name, p := range ps {
		id := p.Annotations["strictgate.dev/rule-id"]
		ids = append(ids, id)
		if !strings.HasPrefix(name, "edge-strictgate-hygiene-") {
			t.Errorf("policy %s not named for the release", name)
		}
		b := bs[name]
		if b == nil || b.Spec.PolicyName != name {
			t.Fatalf("policy %s has no binding of the same name pointing at it", name)
		}
		if !slices.Equal(b.Spec.ValidationActions, []admissionregistrationv1.ValidationAction{want[id]}) {
			t.Errorf("%s: validationActions %v, want [%s]", id, b.Spec.ValidationActions, want[id])
		}
		if *p.Spec.FailurePolicy != admissionregistrationv1.Ignore {
			t.Errorf("%s: failurePolicy %s, want the NetworkPolicy webhook's Ignore", id, *p.Spec.FailurePolicy)
		}
		if b.Spec.MatchResources != nil && b.Spec.MatchResources.NamespaceSelector != nil {
			t.Errorf("%s: binding narrows namespaces; the webhook judges NetworkPolicies in every namespace", id)
		}
		self := false
		for _, c := range p.Spec.MatchConditions {
			self = self || c.Expression == "request.userInfo.username != 'system:serviceaccount:strictgate:edge-strictgate-webhook'"
		}
		if !self {
			t.Errorf("%s: match conditions %+v do not exempt the release's webhook service account", id, p.Spec.MatchConditions)
		}
		for _, v := range p.Spec.Variables {
			if v.Name == "maxPortRange" && v.Expression != "200" {
				t.Errorf("%s: maxPortRange %q, want 200", id, v.Expression)
			}
		}
	}
	sort.Strings(ids)
	got := strings.Split(celArg(r), ",")
	sort.Strings(got)
	if !slices.Equal(got, ids) {
		t.Errorf("webhook skips %v, want exactly the CEL rules %v", got, ids)
	}

	r = render(t, "edge", map[string]any{"webhook": map[string]any{"hygiene": map[string]any{"cel": map[string]any{"enabled": true, "skipInWebhook": false}}}})
	if a := celArg(r); a != "" {
		t.Errorf("skipInWebhook false, but the webhook skips %q", a)
	}
	if ps, _ := policies(r); len(ps) != len(want) {
		t.Errorf("%d policies with skipInWebhook false, want %d", len(ps), len(want))
	}
}

// cnpCorpus is the hand-written ClusterNetworkPolicy edge cases of SG012 and SG013, the
// first of which breaks both (a sentinel), followed by n random ones from rnd.
func cnpCorpus(rnd *rand.Rand, n int) []*cnpv1beta1.ClusterNetworkPolicy {
	type ing = cnpv1beta1.ClusterNetworkPolicyIngressRule
	type egr = cnpv1beta1.ClusterNetworkPolicyEgressRule
	type ipeer = cnpv1beta1.ClusterNetworkPolicyIngressPeer
	type epeer = cnpv1beta1.ClusterNetworkPolicyEgressPeer
	type proto = cnpv1beta1.ClusterNetworkPolicyProtocol
	const (
		accept = cnpv1beta1.ClusterNetworkPolicyRuleActionAccept
		deny   = cnpv1beta1.ClusterNetworkPolicyRuleActionDeny
		pass   = cnpv1beta1.ClusterNetworkPolicyRuleActionPass
	)
	sel := func(kv ...string) *metav1.LabelSelector {
		s := &metav1.LabelSelector{}
		if len(kv) > 0 {
			s.MatchLabels = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			s.MatchLabels[kv[i]] = kv[i+1]
		}
		return s
	}
	pods := func(ns, pod *metav1.LabelSelector) *cnpv1beta1.NamespacedPod {
		return &cnpv1beta1.NamespacedPod{NamespaceSelector: *ns, PodSelector: *pod}
	}
	udp := func(port int32) proto {
		return proto{UDP: &cnpv1beta1.ClusterNetworkPolicyProtocolUDP{DestinationPort: &cnpv1beta1.Port{Number: port}}}
	}
	tcp := func(port int32) proto {
		return proto{TCP: &cnpv1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: &cnpv1beta1.Port{Number: port}}}
	}
	tcpRange := func(start, end int32) proto {
		return proto{TCP: &cnpv1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: &cnpv1beta1.Port{Range: &cnpv1beta1.PortRange{Start: start, End: end}}}}
	}
	pol := func(tier cnpv1beta1.Tier, in []ing, eg []egr) *cnpv1beta1.ClusterNetworkPolicy {
		return &cnpv1beta1.ClusterNetworkPolicy{Spec: cnpv1beta1.ClusterNetworkPolicySpec{
			Tier: tier, Priority: 10, Subject: cnpv1beta1.ClusterNetworkPolicySubject{Namespaces: sel()}, Ingress: in, Egress: eg,
		}}
	}
	admin, baseline := cnpv1beta1.AdminTier, cnpv1beta1.BaselineTier
	kubeSystem := sel("kubernetes.io/metadata.name", "kube-system")
	kubeDNS := &epeer{Pods: pods(kubeSystem, sel("k8s-app", "kube-dns"))}
	all4 := epeer{Networks: []cnpv1beta1.CIDR{"0.0.0.0/0"}}

	out := []*cnpv1beta1.ClusterNetworkPolicy{
		// The sentinel: SG012 (ingress[0]) and SG013 (egress[0]).
		pol(admin, []ing{{Action: accept, From: []ipeer{{Namespaces: sel()}}}}, []egr{{Action: deny, To: []epeer{all4}}}),
		// SG012
		pol(admin, []ing{{Action: accept, From: []ipeer{{Pods: pods(sel(), sel())}}}}, nil),
		pol(admin, []ing{{Action: accept, From: []ipeer{{Namespaces: sel("team", "a")}, {Namespaces: sel()}}}}, nil),
		pol(admin, []ing{{Action: accept, From: []ipeer{{Namespaces: sel()}}, Protocols: []proto{tcp(9090)}}}, nil),
		pol(admin, []ing{{Action: accept, From: []ipeer{{Pods: pods(sel("team", "a"), sel())}}}}, nil),
		pol(baseline, []ing{{Action: accept, From: []ipeer{{Namespaces: sel()}}}}, nil),
		pol(admin, []ing{{Action: deny, From: []ipeer{{Namespaces: sel()}}}}, nil),
		pol(admin, nil, []egr{{Action: accept, To: []epeer{{Networks: []cnpv1beta1.CIDR{"10.0.0.0/8", "::/0"}}}}}),
		pol(admin, nil, []egr{{Action: accept, To: []epeer{{Networks: []cnpv1beta1.CIDR{"10.0.0.0/8"}}}}}),
		pol(admin, nil, []egr{{Action: accept, To: []epeer{{Namespaces: sel()}, {Pods: pods(sel(), sel())}}}}),
		pol(admin, nil, []egr{{Action: pass, To: []epeer{{Namespaces: sel()}}}}),
		// SG013
		pol(admin, nil, []egr{{Action: deny, To: []epeer{{Namespaces: kubeSystem}}, Protocols: []proto{udp(53)}}}),
		pol(admin, nil, []egr{{Action: deny, To: []epeer{*kubeDNS}, Protocols: []proto{tcpRange(1, 1024)}}}),
		pol(admin, nil, []egr{{Action: deny, To: []epeer{*kubeDNS}, Protocols: []proto{tcpRange(54, 1024)}}}),
		pol(admin, nil, []egr{{Action: accept, To: []epeer{*kubeDNS}, Protocols: []proto{udp(53), tcp(53)}}, {Action: deny, To: []epeer{all4}}}),
		pol(admin, nil, []egr{{Action: accept, To: []epeer{*kubeDNS}, Protocols: []proto{udp(53)}}, {Action: deny, To: []epeer{all4}}}),
		pol(admin, nil, []egr{{Action: pass, To: []epeer{{Namespaces: kubeSystem}}}, {Action: deny, To: []epeer{{Namespaces: sel()}}}}),
		pol(admin, nil, []egr{{Action: deny, To: []epeer{all4}}, {Action: accept, To: []epeer{*kubeDNS}}}),
		pol(admin, nil, []egr{{Action: deny, To: []epeer{{Namespaces: sel()}}, Protocols: []proto{tcp(80)}}}),
		pol(admin, nil, []egr{{Action: deny, To: []epeer{{Namespaces: sel("kubernetes.io/metadata.name", "shop")}}}}),
		pol(admin, nil, []egr{{Action: deny, To: []epeer{{Pods: pods(kubeSystem, sel("k8s-app", "other"))}}}}),
		pol(admin, nil, []egr{{Action: deny, To: []epeer{{Pods: pods(sel(), sel("k8s-app", "kube-dns"))}}}}),
		pol(admin, nil, []egr{{Action: deny, To: []epeer{{Networks: []cnpv1beta1.CIDR{"10.96.0.10/32"}}}}}),
		pol(baseline, nil, []egr{{Action: deny, To: []epeer{all4}}}),
		pol(admin, nil, []egr{{Action: deny, To: []epeer{all4}}, {Action: deny, To: []epeer{{Namespaces: sel()}}, Protocols: []proto{udp(53)}}}),
	}

	nsSel := func() *metav1.LabelSelector {
		switch rnd.IntN(4) {
		case 0:
			return sel()
		case 1:
			return kubeSystem
		case 2:
			return sel("team", "a")
		}
		return &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"},
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: metav1.LabelSelectorOpExists}}}
	}
	podSel := func() *metav1.LabelSelector {
		return []*metav1.LabelSelector{sel(), sel("k8s-app", "kube-dns"), sel("app", "web")}[rnd.IntN(3)]
	}
	protocols := func() []proto {
		var ps []proto
		for range rnd.IntN(3) {
			port := cnpv1beta1.Port{Number: []int32{53, 80, 5353}[rnd.IntN(3)]}
			if rnd.IntN(3) == 0 {
				r := [][2]int32{{1, 1024}, {54, 100}, {50, 60}}[rnd.IntN(3)]
				port = cnpv1beta1.Port{Range: &cnpv1beta1.PortRange{Start: r[0], End: r[1]}}
			}
			switch rnd.IntN(3) {
			case 0:
				ps = append(ps, proto{TCP: &cnpv1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: &port}})
			case 1:
				ps = append(ps, proto{UDP: &cnpv1beta1.ClusterNetworkPolicyProtocolUDP{DestinationPort: &port}})
			default:
				ps = append(ps, proto{SCTP: &cnpv1beta1.ClusterNetworkPolicyProtocolSCTP{DestinationPort: &port}})
			}
		}
		return ps
	}
	action := func() cnpv1beta1.ClusterNetworkPolicyRuleAction {
		return []cnpv1beta1.ClusterNetworkPolicyRuleAction{accept, deny, pass}[rnd.IntN(3)]
	}
	for range n {
		tier := admin
		if rnd.IntN(4) == 0 {
			tier = baseline
		}
		p := pol(tier, nil, nil)
		p.Spec.Priority = int32(rnd.IntN(100))
		for range rnd.IntN(3) {
			var from []ipeer
			for range 1 + rnd.IntN(2) {
				if rnd.IntN(2) == 0 {
					from = append(from, ipeer{Namespaces: nsSel()})
				} else {
					from = append(from, ipeer{Pods: pods(nsSel(), podSel())})
				}
			}
			p.Spec.Ingress = append(p.Spec.Ingress, ing{Action: action(), From: from, Protocols: protocols()})
		}
		for range rnd.IntN(4) {
			var to []epeer
			for range 1 + rnd.IntN(2) {
				switch rnd.IntN(3) {
				case 0:
					to = append(to, epeer{Namespaces: nsSel()})
				case 1:
					to = append(to, epeer{Pods: pods(nsSel(), podSel())})
				default:
					to = append(to, epeer{Networks: []cnpv1beta1.CIDR{[]cnpv1beta1.CIDR{"0.0.0.0/0", "::/0", "10.0.0.0/8"}[rnd.IntN(3)]}})
				}
			}
			p.Spec.Egress = append(p.Spec.Egress, egr{Action: action(), To: to, Protocols: protocols()})
		}
		out = append(out, p)
	}
	return out
}
