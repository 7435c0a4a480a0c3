package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	kjson "sigs.k8s.io/json"
	cnp "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// PathValidateClusterNetworkPolicy is where the API server sends ClusterNetworkPolicy
// CREATE and UPDATE requests (v1beta1 and v1alpha2: the two versions share one schema).
const PathValidateClusterNetworkPolicy = "/validate-policy-networking-k8s-io-clusternetworkpolicy"

// CNPGroup is the API group of ClusterNetworkPolicy (sigs.k8s.io/network-policy-api).
const CNPGroup = "policy.networking.k8s.io"

// cnpVersions are the versions the CRD serves; both carry the same schema, so one
// decoder (v1beta1's types) judges both.
var cnpVersions = map[string]bool{"v1beta1": true, "v1alpha2": true}

// ClusterNetworkPolicyValidator refuses ClusterNetworkPolicies that strictgate could
// not enforce exactly: a field it does not implement would otherwise be stored and
// silently ignored by the agent, and the platform team would believe a rule is in
// force that is not. Malformed objects (which the CRD's schema refuses before any
// webhook is called, but a direct call may carry) are refused with the field named.
// Objects that pass are then judged by the hygiene rules that declare
// kinds := {"ClusterNetworkPolicy"} (NewClusterNetworkPolicyValidator); the zero value
// judges support and form only.
type ClusterNetworkPolicyValidator struct {
	rules NetworkPolicyRules
	facts CNPFacts
	self  string
}

var _ admission.Handler = &ClusterNetworkPolicyValidator{}

// Handle implements admission.Handler.
func (v *ClusterNetworkPolicyValidator) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.UID == "" {
		return admission.Errored(http.StatusBadRequest, errors.New("admission request has no uid: not an AdmissionReview from the API server"))
	}
	if req.Kind.Group != CNPGroup || req.Kind.Kind != "ClusterNetworkPolicy" || !cnpVersions[req.Kind.Version] || req.SubResource != "" {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("ClusterNetworkPolicy validator got %s (subresource %q): the webhook configuration must send only %s ClusterNetworkPolicies (v1beta1, v1alpha2)",
			req.Kind.String(), req.SubResource, CNPGroup))
	}
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return admission.Allowed("")
	}
	obj, errs := decodeClusterNetworkPolicy(req.Object.Raw, req.Kind.Version)
	if errs == nil {
		if req.Operation == admissionv1.Update && obj.DeletionTimestamp != nil {
			// Finalizer removals after an admitted deletion must go through.
			return admission.Allowed("policy is being deleted")
		}
		errs = ValidateClusterNetworkPolicy(obj)
	}
	if len(errs) > 0 {
		return admission.Denied(fmt.Sprintf("ClusterNetworkPolicy %q refused by strictgate: %s", cnpName(req, obj), errs.ToAggregate().Error()))
	}
	return v.judge(ctx, req, obj, req.Object.Raw)
}

func cnpName(req admission.Request, obj *cnp.ClusterNetworkPolicy) string {
	if req.Name != "" || obj == nil {
		return req.Name
	}
	return obj.Name
}

