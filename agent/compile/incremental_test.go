package compile

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/strictgate/strictgate/agent/rules"
)

// world mirrors the objects a Compiler was given, to rebuild from scratch.
type world struct {
	ns     map[string]*corev1.Namespace
	pods   map[types.NamespacedName]*corev1.Pod
	pols   map[types.NamespacedName]*networkingv1.NetworkPolicy
	svcs   map[types.NamespacedName]*corev1.Service
	slices map[types.NamespacedName]*discoveryv1.EndpointSlice
}

func (w *world) state() State {
	var s State
	s.Namespaces = slices.Collect(maps.Values(w.ns))
	s.Pods = slices.Collect(maps.Values(w.pods))
	s.Policies = slices.Collect(maps.Values(w.pols))
	s.Services = slices.Collect(maps.Values(w.svcs))
	s.EndpointSlices = slices.Collect(maps.Values(w.slices))
	return s
}

func snapshot(c *Compiler) map[types.NamespacedName]*rules.PodRules {
	out := map[types.NamespacedName]*rules.PodRules{}
	for _, k := range c.Pods() {
		out[k], _ = c.Rules(k)
	}
	return out
}

func diffKeys(a, b map[types.NamespacedName]*rules.PodRules) []types.NamespacedName {
	var out []types.NamespacedName
	for k, ra := range a {
		if rb, ok := b[k]; !ok || !equalPodRules(ra, rb) {
			out = append(out, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, compareKeys)
	return out
}

// TestIncrementalEqualsFull applies random sequences of changes one at a time and checks
// after each that the incremental result equals a full build, and that the reported
// changed pods are exactly the pods whose rules changed.
func TestIncrementalEqualsFull(t *testing.T) {
	sequences, steps := 150, 60
	if testing.Short() {
		sequences = 30
	}
	for seed := range sequences {
		r := rand.New(rand.NewPCG(uint64(seed), 7))
		w := &world{ns: map[string]*corev1.Namespace{}, pods: map[types.NamespacedName]*corev1.Pod{}, pols: map[types.NamespacedName]*networkingv1.NetworkPolicy{}, svcs: map[types.NamespacedName]*corev1.Service{}, slices: map[types.NamespacedName]*discoveryv1.EndpointSlice{}}
		c := New(Options{})
		// The node agent's compiler: rules for node-1's pods only, which must equal
		// the full compiler's for those pods.
		local := New(Options{Node: "node-1"})
		for step := range steps {
			before := snapshot(c)
			localBefore := snapshot(local)
			ni := r.IntN(len(nsNames))
			ns := nsNames[ni]
			var op string
			var apply func(c *Compiler) ([]types.NamespacedName, error)
			switch k := r.IntN(12); {
			case k < 4:
				pi := r.IntN(len(podNames))
				p := randPod(r, ns, ni, pi)
				op = "upsert pod " + ns + "/" + p.Name
				w.pods[types.NamespacedName{Namespace: ns, Name: p.Name}] = p
				apply = func(c *Compiler) ([]types.NamespacedName, error) { return c.UpsertPod(p) }
			case k == 4:
				key := types.NamespacedName{Namespace: ns, Name: podNames[r.IntN(len(podNames))]}
				op = "delete pod " + key.String()
				delete(w.pods, key)
				apply = func(c *Compiler) ([]types.NamespacedName, error) { return c.DeletePod(key), nil }
			case k == 5:
				n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: randLabels(r)}}
				op = "upsert namespace " + ns
				w.ns[ns] = n
				apply = func(c *Compiler) ([]types.NamespacedName, error) { return c.UpsertNamespace(n), nil }
			case k == 6:
				op = "delete namespace " + ns
				delete(w.ns, ns)
				apply = func(c *Compiler) ([]types.NamespacedName, error) { return c.DeleteNamespace(ns), nil }
			case k < 9:
				np := randPolicy(r, ns, r.IntN(3))
				op = "upsert policy " + ns + "/" + np.Name
				w.pols[types.NamespacedName{Namespace: ns, Name: np.Name}] = np
				apply = func(c *Compiler) ([]types.NamespacedName, error) { return c.UpsertPolicy(np) }
			case k == 9:
				key := types.NamespacedName{Namespace: ns, Name: fmt.Sprintf("p%d", r.IntN(3))}
				op = "delete policy " + key.String()
				delete(w.pols, key)
				apply = func(c *Compiler) ([]types.NamespacedName, error) { return c.DeletePolicy(key), nil }
			case k == 10:
				sv, es := randService(r, ns, ni, 0)
				key := types.NamespacedName{Namespace: ns, Name: sv.Name}
				op = "upsert service " + key.String()
				w.svcs[key] = sv
				if len(es) > 0 {
					w.slices[types.NamespacedName{Namespace: ns, Name: es[0].Name}] = es[0]
				}
				apply = func(c *Compiler) ([]types.NamespacedName, error) {
					changed, err := c.UpsertService(sv)
					if err != nil || len(es) == 0 {
						return changed, err
					}
					more, err := c.UpsertEndpointSlice(es[0])
					return slices.Compact(slices.SortedFunc(slices.Values(append(changed, more...)), compareKeys)), err
				}
			default:
				key := types.NamespacedName{Namespace: ns, Name: "s0-1"}
				op = "delete slice " + key.String()
				delete(w.slices, key)
				apply = func(c *Compiler) ([]types.NamespacedName, error) { return c.DeleteEndpointSlice(key), nil }
			}
			changed, err := apply(c)
			if err != nil {
				t.Fatalf("seed %d step %d %s: %v", seed, step, op, err)
			}
			localChanged, err := apply(local)
			if err != nil {
				t.Fatalf("seed %d step %d %s (node-1 compiler): %v", seed, step, op, err)
			}
			localAfter := snapshot(local)
			if actual := diffKeys(localBefore, localAfter); !slices.Equal(localChanged, actual) && op[:14] != "upsert service" {
				t.Fatalf("seed %d step %d %s: node-1 compiler reported %v, actual %v", seed, step, op, localChanged, actual)
			}
			for k, lr := range localAfter {
				fr, ok := c.Rules(k)
				if !ok || !equalPodRules(lr, fr) || w.pods[k].Spec.NodeName != "node-1" {
					t.Fatalf("seed %d step %d %s: node-1 compiler's %s differs from the full compiler's (or is not on node-1)", seed, step, op, k)
				}
			}
			for _, k := range c.Pods() {
				if _, ok := localAfter[k]; !ok && w.pods[k].Spec.NodeName == "node-1" {
					t.Fatalf("seed %d step %d %s: node-1 compiler lacks %s", seed, step, op, k)
				}
			}
			after := snapshot(c)
			// For two-part steps (service then slice) a pod may change and change back:
			// then it is reported although equal; allow reported ⊇ actual there.
			actual := diffKeys(before, after)
			if op[:14] == "upsert service" {
				for _, k := range actual {
					if !slices.Contains(changed, k) {
						t.Fatalf("seed %d step %d %s: %s changed but not reported (reported %v)", seed, step, op, k, changed)
					}
				}
			} else if !slices.Equal(changed, actual) {
				t.Fatalf("seed %d step %d %s: reported %v, actual %v", seed, step, op, changed, actual)
			}
			full, err := Build(w.state(), Options{})
			if err != nil {
				t.Fatalf("seed %d step %d: build: %v", seed, step, err)
			}
			if d := diffKeys(after, snapshot(full)); len(d) > 0 {
				k := d[0]
				a, _ := c.Rules(k)
				b, _ := full.Rules(k)
				t.Fatalf("seed %d step %d %s: incremental != full for %v\nincremental %s: %+v\nfull: %+v", seed, step, op, d, k, a, b)
			}
		}
	}
}

