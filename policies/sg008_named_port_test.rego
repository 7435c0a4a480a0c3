package strictgate.rules.sg008_test

import data.strictgate.rules.sg008

web := {"name": "web-1", "selected": true, "policies": [], "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}, {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}

with_ingress_port(port, pods) := {
	"request": {"operation": "CREATE", "namespace": "app"},
	"policy": {"spec": {"ingress": [{"from": [{"podSelector": {}}], "ports": [port]}]}},
	"cluster": {"pods": pods, "peers": [], "policies": {}},
}

with_egress_port(port, peer_ports, pods) := {
	"request": {"operation": "CREATE", "namespace": "app"},
	"policy": {"spec": {"egress": [{"to": [{"podSelector": {"matchLabels": {"app": "db"}}}], "ports": [port]}]}},
	"cluster": {"pods": [web], "peers": [{"direction": "egress", "rule": 0, "peer": 0, "pods": pods, "namedPorts": peer_ports}], "policies": {}},
}

test_unknown_ingress_name_warns if {
	v := sg008.violation with input as with_ingress_port({"port": "metrics", "protocol": "TCP"}, [web])
	count(v) == 1
	some msg in v
	contains(msg, "\"metrics\"/TCP")
	contains(msg, "spec.ingress[0].ports[0]")
}

test_known_ingress_name_passes if {
	count(sg008.violation) == 0 with input as with_ingress_port({"port": "http"}, [web])
}

test_protocol_must_match if {
	count(sg008.violation) == 1 with input as with_ingress_port({"port": "dns", "protocol": "TCP"}, [web])
	count(sg008.violation) == 0 with input as with_ingress_port({"port": "dns", "protocol": "UDP"}, [web])
}

test_unselected_pods_do_not_count if {
	count(sg008.violation) == 0 with input as with_ingress_port({"port": "metrics"}, [object.union(web, {"selected": false})])
}

test_unknown_egress_name_warns if {
	count(sg008.violation) == 1 with input as with_egress_port({"port": "postgres"}, [{"name": "mysql", "protocol": "TCP"}], 2)
}

test_known_egress_name_passes if {
	count(sg008.violation) == 0 with input as with_egress_port({"port": "postgres"}, [{"name": "postgres", "protocol": "TCP"}], 2)
}

test_egress_peers_without_pods_silent if {
	count(sg008.violation) == 0 with input as with_egress_port({"port": "postgres"}, [], 0)
}

test_numeric_ports_ignored if {
	count(sg008.violation) == 0 with input as with_ingress_port({"port": 9090}, [web])
}
