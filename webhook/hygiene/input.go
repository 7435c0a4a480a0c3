package hygiene

import (
	"context"
	"fmt"
	"sort"

	"github.com/open-policy-agent/opa/v1/ast"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/strictgate/strictgate/internal/contract"
)

// Review is one decoded admission request for a NetworkPolicy.
type Review struct {
	UID       string
	Operation string // CREATE, UPDATE or DELETE
	DryRun    bool
	Namespace string
	Name      string
	UserInfo  authenticationv1.UserInfo
	// Object is the policy as it would be stored (nil on DELETE); OldObject the one
	// stored now (nil on CREATE).
	Object    *networkingv1.NetworkPolicy
	OldObject *networkingv1.NetworkPolicy
}

// Policy is the policy the rules judge: the new object, or the old one on DELETE.
func (r *Review) Policy() *networkingv1.NetworkPolicy {
	if r.Object != nil {
		return r.Object
	}
	return r.OldObject
}

// Settings are the webhook's configuration as rules see it (input.config).
type Settings struct {
	// MaxPortRange is the widest port..endPort range SG006 accepts (0 = its default).
	MaxPortRange int
	// ProtectedPolicies are the generated policies SG011 guards.
	ProtectedPolicies []string
	// PrivilegedUsers may update and delete them (strictgate's own service account).
	PrivilegedUsers []string
}

// Facts is the cluster state a review consults. The webhook backs it with the
// manager's informer cache; lists may share memory with the cache and are never
// modified.
type Facts interface {
	// Namespace returns the namespace, or nil when it does not exist.
	Namespace(ctx context.Context, name string) (*corev1.Namespace, error)
	Namespaces(ctx context.Context) ([]corev1.Namespace, error)
	// PodCount is the number of pods in the namespace.
	PodCount(ctx context.Context, namespace string) (int, error)
	// SelectPods returns the pods of the namespace that sel matches. Its cost should
	// follow the answer, not the namespace (the webhook indexes pods by label):
	// every review asks it for its own selector and each pod-selector peer.
	SelectPods(ctx context.Context, namespace string, sel labels.Selector) ([]*corev1.Pod, error)
	NetworkPolicies(ctx context.Context, namespace string) ([]networkingv1.NetworkPolicy, error)
}

// InputBuilder turns reviews into the rules' input document (policies/README.md).
// The parts that never change (limits, settings) are built once.
type InputBuilder struct {
	limits *ast.Term
	config *ast.Term
}

// NewInputBuilder prepares the constant parts of the input.
func NewInputBuilder(s Settings) *InputBuilder {
	cfg := ast.NewObject(
		ast.Item(ast.InternedTerm("protectedPolicies"), stringsTerm(s.ProtectedPolicies)),
		ast.Item(ast.InternedTerm("privilegedUsers"), stringsTerm(s.PrivilegedUsers)),
	)
	if s.MaxPortRange > 0 {
		cfg.Insert(ast.InternedTerm("maxPortRange"), ast.InternedTerm(s.MaxPortRange))
	}
	return &InputBuilder{limits: LimitsTerm(), config: ast.NewTerm(cfg)}
}

// LimitsTerm is the datapath's limits (internal/contract) as input.limits.
func LimitsTerm() *ast.Term {
	return ast.ObjectTerm(
		ast.Item(ast.InternedTerm("maxPods"), ast.IntNumberTerm(contract.MaxPods)),
		ast.Item(ast.InternedTerm("maxPrefixes"), ast.IntNumberTerm(contract.MaxPrefixes)),
		ast.Item(ast.InternedTerm("maxPrefixesPerPodDirection"), ast.IntNumberTerm(contract.MaxPrefixesPerPodDirection)),
		ast.Item(ast.InternedTerm("maxPortRulesPerEntry"), ast.IntNumberTerm(contract.MaxPortRulesPerEntry)),
		ast.Item(ast.InternedTerm("maxPortRules"), ast.IntNumberTerm(contract.MaxPortRules)),
		ast.Item(ast.InternedTerm("maxConntrack"), ast.IntNumberTerm(contract.MaxConntrack)),
	)
}

