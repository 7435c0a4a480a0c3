package webhook

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/open-policy-agent/opa/v1/ast"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	kjson "sigs.k8s.io/json"

	"github.com/strictgate/strictgate/internal/contract"
	"github.com/strictgate/strictgate/webhook/hygiene"
	"github.com/strictgate/strictgate/webhook/podindex"
)

// ControlPlaneDeleters delete every object of a namespace being deleted (the
// namespace controller, and the garbage collector for owned objects); SG011 lets
// them remove the generated policies.
var ControlPlaneDeleters = []string{
	"system:serviceaccount:kube-system:namespace-controller",
	"system:serviceaccount:kube-system:generic-garbage-collector",
}

// NetworkPolicyRules evaluates the hygiene rules; *hygiene.Engine implements it.
type NetworkPolicyRules interface {
	Evaluate(ctx context.Context, input ast.Value) ([]hygiene.Finding, error)
}

// NetworkPolicyOptions configure NewNetworkPolicyValidator.
type NetworkPolicyOptions struct {
	// ServiceAccount is strictgate's own service account (Config.ServiceAccount).
	ServiceAccount string
	// ExtraPrivilegedUsers may also modify the generated policies; nil means
	// ControlPlaneDeleters.
	ExtraPrivilegedUsers []string
	// ProtectedPolicies nil means the two generated policies.
	ProtectedPolicies []string
	// MaxPortRange is SG006's widest allowed port range; 0 keeps the rule's default (1024).
	MaxPortRange int
	// Log receives findings (enforcement events); zero means controller-runtime's logger.
	Log logr.Logger
	// PodIndex, when set, answers the rules' pod questions (which pods a selector
	// picks, how many a namespace has) by label instead of listing the namespace;
	// SetupNetworkPolicyValidator feeds one from the pod informer.
	PodIndex *podindex.Index
}

// NetworkPolicyValidator is the admission handler for PathValidateNetworkPolicy:
// it decodes the request, gathers cluster facts, evaluates the hygiene rules and
// answers deny (all deny findings, each with its rule id), or allow with warnings.
//
// Requests by strictgate's own service account (opts.ServiceAccount) are admitted
// without evaluation: they come from the default-deny controller, which must be able
// to put its policies in place whatever custom rules say.
//
// dryRun requests (kubectl --dry-run=server) are judged exactly the same but leave
// no trace: findings are not logged as enforcement events (only at debug level)
// and metrics count them with dry_run="true".
type NetworkPolicyValidator struct {
	rules  NetworkPolicyRules
	self   string        // strictgate's own service account: not judged
	facts  hygiene.Facts // nil: evaluate without cluster facts
	inputs *hygiene.InputBuilder
	log    logr.Logger
}

var _ admission.Handler = (*NetworkPolicyValidator)(nil)

// NewNetworkPolicyValidator builds the handler. reader serves cluster facts
// (namespaces, pods, NetworkPolicies): the manager's cached client in production,
// so admission never waits on the API server; nil disables the rules that need them.
func NewNetworkPolicyValidator(rules NetworkPolicyRules, reader client.Reader, opts NetworkPolicyOptions) *NetworkPolicyValidator {
	privileged := opts.ExtraPrivilegedUsers
	if privileged == nil {
		privileged = ControlPlaneDeleters
	}
	if opts.ServiceAccount != "" {
		privileged = append([]string{opts.ServiceAccount}, privileged...)
	}
	protected := opts.ProtectedPolicies
	if protected == nil {
		protected = contract.GeneratedPolicies() // only strictgate may change them (SG011)
	}
	v := &NetworkPolicyValidator{
		rules: rules,
		self:  opts.ServiceAccount,
		inputs: hygiene.NewInputBuilder(hygiene.Settings{
			MaxPortRange:      opts.MaxPortRange,
			ProtectedPolicies: protected,
			PrivilegedUsers:   privileged,
		}),
		log: opts.Log,
	}
	if reader != nil {
		v.facts = ReaderFacts{Reader: reader, Index: opts.PodIndex}
	}
	if v.log.GetSink() == nil {
		v.log = ctrl.Log.WithName("networkpolicy-hygiene")
	}
	return v
}