// decodeClusterNetworkPolicy decodes strictly: a field the module's types do not know
// is a field no part of strictgate reads, so it is refused rather than dropped.
func decodeClusterNetworkPolicy(raw []byte, version string) (*cnp.ClusterNetworkPolicy, field.ErrorList) {
	if len(raw) == 0 {
		return nil, field.ErrorList{field.Required(field.NewPath("object"), "admission request carries no object")}
	}
	var obj cnp.ClusterNetworkPolicy
	strict, err := kjson.UnmarshalStrict(raw, &obj, kjson.DisallowUnknownFields)
	if err != nil {
		return nil, field.ErrorList{field.Invalid(field.NewPath("object"), "", fmt.Sprintf("not a ClusterNetworkPolicy: %v", err))}
	}
	var errs field.ErrorList
	for _, e := range strict {
		errs = append(errs, field.Forbidden(field.NewPath("object"), fmt.Sprintf("%v: strictgate does not implement this field (not in %s/%s)", e, CNPGroup, version)))
	}
	if obj.APIVersion != "" && obj.APIVersion != CNPGroup+"/"+version {
		errs = append(errs, field.Invalid(field.NewPath("apiVersion"), obj.APIVersion, "does not match the request's version "+CNPGroup+"/"+version))
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return &obj, nil
}

// unsupported is the message for a part of the API strictgate does not enforce.
func unsupported(p *field.Path, why string) *field.Error {
	return field.Forbidden(p, "not supported by strictgate: "+why+"; remove it (strictgate refuses what it would not enforce rather than ignore it)")
}

// ValidateClusterNetworkPolicy returns every reason strictgate refuses cnp: fields it
// does not implement (experimental egress domainNames) and anything the CRD's schema
// would refuse (tier, priority, one-of subjects/peers/protocols/ports, CIDRs, counts).
func ValidateClusterNetworkPolicy(obj *cnp.ClusterNetworkPolicy) field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath("spec")
	s := &obj.Spec
	switch s.Tier {
	case cnp.AdminTier, cnp.BaselineTier:
	default:
		errs = append(errs, field.NotSupported(p.Child("tier"), s.Tier, []string{string(cnp.AdminTier), string(cnp.BaselineTier)}))
	}
	if s.Priority < 0 || s.Priority > 1000 {
		errs = append(errs, field.Invalid(p.Child("priority"), s.Priority, "must be between 0 and 1000"))
	}
	errs = append(errs, validateCNPSubject(&s.Subject, p.Child("subject"))...)
	if len(s.Ingress) > 25 {
		errs = append(errs, field.TooMany(p.Child("ingress"), len(s.Ingress), 25))
	}
	if len(s.Egress) > 25 {
		errs = append(errs, field.TooMany(p.Child("egress"), len(s.Egress), 25))
	}
	for i := range s.Ingress {
		r := &s.Ingress[i]
		rp := p.Child("ingress").Index(i)
		errs = append(errs, validateCNPRuleHead(r.Name, r.Action, len(r.From), rp, "from")...)
		for j := range r.From {
			errs = append(errs, validateCNPPeer(r.From[j].Namespaces, r.From[j].Pods, rp.Child("from").Index(j))...)
		}
		errs = append(errs, validateCNPProtocols(r.Protocols, rp.Child("protocols"))...)
	}
	for i := range s.Egress {
		r := &s.Egress[i]
		rp := p.Child("egress").Index(i)
		errs = append(errs, validateCNPRuleHead(r.Name, r.Action, len(r.To), rp, "to")...)
		nonPod := false
		for j := range r.To {
			pe := &r.To[j]
			pp := rp.Child("to").Index(j)
			set := 0
			if pe.Namespaces != nil {
				set++
			}
			if pe.Pods != nil {
				set++
			}
			if pe.Nodes != nil {
				set++
				nonPod = true
				errs = append(errs, validateSelector(pe.Nodes, pp.Child("nodes"))...)
			}
			if pe.Networks != nil {
				set++
				nonPod = true
				errs = append(errs, validateCNPNetworks(pe.Networks, pp.Child("networks"))...)
			}
			if pe.DomainNames != nil {
				set++
				nonPod = true
				errs = append(errs, unsupported(pp.Child("domainNames"), "egress domainNames (experimental channel) need FQDN tracking, which strictgate's datapath does not do"))
			}
			errs = append(errs, validateCNPPeerCount(set, pe.Namespaces, pe.Pods, pp)...)
		}
		errs = append(errs, validateCNPProtocols(r.Protocols, rp.Child("protocols"))...)
		if nonPod {
			for k, pr := range r.Protocols {
				if pr.DestinationNamedPort != "" {
					errs = append(errs, field.Invalid(rp.Child("protocols").Index(k).Child("destinationNamedPort"), pr.DestinationNamedPort,
						"networks/nodes/domainNames peer cannot be set with namedPorts since there are no namedPorts for networks/nodes/domainNames"))
				}
			}
		}
	}
	return errs
}

func validateCNPSubject(s *cnp.ClusterNetworkPolicySubject, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case s.Namespaces != nil && s.Pods != nil:
		errs = append(errs, field.Invalid(p, "namespaces+pods", "set exactly one of namespaces or pods"))
	case s.Namespaces == nil && s.Pods == nil:
		errs = append(errs, field.Required(p, "set exactly one of namespaces or pods"))
	}
	if s.Namespaces != nil {
		errs = append(errs, validateSelector(s.Namespaces, p.Child("namespaces"))...)
	}
	if s.Pods != nil {
		errs = append(errs, validateNamespacedPod(s.Pods, p.Child("pods"))...)
	}
	return errs
}

func validateNamespacedPod(np *cnp.NamespacedPod, p *field.Path) field.ErrorList {
	errs := validateSelector(&np.NamespaceSelector, p.Child("namespaceSelector"))
	return append(errs, validateSelector(&np.PodSelector, p.Child("podSelector"))...)
}

