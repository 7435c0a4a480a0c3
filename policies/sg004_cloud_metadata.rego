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

# An egress rule without "to" reaches every address, the metadata service included,
# unless its ports keep it off the service's HTTP port.
violation contains msg if {
	some [dir, i, r] in lib.rules
	dir == "egress"
	count(lib.list(r, "to")) == 0
	reaches_metadata_port(r)
	msg := sprintf(
		"%s: %s has no \"to\", so it also allows the cloud metadata service (169.254.169.254, fd00:ec2::254), which serves node credentials; allow the internet as ipBlock 0.0.0.0/0 with except [169.254.169.254/32] (and ::/0 with except [fd00:ec2::254/128]) instead",
		[id, lib.rule_path(dir, i)],
	)
}

metadata_port := 80

reaches_metadata_port(r) if count(lib.list(r, "ports")) == 0

reaches_metadata_port(r) if {
	some p in lib.list(r, "ports")
	is_object(p)
	lib.protocol(p) == "TCP"
	port_covers(p, metadata_port)
}

port_covers(p, _) if not lib.has(p, "port")

port_covers(p, _) if is_string(p.port) # a named port resolves per destination: assume it may

port_covers(p, n) if p.port == n

port_covers(p, n) if {
	is_number(p.port)
	is_number(p.endPort)
	p.port <= n
	n <= p.endPort
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
