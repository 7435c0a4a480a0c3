package compile

// Truth tables in the spirit of the upstream Kubernetes e2e `netpol` suite: namespaces
// x, y, z (labelled ns=<name>), pods a, b, c in each (labelled pod=<name>) serving
// TCP/UDP/SCTP on ports 80 and 81 under names serve-<port>-<proto>. Each case applies
// policies and checks reachability between every pair of pods, both ends judged.

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/strictgate/strictgate/agent/rules"
)

type modelPod struct{ ns, pod string }

func (p modelPod) String() string { return p.ns + "/" + p.pod }

func (p modelPod) ip() netip.Addr {
	return netip.MustParseAddr(fmt.Sprintf("10.0.%d.%d", strings.Index("xyz", p.ns), strings.Index("abc", p.pod)+1))
}

func modelState() (State, []modelPod) {
	var s State
	var pods []modelPod
	for _, ns := range []string{"x", "y", "z"} {
		s.Namespaces = append(s.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"ns": ns}}})
		for _, name := range []string{"a", "b", "c"} {
			mp := modelPod{ns, name}
			pods = append(pods, mp)
			var ports []corev1.ContainerPort
			for _, port := range []int32{80, 81} {
				for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP} {
					ports = append(ports, corev1.ContainerPort{Name: fmt.Sprintf("serve-%d-%s", port, strings.ToLower(string(proto))), ContainerPort: port, Protocol: proto})
				}
			}
			s.Pods = append(s.Pods, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"pod": name}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: ports}}},
				Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: mp.ip().String()},
			})
		}
	}
	return s, pods
}

func decodePolicies(t *testing.T, docs string) []*networkingv1.NetworkPolicy {
	t.Helper()
	var out []*networkingv1.NetworkPolicy
	for _, doc := range strings.Split(docs, "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		np := &networkingv1.NetworkPolicy{}
		if err := yaml.UnmarshalStrict([]byte(doc), np); err != nil {
			t.Fatalf("policy yaml: %v\n%s", err, doc)
		}
		out = append(out, np)
	}
	return out
}

// reach judges from→to as the datapath would: egress at from, ingress at to.
func reach(c *Compiler, from, to modelPod, proto rules.Protocol, port uint16) bool {
	e, _ := c.Rules(types.NamespacedName{Namespace: from.ns, Name: from.pod})
	i, _ := c.Rules(types.NamespacedName{Namespace: to.ns, Name: to.pod})
	ve, _ := e.Egress.Lookup(to.ip(), proto, port)
	vi, _ := i.Ingress.Lookup(from.ip(), proto, port)
	return ve == rules.Allow && vi == rules.Allow
}

