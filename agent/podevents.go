package agent

// Kubernetes Events on pods, so that `kubectl describe pod` says why a pod is not Ready:
// one per change of the readiness condition, recorded by client-go's standard recorder
// (its correlator aggregates similar events and rate-limits each pod's).

import (
	"context"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/strictgate/strictgate/agent/datapath"
	"github.com/strictgate/strictgate/agent/gate"
	"github.com/strictgate/strictgate/internal/contract"
)

// EventComponent is the source component of the agent's Events.
const EventComponent = "strictgate-agent"

// EventReasonLimitsExceeded is the reason of the Event for rules beyond a datapath
// limit (the condition's reason is then ProgrammingFailed, its message names the limit).
const EventReasonLimitsExceeded = "DatapathLimitsExceeded"

// NewEventRecorder returns the standard recorder writing core/v1 Events through cs,
// with node as the source host, and the function that flushes and stops it.
func NewEventRecorder(ctx context.Context, cs kubernetes.Interface, node string) (record.EventRecorder, func()) {
	b := record.NewBroadcaster(record.WithContext(ctx))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	return b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: EventComponent, Host: node}), b.Shutdown
}

// eventingGate records an Event on the pod whenever the condition it sets changes.
type eventingGate struct {
	Gate
	rec record.EventRecorder
}

func (g eventingGate) Set(ctx context.Context, pod *corev1.Pod, want gate.Condition) (bool, error) {
	changed, err := g.Gate.Set(ctx, pod, want)
	if err == nil && changed {
		typ, reason := podEvent(want)
		g.rec.Event(pod, typ, reason, want.Message)
	}
	return changed, err
}

// podEvent is the type and reason of the Event for a new condition: Normal when the pod
// is programmed or waits for its namespace's default-deny (it will be programmed when
// the policy arrives), Warning when programming failed.
func podEvent(c gate.Condition) (typ, reason string) {
	switch {
	case c.Status == corev1.ConditionTrue, c.Reason == contract.ReasonWaitingForDefaultDeny:
		return corev1.EventTypeNormal, c.Reason
	case c.Reason == contract.ReasonProgrammingFailed && strings.Contains(c.Message, datapath.ErrCapacity.Error()):
		return corev1.EventTypeWarning, EventReasonLimitsExceeded
	}
	return corev1.EventTypeWarning, c.Reason
}
