package podindex

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	toolscache "k8s.io/client-go/tools/cache"
)

func pod(ns, name string, l map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: l}}
}

func names(pods []*corev1.Pod) []string {
	out := make([]string, len(pods))
	for i, p := range pods {
		out[i] = p.Name
	}
	return out
}

func mustSelector(t *testing.T, s string) labels.Selector {
	t.Helper()
	sel, err := labels.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return sel
}

func TestSelect(t *testing.T) {
	ix := New()
	ix.Upsert(pod("shop", "web-1", map[string]string{"app": "web", "tier": "front"}))
	ix.Upsert(pod("shop", "web-0", map[string]string{"app": "web"}))
	ix.Upsert(pod("shop", "db-0", map[string]string{"app": "db", "tier": "back"}))
	ix.Upsert(pod("shop", "bare", nil))
	ix.Upsert(pod("other", "web-9", map[string]string{"app": "web"}))

	for _, tc := range []struct {
		sel  string
		want []string
	}{
		{"", []string{"bare", "db-0", "web-0", "web-1"}},
		{"app=web", []string{"web-0", "web-1"}},
		{"app==db", []string{"db-0"}},
		{"app in (web,db)", []string{"db-0", "web-0", "web-1"}},
		{"app=web,tier=front", []string{"web-1"}},
		{"tier", []string{"db-0", "web-1"}},
		{"!tier", []string{"bare", "web-0"}},
		{"app!=web", []string{"bare", "db-0"}},
		{"app notin (web)", []string{"bare", "db-0"}},
		{"app=nope", nil},
		{"app=web,nope", nil},
	} {
		t.Run(tc.sel, func(t *testing.T) {
			if got := names(ix.Select("shop", mustSelector(t, tc.sel))); !slices.Equal(got, tc.want) {
				t.Errorf("Select(%q) = %v, want %v", tc.sel, got, tc.want)
			}
		})
	}
	if got := ix.Select("shop", labels.Nothing()); len(got) != 0 {
		t.Errorf("labels.Nothing selected %v", names(got))
	}
	if got := ix.Select("absent", labels.Everything()); len(got) != 0 {
		t.Errorf("unknown namespace selected %v", names(got))
	}
	if n := ix.Count("shop"); n != 4 {
		t.Errorf("Count(shop) = %d, want 4", n)
	}
}

// TestIndexMatchesScan drives random creates, relabels and deletes and checks every
// selector operator against a plain scan of the pods the test keeps itself.
func TestIndexMatchesScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	keys := []string{"app", "tier", "team", "canary"}
	vals := []string{"a", "b", "c", ""}
	randLabels := func() map[string]string {
		l := map[string]string{}
		for _, k := range keys {
			if rng.IntN(2) == 0 {
				l[k] = vals[rng.IntN(len(vals))]
			}
		}
		return l
	}
	ops := []selection.Operator{selection.Equals, selection.DoubleEquals, selection.In, selection.NotEquals, selection.NotIn, selection.Exists, selection.DoesNotExist}
	randSelector := func() labels.Selector {
		sel := labels.NewSelector()
		for range rng.IntN(3) {
			op := ops[rng.IntN(len(ops))]
			var v []string
			switch op {
			case selection.Equals, selection.DoubleEquals, selection.NotEquals:
				v = []string{vals[rng.IntN(len(vals))]}
			case selection.In, selection.NotIn:
				v = []string{vals[rng.IntN(len(vals))], vals[rng.IntN(len(vals))]}
			}
			r, err := labels.NewRequirement(keys[rng.IntN(len(keys))], op, v)
			if err != nil {
				t.Fatal(err)
			}
			sel = sel.Add(*r)
		}
		return sel
	}

	ix := New()
	model := map[string]map[string]*corev1.Pod{} // namespace -> name -> pod
	h := ix.Handler()
	for step := range 3000 {
		ns := fmt.Sprintf("ns%d", rng.IntN(3))
		name := fmt.Sprintf("p%d", rng.IntN(40))
		if model[ns] == nil {
			model[ns] = map[string]*corev1.Pod{}
		}
		switch old := model[ns][name]; {
		case old != nil && rng.IntN(3) == 0:
			if rng.IntN(2) == 0 {
				h.OnDelete(old)
			} else {
				h.OnDelete(toolscache.DeletedFinalStateUnknown{Key: ns + "/" + name, Obj: old})
			}
			delete(model[ns], name)
		case old != nil:
			p := pod(ns, name, randLabels())
			h.OnUpdate(old, p)
			model[ns][name] = p
		default:
			p := pod(ns, name, randLabels())
			h.OnAdd(p, false)
			model[ns][name] = p
		}
		sel := randSelector()
		var want []string
		for _, p := range model[ns] {
			if sel.Matches(labels.Set(p.Labels)) {
				want = append(want, p.Name)
			}
		}
		slices.Sort(want)
		if got := names(ix.Select(ns, sel)); !slices.Equal(got, want) {
			t.Fatalf("step %d: Select(%s, %q) = %v, want %v", step, ns, sel, got, want)
		}
		if got := ix.Count(ns); got != len(model[ns]) {
			t.Fatalf("step %d: Count(%s) = %d, want %d", step, ns, got, len(model[ns]))
		}
	}
}

// countingSelector counts the pods Select asks it about.
type countingSelector struct {
	labels.Selector
	visited int
}

func (c *countingSelector) Matches(l labels.Labels) bool {
	c.visited++
	return c.Selector.Matches(l)
}

// TestSelectVisitsOnlyCandidates is the property the index exists for: a selector
// with an indexable requirement looks at the pods of its smallest posting, not at
// the namespace. A build that scans the namespace fails here (5,000 visits).
func TestSelectVisitsOnlyCandidates(t *testing.T) {
	ix := New()
	for i := range 5000 {
		ix.Upsert(pod("shop", fmt.Sprintf("pod-%04d", i), map[string]string{"app": fmt.Sprintf("app%d", i%1000), "tier": "backend"}))
	}
	for _, tc := range []struct {
		sel     string
		matched int
		visits  int // at most
	}{
		{"app=app7", 5, 5},
		{"app=app7,tier=backend", 5, 5}, // the smaller posting (5), not tier's 5,000
		{"tier=backend,app in (app1,app2)", 10, 10},
		{"app=none", 0, 0},
		{"app=app7,tier!=front", 5, 5}, // != cannot be answered, = can
		{"tier!=front", 5000, 5000},    // nothing indexable: the scan is the answer
	} {
		t.Run(tc.sel, func(t *testing.T) {
			c := &countingSelector{Selector: mustSelector(t, tc.sel)}
			got := ix.Select("shop", c)
			if len(got) != tc.matched {
				t.Errorf("selected %d pods, want %d", len(got), tc.matched)
			}
			if c.visited > tc.visits {
				t.Errorf("visited %d pods to answer %q, want at most %d", c.visited, tc.sel, tc.visits)
			}
		})
	}
}

func TestReady(t *testing.T) {
	var nilIndex *Index
	if nilIndex.Ready() {
		t.Error("a nil index reports ready")
	}
	ix := New()
	if !ix.Ready() {
		t.Error("an index without a sync function is not ready")
	}
	synced := false
	ix.SetSynced(func() bool { return synced })
	if ix.Ready() {
		t.Error("ready before its informer handler synced")
	}
	synced = true
	if !ix.Ready() {
		t.Error("not ready after its informer handler synced")
	}
}
