package compile

import (
	"k8s.io/apimachinery/pkg/types"
)

// BuildLenient compiles a state the way the agent must: Build when every object is
// valid, else object by object, skipping (and reporting through skip, if not nil) each
// one the compiler refuses, so that one bad object does not stop a node's enforcement.
// Tools that must compute what the agent computes (strictgate inspect) call it too.
func BuildLenient(s State, opts Options, skip func(kind string, key types.NamespacedName, err error)) *Compiler {
	if c, err := Build(s, opts); err == nil {
		return c
	}
	if skip == nil {
		skip = func(string, types.NamespacedName, error) {}
	}
	c := New(opts)
	for _, ns := range s.Namespaces {
		c.UpsertNamespace(ns)
	}
	for _, p := range s.Pods {
		if _, err := c.UpsertPod(p); err != nil {
			skip("Pod", types.NamespacedName{Namespace: p.Namespace, Name: p.Name}, err)
		}
	}
	for _, p := range s.Policies {
		if _, err := c.UpsertPolicy(p); err != nil {
			skip("NetworkPolicy", types.NamespacedName{Namespace: p.Namespace, Name: p.Name}, err)
		}
	}
	for _, sv := range s.Services {
		if _, err := c.UpsertService(sv); err != nil {
			skip("Service", types.NamespacedName{Namespace: sv.Namespace, Name: sv.Name}, err)
		}
	}
	for _, es := range s.EndpointSlices {
		if _, err := c.UpsertEndpointSlice(es); err != nil {
			skip("EndpointSlice", types.NamespacedName{Namespace: es.Namespace, Name: es.Name}, err)
		}
	}
	for _, n := range s.Nodes {
		c.UpsertNode(n)
	}
	for _, cnp := range s.ClusterNetworkPolicies {
		if _, err := c.UpsertClusterNetworkPolicy(cnp); err != nil {
			skip("ClusterNetworkPolicy", types.NamespacedName{Name: cnp.Name}, err)
		}
	}
	return c
}
