package compile

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"

	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/strictgate/strictgate/agent/rules"
)

// Compiler holds the cluster state the rules depend on and every pod's compiled rules.
// Each Upsert/Delete recomputes only the pods the change can affect and returns the
// keys of the pods whose rules changed (appeared, changed or disappeared), sorted.
// A Compiler is not safe for concurrent use.
type Compiler struct {
	node        string                // only pods on this node get rules ("" = all)
	nodeIPs     []netip.Addr          // the node's own addresses (see Options.NodeIPs)
	namespaces  map[string]labels.Set // declared namespaces, name label included
	pods        map[types.NamespacedName]*podInfo
	nsPods      map[string]*nsPods
	policies    map[types.NamespacedName]*policyInfo
	nsPolicies  map[string]map[string]*policyInfo
	services    map[types.NamespacedName]*svcInfo
	slices      map[types.NamespacedName]*sliceInfo
	slicesBySvc map[types.NamespacedName]map[string]*sliceInfo
	table       ruleTable
	out         map[types.NamespacedName]*rules.PodRules
	dirty       map[types.NamespacedName]struct{}
	// addrs caches the addresses each rule's peers select, across updates; a change
	// that can alter a rule's selection deletes its entry.
	addrs map[*ruleInfo]*ruleAddrs
	cnps  map[string]*cnpInfo  // ClusterNetworkPolicies by name
	nodes map[string]*nodeInfo // Nodes, for ClusterNetworkPolicy nodes peers
	// svcs caches the Service targets for ServiceAt until the next change.
	svcs []svcTarget
}

// nsPods indexes the pods of one namespace by label.
type nsPods struct {
	labels  labels.Set // the namespace's labels (implicit ones if not declared)
	pods    map[string]*podInfo
	byLabel map[string]map[*podInfo]struct{} // key "k\x00v"
}

func sortedAddrs(as []netip.Addr) []netip.Addr {
	n := unmapAll(as)
	slices.SortFunc(n, netip.Addr.Compare)
	return slices.Compact(n)
}

func unmapAll(as []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(as))
	for _, a := range as {
		out = append(out, a.Unmap())
	}
	return out
}

// Options tune a Compiler.
type Options struct {
	// Node, when set, compiles rules only for pods scheduled on that node
	// (spec.nodeName), as the node agent needs; pods elsewhere still count as peers
	// and backends. Empty compiles every pod (strictgate verdict).
	Node string
	// NodeIPs are the addresses of the node whose pods are compiled. The datapath
	// always lets a pod talk to its own node; a Service backend at one of these
	// addresses (a host-network pod, the API server of a one-node cluster) is
	// therefore reachable through the ClusterIP whatever the client's egress rules
	// say, as it is directly. Nil: no backend gets this treatment.
	NodeIPs []netip.Addr
}

// New returns an empty Compiler.
func New(opts Options) *Compiler {
	return &Compiler{
		node:        opts.Node,
		nodeIPs:     sortedAddrs(opts.NodeIPs),
		namespaces:  map[string]labels.Set{},
		pods:        map[types.NamespacedName]*podInfo{},
		nsPods:      map[string]*nsPods{},
		policies:    map[types.NamespacedName]*policyInfo{},
		nsPolicies:  map[string]map[string]*policyInfo{},
		services:    map[types.NamespacedName]*svcInfo{},
		slices:      map[types.NamespacedName]*sliceInfo{},
		slicesBySvc: map[types.NamespacedName]map[string]*sliceInfo{},
		table:       newRuleTable(),
		out:         map[types.NamespacedName]*rules.PodRules{},
		dirty:       map[types.NamespacedName]struct{}{},
		addrs:       map[*ruleInfo]*ruleAddrs{},
		cnps:        map[string]*cnpInfo{},
		nodes:       map[string]*nodeInfo{},
	}
}

// State is a whole cluster's worth of objects, for Build.
type State struct {
	Namespaces     []*corev1.Namespace
	Pods           []*corev1.Pod
	Policies       []*networkingv1.NetworkPolicy
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	// ClusterNetworkPolicies (v1beta1; convert v1alpha2 objects, same schema) and the
	// Nodes their nodes peers select.
	ClusterNetworkPolicies []*cnpv1beta1.ClusterNetworkPolicy
	Nodes                  []*corev1.Node
}

