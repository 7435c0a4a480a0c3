package compile

import (
	"fmt"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// benchState is a cluster of namespaces×podsPerNS pods and namespaces×20 policies, a
// mix of what real clusters run: default deny, same-namespace allows by label (numeric
// and named ports), cross-namespace allows by namespace+pod selector, egress to DNS and
// to ipBlocks with excepts, and a cluster-wide monitoring allow.
func benchState(namespaces, podsPerNS int) State {
	var s State
	port := func(p int32) *intstr.IntOrString { v := intstr.FromInt32(p); return &v }
	named := func(n string) *intstr.IntOrString { v := intstr.FromString(n); return &v }
	udp := corev1.ProtocolUDP
	sel := func(kv ...string) *metav1.LabelSelector {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return &metav1.LabelSelector{MatchLabels: m}
	}
	for n := range namespaces {
		ns := fmt.Sprintf("ns-%d", n)
		s.Namespaces = append(s.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"team": fmt.Sprintf("team-%d", n%10), "env": fmt.Sprintf("env-%d", n%3)}}})
		for i := range podsPerNS {
			l := map[string]string{"app": fmt.Sprintf("app-%d", i%10), "tier": fmt.Sprintf("tier-%d", i%3), "version": fmt.Sprintf("v%d", i%5)}
			if i%25 == 0 {
				l["monitoring"] = "true"
			}
			s.Pods = append(s.Pods, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("pod-%d", i), Labels: l},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(8000 + i%4), Protocol: corev1.ProtocolTCP}}}}},
				Status:     corev1.PodStatus{PodIP: fmt.Sprintf("10.%d.%d.%d", 64+n/256, n%256, i+1)},
			})
		}
		add := func(name string, spec networkingv1.NetworkPolicySpec) {
			s.Policies = append(s.Policies, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec})
		}
		add("default-deny", networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}})
		for k := range 9 {
			add(fmt.Sprintf("app-%d-from-tier", k), networkingv1.NetworkPolicySpec{
				PodSelector: *sel("app", fmt.Sprintf("app-%d", k)),
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{{PodSelector: sel("tier", fmt.Sprintf("tier-%d", k%3))}},
					Ports: []networkingv1.NetworkPolicyPort{{Port: port(8080)}, {Port: named("http")}},
				}},
			})
		}
		for k := range 5 {
			end := int32(90)
			add(fmt.Sprintf("app-%d-from-team", k), networkingv1.NetworkPolicySpec{
				PodSelector: *sel("app", fmt.Sprintf("app-%d", k)),
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("team", fmt.Sprintf("team-%d", (n+k)%10)), PodSelector: sel("app", fmt.Sprintf("app-%d", (k+1)%10))}},
					Ports: []networkingv1.NetworkPolicyPort{{Port: port(80), EndPort: &end}},
				}},
			})
		}
		for k := range 3 {
			add(fmt.Sprintf("egress-%d", k), networkingv1.NetworkPolicySpec{
				PodSelector: *sel("tier", fmt.Sprintf("tier-%d", k)),
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
				Egress: []networkingv1.NetworkPolicyEgressRule{
					{To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("env", fmt.Sprintf("env-%d", k)), PodSelector: sel("app", "app-0")}}, Ports: []networkingv1.NetworkPolicyPort{{Port: port(53), Protocol: &udp}}},
					{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{fmt.Sprintf("10.%d.0.0/16", 64+k)}}}}, Ports: []networkingv1.NetworkPolicyPort{{Port: port(443)}}},
				},
			})
		}
		add("egress-internet", networkingv1.NetworkPolicySpec{
			PodSelector: *sel("version", "v0"),
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress:      []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: []string{"169.254.169.254/32", "10.0.0.0/8"}}}}}},
		})
		add("allow-monitoring", networkingv1.NetworkPolicySpec{
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: sel("monitoring", "true")}}, Ports: []networkingv1.NetworkPolicyPort{{Port: port(9090)}}}},
		})
	}
	return s
}

func reportSize(b *testing.B, c *Compiler) {
	entries := 0
	for _, r := range c.out {
		entries += len(r.Ingress.Entries) + len(r.Egress.Entries)
	}
	b.ReportMetric(float64(entries)/float64(len(c.out)), "entries/pod")
	// What the compiler keeps (its state and every pod's rules): heap after a GC,
	// measured with the compiler alive.
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	b.ReportMetric(float64(m.HeapAlloc)/(1<<20), "MB-heap")
	runtime.KeepAlive(c)
}

