// Package gate sets the readiness-gate condition strictgate.dev/policy-programmed on
// pods through the pods/status subresource.
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

// ConditionType is the pod condition (and readiness gate) strictgate owns, typed for
// the API; its reasons are contract.Reason*.
const ConditionType corev1.PodConditionType = contract.ConditionType

// ErrPodGone means the pod was deleted or replaced by a namesake with another UID.
var ErrPodGone = errors.New("pod gone")

// Condition is the wanted state of the condition.
type Condition struct {
	Status  corev1.ConditionStatus
	Reason  string
	Message string
}

// PodsGetter is the part of the typed client the patcher needs.
type PodsGetter interface {
	Pods(namespace string) corev1client.PodInterface
}

// Patcher writes the condition.
type Patcher struct {
	pods PodsGetter
	// Now is the clock for lastTransitionTime; tests replace it.
	Now func() time.Time
	// Backoff bounds the retries on conflict.
	Backoff wait.Backoff
}

// New returns a patcher using pods (e.g. clientset.CoreV1()).
func New(pods PodsGetter) *Patcher {
	return &Patcher{pods: pods, Now: time.Now, Backoff: wait.Backoff{Steps: 8, Duration: 20 * time.Millisecond, Factor: 2, Jitter: 0.1}}
}

// Current returns the pod's condition, if present.
func Current(pod *corev1.Pod) (corev1.PodCondition, bool) {
	for _, c := range pod.Status.Conditions {
		if c.Type == ConditionType {
			return c, true
		}
	}
	return corev1.PodCondition{}, false
}

// Satisfied reports whether the pod already carries want (status, reason and message).
func Satisfied(pod *corev1.Pod, want Condition) bool {
	c, ok := Current(pod)
	return ok && c.Status == want.Status && c.Reason == want.Reason && c.Message == want.Message
}

// Patch builds the strategic-merge patch that sets want on pod, preconditioned on the
// pod's UID and resourceVersion. lastTransitionTime moves only when the status changes.
func Patch(pod *corev1.Pod, want Condition, now time.Time) ([]byte, error) {
	ltt := metav1.NewTime(now.Truncate(time.Second))
	if c, ok := Current(pod); ok && c.Status == want.Status && !c.LastTransitionTime.IsZero() {
		ltt = c.LastTransitionTime
	}
	type cond struct {
		Type               corev1.PodConditionType `json:"type"`
		Status             corev1.ConditionStatus  `json:"status"`
		Reason             string                  `json:"reason,omitempty"`
		Message            string                  `json:"message,omitempty"`
		LastTransitionTime metav1.Time             `json:"lastTransitionTime"`
		LastProbeTime      *metav1.Time            `json:"lastProbeTime"`
	}
	body := map[string]any{
		"metadata": map[string]any{"uid": pod.UID, "resourceVersion": pod.ResourceVersion},
		"status": map[string]any{"conditions": []cond{{
			Type: ConditionType, Status: want.Status, Reason: want.Reason, Message: want.Message,
			LastTransitionTime: ltt,
		}}},
	}
	return json.Marshal(body)
}

// Set makes the pod's condition equal to want. pod is the caller's latest copy (from an
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
		if Satisfied(cur, want) {
			return nil
		}
		patch, err := Patch(cur, want, p.Now())
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
