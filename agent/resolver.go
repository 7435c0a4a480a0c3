package agent

// The agent is the event log's Resolver: it names addresses, interfaces and rule ids
// from its caches and the compiler.

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/strictgate/strictgate/agent/compile"
	"github.com/strictgate/strictgate/agent/events"
	"github.com/strictgate/strictgate/agent/rules"
)

// PodByIP returns the (non host-network) pod with address ip, from the informer cache.
func (a *Agent) PodByIP(ip netip.Addr) (types.NamespacedName, bool) {
	objs, err := a.podInf.GetIndexer().ByIndex(podIPIndex, ip.Unmap().String())
	if err != nil {
		return types.NamespacedName{}, false
	}
	for _, o := range objs {
		// Terminated pods may still hold an address a new pod reuses: prefer live ones.
		if p, ok := o.(*corev1.Pod); ok && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			return types.NamespacedName{Namespace: p.Namespace, Name: p.Name}, true
		}
	}
	return types.NamespacedName{}, false
}

// PodByIfindex returns the local pod attached on interface ifindex.
func (a *Agent) PodByIfindex(ifindex int) (types.NamespacedName, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, st := range a.pods {
		if st.ifindex == ifindex {
			return k, true
		}
	}
	return types.NamespacedName{}, false
}

// Rule resolves a rule ID of the compiler.
func (a *Agent) Rule(id rules.RuleID) (compile.RuleRef, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.comp.Rule(id)
}

// NamespaceOfIfindex labels kernel counters.
func (a *Agent) NamespaceOfIfindex(ifindex int) (string, bool) {
	k, ok := a.PodByIfindex(ifindex)
	return k.Namespace, ok
}

// DenyRule names the ClusterNetworkPolicy Deny rule that dropped a packet of the local
// pod on ifindex, if one did (events.TierResolver).
func (a *Agent) DenyRule(ifindex int, d rules.Direction, remote netip.Addr, proto rules.Protocol, port uint16) (compile.RuleRef, bool) {
	k, ok := a.PodByIfindex(ifindex)
	if !ok {
		return compile.RuleRef{}, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	ref, ok := a.comp.TierDecision(k, d, remote, proto, port)
	return ref, ok && ref.Action == "Deny"
}

var (
	_ events.Resolver     = (*Agent)(nil)
	_ events.TierResolver = (*Agent)(nil)
)
