package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	jsonpatch "gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	kjson "sigs.k8s.io/json"

	"github.com/strictgate/strictgate/internal/contract"
)

// NamespaceGetter finds a namespace by name. The server passes a cache-backed reader
// with a live fallback (see CachedNamespaces); tests may pass anything.
type NamespaceGetter interface {
	GetNamespace(ctx context.Context, name string) (*corev1.Namespace, error)
}

// PodMutator adds strictgate's readiness gates to pods created in enforced namespaces:
// one per configured condition type. Gates can only be set at CREATE, so this is the
// one chance; the agent on the pod's node later sets every condition True once the
// pod's policy is in the kernel.
type PodMutator struct {
	Scope      contract.Scope
	Namespaces NamespaceGetter
	// ConditionTypes are the gates added (--condition-types); empty means
	// contract.DefaultConditionTypes().
	ConditionTypes []string
}

var _ admission.Handler = (*PodMutator)(nil)

var podGVK = metav1.GroupVersionKind{Group: "", Version: "v1", Kind: "Pod"}

// podFields is the part of a Pod the mutator reads. Decoding only this keeps the
// per-request cost small; the API server validates the full object after admission.
type podFields struct {
	Kind       string `json:"kind"`
	APIVersion string `json:"apiVersion"`
	Spec       *struct {
		HostNetwork    bool                      `json:"hostNetwork"`
		ReadinessGates []corev1.PodReadinessGate `json:"readinessGates"`
	} `json:"spec"`
}

// gatePatch adds the gates of missing to a pod whose gate list is absent (a new list)
// or present (appended, so that existing gates keep their order).
func gatePatch(missing []string, hasList bool) []jsonpatch.JsonPatchOperation {
	if !hasList {
		gates := make([]any, len(missing))
		for i, t := range missing {
			gates[i] = map[string]any{"conditionType": t}
		}
		return []jsonpatch.JsonPatchOperation{{Operation: "add", Path: "/spec/readinessGates", Value: gates}}
	}
	ops := make([]jsonpatch.JsonPatchOperation, len(missing))
	for i, t := range missing {
		ops[i] = jsonpatch.JsonPatchOperation{Operation: "add", Path: "/spec/readinessGates/-", Value: map[string]any{"conditionType": t}}
	}
	return ops
}

func (m *PodMutator) conditionTypes() []string {
	if len(m.ConditionTypes) == 0 {
		return contract.DefaultConditionTypes()
	}
	return m.ConditionTypes
}

// Handle implements admission.Handler.
func (m *PodMutator) Handle(ctx context.Context, req admission.Request) admission.Response {
	if err := checkRequest(req, podGVK); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("pod mutator: %w", err))
	}
	if req.Operation != admissionv1.Create {
		return admission.Allowed("strictgate only adds the readiness gate at CREATE")
	}
	pod, err := decodePod(req.Object.Raw)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if pod.Spec.HostNetwork {
		// A host-network pod shares the node's interfaces; no per-pod datapath exists
		// to program, so a gate would never turn True.
		return admission.Allowed("host-network pod: not gated")
	}
	var missing []string
	for _, t := range m.conditionTypes() {
		if !slices.ContainsFunc(pod.Spec.ReadinessGates, func(g corev1.PodReadinessGate) bool { return string(g.ConditionType) == t }) {
			missing = append(missing, t)
		}
	}
	if len(missing) == 0 {
		return admission.Allowed("readiness gates already present")
	}
	// metadata.namespace may be empty on CREATE (the API server fills it in from the
	// URL); the request always carries it.
	if err := checkNamespaceName(req.Namespace); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("pod admission request: %w", err))
	}
	if m.Scope.ExcludedByName(req.Namespace) {
		return admission.Allowed("namespace " + req.Namespace + " is excluded from enforcement")
	}
	ns, err := m.Namespaces.GetNamespace(ctx, req.Namespace)
	if apierrors.IsNotFound(err) {
		// Authoritative (the live read found nothing): a namespace that does not
		// exist carries no opt-out label, and namespaces are enforced by default.
		// The API server refuses pods in missing namespaces before webhooks run, so
		// only a stray client gets here; it gets the secure answer, not a 503 that
		// claims the webhook is unavailable.
		ns = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: req.Namespace}}
		err = nil
	}
	if err != nil {
		// Fail closed: without the namespace we cannot tell whether it opted out, and
		// guessing either way is wrong for someone. The API server retries or reports.
		return admission.Errored(http.StatusServiceUnavailable, fmt.Errorf("look up namespace %s to decide enforcement: %w", req.Namespace, err))
	}
	if !m.Scope.Enforced(ns) {
		return admission.Allowed("namespace " + req.Namespace + " is not enforced")
	}
	// An empty list ([]) takes the append form as well: appending to it is valid.
	return admission.Patched("added readiness gates "+strings.Join(missing, ", "), gatePatch(missing, pod.Spec.ReadinessGates != nil)...)
}

// checkRequest rejects requests that cannot have come from an API server configured
// with strictgate's webhook configurations: without a UID (an empty or partial
// AdmissionReview), for another kind, or for a subresource.
func checkRequest(req admission.Request, want metav1.GroupVersionKind) error {
	if req.UID == "" {
		return errors.New("admission request has no uid: not an AdmissionReview from the API server")
	}
	if req.Kind != want || req.SubResource != "" {
		return fmt.Errorf("got %s %q (subresource %q), want %s: check the webhook configuration's rules",
			req.Kind.String(), req.Resource.Resource, req.SubResource, want.String())
	}
	return nil
}

// checkNamespaceName refuses what cannot be a namespace name before it is looked up
// (a name with "/" made the live GET fail, answered as a 503) or judged.
func checkNamespaceName(ns string) error {
	if ns == "" {
		return errors.New("request has no namespace")
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return fmt.Errorf("request namespace %.80q is not a namespace name: %s", ns, strings.Join(errs, "; "))
	}
	return nil
}

// decodePod reads the fields the mutator needs with the API server's own JSON rules
// (case-sensitive field names), rejecting anything that is not a Pod object.
func decodePod(raw []byte) (*podFields, error) {
	if len(raw) == 0 {
		return nil, errors.New("admission request has no object: expected a v1 Pod")
	}
	var p podFields
	if err := kjson.UnmarshalCaseSensitivePreserveInts(raw, &p); err != nil {
		return nil, fmt.Errorf("decode pod: %w", err)
	}
	if p.Kind != "" && (p.Kind != "Pod" || p.APIVersion != "v1") {
		return nil, fmt.Errorf("decode pod: object is %s %s, expected v1 Pod", p.APIVersion, p.Kind)
	}
	if p.Spec == nil {
		return nil, errors.New("decode pod: object has no spec")
	}
	return &p, nil
}

// CachedNamespaces looks namespaces up in the manager's cache and, when the cache has
// not seen a namespace yet (it was created a moment ago), asks the API server.
type CachedNamespaces struct {
	Cache client.Reader
	Live  client.Reader
}

// GetNamespace implements NamespaceGetter.
func (c CachedNamespaces) GetNamespace(ctx context.Context, name string) (*corev1.Namespace, error) {
	ns := &corev1.Namespace{}
	err := c.Cache.Get(ctx, types.NamespacedName{Name: name}, ns)
	if apierrors.IsNotFound(err) && c.Live != nil {
		err = c.Live.Get(ctx, types.NamespacedName{Name: name}, ns)
	}
	if err != nil {
		return nil, err
	}
	return ns, nil
}