func TestNetpolTruthTables(t *testing.T) {
	is := func(p modelPod, s string) bool { return p.String() == s }
	tcp, udp, sctp := rules.ProtocolTCP, rules.ProtocolUDP, rules.ProtocolSCTP
	cases := []struct {
		name     string
		policies string
		proto    rules.Protocol
		port     uint16
		want     func(from, to modelPod) bool
	}{
		{name: "no policies: everything reachable", proto: tcp, port: 80,
			want: func(f, to modelPod) bool { return true }},
		{name: "deny all ingress in x", proto: tcp, port: 80, policies: `
metadata: {name: deny-all, namespace: x}
spec: {podSelector: {}, ingress: []}`,
			want: func(f, to modelPod) bool { return to.ns != "x" }},
		{name: "deny all egress in x (explicit policyTypes, no rules)", proto: udp, port: 81, policies: `
metadata: {name: deny-egress, namespace: x}
spec: {podSelector: {}, policyTypes: [Egress]}`,
			want: func(f, to modelPod) bool { return f.ns != "x" }},
		{name: "allow ingress from same namespace only", proto: tcp, port: 80, policies: `
metadata: {name: allow-same-ns, namespace: x}
spec:
  podSelector: {}
  ingress: [{from: [{podSelector: {}}]}]`,
			want: func(f, to modelPod) bool { return to.ns != "x" || f.ns == "x" }},
		{name: "allow ingress to x/a from namespace y by label", proto: tcp, port: 81, policies: `
metadata: {name: allow-y, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "y"}}}]}]`,
			want: func(f, to modelPod) bool { return !is(to, "x/a") || f.ns == "y" }},
		{name: "namespaceSelector by the metadata.name label", proto: tcp, port: 80, policies: `
metadata: {name: allow-z, namespace: x}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: z}}}]}]`,
			want: func(f, to modelPod) bool { return to.ns != "x" || f.ns == "z" }},
		{name: "pod and namespace selector in one peer: AND", proto: tcp, port: 80, policies: `
metadata: {name: allow-y-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "y"}}, podSelector: {matchLabels: {pod: b}}}]}]`,
			want: func(f, to modelPod) bool { return !is(to, "x/a") || is(f, "y/b") }},
		{name: "pod and namespace selector in two peers: OR", proto: tcp, port: 80, policies: `
metadata: {name: allow-y-or-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "y"}}}, {podSelector: {matchLabels: {pod: b}}}]}]`,
			want: func(f, to modelPod) bool { return !is(to, "x/a") || f.ns == "y" || is(f, "x/b") }},
		{name: "namespaceSelector {} with podSelector: that pod in every namespace", proto: tcp, port: 80, policies: `
metadata: {name: allow-any-c, namespace: x}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {pod: c}}}]}]`,
			want: func(f, to modelPod) bool { return to.ns != "x" || f.pod == "c" }},
		{name: "matchExpressions NotIn and DoesNotExist", proto: tcp, port: 80, policies: `
metadata: {name: allow-not-y, namespace: x}
spec:
  podSelector: {matchExpressions: [{key: pod, operator: In, values: [a, b]}]}
  ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: ns, operator: NotIn, values: ["y"]}]}, podSelector: {matchExpressions: [{key: other, operator: DoesNotExist}]}}]}]`,
			want: func(f, to modelPod) bool { return to.ns != "x" || to.pod == "c" || f.ns != "y" }},
		{name: "named port: serve-81-tcp admits 81", proto: tcp, port: 81, policies: `
metadata: {name: allow-81-named, namespace: x}
spec:
  podSelector: {}
  ingress: [{ports: [{port: serve-81-tcp}]}]`,
			want: func(f, to modelPod) bool { return true }},
		{name: "named port: serve-81-tcp does not admit 80", proto: tcp, port: 80, policies: `
metadata: {name: allow-81-named, namespace: x}
spec:
  podSelector: {}
  ingress: [{ports: [{port: serve-81-tcp}]}]`,
			want: func(f, to modelPod) bool { return to.ns != "x" }},
		{name: "named port: protocol must match (serve-81-udp, TCP traffic)", proto: tcp, port: 81, policies: `
metadata: {name: allow-81-udp-named, namespace: x}
spec:
  podSelector: {}
  ingress: [{ports: [{port: serve-81-udp, protocol: UDP}]}]`,
			want: func(f, to modelPod) bool { return to.ns != "x" }},
		{name: "egress named port resolved on the destination pod", proto: udp, port: 80, policies: `
metadata: {name: egress-named, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{to: [{namespaceSelector: {matchLabels: {ns: "y"}}}], ports: [{port: serve-80-udp, protocol: UDP}]}]`,
			want: func(f, to modelPod) bool { return !is(f, "x/a") || to.ns == "y" }},
		{name: "endPort range 80-81 admits 81", proto: tcp, port: 81, policies: `
metadata: {name: range, namespace: x}
spec:
  podSelector: {}
  ingress: [{ports: [{port: 80, endPort: 81}]}]`,
			want: func(f, to modelPod) bool { return true }},
		{name: "endPort range 79-80 does not admit 81", proto: tcp, port: 81, policies: `
metadata: {name: range, namespace: x}
spec:
  podSelector: {}
  ingress: [{ports: [{port: 79, endPort: 80}]}]`,
			want: func(f, to modelPod) bool { return to.ns != "x" }},
		{name: "port without protocol is TCP only", proto: udp, port: 80, policies: `
metadata: {name: tcp-80, namespace: x}
spec:
  podSelector: {}
  ingress: [{ports: [{port: 80}]}]`,
			want: func(f, to modelPod) bool { return to.ns != "x" }},
		{name: "SCTP port", proto: sctp, port: 80, policies: `
metadata: {name: sctp-80, namespace: x}
spec:
  podSelector: {}
  ingress: [{ports: [{port: 80, protocol: SCTP}]}]`,
			want: func(f, to modelPod) bool { return true }},
		{name: "protocol without port: all ports of it", proto: udp, port: 81, policies: `
metadata: {name: udp-any, namespace: x}
spec:
  podSelector: {}
  ingress: [{ports: [{protocol: UDP}]}]`,
			want: func(f, to modelPod) bool { return true }},
		{name: "egress to ipBlock with except", proto: tcp, port: 80, policies: `
metadata: {name: egress-block, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.1.2/32, 10.0.2.0/24]}}]}]`,
			want: func(f, to modelPod) bool { return !is(f, "x/a") || (to.ns != "z" && !is(to, "y/b")) }},
		{name: "ingress from ipBlock matches pod IPs", proto: tcp, port: 80, policies: `
metadata: {name: ingress-block, namespace: x}
spec:
  podSelector: {}
  ingress: [{from: [{ipBlock: {cidr: 10.0.1.0/24}}]}]`,
			want: func(f, to modelPod) bool { return to.ns != "x" || f.ns == "y" }},
		{name: "multiple policies are a union", proto: tcp, port: 80, policies: `
metadata: {name: allow-y, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "y"}}}]}]
---
metadata: {name: allow-x-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]`,
			want: func(f, to modelPod) bool { return !is(to, "x/a") || f.ns == "y" || is(f, "x/b") }},
		{name: "deny-all plus allow: allow wins (union)", proto: tcp, port: 80, policies: `
metadata: {name: deny-all, namespace: x}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
---
metadata: {name: allow-egress-y, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress: [{to: [{namespaceSelector: {matchLabels: {ns: "y"}}}]}]`,
			want: func(f, to modelPod) bool { return to.ns != "x" && (f.ns != "x" || to.ns == "y") }},
		{name: "egress rules ignored without Egress in policyTypes", proto: tcp, port: 80, policies: `
metadata: {name: ingress-only, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress: [{}]
  egress: [{to: [{podSelector: {matchLabels: {pod: none}}}]}]`,
			want: func(f, to modelPod) bool { return true }},
		{name: "policyTypes inferred: egress rules make it an egress policy", proto: tcp, port: 80, policies: `
metadata: {name: inferred, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  egress: [{to: [{podSelector: {matchLabels: {pod: b}}}]}]`,
			want: func(f, to modelPod) bool { return !is(to, "x/a") && (!is(f, "x/a") || is(to, "x/b")) }},
		{name: "empty from and ports: allow all", proto: udp, port: 81, policies: `
metadata: {name: allow-all, namespace: x}
spec: {podSelector: {}, ingress: [{}]}
---
metadata: {name: deny-all, namespace: x}
spec: {podSelector: {}}`,
			want: func(f, to modelPod) bool { return true }},
		{name: "policy in y does not affect x", proto: tcp, port: 80, policies: `
metadata: {name: deny-all, namespace: "y"}
spec: {podSelector: {matchLabels: {pod: c}}}`,
			want: func(f, to modelPod) bool { return !is(to, "y/c") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, pods := modelState()
			s.Policies = decodePolicies(t, tc.policies)
			c, err := Build(s, Options{})
			if err != nil {
				t.Fatal(err)
			}
			var got, want strings.Builder
			wrong := false
			header := "      " + strings.Join(podNamesOf(pods), " ") + "\n"
			got.WriteString(header)
			want.WriteString(header)
			for _, f := range pods {
				fmt.Fprintf(&got, "%-5s", f)
				fmt.Fprintf(&want, "%-5s", f)
				for _, to := range pods {
					if f == to {
						got.WriteString("   -")
						want.WriteString("   -")
						continue
					}
					g, w := reach(c, f, to, tc.proto, tc.port), tc.want(f, to)
					got.WriteString("   " + mark(g))
					want.WriteString("   " + mark(w))
					wrong = wrong || g != w
				}
				got.WriteString("\n")
				want.WriteString("\n")
			}
			if wrong {
				t.Errorf("%s/%d reachability (rows from, columns to; . allow, X deny)\ngot:\n%swant:\n%s", tc.proto, tc.port, got.String(), want.String())
			}
		})
	}
}

func podNamesOf(pods []modelPod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.String())
	}
	return out
}

func mark(b bool) string {
	if b {
		return "."
	}
	return "X"
}
