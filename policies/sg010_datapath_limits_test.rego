package strictgate.rules.sg010_test

import data.strictgate.rules.sg010

limits := {"maxPrefixesPerPodDirection": 4, "maxPortRulesPerEntry": 3}

review(spec, peers) := {"request": {"operation": "CREATE"}, "policy": {"spec": spec}, "limits": limits, "cluster": {"pods": [], "peers": peers, "policies": {}}}

block(cidr, excepts) := {"ipBlock": {"cidr": cidr, "except": excepts}}

test_too_many_prefixes_denied if {
	spec := {"egress": [{"to": [block("10.0.0.0/8", ["10.1.0.0/16", "10.2.0.0/16"]), block("192.168.0.0/16", [])]}, {"to": [block("172.16.0.0/12", [])]}]}
	v := sg010.violation with input as review(spec, [])
	count(v) == 1
	some msg in v
	contains(msg, "spec.egress needs 5 address prefixes")
	contains(msg, "MaxPrefixesPerPodDirection = 4")
}

test_selector_peers_count_their_pods if {
	spec := {"ingress": [{"from": [block("10.0.0.0/8", []), {"podSelector": {}}]}]}
	count(sg010.violation) == 1 with input as review(spec, [{"direction": "ingress", "rule": 0, "peer": 1, "pods": 4}])
	count(sg010.violation) == 0 with input as review(spec, [{"direction": "ingress", "rule": 0, "peer": 1, "pods": 3}])
}

test_at_limit_passes if {
	spec := {"egress": [{"to": [block("10.0.0.0/8", ["10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16"])]}]}
	count(sg010.violation) == 0 with input as review(spec, [])
}

test_too_many_ports_denied if {
	spec := {"ingress": [{"from": [{"podSelector": {}}], "ports": [{"port": 1}, {"port": 2}, {"port": 3}, {"port": 4}]}]}
	v := sg010.violation with input as review(spec, [])
	count(v) == 1
	some msg in v
	contains(msg, "spec.ingress[0] lists 4 ports")
	contains(msg, "MaxPortRulesPerEntry = 3")
}

test_defaults_without_limits_input if {
	count(sg010.violation) == 0 with input as {"policy": {"spec": {"egress": [{"to": [block("10.0.0.0/8", [])]}]}}}
}
