# SG001: a rule without peers allows every source (ingress) or destination (egress).
package strictgate.rules.sg001

import data.strictgate.lib

id := "SG001-open-rule"

action := "deny"

title := "ingress rule without from / egress rule without to"

exempt if {
	reason := lib.annotations[lib.exemption_annotation]
	is_string(reason)
	trim_space(reason) != ""
}

violation contains msg if {
	not exempt
	some [dir, i, r] in lib.rules
	count(lib.list(r, lib.peer_field[dir])) == 0
	msg := sprintf(
		"%s: %s has no %q, so it allows %s %s; list the peers it should allow, or annotate the policy with %s: \"<reason>\" if this is intended",
		[id, lib.rule_path(dir, i), lib.peer_field[dir], reach(r), direction_word[dir], lib.exemption_annotation],
	)
}

direction_word := {"ingress": "from every address, pod and namespace", "egress": "to every address, pod and namespace"}

reach(r) := "all traffic" if count(lib.list(r, "ports")) == 0

reach(r) := "traffic on its ports" if count(lib.list(r, "ports")) > 0