func validateCNPRuleHead(name string, action cnp.ClusterNetworkPolicyRuleAction, peers int, p *field.Path, peerField string) field.ErrorList {
	var errs field.ErrorList
	if len(name) > 100 {
		errs = append(errs, field.TooLong(p.Child("name"), name, 100))
	}
	switch action {
	case cnp.ClusterNetworkPolicyRuleActionAccept, cnp.ClusterNetworkPolicyRuleActionDeny, cnp.ClusterNetworkPolicyRuleActionPass:
	default:
		errs = append(errs, field.NotSupported(p.Child("action"), action, []string{"Accept", "Deny", "Pass"}))
	}
	switch {
	case peers == 0:
		errs = append(errs, field.Required(p.Child(peerField), "at least one peer"))
	case peers > 25:
		errs = append(errs, field.TooMany(p.Child(peerField), peers, 25))
	}
	return errs
}

func validateCNPPeer(ns *metav1.LabelSelector, pods *cnp.NamespacedPod, p *field.Path) field.ErrorList {
	set := 0
	if ns != nil {
		set++
	}
	if pods != nil {
		set++
	}
	return validateCNPPeerCount(set, ns, pods, p)
}

func validateCNPPeerCount(set int, ns *metav1.LabelSelector, pods *cnp.NamespacedPod, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if set != 1 {
		errs = append(errs, field.Invalid(p, fmt.Sprintf("%d peer kinds", set), "a peer sets exactly one of its fields (namespaces, pods, nodes, networks)"))
	}
	if ns != nil {
		errs = append(errs, validateSelector(ns, p.Child("namespaces"))...)
	}
	if pods != nil {
		errs = append(errs, validateNamespacedPod(pods, p.Child("pods"))...)
	}
	return errs
}

func validateCNPNetworks(nets []cnp.CIDR, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case len(nets) == 0:
		errs = append(errs, field.Required(p, "at least one CIDR"))
	case len(nets) > 25:
		errs = append(errs, field.TooMany(p, len(nets), 25))
	}
	for i, c := range nets {
		pfx, err := netip.ParsePrefix(string(c))
		switch {
		case len(c) > 43 || err != nil:
			errs = append(errs, field.Invalid(p.Index(i), c, "Invalid CIDR format provided"))
		case pfx.Masked() != pfx:
			errs = append(errs, field.Invalid(p.Index(i), c, fmt.Sprintf("Invalid CIDR format provided: host bits set (the network is %s)", pfx.Masked())))
		}
	}
	return errs
}

func validateCNPProtocols(ps []cnp.ClusterNetworkPolicyProtocol, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if ps != nil && len(ps) == 0 {
		errs = append(errs, field.Required(p, "omit protocols or list at least one"))
	}
	if len(ps) > 25 {
		errs = append(errs, field.TooMany(p, len(ps), 25))
	}
	for i := range ps {
		pr := &ps[i]
		pp := p.Index(i)
		set := 0
		check := func(name string, port *cnp.Port) {
			set++
			if port == nil {
				errs = append(errs, field.Required(pp.Child(name, "destinationPort"), ""))
				return
			}
			errs = append(errs, validateCNPPort(port, pp.Child(name, "destinationPort"))...)
		}
		if pr.TCP != nil {
			check("tcp", pr.TCP.DestinationPort)
		}
		if pr.UDP != nil {
			check("udp", pr.UDP.DestinationPort)
		}
		if pr.SCTP != nil {
			check("sctp", pr.SCTP.DestinationPort)
		}
		if pr.DestinationNamedPort != "" {
			// The schema puts no pattern on it; a name no container port can carry
			// matches nothing, as upstream.
			set++
		}
		if set != 1 {
			errs = append(errs, field.Invalid(pp, fmt.Sprintf("%d protocol fields", set), "set exactly one of tcp, udp, sctp or destinationNamedPort"))
		}
	}
	return errs
}

func validateCNPPort(port *cnp.Port, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	inRange := func(fp *field.Path, v int32) {
		if v < 1 || v > 65535 {
			errs = append(errs, field.Invalid(fp, v, "must be between 1 and 65535"))
		}
	}
	switch {
	case port.Number != 0 && port.Range != nil:
		errs = append(errs, field.Invalid(p, "number+range", "set exactly one of number or range"))
	case port.Number == 0 && port.Range == nil:
		errs = append(errs, field.Required(p, "set exactly one of number or range"))
	}
	if port.Number != 0 {
		inRange(p.Child("number"), port.Number)
	}
	if r := port.Range; r != nil {
		inRange(p.Child("range", "start"), r.Start)
		inRange(p.Child("range", "end"), r.End)
		if r.Start >= r.End {
			errs = append(errs, field.Invalid(p.Child("range"), fmt.Sprintf("%d-%d", r.Start, r.End), "Start port must be less than End port"))
		}
	}
	return errs
}