// BenchmarkCompileFull: 10k pods × 2k policies from scratch (agent start-up).
func BenchmarkCompileFull(b *testing.B) {
	s := benchState(100, 100)
	b.ReportAllocs()
	var c *Compiler
	for b.Loop() {
		var err error
		if c, err = Build(s, Options{}); err != nil {
			b.Fatal(err)
		}
	}
	reportSize(b, c)
}

// BenchmarkIncrementalLabelChange: one pod's label flips between two apps (changing
// which policies select it and which peers include it), in the 10k × 2k cluster.
func BenchmarkIncrementalLabelChange(b *testing.B) {
	s := benchState(100, 100)
	c, err := Build(s, Options{})
	if err != nil {
		b.Fatal(err)
	}
	pods := [2]*corev1.Pod{s.Pods[5050].DeepCopy(), s.Pods[5050].DeepCopy()}
	pods[0].Labels["app"], pods[1].Labels["app"] = "app-1", "app-2"
	if _, err := c.UpsertPod(pods[1]); err != nil { // leave app-0 (DNS peers) outside the loop
		b.Fatal(err)
	}
	b.ReportAllocs()
	changed := 0
	i := 0
	for b.Loop() {
		ch, err := c.UpsertPod(pods[i%2])
		if err != nil {
			b.Fatal(err)
		}
		changed += len(ch)
		i++
	}
	b.ReportMetric(float64(changed)/float64(i), "pods-changed/op")
}

// BenchmarkIncrementalPolicyChange: one policy's port changes back and forth.
func BenchmarkIncrementalPolicyChange(b *testing.B) {
	s := benchState(100, 100)
	c, err := Build(s, Options{})
	if err != nil {
		b.Fatal(err)
	}
	np := s.Policies[3]
	pols := [2]*networkingv1.NetworkPolicy{np.DeepCopy(), np.DeepCopy()}
	v := intstr.FromInt32(8081)
	pols[1].Spec.Ingress[0].Ports[0].Port = &v
	b.ReportAllocs()
	changed := 0
	i := 0
	for b.Loop() {
		ch, err := c.UpsertPolicy(pols[i%2])
		if err != nil {
			b.Fatal(err)
		}
		changed += len(ch)
		i++
	}
	b.ReportMetric(float64(changed)/float64(i), "pods-changed/op")
}

// BenchmarkCompileNode: the node agent's view of the same cluster: rules for the 100
// pods of one node (every pod elsewhere is still a peer), built from scratch.
func BenchmarkCompileNode(b *testing.B) {
	s := benchState(100, 100)
	for i, p := range s.Pods {
		p.Spec.NodeName = fmt.Sprintf("node-%d", i%100)
	}
	b.ReportAllocs()
	var c *Compiler
	for b.Loop() {
		var err error
		if c, err = Build(s, Options{Node: "node-7"}); err != nil {
			b.Fatal(err)
		}
	}
	if len(c.out) != 100 {
		b.Fatalf("%d pods compiled, want 100", len(c.out))
	}
	reportSize(b, c)
}

// BenchmarkIncrementalNodeLabelChange: the agent of one node sees a label change of a
// pod elsewhere that one of its pods selects as a peer.
func BenchmarkIncrementalNodeLabelChange(b *testing.B) {
	s := benchState(100, 100)
	for i, p := range s.Pods {
		p.Spec.NodeName = fmt.Sprintf("node-%d", i%100)
	}
	c, err := Build(s, Options{Node: "node-7"})
	if err != nil {
		b.Fatal(err)
	}
	pods := [2]*corev1.Pod{s.Pods[5050].DeepCopy(), s.Pods[5050].DeepCopy()}
	// pod-50 of ns-50 is a peer of node-7's pod-7 there (app-7-from-tier) as tier-1 only.
	pods[0].Labels["tier"], pods[1].Labels["tier"] = "tier-1", "tier-2"
	if _, err := c.UpsertPod(pods[1]); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	changed, i := 0, 0
	for b.Loop() {
		ch, err := c.UpsertPod(pods[i%2])
		if err != nil {
			b.Fatal(err)
		}
		changed += len(ch)
		i++
	}
	b.ReportMetric(float64(changed)/float64(i), "pods-changed/op")
}
