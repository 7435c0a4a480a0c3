// Package podindex keeps the webhook's cached pods indexed by namespace and by
// label, so that the hygiene rules' question "which pods of this namespace does
// this selector pick?" costs what the answer costs, not what the namespace holds.
//
// A controller-runtime cache answers List(InNamespace) by copying every pod of the
// namespace into the list (about 1 KB each even when stripped) and the caller then
// matches each one: at 5,000 pods that was most of a NetworkPolicy review. The
// index is fed by the same informer (Upsert/Delete from its event handlers) and
// hands out the informer's own objects, which callers must treat as read-only.
package podindex

import (
	"sort"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	toolscache "k8s.io/client-go/tools/cache"
)

// Index is safe for concurrent use: one writer (the informer) and many readers
// (admission requests).
type Index struct {
	mu     sync.RWMutex
	ns     map[string]*namespace
	synced func() bool
}

type namespace struct {
	pods map[string]*corev1.Pod // by name
	// byLabel[key][value] holds the names of the pods with that label.
	byLabel map[string]map[string]map[string]struct{}
}

// New returns an empty index.
func New() *Index {
	return &Index{ns: map[string]*namespace{}}
}

// SetSynced tells the index how to know that it has seen its informer's initial
// list (the handler registration's HasSynced). Call it before the index is read.
func (ix *Index) SetSynced(synced func() bool) {
	ix.synced = synced
}

// Ready is whether the index holds the whole informer view: a nil index is never
// ready, one without SetSynced always is.
func (ix *Index) Ready() bool {
	if ix == nil {
		return false
	}
	return ix.synced == nil || ix.synced()
}

// Upsert adds pod or replaces the stored version of it.
func (ix *Index) Upsert(pod *corev1.Pod) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	n := ix.ns[pod.Namespace]
	if n == nil {
		n = &namespace{pods: map[string]*corev1.Pod{}, byLabel: map[string]map[string]map[string]struct{}{}}
		ix.ns[pod.Namespace] = n
	}
	if old := n.pods[pod.Name]; old != nil {
		n.unlabel(old)
	}
	n.pods[pod.Name] = pod
	for k, v := range pod.Labels {
		vals := n.byLabel[k]
		if vals == nil {
			vals = map[string]map[string]struct{}{}
			n.byLabel[k] = vals
		}
		names := vals[v]
		if names == nil {
			names = map[string]struct{}{}
			vals[v] = names
		}
		names[pod.Name] = struct{}{}
	}
}

// Delete forgets the pod namespace/name; unknown pods are ignored.
func (ix *Index) Delete(namespaceName, name string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	n := ix.ns[namespaceName]
	if n == nil {
		return
	}
	old := n.pods[name]
	if old == nil {
		return
	}
	n.unlabel(old)
	delete(n.pods, name)
	if len(n.pods) == 0 {
		delete(ix.ns, namespaceName)
	}
}

func (n *namespace) unlabel(pod *corev1.Pod) {
	for k, v := range pod.Labels {
		vals := n.byLabel[k]
		delete(vals[v], pod.Name)
		if len(vals[v]) == 0 {
			delete(vals, v)
		}
		if len(vals) == 0 {
			delete(n.byLabel, k)
		}
	}
}

// Count is the number of pods in the namespace.
func (ix *Index) Count(namespaceName string) int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if n := ix.ns[namespaceName]; n != nil {
		return len(n.pods)
	}
	return 0
}

// Select returns the pods of the namespace that sel matches, sorted by name. The
// pods are the informer's objects: do not modify them. A selector that cannot
// match (labels.Nothing) selects nothing.
func (ix *Index) Select(namespaceName string, sel labels.Selector) []*corev1.Pod {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	n := ix.ns[namespaceName]
	if n == nil {
		return nil
	}
	reqs, selectable := sel.Requirements()
	if !selectable {
		return nil
	}
	var out []*corev1.Pod
	if names, ok := n.candidates(reqs); ok {
		out = make([]*corev1.Pod, 0, len(names))
		for name := range names {
			if p := n.pods[name]; sel.Matches(labels.Set(p.Labels)) {
				out = append(out, p)
			}
		}
	} else {
		for _, p := range n.pods {
			if sel.Matches(labels.Set(p.Labels)) {
				out = append(out, p)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// candidates is a superset of the pods reqs can match, from the smallest posting
// among the requirements the index can answer (=, ==, in, exists); ok is false when
// none can (only !=, notin, !, gt, lt, or no requirement at all): scan everything.
func (n *namespace) candidates(reqs labels.Requirements) (map[string]struct{}, bool) {
	var best []map[string]struct{}
	bestSize := -1
	for _, r := range reqs {
		vals := n.byLabel[r.Key()]
		var sets []map[string]struct{}
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals, selection.In:
			for v := range r.Values() {
				if s := vals[v]; len(s) > 0 {
					sets = append(sets, s)
				}
			}
		case selection.Exists:
			for _, s := range vals {
				sets = append(sets, s)
			}
		default:
			continue
		}
		size := 0
		for _, s := range sets {
			size += len(s)
		}
		if bestSize < 0 || size < bestSize {
			best, bestSize = sets, size
		}
		if size == 0 {
			break // nothing can match
		}
	}
	if bestSize < 0 {
		return nil, false
	}
	if len(best) == 1 {
		return best[0], true
	}
	union := make(map[string]struct{}, bestSize)
	for _, s := range best {
		for name := range s {
			union[name] = struct{}{}
		}
	}
	return union, true
}

// Handler is the informer event handler that keeps ix current (register it with
// the pod informer's AddEventHandler).
func (ix *Index) Handler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if p, ok := obj.(*corev1.Pod); ok {
				ix.Upsert(p)
			}
		},
		UpdateFunc: func(_, obj any) {
			if p, ok := obj.(*corev1.Pod); ok {
				ix.Upsert(p)
			}
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				ix.Delete(p.Namespace, p.Name)
			}
		},
	}
}
