// Package agent is strictgate's node agent: it watches the cluster, compiles each local
// pod's NetworkPolicy (agent/compile), programs it into the eBPF datapath on the pod's
// host-side interface, and only then sets the pod's readiness condition
// strictgate.dev/policy-programmed (agent/gate). Verdict events and kernel counters
// become policy event logs and metrics (agent/events).
//
// The order is the point: a pod's condition turns True only after the rules computed
// for it are in the kernel and read back, and the agent never moves a pod to a more open
// state than its rules: at attach time the mode's closed (strict) or open (standard)
// unprogrammed state, afterwards exactly its compiled rules. A restarted agent adopts
// the pinned state and re-verifies; pods whose kernel state already matches are neither
// rewritten nor re-patched.
package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/strictgate/strictgate/agent/compile"
	"github.com/strictgate/strictgate/agent/gate"
	"github.com/strictgate/strictgate/agent/netdev"
	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/internal/contract"
)

// Datapath is what the agent needs from the eBPF datapath (agent/datapath; see
// NewDatapath for the adapter). Methods must be safe for concurrent use.
type Datapath interface {
	// Register makes sure the interface has a pod entry; a new one starts with both
	// directions in state initial and no programs attached yet. An existing entry is
	// left as it is (the CNI plugin attached it, or a previous agent programmed it).
	Register(ifindex int, initial rules.State) error
	// Program writes r for the interface and flips the pod to it atomically. On error
	// nothing changed.
	Program(ifindex int, r *rules.PodRules) error
	// Attach makes sure the programs are attached to the interface (registering it with
	// state initial if needed); idempotent.
	Attach(ifindex int, initial rules.State) error
	// Programmed reports whether the kernel holds exactly r for the interface, and
	// whether the programs are attached to it. deep reads the rule maps back instead of
	// trusting the digest stored with the pod entry.
	Programmed(ifindex int, r *rules.PodRules, deep bool) (rulesOK, attached bool, err error)
	// Close sets both directions of the interface to unprogrammed-deny: fail closed when
	// new rules cannot be written over old ones.
	Close(ifindex int) error
	// Detach removes the interface's programs, entry and rules; idempotent.
	Detach(ifindex int) error
	// Attached lists the interfaces with pod entries.
	Attached() ([]int, error)
	// SetHostAddrs sets the node's own addresses (their traffic always passes).
	SetHostAddrs(addrs []netip.Addr) error
	// Sweep frees rules of pods detached elsewhere (by the CNI plugin's DEL).
	Sweep() error
}

// Interfaces finds pods' host-side interfaces (netdev.Finder).
type Interfaces interface {
	HostInterface(ip netip.Addr) (netdev.Interface, error)
	ByIndex(ifindex int) (netdev.Interface, error)
}

// Gate sets the readiness condition (gate.Patcher).
type Gate interface {
	Set(ctx context.Context, pod *corev1.Pod, want gate.Condition) (bool, error)
}

// Deps are the agent's connections to the outside; New fills in defaults for nil ones
// where it can.
type Deps struct {
	Client     kubernetes.Interface
	Datapath   Datapath
	Interfaces Interfaces // default netdev.New(nil)
	Gate       Gate       // default gate.New(Client.CoreV1(), the configured condition types)
	// Events, if set, records an Event on a pod whenever its condition changes
	// (NewEventRecorder).
	Events record.EventRecorder
	// Registerer receives the agent's metrics; nil: not registered.
	Registerer prometheus.Registerer
	// HostAddrs lists the node's local addresses (default: every address of the host's
	// interfaces); they are added to the Node object's addresses.
	HostAddrs func() ([]netip.Addr, error)
	Log       logr.Logger
	// ClusterPolicies, if set, is the network-policy-api client the agent follows
	// ClusterNetworkPolicies with (nil: NetworkPolicy only).
	ClusterPolicies cnpclient.Interface
}

// podState is what the agent knows about one local pod.
type podState struct {
	uid     types.UID
	ifindex int
	// ipSince is when the agent first saw the pod with an IP (gate latency).
	ipSince time.Time
	// changeSince is the oldest change not yet in the kernel (programming latency).
	changeSince time.Time
	status      podStatus
	gateDone    bool // the gate latency was observed
	// deepVerify asks the next reconcile to read the rule maps back (periodic resync).
	deepVerify bool
	// programmedOnce: the pod was programmed (by this agent, or by a predecessor whose
	// True condition the pod carries). The wait for the generated default-deny guards
	// only a pod's first programming; afterwards policy changes, including that policy
	// going away, are ordinary NetworkPolicy semantics.
	programmedOnce bool
}

type podStatus uint8

const (
	statusPending podStatus = iota
	statusProgrammed
	statusFailed
)

