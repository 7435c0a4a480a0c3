package webhook

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	netutils "k8s.io/utils/net"
)

// validateNetworkPolicySpec checks what the API server's own NetworkPolicy validation
// checks about the parts the hygiene rules reason about: CIDRs, ports, protocols,
// policy types, peers and label selectors. The API server validates before it calls
// admission webhooks, so an API-server request never fails here; a direct call with
// garbage (ipBlock.cidr "10.0.0.300/33") must not be judged by rules that would parse
// it as something else, or allowed without a word.
//
// It is deliberately neither stricter nor more lenient than the API server (a test
// runs the same table against a real one): a port name is an IANA service name, a
// CIDR is canonical.
//
// old is the stored spec on UPDATE (nil on CREATE): CIDR spellings it already holds are
// judged as the API server judges them, by the rules in force when they were stored.
func validateNetworkPolicySpec(spec, old *networkingv1.NetworkPolicySpec) field.ErrorList {
	legacy := legacyCIDRs(old)
	var errs field.ErrorList
	p := field.NewPath("spec")
	errs = append(errs, validateSelector(&spec.PodSelector, p.Child("podSelector"))...)
	seen := map[networkingv1.PolicyType]bool{}
	for i, t := range spec.PolicyTypes {
		fp := p.Child("policyTypes").Index(i)
		switch {
		case t != networkingv1.PolicyTypeIngress && t != networkingv1.PolicyTypeEgress:
			errs = append(errs, field.NotSupported(fp, t, []string{string(networkingv1.PolicyTypeIngress), string(networkingv1.PolicyTypeEgress)}))
		case seen[t]:
			errs = append(errs, field.Duplicate(fp, t))
		}
		seen[t] = true
	}
	for i, r := range spec.Ingress {
		rp := p.Child("ingress").Index(i)
		errs = append(errs, validatePorts(r.Ports, rp.Child("ports"))...)
		for j := range r.From {
			errs = append(errs, validatePeer(&r.From[j], legacy, rp.Child("from").Index(j))...)
		}
	}
	for i, r := range spec.Egress {
		rp := p.Child("egress").Index(i)
		errs = append(errs, validatePorts(r.Ports, rp.Child("ports"))...)
		for j := range r.To {
			errs = append(errs, validatePeer(&r.To[j], legacy, rp.Child("to").Index(j))...)
		}
	}
	return errs
}

func validateSelector(s *metav1.LabelSelector, p *field.Path) field.ErrorList {
	return metav1validation.ValidateLabelSelector(s, metav1validation.LabelSelectorValidationOptions{}, p)
}

var supportedProtocols = []string{string(corev1.ProtocolTCP), string(corev1.ProtocolUDP), string(corev1.ProtocolSCTP)}

func validatePorts(ports []networkingv1.NetworkPolicyPort, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, port := range ports {
		pp := p.Index(i)
		if port.Protocol != nil && !slices.Contains(supportedProtocols, string(*port.Protocol)) {
			errs = append(errs, field.NotSupported(pp.Child("protocol"), *port.Protocol, supportedProtocols))
		}
		if port.Port != nil {
			if port.Port.Type == intstr.Int {
				for _, msg := range validation.IsValidPortNum(int(port.Port.IntVal)) {
					errs = append(errs, field.Invalid(pp.Child("port"), port.Port.IntVal, msg))
				}
			} else {
				for _, msg := range validation.IsValidPortName(port.Port.StrVal) {
					errs = append(errs, field.Invalid(pp.Child("port"), port.Port.StrVal, msg))
				}
			}
		}
		if port.EndPort == nil {
			continue
		}
		ep := pp.Child("endPort")
		switch {
		case port.Port == nil:
			errs = append(errs, field.Invalid(ep, *port.EndPort, "may not be specified when `port` is not specified"))
		case port.Port.Type != intstr.Int:
			errs = append(errs, field.Invalid(ep, *port.EndPort, "may not be specified when `port` is non-numeric"))
		case *port.EndPort < port.Port.IntVal:
			errs = append(errs, field.Invalid(ep, *port.EndPort, "must be greater than or equal to port"))
		}
		for _, msg := range validation.IsValidPortNum(int(*port.EndPort)) {
			errs = append(errs, field.Invalid(ep, *port.EndPort, msg))
		}
	}
	return errs
}

