# SG014: two Admin-tier ClusterNetworkPolicies with the same priority whose subjects
# select the same pods and whose rules in one direction take different actions. The
# API leaves the order of equal priorities to the implementation, so which one decides
# is not something the author can rely on. Needs cluster facts (input.cluster); quiet
# without them.
package strictgate.rules.sg014

import data.strictgate.cnp
import data.strictgate.lib

id := "SG014-cnp-priority-conflict"

kinds := {"ClusterNetworkPolicy"}

title := "Admin-tier ClusterNetworkPolicies with the same priority, overlapping subjects and contradicting actions"

actions(spec, dir) := {a | some r in cnp.list(spec, dir); a := r.action; is_string(a)}

violation contains msg if {
	cnp.tier == "Admin"
	some other in lib.list(lib.obj(input, "cluster"), "clusterNetworkPolicies")
	other.sharedPods > 0
	ospec := cnp.obj(other.policy, "spec")
	ospec.tier == "Admin"
	ospec.priority == cnp.spec.priority
	some dir in ["ingress", "egress"]
	mine := actions(cnp.spec, dir)
	theirs := actions(ospec, dir)
	some a in mine
	some b in theirs
	a != b
	msg := sprintf("%s: ClusterNetworkPolicy %s and %s are both Admin tier at priority %d, their subjects share %d pods, and their %s rules contradict (%s: %s; %s: %s): the order of equal priorities is not defined by the API; give them different priorities", [id, cnp.name, other.name, cnp.spec.priority, other.sharedPods, dir, cnp.name, concat(",", sort(mine)), other.name, concat(",", sort(theirs))])
}
