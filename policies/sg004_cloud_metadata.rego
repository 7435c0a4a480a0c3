# SG004: egress to the cloud metadata service hands out node credentials.
package strictgate.rules.sg004

import data.strictgate.lib

id := "SG004-cloud-metadata"

action := "deny"

title := "egress to the cloud metadata service"

metadata_addresses := {"169.254.169.254", "fd00:ec2::254"}

violation contains msg if {
	some [dir, i, j, cidr, excepts] in lib.ip_blocks
	dir == "egress"
	some addr in metadata_addresses
	contains_addr(cidr, addr)
	not excluded(excepts, addr)
	msg := sprintf(
		"%s: %s ipBlock %q includes the cloud metadata address %s, which serves node credentials; add %s to its except list (or narrow the CIDR)",
		[id, lib.peer_path(dir, i, j), cidr, addr, except_form(addr)],
	)
}

# A malformed CIDR is the API server's to reject, not ours: skip it rather than error.
contains_addr(cidr, addr) if {
	net.cidr_is_valid(cidr)
	net.cidr_contains(cidr, addr)
}

excluded(excepts, addr) if {
	some e in excepts
	contains_addr(e, addr)
}

except_form(addr) := sprintf("%s/32", [addr]) if not contains(addr, ":")

except_form(addr) := sprintf("%s/128", [addr]) if contains(addr, ":")
