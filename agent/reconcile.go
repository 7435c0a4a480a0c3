package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/strictgate/strictgate/agent/gate"
	"github.com/strictgate/strictgate/agent/netdev"
	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/internal/contract"
)

// --- informer events -> compiler -> queue ------------------------------------------

func (a *Agent) addHandlers() error {
	podH := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { a.onPod(o) },
		UpdateFunc: func(_, o any) { a.onPod(o) },
		DeleteFunc: func(o any) {
			if k, ok := keyOf(o); ok {
				a.add.drop(k)
				a.apply(func() []types.NamespacedName { return a.comp.DeletePod(k) }, k)
			}
		},
	}
	nsH := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { a.onNamespace(o) },
		UpdateFunc: func(_, o any) { a.onNamespace(o) },
		DeleteFunc: func(o any) {
			if k, ok := keyOf(o); ok {
				a.apply(func() []types.NamespacedName {
					return append(a.comp.DeleteNamespace(k.Name), a.localPodsIn(k.Name)...)
				})
			}
		},
	}
	polH := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { a.onPolicy(o) },
		UpdateFunc: func(_, o any) { a.onPolicy(o) },
		DeleteFunc: func(o any) {
			if k, ok := keyOf(o); ok {
				a.apply(func() []types.NamespacedName {
					if k.Name == contract.DefaultDenyPolicy {
						delete(a.denyNS, k.Namespace)
					}
					return a.comp.DeletePolicy(k)
				})
			}
		},
	}
	svcH := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { a.onService(o) },
		UpdateFunc: func(_, o any) { a.onService(o) },
		DeleteFunc: func(o any) {
			if k, ok := keyOf(o); ok {
				a.apply(func() []types.NamespacedName { return a.comp.DeleteService(k) })
			}
		},
	}
	esH := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { a.onSlice(o) },
		UpdateFunc: func(_, o any) { a.onSlice(o) },
		DeleteFunc: func(o any) {
			if k, ok := keyOf(o); ok {
				a.apply(func() []types.NamespacedName { return a.comp.DeleteEndpointSlice(k) })
			}
		},
	}
	nodeH := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { a.refreshHostAddrs() },
		UpdateFunc: func(_, _ any) { a.refreshHostAddrs() },
	}
	for inf, h := range map[cache.SharedIndexInformer]cache.ResourceEventHandler{
		a.podInf: podH,
		a.factory.Core().V1().Namespaces().Informer():            nsH,
		a.factory.Networking().V1().NetworkPolicies().Informer(): polH,
		a.factory.Core().V1().Services().Informer():              svcH,
		a.factory.Discovery().V1().EndpointSlices().Informer():   esH,
		a.nodeFact.Core().V1().Nodes().Informer():                nodeH,
	} {
		if _, err := inf.AddEventHandler(h); err != nil {
			return err
		}
	}
	return nil
}

func keyOf(o any) (types.NamespacedName, bool) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	k, err := cache.MetaNamespaceKeyFunc(o)
	if err != nil {
		return types.NamespacedName{}, false
	}
	ns, name, _ := cache.SplitMetaNamespaceKey(k)
	return types.NamespacedName{Namespace: ns, Name: name}, true
}

func (a *Agent) onPod(o any) {
	p, ok := o.(*corev1.Pod)
	if !ok {
		return
	}
	k := types.NamespacedName{Namespace: p.Namespace, Name: p.Name}
	p = a.withAddIPs(p)
	a.apply(func() []types.NamespacedName {
		changed, err := a.comp.UpsertPod(p)
		if err != nil {
			a.log.Error(err, "compile pod", "pod", k.String())
		}
		return changed
	}, k)
}

func (a *Agent) onNamespace(o any) {
	if ns, ok := o.(*corev1.Namespace); ok {
		// Its local pods too: the opt-out label decides whether they wait for the
		// default-deny policy.
		a.apply(func() []types.NamespacedName {
			return append(a.comp.UpsertNamespace(ns), a.localPodsIn(ns.Name)...)
		})
	}
}