// Build returns the input document for r. facts may be nil (no cluster facts: the
// rules that need them stay silent). The document is built directly as an OPA
// value, so evaluation neither marshals JSON nor converts Go maps.
func (b *InputBuilder) Build(ctx context.Context, r *Review, facts Facts) (ast.Value, error) {
	pol := r.Policy()
	if pol == nil {
		return nil, fmt.Errorf("review %s of %s/%s has neither object nor oldObject", r.Operation, r.Namespace, r.Name)
	}
	req := ast.NewObject(
		ast.Item(ast.InternedTerm("uid"), ast.StringTerm(r.UID)),
		ast.Item(ast.InternedTerm("operation"), ast.StringTerm(r.Operation)),
		ast.Item(ast.InternedTerm("dryRun"), ast.InternedTerm(r.DryRun)),
		ast.Item(ast.InternedTerm("namespace"), ast.StringTerm(r.Namespace)),
		ast.Item(ast.InternedTerm("name"), ast.StringTerm(r.Name)),
		ast.Item(ast.InternedTerm("userInfo"), userInfoTerm(r.UserInfo)),
	)
	var policy *ast.Term
	if r.OldObject != nil {
		policy = policyTerm(r.OldObject)
		req.Insert(ast.InternedTerm("oldObject"), policy)
	}
	if r.Object != nil {
		policy = policyTerm(r.Object)
		req.Insert(ast.InternedTerm("object"), policy)
	}
	in := ast.NewObject(
		ast.Item(ast.InternedTerm("request"), ast.NewTerm(req)),
		ast.Item(ast.InternedTerm("policy"), policy),
		ast.Item(ast.InternedTerm("limits"), b.limits),
		ast.Item(ast.InternedTerm("config"), b.config),
	)
	if facts != nil {
		cluster, err := clusterTerm(ctx, r, pol, facts)
		if err != nil {
			return nil, err
		}
		in.Insert(ast.InternedTerm("cluster"), cluster)
	}
	return in, nil
}

// clusterTerm gathers input.cluster. On DELETE only the namespace is needed (the
// built-in DELETE rule asks whether it is terminating), so pods are not listed.
func clusterTerm(ctx context.Context, r *Review, pol *networkingv1.NetworkPolicy, facts Facts) (*ast.Term, error) {
	nsName := r.Namespace
	if nsName == "" {
		nsName = pol.Namespace
	}
	out := ast.NewObject()
	ns, err := facts.Namespace(ctx, nsName)
	if err != nil {
		return nil, fmt.Errorf("get namespace %s: %w", nsName, err)
	}
	if ns != nil {
		out.Insert(ast.InternedTerm("namespace"), ast.ObjectTerm(
			ast.Item(ast.InternedTerm("name"), ast.StringTerm(ns.Name)),
			ast.Item(ast.InternedTerm("labels"), labelsTerm(ns.Labels)),
			ast.Item(ast.InternedTerm("terminating"), ast.InternedTerm(ns.DeletionTimestamp != nil || ns.Status.Phase == corev1.NamespaceTerminating)),
		))
	}
	if r.Operation == "DELETE" {
		return ast.NewTerm(out), nil
	}

	podCount, err := facts.PodCount(ctx, nsName)
	if err != nil {
		return nil, fmt.Errorf("count pods in %s: %w", nsName, err)
	}
	policies, err := facts.NetworkPolicies(ctx, nsName)
	if err != nil {
		return nil, fmt.Errorf("list network policies in %s: %w", nsName, err)
	}
	sort.Slice(policies, func(i, j int) bool { return policies[i].Name < policies[j].Name })

	own := selector(&pol.Spec.PodSelector)
	type other struct {
		name string
		sel  labels.Selector
	}
	others := make([]other, 0, len(policies))
	policiesObj := ast.NewObject()
	for i := range policies {
		q := &policies[i]
		if q.Name == pol.Name {
			continue // the stored version of the policy under review
		}
		others = append(others, other{q.Name, selector(&q.Spec.PodSelector)})
		policiesObj.Insert(ast.StringTerm(q.Name), policyTerm(q))
	}

	// Only the pods this policy selects are rendered: they are all the rules read
	// (lib.selected_pods), and rendering every pod of the namespace made each
	// request cost grow with the namespace (3 ms at 500 pods, 15 ms at 5,000,
	// most of it OPA iterating the array), and they come from the label index, so
	// the unselected ones are not even visited. input.cluster.podCount keeps the size.
	pods, err := facts.SelectPods(ctx, nsName, own)
	if err != nil {
		return nil, fmt.Errorf("list pods in %s: %w", nsName, err)
	}
	var podTerms []*ast.Term
	for _, p := range pods {
		set := labels.Set(p.Labels)
		var selectedBy []*ast.Term
		for _, o := range others {
			if o.sel.Matches(set) {
				selectedBy = append(selectedBy, ast.StringTerm(o.name))
			}
		}
		podTerms = append(podTerms, ast.ObjectTerm(
			ast.Item(ast.InternedTerm("name"), ast.StringTerm(p.Name)),
			ast.Item(ast.InternedTerm("labels"), labelsTerm(p.Labels)),
			ast.Item(ast.InternedTerm("selected"), ast.InternedTerm(true)),
			ast.Item(ast.InternedTerm("policies"), ast.ArrayTerm(selectedBy...)),
			ast.Item(ast.InternedTerm("ports"), podPortsTerm(p)),
		))
	}

	peers, err := peersTerm(ctx, nsName, pol, facts)
	if err != nil {
		return nil, err
	}
	out.Insert(ast.InternedTerm("pods"), ast.ArrayTerm(podTerms...))
	out.Insert(ast.InternedTerm("podCount"), ast.InternedTerm(podCount))
	out.Insert(ast.InternedTerm("policies"), ast.NewTerm(policiesObj))
	out.Insert(ast.InternedTerm("peers"), peers)
	return ast.NewTerm(out), nil
}

