package agent

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/strictgate/strictgate/agent/datapath"
	"github.com/strictgate/strictgate/agent/gate"
	"github.com/strictgate/strictgate/internal/contract"
)

func TestPodEvent(t *testing.T) {
	for _, tc := range []struct {
		c           gate.Condition
		typ, reason string
	}{
		{gate.Condition{Status: corev1.ConditionTrue, Reason: contract.ReasonProgrammed}, corev1.EventTypeNormal, contract.ReasonProgrammed},
		{gate.Condition{Status: corev1.ConditionFalse, Reason: contract.ReasonWaitingForDefaultDeny}, corev1.EventTypeNormal, contract.ReasonWaitingForDefaultDeny},
		{gate.Condition{Status: corev1.ConditionFalse, Reason: contract.ReasonProgrammingFailed, Message: fmt.Errorf("program x: %w: 600 port rules", datapath.ErrCapacity).Error()},
			corev1.EventTypeWarning, EventReasonLimitsExceeded},
		{gate.Condition{Status: corev1.ConditionFalse, Reason: contract.ReasonProgrammingFailed, Message: "register: permission denied"}, corev1.EventTypeWarning, contract.ReasonProgrammingFailed},
		{gate.Condition{Status: corev1.ConditionFalse, Reason: contract.ReasonInterfaceNotFound}, corev1.EventTypeWarning, contract.ReasonInterfaceNotFound},
		{gate.Condition{Status: corev1.ConditionFalse, Reason: contract.ReasonKernelMismatch}, corev1.EventTypeWarning, contract.ReasonKernelMismatch},
	} {
		if typ, reason := podEvent(tc.c); typ != tc.typ || reason != tc.reason {
			t.Errorf("podEvent(%+v) = %s %s, want %s %s", tc.c, typ, reason, tc.typ, tc.reason)
		}
	}
}