func (a *Agent) onPolicy(o any) {
	np, ok := o.(*networkingv1.NetworkPolicy)
	if !ok {
		return
	}
	a.apply(func() []types.NamespacedName {
		changed, err := a.comp.UpsertPolicy(np)
		if err != nil {
			a.log.Error(err, "compile NetworkPolicy", "policy", np.Namespace+"/"+np.Name)
		} else if np.Name == contract.DefaultDenyPolicy && !a.denyNS[np.Namespace] {
			// The pods of the namespace that wait for it may be programmed now.
			a.denyNS[np.Namespace] = true
			changed = append(changed, a.localPodsIn(np.Namespace)...)
		}
		// The condition's message names the policy generations: re-check its targets
		// even when their rules did not change.
		return append(changed, a.localTargets(np)...)
	})
}

func (a *Agent) onService(o any) {
	if s, ok := o.(*corev1.Service); ok {
		a.apply(func() []types.NamespacedName {
			changed, err := a.comp.UpsertService(s)
			if err != nil {
				a.log.Error(err, "compile Service", "service", s.Namespace+"/"+s.Name)
			}
			return changed
		})
	}
}

func (a *Agent) onSlice(o any) {
	if es, ok := o.(*discoveryv1.EndpointSlice); ok {
		a.apply(func() []types.NamespacedName {
			changed, err := a.comp.UpsertEndpointSlice(es)
			if err != nil {
				a.log.Error(err, "compile EndpointSlice", "slice", es.Namespace+"/"+es.Name)
			}
			return changed
		})
	}
}

// localTargets returns this node's pods the policy selects (caller holds a.mu).
func (a *Agent) localTargets(np *networkingv1.NetworkPolicy) []types.NamespacedName {
	var out []types.NamespacedName
	key := types.NamespacedName{Namespace: np.Namespace, Name: np.Name}
	for k, st := range a.pods {
		if st.status == statusPending {
			continue
		}
		for _, d := range []rules.Direction{rules.Ingress, rules.Egress} {
			if slices.Contains(a.comp.SelectingPolicies(k, d), key) {
				out = append(out, k)
				break
			}
		}
	}
	return out
}

// apply runs a compiler change under the lock (once the initial build is done) and
// queues the local pods it affected plus extra.
func (a *Agent) apply(change func() []types.NamespacedName, extra ...types.NamespacedName) {
	now := time.Now()
	a.mu.Lock()
	if !a.synced {
		a.mu.Unlock()
		return
	}
	changed := change()
	var queue []types.NamespacedName
	for _, k := range append(changed, extra...) {
		if st, ok := a.pods[k]; ok {
			if st.changeSince.IsZero() {
				st.changeSince = now
			}
			queue = append(queue, k)
			continue
		}
		if p, err := a.podLister.Pods(k.Namespace).Get(k.Name); err == nil && p.Spec.NodeName == a.cfg.NodeName {
			queue = append(queue, k)
		}
	}
	a.mu.Unlock()
	for _, k := range queue {
		a.queue.Add(k)
	}
}

// --- reconcile ------------------------------------------------------------------------

// reconcile brings one pod's datapath entry and condition in line with its compiled
// rules.
func (a *Agent) reconcile(ctx context.Context, key types.NamespacedName) error {
	pod, err := a.podLister.Pods(key.Namespace).Get(key.Name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if err != nil || pod.Spec.NodeName != a.cfg.NodeName || pod.Spec.HostNetwork ||
		pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return a.forget(key)
	}
	return a.program(ctx, key, a.withAddIPs(pod), false)
}

