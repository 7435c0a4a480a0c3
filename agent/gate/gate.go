// Package gate sets the readiness-gate conditions (strictgate.dev/policy-programmed, or
// the configured gate.conditionTypes) on pods through the pods/status subresource.
//
// A patch is sent only when the condition would change, carries the pod's UID and
// resourceVersion as preconditions (so a condition meant for one pod can never land on
// a namesake created later, and a decision made on a stale copy is made again), and is
// retried on conflict from a fresh read.
package gate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/util/retry"

	"github.com/strictgate/strictgate/internal/contract"
)

// ConditionType is the default pod condition (and readiness gate) strictgate owns,
// typed for the API; its reasons are contract.Reason*.
const ConditionType corev1.PodConditionType = contract.ConditionType

// ErrPodGone means the pod was deleted or replaced by a namesake with another UID.
var ErrPodGone = errors.New("pod gone")

// Condition is the wanted state of the condition.
type Condition struct {
	Status  corev1.ConditionStatus
	Reason  string
	Message string
}

// Types are the configured condition types (contract.ValidateConditionTypes). Every one
// is set to the same status, reason and message in one patch, so a reader never sees
// some True and others False: the API server applies a patch atomically.
type Types []corev1.PodConditionType

// Default is the default configuration: contract.ConditionType alone.
var Default = Types{ConditionType}

// TypesOf returns the types named; none means Default. Names are validated by the
// flags (contract.ConditionTypesFlag) before they get here.
func TypesOf(names []string) Types {
	if len(names) == 0 {
		return Default
	}
	ts := make(Types, len(names))
	for i, n := range names {
		ts[i] = corev1.PodConditionType(n)
	}
	return ts
}

// Strings returns the types as plain strings.
func (ts Types) Strings() []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = string(t)
	}
	return out
}

func condition(pod *corev1.Pod, t corev1.PodConditionType) (corev1.PodCondition, bool) {
	for _, c := range pod.Status.Conditions {
		if c.Type == t {
			return c, true
		}
	}
	return corev1.PodCondition{}, false
}

// Gated reports whether the pod carries a readiness gate of one of the types, or
// already has one of the conditions: the pods whose conditions the agent keeps.
func (ts Types) Gated(pod *corev1.Pod) bool {
	for _, g := range pod.Spec.ReadinessGates {
		if slices.Contains(ts, g.ConditionType) {
			return true
		}
	}
	for _, t := range ts {
		if _, ok := condition(pod, t); ok {
			return true
		}
	}
	return false
}

// Current summarises the pod's conditions of every type as one: not found unless every
// type is present; True only when every one is True (with the first's reason and
// message and the latest lastTransitionTime: when the last of them turned True);
// otherwise the first that is not True.
func (ts Types) Current(pod *corev1.Pod) (corev1.PodCondition, bool) {
	var sum corev1.PodCondition
	for i, t := range ts {
		c, ok := condition(pod, t)
		switch {
		case !ok:
			return corev1.PodCondition{}, false
		case i == 0, sum.Status == corev1.ConditionTrue && c.Status != corev1.ConditionTrue:
			sum = c
		case sum.Status == corev1.ConditionTrue && sum.LastTransitionTime.Before(&c.LastTransitionTime):
			sum.LastTransitionTime = c.LastTransitionTime
		}
	}
	return sum, len(ts) > 0
}

// Satisfied reports whether every type carries want (status, reason and message).
func (ts Types) Satisfied(pod *corev1.Pod, want Condition) bool {
	for _, t := range ts {
		c, ok := condition(pod, t)
		if !ok || c.Status != want.Status || c.Reason != want.Reason || c.Message != want.Message {
			return false
		}
	}
	return len(ts) > 0
}

// Programmed reports whether every type is True with reason contract.ReasonProgrammed,
// i.e. an agent on the pod's node programmed it (only the agent may set them).
func (ts Types) Programmed(pod *corev1.Pod) bool {
	c, ok := ts.Current(pod)
	return ok && c.Status == corev1.ConditionTrue && c.Reason == contract.ReasonProgrammed
}

