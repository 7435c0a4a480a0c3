package webhook

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// specCase is one NetworkPolicy spec and the field the API server refuses in it ("" =
// valid). The same table is checked against validateNetworkPolicySpec, the admission
// handler and, in TestNetworkPolicyHygieneOnAPIServer, the real API server, so the
// validator is neither more lenient nor stricter than the API server.
type specCase struct {
	name      string
	mutate    func(*networkingv1.NetworkPolicySpec)
	wantField string
}

func ingressFrom(peers []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) func(*networkingv1.NetworkPolicySpec) {
	return func(s *networkingv1.NetworkPolicySpec) {
		s.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: peers, Ports: ports}}
	}
}

func specCases() []specCase {
	sctp, icmp := corev1.ProtocolSCTP, corev1.Protocol("ICMP")
	lower := corev1.Protocol("tcp")
	end := func(n int32) *int32 { return &n }
	sel := func(key, op string, values ...string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: metav1.LabelSelectorOperator(op), Values: values}}}
	}
	return []specCase{
		{"ipv4 block with except", ingressFrom(ipBlock("10.20.0.0/16", "10.20.1.0/24")), ""},
		{"ipv6 block with except", ingressFrom(ipBlock("2001:db8::/32", "2001:db8:1::/48")), ""},
		{"host bits set", ingressFrom(ipBlock("10.20.3.4/16")), "spec.ingress[0].from[0].ipBlock.cidr"},
		{"leading zeros", ingressFrom(ipBlock("010.020.0.0/16")), "spec.ingress[0].from[0].ipBlock.cidr"},
		{"ipv4-mapped ipv6", ingressFrom(ipBlock("::ffff:10.0.0.0/104")), "spec.ingress[0].from[0].ipBlock.cidr"},
		{"octet out of range", ingressFrom(ipBlock("10.0.0.300/24")), "spec.ingress[0].from[0].ipBlock.cidr"},
		{"prefix too long", ingressFrom(ipBlock("10.0.0.0/33")), "spec.ingress[0].from[0].ipBlock.cidr"},
		{"the probe's cidr", ingressFrom(ipBlock("10.0.0.300/33")), "spec.ingress[0].from[0].ipBlock.cidr"},
		{"address without prefix", ingressFrom(ipBlock("10.0.0.1")), "spec.ingress[0].from[0].ipBlock.cidr"},
		{"empty cidr", ingressFrom(ipBlock("")), "spec.ingress[0].from[0].ipBlock.cidr"},
		{"except not a cidr", ingressFrom(ipBlock("10.0.0.0/8", "banana")), "spec.ingress[0].from[0].ipBlock.except[0]"},
		{"except outside cidr", ingressFrom(ipBlock("10.0.0.0/16", "10.1.0.0/24")), "spec.ingress[0].from[0].ipBlock.except[0]"},
		{"except equal to cidr", ingressFrom(ipBlock("10.0.0.0/16", "10.0.0.0/16")), "spec.ingress[0].from[0].ipBlock.except[0]"},
		{"except of the other family", ingressFrom(ipBlock("10.0.0.0/8", "2001:db8::/64")), "spec.ingress[0].from[0].ipBlock.except[0]"},
		{"ipBlock with a pod selector", ingressFrom([]networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}, PodSelector: &metav1.LabelSelector{}}}), "spec.ingress[0].from[0]"},
		{"empty peer", ingressFrom([]networkingv1.NetworkPolicyPeer{{}}), "spec.ingress[0].from[0]"},
		{"port range", ingressFrom(fromDB(), networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: portNum(8000), EndPort: end(9000)}), ""},
		{"named port", ingressFrom(fromDB(), networkingv1.NetworkPolicyPort{Protocol: &udp, Port: portName("dns")}), ""},
		{"SCTP", ingressFrom(fromDB(), networkingv1.NetworkPolicyPort{Protocol: &sctp, Port: portNum(9)}), ""},
		{"port 0", ingressFrom(fromDB(), networkingv1.NetworkPolicyPort{Port: portNum(0)}), "spec.ingress[0].ports[0].port"},
		{"port 65536", ingressFrom(fromDB(), networkingv1.NetworkPolicyPort{Port: portNum(65536)}), "spec.ingress[0].ports[0].port"},
		{"negative port", ingressFrom(fromDB(), networkingv1.NetworkPolicyPort{Port: portNum(-1)}), "spec.ingress[0].ports[0].port"},
		{"port name not an IANA name", ingressFrom(fromDB(), networkingv1.NetworkPolicyPort{Port: portName("HTTP_PORT")}), "spec.ingress[0].ports[0].port"},
		{"port name too long", ingressFrom(fromDB(), networkingv1.NetworkPolicyPort{Port: portName("sixteen-letters1")}), "spec.ingress[0].ports[0].port"},
		{"protocol ICMP", ingressFrom(fromDB(), networkingv1.NetworkPolicyPort{Protocol: &icmp}), "spec.ingress[0].ports[0].protocol"},
		{"protocol in lower case", ingressFrom(fromDB(), networkingv1.NetworkPolicyPort{Protocol: &lower}), "spec.ingress[0].ports[0].protocol"},
		{"endPort below port", ingressFrom(fromDB(), networkingv1.NetworkPolicyPort{Port: portNum(9000), EndPort: end(8000)}), "spec.ingress[0].ports[0].endPort"},
		{"endPort with a named port", ingressFrom(fromDB(), networkingv1.NetworkPolicyPort{Port: portName("http"), EndPort: end(8000)}), "spec.ingress[0].ports[0].endPort"},
		{"endPort without port", ingressFrom(fromDB(), networkingv1.NetworkPolicyPort{EndPort: end(8000)}), "spec.ingress[0].ports[0].endPort"},
		{"endPort above 65535", ingressFrom(fromDB(), networkingv1.NetworkPolicyPort{Port: portNum(1), EndPort: end(70000)}), "spec.ingress[0].ports[0].endPort"},
		{"egress to a bad cidr", func(s *networkingv1.NetworkPolicySpec) {
			egressOnly(s, networkingv1.NetworkPolicyEgressRule{To: ipBlock("192.168.1.0/40")})
		}, "spec.egress[0].to[0].ipBlock.cidr"},
		{"egress bad port", func(s *networkingv1.NetworkPolicySpec) {
			egressOnly(s, networkingv1.NetworkPolicyEgressRule{Ports: []networkingv1.NetworkPolicyPort{{Port: portNum(70000)}}})
		}, "spec.egress[0].ports[0].port"},
		{"unknown policy type", func(s *networkingv1.NetworkPolicySpec) {
			s.PolicyTypes = []networkingv1.PolicyType{"Sideways"}
		}, "spec.policyTypes[0]"},
		{"duplicate policy type", func(s *networkingv1.NetworkPolicySpec) {
			s.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeIngress}
		}, "spec.policyTypes[1]"},
		{"selector In without values", ingressFrom([]networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", "In")}}), "spec.ingress[0].from[0].podSelector"},
		{"selector Exists with values", ingressFrom([]networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("team", "Exists", "x")}}), "spec.ingress[0].from[0].namespaceSelector"},
		{"selector bad operator", ingressFrom([]networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", "Like", "x")}}), "spec.ingress[0].from[0].podSelector"},
		{"selector bad label key", func(s *networkingv1.NetworkPolicySpec) {
			s.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"bad key!": "x"}}
		}, "spec.podSelector"},
		{"selector bad label value", func(s *networkingv1.NetworkPolicySpec) {
			s.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"app": "no spaces"}}
		}, "spec.podSelector"},
	}
}

