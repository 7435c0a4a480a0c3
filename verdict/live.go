package verdict

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"
)

// FromCluster reads what the agent's informers watch — Namespaces, Pods,
// NetworkPolicies, Services and EndpointSlices of every namespace — from the API
// server. The objects already carry the API server's defaults; nothing else is applied,
// so they compile exactly as they do in the agent.
func FromCluster(ctx context.Context, cs kubernetes.Interface) (*Manifests, error) {
	return FromClusterWith(ctx, cs, nil)
}

// FromClusterWith is FromCluster plus, with cnps, the ClusterNetworkPolicies (v1beta1;
// none if the CRD is not installed, as the agent then enforces none) and, when there
// are any, the Nodes their nodes peers select.
func FromClusterWith(ctx context.Context, cs kubernetes.Interface, cnps cnpclient.Interface) (*Manifests, error) {
	m := &Manifests{origin: map[string]string{}, live: true}
	if cnps != nil {
		l, err := cnps.PolicyV1beta1().ClusterNetworkPolicies().List(ctx, metav1.ListOptions{})
		switch {
		case apierrors.IsNotFound(err): // no CRD
		case err != nil:
			return nil, fmt.Errorf("list clusternetworkpolicies: %w", err)
		default:
			for i := range l.Items {
				m.State.ClusterNetworkPolicies = append(m.State.ClusterNetworkPolicies, &l.Items[i])
				m.origin["ClusterNetworkPolicy//"+l.Items[i].Name] = "the API server"
			}
		}
		if len(m.State.ClusterNetworkPolicies) > 0 {
			nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			if err != nil {
				return nil, fmt.Errorf("list nodes (ClusterNetworkPolicy nodes peers): %w", err)
			}
			for i := range nodes.Items {
				m.State.Nodes = append(m.State.Nodes, &nodes.Items[i])
			}
		}
	}
	all := metav1.ListOptions{}
	nss, err := cs.CoreV1().Namespaces().List(ctx, all)
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	pods, err := cs.CoreV1().Pods(metav1.NamespaceAll).List(ctx, all)
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	pols, err := cs.NetworkingV1().NetworkPolicies(metav1.NamespaceAll).List(ctx, all)
	if err != nil {
		return nil, fmt.Errorf("list networkpolicies: %w", err)
	}
	svcs, err := cs.CoreV1().Services(metav1.NamespaceAll).List(ctx, all)
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	eps, err := cs.DiscoveryV1().EndpointSlices(metav1.NamespaceAll).List(ctx, all)
	if err != nil {
		return nil, fmt.Errorf("list endpointslices: %w", err)
	}
	s := &m.State
	for i := range nss.Items {
		s.Namespaces = append(s.Namespaces, &nss.Items[i])
	}
	for i := range pods.Items {
		s.Pods = append(s.Pods, &pods.Items[i])
	}
	for i := range pols.Items {
		s.Policies = append(s.Policies, &pols.Items[i])
	}
	for i := range svcs.Items {
		s.Services = append(s.Services, &svcs.Items[i])
	}
	for i := range eps.Items {
		s.EndpointSlices = append(s.EndpointSlices, &eps.Items[i])
	}
	for _, o := range []struct {
		kind string
		objs []metav1.Object
	}{
		{"Namespace", metas(s.Namespaces)}, {"Pod", metas(s.Pods)}, {"NetworkPolicy", metas(s.Policies)},
		{"Service", metas(s.Services)}, {"EndpointSlice", metas(s.EndpointSlices)},
	} {
		for _, obj := range o.objs {
			m.origin[o.kind+"/"+obj.GetNamespace()+"/"+obj.GetName()] = "the API server"
		}
	}
	return m, nil
}

func metas[T metav1.Object](objs []T) []metav1.Object {
	out := make([]metav1.Object, len(objs))
	for i, o := range objs {
		out[i] = o
	}
	return out
}

// SelectPod returns "namespace/pod" of the one pod in namespace whose labels match
// selector (kubectl's -l syntax). No match, or more than one, is an error naming them:
// a flow has one source and one destination.
func (m *Manifests) SelectPod(namespace, selector string) (string, error) {
	sel, err := parseSelector(selector)
	if err != nil {
		return "", err
	}
	var names []string
	for _, p := range m.State.Pods {
		if p.Namespace == namespace && sel.Matches(podLabels(p)) && !finished(p) {
			names = append(names, p.Name)
		}
	}
	switch len(names) {
	case 0:
		return "", fmt.Errorf("no running pod in namespace %s matches %q (set the namespace with -n)", namespace, selector)
	case 1:
		return namespace + "/" + names[0], nil
	}
	return "", fmt.Errorf("selector %q is ambiguous: %d pods in namespace %s match (%s); narrow it or name the pod as namespace/pod", selector, len(names), namespace, joinMax(names, 5))
}

// finished pods keep their labels but no longer carry traffic.
func finished(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}
