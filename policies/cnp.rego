# Helpers for the rules that judge ClusterNetworkPolicies (input.kind ==
# "ClusterNetworkPolicy"; input.policy is the policy as the API renders it).
package strictgate.cnp

import data.strictgate.lib

obj(x, key) := lib.obj(x, key)

list(x, key) := lib.list(x, key)

peer_field := {"ingress": "from", "egress": "to"}

policy := lib.obj(input, "policy")

spec := obj(policy, "spec")

name := n if {
	n := obj(policy, "metadata").name
	is_string(n)
} else := "<unnamed>"

tier := t if {
	t := spec.tier
	is_string(t)
} else := ""

# rules: [direction, index] -> rule
rules[[dir, i]] := r if {
	some dir in ["ingress", "egress"]
	some i, r in list(spec, dir)
	is_object(r)
}

# peer_matches_all: a peer standing for every pod (and, for networks, every address).
# (lib.obj answers {} for an absent key, so presence is checked first.)
peer_matches_all(p) if {
	lib.has(p, "namespaces")
	lib.empty_selector(obj(p, "namespaces"))
}

peer_matches_all(p) if {
	lib.has(p, "pods")
	pods := obj(p, "pods")
	lib.empty_selector(obj(pods, "namespaceSelector"))
	lib.empty_selector(obj(pods, "podSelector"))
}

peer_matches_all(p) if {
	some c in list(p, "networks")
	endswith(c, "/0")
}

# port_covers(proto, port): the rule's protocols match proto/port (no protocols: all).
port_covers(r, proto, port) if count(list(r, "protocols")) == 0

port_covers(r, proto, port) if {
	some pr in list(r, "protocols")
	dp := obj(obj(pr, lower(proto)), "destinationPort")
	dp.number == port
}

port_covers(r, proto, port) if {
	some pr in list(r, "protocols")
	rg := obj(obj(obj(pr, lower(proto)), "destinationPort"), "range")
	rg.start <= port
	port <= rg.end
}
