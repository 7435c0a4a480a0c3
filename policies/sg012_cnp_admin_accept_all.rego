# SG012: an Admin-tier Accept that matches every peer on every port overrides every
# NetworkPolicy of the pods it selects: nothing an application team writes can
# restrict them any more. Usually a debugging leftover or a missing peer/protocols.
package strictgate.rules.sg012

import data.strictgate.cnp

id := "SG012-cnp-admin-accept-all"

kinds := {"ClusterNetworkPolicy"}

title := "an Admin-tier ClusterNetworkPolicy rule accepting all peers on all ports"

violation contains msg if {
	cnp.tier == "Admin"
	some [dir, i], r in cnp.rules
	r.action == "Accept"
	count(cnp.list(r, "protocols")) == 0
	some j, peer in cnp.list(r, cnp.peer_field[dir])
	cnp.peer_matches_all(peer)
	msg := sprintf("%s: ClusterNetworkPolicy %s spec.%s[%d].%s[%d] accepts all %s traffic on all ports at the Admin tier, so no NetworkPolicy can restrict the selected pods; list the peers or protocols it should accept, or use the Baseline tier", [id, cnp.name, dir, i, cnp.peer_field[dir], j, dir])
}
