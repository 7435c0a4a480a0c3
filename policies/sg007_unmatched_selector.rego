# SG007: a selector that matches no pod is usually a typo in a label.
package strictgate.rules.sg007

import data.strictgate.lib

id := "SG007-unmatched-selector"

action := "warn"

title := "spec.podSelector or a peer selector matches no existing pod"

violation contains msg if {
	lib.has_cluster
	count(lib.selected_pods) == 0
	msg := sprintf(
		"%s: spec.podSelector matches no pod in namespace %q yet; check its labels against the pods' (it takes effect once matching pods exist)",
		[id, lib.namespace],
	)
}

violation contains msg if {
	lib.has_cluster
	some p in lib.cluster_peers
	p.pods == 0
	msg := sprintf(
		"%s: %s selects no existing pod; check the podSelector/namespaceSelector labels (the peer allows nothing until matching pods exist)",
		[id, lib.peer_path(p.direction, p.rule, p.peer)],
	)
}