func TestValidateNetworkPolicySpec(t *testing.T) {
	for _, tc := range specCases() {
		t.Run(tc.name, func(t *testing.T) {
			spec := np("p", tc.mutate).Spec
			errs := validateNetworkPolicySpec(&spec, nil)
			if tc.wantField == "" {
				if len(errs) > 0 {
					t.Fatalf("refused a valid spec: %v", errs)
				}
				return
			}
			if len(errs) == 0 {
				t.Fatalf("accepted; want an error at %s", tc.wantField)
			}
			for _, e := range errs {
				if strings.HasPrefix(e.Field, tc.wantField) {
					return
				}
			}
			t.Fatalf("errors %v: none at %s", errs, tc.wantField)
		})
	}
}

// TestNetworkPolicyValidatorRefusesInvalid: the admission handler answers an invalid
// policy with 422 Invalid naming the field, before any hygiene rule runs, for CREATE
// and UPDATE, and for strictgate's own service account too; a DELETE of a stored
// policy is not judged by it.
func TestNetworkPolicyValidatorRefusesInvalid(t *testing.T) {
	bad := strings.Replace(benchPolicy, `"cidr":"10.20.0.0/16"`, `"cidr":"10.0.0.300/33"`, 1)
	if bad == benchPolicy {
		t.Fatal("fixture: benchPolicy has no cidr to break")
	}
	saReq := npRequest(admissionv1.Create, bad, "")
	saReq.UserInfo.Username = hygSA
	for _, tc := range []struct {
		name, field string
		req         admission.Request
	}{
		{"create", "spec.egress[1].to[0].ipBlock.cidr", npRequest(admissionv1.Create, bad, "")},
		{"update", "spec.egress[1].to[0].ipBlock.cidr", npRequest(admissionv1.Update, bad, benchPolicy)},
		{"own service account", "spec.egress[1].to[0].ipBlock.cidr", saReq},
		{"bad port", "spec.ingress[0].ports[0].port", npRequest(admissionv1.Create, strings.Replace(benchPolicy, `"port":8080`, `"port":80800`, 1), "")},
		{"bad protocol", "spec.ingress[0].ports[0].protocol", npRequest(admissionv1.Create, strings.Replace(benchPolicy, `"protocol":"TCP","port":8080`, `"protocol":"ICMP","port":8080`, 1), "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := newTestValidator(t, benchFacts(5)).Handle(context.Background(), tc.req)
			if resp.Allowed {
				t.Fatal("allowed an invalid NetworkPolicy")
			}
			r := resp.Result
			if r.Code != http.StatusUnprocessableEntity || r.Reason != metav1.StatusReasonInvalid || !strings.Contains(r.Message, tc.field) ||
				r.Details == nil || len(r.Details.Causes) == 0 || r.Details.Causes[0].Field != tc.field {
				t.Fatalf("result %+v (details %+v): want 422 Invalid at %s", r, r.Details, tc.field)
			}
			if strings.Contains(r.Message, "SG0") {
				t.Errorf("hygiene rules ran on an invalid policy: %s", r.Message)
			}
		})
	}
	if resp := newTestValidator(t, benchFacts(5)).Handle(context.Background(), npRequest(admissionv1.Delete, "", bad)); !resp.Allowed {
		t.Fatalf("deleting a stored policy refused: %+v", resp.Result)
	}
}

