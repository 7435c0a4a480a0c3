package strictgate.rules.sg009_test

import data.strictgate.rules.sg009

dns_rule := {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}], "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}

web(policies) := {"name": "web-1", "selected": true, "policies": policies}

review(spec, pods, others) := {
	"request": {"operation": "CREATE", "namespace": "app"},
	"policy": {"spec": spec},
	"cluster": {"pods": pods, "peers": [], "policies": others},
}

isolating := {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"podSelector": {}}], "ports": [{"port": 443}]}]}

test_isolating_without_dns_warns if {
	v := sg009.violation with input as review(isolating, [web([])], {})
	count(v) == 1
	some msg in v
	contains(msg, "TCP and UDP port 53 for pod web-1")
}

test_own_dns_rule_passes if {
	spec := object.union(isolating, {"egress": [dns_rule]})
	count(sg009.violation) == 0 with input as review(spec, [web([])], {})
}

test_udp_only_warns_for_tcp if {
	spec := object.union(isolating, {"egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}]})
	v := sg009.violation with input as review(spec, [web([])], {})
	some msg in v
	contains(msg, "over TCP port 53")
}

test_other_policy_selecting_pod_passes if {
	allow_dns := {"spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [dns_rule]}}
	count(sg009.violation) == 0 with input as review(isolating, [web(["strictgate-allow-dns"])], {"strictgate-allow-dns": allow_dns})
}

test_other_policy_not_selecting_pod_does_not_count if {
	allow_dns := {"spec": {"podSelector": {"matchLabels": {"app": "other"}}, "policyTypes": ["Egress"], "egress": [dns_rule]}}
	count(sg009.violation) == 1 with input as review(isolating, [web([])], {"dns": allow_dns})
}

test_other_ingress_only_policy_does_not_count if {
	ingress_only := {"spec": {"podSelector": {}, "policyTypes": ["Ingress"], "egress": [dns_rule]}}
	count(sg009.violation) == 1 with input as review(isolating, [web(["x"])], {"x": ingress_only})
}

test_no_pods_yet_uses_select_all_policies if {
	allow_dns := {"spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [dns_rule]}}
	count(sg009.violation) == 0 with input as review(isolating, [], {"strictgate-allow-dns": allow_dns})
	count(sg009.violation) == 1 with input as review(isolating, [], {})
}

test_port_range_and_named_ports_count if {
	spec := object.union(isolating, {"egress": [{"ports": [{"port": 1, "endPort": 100, "protocol": "UDP"}, {"port": "dns-tcp", "protocol": "TCP"}]}]})
	count(sg009.violation) == 0 with input as review(spec, [web([])], {})
}

test_rule_without_ports_counts if {
	spec := object.union(isolating, {"egress": [{"to": [{"podSelector": {}}]}]})
	count(sg009.violation) == 0 with input as review(spec, [web([])], {})
}

test_ingress_only_policy_silent if {
	count(sg009.violation) == 0 with input as review({"podSelector": {}, "policyTypes": ["Ingress"]}, [web([])], {})
}

test_default_deny_alone_warns if {
	count(sg009.violation) == 1 with input as review({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}, [web([])], {})
}

test_many_pods_grouped if {
	pods := [{"name": sprintf("p%d", [i]), "selected": true, "policies": []} | some i in numbers.range(1, 7)]
	v := sg009.violation with input as review(isolating, pods, {})
	count(v) == 1
	some msg in v
	contains(msg, "7 pods (p1, p2, p3, p4, p5, ...)")
}