// TestIncrementalIsLocal checks that a change only recomputes pods it can affect: a
// label change of a pod nobody selects as a peer touches that pod alone.
func TestIncrementalIsLocal(t *testing.T) {
	s := State{}
	for ni, ns := range nsNames {
		for pi := range podNames {
			p := randPod(rand.New(rand.NewPCG(uint64(ni), uint64(pi))), ns, ni, pi)
			p.Labels = map[string]string{"app": "web"}
			p.Spec.HostNetwork, p.Status.Phase, p.Status.PodIP, p.Status.PodIPs = false, "", fmt.Sprintf("10.0.%d.%d", ni, pi+1), nil
			s.Pods = append(s.Pods, p)
		}
		s.Policies = append(s.Policies, &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "allow-from-db"},
			Spec:       networkingv1.NetworkPolicySpec{Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}}}}}},
		})
	}
	c, err := Build(s, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := s.Pods[0].DeepCopy()
	b.Labels["tier"] = "front"
	if changed, err := c.UpsertPod(b); err != nil || len(changed) != 0 {
		t.Fatalf("irrelevant label change: changed %v, %v; want nothing", changed, err)
	}
	b = b.DeepCopy()
	b.Labels["app"] = "db" // now a peer of every pod in x
	changed, err := c.UpsertPod(b)
	if err != nil {
		t.Fatal(err)
	}
	// a is a peer of itself too (the policy selects every pod of x).
	want := []types.NamespacedName{{Namespace: "x", Name: "a"}, {Namespace: "x", Name: "b"}, {Namespace: "x", Name: "c"}, {Namespace: "x", Name: "d"}}
	if !slices.Equal(changed, want) {
		t.Fatalf("changed %v, want %v", changed, want)
	}
}
