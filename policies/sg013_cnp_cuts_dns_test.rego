package strictgate.rules.sg013_test

import data.strictgate.rules.sg013

cnp(tier, rules) := {"kind": "ClusterNetworkPolicy", "request": {"operation": "CREATE"}, "policy": {"metadata": {"name": "p"}, "spec": {"tier": tier, "priority": 1, "subject": {"namespaces": {}}, "egress": rules}}}

deny_all := {"action": "Deny", "to": [{"networks": ["0.0.0.0/0"]}]}

kube_dns := {"pods": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}}

test_admin_deny_all_cuts_dns if {
	v := sg013.violation with input as cnp("Admin", [deny_all])
	count(v) == 1
	some m in v
	contains(m, "SG013-cnp-cuts-dns: ClusterNetworkPolicy p spec.egress[0] denies UDP/TCP 53")
}

test_deny_kube_system_udp_53 if {
	v := sg013.violation with input as cnp("Admin", [{"action": "Deny", "to": [{"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}], "protocols": [{"udp": {"destinationPort": {"number": 53}}}]}])
	some m in v
	contains(m, "denies UDP 53")
}

test_deny_kube_dns_pods_by_range if {
	count(sg013.violation) == 1 with input as cnp("Admin", [{"action": "Deny", "to": [kube_dns], "protocols": [{"tcp": {"destinationPort": {"range": {"start": 1, "end": 1024}}}}]}])
}

test_earlier_accept_keeps_dns if {
	accept := {"action": "Accept", "to": [kube_dns], "protocols": [{"udp": {"destinationPort": {"number": 53}}}, {"tcp": {"destinationPort": {"number": 53}}}]}
	count(sg013.violation) == 0 with input as cnp("Admin", [accept, deny_all])
}

test_earlier_accept_of_udp_only_still_cuts_tcp if {
	accept := {"action": "Accept", "to": [kube_dns], "protocols": [{"udp": {"destinationPort": {"number": 53}}}]}
	v := sg013.violation with input as cnp("Admin", [accept, deny_all])
	some m in v
	contains(m, "denies TCP 53")
}

test_other_port_passes if {
	count(sg013.violation) == 0 with input as cnp("Admin", [{"action": "Deny", "to": [{"namespaces": {}}], "protocols": [{"tcp": {"destinationPort": {"number": 80}}}]}])
}

test_other_namespace_passes if {
	count(sg013.violation) == 0 with input as cnp("Admin", [{"action": "Deny", "to": [{"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}}]}])
}

test_baseline_passes if {
	count(sg013.violation) == 0 with input as cnp("Baseline", [deny_all])
}
