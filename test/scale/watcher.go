package scale

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/strictgate/strictgate/agent/compile"
)

// Mode is the agent design a watcher reproduces.
type Mode string

const (
	// ModeToday is the agent as agent.New builds it: cluster-wide informers on Pods,
	// Namespaces, NetworkPolicies, Services and EndpointSlices, plus its own Node.
	ModeToday Mode = "today"
	// ModeTodayJSON is ModeToday with JSON on the wire. client-go v0.37's typed clients
	// already ask for protobuf for built-in types, so ModeToday is protobuf; this is
	// the cost for agents built with older client-go or with JSON forced.
	ModeTodayJSON Mode = "today-json"
	// ModeLocalPods is option B's built-in part (docs/scale.md): the node's own Pods
	// (field selector spec.nodeName) instead of all Pods, and Namespaces,
	// NetworkPolicies, Services and EndpointSlices as today. It lacks option B's
	// PodEndpoint stream (not implemented yet), so its rules miss remote peers: it
	// measures the traffic of everything but that stream, not a working agent.
	ModeLocalPods Mode = "local-pods"
)

// countingTransport counts the response bytes the API server sends to one agent.
type countingTransport struct {
	rt    http.RoundTripper
	bytes *atomic.Int64
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(r)
	if resp != nil && resp.Body != nil {
		resp.Body = &countingBody{ReadCloser: resp.Body, n: t.bytes}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// Counts is what one watcher received over a phase.
type Counts struct {
	Bytes      int64 // response bytes on the wire (after TLS, before decoding)
	Objects    int64 // objects delivered to handlers: adds, updates, deletes
	FullPods   int64 // full Pod objects among them
	ForeignPod int64 // full Pod objects of pods on other nodes
}

func (c Counts) sub(o Counts) Counts {
	return Counts{c.Bytes - o.Bytes, c.Objects - o.Objects, c.FullPods - o.FullPods, c.ForeignPod - o.ForeignPod}
}

// watcher is one node's agent watch and compile layer: the informers the agent's design
// runs and the compiler fed by them exactly as agent/reconcile.go feeds it (one batch
// Build after sync, then incremental upserts), without the datapath or gate.
type watcher struct {
	node string
	mode Mode

	bytes, objects, fullPods, foreignPods atomic.Int64

	mu     sync.Mutex
	comp   *compile.Compiler
	synced bool
	// ipAt holds, for pods this node's churn is waiting on, when the harness wrote
	// their IP; lat collects the time to the compiler holding their rules.
	ipAt map[types.NamespacedName]time.Time
	lat  []time.Duration

	factories []informers.SharedInformerFactory
	sync      []cache.InformerSynced
	state     func() (compile.State, error)
}

func newWatcher(rc *rest.Config, node string, mode Mode) (*watcher, error) {
	w := &watcher{node: node, mode: mode, ipAt: map[types.NamespacedName]time.Time{}}
	rc = rest.CopyConfig(rc)
	rc.QPS, rc.Burst = 50, 100
	if mode == ModeTodayJSON {
		rc.ContentType = "application/json"
		rc.AcceptContentTypes = "application/json"
	}
	// Compression would hide what the watch costs the API server to encode and send;
	// client-go asks for gzip only on lists anyway. Count what arrives.
	rc.Wrap(func(rt http.RoundTripper) http.RoundTripper { return countingTransport{rt: rt, bytes: &w.bytes} })
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	switch mode {
	case ModeToday, ModeTodayJSON:
		err = w.today(cs, false)
	case ModeLocalPods:
		err = w.today(cs, true)
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	return w, err
}

// today mirrors agent.New's informers; localPods restricts the Pod informer to the node.
func (w *watcher) today(cs kubernetes.Interface, localPods bool) error {
	f := informers.NewSharedInformerFactory(cs, 0)
	podF := f
	if localPods {
		podF = informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", w.node).String()
		}))
	}
	nodeF := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", w.node).String()
	}))
	w.factories = []informers.SharedInformerFactory{f, nodeF}
	if localPods {
		w.factories = append(w.factories, podF)
	}
	pods := podF.Core().V1().Pods()
	nss, pols := f.Core().V1().Namespaces(), f.Networking().V1().NetworkPolicies()
	svcs, eps := f.Core().V1().Services(), f.Discovery().V1().EndpointSlices()
	for _, inf := range []cache.SharedIndexInformer{pods.Informer(), nss.Informer(), pols.Informer(), svcs.Informer(), eps.Informer(), nodeF.Core().V1().Nodes().Informer()} {
		w.sync = append(w.sync, inf.HasSynced)
	}
	w.state = func() (s compile.State, err error) {
		if s.Pods, err = pods.Lister().List(labels.Everything()); err != nil {
			return s, err
		}
		if s.Namespaces, err = nss.Lister().List(labels.Everything()); err != nil {
			return s, err
		}
		if s.Policies, err = pols.Lister().List(labels.Everything()); err != nil {
			return s, err
		}
		if s.Services, err = svcs.Lister().List(labels.Everything()); err != nil {
			return s, err
		}
		s.EndpointSlices, err = eps.Lister().List(labels.Everything())
		return s, err
	}
	return w.handle(pods.Informer(), nss.Informer(), pols.Informer(), svcs.Informer(), eps.Informer(), nodeF.Core().V1().Nodes().Informer())
}

