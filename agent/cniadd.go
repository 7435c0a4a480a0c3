package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/strictgate/strictgate/agent/cniserver"
)

// Program at CNI ADD (agent/cniserver): the plugin tells the agent the new pod's IPs
// before the kubelet has written them to the pod's status, so the agent compiles and
// programs the pod (and the local pods whose policies admit it) while its containers
// have not started yet. The condition is not touched here: the normal reconcile, once
// the informer shows the pod with its IP, finds the kernel programmed and sets it.

// errWaitingForDefaultDeny: the pod's first programming waits for strictgate-default-deny
// (agent/defaultdeny.go); at ADD the pod stays as the plugin attached it.
var errWaitingForDefaultDeny = errors.New("pod waits for strictgate-default-deny in its namespace")

// addIPTTL bounds how long IPs learned at ADD stand in for the status the kubelet has
// not written yet; the kubelet writes it within seconds.
const addIPTTL = 2 * time.Minute

type addEntry struct {
	uid  types.UID
	ips  []string
	seen time.Time
}

// addIPs holds the IPs learned at CNI ADD per pod.
type addIPs struct {
	mu sync.Mutex
	m  map[types.NamespacedName]addEntry
}

func (s *addIPs) set(k types.NamespacedName, e addEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[types.NamespacedName]addEntry{}
	}
	s.m[k] = e
}

func (s *addIPs) drop(k types.NamespacedName) {
	s.mu.Lock()
	delete(s.m, k)
	s.mu.Unlock()
}

func (s *addIPs) get(k types.NamespacedName) (addEntry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[k]
	return e, ok
}

// withAddIPs returns pod with the IPs learned at ADD when its status shows none yet
// (same UID, recent); once the status has IPs they are the truth and the entry goes.
// Without this an informer update that still lacks the IP would take the address out
// of the peers' rules again.
func (a *Agent) withAddIPs(pod *corev1.Pod) *corev1.Pod {
	k := types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}
	e, ok := a.add.get(k)
	if !ok {
		return pod
	}
	if e.uid != pod.UID || len(pod.Status.PodIPs) > 0 || pod.Status.PodIP != "" || time.Since(e.seen) > addIPTTL {
		a.add.drop(k)
		return pod
	}
	p := pod.DeepCopy()
	p.Status.PodIP = e.ips[0]
	for _, ip := range e.ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	return p
}

// ProgramAtAdd is the cniserver.Handler: compile the pod with the IPs from the plugin,
// program it, then re-program the local pods whose rules the new IPs changed.
func (a *Agent) ProgramAtAdd(ctx context.Context, r *cniserver.Request) error {
	key := types.NamespacedName{Namespace: r.Namespace, Name: r.Name}
	a.mu.Lock()
	synced := a.synced
	a.mu.Unlock()
	if !synced {
		return errors.New("the agent's caches are not synced yet")
	}
	pod, err := a.podLister.Pods(key.Namespace).Get(key.Name)
	if apierrors.IsNotFound(err) {
		// The kubelet runs ADD right after it saw the pod bound; the agent's watch may be
		// a moment behind. One GET, bounded by the request's deadline.
		pod, err = a.deps.Client.CoreV1().Pods(key.Namespace).Get(ctx, key.Name, metav1.GetOptions{})
	}
	if err != nil {
		return fmt.Errorf("get pod %s: %w", key, err)
	}
	if pod.Spec.NodeName != a.cfg.NodeName {
		return fmt.Errorf("pod %s is bound to node %q, not %q", key, pod.Spec.NodeName, a.cfg.NodeName)
	}
	if pod.Spec.HostNetwork {
		return fmt.Errorf("pod %s uses the host network", key)
	}
	// The agent programs the interface the host routes the pod's IP to (as its normal
	// path does); a request naming another interface is inconsistent: refuse it.
	for _, ip := range r.Addrs() {
		ifc, err := a.deps.Interfaces.HostInterface(ip)
		if err != nil {
			return fmt.Errorf("host interface of %s: %w", ip, err)
		}
		if ifc.Index != r.IfIndex {
			return fmt.Errorf("%s is routed to ifindex %d, the request names %d", ip, ifc.Index, r.IfIndex)
		}
	}
	a.add.set(key, addEntry{uid: pod.UID, ips: r.IPs, seen: time.Now()})
	p := a.withAddIPs(pod)
	a.mu.Lock()
	changed, err := a.comp.UpsertPod(p)
	a.mu.Unlock()
	if err != nil {
		return fmt.Errorf("compile pod %s: %w", key, err)
	}
	perr := a.program(ctx, key, p, true)
	// The new IPs in the rules of local peers, now: a new client can reach a local
	// server from its first instruction. Those are ordinary reconciles (their pods are
	// running and gated as always); what cannot finish in time is queued.
	for _, k := range changed {
		if k == key {
			continue
		}
		if ctx.Err() != nil {
			a.queue.Add(k)
			continue
		}
		if err := a.reconcile(ctx, k); err != nil {
			a.log.Error(err, "re-program peer at CNI ADD", "pod", k.String(), "new", key.String())
			a.queue.Add(k)
		}
	}
	return perr
}
