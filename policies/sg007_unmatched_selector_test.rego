package strictgate.rules.sg007_test

import data.strictgate.rules.sg007

base := {
	"request": {"operation": "CREATE", "namespace": "app"},
	"policy": {"spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "db"}}}]}]}},
}

cluster(pods, peers) := object.union(base, {"cluster": {"pods": pods, "peers": peers, "policies": {}}})

web := {"name": "web-1", "labels": {"app": "web"}, "selected": true, "policies": []}

test_no_selected_pod_warns if {
	v := sg007.violation with input as cluster([], [{"direction": "ingress", "rule": 0, "peer": 0, "pods": 1}])
	count(v) == 1
	some msg in v
	contains(msg, "spec.podSelector matches no pod in namespace \"app\"")
}

test_unmatched_peer_warns if {
	v := sg007.violation with input as cluster([web], [{"direction": "ingress", "rule": 0, "peer": 0, "pods": 0}])
	count(v) == 1
	some msg in v
	contains(msg, "spec.ingress[0].from[0] selects no existing pod")
}

test_all_matched_passes if {
	count(sg007.violation) == 0 with input as cluster([web], [{"direction": "ingress", "rule": 0, "peer": 0, "pods": 2}])
}

test_unselected_pods_only_warns if {
	count(sg007.violation) == 1 with input as cluster([object.union(web, {"selected": false})], [])
}

test_without_cluster_facts_silent if {
	count(sg007.violation) == 0 with input as base
}