func (w *watcher) handle(infs ...cache.SharedIndexInformer) error {
	for _, inf := range infs {
		h := cache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { w.on(o, false) },
			UpdateFunc: func(_, o any) { w.on(o, false) },
			DeleteFunc: func(o any) { w.on(o, true) },
		}
		reg, err := inf.AddEventHandler(h)
		if err != nil {
			return err
		}
		// The store syncs before the handler has been told of every listed object;
		// sync counts wait for the handlers too.
		w.sync = append(w.sync, reg.HasSynced)
	}
	return nil
}

func (w *watcher) on(o any, deleted bool) {
	w.objects.Add(1)
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	if p, ok := o.(*corev1.Pod); ok {
		w.fullPods.Add(1)
		if p.Spec.NodeName != w.node {
			w.foreignPods.Add(1)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.synced {
		return // Build takes everything from the synced caches, as the agent does
	}
	switch o := o.(type) {
	case *corev1.Pod:
		k := types.NamespacedName{Namespace: o.Namespace, Name: o.Name}
		if deleted {
			w.comp.DeletePod(k)
			return
		}
		_, _ = w.comp.UpsertPod(o)
		w.observe(k, o.Status.PodIP != "")
	case *corev1.Namespace:
		if deleted {
			w.comp.DeleteNamespace(o.Name)
		} else {
			w.comp.UpsertNamespace(o)
		}
	case *networkingv1.NetworkPolicy:
		if deleted {
			w.comp.DeletePolicy(types.NamespacedName{Namespace: o.Namespace, Name: o.Name})
		} else {
			_, _ = w.comp.UpsertPolicy(o)
		}
	case *corev1.Service:
		if deleted {
			w.comp.DeleteService(types.NamespacedName{Namespace: o.Namespace, Name: o.Name})
		} else {
			_, _ = w.comp.UpsertService(o)
		}
	case *discoveryv1.EndpointSlice:
		if deleted {
			w.comp.DeleteEndpointSlice(types.NamespacedName{Namespace: o.Namespace, Name: o.Name})
		} else {
			_, _ = w.comp.UpsertEndpointSlice(o)
		}
	}
}

// observe records the latency of a local pod the churn waits on once it has an IP and
// the compiler holds its rules (caller holds w.mu).
func (w *watcher) observe(k types.NamespacedName, hasIP bool) {
	t0, ok := w.ipAt[k]
	if !ok || !hasIP {
		return
	}
	if _, ok := w.comp.Rules(k); ok {
		w.lat = append(w.lat, time.Since(t0))
		delete(w.ipAt, k)
	}
}

// expect registers a local pod whose IP is about to be written.
func (w *watcher) expect(k types.NamespacedName, at time.Time) {
	w.mu.Lock()
	w.ipAt[k] = at
	w.mu.Unlock()
}

// start runs the informers, waits for their sync and builds the compiler.
func (w *watcher) start(ctx context.Context) error {
	for _, f := range w.factories {
		f.Start(ctx.Done())
	}
	if !cache.WaitForCacheSync(ctx.Done(), w.sync...) {
		return fmt.Errorf("%s: sync caches: %w", w.node, ctx.Err())
	}
	s, err := w.state()
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.comp = compile.BuildLenient(s, compile.Options{Node: w.node}, func(string, types.NamespacedName, error) {})
	w.synced = true
	return nil
}

func (w *watcher) stop() {
	for _, f := range w.factories {
		f.Shutdown()
	}
}

func (w *watcher) counts() Counts {
	return Counts{w.bytes.Load(), w.objects.Load(), w.fullPods.Load(), w.foreignPods.Load()}
}

// compiled returns how many local pods have rules.
func (w *watcher) compiled() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.comp == nil {
		return 0
	}
	return len(w.comp.Pods())
}