// Build compiles a whole state at once (faster than one Upsert per object). Invalid
// objects make it fail with an error naming the object.
func Build(s State, opts Options) (*Compiler, error) {
	c := New(opts)
	for _, ns := range s.Namespaces {
		c.setNamespace(ns.Name, ns.Labels)
	}
	for _, p := range s.Pods {
		pi, err := newPodInfo(p)
		if err != nil {
			return nil, err
		}
		c.setPod(pi.key, pi)
	}
	for _, np := range s.Policies {
		pi, err := newPolicyInfo(np)
		if err != nil {
			return nil, err
		}
		c.setPolicy(pi.key, pi)
	}
	for _, sv := range s.Services {
		si, err := newSvcInfo(sv)
		if err != nil {
			return nil, err
		}
		c.services[si.key] = si
	}
	for _, es := range s.EndpointSlices {
		si, err := newSliceInfo(es)
		if err != nil {
			return nil, err
		}
		c.setSlice(si.key, si)
	}
	for _, n := range s.Nodes {
		c.nodes[n.Name] = newNodeInfo(n)
	}
	for _, cnp := range s.ClusterNetworkPolicies {
		ci, err := newCNPInfo(cnp)
		if err != nil {
			return nil, err
		}
		c.setCNP(cnp.Name, ci)
	}
	c.Recompute()
	return c, nil
}

// Recompute recompiles every pod from scratch and returns those whose rules changed.
// The result must always be empty: incremental updates are exact.
func (c *Compiler) Recompute() []types.NamespacedName {
	for k := range c.pods {
		c.dirty[k] = struct{}{}
	}
	for k := range c.out {
		c.dirty[k] = struct{}{}
	}
	return c.flush()
}

// Rules returns the compiled rules of a pod; false if the pod is unknown, uses the host
// network, has terminated or is on another node (Options.Node). The result is shared: callers must not modify it.
func (c *Compiler) Rules(pod types.NamespacedName) (*rules.PodRules, bool) {
	r, ok := c.out[pod]
	return r, ok
}

// Pods returns the keys of all pods that have compiled rules, sorted.
func (c *Compiler) Pods() []types.NamespacedName {
	keys := slices.Collect(maps.Keys(c.out))
	slices.SortFunc(keys, compareKeys)
	return keys
}

// Rule resolves a RuleID assigned by this compiler.
func (c *Compiler) Rule(id rules.RuleID) (RuleRef, bool) {
	r, ok := c.table.byID[id]
	return r, ok
}

// RuleID returns the ID of a rule, if its policy is known.
func (c *Compiler) RuleID(r RuleRef) (rules.RuleID, bool) {
	id, ok := c.table.byRef[r]
	return id, ok
}

// SelectingPolicies returns the policies that select the pod for direction d (and so
// isolate it there), sorted.
func (c *Compiler) SelectingPolicies(pod types.NamespacedName, d rules.Direction) []types.NamespacedName {
	p := c.pods[pod]
	if p == nil || !c.target(p) {
		return nil
	}
	var out []types.NamespacedName
	for _, pol := range c.selecting(p, d) {
		out = append(out, pol.key)
	}
	return out
}

// UpsertNamespace adds or updates a namespace.
func (c *Compiler) UpsertNamespace(ns *corev1.Namespace) []types.NamespacedName {
	c.changeNamespace(ns.Name, ns.Labels, true)
	return c.flush()
}

// DeleteNamespace forgets a namespace; its pods (if any remain) see it as implicit.
func (c *Compiler) DeleteNamespace(name string) []types.NamespacedName {
	c.changeNamespace(name, nil, false)
	return c.flush()
}

// UpsertPod adds or updates a pod.
func (c *Compiler) UpsertPod(pod *corev1.Pod) ([]types.NamespacedName, error) {
	np, err := newPodInfo(pod)
	if err != nil {
		return nil, err
	}
	c.changePod(np.key, np)
	return c.flush(), nil
}

// DeletePod forgets a pod.
func (c *Compiler) DeletePod(pod types.NamespacedName) []types.NamespacedName {
	c.changePod(pod, nil)
	return c.flush()
}

// UpsertPolicy adds or updates a NetworkPolicy; an invalid one changes nothing.
func (c *Compiler) UpsertPolicy(np *networkingv1.NetworkPolicy) ([]types.NamespacedName, error) {
	pi, err := newPolicyInfo(np)
	if err != nil {
		return nil, err
	}
	c.changePolicy(pi.key, pi)
	return c.flush(), nil
}

// DeletePolicy forgets a NetworkPolicy.
func (c *Compiler) DeletePolicy(policy types.NamespacedName) []types.NamespacedName {
	c.changePolicy(policy, nil)
	return c.flush()
}

