package compile

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/strictgate/strictgate/agent/rules"
)

// TestNamedPortSharedAcrossContainers: pod validation forbids a duplicate port name
// only within one container, so two containers may both call a port "http". A
// NetworkPolicy named port means any of them (found by test/conformance: the compiler
// used to keep only the last container's port). A Service's named targetPort still
// resolves to the first, as the endpoints controller's FindPort does.
func TestNamedPortSharedAcrossContainers(t *testing.T) {
	named := intstr.FromString("http")
	tcp := corev1.ProtocolTCP
	server := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "srv", Labels: map[string]string{"app": "srv"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "a", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: tcp}}},
			{Name: "b", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 9090, Protocol: tcp}, {Name: "http", ContainerPort: 7070, Protocol: corev1.ProtocolUDP}}},
		}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1"},
	}
	client := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "cli", Labels: map[string]string{"app": "cli"}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.2"},
	}
	s := State{
		Pods: []*corev1.Pod{server, client},
		Policies: []*networkingv1.NetworkPolicy{
			{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "in"}, Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "srv"}},
				Ingress:     []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &named}}}},
			}},
			{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "out"}, Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "cli"}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
				Egress:      []networkingv1.NetworkPolicyEgressRule{{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &named}}}},
			}},
		},
		Services: []*corev1.Service{{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "svc"}, Spec: corev1.ServiceSpec{
			ClusterIP: "10.96.0.1", ClusterIPs: []string{"10.96.0.1"}, Selector: map[string]string{"app": "srv"},
			Ports: []corev1.ServicePort{{Port: 80, Protocol: tcp, TargetPort: named}},
		}}},
	}
	c, err := Build(s, Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := c.Rules(types.NamespacedName{Namespace: "x", Name: "srv"})
	cli, _ := c.Rules(types.NamespacedName{Namespace: "x", Name: "cli"})
	srcIP, dstIP := netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.1")
	for _, tc := range []struct {
		port uint16
		want rules.Verdict
	}{{8080, rules.Allow}, {9090, rules.Allow}, {7070, rules.Deny}, {80, rules.Deny}} {
		if v, _ := srv.Ingress.Lookup(srcIP, rules.ProtocolTCP, tc.port); v != tc.want {
			t.Errorf("ingress TCP/%d: %v, want %v", tc.port, v, tc.want)
		}
		if v, _ := cli.Egress.Lookup(dstIP, rules.ProtocolTCP, tc.port); v != tc.want {
			t.Errorf("egress TCP/%d: %v, want %v", tc.port, v, tc.want)
		}
	}
	sp, ok := c.ServiceAt(netip.MustParseAddr("10.96.0.1"), rules.ProtocolTCP, 80)
	if !ok || len(sp.Backends) != 1 || sp.Backends[0].Port != 8080 {
		t.Errorf("service backends %+v, want one at 8080 (first container wins)", sp.Backends)
	}
}
