package strictgate.rules.sg014_test

import data.strictgate.rules.sg014

spec(tier, prio, action) := {"tier": tier, "priority": prio, "subject": {"namespaces": {}}, "ingress": [{"action": action, "from": [{"namespaces": {}}]}]}

conflict_input(mine, other, shared) := {
	"kind": "ClusterNetworkPolicy", "request": {"operation": "CREATE"},
	"policy": {"metadata": {"name": "a"}, "spec": mine},
	"cluster": {"clusterNetworkPolicies": [{"name": "b", "sharedPods": shared, "policy": {"metadata": {"name": "b"}, "spec": other}}]},
}

test_same_priority_overlap_contradict if {
	v := sg014.violation with input as conflict_input(spec("Admin", 5, "Accept"), spec("Admin", 5, "Deny"), 2)
	count(v) == 1
	some m in v
	contains(m, "SG014-cnp-priority-conflict: ClusterNetworkPolicy a and b are both Admin tier at priority 5, their subjects share 2 pods, and their ingress rules contradict (a: Accept; b: Deny)")
}

test_same_actions_pass if {
	count(sg014.violation) == 0 with input as conflict_input(spec("Admin", 5, "Deny"), spec("Admin", 5, "Deny"), 2)
}

test_different_priority_passes if {
	count(sg014.violation) == 0 with input as conflict_input(spec("Admin", 5, "Accept"), spec("Admin", 6, "Deny"), 2)
}

test_disjoint_subjects_pass if {
	count(sg014.violation) == 0 with input as conflict_input(spec("Admin", 5, "Accept"), spec("Admin", 5, "Deny"), 0)
}

test_baseline_passes if {
	count(sg014.violation) == 0 with input as conflict_input(spec("Baseline", 5, "Accept"), spec("Baseline", 5, "Deny"), 2)
}

test_other_direction_passes if {
	eg := {"tier": "Admin", "priority": 5, "subject": {"namespaces": {}}, "egress": [{"action": "Deny", "to": [{"namespaces": {}}]}]}
	count(sg014.violation) == 0 with input as conflict_input(spec("Admin", 5, "Accept"), eg, 2)
}

test_without_cluster_facts_quiet if {
	count(sg014.violation) == 0 with input as {"kind": "ClusterNetworkPolicy", "request": {"operation": "CREATE"}, "policy": {"metadata": {"name": "a"}, "spec": spec("Admin", 5, "Accept")}}
}
