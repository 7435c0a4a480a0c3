package strictgate.rules.sg012_test

import data.strictgate.rules.sg012

cnp(tier, rule) := {"kind": "ClusterNetworkPolicy", "request": {"operation": "CREATE"}, "policy": {"metadata": {"name": "p"}, "spec": {"tier": tier, "priority": 1, "subject": {"namespaces": {}}, "ingress": [rule]}}}

test_accept_all_namespaces_all_ports if {
	v := sg012.violation with input as cnp("Admin", {"action": "Accept", "from": [{"namespaces": {}}]})
	count(v) == 1
	some m in v
	contains(m, "SG012-cnp-admin-accept-all: ClusterNetworkPolicy p spec.ingress[0].from[0] accepts all ingress traffic")
}

test_accept_all_pods if {
	count(sg012.violation) == 1 with input as cnp("Admin", {"action": "Accept", "from": [{"pods": {"namespaceSelector": {}, "podSelector": {}}}]})
}

test_accept_with_ports_passes if {
	count(sg012.violation) == 0 with input as cnp("Admin", {"action": "Accept", "from": [{"namespaces": {}}], "protocols": [{"tcp": {"destinationPort": {"number": 9090}}}]})
}

test_accept_from_one_namespace_passes if {
	count(sg012.violation) == 0 with input as cnp("Admin", {"action": "Accept", "from": [{"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]})
}

test_baseline_accept_all_passes if {
	count(sg012.violation) == 0 with input as cnp("Baseline", {"action": "Accept", "from": [{"namespaces": {}}]})
}

test_deny_all_passes if {
	count(sg012.violation) == 0 with input as cnp("Admin", {"action": "Deny", "from": [{"namespaces": {}}]})
}
