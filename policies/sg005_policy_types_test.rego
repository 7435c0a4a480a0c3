package strictgate.rules.sg005_test

import data.strictgate.rules.sg005

with_spec(spec) := {"request": {"operation": "CREATE"}, "policy": {"spec": spec}}

test_egress_rules_under_ingress_only_denied if {
	v := sg005.violation with input as with_spec({"policyTypes": ["Ingress"], "egress": [{"to": [{"podSelector": {}}]}]})
	count(v) == 1
	some msg in v
	contains(msg, "\"Egress\"")
}

test_ingress_rules_under_egress_only_denied if {
	v := sg005.violation with input as with_spec({"policyTypes": ["Egress"], "ingress": [{}]})
	count(v) == 1
	some msg in v
	contains(msg, "spec.ingress")
}

test_consistent_passes if {
	count(sg005.violation) == 0 with input as with_spec({"policyTypes": ["Ingress", "Egress"], "ingress": [{}], "egress": [{}]})
}

test_type_without_rules_passes if {
	# deny-all for a direction is the point of listing a type with no rules
	count(sg005.violation) == 0 with input as with_spec({"policyTypes": ["Ingress", "Egress"]})
}

test_omitted_types_pass if {
	count(sg005.violation) == 0 with input as with_spec({"egress": [{}], "policyTypes": null})
}
