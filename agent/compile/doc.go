// Package compile turns cluster state (namespaces, pods, NetworkPolicies, Services,
// EndpointSlices) into per-pod rule sets in the datapath's form (rules.PodRules).
//
// It is pure: no kernel, no API client. The agent feeds it informer events through a
// Compiler (Upsert*/Delete*), which recomputes only the pods a change can affect and
// reports the pods whose rules changed; `strictgate verdict` builds one from manifests.
//
// # Semantics
//
// Exactly networking.k8s.io/v1 NetworkPolicy: a pod selected by no policy for a
// direction is unisolated there (rules.StateUnisolated); a selected pod is isolated and
// allowed the union of the rules of every selecting policy. Peers of a rule are ORed,
// its ports further restrict. Named ports resolve against the destination pod's
// containerPorts for the protocol: for ingress that is the selected pod itself, for
// egress each peer pod separately (so peer pods get /32 or /128 entries carrying their
// own resolved ports), and a named port never matches an address that is not a pod.
// Port names are unique only within a container, so a name several containers share
// means each of their ports; a Service's named targetPort takes the first container's
// (as the endpoints controller does).
// Only pods with an IP that neither use the host network nor have terminated are peers;
// host-network pods are never policy targets. Namespaces the compiler has not been told
// about exist implicitly with the label kubernetes.io/metadata.name=<name>, which is
// also added to every namespace (as the API server does).
//
// # Flattening
//
// The rules of a direction become longest-prefix-match entries. Every prefix that
// appears (peer pod addresses, ipBlock cidrs and excepts, 0.0.0.0/0 and ::/0) becomes a
// candidate entry; a prefix P owns the addresses for which it is the longest match, and
// a rule item (cidr C, excepts E, ports) allows those addresses iff P ⊆ C and P ⊄ e for
// every e in E. The entry's ports are the union over such items; an entry without ports
// is a hole. Entries that change nothing (same ports as their nearest enclosing entry,
// or empty with no enclosing entry that allows anything) are dropped, and port rules
// that an earlier rule (in rules.ComparePortRules order) covers are dropped, since the
// first matching rule decides.
//
// # Tiers (ClusterNetworkPolicy, policy.networking.k8s.io/v1beta1)
//
// A direction of a pod that the subject of any ClusterNetworkPolicy with rules in that
// direction selects is isolated in the datapath's sense, and its allow-only entries
// are computed exactly: every prefix in play (the NetworkPolicy entries, every CNP
// peer's pod/node /32 or /128 and network, 0.0.0.0/0, ::/0) is a candidate entry; on
// the addresses a prefix owns every rule's address match is constant, so the port
// space of TCP, UDP and SCTP is cut at every rule's range boundaries and each piece
// evaluated once: Admin rules in (priority, policy name, position) order, first match
// decides (Accept allows, Deny drops, Pass goes on); then NetworkPolicy if it isolates
// the pod in that direction; else Baseline rules the same way (Pass = the default);
// else allowed. Same-priority policies are ordered by name (the API leaves ties to the
// implementation). Allowed pieces become port rules naming the deciding rule
// (RuleRef.Tier/Name/Action for CNP rules; rules.RuleUnisolated for the default).
// Protocols without ports are one class, matched only by rules without protocols;
// where TCP/UDP/SCTP are partly denied it is written as ICMP and ICMPv6 only, so other
// protocols (GRE, ESP, ...) are then dropped — fail closed, a documented limit.
// destinationNamedPort resolves like NetworkPolicy named ports (ingress: the subject
// pod; egress: each peer pod; never a node or network). nodes peers select the
// InternalIP and ExternalIP addresses of Nodes (UpsertNode). A peer the compiler cannot
// read (domainNames, an unknown field) fails closed as the API says: an Accept matches
// nothing, a Deny or Pass matches everything. Services are judged by their backends
// through all tiers. While any ClusterNetworkPolicy exists, every pod, namespace and
// node change recomputes all pods (exact; cost grows with the cluster).
//
// # Services
//
// The datapath's egress hook on the client's host-side interface sees a Service's
// ClusterIP before kube-proxy translates it to a backend. We judge such traffic by the
// backends, as docs/design.md asks, and compile it ahead of time: for every Service with a
// ClusterIP (not headless) and every service port, an egress-isolated client may reach
// ClusterIP:port iff the Service has at least one ready backend and the client's own
// egress rules allow EVERY ready backend on the backend's target port (numeric, or
// named and resolved per backend pod). Backends come from the Service's EndpointSlices
// (ready = condition ready unset or true); if the compiler holds no slice for the
// Service, from its selector over ready pods. Such a Service port becomes a port rule on
// a ClusterIP /32 (/128) entry carrying the rule that allowed the first backend (in
// address order). The ClusterIP entry is judged only this way: an ipBlock that happens
// to cover the service range neither opens nor closes it, and no port other than the
// service ports is opened on it, so a Service can never widen what the rules allow
// (no named-targetPort bypass). Ingress at the backend is unaffected: after DNAT it
// sees the client's pod IP. An unisolated client needs no entry. A backend at one of
// Options.NodeIPs (a host-network pod or the API server on the client's own node)
// counts as allowed, as direct traffic to the node is.
//
// Traffic between a pod and its own node is allowed by the datapath itself, not here.
// Traffic from a pod to its own address never leaves the pod (loopback) and so never
// meets the datapath; the upstream e2e suite leaves its semantics undefined, and the
// compiler gives it no special treatment.
//
// # The node agent
//
// With Options.Node the compiler computes rules only for the pods scheduled on that
// node, while pods everywhere still count as peers and Service backends: an agent
// holds the whole cluster's labels and addresses but programs only its own pods. The
// rules it returns are shared between pods with the same policies and must not be
// modified. CheckLimits says whether a rule set fits the datapath.
//
// # Rule attribution
//
// Every rule (policy namespace/name, direction, index) gets a rules.RuleID derived from
// a hash of that triple, so IDs are stable across agent restarts and equal in `strictgate
// verdict`; Compiler.Rule resolves an ID back. Hash collisions (rare: about 1 % for
// 10k rules) are resolved by probing to the next free ID in arrival order, so after a
// restart a colliding rule may get the other ID (the pod is then re-programmed, never
// opened).
package compile
