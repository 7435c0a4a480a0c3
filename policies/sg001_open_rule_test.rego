package strictgate.rules.sg001_test

import data.strictgate.rules.sg001

policy(spec, annotations) := {"request": {"operation": "CREATE", "namespace": "app", "name": "p"}, "policy": {
	"metadata": {"name": "p", "namespace": "app", "annotations": annotations},
	"spec": spec,
}}

test_ingress_without_from_denied if {
	v := sg001.violation with input as policy({"ingress": [{"ports": [{"port": 80}]}]}, {})
	count(v) == 1
	some msg in v
	contains(msg, "spec.ingress[0]")
	contains(msg, "SG001-open-rule")
}

test_egress_with_empty_to_denied if {
	v := sg001.violation with input as policy({"egress": [{"to": []}]}, {})
	count(v) == 1
	some msg in v
	contains(msg, "spec.egress[0]")
	contains(msg, "all traffic")
}

test_rules_with_peers_pass if {
	count(sg001.violation) == 0 with input as policy(
		{
			"ingress": [{"from": [{"podSelector": {}}]}],
			"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}],
		},
		{},
	)
}

test_exemption_with_reason_passes if {
	count(sg001.violation) == 0 with input as policy({"ingress": [{}]}, {"strictgate.dev/allow-open-rule": "public load balancer health checks"})
}

test_exemption_without_reason_still_denied if {
	count(sg001.violation) == 1 with input as policy({"ingress": [{}]}, {"strictgate.dev/allow-open-rule": "  "})
}

test_no_rules_passes if {
	count(sg001.violation) == 0 with input as policy({"policyTypes": ["Ingress", "Egress"]}, {})
}

test_nulls_tolerated if {
	count(sg001.violation) == 1 with input as policy({"ingress": [null, {"from": null}], "egress": null}, null)
}

test_missing_policy_tolerated if {
	count(sg001.violation) == 0 with input as {}
}
