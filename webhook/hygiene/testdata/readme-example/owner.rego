package strictgate.rules.owner_label

import data.strictgate.lib

id := "ACME001-owner-label"

action := "warn"

violation contains msg if {
	not lib.obj(lib.obj(input.policy, "metadata"), "labels").owner
	msg := sprintf("%s: NetworkPolicy %s/%s has no owner label; add metadata.labels.owner: <team>", [id, lib.namespace, lib.name])
}
