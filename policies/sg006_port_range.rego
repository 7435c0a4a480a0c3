# SG006: endPort needs a numeric port not above it, and ranges should stay narrow.
package strictgate.rules.sg006

import data.strictgate.lib

id := "SG006-port-range"

action := "deny"

title := "endPort without port, endPort below port, or a port range wider than allowed"

default_max_range := 1024

# max_range is input.config.maxPortRange (the webhook's --hygiene-max-port-range).
max_range := m if {
	m := input.config.maxPortRange
	is_number(m)
	m > 0
} else := default_max_range

violation contains msg if {
	some [dir, i, k, p] in lib.ports
	lib.has(p, "endPort")
	not lib.has(p, "port")
	msg := sprintf("%s: %s has endPort %v but no port; set port to the first port of the range", [id, lib.port_path(dir, i, k), p.endPort])
}

violation contains msg if {
	some [dir, i, k, p] in lib.ports
	is_number(p.endPort)
	is_string(p.port)
	msg := sprintf("%s: %s has endPort with the named port %q; a range needs a numeric port", [id, lib.port_path(dir, i, k), p.port])
}

violation contains msg if {
	some [dir, i, k, p] in lib.ports
	is_number(p.endPort)
	is_number(p.port)
	p.endPort < p.port
	msg := sprintf("%s: %s has endPort %v below port %v; swap them or fix the range", [id, lib.port_path(dir, i, k), p.endPort, p.port])
}

violation contains msg if {
	some [dir, i, k, p] in lib.ports
	is_number(p.endPort)
	is_number(p.port)
	width := (p.endPort - p.port) + 1
	width > max_range
	msg := sprintf(
		"%s: %s opens %d ports (%v-%v), more than the allowed %d; split it into the ranges the workload really listens on",
		[id, lib.port_path(dir, i, k), width, p.port, p.endPort, max_range],
	)
}