// testValidationAgrees runs specCases against the real API server (dry run, as the
// cluster admin): an invalid case is refused by the API server's own validation
// (422 Invalid, before any webhook), a valid one is not refused as invalid (hygiene
// may still deny it). Together with TestValidateNetworkPolicySpec this pins the
// validator to what the API server accepts.
func (h *hygEnv) testValidationAgrees(t *testing.T) {
	for i, tc := range specCases() {
		t.Run(tc.name, func(t *testing.T) {
			p := np(fmt.Sprintf("validation-%d", i), tc.mutate)
			err := h.admin.Create(context.Background(), p, client.DryRunAll)
			if got := apierrors.IsInvalid(err); got != (tc.wantField != "") {
				t.Fatalf("API server: invalid=%v (%v); the table says invalid=%v", got, err, tc.wantField != "")
			}
			if tc.wantField != "" && !strings.Contains(err.Error(), tc.wantField) {
				t.Errorf("API server refuses at another field than %s: %v", tc.wantField, err)
			}
		})
	}
}

// TestValidateKeepsStoredCIDRs: an UPDATE may keep a CIDR spelling that older API
// servers stored (leading zeros, host bits), as the API server itself allows; a new
// such value is refused.
func TestValidateKeepsStoredCIDRs(t *testing.T) {
	old := np("p", ingressFrom(ipBlock("010.0.0.0/8", "10.1.2.3/16"))).Spec
	kept := np("p", ingressFrom(ipBlock("010.0.0.0/8", "10.1.2.3/16"))).Spec
	if errs := validateNetworkPolicySpec(&kept, &old); len(errs) > 0 {
		t.Fatalf("stored spellings refused on update: %v", errs)
	}
	added := np("p", ingressFrom(ipBlock("010.0.0.0/8", "10.1.2.3/16", "10.2.0.1/16"))).Spec
	errs := validateNetworkPolicySpec(&added, &old)
	if len(errs) != 1 || errs[0].Field != "spec.ingress[0].from[0].ipBlock.except[1]" {
		t.Fatalf("errors %v: want exactly the new except refused", errs)
	}
}
