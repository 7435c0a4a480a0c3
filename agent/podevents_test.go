package agent_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"github.com/strictgate/strictgate/agent"
	"github.com/strictgate/strictgate/agent/netdev"
	"github.com/strictgate/strictgate/agent/netdev/netdevtest"
	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/internal/contract"
	"github.com/strictgate/strictgate/test/controlplane"
)

// podEvents returns the Events recorded about a pod (of any source).
func podEvents(t *testing.T, cs kubernetes.Interface, ns, name string) []corev1.Event {
	t.Helper()
	l := must(cs.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{
		FieldSelector: fields.AndSelectors(fields.OneTermEqualSelector("involvedObject.name", name), fields.OneTermEqualSelector("involvedObject.kind", "Pod")).String()}))
	return l.Items
}

// waitEvent waits for an Event with reason on the pod and returns it.
func waitEvent(t *testing.T, cs kubernetes.Interface, ns, name, reason string) corev1.Event {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, e := range podEvents(t, cs, ns, name) {
			if e.Reason == reason {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s event on pod %s/%s; events: %+v", reason, ns, name, podEvents(t, cs, ns, name))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPrivilegedAgentPodEvents: the real agent on a real datapath records an Event on a
// pod it holds for its namespace's default-deny, when it programs it, and when the rules
// exceed the datapath's limits; each on the pod, from strictgate-agent on its node.
func TestPrivilegedAgentPodEvents(t *testing.T) {
	if !netdevtest.Isolate(t) {
		return
	}
	const pinRoot = "/sys/fs/bpf/strictgate" // a private bpffs (Isolate)
	cs := kubernetes.NewForConfigOrDie(controlplane.Start(t, nil))
	ctx := context.Background()
	createNode(t, cs)
	must(cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}))
	web := netdevtest.AddPod(t, "web", netip.MustParseAddr("10.203.0.2"))
	big := netdevtest.AddPod(t, "big", netip.MustParseAddr("10.203.0.3"))

	dp := openPinnedDatapath(t, pinRoot)
	for _, p := range []*netdevtest.Pod{web, big} {
		if _, err := dp.Attach(p.HostIndex, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig() // "default" excluded, "shop" enforced
	if err := agent.ConfigureDatapath(dp, cfg); err != nil {
		t.Fatal(err)
	}
	rec, stopEvents := agent.NewEventRecorder(ctx, cs, nodeName)
	t.Cleanup(stopEvents)
	runAgentDeps(t, cfg, agent.Deps{Client: cs, Datapath: agent.NewDatapath(dp, false), Interfaces: netdev.New(nil), Events: rec})

	check := func(e corev1.Event, typ string) {
		t.Helper()
		if e.Type != typ || e.Source.Component != agent.EventComponent || e.Source.Host != nodeName || e.InvolvedObject.Kind != "Pod" || e.InvolvedObject.UID == "" {
			t.Errorf("event %s: type %s source %+v object %+v", e.Reason, e.Type, e.Source, e.InvolvedObject)
		}
	}

	// Held: shop has no strictgate-default-deny yet.
	startPod(t, cs, "shop", "web", nodeName, web.IP.String(), map[string]string{"app": "web"})
	e := waitEvent(t, cs, "shop", "web", contract.ReasonWaitingForDefaultDeny)
	check(e, corev1.EventTypeNormal)
	if !strings.Contains(e.Message, contract.DefaultDenyPolicy) {
		t.Errorf("waiting event message %q does not name %s", e.Message, contract.DefaultDenyPolicy)
	}

	// Programmed once the policy exists.
	must(cs.NetworkingV1().NetworkPolicies("shop").Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: contract.DefaultDenyPolicy, Namespace: "shop"},
		Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}},
	}, metav1.CreateOptions{}))
	waitCondition(t, cs, "shop", "web", isTrue)
	e = waitEvent(t, cs, "shop", "web", contract.ReasonProgrammed)
	check(e, corev1.EventTypeNormal)
	if !strings.Contains(e.Message, "shop/"+contract.DefaultDenyPolicy) {
		t.Errorf("programmed event message %q does not name the policy", e.Message)
	}

	// Beyond a datapath limit: a Warning naming it. (The peer lives on another node.)
	startPod(t, cs, "default", "client", "node-b", "10.203.1.4", map[string]string{"app": "client"})
	var ports []networkingv1.NetworkPolicyPort
	for i := range contract.MaxPortRulesPerEntry + 10 {
		ports = append(ports, port(corev1.ProtocolTCP, 10000+2*i))
	}
	must(cs.NetworkingV1().NetworkPolicies("default").Create(ctx, policy("huge", "big", map[string]string{"app": "client"}, ports...), metav1.CreateOptions{}))
	startPod(t, cs, "default", "big", nodeName, big.IP.String(), map[string]string{"app": "big"})
	e = waitEvent(t, cs, "default", "big", agent.EventReasonLimitsExceeded)
	check(e, corev1.EventTypeWarning)
	if !strings.Contains(e.Message, "capacity") {
		t.Errorf("limits event message %q does not name the limit", e.Message)
	}

	// One Event per change of the condition, not per attempt: the programmed pod got
	// exactly one of each; the failing pod one, however often the agent retried it.
	waitCondition(t, cs, "default", "big", func(c corev1.PodCondition, found bool) bool { return found })
	time.Sleep(300 * time.Millisecond) // a few retries (50ms backoff, doubling)
	for _, tc := range []struct{ ns, pod, reason string }{
		{"shop", "web", contract.ReasonWaitingForDefaultDeny}, {"shop", "web", contract.ReasonProgrammed}, {"default", "big", agent.EventReasonLimitsExceeded},
	} {
		reason := tc.reason
		n := 0
		for _, e := range podEvents(t, cs, tc.ns, tc.pod) {
			if e.Reason == reason {
				n += int(e.Count)
			}
		}
		if n != 1 {
			t.Errorf("%d %s events on %s/%s, want 1", n, reason, tc.ns, tc.pod)
		}
	}
}