var networkPolicyGVK = metav1.GroupVersionKind{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicy"}

// Handle implements admission.Handler.
func (v *NetworkPolicyValidator) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	review, err := decodeNetworkPolicyReview(req)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if review == nil {
		return admission.Allowed("") // an operation hygiene has no opinion on
	}

	if review.Operation == string(admissionv1.Update) && review.Object.DeletionTimestamp != nil {
		// The deletion was admitted already; refusing the finalizer removals that
		// follow would leave the policy stuck in Terminating.
		return admission.Allowed("policy is being deleted")
	}
	if review.Object != nil {
		var old *networkingv1.NetworkPolicySpec
		if review.OldObject != nil {
			old = &review.OldObject.Spec
		}
		if errs := validateNetworkPolicySpec(&review.Object.Spec, old); len(errs) > 0 {
			resp := admission.Denied(invalidMessage(review.Namespace, review.Name, errs))
			resp.Result.Code, resp.Result.Reason = http.StatusUnprocessableEntity, metav1.StatusReasonInvalid
			causes := make([]metav1.StatusCause, len(errs))
			for i, e := range errs {
				causes[i] = metav1.StatusCause{Type: metav1.CauseType(e.Type), Message: e.ErrorBody(), Field: e.Field}
			}
			resp.Result.Details = &metav1.StatusDetails{Name: review.Name, Group: networkPolicyGVK.Group, Kind: "networkpolicies", Causes: causes}
			return resp
		}
	}
	if v.self != "" && review.UserInfo.Username == v.self {
		// strictgate's own controller writes only the generated policies; a custom
		// rule (say, "every policy needs an owner label") must never stop it from
		// putting default-deny in place.
		return admission.Allowed("strictgate's own service account")
	}

	var warnings []string
	input, err := v.inputs.Build(ctx, review, v.facts)
	if err != nil && v.facts != nil {
		// Without cluster facts only the rules that need them go quiet; failing the
		// request would make every policy write depend on the informer cache.
		v.log.Error(err, "cluster facts unavailable; judging the policy without them", "namespace", review.Namespace, "name", review.Name)
		warnings = append(warnings, "strictgate: cluster facts unavailable, rules about pods and other policies were skipped: "+err.Error())
		input, err = v.inputs.Build(ctx, review, nil)
	}
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	findings, err := v.rules.Evaluate(ctx, input)
	hygiene.ObserveEvaluation(time.Since(start), review.DryRun)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}

	var denials []hygiene.Finding
	for _, f := range findings {
		hygiene.CountFinding(f, review.DryRun)
		v.logFinding(review, f)
		switch f.Action {
		case hygiene.Deny:
			denials = append(denials, f)
		case hygiene.Warn:
			warnings = append(warnings, f.Message)
		}
	}
	if len(denials) == 0 {
		resp := admission.Allowed("")
		resp.Warnings = warnings
		return resp
	}
	msgs := make([]string, len(denials))
	causes := make([]metav1.StatusCause, len(denials))
	for i, f := range denials {
		msgs[i] = f.Message
		causes[i] = metav1.StatusCause{Type: metav1.CauseType("strictgate.dev/" + f.ID), Message: f.Message}
	}
	resp := admission.Denied(fmt.Sprintf("NetworkPolicy %s/%s refused by strictgate hygiene rules: %s",
		review.Namespace, review.Name, strings.Join(msgs, "; ")))
	resp.Result.Details = &metav1.StatusDetails{
		Name: review.Name, Group: networkPolicyGVK.Group, Kind: "networkpolicies", Causes: causes,
	}
	resp.Warnings = warnings
	return resp
}

func (v *NetworkPolicyValidator) logFinding(r *hygiene.Review, f hygiene.Finding) {
	kv := []any{"rule", f.ID, "action", f.Action, "operation", r.Operation,
		"namespace", r.Namespace, "name", r.Name, "user", r.UserInfo.Username, "message", f.Message}
	if r.DryRun {
		v.log.V(1).Info("hygiene finding in a dryRun request (no enforcement)", kv...)
		return
	}
	v.log.Info("hygiene finding", kv...)
}

