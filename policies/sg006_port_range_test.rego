package strictgate.rules.sg006_test

import data.strictgate.rules.sg006

with_port(port) := {"request": {"operation": "CREATE"}, "policy": {"spec": {"egress": [{"to": [{"podSelector": {}}], "ports": [port]}]}}}

test_end_port_without_port_denied if {
	v := sg006.violation with input as with_port({"protocol": "TCP", "endPort": 90})
	count(v) == 1
	some msg in v
	contains(msg, "spec.egress[0].ports[0]")
	contains(msg, "no port")
}

test_end_port_below_port_denied if {
	v := sg006.violation with input as with_port({"port": 100, "endPort": 90})
	count(v) == 1
	some msg in v
	contains(msg, "below")
}

test_end_port_with_named_port_denied if {
	count(sg006.violation) == 1 with input as with_port({"port": "http", "endPort": 90})
}

test_wide_range_denied_with_default_max if {
	v := sg006.violation with input as with_port({"port": 1000, "endPort": 3000})
	count(v) == 1
	some msg in v
	contains(msg, "2001 ports")
	contains(msg, "1024")
}

test_range_at_max_passes if {
	count(sg006.violation) == 0 with input as with_port({"port": 1, "endPort": 1024})
}

test_configured_max if {
	count(sg006.violation) == 1 with input as object.union(with_port({"port": 80, "endPort": 90}), {"config": {"maxPortRange": 10}})
	count(sg006.violation) == 0 with input as object.union(with_port({"port": 80, "endPort": 89}), {"config": {"maxPortRange": 10}})
}

test_plain_ports_pass if {
	count(sg006.violation) == 0 with input as with_port({"port": 443})
	count(sg006.violation) == 0 with input as with_port({"port": "https", "protocol": "TCP"})
	count(sg006.violation) == 0 with input as with_port({"port": null, "endPort": null})
}
