// Package defaultdeny keeps the generated NetworkPolicies of every enforced namespace
// in place: strictgate-default-deny (all pods, Ingress+Egress, no rules) and, unless
// disabled, strictgate-allow-dns (egress to kube-dns). It runs in the webhook process
// behind leader election.
//
// It writes only when what is stored differs semantically from what it wants, so its
// own writes never cause another write (Kyverno's generate loops are the anti-example),
// and it deletes only objects that carry its managed-by label.
package defaultdeny

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/strictgate/strictgate/internal/contract"
)

// The names and labels of the generated objects are contract.DefaultDenyPolicy,
// contract.AllowDNSPolicy and contract.ManagedByLabel.
const (
	// DefaultDNSNamespace and DefaultDNSPodLabel select the cluster DNS pods the
	// generated DNS policy allows egress to.
	DefaultDNSNamespace = "kube-system"
	namespaceNameLabel  = "kubernetes.io/metadata.name"
)

// DefaultDNSPodLabels select kube-dns/CoreDNS pods in the conventional deployment.
var DefaultDNSPodLabels = map[string]string{"k8s-app": "kube-dns"}

// Reconciler reconciles one namespace (the request's Name) at a time.
type Reconciler struct {
	// Client reads (from the manager's cache) and writes.
	Client client.Client
	// Scope decides which namespaces are enforced.
	Scope contract.Scope
	// Disabled generates nothing (chart enforcement.defaultDeny=false) and removes the
	// policies an earlier configuration generated, so that switching default-deny off
	// does not leave namespaces denied by objects nobody may delete.
	Disabled bool
	// DNSPolicy enables strictgate-allow-dns.
	DNSPolicy bool
	// DNSNamespace and DNSPodLabels default to kube-system and k8s-app=kube-dns.
	DNSNamespace string
	DNSPodLabels map[string]string
}

// DenyPolicy is the generated default-deny policy for namespace ns.
func DenyPolicy(ns string) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: contract.DefaultDenyPolicy, Namespace: ns, Labels: map[string]string{contract.ManagedByLabel: contract.ManagedBy}},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
		},
	}
}

// DNSPolicyFor is the generated DNS allow policy for namespace ns: egress on UDP and
// TCP 53 to the pods matching podLabels in dnsNamespace.
func DNSPolicyFor(ns, dnsNamespace string, podLabels map[string]string) *networkingv1.NetworkPolicy {
	udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
	port := intstr.FromInt32(53)
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: contract.AllowDNSPolicy, Namespace: ns, Labels: map[string]string{contract.ManagedByLabel: contract.ManagedBy}},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To: []networkingv1.NetworkPolicyPeer{{
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{namespaceNameLabel: dnsNamespace}},
					PodSelector:       &metav1.LabelSelector{MatchLabels: podLabels},
				}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &port}, {Protocol: &tcp, Port: &port}},
			}},
		},
	}
}

// desired returns the generated policies namespace ns should have, by name; a name
// that maps to nil must not exist (if it is ours).
func (r *Reconciler) desired(ns *corev1.Namespace) map[string]*networkingv1.NetworkPolicy {
	want := map[string]*networkingv1.NetworkPolicy{contract.DefaultDenyPolicy: nil, contract.AllowDNSPolicy: nil}
	if r.Disabled || !r.Scope.Enforced(ns) {
		return want
	}
	want[contract.DefaultDenyPolicy] = DenyPolicy(ns.Name)
	if r.DNSPolicy {
		dnsNS, labels := r.DNSNamespace, r.DNSPodLabels
		if dnsNS == "" {
			dnsNS = DefaultDNSNamespace
		}
		if labels == nil {
			labels = DefaultDNSPodLabels
		}
		want[contract.AllowDNSPolicy] = DNSPolicyFor(ns.Name, dnsNS, labels)
	}
	return want
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	ns := &corev1.Namespace{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: req.Name}, ns); err != nil {
		// A deleted namespace takes its policies with it.
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if ns.DeletionTimestamp != nil {
		// The namespace controller is emptying it; writing would only race with it.
		return reconcile.Result{}, nil
	}
	for _, name := range []string{contract.DefaultDenyPolicy, contract.AllowDNSPolicy} {
		if err := r.sync(ctx, ns.Name, name, r.desired(ns)[name]); err != nil {
			return reconcile.Result{}, err
		}
	}
	return reconcile.Result{}, nil
}

func (r *Reconciler) sync(ctx context.Context, ns, name string, want *networkingv1.NetworkPolicy) error {
	logger := log.FromContext(ctx).WithValues("namespace", ns, "networkPolicy", name)
	cur := &networkingv1.NetworkPolicy{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, cur)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("get networkpolicy %s/%s: %w", ns, name, err)
	}
	exists := err == nil
	switch {
	case want == nil && exists && cur.Labels[contract.ManagedByLabel] == contract.ManagedBy:
		// Preconditions make sure we delete exactly what we looked at, not a policy
		// someone re-created under the name a moment ago.
		err := r.Client.Delete(ctx, cur, client.Preconditions{UID: &cur.UID, ResourceVersion: &cur.ResourceVersion})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete networkpolicy %s/%s: %w", ns, name, err)
		}
		logger.Info("deleted generated policy: namespace is not enforced")
	case want == nil:
		// Absent, or someone else's object under our name in a namespace we do not
		// enforce: not ours to touch.
	case !exists:
		if err := r.Client.Create(ctx, want); err != nil {
			if apierrors.IsAlreadyExists(err) {
				// Our cache is behind (typically: our own create from a moment ago).
				// The object's watch event is still to come and requeues this
				// namespace, so an error and backoff would only add noise.
				logger.V(1).Info("generated policy exists but is not cached yet")
				return nil
			}
			return fmt.Errorf("create networkpolicy %s/%s: %w", ns, name, err)
		}
		logger.Info("created generated policy")
	case !UpToDate(cur, want):
		updated := cur.DeepCopy()
		updated.Spec = *want.Spec.DeepCopy()
		if updated.Labels == nil {
			updated.Labels = map[string]string{}
		}
		updated.Labels[contract.ManagedByLabel] = contract.ManagedBy
		// Update carries cur's resourceVersion: a concurrent change makes it fail with
		// a conflict and we retry from fresh state instead of overwriting blindly.
		if err := r.Client.Update(ctx, updated); err != nil {
			if apierrors.IsConflict(err) {
				// Someone changed it after our cached read; that change's watch
				// event requeues this namespace with fresh state.
				logger.V(1).Info("generated policy changed concurrently; will look again")
				return nil
			}
			return fmt.Errorf("restore networkpolicy %s/%s: %w", ns, name, err)
		}
		logger.Info("restored generated policy that had been changed")
	}
	return nil
}

// UpToDate reports whether cur already is what want describes: same spec (compared
// semantically, so nil and empty lists are equal) and our managed-by label.
func UpToDate(cur, want *networkingv1.NetworkPolicy) bool {
	return cur.Labels[contract.ManagedByLabel] == contract.ManagedBy && equality.Semantic.DeepEqual(cur.Spec, want.Spec)
}

// SetupWithManager registers the controller: it watches namespaces and the generated
// policies by name, so a deleted or edited policy is put back within a reconcile.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	generated := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetName() == contract.DefaultDenyPolicy || o.GetName() == contract.AllowDNSPolicy
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("strictgate-defaultdeny").
		For(&corev1.Namespace{}).
		Watches(&networkingv1.NetworkPolicy{},
			handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
				return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: o.GetNamespace()}}}
			}),
			builder.WithPredicates(generated)).
		Complete(r)
}
