package gate_test

import (
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/strictgate/strictgate/agent/gate"
	"github.com/strictgate/strictgate/internal/contract"
)

const upstream corev1.PodConditionType = "networking.k8s.io/pod-network-ready"

var two = gate.Types{gate.ConditionType, upstream}

func cond(t corev1.PodConditionType, s corev1.ConditionStatus, reason string, ltt time.Time) corev1.PodCondition {
	return corev1.PodCondition{Type: t, Status: s, Reason: reason, LastTransitionTime: metav1.NewTime(ltt)}
}

func podWith(gates []corev1.PodConditionType, conds ...corev1.PodCondition) *corev1.Pod {
	p := &corev1.Pod{}
	for _, g := range gates {
		p.Spec.ReadinessGates = append(p.Spec.ReadinessGates, corev1.PodReadinessGate{ConditionType: g})
	}
	p.Status.Conditions = conds
	return p
}

func TestTypesSummary(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 5, 0, 0, 0, time.UTC)
	T, F := corev1.ConditionTrue, corev1.ConditionFalse
	for _, tc := range []struct {
		name       string
		pod        *corev1.Pod
		gated      bool
		found      bool
		status     corev1.ConditionStatus
		reason     string
		ltt        time.Time
		programmed bool
	}{
		{name: "ungated", pod: podWith(nil)},
		{name: "other gate only", pod: podWith([]corev1.PodConditionType{"x.io/other"})},
		{name: "second type's gate only", pod: podWith([]corev1.PodConditionType{upstream}), gated: true},
		{name: "one of two set", gated: true,
			pod: podWith(two, cond(gate.ConditionType, T, contract.ReasonProgrammed, t0))},
		{name: "both True: latest transition", gated: true, found: true, status: T, reason: contract.ReasonProgrammed, ltt: t0.Add(time.Second), programmed: true,
			pod: podWith(two, cond(gate.ConditionType, T, contract.ReasonProgrammed, t0), cond(upstream, T, contract.ReasonProgrammed, t0.Add(time.Second)))},
		{name: "second False wins", gated: true, found: true, status: F, reason: contract.ReasonProgrammingFailed, ltt: t0,
			pod: podWith(two, cond(gate.ConditionType, T, contract.ReasonProgrammed, t0.Add(time.Second)), cond(upstream, F, contract.ReasonProgrammingFailed, t0))},
		{name: "first False wins", gated: true, found: true, status: F, reason: contract.ReasonKernelMismatch, ltt: t0,
			pod: podWith(two, cond(gate.ConditionType, F, contract.ReasonKernelMismatch, t0), cond(upstream, T, contract.ReasonProgrammed, t0.Add(time.Second)))},
		{name: "condition without gate counts as gated", gated: true, found: true, status: T, reason: contract.ReasonProgrammed, ltt: t0, programmed: true,
			pod: podWith(nil, cond(gate.ConditionType, T, contract.ReasonProgrammed, t0), cond(upstream, T, contract.ReasonProgrammed, t0))},
		{name: "True with a foreign reason is not programmed", gated: true, found: true, status: T, reason: "Other", ltt: t0,
			pod: podWith(two, cond(gate.ConditionType, T, "Other", t0), cond(upstream, T, "Other", t0))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := two.Gated(tc.pod); got != tc.gated {
				t.Errorf("Gated = %v, want %v", got, tc.gated)
			}
			c, found := two.Current(tc.pod)
			if found != tc.found || c.Status != tc.status || c.Reason != tc.reason || !c.LastTransitionTime.Time.Equal(tc.ltt) && tc.found {
				t.Errorf("Current = %+v, %v; want %s %s at %s, %v", c, found, tc.status, tc.reason, tc.ltt, tc.found)
			}
			if got := two.Programmed(tc.pod); got != tc.programmed {
				t.Errorf("Programmed = %v, want %v", got, tc.programmed)
			}
		})
	}
}

// TestTypesPatch: one patch carries every type with the same status, reason and
// message; each type's lastTransitionTime moves only when its own status changes.
func TestTypesPatch(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 5, 0, 0, 0, time.UTC)
	now := t0.Add(10*time.Second + 300*time.Millisecond)
	pod := podWith(two, cond(gate.ConditionType, corev1.ConditionTrue, contract.ReasonProgrammed, t0), cond(upstream, corev1.ConditionFalse, contract.ReasonProgrammingFailed, t0))
	pod.UID, pod.ResourceVersion = "u1", "7"
	raw, err := two.Patch(pod, programmed, now)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Metadata struct{ UID, ResourceVersion string }
		Status   struct{ Conditions []corev1.PodCondition }
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got.Metadata.UID != "u1" || got.Metadata.ResourceVersion != "7" {
		t.Errorf("preconditions %+v", got.Metadata)
	}
	if len(got.Status.Conditions) != 2 {
		t.Fatalf("patch sets %d conditions, want 2: %s", len(got.Status.Conditions), raw)
	}
	wantLTT := map[corev1.PodConditionType]time.Time{gate.ConditionType: t0, upstream: now.Truncate(time.Second)}
	for i, c := range got.Status.Conditions {
		if c.Type != two[i] || c.Status != programmed.Status || c.Reason != programmed.Reason || c.Message != programmed.Message {
			t.Errorf("condition %d = %+v, want %s = %+v", i, c, two[i], programmed)
		}
		if !c.LastTransitionTime.Time.Equal(wantLTT[c.Type]) {
			t.Errorf("%s lastTransitionTime %s, want %s", c.Type, c.LastTransitionTime, wantLTT[c.Type])
		}
	}
	if _, err := (gate.Types{}).Patch(pod, programmed, now); err == nil {
		t.Error("Patch with no types: no error")
	}
}

func TestTypesOf(t *testing.T) {
	if got := gate.TypesOf(nil); len(got) != 1 || got[0] != gate.ConditionType {
		t.Errorf("TypesOf(nil) = %v", got)
	}
	if got := gate.TypesOf([]string{string(upstream), contract.ConditionType}); len(got) != 2 || got[0] != upstream || got.Strings()[1] != contract.ConditionType {
		t.Errorf("TypesOf = %v", got)
	}
}