// peersTerm resolves every pod/namespace selector peer of pol to the pods it matches
// now: how many, and which named ports they expose (input.cluster.peers).
func peersTerm(ctx context.Context, nsName string, pol *networkingv1.NetworkPolicy, facts Facts) (*ast.Term, error) {
	var namespaces []corev1.Namespace
	var out []*ast.Term
	visit := func(dir string, i, j int, peer *networkingv1.NetworkPolicyPeer) error {
		if peer.PodSelector == nil && peer.NamespaceSelector == nil {
			return nil // ipBlock
		}
		nsNames := []string{nsName}
		if peer.NamespaceSelector != nil {
			if namespaces == nil {
				var err error
				if namespaces, err = facts.Namespaces(ctx); err != nil {
					return fmt.Errorf("list namespaces: %w", err)
				}
			}
			nsSel := selector(peer.NamespaceSelector)
			nsNames = nsNames[:0]
			for k := range namespaces {
				if nsSel.Matches(labels.Set(namespaces[k].Labels)) {
					nsNames = append(nsNames, namespaces[k].Name)
				}
			}
		}
		podSel := labels.Everything()
		if peer.PodSelector != nil {
			podSel = selector(peer.PodSelector)
		}
		count := 0
		named := map[[2]string]bool{}
		for _, ns := range nsNames {
			pods, err := facts.SelectPods(ctx, ns, podSel)
			if err != nil {
				return fmt.Errorf("list pods in %s: %w", ns, err)
			}
			for _, p := range pods {
				count++
				forEachPort(p, func(cp *corev1.ContainerPort) {
					if cp.Name != "" {
						named[[2]string{cp.Name, protocol(cp.Protocol)}] = true
					}
				})
			}
		}
		keys := make([][2]string, 0, len(named))
		for k := range named {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(a, b int) bool {
			if keys[a][0] != keys[b][0] {
				return keys[a][0] < keys[b][0]
			}
			return keys[a][1] < keys[b][1]
		})
		namedTerms := make([]*ast.Term, len(keys))
		for k, key := range keys {
			namedTerms[k] = ast.ObjectTerm(
				ast.Item(ast.InternedTerm("name"), ast.StringTerm(key[0])),
				ast.Item(ast.InternedTerm("protocol"), ast.StringTerm(key[1])),
			)
		}
		out = append(out, ast.ObjectTerm(
			ast.Item(ast.InternedTerm("direction"), ast.StringTerm(dir)),
			ast.Item(ast.InternedTerm("rule"), ast.InternedTerm(i)),
			ast.Item(ast.InternedTerm("peer"), ast.InternedTerm(j)),
			ast.Item(ast.InternedTerm("pods"), ast.InternedTerm(count)),
			ast.Item(ast.InternedTerm("namedPorts"), ast.ArrayTerm(namedTerms...)),
		))
		return nil
	}
	for i := range pol.Spec.Ingress {
		for j := range pol.Spec.Ingress[i].From {
			if err := visit("ingress", i, j, &pol.Spec.Ingress[i].From[j]); err != nil {
				return nil, err
			}
		}
	}
	for i := range pol.Spec.Egress {
		for j := range pol.Spec.Egress[i].To {
			if err := visit("egress", i, j, &pol.Spec.Egress[i].To[j]); err != nil {
				return nil, err
			}
		}
	}
	return ast.ArrayTerm(out...), nil
}

