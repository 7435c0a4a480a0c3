package defaultdeny

import (
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/selection"
	cnp "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/strictgate/strictgate/internal/contract"
)

// BaselinePriority is the generated Baseline policy's priority: the lowest precedence
// (the highest number the API allows), so that a platform team's own Baseline policies
// are evaluated before it.
const BaselinePriority = 1000

// EnforcedNamespaceSelector is scope as one label selector over namespace labels, for a
// ClusterNetworkPolicy subject: it matches exactly the namespaces scope.Enforced
// accepts (TestEnforcedNamespaceSelector checks the two agree), except that a
// namespace being deleted is still matched (it is about to go, with its pods).
// Requirements of scope.Selector that a metav1.LabelSelector cannot express (Gt, Lt)
// are an error: enforcing a different set of namespaces than configured is worse than
// refusing to start.
func EnforcedNamespaceSelector(scope contract.Scope) (*metav1.LabelSelector, error) {
	excluded := slices.Concat(contract.AlwaysExcluded, scope.Excluded)
	if scope.OwnNamespace != "" {
		excluded = append(excluded, scope.OwnNamespace)
	}
	slices.Sort(excluded)
	excluded = slices.Compact(excluded)
	sel := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: namespaceNameLabel, Operator: metav1.LabelSelectorOpNotIn, Values: excluded},
		{Key: contract.EnforceLabel, Operator: metav1.LabelSelectorOpNotIn, Values: []string{contract.EnforceDisabled}},
	}}
	if scope.Selector == nil {
		return sel, nil
	}
	reqs, selectable := scope.Selector.Requirements()
	if !selectable {
		return nil, fmt.Errorf("namespace selector %q selects nothing", scope.Selector)
	}
	for _, r := range reqs {
		var op metav1.LabelSelectorOperator
		switch r.Operator() {
		case selection.In, selection.Equals, selection.DoubleEquals:
			op = metav1.LabelSelectorOpIn
		case selection.NotIn, selection.NotEquals:
			op = metav1.LabelSelectorOpNotIn
		case selection.Exists:
			op = metav1.LabelSelectorOpExists
		case selection.DoesNotExist:
			op = metav1.LabelSelectorOpDoesNotExist
		default:
			return nil, fmt.Errorf("namespace selector requirement %q (%s) cannot be expressed in a ClusterNetworkPolicy subject; use In, NotIn, Exists or DoesNotExist", r.String(), r.Operator())
		}
		req := metav1.LabelSelectorRequirement{Key: r.Key(), Operator: op}
		if op == metav1.LabelSelectorOpIn || op == metav1.LabelSelectorOpNotIn {
			req.Values = slices.Sorted(slices.Values(r.Values().UnsortedList()))
		}
		sel.MatchExpressions = append(sel.MatchExpressions, req)
	}
	return sel, nil
}

// BaselinePolicy is the one Baseline-tier ClusterNetworkPolicy that replaces
// strictgate-default-deny in every namespace (enforcement.defaultDeny: baseline): all
// pods of the enforced namespaces, ingress and egress denied where no NetworkPolicy
// decides, with an Accept for UDP and TCP 53 to the cluster DNS pods first when dns.
//
// A ClusterNetworkPolicy's ingress peers are pods only, so its ingress Deny covers
// traffic from pods; the per-namespace NetworkPolicy also isolates ingress from
// addresses outside the cluster.
func BaselinePolicy(scope contract.Scope, dns bool, dnsNamespace string, dnsPodLabels map[string]string) (*cnp.ClusterNetworkPolicy, error) {
	nsSel, err := EnforcedNamespaceSelector(scope)
	if err != nil {
		return nil, err
	}
	if dnsNamespace == "" {
		dnsNamespace = DefaultDNSNamespace
	}
	if dnsPodLabels == nil {
		dnsPodLabels = DefaultDNSPodLabels
	}
	all := []cnp.ClusterNetworkPolicyEgressPeer{
		{Namespaces: &metav1.LabelSelector{}},
		{Networks: []cnp.CIDR{"0.0.0.0/0", "::/0"}},
	}
	var egress []cnp.ClusterNetworkPolicyEgressRule
	if dns {
		port := &cnp.Port{Number: 53}
		egress = append(egress, cnp.ClusterNetworkPolicyEgressRule{
			Name:   "allow-dns",
			Action: cnp.ClusterNetworkPolicyRuleActionAccept,
			To: []cnp.ClusterNetworkPolicyEgressPeer{{Pods: &cnp.NamespacedPod{
				NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{namespaceNameLabel: dnsNamespace}},
				PodSelector:       metav1.LabelSelector{MatchLabels: dnsPodLabels},
			}}},
			Protocols: []cnp.ClusterNetworkPolicyProtocol{
				{UDP: &cnp.ClusterNetworkPolicyProtocolUDP{DestinationPort: port}},
				{TCP: &cnp.ClusterNetworkPolicyProtocolTCP{DestinationPort: port}},
			},
		})
	}
	egress = append(egress, cnp.ClusterNetworkPolicyEgressRule{Name: "deny-all-egress", Action: cnp.ClusterNetworkPolicyRuleActionDeny, To: all})
	return &cnp.ClusterNetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: cnp.GroupVersion.String(), Kind: "ClusterNetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: contract.DefaultDenyPolicy, Labels: map[string]string{contract.ManagedByLabel: contract.ManagedBy}},
		Spec: cnp.ClusterNetworkPolicySpec{
			Tier:     cnp.BaselineTier,
			Priority: BaselinePriority,
			Subject:  cnp.ClusterNetworkPolicySubject{Namespaces: nsSel},
			Ingress: []cnp.ClusterNetworkPolicyIngressRule{{
				Name: "deny-all-ingress", Action: cnp.ClusterNetworkPolicyRuleActionDeny,
				From: []cnp.ClusterNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{}}},
			}},
			Egress: egress,
		},
	}, nil
}
