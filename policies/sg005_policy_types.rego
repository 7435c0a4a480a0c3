# SG005: rules of a direction missing from policyTypes are silently ignored by Kubernetes.
package strictgate.rules.sg005

import data.strictgate.lib

id := "SG005-policy-types"

action := "deny"

title := "policyTypes inconsistent with the rules present"

violation contains msg if {
	count(lib.declared_types) > 0
	some dir in ["ingress", "egress"]
	n := count(lib.list(lib.spec, dir))
	n > 0
	not lib.policy_type[dir] in lib.declared_types
	msg := sprintf(
		"%s: spec.%s has %d rule(s) but spec.policyTypes %v does not list %q, so Kubernetes ignores them; add %q to policyTypes or remove spec.%s",
		[id, dir, n, sort(lib.declared_types), lib.policy_type[dir], lib.policy_type[dir], dir],
	)
}
