# SG009: isolating egress without a DNS allow breaks name resolution for the pods.
package strictgate.rules.sg009

import data.strictgate.lib

id := "SG009-no-dns-egress"

action := "warn"

title := "a policy isolating egress with no DNS allow (UDP and TCP 53) for its pods"

protocols := {"UDP", "TCP"}

# dns_port_names are the containerPort names CoreDNS/kube-dns use, so that a rule
# written with named ports counts as a DNS allow.
dns_port_names := {"dns", "dns-tcp", "domain"}

covers_dns(p) if not lib.has(p, "port")

covers_dns(p) if p.port == 53

covers_dns(p) if p.port in dns_port_names

covers_dns(p) if {
	is_number(p.port)
	is_number(p.endPort)
	p.port <= 53
	53 <= p.endPort
}

rule_allows(r, proto) if count(lib.list(r, "ports")) == 0

rule_allows(r, proto) if {
	some p in lib.list(r, "ports")
	is_object(p)
	lib.protocol(p) == proto
	covers_dns(p)
}

policy_allows(q, proto) if {
	"Egress" in lib.types_of(q)
	some r in lib.list(lib.obj(q, "spec"), "egress")
	is_object(r)
	rule_allows(r, proto)
}

this_allows contains proto if {
	some proto in protocols
	policy_allows(lib.policy, proto)
}

others_allow contains [name, proto] if {
	some name, q in lib.other_policies
	some proto in protocols
	policy_allows(q, proto)
}

# When no pod matches yet, judge the pods this policy will select by the policies
# that select every pod (podSelector {}), such as strictgate-allow-dns.
pods := lib.selected_pods if count(lib.selected_pods) > 0

pods := [{"name": "(pods matching spec.podSelector)", "policies": select_all}] if count(lib.selected_pods) == 0

select_all := [name |
	some name, q in lib.other_policies
	lib.empty_selector(lib.obj(q, "spec").podSelector)
]

missing(pod) := {proto |
	some proto in protocols
	not proto in this_allows
	not allowed_by_other(pod, proto)
}

allowed_by_other(pod, proto) if {
	some name in lib.list(pod, "policies")
	[name, proto] in others_allow
}

gaps := {[sort(m), pod.name] |
	some pod in pods
	m := missing(pod)
	count(m) > 0
}

violation contains msg if {
	"Egress" in lib.effective_types
	some m in {m | some [m, _] in gaps}
	names := sort([n | some [m2, n] in gaps; m2 == m])
	msg := sprintf(
		"%s: this policy isolates egress but no policy allows DNS over %s port 53 for %s; add an egress rule to kube-dns on UDP and TCP 53 (or keep strictgate-allow-dns)",
		[id, concat(" and ", m), describe(names)],
	)
}

describe(names) := sprintf("pod %s", [names[0]]) if count(names) == 1

describe(names) := sprintf("pods %s", [concat(", ", names)]) if {
	count(names) > 1
	count(names) <= 5
}

describe(names) := sprintf("%d pods (%s, ...)", [count(names), concat(", ", array.slice(names, 0, 5))]) if count(names) > 5