// SetNodeIPs replaces the node's own addresses (Options.NodeIPs), which can change
// while the agent runs, and returns the pods whose rules changed.
func (c *Compiler) SetNodeIPs(addrs []netip.Addr) []types.NamespacedName {
	n := sortedAddrs(addrs)
	if !slices.Equal(n, c.nodeIPs) {
		c.nodeIPs = n
		c.dirtyEgressIsolated()
	}
	return c.flush()
}

// UpsertService adds or updates a Service.
func (c *Compiler) UpsertService(s *corev1.Service) ([]types.NamespacedName, error) {
	si, err := newSvcInfo(s)
	if err != nil {
		return nil, err
	}
	if old := c.services[si.key]; old == nil || !reflect.DeepEqual(old, si) {
		c.services[si.key] = si
		c.dirtyEgressIsolated()
	}
	return c.flush(), nil
}

// DeleteService forgets a Service.
func (c *Compiler) DeleteService(svc types.NamespacedName) []types.NamespacedName {
	if _, ok := c.services[svc]; ok {
		delete(c.services, svc)
		c.dirtyEgressIsolated()
	}
	return c.flush()
}

// UpsertEndpointSlice adds or updates an EndpointSlice.
func (c *Compiler) UpsertEndpointSlice(es *discoveryv1.EndpointSlice) ([]types.NamespacedName, error) {
	si, err := newSliceInfo(es)
	if err != nil {
		return nil, err
	}
	// EndpointSlices are rewritten often (readiness, conditions, hints) without a
	// change in what matters here.
	if old := c.slices[si.key]; old == nil || !reflect.DeepEqual(old, si) {
		c.setSlice(si.key, si)
		c.dirtyEgressIsolated()
	}
	return c.flush(), nil
}

// DeleteEndpointSlice forgets an EndpointSlice.
func (c *Compiler) DeleteEndpointSlice(slice types.NamespacedName) []types.NamespacedName {
	if _, ok := c.slices[slice]; ok {
		c.setSlice(slice, nil)
		c.dirtyEgressIsolated()
	}
	return c.flush()
}

// --- state changes -------------------------------------------------------------

// target reports whether the pod gets rules: host-network pods never do (the datapath
// cannot tell them from the node), terminated ones no longer need any.
func (c *Compiler) target(p *podInfo) bool {
	return p.alive() && (c.node == "" || p.node == c.node)
}

func (c *Compiler) nsLabels(ns string) labels.Set {
	if l, ok := c.namespaces[ns]; ok {
		return l
	}
	if n := c.nsPods[ns]; n != nil {
		return n.labels
	}
	return labels.Set{NamespaceNameLabel: ns}
}

func (c *Compiler) setNamespace(name string, l map[string]string) {
	ls := make(labels.Set, len(l)+1)
	maps.Copy(ls, l)
	ls[NamespaceNameLabel] = name
	c.namespaces[name] = ls
	if n := c.nsPods[name]; n != nil {
		n.labels = ls
	}
}

func (c *Compiler) changeNamespace(name string, l map[string]string, present bool) {
	old := c.nsLabels(name)
	if present {
		c.setNamespace(name, l)
	} else {
		delete(c.namespaces, name)
		if n := c.nsPods[name]; n != nil {
			n.labels = labels.Set{NamespaceNameLabel: name}
		}
	}
	nw := c.nsLabels(name)
	if !labelsEqual(old, nw) {
		c.dirtyCNP() // subjects and peers select by namespace labels
	}
	if labelsEqual(old, nw) || c.nsPods[name] == nil {
		return // no pods there: no peer changed
	}
	for _, pol := range c.policies {
		if c.namespaceChange(pol, old, nw) {
			c.dirtyTargets(pol)
		}
	}
}

// namespaceChange reports whether the rules of pol select other pods once a namespace's
// labels change from old to nw (its pods unchanged), forgetting the affected rules'
// cached addresses.
func (c *Compiler) namespaceChange(pol *policyInfo, old, nw labels.Set) bool {
	changed := false
	for d := range pol.rules {
		for _, r := range pol.rules[d] {
			for _, pe := range r.peers {
				if pe.nsSel != nil && pe.nsSel.Matches(old) != pe.nsSel.Matches(nw) {
					delete(c.addrs, r)
					changed = changed || pol.has[d]
					break
				}
			}
		}
	}
	return changed
}