// program writes the pod's compiled rules into the kernel and reads them back. atAdd
// (the CNI plugin asked, agent/cniserver) leaves the condition alone: it is set by the
// normal reconcile that follows, which finds the kernel already programmed, so the one
// path that turns it True stays the one above.
func (a *Agent) program(ctx context.Context, key types.NamespacedName, pod *corev1.Pod, atAdd bool) error {
	a.mu.Lock()
	st := a.pods[key]
	if st != nil && st.uid != pod.UID {
		a.mu.Unlock()
		if err := a.forget(key); err != nil {
			return err
		}
		a.mu.Lock()
		st = nil
	}
	if st == nil {
		st = &podState{uid: pod.UID, changeSince: time.Now(), programmedOnce: a.programmedBefore(pod)}
		a.pods[key] = st
	}
	ip, hasIP := podIP(pod)
	if hasIP && st.ipSince.IsZero() {
		st.ipSince = time.Now()
	}
	r, hasRules := a.comp.Rules(key)
	msg := a.describe(key)
	// Decided under the same lock as the rules: they are the rules the wait was for.
	waiting := a.waitsForDefaultDeny(pod, st)
	a.mu.Unlock()
	if !hasIP || !hasRules {
		if atAdd {
			return fmt.Errorf("no rules compiled for %s yet", key)
		}
		return nil // the CNI plugin holds the pod in the mode's unprogrammed state
	}
	if waiting {
		// Leave the datapath alone: the pod stays as the CNI plugin attached it. The
		// policy's informer event queues the pod again.
		if atAdd {
			return errWaitingForDefaultDeny
		}
		_, err := a.setCondition(ctx, pod, st, a.waitingCondition(pod.Namespace))
		return err
	}

	ifc, err := a.deps.Interfaces.HostInterface(ip)
	if errors.Is(err, netdev.ErrHostAddress) {
		return a.forget(key)
	}
	if err != nil && atAdd {
		return fmt.Errorf("find interface of %s: %w", key, err)
	}
	if err != nil {
		a.setStatus(key, statusFailed)
		if _, gerr := a.setCondition(ctx, pod, st, gate.Condition{Status: corev1.ConditionFalse, Reason: contract.ReasonInterfaceNotFound,
			Message: fmt.Sprintf("no host-side interface for %s: %v", ip, err)}); gerr != nil {
			return errors.Join(err, gerr)
		}
		return fmt.Errorf("find interface of %s: %w", key, err)
	}
	if st.ifindex != 0 && st.ifindex != ifc.Index {
		// The sandbox was re-created: the old interface's entry is garbage.
		if err := a.deps.Datapath.Detach(st.ifindex); err != nil {
			a.m.datapathErrors.WithLabelValues("detach").Inc()
			return fmt.Errorf("detach old interface %d of %s: %w", st.ifindex, key, err)
		}
	}
	a.mu.Lock()
	st.ifindex = ifc.Index
	a.mu.Unlock()

	// Rules first, programs second: an interface nobody attached yet (a pod that predates
	// strictgate, or a CNI without the chained plugin) goes straight from no filtering to
	// its rules, without a window in the closed initial state.
	if err := a.deps.Datapath.Register(ifc.Index, a.cfg.Mode.InitialState()); err != nil {
		a.m.datapathErrors.WithLabelValues("register").Inc()
		return a.fail(ctx, pod, st, key, atAdd, contract.ReasonProgrammingFailed, fmt.Errorf("register %s: %w", ifc, err))
	}
	a.mu.Lock()
	deep := st.deepVerify
	st.deepVerify = false
	a.mu.Unlock()
	rulesOK, attached, err := a.deps.Datapath.Programmed(ifc.Index, r, deep)
	if err != nil {
		a.m.datapathErrors.WithLabelValues("verify").Inc()
		return fmt.Errorf("read kernel state of %s: %w", key, err)
	}
	if !rulesOK {
		if err := a.deps.Datapath.Program(ifc.Index, r); err != nil {
			a.m.datapathErrors.WithLabelValues("program").Inc()
			return a.fail(ctx, pod, st, key, atAdd, contract.ReasonProgrammingFailed, fmt.Errorf("program %s: %w", ifc, err))
		}
	}
	// Always: Attach re-attaches hooks someone removed and is a no-op otherwise.
	if err := a.deps.Datapath.Attach(ifc.Index, a.cfg.Mode.InitialState()); err != nil {
		a.m.datapathErrors.WithLabelValues("attach").Inc()
		return a.fail(ctx, pod, st, key, atAdd, contract.ReasonProgrammingFailed, fmt.Errorf("attach to %s: %w", ifc, err))
	}
	if !rulesOK || !attached {
		// Read back: the condition may only say what the kernel holds.
		rulesOK, attached, err = a.deps.Datapath.Programmed(ifc.Index, r, true)
		if err != nil || !rulesOK || !attached {
			a.m.datapathErrors.WithLabelValues("verify").Inc()
			if err == nil {
				err = fmt.Errorf("kernel state differs from what was written (rules match %v, attached %v)", rulesOK, attached)
			}
			return a.fail(ctx, pod, st, key, atAdd, contract.ReasonKernelMismatch, fmt.Errorf("verify %s: %w", ifc, err))
		}
	}
	a.mu.Lock()
	if !st.changeSince.IsZero() {
		a.m.programming.Observe(time.Since(st.changeSince).Seconds())
		st.changeSince = time.Time{}
	}
	st.status = statusProgrammed
	st.programmedOnce = true
	a.mu.Unlock()
	if atAdd {
		return nil
	}
	_, err = a.setCondition(ctx, pod, st, gate.Condition{Status: corev1.ConditionTrue, Reason: contract.ReasonProgrammed, Message: msg})
	return err
}

