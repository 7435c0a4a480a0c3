package agent

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"
	cnpinformers "sigs.k8s.io/network-policy-api/pkg/client/informers/externalversions"
	cnplisters "sigs.k8s.io/network-policy-api/pkg/client/listers/apis/v1beta1"
)

// clusterPolicies follows ClusterNetworkPolicies (v1beta1, the CRD's storage version;
// v1alpha2 objects are served as v1beta1 by the API server) and every Node (for nodes
// peers). The CRD is optional: without it the agent enforces NetworkPolicy only, says
// so once, and starts following ClusterNetworkPolicies as soon as the CRD appears.
type clusterPolicies struct {
	client   cnpclient.Interface
	factory  cnpinformers.SharedInformerFactory
	lister   cnplisters.ClusterNetworkPolicyLister
	nodeFact informers.SharedInformerFactory
	nodes    func() ([]*corev1.Node, error)
	started  chan struct{} // closed once following (the CRD exists)
}

const cnpGroupVersion = "policy.networking.k8s.io/v1beta1"

// crdPresent asks discovery whether the API server serves ClusterNetworkPolicies.
func (cp *clusterPolicies) crdPresent() (bool, error) {
	rl, err := cp.client.Discovery().ServerResourcesForGroupVersion(cnpGroupVersion)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, r := range rl.APIResources {
		if r.Name == "clusternetworkpolicies" {
			return true, nil
		}
	}
	return false, nil
}

// startClusterPolicies runs before the initial build: if the CRD is there, the caches
// are synced first so that no pod is programmed without the Admin tier. If not, it
// polls (every CRDPollPeriod) and starts following once the CRD appears; the handlers
// then feed each object to the compiler like any other change.
func (a *Agent) startClusterPolicies(ctx context.Context) error {
	cp := a.cnp
	if cp == nil {
		return nil
	}
	start := func() bool {
		cp.factory = cnpinformers.NewSharedInformerFactory(cp.client, 0)
		inf := cp.factory.Policy().V1beta1().ClusterNetworkPolicies()
		cp.lister = inf.Lister()
		if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { a.onClusterPolicy(o) },
			UpdateFunc: func(_, o any) { a.onClusterPolicy(o) },
			DeleteFunc: func(o any) {
				if k, ok := keyOf(o); ok {
					a.apply(func() []types.NamespacedName { return a.comp.DeleteClusterNetworkPolicy(k.Name) })
				}
			},
		}); err != nil {
			a.log.Error(err, "watch ClusterNetworkPolicies")
			return false
		}
		cp.nodeFact = informers.NewSharedInformerFactory(a.deps.Client, 0)
		ni := cp.nodeFact.Core().V1().Nodes()
		cp.nodes = func() ([]*corev1.Node, error) { return ni.Lister().List(labels.Everything()) }
		if _, err := ni.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { a.onNode(o) },
			UpdateFunc: func(_, o any) { a.onNode(o) },
			DeleteFunc: func(o any) {
				if k, ok := keyOf(o); ok {
					a.apply(func() []types.NamespacedName { return a.comp.DeleteNode(k.Name) })
				}
			},
		}); err != nil {
			a.log.Error(err, "watch Nodes")
			return false
		}
		cp.factory.Start(ctx.Done())
		cp.nodeFact.Start(ctx.Done())
		cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced, ni.Informer().HasSynced)
		close(cp.started)
		return true
	}
	ok, err := cp.crdPresent()
	if err == nil && ok {
		start()
		return ctx.Err()
	}
	if err != nil {
		a.log.Error(err, "discover ClusterNetworkPolicy API; NetworkPolicy only until it answers")
	} else {
		a.log.Info("ClusterNetworkPolicy CRD (" + cnpGroupVersion + ") not installed: enforcing NetworkPolicy only; ClusterNetworkPolicies are followed as soon as it is installed")
	}
	go wait.UntilWithContext(ctx, func(ctx context.Context) {
		select {
		case <-cp.started:
			return
		default:
		}
		if ok, err := cp.crdPresent(); err == nil && ok {
			a.log.Info("ClusterNetworkPolicy CRD installed: following ClusterNetworkPolicies")
			start()
		}
	}, a.cfg.CRDPollPeriod)
	return nil
}

// clusterState adds the synced ClusterNetworkPolicies and Nodes for the initial build.
func (a *Agent) clusterState() ([]*cnpv1beta1.ClusterNetworkPolicy, []*corev1.Node, error) {
	if a.cnp == nil {
		return nil, nil, nil
	}
	select {
	case <-a.cnp.started:
	default:
		return nil, nil, nil
	}
	cnps, err := a.cnp.lister.List(labels.Everything())
	if err != nil {
		return nil, nil, err
	}
	nodes, err := a.cnp.nodes()
	return cnps, nodes, err
}

func (a *Agent) onClusterPolicy(o any) {
	cnp, ok := o.(*cnpv1beta1.ClusterNetworkPolicy)
	if !ok {
		return
	}
	a.apply(func() []types.NamespacedName {
		changed, err := a.comp.UpsertClusterNetworkPolicy(cnp)
		if err != nil {
			a.log.Error(err, "compile ClusterNetworkPolicy", "policy", cnp.Name)
		}
		return changed
	})
}

func (a *Agent) onNode(o any) {
	if n, ok := o.(*corev1.Node); ok {
		a.apply(func() []types.NamespacedName { return a.comp.UpsertNode(n) })
	}
}

// defaultCRDPollPeriod is how often an agent without the CRD looks for it again.
const defaultCRDPollPeriod = 30 * time.Second
