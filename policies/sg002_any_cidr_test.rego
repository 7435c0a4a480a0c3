package strictgate.rules.sg002_test

import data.strictgate.rules.sg002

with_peer(dir, peer) := {"request": {"operation": "CREATE"}, "policy": {"spec": {dir: [{{"ingress": "from", "egress": "to"}[dir]: [peer]}]}}}

test_ipv4_any_denied if {
	v := sg002.violation with input as with_peer("egress", {"ipBlock": {"cidr": "0.0.0.0/0"}})
	count(v) == 1
	some msg in v
	contains(msg, "spec.egress[0].to[0]")
}

test_ipv6_any_denied_on_ingress if {
	v := sg002.violation with input as with_peer("ingress", {"ipBlock": {"cidr": "::/0"}})
	count(v) == 1
	some msg in v
	contains(msg, "spec.ingress[0].from[0]")
}

test_any_with_except_passes if {
	count(sg002.violation) == 0 with input as with_peer("egress", {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}})
}

test_any_with_empty_except_denied if {
	count(sg002.violation) == 1 with input as with_peer("egress", {"ipBlock": {"cidr": "0.0.0.0/0", "except": []}})
}

test_narrow_cidr_passes if {
	count(sg002.violation) == 0 with input as with_peer("egress", {"ipBlock": {"cidr": "203.0.113.0/24"}})
}

test_nulls_tolerated if {
	count(sg002.violation) == 0 with input as with_peer("egress", {"ipBlock": {"cidr": null, "except": null}})
	count(sg002.violation) == 0 with input as with_peer("egress", {"ipBlock": null})
}