func validatePeer(peer *networkingv1.NetworkPolicyPeer, legacy map[string]bool, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	set := 0
	if peer.PodSelector != nil {
		set++
		errs = append(errs, validateSelector(peer.PodSelector, p.Child("podSelector"))...)
	}
	if peer.NamespaceSelector != nil {
		set++
		errs = append(errs, validateSelector(peer.NamespaceSelector, p.Child("namespaceSelector"))...)
	}
	if peer.IPBlock != nil {
		set++
		errs = append(errs, validateIPBlock(peer.IPBlock, legacy, p.Child("ipBlock"))...)
	}
	switch {
	case set == 0:
		errs = append(errs, field.Required(p, "must specify a peer"))
	case peer.IPBlock != nil && set > 1:
		errs = append(errs, field.Forbidden(p, "may not specify more than 1 peer type when ipBlock is specified"))
	}
	return errs
}

// parseCIDR parses as the API server does for a new value (Kubernetes ≥ 1.33: no
// leading zeros, no bits set beyond the prefix length). A value the old object
// already held (legacy) is parsed as older API servers did — leading zeros and host
// bits accepted — because the API server lets such a value stay on update.
func parseCIDR(s string, legacy map[string]bool) (netip.Prefix, error) {
	if legacy[s] {
		_, n, err := netutils.ParseCIDRSloppy(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		addr, _ := netip.AddrFromSlice(n.IP)
		ones, _ := n.Mask.Size()
		return netip.PrefixFrom(addr.Unmap(), ones), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("must not have an IPv4-mapped IPv6 address")
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("must not have bits set beyond the prefix length (%s)", p.Masked())
	}
	return p, nil
}

// legacyCIDRs is every ipBlock cidr and except of old (nil on CREATE).
func legacyCIDRs(old *networkingv1.NetworkPolicySpec) map[string]bool {
	if old == nil {
		return nil
	}
	out := map[string]bool{}
	add := func(peers []networkingv1.NetworkPolicyPeer) {
		for _, p := range peers {
			if p.IPBlock != nil {
				out[p.IPBlock.CIDR] = true
				for _, e := range p.IPBlock.Except {
					out[e] = true
				}
			}
		}
	}
	for _, r := range old.Ingress {
		add(r.From)
	}
	for _, r := range old.Egress {
		add(r.To)
	}
	return out
}

func validateIPBlock(b *networkingv1.IPBlock, legacy map[string]bool, p *field.Path) field.ErrorList {
	cp := p.Child("cidr")
	if b.CIDR == "" {
		return field.ErrorList{field.Required(cp, "")}
	}
	cidr, err := parseCIDR(b.CIDR, legacy)
	if err != nil {
		return field.ErrorList{field.Invalid(cp, b.CIDR, "must be a valid CIDR (for example 10.0.0.0/16 or 2001:db8::/64): "+err.Error())}
	}
	var errs field.ErrorList
	for i, e := range b.Except {
		ep := p.Child("except").Index(i)
		ex, err := parseCIDR(e, legacy)
		switch {
		case err != nil:
			errs = append(errs, field.Invalid(ep, e, "must be a valid CIDR (for example 10.0.0.0/16 or 2001:db8::/64): "+err.Error()))
		case ex.Addr().Is4() != cidr.Addr().Is4() || ex.Bits() <= cidr.Bits() || !cidr.Contains(ex.Addr()):
			errs = append(errs, field.Invalid(ep, e, fmt.Sprintf("must be a strict subset of `cidr` %s", b.CIDR)))
		}
	}
	return errs
}

// invalidMessage is the one-line refusal for errs, naming the policy.
func invalidMessage(namespace, name string, errs field.ErrorList) string {
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return fmt.Sprintf("NetworkPolicy %s/%s is invalid (the API server would refuse it; strictgate's hygiene rules judge only valid policies): %s",
		namespace, name, strings.Join(msgs, "; "))
}