func (c *Compiler) setPod(key types.NamespacedName, p *podInfo) {
	n := c.nsPods[key.Namespace]
	if old := c.pods[key]; old != nil {
		delete(c.pods, key)
		delete(n.pods, key.Name)
		for k, v := range old.labels {
			lk := k + "\x00" + v
			delete(n.byLabel[lk], old)
			if len(n.byLabel[lk]) == 0 {
				delete(n.byLabel, lk)
			}
		}
		if len(n.pods) == 0 {
			delete(c.nsPods, key.Namespace)
			n = nil
		}
	}
	if p == nil {
		return
	}
	if n == nil {
		n = &nsPods{labels: c.nsLabels(key.Namespace), pods: map[string]*podInfo{}, byLabel: map[string]map[*podInfo]struct{}{}}
		c.nsPods[key.Namespace] = n
	}
	c.pods[key] = p
	n.pods[key.Name] = p
	for k, v := range p.labels {
		lk := k + "\x00" + v
		s := n.byLabel[lk]
		if s == nil {
			s = map[*podInfo]struct{}{}
			n.byLabel[lk] = s
		}
		s[p] = struct{}{}
	}
}

func (c *Compiler) changePod(key types.NamespacedName, p *podInfo) {
	old := c.pods[key]
	if old == nil && p == nil {
		return
	}
	c.dirty[key] = struct{}{}
	c.dirtyCNP()
	if old == nil || p == nil || !old.samePeer(p) {
		// With the same addresses and ports, only a change in which selectors match
		// matters; otherwise anything that matches either version does.
		addrChange := old == nil || p == nil || old.peer() != p.peer() ||
			!slices.Equal(old.ips, p.ips) || !maps.EqualFunc(old.named, p.named, slices.Equal[[]uint16])
		for _, pol := range c.policies {
			if c.peerChange(pol, old, p, addrChange) {
				c.dirtyTargets(pol)
			}
		}
		// Readiness matters to Services only (selector-resolved backends).
		readyChange := old != nil && p != nil && old.notReady != p.notReady
		if so, sn := c.selectorBackend(old), c.selectorBackend(p); so != sn || ((addrChange || readyChange) && (so || sn)) {
			c.dirtyEgressIsolated()
		}
	}
	c.setPod(key, p)
}

// peerChange reports whether the rules of pol can differ between a world with pod
// version old and one with version nw (either may be nil) as a peer, forgetting the
// affected rules' cached addresses.
func (c *Compiler) peerChange(pol *policyInfo, old, nw *podInfo, addrChange bool) bool {
	changed := func(so, sn bool) bool { return so != sn || (addrChange && (so || sn)) }
	isPeer := func(p *podInfo) bool { return p != nil && p.peer() }
	any := false
	for d := range pol.rules {
		for _, r := range pol.rules[d] {
			if c.ruleChange(pol, rules.Direction(d), r, old, nw, changed, isPeer) {
				delete(c.addrs, r)
				any = any || pol.has[d]
			}
		}
	}
	return any
}

func (c *Compiler) ruleChange(pol *policyInfo, d rules.Direction, r *ruleInfo, old, nw *podInfo, changed func(bool, bool) bool, isPeer func(*podInfo) bool) bool {
	namedEgress := d == rules.Egress && len(r.named) > 0
	if r.all && namedEgress && changed(isPeer(old), isPeer(nw)) {
		return true
	}
	for i := range r.peers {
		pe := &r.peers[i]
		var so, sn bool
		if pe.block {
			if !namedEgress {
				continue
			}
			so = isPeer(old) && slices.ContainsFunc(old.ips, pe.admits)
			sn = isPeer(nw) && slices.ContainsFunc(nw.ips, pe.admits)
		} else {
			so = isPeer(old) && c.peerSelects(pol.key.Namespace, pe, old)
			sn = isPeer(nw) && c.peerSelects(pol.key.Namespace, pe, nw)
		}
		if changed(so, sn) {
			return true
		}
	}
	return false
}

// admits reports whether an address is inside an ipBlock peer (cidr minus excepts).
func (pe *peerInfo) admits(a netip.Addr) bool {
	if !pe.cidr.Contains(a) {
		return false
	}
	for _, e := range pe.except {
		if e.Contains(a) {
			return false
		}
	}
	return true
}

