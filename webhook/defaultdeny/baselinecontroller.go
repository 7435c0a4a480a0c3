package defaultdeny

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	cnp "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/strictgate/strictgate/internal/contract"
)

// BaselineReconciler keeps the one Baseline-tier ClusterNetworkPolicy of
// enforcement.defaultDeny=baseline (BaselinePolicy) in place: created when absent,
// restored when its spec or managed-by label was changed. Its subject carries the
// enforced-namespace scope, so namespaces need no per-namespace objects.
type BaselineReconciler struct {
	// Client reads (from the manager's cache) and writes.
	Client client.Client
	// Scope, DNSPolicy, DNSNamespace and DNSPodLabels are as for Reconciler.
	Scope        contract.Scope
	DNSPolicy    bool
	DNSNamespace string
	DNSPodLabels map[string]string
}

// Reconcile implements reconcile.Reconciler; every request stands for the one policy.
func (r *BaselineReconciler) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	want, err := BaselinePolicy(r.Scope, r.DNSPolicy, r.DNSNamespace, r.DNSPodLabels)
	if err != nil {
		return reconcile.Result{}, err
	}
	logger := log.FromContext(ctx).WithValues("clusterNetworkPolicy", want.Name)
	cur := &cnp.ClusterNetworkPolicy{}
	err = r.Client.Get(ctx, types.NamespacedName{Name: want.Name}, cur)
	switch {
	case apierrors.IsNotFound(err):
		if err := r.Client.Create(ctx, want); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return reconcile.Result{}, nil // our cache is behind; its event requeues
			}
			return reconcile.Result{}, fmt.Errorf("create clusternetworkpolicy %s: %w", want.Name, err)
		}
		logger.Info("created generated Baseline policy")
	case err != nil:
		return reconcile.Result{}, fmt.Errorf("get clusternetworkpolicy %s: %w", want.Name, err)
	case cur.Labels[contract.ManagedByLabel] != contract.ManagedBy || !equality.Semantic.DeepEqual(cur.Spec, want.Spec):
		updated := cur.DeepCopy()
		updated.Spec = *want.Spec.DeepCopy()
		if updated.Labels == nil {
			updated.Labels = map[string]string{}
		}
		updated.Labels[contract.ManagedByLabel] = contract.ManagedBy
		if err := r.Client.Update(ctx, updated); err != nil {
			if apierrors.IsConflict(err) {
				return reconcile.Result{}, nil // changed meanwhile; that event requeues
			}
			return reconcile.Result{}, fmt.Errorf("restore clusternetworkpolicy %s: %w", want.Name, err)
		}
		logger.Info("restored generated Baseline policy that had been changed")
	}
	return reconcile.Result{}, nil
}

// SetupWithManager registers the controller (leader-elected, like every controller of
// the manager). It watches the policy by name, so a delete or edit is undone within a
// reconcile, and namespaces, whose initial list starts it when the policy is absent.
func (r *BaselineReconciler) SetupWithManager(mgr ctrl.Manager) error {
	one := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: contract.DefaultDenyPolicy}}}
	})
	named := predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetName() == contract.DefaultDenyPolicy })
	return ctrl.NewControllerManagedBy(mgr).
		Named("strictgate-baseline-defaultdeny").
		For(&cnp.ClusterNetworkPolicy{}, builder.WithPredicates(named)).
		Watches(&corev1.Namespace{}, one, builder.WithPredicates(predicate.Funcs{
			UpdateFunc: func(event.UpdateEvent) bool { return false }, // the subject selector covers label changes
		})).
		Complete(r)
}
