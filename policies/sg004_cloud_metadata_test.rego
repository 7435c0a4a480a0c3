package strictgate.rules.sg004_test

import data.strictgate.rules.sg004

egress_to(block) := {"request": {"operation": "CREATE"}, "policy": {"spec": {"egress": [{"to": [{"ipBlock": block}]}]}}}

test_exact_metadata_ipv4_denied if {
	v := sg004.violation with input as egress_to({"cidr": "169.254.169.254/32"})
	count(v) == 1
	some msg in v
	contains(msg, "169.254.169.254/32")
}

test_containing_cidr_denied if {
	count(sg004.violation) == 1 with input as egress_to({"cidr": "169.254.0.0/16"})
}

test_ipv6_metadata_denied if {
	v := sg004.violation with input as egress_to({"cidr": "fd00::/8"})
	count(v) == 1
	some msg in v
	contains(msg, "fd00:ec2::254/128")
}

test_except_removes_it if {
	count(sg004.violation) == 0 with input as egress_to({"cidr": "169.254.0.0/16", "except": ["169.254.169.254/32"]})
}

test_wider_except_removes_it if {
	count(sg004.violation) == 0 with input as egress_to({"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]})
}

test_unrelated_except_keeps_it if {
	count(sg004.violation) == 1 with input as egress_to({"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]})
}

test_other_cidr_passes if {
	count(sg004.violation) == 0 with input as egress_to({"cidr": "10.0.0.0/8"})
}

test_ingress_from_metadata_not_flagged if {
	count(sg004.violation) == 0 with input as {"policy": {"spec": {"ingress": [{"from": [{"ipBlock": {"cidr": "169.254.169.254/32"}}]}]}}}
}

test_malformed_cidr_tolerated if {
	count(sg004.violation) == 0 with input as egress_to({"cidr": "not-a-cidr", "except": [42, null]})
}

egress_rule(rule) := {"request": {"operation": "CREATE"}, "policy": {"spec": {"egress": [rule]}}}

test_open_egress_reaches_metadata if {
	v := sg004.violation with input as egress_rule({})
	count(v) == 1
	some msg in v
	contains(msg, "spec.egress[0] has no \"to\"")
	contains(msg, "except [169.254.169.254/32]")
}

test_open_egress_on_http_ports_reaches_metadata if {
	count(sg004.violation) == 1 with input as egress_rule({"ports": [{"port": 80}]})
	count(sg004.violation) == 1 with input as egress_rule({"ports": [{"protocol": "TCP", "port": 1, "endPort": 1000}]})
	count(sg004.violation) == 1 with input as egress_rule({"to": [], "ports": [{"protocol": "TCP"}]})
	count(sg004.violation) == 1 with input as egress_rule({"ports": [{"port": "http"}]})
}

test_open_egress_on_other_ports_passes if {
	count(sg004.violation) == 0 with input as egress_rule({"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]})
	count(sg004.violation) == 0 with input as egress_rule({"ports": [{"port": 80, "protocol": "UDP"}, {"port": 443}]})
}

test_open_ingress_not_flagged if {
	count(sg004.violation) == 0 with input as {"policy": {"spec": {"ingress": [{}]}}}
}