// selector converts a label selector; an invalid one (which the API server rejects
// before validating admission) matches nothing rather than failing the review.
func selector(s *metav1.LabelSelector) labels.Selector {
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return labels.Nothing()
	}
	return sel
}

func forEachPort(p *corev1.Pod, fn func(*corev1.ContainerPort)) {
	for i := range p.Spec.InitContainers { // restartable init containers (sidecars) serve too
		for j := range p.Spec.InitContainers[i].Ports {
			fn(&p.Spec.InitContainers[i].Ports[j])
		}
	}
	for i := range p.Spec.Containers {
		for j := range p.Spec.Containers[i].Ports {
			fn(&p.Spec.Containers[i].Ports[j])
		}
	}
}

func podPortsTerm(p *corev1.Pod) *ast.Term {
	var out []*ast.Term
	forEachPort(p, func(cp *corev1.ContainerPort) {
		item := ast.NewObject(
			ast.Item(ast.InternedTerm("containerPort"), ast.InternedTerm(int(cp.ContainerPort))),
			ast.Item(ast.InternedTerm("protocol"), ast.StringTerm(protocol(cp.Protocol))),
		)
		if cp.Name != "" {
			item.Insert(ast.InternedTerm("name"), ast.StringTerm(cp.Name))
		}
		out = append(out, ast.NewTerm(item))
	})
	return ast.ArrayTerm(out...)
}

func protocol(p corev1.Protocol) string {
	if p == "" {
		return string(corev1.ProtocolTCP)
	}
	return string(p)
}

// policyTerm renders a NetworkPolicy the way the API server's JSON has it (fields
// omitted when unset, so "podSelector" absent and "podSelector": {} stay different),
// with the port protocol defaulted to TCP as the API server would. metadata carries
// name, namespace, uid, labels and annotations only.
func policyTerm(p *networkingv1.NetworkPolicy) *ast.Term {
	meta := ast.NewObject(
		ast.Item(ast.InternedTerm("name"), ast.StringTerm(p.Name)),
		ast.Item(ast.InternedTerm("namespace"), ast.StringTerm(p.Namespace)),
	)
	if p.UID != "" {
		meta.Insert(ast.InternedTerm("uid"), ast.StringTerm(string(p.UID)))
	}
	if p.Labels != nil {
		meta.Insert(ast.InternedTerm("labels"), labelsTerm(p.Labels))
	}
	if p.Annotations != nil {
		meta.Insert(ast.InternedTerm("annotations"), labelsTerm(p.Annotations))
	}
	spec := ast.NewObject(ast.Item(ast.InternedTerm("podSelector"), selectorTerm(&p.Spec.PodSelector)))
	if p.Spec.PolicyTypes != nil {
		types := make([]*ast.Term, len(p.Spec.PolicyTypes))
		for i, t := range p.Spec.PolicyTypes {
			types[i] = ast.StringTerm(string(t))
		}
		spec.Insert(ast.InternedTerm("policyTypes"), ast.ArrayTerm(types...))
	}
	if p.Spec.Ingress != nil {
		rs := make([]*ast.Term, len(p.Spec.Ingress))
		for i := range p.Spec.Ingress {
			rs[i] = ruleTerm("from", p.Spec.Ingress[i].From, p.Spec.Ingress[i].Ports)
		}
		spec.Insert(ast.InternedTerm("ingress"), ast.ArrayTerm(rs...))
	}
	if p.Spec.Egress != nil {
		rs := make([]*ast.Term, len(p.Spec.Egress))
		for i := range p.Spec.Egress {
			rs[i] = ruleTerm("to", p.Spec.Egress[i].To, p.Spec.Egress[i].Ports)
		}
		spec.Insert(ast.InternedTerm("egress"), ast.ArrayTerm(rs...))
	}
	return ast.ObjectTerm(
		ast.Item(ast.InternedTerm("metadata"), ast.NewTerm(meta)),
		ast.Item(ast.InternedTerm("spec"), ast.NewTerm(spec)),
	)
}

