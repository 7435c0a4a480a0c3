# SG011: the generated default-deny and DNS policies belong to strictgate's controller.
package strictgate.rules.sg011

import data.strictgate.lib

id := "SG011-protected-policy"

action := "deny"

title := "UPDATE or DELETE of a strictgate-generated policy by anyone but strictgate"

operations := {"UPDATE", "DELETE"}

default_protected := {"strictgate-default-deny", "strictgate-allow-dns"}

# protected is input.config.protectedPolicies when the webhook passes it.
protected := {n | some n in input.config.protectedPolicies} if is_array(input.config.protectedPolicies)

else := default_protected

privileged := {u | some u in lib.list(lib.obj(input, "config"), "privilegedUsers")}

username := u if {
	u := input.request.userInfo.username
	is_string(u)
} else := ""

# The namespace controller deletes everything in a terminating namespace.
terminating if lib.obj(lib.cluster, "namespace").terminating == true

violation contains msg if {
	lib.name in protected
	not username in privileged
	not terminating
	msg := sprintf(
		"%s: %s of NetworkPolicy %s/%s by %q refused: strictgate generates and maintains it; to switch enforcement off for the namespace, label it strictgate.dev/enforce=disabled (allowed only to the opt-out group)",
		[id, input.request.operation, lib.namespace, lib.name, username],
	)
}
