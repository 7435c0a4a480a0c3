package defaultdeny

import (
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/strictgate/strictgate/internal/contract"
)

// roundTrip stores and reads back p as the API server would (JSON), which is where
// nil/empty differences appear that must not count as drift.
func roundTrip(t *testing.T, p *networkingv1.NetworkPolicy) *networkingv1.NetworkPolicy {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	out := &networkingv1.NetworkPolicy{}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestUpToDate(t *testing.T) {
	dns := DNSPolicyFor("a", DefaultDNSNamespace, DefaultDNSPodLabels)
	tests := []struct {
		name   string
		cur    func() *networkingv1.NetworkPolicy
		want   *networkingv1.NetworkPolicy
		wantOK bool
	}{
		{"deny after a round trip", func() *networkingv1.NetworkPolicy { return roundTrip(t, DenyPolicy("a")) }, DenyPolicy("a"), true},
		{"dns after a round trip", func() *networkingv1.NetworkPolicy { return roundTrip(t, dns) }, dns, true},
		{"empty rule lists equal nil", func() *networkingv1.NetworkPolicy {
			p := DenyPolicy("a")
			p.Spec.Ingress, p.Spec.Egress = []networkingv1.NetworkPolicyIngressRule{}, []networkingv1.NetworkPolicyEgressRule{}
			return p
		}, DenyPolicy("a"), true},
		{"extra labels and annotations are the user's business", func() *networkingv1.NetworkPolicy {
			p := DenyPolicy("a")
			p.Labels["team"] = "x"
			p.Annotations = map[string]string{"note": "y"}
			return p
		}, DenyPolicy("a"), true},
		{"managed-by label removed", func() *networkingv1.NetworkPolicy {
			p := DenyPolicy("a")
			p.Labels = nil
			return p
		}, DenyPolicy("a"), false},
		{"policy type dropped", func() *networkingv1.NetworkPolicy {
			p := DenyPolicy("a")
			p.Spec.PolicyTypes = p.Spec.PolicyTypes[:1]
			return p
		}, DenyPolicy("a"), false},
		{"rule added to deny", func() *networkingv1.NetworkPolicy {
			p := DenyPolicy("a")
			p.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{}}
			return p
		}, DenyPolicy("a"), false},
		{"dns port changed", func() *networkingv1.NetworkPolicy {
			p := roundTrip(t, dns)
			p.Spec.Egress[0].Ports[0].Port.IntVal = 54
			return p
		}, dns, false},
		{"pod selector narrowed", func() *networkingv1.NetworkPolicy {
			p := DenyPolicy("a")
			p.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}
			return p
		}, DenyPolicy("a"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := UpToDate(tt.cur(), tt.want); got != tt.wantOK {
				t.Fatalf("UpToDate = %v, want %v", got, tt.wantOK)
			}
		})
	}
}

func selector(t *testing.T, s string) labels.Selector {
	t.Helper()
	sel, err := contract.ParseNamespaceSelector(s)
	if err != nil {
		t.Fatal(err)
	}
	return sel
}

func TestDesired(t *testing.T) {
	r := &Reconciler{Scope: contract.Scope{OwnNamespace: "strictgate"}, DNSPolicy: true}
	ns := func(name string, labels map[string]string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	}
	tests := []struct {
		name           string
		r              *Reconciler
		ns             *corev1.Namespace
		wantDeny, wDNS bool
	}{
		{"enforced", r, ns("a", nil), true, true},
		{"enforced without dns", &Reconciler{DNSPolicy: false}, ns("a", nil), true, false},
		{"opted out", r, ns("a", map[string]string{contract.EnforceLabel: contract.EnforceDisabled}), false, false},
		{"own namespace", r, ns("strictgate", nil), false, false},
		{"kube-system", r, ns("kube-system", nil), false, false},
		// enforcement.defaultDeny=false: nothing generated, so what an earlier
		// configuration generated is deleted (nil desired).
		{"default-deny off", &Reconciler{DNSPolicy: true, Disabled: true}, ns("a", nil), false, false},
		{"selector matches", &Reconciler{Scope: contract.Scope{Selector: selector(t, "tier=prod")}}, ns("a", map[string]string{"tier": "prod"}), true, false},
		{"selector misses", &Reconciler{DNSPolicy: true, Scope: contract.Scope{Selector: selector(t, "tier=prod")}}, ns("a", map[string]string{"tier": "dev"}), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.r.desired(tt.ns)
			if (d[contract.DefaultDenyPolicy] != nil) != tt.wantDeny || (d[contract.AllowDNSPolicy] != nil) != tt.wDNS {
				t.Fatalf("desired deny=%v dns=%v, want %v %v", d[contract.DefaultDenyPolicy] != nil, d[contract.AllowDNSPolicy] != nil, tt.wantDeny, tt.wDNS)
			}
			if _, ok := d[contract.DefaultDenyPolicy]; !ok {
				t.Fatal("desired must name every managed policy so that unwanted ones are deleted")
			}
		})
	}
	dns := r.desired(ns("a", nil))[contract.AllowDNSPolicy]
	peer := dns.Spec.Egress[0].To[0]
	if peer.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "kube-system" || peer.PodSelector.MatchLabels["k8s-app"] != "kube-dns" {
		t.Fatalf("dns peer %+v", peer)
	}
	if len(dns.Spec.Egress[0].Ports) != 2 || *dns.Spec.Egress[0].Ports[0].Protocol != corev1.ProtocolUDP || *dns.Spec.Egress[0].Ports[1].Protocol != corev1.ProtocolTCP {
		t.Fatalf("dns ports %+v, want UDP and TCP 53", dns.Spec.Egress[0].Ports)
	}
}