// Patch builds the strategic-merge patch that sets want on every type of pod,
// preconditioned on the pod's UID and resourceVersion. Each type's lastTransitionTime
// moves only when its status changes.
func (ts Types) Patch(pod *corev1.Pod, want Condition, now time.Time) ([]byte, error) {
	type cond struct {
		Type               corev1.PodConditionType `json:"type"`
		Status             corev1.ConditionStatus  `json:"status"`
		Reason             string                  `json:"reason,omitempty"`
		Message            string                  `json:"message,omitempty"`
		LastTransitionTime metav1.Time             `json:"lastTransitionTime"`
		LastProbeTime      *metav1.Time            `json:"lastProbeTime"`
	}
	if len(ts) == 0 {
		return nil, errors.New("no condition types configured")
	}
	conds := make([]cond, 0, len(ts))
	for _, t := range ts {
		ltt := metav1.NewTime(now.Truncate(time.Second))
		if c, ok := condition(pod, t); ok && c.Status == want.Status && !c.LastTransitionTime.IsZero() {
			ltt = c.LastTransitionTime
		}
		conds = append(conds, cond{Type: t, Status: want.Status, Reason: want.Reason, Message: want.Message, LastTransitionTime: ltt})
	}
	body := map[string]any{
		"metadata": map[string]any{"uid": pod.UID, "resourceVersion": pod.ResourceVersion},
		"status":   map[string]any{"conditions": conds},
	}
	return json.Marshal(body)
}

// PodsGetter is the part of the typed client the patcher needs.
type PodsGetter interface {
	Pods(namespace string) corev1client.PodInterface
}

// Patcher writes the conditions.
type Patcher struct {
	pods PodsGetter
	// Types are the condition types written (Default unless configured).
	Types Types
	// Now is the clock for lastTransitionTime; tests replace it.
	Now func() time.Time
	// Backoff bounds the retries on conflict.
	Backoff wait.Backoff
}

// New returns a patcher of types (none: Default) using pods (e.g. clientset.CoreV1()).
func New(pods PodsGetter, types ...corev1.PodConditionType) *Patcher {
	if len(types) == 0 {
		types = Default
	}
	return &Patcher{pods: pods, Types: types, Now: time.Now, Backoff: wait.Backoff{Steps: 8, Duration: 20 * time.Millisecond, Factor: 2, Jitter: 0.1}}
}

// Set makes every one of the pod's conditions equal to want. pod is the caller's latest copy (from an
// informer cache, say); its UID is the identity the condition is meant for. It returns
// whether a patch was applied, and ErrPodGone (wrapped) when the pod no longer exists
// with that UID. The pod passed in is never modified.
func (p *Patcher) Set(ctx context.Context, pod *corev1.Pod, want Condition) (changed bool, err error) {
	uid := pod.UID
	cur := pod
	err = retry.RetryOnConflict(p.Backoff, func() error {
		if cur == nil {
			fresh, err := p.pods.Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return fmt.Errorf("get pod %s/%s: %w", pod.Namespace, pod.Name, ErrPodGone)
			}
			if err != nil {
				return fmt.Errorf("get pod %s/%s: %w", pod.Namespace, pod.Name, err)
			}
			cur = fresh
		}
		if cur.UID != uid {
			return fmt.Errorf("pod %s/%s has UID %s, not %s: %w", pod.Namespace, pod.Name, cur.UID, uid, ErrPodGone)
		}
		if p.Types.Satisfied(cur, want) {
			return nil
		}
		patch, err := p.Types.Patch(cur, want, p.Now())
		if err != nil {
			return fmt.Errorf("build patch: %w", err)
		}
		_, err = p.pods.Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: "strictgate-agent"}, "status")
		switch {
		case err == nil:
			changed = true
			return nil
		case apierrors.IsNotFound(err):
			return fmt.Errorf("patch pod %s/%s status: %w", pod.Namespace, pod.Name, ErrPodGone)
		case apierrors.IsConflict(err):
			cur = nil // decide again on a fresh copy
			return err
		}
		return fmt.Errorf("patch pod %s/%s status: %w", pod.Namespace, pod.Name, err)
	})
	return changed, err
}
