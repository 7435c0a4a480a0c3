# SG013: an Admin-tier Deny on egress UDP/TCP 53 to kube-system's DNS pods (or to
# everything) cuts name resolution for every pod it selects, and no NetworkPolicy can
# give it back (the Admin tier is evaluated first). An earlier Accept or Pass rule of
# the same policy covering DNS keeps it (first match wins).
#
# Kubelet probes cannot be cut by a ClusterNetworkPolicy: ingress peers are namespaces
# and pods only, which never include the node or host-networked pods, and strictgate
# always allows traffic between a pod and its own node.
package strictgate.rules.sg013

import data.strictgate.cnp
import data.strictgate.lib

id := "SG013-cnp-cuts-dns"

kinds := {"ClusterNetworkPolicy"}

title := "an Admin-tier ClusterNetworkPolicy Deny that cuts egress to kube-dns"

dns_namespace := "kube-system"

# selects_dns_namespace(s): a namespace selector matching kube-system (by the
# kubernetes.io/metadata.name label every namespace carries, or everything).
selects_dns_namespace(s) if lib.empty_selector(s)

selects_dns_namespace(s) if obj_label(s, "kubernetes.io/metadata.name") == dns_namespace

obj_label(s, k) := v if {
	v := lib.obj(s, "matchLabels")[k]
}

dns_pod_selector(s) if lib.empty_selector(s)

dns_pod_selector(s) if obj_label(s, "k8s-app") == "kube-dns"

reaches_dns(p) if cnp.peer_matches_all(p)

reaches_dns(p) if {
	lib.has(p, "namespaces")
	selects_dns_namespace(cnp.obj(p, "namespaces"))
}

reaches_dns(p) if {
	lib.has(p, "pods")
	pods := cnp.obj(p, "pods")
	selects_dns_namespace(cnp.obj(pods, "namespaceSelector"))
	dns_pod_selector(cnp.obj(pods, "podSelector"))
}

cuts(r, proto) if {
	r.action == "Deny"
	cnp.port_covers(r, proto, 53)
	some p in cnp.list(r, "to")
	reaches_dns(p)
}

# kept(i, proto): an earlier rule decides DNS before rule i does.
kept(i, proto) if {
	some k, r in cnp.list(cnp.spec, "egress")
	k < i
	r.action in {"Accept", "Pass"}
	cnp.port_covers(r, proto, 53)
	some p in cnp.list(r, "to")
	reaches_dns(p)
}

violation contains msg if {
	cnp.tier == "Admin"
	some i, r in cnp.list(cnp.spec, "egress")
	protos := [p | some p in ["UDP", "TCP"]; cuts(r, p); not kept(i, p)]
	count(protos) > 0
	msg := sprintf("%s: ClusterNetworkPolicy %s spec.egress[%d] denies %s 53 to the DNS pods in %s at the Admin tier, which cuts name resolution for the selected pods and no NetworkPolicy can allow it back; put an Accept rule for UDP and TCP 53 to kube-system's kube-dns pods before it, or narrow its peers or protocols", [id, cnp.name, i, concat("/", protos), dns_namespace])
}
