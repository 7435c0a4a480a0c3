package webhook

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	kjson "sigs.k8s.io/json"

	"github.com/strictgate/strictgate/internal/contract"
)

// SuperuserGroup may always set the opt-out label. Members bypass RBAC and can delete
// the webhook configuration itself, so refusing them adds friction, not safety; it also
// keeps a break-glass path when the admin group is misconfigured.
const SuperuserGroup = "system:masters"

// NamespaceValidator guards the opt-out label: otherwise anyone allowed to edit a
// namespace could switch enforcement off for it (Gatekeeper's ignore-label lesson).
// Adding the label or changing its value needs membership in one of Groups (or
// SuperuserGroup); removing it only turns enforcement back on and is always allowed.
// CREATE is checked too: creating a namespace that is already opted out is the same
// loophole.
type NamespaceValidator struct {
	// Groups may add or change the opt-out label.
	Groups []string
}

var _ admission.Handler = (*NamespaceValidator)(nil)

var namespaceGVK = metav1.GroupVersionKind{Group: "", Version: "v1", Kind: "Namespace"}

// namespaceFields is the part of a Namespace the validator reads.
type namespaceFields struct {
	Kind       string `json:"kind"`
	APIVersion string `json:"apiVersion"`
	Metadata   struct {
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
}

// Handle implements admission.Handler.
func (v *NamespaceValidator) Handle(_ context.Context, req admission.Request) admission.Response {
	if err := checkRequest(req, namespaceGVK); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("namespace validator: %w", err))
	}
	var oldVal, newVal string
	var oldHas, newHas bool
	switch req.Operation {
	case admissionv1.Create, admissionv1.Update:
		obj, err := decodeNamespace(req.Object.Raw, "object")
		if err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		newVal, newHas = obj.Metadata.Labels[contract.EnforceLabel]
		if req.Operation == admissionv1.Update {
			old, err := decodeNamespace(req.OldObject.Raw, "oldObject")
			if err != nil {
				return admission.Errored(http.StatusBadRequest, err)
			}
			oldVal, oldHas = old.Metadata.Labels[contract.EnforceLabel]
		}
	default:
		return admission.Allowed("")
	}
	if !newHas || (oldHas && oldVal == newVal) {
		// Absent, removed, or unchanged: nothing gets less enforced.
		return admission.Allowed("")
	}
	if v.privileged(req.UserInfo) {
		return admission.Allowed("opt-out label set by a member of an enforcement-admin group")
	}
	return admission.Denied(fmt.Sprintf(
		"setting label %s=%q on namespace %s needs membership in one of the groups %v: "+
			"it switches strictgate's NetworkPolicy enforcement for the namespace. "+
			"Ask an enforcement admin, or remove the label instead (removing it is always allowed)",
		contract.EnforceLabel, newVal, req.Name, v.allowedGroups()))
}

func (v *NamespaceValidator) allowedGroups() []string {
	return append(slices.Clone(v.Groups), SuperuserGroup)
}

func (v *NamespaceValidator) privileged(u authenticationv1.UserInfo) bool {
	for _, g := range u.Groups {
		if g == SuperuserGroup || slices.Contains(v.Groups, g) {
			return true
		}
	}
	return false
}

func decodeNamespace(raw []byte, field string) (*namespaceFields, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("admission request has no %s: expected a v1 Namespace", field)
	}
	var n namespaceFields
	if err := kjson.UnmarshalCaseSensitivePreserveInts(raw, &n); err != nil {
		return nil, fmt.Errorf("decode namespace %s: %w", field, err)
	}
	if n.Kind != "" && (n.Kind != "Namespace" || n.APIVersion != "v1") {
		return nil, fmt.Errorf("decode namespace %s: object is %s %s, expected v1 Namespace", field, n.APIVersion, n.Kind)
	}
	return &n, nil
}
