package strictgate.lib_test

import data.strictgate.lib

test_rules_peers_ports_enumerated if {
	spec := {"ingress": [{"from": [{"podSelector": {}}, null], "ports": [{"port": 80}]}], "egress": [null, {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", 3]}}]}]}
	count(lib.rules) == 2 with input as {"policy": {"spec": spec}}
	lib.peers == {["ingress", 0, 0, {"podSelector": {}}], ["egress", 1, 0, {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", 3]}}]} with input as {"policy": {"spec": spec}}
	lib.ports == {["ingress", 0, 0, {"port": 80}]} with input as {"policy": {"spec": spec}}
	lib.ip_blocks == {["egress", 1, 0, "10.0.0.0/8", ["10.1.0.0/16"]]} with input as {"policy": {"spec": spec}}
}

test_effective_types if {
	lib.effective_types == {"Ingress"} with input as {"policy": {"spec": {}}}
	lib.effective_types == {"Ingress", "Egress"} with input as {"policy": {"spec": {"egress": [{}]}}}
	lib.effective_types == {"Egress"} with input as {"policy": {"spec": {"policyTypes": ["Egress"], "ingress": [{}]}}}
}

test_types_of_other_policies if {
	lib.types_of({"spec": {"egress": [{}]}}) == {"Ingress", "Egress"}
	lib.types_of({"spec": {"policyTypes": ["Egress"]}}) == {"Egress"}
	lib.types_of(null) == {"Ingress"}
}

test_empty_selector if {
	lib.empty_selector({})
	lib.empty_selector({"matchLabels": null})
	not lib.empty_selector({"matchLabels": {"a": "b"}})
	not lib.empty_selector({"matchExpressions": [{"key": "a", "operator": "Exists"}]})
	not lib.empty_selector(null)
}

test_protocol_default if {
	lib.protocol({}) == "TCP"
	lib.protocol({"protocol": "UDP"}) == "UDP"
	lib.protocol({"protocol": null}) == "TCP"
}

test_name_and_namespace_fall_back_to_metadata if {
	lib.name == "p" with input as {"policy": {"metadata": {"name": "p", "namespace": "n"}}}
	lib.namespace == "n" with input as {"policy": {"metadata": {"name": "p", "namespace": "n"}}}
	lib.name == "r" with input as {"request": {"name": "r"}, "policy": {"metadata": {"name": "p"}}}
}

test_sparse_input_is_harmless if {
	lib.spec == {} with input as {"policy": null}
	count(lib.rules) == 0 with input as {"policy": {"spec": {"ingress": "nonsense"}}}
	lib.has_cluster with input as {"cluster": {"pods": []}}
	not lib.has_cluster with input as {}
}
