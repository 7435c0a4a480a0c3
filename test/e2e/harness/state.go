package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// DumpState writes what `strictgate verdict` / `explain --manifests` read — the
// Namespaces, Pods (with their IPs), NetworkPolicies, Services and EndpointSlices of
// namespaces and of kube-system (the generated strictgate-allow-dns names kube-dns
// there) — as one `kind: List` JSON file in dir, exactly as the API server has them.
func DumpState(ctx context.Context, cs kubernetes.Interface, dir string, namespaces ...string) error {
	var items []any
	add := func(apiVersion, kind string, o any) error {
		b, err := json.Marshal(o)
		if err != nil {
			return err
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			return err
		}
		// client-go leaves TypeMeta empty on typed objects; verdict needs it.
		m["apiVersion"], m["kind"] = apiVersion, kind
		items = append(items, m)
		return nil
	}
	for _, ns := range append(namespaces, "kube-system") {
		n, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("dump state: %w", err)
		}
		if err := add("v1", "Namespace", n); err != nil {
			return err
		}
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("dump state: %w", err)
		}
		for i := range pods.Items {
			if err := add("v1", "Pod", &pods.Items[i]); err != nil {
				return err
			}
		}
		nps, err := cs.NetworkingV1().NetworkPolicies(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("dump state: %w", err)
		}
		for i := range nps.Items {
			if err := add("networking.k8s.io/v1", "NetworkPolicy", &nps.Items[i]); err != nil {
				return err
			}
		}
		svcs, err := cs.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("dump state: %w", err)
		}
		for i := range svcs.Items {
			if err := add("v1", "Service", &svcs.Items[i]); err != nil {
				return err
			}
		}
		eps, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("dump state: %w", err)
		}
		for i := range eps.Items {
			if err := add("discovery.k8s.io/v1", "EndpointSlice", &eps.Items[i]); err != nil {
				return err
			}
		}
	}
	b, err := json.MarshalIndent(map[string]any{"apiVersion": "v1", "kind": "List", "items": items}, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "state.json"), b, 0o644)
}
