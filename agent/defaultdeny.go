package agent

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/strictgate/strictgate/agent/gate"
	"github.com/strictgate/strictgate/internal/contract"
)

// The compiler rightly calls a pod that no policy selects unrestricted. In an enforced
// namespace that is only true once strictgate-default-deny exists; a pod created within
// milliseconds of its namespace is seen before the webhook's controller has created the
// policy, and programming it then would open it — the very window strictgate closes. So
// a pod's first programming in an enforced namespace waits for the policy: the pod stays
// in the mode's unprogrammed state and its condition says what it waits for.

// waitsForDefaultDeny reports whether pod must not be programmed yet (caller holds a.mu).
func (a *Agent) waitsForDefaultDeny(pod *corev1.Pod, st *podState) bool {
	if !a.cfg.DefaultDeny || st.programmedOnce || a.denyNS[pod.Namespace] {
		return false
	}
	return a.enforced(pod.Namespace)
}

// enforced reports whether strictgate enforces the namespace, as the webhook decides it.
func (a *Agent) enforced(name string) bool {
	scope := a.cfg.Scope()
	ns, err := a.nsLister.Get(name)
	if err != nil {
		// The pod's namespace is not in the cache yet: it was just created, and nothing
		// but its name can exclude it. Enforced unless the name does: fail closed.
		return !scope.ExcludedByName(name)
	}
	return scope.Enforced(ns)
}

// waitingCondition is the condition of a pod held back by waitsForDefaultDeny. Its
// message depends only on the namespace and the mode, so it is patched once.
func (a *Agent) waitingCondition(ns string) gate.Condition {
	held := "deny-all (strict mode)"
	switch a.cfg.Mode {
	case contract.ModeStandard:
		held = "allow-all (standard mode)"
	case contract.ModeAudit:
		held = "unprogrammed (audit mode: would-be drops are logged)"
	}
	return gate.Condition{
		Status: corev1.ConditionFalse,
		Reason: contract.ReasonWaitingForDefaultDeny,
		Message: fmt.Sprintf("Waiting for NetworkPolicy %s/%s: namespace %s is enforced and the agent has not seen its generated default-deny policy yet; the pod stays %s until it appears.",
			ns, contract.DefaultDenyPolicy, ns, held),
	}
}

// programmedBefore reports whether the pod carries True conditions, i.e. an agent on
// this node programmed it before (only the agent may set them).
func (a *Agent) programmedBefore(pod *corev1.Pod) bool {
	return gate.TypesOf(a.cfg.ConditionTypes).Programmed(pod)
}

// localPodsIn returns this node's pods in namespace ns: the pods whose wait depends on
// the namespace's labels and on its default-deny policy.
func (a *Agent) localPodsIn(ns string) []types.NamespacedName {
	pods, err := a.podLister.Pods(ns).List(labels.Everything())
	if err != nil {
		return nil
	}
	var out []types.NamespacedName
	for _, p := range pods {
		if p.Spec.NodeName == a.cfg.NodeName {
			out = append(out, types.NamespacedName{Namespace: p.Namespace, Name: p.Name})
		}
	}
	return out
}
