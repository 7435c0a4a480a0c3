# SG008: a named port resolves per pod; a name no pod exposes allows nothing.
package strictgate.rules.sg008

import data.strictgate.lib

id := "SG008-unknown-named-port"

action := "warn"

title := "a named port that no selected pod exposes"

# Ingress ports name ports of the pods this policy selects.
violation contains msg if {
	lib.has_cluster
	count(lib.selected_pods) > 0
	some [dir, i, k, p] in lib.ports
	dir == "ingress"
	is_string(p.port)
	proto := lib.protocol(p)
	not exposed_by_selected(p.port, proto)
	msg := sprintf(
		"%s: %s names port %q/%s but no pod selected by spec.podSelector has a containerPort with that name and protocol; fix the name or use the port number",
		[id, lib.port_path(dir, i, k), p.port, proto],
	)
}

# Egress ports name ports of the destination pods, i.e. those the rule's peers select.
violation contains msg if {
	lib.has_cluster
	some [dir, i, k, p] in lib.ports
	dir == "egress"
	is_string(p.port)
	proto := lib.protocol(p)
	peers := [c | some c in lib.cluster_peers; c.direction == "egress"; c.rule == i]
	count(peers) > 0
	sum([c.pods | some c in peers; is_number(c.pods)]) > 0
	not exposed_by_peers(peers, p.port, proto)
	msg := sprintf(
		"%s: %s names port %q/%s but none of the pods its peers select has a containerPort with that name and protocol; fix the name or use the port number",
		[id, lib.port_path(dir, i, k), p.port, proto],
	)
}

exposed_by_selected(name, proto) if {
	some pod in lib.selected_pods
	some cp in lib.list(pod, "ports")
	cp.name == name
	lib.protocol(cp) == proto
}

exposed_by_peers(peers, name, proto) if {
	some c in peers
	some np in lib.list(c, "namedPorts")
	np.name == name
	lib.protocol(np) == proto
}