// decodeNetworkPolicyReview turns an admission request into a hygiene review; nil
// for operations hygiene does not judge (CONNECT).
func decodeNetworkPolicyReview(req admission.Request) (*hygiene.Review, error) {
	if req.UID == "" {
		// Without a uid the API server could not match the answer; whatever sent it
		// is not the API server, and an "allowed" would be a verdict on nothing.
		return nil, errors.New("admission request has no uid: not an AdmissionReview from the API server")
	}
	if req.Kind != networkPolicyGVK || req.SubResource != "" {
		return nil, fmt.Errorf("NetworkPolicy validator got %s (subresource %q): the webhook configuration must send only networking.k8s.io/v1 NetworkPolicies",
			req.Kind.String(), req.SubResource)
	}
	r := &hygiene.Review{
		UID:       string(req.UID),
		Operation: string(req.Operation),
		DryRun:    req.DryRun != nil && *req.DryRun,
		Namespace: req.Namespace,
		Name:      req.Name,
		UserInfo:  req.UserInfo,
	}
	var err error
	switch req.Operation {
	case admissionv1.Create:
		r.Object, err = decodeNetworkPolicy(req.Object.Raw, "object")
	case admissionv1.Update:
		if r.Object, err = decodeNetworkPolicy(req.Object.Raw, "object"); err == nil && len(req.OldObject.Raw) > 0 {
			r.OldObject, err = decodeNetworkPolicy(req.OldObject.Raw, "oldObject")
		}
	case admissionv1.Delete:
		if len(req.OldObject.Raw) > 0 {
			r.OldObject, err = decodeNetworkPolicy(req.OldObject.Raw, "oldObject")
		} else {
			// API servers before 1.15 sent no oldObject on DELETE; the name is
			// all SG011 needs.
			r.OldObject = &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: req.Name, Namespace: req.Namespace}}
		}
	default:
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	pol := r.Policy()
	if r.Namespace == "" {
		r.Namespace = pol.Namespace // CREATE may carry it only in the request, or only here
	}
	if r.Name == "" {
		r.Name = pol.Name
	}
	if err := checkNamespaceName(r.Namespace); err != nil {
		return nil, fmt.Errorf("NetworkPolicy admission request: %w", err)
	}
	if pol.Namespace == "" {
		pol.Namespace = r.Namespace
	}
	if pol.Name == "" {
		pol.Name = r.Name
	}
	return r, nil
}

func decodeNetworkPolicy(raw []byte, field string) (*networkingv1.NetworkPolicy, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("admission request has no %s: expected a networking.k8s.io/v1 NetworkPolicy", field)
	}
	var np networkingv1.NetworkPolicy
	if err := kjson.UnmarshalCaseSensitivePreserveInts(raw, &np); err != nil {
		return nil, fmt.Errorf("decode NetworkPolicy %s: %w", field, err)
	}
	if np.Kind != "" && (np.Kind != "NetworkPolicy" || np.APIVersion != "networking.k8s.io/v1") {
		return nil, fmt.Errorf("decode NetworkPolicy %s: object is %s %s, expected networking.k8s.io/v1 NetworkPolicy", field, np.APIVersion, np.Kind)
	}
	return &np, nil
}

// ReaderFacts serves hygiene.Facts from a controller-runtime reader. With the
// manager's cache, lists share memory with the informer (UnsafeDisableDeepCopy):
// hygiene only reads them.
type ReaderFacts struct {
	Reader client.Reader
	// Index, when set and synced, answers PodCount and SelectPods (it holds the same
	// informer's pods); otherwise they list through Reader.
	Index *podindex.Index
}

var _ hygiene.Facts = ReaderFacts{}

// Namespace implements hygiene.Facts.
func (f ReaderFacts) Namespace(ctx context.Context, name string) (*corev1.Namespace, error) {
	var ns corev1.Namespace
	if err := f.Reader.Get(ctx, client.ObjectKey{Name: name}, &ns); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return &ns, nil
}