func (c *Compiler) peerSelects(polNS string, pe *peerInfo, p *podInfo) bool {
	if pe.nsSel == nil {
		return p.key.Namespace == polNS && pe.podSel.Matches(p.labels)
	}
	return pe.nsSel.Matches(c.nsLabels(p.key.Namespace)) && (pe.podSel == nil || pe.podSel.Matches(p.labels))
}

// selectorBackend reports whether p may be a backend of a Service that the compiler
// resolves through its selector (no EndpointSlices known).
func (c *Compiler) selectorBackend(p *podInfo) bool {
	if p == nil {
		return false
	}
	for _, s := range c.services {
		if s.key.Namespace == p.key.Namespace && s.selector != nil && len(c.slicesBySvc[s.key]) == 0 && s.selector.Matches(p.labels) {
			return true
		}
	}
	return false
}

func (c *Compiler) setPolicy(key types.NamespacedName, p *policyInfo) {
	if old := c.policies[key]; old != nil {
		for d := range old.rules {
			for _, r := range old.rules[d] {
				c.table.release(r.ref)
				delete(c.addrs, r)
			}
		}
		delete(c.policies, key)
		delete(c.nsPolicies[key.Namespace], key.Name)
		if len(c.nsPolicies[key.Namespace]) == 0 {
			delete(c.nsPolicies, key.Namespace)
		}
	}
	if p == nil {
		return
	}
	for d := range p.rules {
		for _, r := range p.rules[d] {
			r.id = c.table.assign(r.ref)
			for i := range r.numeric {
				r.numeric[i].Rule = r.id
			}
		}
	}
	c.policies[key] = p
	if c.nsPolicies[key.Namespace] == nil {
		c.nsPolicies[key.Namespace] = map[string]*policyInfo{}
	}
	c.nsPolicies[key.Namespace][key.Name] = p
}

func (c *Compiler) changePolicy(key types.NamespacedName, p *policyInfo) {
	if old := c.policies[key]; old != nil {
		c.dirtyTargets(old)
	} else if p == nil {
		return
	}
	c.setPolicy(key, p)
	if p != nil {
		c.dirtyTargets(p)
	}
}

func (c *Compiler) setSlice(key types.NamespacedName, s *sliceInfo) {
	if old := c.slices[key]; old != nil {
		sk := types.NamespacedName{Namespace: key.Namespace, Name: old.service}
		delete(c.slicesBySvc[sk], key.Name)
		if len(c.slicesBySvc[sk]) == 0 {
			delete(c.slicesBySvc, sk)
		}
		delete(c.slices, key)
	}
	if s == nil {
		return
	}
	c.slices[key] = s
	sk := types.NamespacedName{Namespace: key.Namespace, Name: s.service}
	if c.slicesBySvc[sk] == nil {
		c.slicesBySvc[sk] = map[string]*sliceInfo{}
	}
	c.slicesBySvc[sk][key.Name] = s
}

func (c *Compiler) dirtyTargets(pol *policyInfo) {
	n := c.nsPods[pol.key.Namespace]
	if n == nil {
		return
	}
	n.each(pol.selector, func(p *podInfo) {
		c.dirty[p.key] = struct{}{}
	})
}

func (c *Compiler) dirtyEgressIsolated() {
	for k, r := range c.out {
		if r.Egress.State == rules.StateIsolated {
			c.dirty[k] = struct{}{}
		}
	}
}

// each calls fn for every pod of the namespace that sel matches, using the label index
// when the selector has an equality or set requirement.
func (n *nsPods) each(sel labels.Selector, fn func(*podInfo)) {
	if sel.Empty() {
		for _, p := range n.pods {
			fn(p)
		}
		return
	}
	var best []map[*podInfo]struct{}
	bestN := -1
	if reqs, ok := sel.Requirements(); ok {
		for _, r := range reqs {
			switch r.Operator() {
			case selection.Equals, selection.DoubleEquals, selection.In:
			default:
				continue
			}
			var sets []map[*podInfo]struct{}
			total := 0
			for _, v := range r.ValuesUnsorted() {
				if s := n.byLabel[r.Key()+"\x00"+v]; len(s) > 0 {
					sets = append(sets, s)
					total += len(s)
				}
			}
			if bestN < 0 || total < bestN {
				best, bestN = sets, total
			}
		}
	}
	if bestN < 0 {
		for _, p := range n.pods {
			if sel.Matches(p.labels) {
				fn(p)
			}
		}
		return
	}
	for _, s := range best {
		for p := range s {
			if sel.Matches(p.labels) {
				fn(p) // an In over distinct values never yields a pod twice: a label has one value
			}
		}
	}
}

