# The engine turns every rule package under data.strictgate.rules into findings.
# The webhook evaluates data.strictgate.hygiene.findings once per admission request.
#
# A rule package declares:
#   id         (string, optional)  stable id, e.g. "SG001-open-rule"; defaults to the
#                                  package name. A user rule with the id of a built-in
#                                  replaces it.
#   action     (string, optional)  "deny" | "warn" | "dryrun"; defaults to "deny";
#                                  the webhook's configuration may override it per id.
#   operations (set, optional)     admission operations the rule judges; defaults to
#                                  {"CREATE", "UPDATE"} so that no hygiene rule ever
#                                  blocks deleting a policy by accident.
#   kinds      (set, optional)     kinds of object the rule judges, "NetworkPolicy" and/or
#                                  "ClusterNetworkPolicy" (input.kind); defaults to
#                                  {"NetworkPolicy"}, so that rules written for
#                                  NetworkPolicies never misread a ClusterNetworkPolicy.
#   violation  (set)               strings, or objects with a "msg" string.
package strictgate.hygiene

default_operations := {"CREATE", "UPDATE"}

default_kinds := {"NetworkPolicy"}

# NetworkPolicy inputs carry no "kind" (they predate ClusterNetworkPolicy).
input_kind := object.get(input, "kind", "NetworkPolicy")

findings contains f if {
	some name, v
	data.strictgate.rules[name].violation[v]
	input.request.operation in operations(name)
	input_kind in kinds(name)
	f := {"id": rule_id(name), "action": rule_action(name), "msg": message(v)}
}

rule_id(name) := id if {
	id := data.strictgate.rules[name].id
	is_string(id)
} else := name

kinds(name) := ks if {
	ks := data.strictgate.rules[name].kinds
	is_set(ks)
} else := ks if {
	ks := {k | some k in data.strictgate.rules[name].kinds}
	is_array(data.strictgate.rules[name].kinds)
} else := default_kinds

rule_action(name) := a if {
	a := data.strictgate.rules[name].action
	a in {"deny", "warn", "dryrun"}
} else := "deny"

operations(name) := ops if {
	ops := data.strictgate.rules[name].operations
	is_set(ops)
} else := ops if {
	ops := {o | some o in data.strictgate.rules[name].operations}
	is_array(data.strictgate.rules[name].operations)
} else := default_operations

message(v) := v if is_string(v)

message(v) := v.msg if {
	is_object(v)
	is_string(v.msg)
}

message(v) := sprintf("%v", [v]) if {
	not is_string(v)
	not is_string(object.get(v, "msg", null))
}
