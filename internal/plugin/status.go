package plugin

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/strictgate/strictgate/agent/gate"
	"github.com/strictgate/strictgate/internal/contract"
)

// Gate states of a pod.
const (
	GateProgrammed = "programmed"
	GateWaiting    = "waiting"
	GateFailed     = "failed"
	GateUngated    = "ungated"
)

// PodStatus is one pod's gate state.
type PodStatus struct {
	Name string `json:"name"`
	// Gate is programmed, waiting, failed or ungated (no strictgate readiness gate).
	Gate    string `json:"gate"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	Ready   bool   `json:"ready"`
	// ProgrammedAfter is the time from Since to the condition turning True, in seconds
	// (the API's timestamps have one-second resolution); nil unless programmed.
	ProgrammedAfter *float64 `json:"programmed_after_seconds,omitempty"`
	// Since is what ProgrammedAfter counts from: "ip" (the pod's network was ready:
	// condition PodReadyToStartContainers) or "creation".
	Since string `json:"since,omitempty"`
	// ReadyUngated: Ready in an enforced namespace without the gate (not host network).
	ReadyUngated bool `json:"ready_ungated,omitempty"`
}

// NamespaceStatus is the gate state of a namespace's pods.
type NamespaceStatus struct {
	Name     string      `json:"name"`
	Enforced bool        `json:"enforced"`
	Pods     []PodStatus `json:"pods"`
}

// Report is the answer of `kubectl strictgate status`.
type Report struct {
	Namespaces []NamespaceStatus `json:"namespaces"`
	// ReadyUngated lists namespace/pod of pods that are Ready but ungated in enforced
	// namespaces: they receive traffic with no sign that their policy is in force.
	ReadyUngated []string `json:"ready_ungated"`
}

// Status computes the gate state of pods (finished pods are left out) in their
// namespaces; scope says which namespaces are enforced and types are the agent's
// condition types (a pod is programmed only when every one is True). Namespaces
// without pods are left out.
func Status(namespaces []corev1.Namespace, pods []corev1.Pod, scope contract.Scope, types gate.Types) Report {
	byName := map[string]*corev1.Namespace{}
	for i := range namespaces {
		byName[namespaces[i].Name] = &namespaces[i]
	}
	groups := map[string][]PodStatus{}
	r := Report{ReadyUngated: []string{}}
	for i := range pods {
		p := &pods[i]
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		ps := podStatus(p, types)
		if ps.Gate == GateUngated && ps.Ready && !p.Spec.HostNetwork && scope.Enforced(byName[p.Namespace]) {
			ps.ReadyUngated = true
			r.ReadyUngated = append(r.ReadyUngated, p.Namespace+"/"+p.Name)
		}
		groups[p.Namespace] = append(groups[p.Namespace], ps)
	}
	for ns, ps := range groups {
		slices.SortFunc(ps, func(a, b PodStatus) int { return strings.Compare(a.Name, b.Name) })
		r.Namespaces = append(r.Namespaces, NamespaceStatus{Name: ns, Enforced: scope.Enforced(byName[ns]), Pods: ps})
	}
	slices.SortFunc(r.Namespaces, func(a, b NamespaceStatus) int { return strings.Compare(a.Name, b.Name) })
	slices.Sort(r.ReadyUngated)
	return r
}

func podStatus(p *corev1.Pod, types gate.Types) PodStatus {
	ps := PodStatus{Name: p.Name, Ready: condTrue(p, corev1.PodReady)}
	gated := types.Gated(p)
	c, found := types.Current(p)
	switch {
	case !gated:
		ps.Gate = GateUngated
		if p.Spec.HostNetwork {
			ps.Reason = "HostNetwork"
		}
		return ps
	case !found:
		ps.Gate, ps.Reason, ps.Message = GateWaiting, "NoCondition", "the agent of its node has not set the conditions ("+strings.Join(types.Strings(), ", ")+") yet"
		return ps
	}
	ps.Reason, ps.Message = c.Reason, c.Message
	switch {
	case c.Status == corev1.ConditionTrue:
		ps.Gate = GateProgrammed
		start, since := p.CreationTimestamp.Time, "creation"
		for _, pc := range p.Status.Conditions {
			if pc.Type == corev1.PodReadyToStartContainers && pc.Status == corev1.ConditionTrue && !pc.LastTransitionTime.IsZero() {
				start, since = pc.LastTransitionTime.Time, "ip"
			}
		}
		if !start.IsZero() && !c.LastTransitionTime.IsZero() {
			d := max(c.LastTransitionTime.Sub(start), 0).Seconds()
			ps.ProgrammedAfter, ps.Since = &d, since
		}
	case c.Status == corev1.ConditionFalse && c.Reason == contract.ReasonWaitingForDefaultDeny, c.Status == corev1.ConditionUnknown:
		ps.Gate = GateWaiting
	default:
		ps.Gate = GateFailed
	}
	return ps
}

func condTrue(p *corev1.Pod, t corev1.PodConditionType) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// WriteText prints the report for a person: one block per namespace, then the pods
// that are Ready but ungated in enforced namespaces.
func WriteText(w io.Writer, r Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i, ns := range r.Namespaces {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		enf := "enforced"
		if !ns.Enforced {
			enf = "not enforced"
		}
		fmt.Fprintf(tw, "NAMESPACE %s (%s)\n", ns.Name, enf)
		fmt.Fprintln(tw, "  POD\tGATE\tPROGRAMMED AFTER\tREADY\tDETAIL")
		for _, p := range ns.Pods {
			state := p.Gate
			if p.Reason != "" && p.Gate != GateProgrammed {
				state += ": " + p.Reason
			}
			after := "-"
			if p.ProgrammedAfter != nil {
				after = fmt.Sprintf("%s from %s", time.Duration(*p.ProgrammedAfter*float64(time.Second)).Round(time.Second), p.Since)
			}
			detail := p.Message
			if p.Gate == GateProgrammed {
				detail = ""
			}
			if p.ReadyUngated {
				detail = "Ready without the gate in an enforced namespace"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%v\t%s\n", p.Name, state, after, p.Ready, detail)
		}
	}
	if len(r.ReadyUngated) > 0 {
		fmt.Fprintf(tw, "\nReady but ungated in enforced namespaces (%d): %s\n", len(r.ReadyUngated), strings.Join(r.ReadyUngated, ", "))
		fmt.Fprintln(tw, "  they take traffic with nothing showing that their policy is in force: admitted while the webhook was down")
		fmt.Fprintln(tw, "  (failurePolicy Ignore) or created before strictgate was installed; re-create them to gate them")
	}
	return tw.Flush()
}
