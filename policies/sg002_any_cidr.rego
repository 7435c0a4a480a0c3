# SG002: an ipBlock of 0.0.0.0/0 or ::/0 without except is "the whole internet".
package strictgate.rules.sg002

import data.strictgate.lib

id := "SG002-any-cidr"

action := "deny"

title := "ipBlock 0.0.0.0/0 or ::/0 without except"

violation contains msg if {
	some [dir, i, j, cidr, excepts] in lib.ip_blocks
	endswith(trim_space(cidr), "/0")
	count(excepts) == 0
	msg := sprintf(
		"%s: %s ipBlock %q matches every address; narrow the CIDR to the networks you mean, or add an except list for what must stay unreachable (e.g. cluster, node and metadata ranges)",
		[id, lib.peer_path(dir, i, j), cidr],
	)
}