// fail records a programming failure: condition False with the reason. In strict mode
// the pod is closed: old rules still in the kernel may allow what the new policy
// forbids, and a pod nobody had attached yet gets its programs in the closed state.
func (a *Agent) fail(ctx context.Context, pod *corev1.Pod, st *podState, key types.NamespacedName, atAdd bool, reason string, cause error) error {
	a.setStatus(key, statusFailed)
	var errs []error
	errs = append(errs, cause)
	if a.cfg.Mode == contract.ModeStrict && st.ifindex != 0 {
		if err := a.deps.Datapath.Close(st.ifindex); err != nil {
			a.m.datapathErrors.WithLabelValues("close").Inc()
			errs = append(errs, fmt.Errorf("close %s after failure: %w", key, err))
		} else if err := a.deps.Datapath.Attach(st.ifindex, rules.StateUnprogrammedDeny); err != nil {
			a.m.datapathErrors.WithLabelValues("attach").Inc()
			errs = append(errs, fmt.Errorf("attach %s closed after failure: %w", key, err))
		}
	}
	if atAdd {
		return errors.Join(errs...)
	}
	if _, err := a.setCondition(ctx, pod, st, gate.Condition{Status: corev1.ConditionFalse, Reason: reason, Message: cause.Error()}); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (a *Agent) setStatus(key types.NamespacedName, s podStatus) {
	a.mu.Lock()
	if st := a.pods[key]; st != nil {
		st.status = s
	}
	a.mu.Unlock()
}

// setCondition patches the conditions of pods that carry one of strictgate's readiness
// gates (or already have one of the conditions); pods of excluded namespaces are
// enforced but not gated. Every configured type is set, in one patch.
func (a *Agent) setCondition(ctx context.Context, pod *corev1.Pod, st *podState, want gate.Condition) (bool, error) {
	if !gate.TypesOf(a.cfg.ConditionTypes).Gated(pod) {
		return false, nil
	}
	changed, err := a.deps.Gate.Set(ctx, pod, want)
	if errors.Is(err, gate.ErrPodGone) {
		return false, nil // the delete event follows
	}
	if err != nil {
		return false, fmt.Errorf("set condition of %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	if want.Status == corev1.ConditionTrue {
		a.mu.Lock()
		if !st.gateDone && !st.ipSince.IsZero() {
			st.gateDone = true
			if changed {
				a.m.gateLatency.Observe(time.Since(st.ipSince).Seconds())
			}
		}
		a.mu.Unlock()
	}
	return changed, nil
}

// forget detaches a pod that is gone (or no longer ours) and drops its state.
func (a *Agent) forget(key types.NamespacedName) error {
	a.mu.Lock()
	st := a.pods[key]
	a.mu.Unlock()
	if st == nil {
		return nil
	}
	if st.ifindex != 0 {
		if err := a.deps.Datapath.Detach(st.ifindex); err != nil {
			a.m.datapathErrors.WithLabelValues("detach").Inc()
			return fmt.Errorf("detach %s (ifindex %d): %w", key, st.ifindex, err)
		}
	}
	a.mu.Lock()
	if a.pods[key] == st {
		delete(a.pods, key)
	}
	a.mu.Unlock()
	return nil
}

// collect detaches datapath entries whose interface no longer exists (pods deleted while
// the agent was away, or whose CNI DEL never came). Entries of live interfaces that no
// pod claims are left alone: the CNI plugin may have just attached a pod whose IP the
// API server does not show yet.
func (a *Agent) collect() {
	ifs, err := a.deps.Datapath.Attached()
	if err != nil {
		a.m.datapathErrors.WithLabelValues("list").Inc()
		a.log.Error(err, "list datapath entries")
		return
	}
	for _, ifindex := range ifs {
		if _, err := a.deps.Interfaces.ByIndex(ifindex); err == nil {
			continue
		}
		if err := a.deps.Datapath.Detach(ifindex); err != nil {
			a.m.datapathErrors.WithLabelValues("detach").Inc()
			a.log.Error(err, "collect datapath entry", "ifindex", ifindex)
		}
	}
	if err := a.deps.Datapath.Sweep(); err != nil {
		a.m.datapathErrors.WithLabelValues("sweep").Inc()
		a.log.Error(err, "sweep datapath rules")
	}
}

// maxNamedPolicies bounds the policies the condition message names per direction, so
// a pod selected by hundreds of policies does not carry a huge status.
const maxNamedPolicies = 10

// describe is the condition message: the policies in force per direction and their
// generations (caller holds a.mu). It changes only when those do, so peers coming and
// going re-program pods without re-patching them.
func (a *Agent) describe(key types.NamespacedName) string {
	var parts []string
	for _, d := range []rules.Direction{rules.Ingress, rules.Egress} {
		pols := a.comp.SelectingPolicies(key, d)
		if len(pols) == 0 {
			parts = append(parts, d.String()+": unrestricted (no policy selects the pod)")
			continue
		}
		names := make([]string, 0, len(pols))
		shown := pols
		if len(shown) > maxNamedPolicies {
			shown = shown[:maxNamedPolicies]
		}
		for _, p := range shown {
			gen := int64(0)
			if np, err := a.polLister.NetworkPolicies(p.Namespace).Get(p.Name); err == nil {
				gen = np.Generation
			}
			names = append(names, fmt.Sprintf("%s (generation %d)", p, gen))
		}
		if more := len(pols) - len(shown); more > 0 {
			names = append(names, fmt.Sprintf("and %d more", more))
		}
		parts = append(parts, d.String()+": "+strings.Join(names, ", "))
	}
	head := "Policy programmed in the kernel. "
	if a.cfg.Mode == contract.ModeAudit {
		head = "Policy programmed in the kernel in audit mode (would-be drops are logged, not enforced). "
	}
	return head + strings.Join(parts, "; ")
}

func podIP(p *corev1.Pod) (netip.Addr, bool) {
	for _, s := range append([]string{p.Status.PodIP}, podIPStrings(p)...) {
		if a, err := netip.ParseAddr(s); err == nil {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func podIPStrings(p *corev1.Pod) []string {
	out := make([]string, 0, len(p.Status.PodIPs))
	for _, ip := range p.Status.PodIPs {
		out = append(out, ip.IP)
	}
	return out
}

// --- node addresses -------------------------------------------------------------------

// refreshHostAddrs feeds the node's addresses (Node object and local interfaces) to the
// datapath, so kubelet probes and other host traffic pass.
func (a *Agent) refreshHostAddrs() {
	var addrs []netip.Addr
	if n, err := a.nodeLister.Get(a.cfg.NodeName); err == nil {
		for _, na := range n.Status.Addresses {
			if na.Type != corev1.NodeInternalIP && na.Type != corev1.NodeExternalIP {
				continue
			}
			if ip, err := netip.ParseAddr(na.Address); err == nil {
				addrs = append(addrs, ip.Unmap())
			}
		}
	}
	if local, err := a.deps.HostAddrs(); err == nil {
		addrs = append(addrs, local...)
	} else {
		a.log.Error(err, "list local addresses")
	}
	slices.SortFunc(addrs, func(x, y netip.Addr) int { return x.Compare(y) })
	addrs = slices.Compact(addrs)
	if err := a.deps.Datapath.SetHostAddrs(addrs); err != nil {
		a.m.datapathErrors.WithLabelValues("host-addrs").Inc()
		a.log.Error(err, "set host addresses")
	}
	// The compiler needs them too: a Service backend at a node address (the kubernetes
	// Service, hostNetwork backends) is reached as host traffic, so its ClusterIP must
	// not be judged stricter than the backend itself (as verdict --node-ip does).
	a.apply(func() []types.NamespacedName { return a.comp.SetNodeIPs(addrs) })
}
