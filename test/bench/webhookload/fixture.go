// Package webhookload measures strictgate's admission webhook under load over real
// HTTPS (issue 13, table 1): a server process with the production handlers (the pod
// mutator and the NetworkPolicy validator with every built-in rule) plus, behind the
// same server, the same Rego rules evaluated the way Gatekeeper evaluates them; and an
// open-loop load generator that raises the request rate until the server saturates.
//
// Cluster facts come from memory (Fixture) standing in for the informer cache, with
// pods behind the same label index the webhook feeds from its pod informer: the load
// test measures the webhook, not an API server.
package webhookload

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/strictgate/strictgate/internal/contract"
	"github.com/strictgate/strictgate/webhook/podindex"
)

// PodCounts are the namespace sizes the validation is measured at.
var PodCounts = []int{10, 500, 5000}

// Namespace is the namespace of the load test that holds n pods.
func Namespace(n int) string { return fmt.Sprintf("load-%d", n) }

// Fixture is the cluster the handlers see: one namespace per PodCounts entry (pods
// about five per app label, two named ports each, the generated policies and three
// application policies) and the ingress controller's namespace.
type Fixture struct {
	Namespaces []corev1.Namespace
	Pods       map[string][]corev1.Pod
	Policies   map[string][]networkingv1.NetworkPolicy
	Index      *podindex.Index
}

// NewFixture builds the cluster.
func NewFixture() *Fixture {
	f := &Fixture{Pods: map[string][]corev1.Pod{}, Policies: map[string][]networkingv1.NetworkPolicy{}, Index: podindex.New()}
	ns := func(name string) corev1.Namespace {
		return corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/metadata.name": name}}}
	}
	f.Namespaces = append(f.Namespaces, ns("ingress"), ns("kube-system"))
	f.Pods["ingress"] = []corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Namespace: "ingress", Name: "nginx-0", Labels: map[string]string{"app": "nginx"}}}}
	udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
	for _, n := range PodCounts {
		name := Namespace(n)
		f.Namespaces = append(f.Namespaces, ns(name))
		for i := range n {
			app := fmt.Sprintf("app%d", i%(n/5+1)) // about five pods per app
			if i == 0 {
				app = "web"
			}
			f.Pods[name] = append(f.Pods[name], corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: fmt.Sprintf("pod-%d", i), Labels: map[string]string{"app": app, "tier": "backend"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
					{Name: "http", ContainerPort: 8080, Protocol: tcp},
					{Name: "metrics", ContainerPort: 9090, Protocol: tcp},
				}}}},
			})
		}
		pols := []networkingv1.NetworkPolicy{
			{ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: contract.DefaultDenyPolicy},
				Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{"Ingress", "Egress"}}},
			{ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: contract.AllowDNSPolicy},
				Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{"Egress"}, Egress: []networkingv1.NetworkPolicyEgressRule{{
					To:    []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: portPtr(53)}, {Protocol: &tcp, Port: portPtr(53)}},
				}}}},
		}
		for i := range 3 {
			pols = append(pols, networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: fmt.Sprintf("app%d", i)},
				Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app%d", i)}}}})
		}
		f.Policies[name] = pols
	}
	for ns := range f.Pods {
		for i := range f.Pods[ns] {
			f.Index.Upsert(&f.Pods[ns][i])
		}
	}
	return f
}

// Reader serves the fixture's namespaces and policies as a controller-runtime cache
// does (shared objects: callers only read); pods go through Index.
func (f *Fixture) Reader() client.Reader { return fixtureReader{f} }

type fixtureReader struct{ f *Fixture }

func (r fixtureReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return fmt.Errorf("load fixture: Get of %T is not served", obj)
	}
	for i := range r.f.Namespaces {
		if r.f.Namespaces[i].Name == key.Name {
			r.f.Namespaces[i].DeepCopyInto(ns)
			return nil
		}
	}
	return apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, key.Name)
}

func (r fixtureReader) List(_ context.Context, list client.ObjectList, opts ...client.ListOption) error {
	o := &client.ListOptions{}
	o.ApplyOptions(opts)
	switch l := list.(type) {
	case *corev1.NamespaceList:
		l.Items = r.f.Namespaces
	case *networkingv1.NetworkPolicyList:
		l.Items = r.f.Policies[o.Namespace]
	case *corev1.PodList:
		// Only before the index is ready, which never happens here; served anyway.
		l.Items = r.f.Pods[o.Namespace]
	default:
		return fmt.Errorf("load fixture: List of %T is not served", list)
	}
	return nil
}

func portPtr(p int32) *intstr.IntOrString { v := intstr.FromInt32(p); return &v }
