package charts

// The ClusterNetworkPolicy CRD is sigs.k8s.io/network-policy-api's own standard-channel
// YAML at the version go.mod pins, copied into the chart's crds/ directory so that
// `helm install` creates it when it is absent (Helm's crds/ semantics: never upgraded or
// deleted by Helm, skipped with --skip-crds when the cluster's owner manages CRDs).
// `make generate-check` proves the copy matches the pinned module.
//go:generate sh -c "install -m 0644 \"$(go list -m -f '{{.Dir}}' sigs.k8s.io/network-policy-api)/config/crd/standard/policy.networking.k8s.io_clusternetworkpolicies.yaml\" strictgate/crds/policy.networking.k8s.io_clusternetworkpolicies.yaml"
