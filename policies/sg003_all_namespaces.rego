# SG003: namespaceSelector {} without podSelector admits every pod of every namespace.
package strictgate.rules.sg003

import data.strictgate.lib

id := "SG003-all-namespaces"

action := "deny"

title := "peer with namespaceSelector {} and no podSelector"

violation contains msg if {
	some [dir, i, j, p] in lib.peers
	lib.empty_selector(p.namespaceSelector)
	not lib.has(p, "podSelector")
	msg := sprintf(
		"%s: %s has namespaceSelector {} and no podSelector, which matches every pod in every namespace (including kube-system); select the namespaces by label (e.g. kubernetes.io/metadata.name) or add a podSelector",
		[id, lib.peer_path(dir, i, j)],
	)
}
