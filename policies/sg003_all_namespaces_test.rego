package strictgate.rules.sg003_test

import data.strictgate.rules.sg003

with_peer(peer) := {"request": {"operation": "UPDATE"}, "policy": {"spec": {"ingress": [{"from": [peer]}]}}}

test_empty_namespace_selector_denied if {
	v := sg003.violation with input as with_peer({"namespaceSelector": {}})
	count(v) == 1
	some msg in v
	contains(msg, "spec.ingress[0].from[0]")
}

test_selector_with_empty_lists_denied if {
	count(sg003.violation) == 1 with input as with_peer({"namespaceSelector": {"matchLabels": {}, "matchExpressions": []}})
}

test_with_pod_selector_passes if {
	count(sg003.violation) == 0 with input as with_peer({"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}})
}

test_labelled_namespace_selector_passes if {
	count(sg003.violation) == 0 with input as with_peer({"namespaceSelector": {"matchLabels": {"team": "a"}}})
}

test_egress_denied_too if {
	count(sg003.violation) == 1 with input as {"policy": {"spec": {"egress": [{"to": [{"namespaceSelector": {}}]}]}}}
}

test_null_pod_selector_counts_as_missing if {
	count(sg003.violation) == 1 with input as with_peer({"namespaceSelector": {}, "podSelector": null})
}

test_null_namespace_selector_passes if {
	count(sg003.violation) == 0 with input as with_peer({"namespaceSelector": null})
}
