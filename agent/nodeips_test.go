package agent_test

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/test/controlplane"
)

// TestAgentNodeBackedService: an egress-isolated pod may reach a Service whose only
// backend is its own node (the kubernetes Service, hostNetwork backends) — traffic with
// the node always passes, so the ClusterIP must not be judged stricter. The agent feeds
// the node's addresses to the compiler for that, as verdict --node-ip does; a Service
// backed by another address stays closed.
func TestAgentNodeBackedService(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(controlplane.Start(t, nil))
	ctx := context.Background()
	createNode(t, cs, "192.0.2.10")

	svc := func(name, backend string) string {
		s := must(cs.CoreV1().Services("default").Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt(6443)}}},
		}, metav1.CreateOptions{}))
		port, proto, ready := int32(6443), corev1.ProtocolTCP, true
		must(cs.DiscoveryV1().EndpointSlices("default").Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{backend}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
			Ports:       []discoveryv1.EndpointPort{{Name: ptr("https"), Port: &port, Protocol: &proto}},
		}, metav1.CreateOptions{}))
		return s.Spec.ClusterIP
	}
	onNode := svc("on-node", "192.0.2.10")
	elsewhere := svc("elsewhere", "192.0.2.99")
	must(cs.NetworkingV1().NetworkPolicies("default").Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "no-egress", Namespace: "default"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
		},
	}, metav1.CreateOptions{}))

	dp := newFakeDatapath()
	ifs := &fakeInterfaces{}
	ifs.set("10.201.0.3", 13)
	startPod(t, cs, "default", "client", nodeName, "10.201.0.3", map[string]string{"app": "client"})
	defer runAgent(t, cs, testConfig(), dp, ifs)()
	waitCondition(t, cs, "default", "client", isTrue)

	e, _ := dp.entry(13)
	if e.rules == nil || e.rules.Egress.State != rules.StateIsolated {
		t.Fatalf("client not egress-isolated: %+v", e.rules)
	}
	if v, _ := e.rules.Egress.Lookup(mustAddr(onNode), rules.ProtocolTCP, 443); v != rules.Allow {
		t.Errorf("ClusterIP %s backed by the node: %v, want allow", onNode, v)
	}
	if v, _ := e.rules.Egress.Lookup(mustAddr(elsewhere), rules.ProtocolTCP, 443); v != rules.Deny {
		t.Errorf("ClusterIP %s backed by another address: %v, want deny", elsewhere, v)
	}
}