func ruleTerm(peerKey string, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort) *ast.Term {
	r := ast.NewObject()
	if peers != nil {
		ps := make([]*ast.Term, len(peers))
		for i := range peers {
			ps[i] = peerTerm(&peers[i])
		}
		r.Insert(ast.InternedTerm(peerKey), ast.ArrayTerm(ps...))
	}
	if ports != nil {
		ps := make([]*ast.Term, len(ports))
		for i := range ports {
			ps[i] = portTerm(&ports[i])
		}
		r.Insert(ast.InternedTerm("ports"), ast.ArrayTerm(ps...))
	}
	return ast.NewTerm(r)
}

func peerTerm(p *networkingv1.NetworkPolicyPeer) *ast.Term {
	o := ast.NewObject()
	if p.PodSelector != nil {
		o.Insert(ast.InternedTerm("podSelector"), selectorTerm(p.PodSelector))
	}
	if p.NamespaceSelector != nil {
		o.Insert(ast.InternedTerm("namespaceSelector"), selectorTerm(p.NamespaceSelector))
	}
	if p.IPBlock != nil {
		b := ast.NewObject(ast.Item(ast.InternedTerm("cidr"), ast.StringTerm(p.IPBlock.CIDR)))
		if p.IPBlock.Except != nil {
			b.Insert(ast.InternedTerm("except"), stringsTerm(p.IPBlock.Except))
		}
		o.Insert(ast.InternedTerm("ipBlock"), ast.NewTerm(b))
	}
	return ast.NewTerm(o)
}

func portTerm(p *networkingv1.NetworkPolicyPort) *ast.Term {
	proto := corev1.ProtocolTCP
	if p.Protocol != nil && *p.Protocol != "" {
		proto = *p.Protocol
	}
	o := ast.NewObject(ast.Item(ast.InternedTerm("protocol"), ast.StringTerm(string(proto))))
	if p.Port != nil {
		if p.Port.Type == intstr.String {
			o.Insert(ast.InternedTerm("port"), ast.StringTerm(p.Port.StrVal))
		} else {
			o.Insert(ast.InternedTerm("port"), ast.InternedTerm(int(p.Port.IntVal)))
		}
	}
	if p.EndPort != nil {
		o.Insert(ast.InternedTerm("endPort"), ast.InternedTerm(int(*p.EndPort)))
	}
	return ast.NewTerm(o)
}

func selectorTerm(s *metav1.LabelSelector) *ast.Term {
	o := ast.NewObject()
	if s.MatchLabels != nil {
		o.Insert(ast.InternedTerm("matchLabels"), labelsTerm(s.MatchLabels))
	}
	if len(s.MatchExpressions) > 0 {
		exprs := make([]*ast.Term, len(s.MatchExpressions))
		for i, e := range s.MatchExpressions {
			x := ast.NewObject(
				ast.Item(ast.InternedTerm("key"), ast.StringTerm(e.Key)),
				ast.Item(ast.InternedTerm("operator"), ast.StringTerm(string(e.Operator))),
			)
			if e.Values != nil {
				x.Insert(ast.InternedTerm("values"), stringsTerm(e.Values))
			}
			exprs[i] = ast.NewTerm(x)
		}
		o.Insert(ast.InternedTerm("matchExpressions"), ast.ArrayTerm(exprs...))
	}
	return ast.NewTerm(o)
}

func labelsTerm(m map[string]string) *ast.Term {
	o := ast.NewObjectWithCapacity(len(m))
	for k, v := range m {
		o.Insert(ast.StringTerm(k), ast.StringTerm(v))
	}
	return ast.NewTerm(o)
}

func stringsTerm(ss []string) *ast.Term {
	ts := make([]*ast.Term, len(ss))
	for i, s := range ss {
		ts[i] = ast.StringTerm(s)
	}
	return ast.ArrayTerm(ts...)
}

func userInfoTerm(u authenticationv1.UserInfo) *ast.Term {
	extra := ast.NewObject()
	for k, v := range u.Extra {
		extra.Insert(ast.StringTerm(k), stringsTerm(v))
	}
	return ast.ObjectTerm(
		ast.Item(ast.InternedTerm("username"), ast.StringTerm(u.Username)),
		ast.Item(ast.InternedTerm("uid"), ast.StringTerm(u.UID)),
		ast.Item(ast.InternedTerm("groups"), stringsTerm(u.Groups)),
		ast.Item(ast.InternedTerm("extra"), ast.NewTerm(extra)),
	)
}