// Namespaces implements hygiene.Facts.
func (f ReaderFacts) Namespaces(ctx context.Context) ([]corev1.Namespace, error) {
	var l corev1.NamespaceList
	if err := f.Reader.List(ctx, &l, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// Pods lists the pods of namespace ("" is every namespace).
func (f ReaderFacts) Pods(ctx context.Context, namespace string) ([]corev1.Pod, error) {
	var l corev1.PodList
	if err := f.Reader.List(ctx, &l, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// PodCount implements hygiene.Facts.
func (f ReaderFacts) PodCount(ctx context.Context, namespace string) (int, error) {
	if f.Index.Ready() {
		return f.Index.Count(namespace), nil
	}
	pods, err := f.Pods(ctx, namespace)
	return len(pods), err
}

// SelectPods implements hygiene.Facts.
func (f ReaderFacts) SelectPods(ctx context.Context, namespace string, sel labels.Selector) ([]*corev1.Pod, error) {
	if f.Index.Ready() {
		return f.Index.Select(namespace, sel), nil
	}
	if _, selectable := sel.Requirements(); !selectable {
		return nil, nil // labels.Nothing: a List would treat it as "everything"
	}
	var l corev1.PodList
	if err := f.Reader.List(ctx, &l, client.InNamespace(namespace), client.MatchingLabelsSelector{Selector: sel}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	out := make([]*corev1.Pod, len(l.Items))
	for i := range l.Items {
		out[i] = &l.Items[i]
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// NetworkPolicies implements hygiene.Facts.
func (f ReaderFacts) NetworkPolicies(ctx context.Context, namespace string) ([]networkingv1.NetworkPolicy, error) {
	var l networkingv1.NetworkPolicyList
	if err := f.Reader.List(ctx, &l, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// NetworkPolicyConfig is the hygiene part of the webhook's configuration.
type NetworkPolicyConfig struct {
	// RulesDir is the custom rules directory (a mounted ConfigMap); empty = built-ins only.
	RulesDir string
	// Actions override rule actions by id (actions.yaml in RulesDir overrides these).
	Actions hygiene.Actions
	// DefaultAction caps every rule not named in Actions: deny (each rule as it
	// ships), warn (denials become warnings) or dryrun (only logged and counted).
	DefaultAction hygiene.Action
	// MaxPortRange is SG006's widest allowed port..endPort range.
	MaxPortRange int
	// PollInterval is how often RulesDir is checked for changes.
	PollInterval time.Duration
	// CELRules are the built-in rule ids the API server judges with the chart's
	// ValidatingAdmissionPolicies (webhook.hygiene.cel); the webhook skips them.
	CELRules []string
}

// DefaultNetworkPolicyConfig is the chart's default.
func DefaultNetworkPolicyConfig() NetworkPolicyConfig {
	return NetworkPolicyConfig{MaxPortRange: 1024, PollInterval: hygiene.DefaultPollInterval, Actions: hygiene.Actions{}, DefaultAction: hygiene.Deny}
}

// BindFlags registers --hygiene-* flags on fs.
func (c *NetworkPolicyConfig) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.RulesDir, "hygiene-rules-dir", c.RulesDir, "directory of custom hygiene rules (*.rego with *_test.rego, optional actions.yaml), watched for changes; empty = built-in rules only")
	fs.Func("hygiene-action", "override a hygiene rule's action: <rule-id>=<deny|warn|dryrun>, repeatable or comma-separated (e.g. SG007=deny,SG009=dryrun)", func(s string) error {
		a, err := hygiene.ParseActions(s)
		if err != nil {
			return err
		}
		if c.Actions == nil {
			c.Actions = hygiene.Actions{}
		}
		for k, v := range a {
			c.Actions[k] = v
		}
		return nil
	})
	fs.Func("hygiene-default-action", "strongest action of every hygiene rule that --hygiene-action does not name: deny (each rule's own action; the default), warn (denials become warnings) or dryrun (findings only logged and counted)", func(s string) error {
		a, err := hygiene.ParseAction(s)
		if err != nil {
			return err
		}
		c.DefaultAction = a
		return nil
	})
	fs.IntVar(&c.MaxPortRange, "hygiene-max-port-range", c.MaxPortRange, "widest port..endPort range rule SG006 accepts")
	fs.Func("hygiene-cel-rules", "comma-separated built-in hygiene rule ids the API server judges with ValidatingAdmissionPolicies (chart: webhook.hygiene.cel); the webhook does not evaluate them", func(s string) error {
		for _, id := range strings.Split(s, ",") {
			if id = strings.TrimSpace(id); id != "" {
				c.CELRules = append(c.CELRules, id)
			}
		}
		return nil
	})
	fs.DurationVar(&c.PollInterval, "hygiene-poll-interval", c.PollInterval, "how often --hygiene-rules-dir is checked for changes")
}

// Validate reports configuration errors.
func (c *NetworkPolicyConfig) Validate() error {
	var errs []error
	if c.MaxPortRange < 1 || c.MaxPortRange > 65536 {
		errs = append(errs, fmt.Errorf("--hygiene-max-port-range %d: want 1-65536", c.MaxPortRange))
	}
	if c.PollInterval <= 0 {
		errs = append(errs, fmt.Errorf("--hygiene-poll-interval %v: want a positive duration", c.PollInterval))
	}
	return errors.Join(errs...)
}

// NewHygieneEngine loads the rules for c. Add the engine to the manager
// (mgr.Add(engine)) so that it watches c.RulesDir.
func NewHygieneEngine(ctx context.Context, c NetworkPolicyConfig) (*hygiene.Engine, error) {
	return hygiene.New(ctx, hygiene.Options{Dir: c.RulesDir, Actions: c.Actions, DefaultAction: c.DefaultAction, PollInterval: c.PollInterval, JudgedByAPIServer: c.CELRules})
}

// SetupNetworkPolicyValidator wires the hygiene validator into mgr: it loads the
// rules (built-ins plus hc.RulesDir), adds the engine as a runnable that watches the
// directory, registers informers for the facts the rules read (so that the first
// request does not wait for them) and serves the handler at PathValidateNetworkPolicy.
// The returned engine's Status belongs in the readiness/status output.
func SetupNetworkPolicyValidator(ctx context.Context, mgr manager.Manager, cfg Config, hc NetworkPolicyConfig) (*hygiene.Engine, error) {
	if err := hc.Validate(); err != nil {
		return nil, err
	}
	engine, err := NewHygieneEngine(ctx, hc)
	if err != nil {
		return nil, err
	}
	if err := mgr.Add(engine); err != nil {
		return nil, fmt.Errorf("add hygiene rule watcher: %w", err)
	}
	for _, obj := range []client.Object{&corev1.Namespace{}, &corev1.Pod{}, &networkingv1.NetworkPolicy{}} {
		if _, err := mgr.GetCache().GetInformer(ctx, obj); err != nil {
			return nil, fmt.Errorf("register informer for %T: %w", obj, err)
		}
	}
	podInformer, err := mgr.GetCache().GetInformer(ctx, &corev1.Pod{})
	if err != nil {
		return nil, fmt.Errorf("register informer for pods: %w", err)
	}
	pods := podindex.New()
	reg, err := podInformer.AddEventHandler(pods.Handler())
	if err != nil {
		return nil, fmt.Errorf("index pods: %w", err)
	}
	// Until the handler has seen the informer's initial list the index would answer
	// from a partial view; the validator lists through the cache until then.
	pods.SetSynced(reg.HasSynced)
	v := NewNetworkPolicyValidator(engine, mgr.GetClient(), NetworkPolicyOptions{
		ServiceAccount: cfg.ServiceAccount,
		MaxPortRange:   hc.MaxPortRange,
		PodIndex:       pods,
	})
	mgr.GetWebhookServer().Register(PathValidateNetworkPolicy, Instrumented(PathValidateNetworkPolicy, v))
	return engine, nil
}

// StripPodForHygiene is a cache transform (cache.Options.ByObject[&corev1.Pod{}]) that
// keeps of a pod only what the hygiene rules read: name, namespace, labels, phase and
// container ports. The webhook caches every pod of the cluster for them; this keeps
// that cache small. Use it only when nothing else in the process reads pods from the
// cache.
func StripPodForHygiene(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // tombstones and the like pass through
	}
	slim := &corev1.Pod{
		TypeMeta: pod.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID, Labels: pod.Labels,
			ResourceVersion: pod.ResourceVersion, DeletionTimestamp: pod.DeletionTimestamp,
		},
		Status: corev1.PodStatus{Phase: pod.Status.Phase},
	}
	slim.Spec.Containers = slimContainers(pod.Spec.Containers)
	slim.Spec.InitContainers = slimContainers(pod.Spec.InitContainers)
	return slim, nil
}

func slimContainers(cs []corev1.Container) []corev1.Container {
	var out []corev1.Container
	for _, c := range cs {
		if len(c.Ports) > 0 {
			out = append(out, corev1.Container{Name: c.Name, Ports: c.Ports})
		}
	}
	return out
}
