# Helpers shared by the built-in rules. Everything here tolerates missing fields and
# nulls, so that a rule written on top of it never errors on a sparse object.
package strictgate.lib

# exemption_annotation lets a policy keep a rule without peers (SG001) when its
# value states why.
exemption_annotation := "strictgate.dev/allow-open-rule"

# peer_field names the peer list of each direction.
peer_field := {"ingress": "from", "egress": "to"}

# policy_type names the policyTypes entry of each direction.
policy_type := {"ingress": "Ingress", "egress": "Egress"}

# obj(x, key) is x[key] when that is an object, else {}.
obj(x, key) := v if {
	is_object(x)
	v := object.get(x, key, {})
	is_object(v)
} else := {}

# list(x, key) is x[key] when that is an array, else [].
list(x, key) := v if {
	is_object(x)
	v := object.get(x, key, [])
	is_array(v)
} else := []

policy := p if {
	p := input.policy
	is_object(p)
} else := {}

spec := obj(policy, "spec")

annotations := obj(obj(policy, "metadata"), "annotations")

# rules holds [direction, index, rule] for every ingress and egress rule.
rules contains [dir, i, r] if {
	some dir in ["ingress", "egress"]
	some i, r in list(spec, dir)
	is_object(r)
}

# peers holds [direction, rule index, peer index, peer].
peers contains [dir, i, j, p] if {
	some [dir, i, r] in rules
	some j, p in list(r, peer_field[dir])
	is_object(p)
}

# ports holds [direction, rule index, port index, port].
ports contains [dir, i, k, p] if {
	some [dir, i, r] in rules
	some k, p in list(r, "ports")
	is_object(p)
}

# ip_blocks holds [direction, rule index, peer index, cidr, excepts].
ip_blocks contains [dir, i, j, cidr, excepts] if {
	some [dir, i, j, p] in peers
	b := obj(p, "ipBlock")
	cidr := b.cidr
	is_string(cidr)
	excepts := [e | some e in list(b, "except"); is_string(e)]
}

# declared_types is spec.policyTypes as written (the API server fills it in when
# omitted, so in admission it is normally present).
declared_types := {t | some t in list(spec, "policyTypes"); is_string(t)}

# effective_types applies the API's inference when policyTypes is empty:
# Ingress always, Egress iff there are egress rules.
effective_types := declared_types if count(declared_types) > 0

effective_types := inferred if {
	count(declared_types) == 0
	inferred := {"Ingress"} | {"Egress" | count(list(spec, "egress")) > 0}
}

# empty_selector(s) holds for a selector object that selects everything ({}).
empty_selector(s) if {
	is_object(s)
	count(obj(s, "matchLabels")) == 0
	count(list(s, "matchExpressions")) == 0
}

# has(x, key) holds when x has key with a non-null value.
has(x, key) if {
	is_object(x)
	object.get(x, key, null) != null
}

# protocol(p) is a port's protocol, TCP when unset (the API default).
protocol(p) := v if {
	v := p.protocol
	is_string(v)
} else := "TCP"

# path names a rule or peer the way kubectl explain would.
rule_path(dir, i) := sprintf("spec.%s[%d]", [dir, i])

peer_path(dir, i, j) := sprintf("spec.%s[%d].%s[%d]", [dir, i, peer_field[dir], j])

port_path(dir, i, k) := sprintf("spec.%s[%d].ports[%d]", [dir, i, k])

namespace := n if {
	n := input.request.namespace
	is_string(n)
} else := object.get(obj(policy, "metadata"), "namespace", "")

name := n if {
	n := input.request.name
	is_string(n)
	n != ""
} else := object.get(obj(policy, "metadata"), "name", "")

# cluster is what the webhook knew about the namespace; {} when it could not tell.
cluster := obj(input, "cluster")

has_cluster if has(cluster, "pods")

# types_of(p) is what policyTypes means for any normalized policy p (declared, or
# inferred as the API server does when empty).
types_of(p) := declared if {
	declared := {t | some t in list(obj(p, "spec"), "policyTypes"); is_string(t)}
	count(declared) > 0
} else := {"Ingress"} | {"Egress" | count(list(obj(p, "spec"), "egress")) > 0}

# pods is input.cluster.pods: the pods of the namespace this policy's podSelector
# selects, each with "selected" (always true since only those are rendered) and "policies" (names of the namespace's other
# policies whose podSelector matches it).
pods := [p | some p in list(cluster, "pods"); is_object(p)]

selected_pods := [p | some p in pods; p.selected == true]

# other_policies is input.cluster.policies: the namespace's other NetworkPolicies by name.
other_policies := obj(cluster, "policies")

# cluster_peers is input.cluster.peers: for each pod or namespace selector peer of this
# policy, how many pods it matches now and which named ports they expose.
cluster_peers := [p | some p in list(cluster, "peers"); is_object(p)]