// Agent is one node's agent.
type Agent struct {
	cfg  Config
	deps Deps
	log  logr.Logger
	m    *metrics

	factory    informers.SharedInformerFactory
	nodeFact   informers.SharedInformerFactory
	podInf     cache.SharedIndexInformer
	podLister  corelisters.PodLister
	nsLister   corelisters.NamespaceLister
	polLister  networkinglisters.NetworkPolicyLister
	svcLister  corelisters.ServiceLister
	esLister   discoverylisters.EndpointSliceLister
	nodeLister corelisters.NodeLister
	cnp        *clusterPolicies // nil without Deps.ClusterPolicies

	queue workqueue.TypedRateLimitingInterface[types.NamespacedName]

	mu     sync.Mutex // guards comp, synced, pods, denyNS
	comp   *compile.Compiler
	synced bool
	pods   map[types.NamespacedName]*podState
	// denyNS holds the namespaces whose strictgate-default-deny the compiler holds. It
	// is kept beside comp, under the same lock, rather than read from the policy
	// lister: the lister is updated before the handler feeds the compiler, and a pod
	// programmed in between would get rules without the policy it waited for.
	denyNS map[string]bool

	// add holds the IPs the CNI plugin reported at ADD (cniadd.go).
	add addIPs

	ready     chan struct{}
	readyOnce sync.Once
	initial   map[types.NamespacedName]struct{} // start-up keys not yet reconciled once
}

// podIPIndex indexes pods (not on the host network) by their IPs.
const podIPIndex = "podIP"

// New builds an agent; Run starts it.
func New(cfg Config, deps Deps) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Client == nil || deps.Datapath == nil {
		return nil, errors.New("agent needs a Kubernetes client and a datapath")
	}
	if deps.Interfaces == nil {
		deps.Interfaces = netdev.New(nil)
	}
	if deps.Gate == nil {
		deps.Gate = gate.New(deps.Client.CoreV1(), gate.TypesOf(cfg.ConditionTypes)...)
	}
	if deps.Events != nil {
		deps.Gate = eventingGate{deps.Gate, deps.Events}
	}
	if deps.HostAddrs == nil {
		deps.HostAddrs = LocalAddrs
	}
	a := &Agent{
		cfg:    cfg,
		deps:   deps,
		log:    deps.Log,
		pods:   map[types.NamespacedName]*podState{},
		denyNS: map[string]bool{},
		comp:   compile.New(compile.Options{Node: cfg.NodeName}),
		ready:  make(chan struct{}),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedMaxOfRateLimiter(
				workqueue.NewTypedItemExponentialFailureRateLimiter[types.NamespacedName](50*time.Millisecond, 30*time.Second),
			),
			workqueue.TypedRateLimitingQueueConfig[types.NamespacedName]{Name: "strictgate-agent"},
		),
	}
	if a.cfg.CRDPollPeriod <= 0 {
		a.cfg.CRDPollPeriod = defaultCRDPollPeriod
	}
	if deps.ClusterPolicies != nil {
		a.cnp = &clusterPolicies{client: deps.ClusterPolicies, started: make(chan struct{})}
	}
	a.m = newMetrics(a)
	if deps.Registerer != nil {
		if err := a.m.register(deps.Registerer); err != nil {
			return nil, err
		}
	}
	// Every pod, not only this node's: peers anywhere in the cluster shape the rules.
	a.factory = informers.NewSharedInformerFactory(deps.Client, 0)
	a.podInf = a.factory.Core().V1().Pods().Informer()
	if err := a.podInf.AddIndexers(cache.Indexers{podIPIndex: indexPodIPs}); err != nil {
		return nil, err
	}
	a.podLister = a.factory.Core().V1().Pods().Lister()
	a.nsLister = a.factory.Core().V1().Namespaces().Lister()
	a.polLister = a.factory.Networking().V1().NetworkPolicies().Lister()
	a.svcLister = a.factory.Core().V1().Services().Lister()
	a.esLister = a.factory.Discovery().V1().EndpointSlices().Lister()
	a.nodeFact = informers.NewSharedInformerFactoryWithOptions(deps.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", cfg.NodeName).String()
		}))
	a.nodeLister = a.nodeFact.Core().V1().Nodes().Lister()
	if err := a.addHandlers(); err != nil {
		return nil, err
	}
	return a, nil
}

func indexPodIPs(obj any) ([]string, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok || p.Spec.HostNetwork {
		return nil, nil
	}
	var out []string
	for _, ip := range p.Status.PodIPs {
		if a, err := netip.ParseAddr(ip.IP); err == nil {
			out = append(out, a.String())
		}
	}
	if len(out) == 0 && p.Status.PodIP != "" {
		if a, err := netip.ParseAddr(p.Status.PodIP); err == nil {
			out = append(out, a.String())
		}
	}
	return out, nil
}

