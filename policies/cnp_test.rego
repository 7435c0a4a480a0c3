package strictgate.cnp_test

import data.strictgate.cnp

test_rules_index_both_directions if {
	r := cnp.rules with input as {"policy": {"spec": {"ingress": [{"action": "Deny"}], "egress": [{"action": "Accept"}, {"action": "Pass"}]}}}
	r == {["ingress", 0]: {"action": "Deny"}, ["egress", 0]: {"action": "Accept"}, ["egress", 1]: {"action": "Pass"}}
}

test_peer_matches_all if {
	cnp.peer_matches_all({"namespaces": {}})
	cnp.peer_matches_all({"networks": ["10.0.0.0/8", "::/0"]})
	not cnp.peer_matches_all({"networks": ["10.0.0.0/8"]})
	not cnp.peer_matches_all({"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"a": "b"}}}})
}

test_port_covers if {
	cnp.port_covers({}, "UDP", 53)
	cnp.port_covers({"protocols": [{"udp": {"destinationPort": {"number": 53}}}]}, "UDP", 53)
	not cnp.port_covers({"protocols": [{"udp": {"destinationPort": {"number": 53}}}]}, "TCP", 53)
	cnp.port_covers({"protocols": [{"tcp": {"destinationPort": {"range": {"start": 50, "end": 60}}}}]}, "TCP", 53)
}
