package compile

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/strictgate/strictgate/agent/rules"
)

// TestServiceBackendOnNode: the datapath always lets a pod talk to its own node, so a
// Service whose backends are on the node (the API server of a one-node cluster, a
// host-network pod) is reachable through its ClusterIP as it is directly, whatever
// the client's egress rules (found by test/conformance: an egress-isolated client was
// denied the ClusterIP although the node itself was allowed). Other backends must
// still be allowed by the rules.
func TestServiceBackendOnNode(t *testing.T) {
	node := netip.MustParseAddr("192.168.7.1")
	slice := func(name string, addrs ...string) *discoveryv1.EndpointSlice {
		port, pname := int32(6443), "https"
		es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{{Name: &pname, Port: &port}}}
		for _, a := range addrs {
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}})
		}
		return es
	}
	svc := func(name, ip string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: name}, Spec: corev1.ServiceSpec{
			ClusterIP: ip, ClusterIPs: []string{ip}, Ports: []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP}}}}
	}
	pod := func(name, ip string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: name, Labels: map[string]string{"app": name}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip}}
	}
	s := State{
		Pods: []*corev1.Pod{pod("client", "10.0.0.1"), pod("ok", "10.0.0.2"), pod("other", "10.0.0.3")},
		Policies: []*networkingv1.NetworkPolicy{{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "egress"}, Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress:      []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "ok"}}}}}},
		}}},
		Services:       []*corev1.Service{svc("node-only", "10.96.0.1"), svc("mixed-ok", "10.96.0.2"), svc("mixed-bad", "10.96.0.3")},
		EndpointSlices: []*discoveryv1.EndpointSlice{slice("node-only", "192.168.7.1"), slice("mixed-ok", "192.168.7.1", "10.0.0.2"), slice("mixed-bad", "192.168.7.1", "10.0.0.3")},
	}
	cases := []struct {
		name      string
		nodeIPs   []netip.Addr
		clusterIP string
		want      rules.Verdict
		wantRule  bool // allowed by a policy rule rather than the node exemption
	}{
		{"node-only without node IPs", nil, "10.96.0.1", rules.Deny, false},
		{"node-only", []netip.Addr{node}, "10.96.0.1", rules.Allow, false},
		{"node and an allowed pod", []netip.Addr{node}, "10.96.0.2", rules.Allow, true},
		{"node and a pod the rules do not allow", []netip.Addr{node}, "10.96.0.3", rules.Deny, false},
		{"mapped node address", []netip.Addr{netip.MustParseAddr("::ffff:192.168.7.1")}, "10.96.0.1", rules.Allow, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Build(s, Options{NodeIPs: tc.nodeIPs})
			if err != nil {
				t.Fatal(err)
			}
			r, _ := c.Rules(types.NamespacedName{Namespace: "x", Name: "client"})
			v, id := r.Egress.Lookup(netip.MustParseAddr(tc.clusterIP), rules.ProtocolTCP, 443)
			if v != tc.want {
				t.Fatalf("%s:443: %v, want %v", tc.clusterIP, v, tc.want)
			}
			if v == rules.Allow {
				_, named := c.Rule(id)
				if named != tc.wantRule || (!tc.wantRule && id != rules.RuleHost) {
					t.Errorf("rule id %#x: named rule %v, want %v (else RuleHost)", id, named, tc.wantRule)
				}
			}
			if v, _ := r.Egress.Lookup(netip.MustParseAddr(tc.clusterIP), rules.ProtocolTCP, 444); v != rules.Deny {
				t.Errorf("%s:444 (no such service port): %v", tc.clusterIP, v)
			}
		})
	}
}

// TestSetNodeIPs: changing the node's addresses at run time re-programs exactly what a
// fresh compile with the new addresses gives.
func TestSetNodeIPs(t *testing.T) {
	node := netip.MustParseAddr("192.168.7.1")
	port, pname := int32(6443), "https"
	s := State{
		Pods: []*corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "client"}, Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1"}}},
		Policies: []*networkingv1.NetworkPolicy{{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "deny"}, Spec: networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}}}},
		Services: []*corev1.Service{{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "kubernetes"}, Spec: corev1.ServiceSpec{
			ClusterIP: "10.96.0.1", Ports: []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP}}}}},
		EndpointSlices: []*discoveryv1.EndpointSlice{{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "kubernetes", Labels: map[string]string{discoveryv1.LabelServiceName: "kubernetes"}},
			AddressType: discoveryv1.AddressTypeIPv4, Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"192.168.7.1"}}},
			Ports: []discoveryv1.EndpointPort{{Name: &pname, Port: &port}}}},
	}
	client := types.NamespacedName{Namespace: "x", Name: "client"}
	c, err := Build(s, Options{})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		addrs   []netip.Addr
		changed bool
		want    rules.Verdict
	}{
		{[]netip.Addr{node}, true, rules.Allow},
		{[]netip.Addr{node, node}, false, rules.Allow},
		{[]netip.Addr{netip.MustParseAddr("192.168.7.2")}, true, rules.Deny},
		{nil, false, rules.Deny},
	}
	for i, st := range steps {
		changed := c.SetNodeIPs(st.addrs)
		if (len(changed) > 0) != st.changed {
			t.Errorf("step %d: changed %v, want changed=%v", i, changed, st.changed)
		}
		r, _ := c.Rules(client)
		if v, _ := r.Egress.Lookup(netip.MustParseAddr("10.96.0.1"), rules.ProtocolTCP, 443); v != st.want {
			t.Errorf("step %d: ClusterIP %v, want %v", i, v, st.want)
		}
		if again := c.Recompute(); len(again) > 0 {
			t.Errorf("step %d: a full recompute changed %v: incremental update inexact", i, again)
		}
	}
}