// Ready is closed once the caches are synced and every local pod was reconciled once.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Run starts the informers, compiles the whole state once, collects datapath entries
// of vanished interfaces, reconciles every local pod and then follows changes until ctx
// ends.
func (a *Agent) Run(ctx context.Context) error {
	defer a.queue.ShutDown()
	a.factory.Start(ctx.Done())
	a.nodeFact.Start(ctx.Done())
	defer a.factory.Shutdown()
	defer a.nodeFact.Shutdown()
	for typ, ok := range a.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("sync %v cache: %w", typ, ctx.Err())
		}
	}
	for typ, ok := range a.nodeFact.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("sync %v cache: %w", typ, ctx.Err())
		}
	}
	if err := a.startClusterPolicies(ctx); err != nil {
		return err
	}
	if err := a.build(); err != nil {
		return err
	}
	a.refreshHostAddrs()
	a.collect()

	local := a.localPods()
	var wg sync.WaitGroup
	for range a.cfg.Workers {
		wg.Go(func() {
			for a.processNext(ctx) {
			}
		})
	}
	// Ready once every start-up pod was reconciled once (successfully or not).
	a.mu.Lock()
	a.initial = map[types.NamespacedName]struct{}{}
	for _, k := range local {
		a.initial[k] = struct{}{}
	}
	a.mu.Unlock()
	a.markInitialDone(types.NamespacedName{})
	for _, k := range local {
		a.queue.Add(k)
	}
	go wait.UntilWithContext(ctx, a.resync, a.cfg.ResyncPeriod)
	<-ctx.Done()
	a.queue.ShutDown()
	wg.Wait()
	return nil
}

// build compiles everything in the synced caches at once. Handlers skip their events
// until then: the caches are written before handlers run, so nothing is lost.
func (a *Agent) build() error {
	var s compile.State
	var err error
	if s.Namespaces, err = a.nsLister.List(labels.Everything()); err != nil {
		return err
	}
	if s.Pods, err = a.podLister.List(labels.Everything()); err != nil {
		return err
	}
	if s.Policies, err = a.polLister.List(labels.Everything()); err != nil {
		return err
	}
	if s.Services, err = a.svcLister.List(labels.Everything()); err != nil {
		return err
	}
	if s.EndpointSlices, err = a.esLister.List(labels.Everything()); err != nil {
		return err
	}
	if s.ClusterNetworkPolicies, s.Nodes, err = a.clusterState(); err != nil {
		return err
	}
	// Under the lock: handlers that fire meanwhile wait and then apply their change.
	a.mu.Lock()
	defer a.mu.Unlock()
	// Build refuses the whole state for one invalid object; BuildLenient then falls
	// back to upserts, which skip (and log) the invalid ones.
	skipped := map[types.NamespacedName]bool{}
	c := compile.BuildLenient(s, compile.Options{Node: a.cfg.NodeName}, func(kind string, key types.NamespacedName, err error) {
		a.log.Error(err, "skip invalid object", "kind", kind, "object", key.String())
		if kind == "NetworkPolicy" {
			skipped[key] = true
		}
	})
	denyNS := map[string]bool{}
	for _, p := range s.Policies {
		if p.Name == contract.DefaultDenyPolicy && !skipped[types.NamespacedName{Namespace: p.Namespace, Name: p.Name}] {
			denyNS[p.Namespace] = true
		}
	}
	a.comp = c
	a.denyNS = denyNS
	a.synced = true
	return nil
}

// localPods returns the keys of this node's pods in the cache.
func (a *Agent) localPods() []types.NamespacedName {
	pods, _ := a.podLister.List(labels.Everything())
	var out []types.NamespacedName
	for _, p := range pods {
		if p.Spec.NodeName == a.cfg.NodeName {
			out = append(out, types.NamespacedName{Namespace: p.Namespace, Name: p.Name})
		}
	}
	return out
}

// resync re-checks every local pod against the kernel and collects entries of vanished
// interfaces.
func (a *Agent) resync(ctx context.Context) {
	a.refreshHostAddrs()
	a.collect()
	keys := a.localPods()
	a.mu.Lock()
	for _, k := range keys {
		if st := a.pods[k]; st != nil {
			st.deepVerify = true
		}
	}
	a.mu.Unlock()
	for _, k := range keys {
		a.queue.Add(k)
	}
}

func (a *Agent) markInitialDone(key types.NamespacedName) {
	a.mu.Lock()
	if a.initial == nil {
		a.mu.Unlock()
		return
	}
	delete(a.initial, key)
	done := len(a.initial) == 0
	a.mu.Unlock()
	if done {
		a.readyOnce.Do(func() { close(a.ready) })
	}
}

func (a *Agent) processNext(ctx context.Context) bool {
	key, quit := a.queue.Get()
	if quit {
		return false
	}
	defer a.queue.Done(key)
	defer a.markInitialDone(key)
	if err := a.reconcile(ctx, key); err != nil {
		if ctx.Err() == nil {
			a.log.Error(err, "reconcile pod", "pod", key.String())
		}
		a.queue.AddRateLimited(key)
		return true
	}
	a.queue.Forget(key)
	return true
}