// selecting returns the policies selecting pod p for direction d, sorted by name.
func (c *Compiler) selecting(p *podInfo, d rules.Direction) []*policyInfo {
	var out []*policyInfo
	for _, pol := range c.nsPolicies[p.key.Namespace] {
		if pol.has[d] && pol.selector.Matches(p.labels) {
			out = append(out, pol)
		}
	}
	slices.SortFunc(out, func(a, b *policyInfo) int { return strings.Compare(a.key.Name, b.key.Name) })
	return out
}

func compareKeys(a, b types.NamespacedName) int {
	if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

// flush recomputes the dirty pods and returns those whose rules changed.
func (c *Compiler) flush() []types.NamespacedName {
	c.svcs = nil // every mutation ends here
	if len(c.dirty) == 0 {
		return nil
	}
	b := newBatch(c)
	var changed []types.NamespacedName
	for k := range c.dirty {
		p := c.pods[k]
		old, had := c.out[k]
		if p == nil || !c.target(p) {
			if had {
				delete(c.out, k)
				changed = append(changed, k)
			}
			continue
		}
		nr := b.podRules(p)
		if !had || !equalPodRules(old, nr) {
			c.out[k] = nr
			changed = append(changed, k)
		}
	}
	clear(c.dirty)
	slices.SortFunc(changed, compareKeys)
	return changed
}

// Validate reports whether the compiler accepts an object (a Namespace, Pod,
// NetworkPolicy, Service or EndpointSlice), with the reason if not; it changes nothing.
func Validate(obj any) error {
	var err error
	switch o := obj.(type) {
	case *corev1.Namespace:
	case *corev1.Pod:
		_, err = newPodInfo(o)
	case *networkingv1.NetworkPolicy:
		_, err = newPolicyInfo(o)
	case *corev1.Service:
		_, err = newSvcInfo(o)
	case *discoveryv1.EndpointSlice:
		_, err = newSliceInfo(o)
	case *cnpv1beta1.ClusterNetworkPolicy:
		_, err = newCNPInfo(o)
	case *corev1.Node:
	default:
		err = fmt.Errorf("unsupported object %T: %w", obj, ErrInvalid)
	}
	return err
}

// Dump writes every pod's compiled rules in a stable, readable form (rule IDs resolved
// to policy rules), for golden files and debugging.
func (c *Compiler) Dump(w io.Writer) error {
	bw := bufio.NewWriter(w)
	for _, k := range c.Pods() {
		r := c.out[k]
		fmt.Fprintf(bw, "%s\n", k)
		for _, d := range []rules.Direction{rules.Ingress, rules.Egress} {
			dr := r.Dir(d)
			fmt.Fprintf(bw, "  %s: %s", d, dr.State)
			if pols := c.SelectingPolicies(k, d); len(pols) > 0 {
				names := make([]string, len(pols))
				for i, p := range pols {
					names[i] = p.String()
				}
				fmt.Fprintf(bw, " by %s", strings.Join(names, ", "))
			}
			if tiers := c.SelectingClusterPolicies(k, d); len(tiers) > 0 {
				fmt.Fprintf(bw, " tiers %s", strings.Join(tiers, ", "))
			}
			bw.WriteString("\n")
			for _, e := range dr.Entries {
				fmt.Fprintf(bw, "    %-20s", e.Prefix)
				if len(e.Ports) == 0 {
					bw.WriteString(" deny")
				}
				for i, p := range e.Ports {
					if i > 0 {
						bw.WriteString(",")
					}
					ports := fmt.Sprintf("%d-%d", p.First, p.Last)
					if p.AnyPort() {
						ports = "*"
					} else if p.First == p.Last {
						ports = fmt.Sprint(p.First)
					}
					ref := fmt.Sprintf("rule#%d", p.Rule)
					if rr, ok := c.table.byID[p.Rule]; ok {
						ref = fmt.Sprintf("%s %s[%d]", rr.Policy, rr.Direction, rr.Index)
						if rr.Tier != "" {
							ref = fmt.Sprintf("%s/%s %s[%d] %s", rr.Tier, rr.Policy.Name, rr.Direction, rr.Index, rr.Action)
						}
					} else if p.Rule == rules.RuleUnisolated {
						ref = "default"
					}
					fmt.Fprintf(bw, " %s/%s (%s)", p.Protocol, ports, ref)
				}
				bw.WriteString("\n")
			}
		}
	}
	return bw.Flush()
}
