# SG010: a policy the eBPF datapath cannot hold would leave its pods unprogrammed.
# The limits come from internal/contract (bpf/include/limits.h) through input.limits.
package strictgate.rules.sg010

import data.strictgate.lib

id := "SG010-datapath-limits"

action := "deny"

title := "rule sizes beyond what the datapath can hold"

limit(key, fallback) := v if {
	v := input.limits[key]
	is_number(v)
} else := fallback

max_prefixes := limit("maxPrefixesPerPodDirection", 65536)

max_port_rules := limit("maxPortRulesPerEntry", 512)

# prefixes(dir) counts the LPM entries one pod needs for this policy in dir: an entry
# per ipBlock and per except, and one per pod a selector peer matches today.
prefixes(dir) := n if {
	blocks := sum([n | some [d, _, _, _, excepts] in lib.ip_blocks; d == dir; n := 1 + count(excepts)])
	selected := sum([c.pods | some c in lib.cluster_peers; c.direction == dir; is_number(c.pods)])
	n := blocks + selected
}

violation contains msg if {
	some dir in ["ingress", "egress"]
	n := prefixes(dir)
	n > max_prefixes
	msg := sprintf(
		"%s: spec.%s needs %d address prefixes per pod, more than the datapath holds (MaxPrefixesPerPodDirection = %d); aggregate the CIDRs or split the policy by pod",
		[id, dir, n, max_prefixes],
	)
}

violation contains msg if {
	some [dir, i, r] in lib.rules
	n := count(lib.list(r, "ports"))
	n > max_port_rules
	msg := sprintf(
		"%s: %s lists %d ports, more than the datapath holds per address (MaxPortRulesPerEntry = %d); use endPort ranges or fewer ports",
		[id, lib.rule_path(dir, i), n, max_port_rules],
	)
}
