package agent

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/strictgate/strictgate/agent/gate"
	"github.com/strictgate/strictgate/agent/netdev"
	"github.com/strictgate/strictgate/agent/rules"
)

// benchDatapath keeps the last rules per interface; it costs next to nothing, so the
// benchmark measures the agent (compile, lookups, bookkeeping), not the kernel.
type benchDatapath struct{ r map[int]*rules.PodRules }

func (b *benchDatapath) Attach(int, rules.State) error   { return nil }
func (b *benchDatapath) Register(int, rules.State) error { return nil }
func (b *benchDatapath) Program(i int, r *rules.PodRules) error {
	b.r[i] = r
	return nil
}
func (b *benchDatapath) Programmed(i int, r *rules.PodRules, _ bool) (bool, bool, error) {
	return b.r[i] == r, true, nil
}
func (b *benchDatapath) Close(int) error                 { return nil }
func (b *benchDatapath) Detach(int) error                { return nil }
func (b *benchDatapath) Attached() ([]int, error)        { return nil, nil }
func (b *benchDatapath) SetHostAddrs([]netip.Addr) error { return nil }
func (b *benchDatapath) Sweep() error                    { return nil }

type benchIfs struct{}

func (benchIfs) HostInterface(netip.Addr) (netdev.Interface, error) {
	return netdev.Interface{Index: 7, Name: "veth7", Kind: "veth"}, nil
}
func (benchIfs) ByIndex(int) (netdev.Interface, error) { return netdev.Interface{Index: 7}, nil }

type benchGate struct{}

func (benchGate) Set(context.Context, *corev1.Pod, gate.Condition) (bool, error) { return false, nil }

// BenchmarkReconcilePolicyChange: one local pod among 2000 peers in 20 namespaces; each
// iteration changes the policy selecting it (alternating its port) and reconciles the
// pod: incremental compile + interface lookup + program + verify + condition decision.
// The kernel and the API server are stubbed (see the integration tests for those).
func BenchmarkReconcilePolicyChange(b *testing.B) {
	var objs []any
	for i := range 2000 {
		ns := fmt.Sprintf("ns%d", i%20)
		node := "other"
		if i == 0 {
			node = "bench-node"
		}
		objs = append(objs, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i), Namespace: ns, UID: types.UID(fmt.Sprint(i)),
				Labels: map[string]string{"app": fmt.Sprintf("a%d", i%10)}},
			Spec: corev1.PodSpec{NodeName: node, ReadinessGates: []corev1.PodReadinessGate{{ConditionType: gate.ConditionType}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: fmt.Sprintf("10.%d.%d.%d", 100+i/65536, i/256%256, i%256+1),
				PodIPs: []corev1.PodIP{{IP: fmt.Sprintf("10.%d.%d.%d", 100+i/65536, i/256%256, i%256+1)}}},
		})
	}
	pol := func(port int) *networkingv1.NetworkPolicy {
		p := intstr.FromInt(port)
		return &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns0", Generation: int64(port)},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "a0"}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "a3"}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Port: &p}},
				}},
			},
		}
	}
	cs := fake.NewClientset()
	cfg := DefaultConfig()
	cfg.NodeName = "bench-node"
	cfg.ExcludedNamespaces = []string{"ns0"} // no default-deny policy: measure programming, not the wait
	a, err := New(cfg, Deps{Client: cs, Datapath: &benchDatapath{r: map[int]*rules.PodRules{}}, Interfaces: benchIfs{}, Gate: benchGate{},
		HostAddrs: func() ([]netip.Addr, error) { return nil, nil }})
	if err != nil {
		b.Fatal(err)
	}
	for _, o := range objs {
		if err := a.podInf.GetStore().Add(o); err != nil {
			b.Fatal(err)
		}
	}
	if err := a.factory.Networking().V1().NetworkPolicies().Informer().GetStore().Add(pol(80)); err != nil {
		b.Fatal(err)
	}
	if err := a.build(); err != nil {
		b.Fatal(err)
	}
	key := types.NamespacedName{Namespace: "ns0", Name: "p0"}
	ctx := context.Background()
	if err := a.reconcile(ctx, key); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p := pol(8000 + i%2)
		a.onPolicy(p)
		if err := a.reconcile(ctx, key); err != nil {
			b.Fatal(err)
		}
	}
	if a.pods[key].status != statusProgrammed {
		b.Fatal("pod not programmed")
	}
}
