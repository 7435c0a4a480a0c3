# The engine's tests mock data.strictgate.rules so that they hold whatever rules a
# user adds or replaces.
package strictgate.hygiene_test

import data.strictgate.hygiene

create := {"request": {"operation": "CREATE", "namespace": "app", "name": "p"}, "policy": {"spec": {"ingress": [{}]}}}

delete := object.union(create, {"request": {"operation": "DELETE"}})

rules := {
	"a": {"id": "A1-rule", "action": "warn", "violation": {"A1-rule: fix it"}},
	"b": {"violation": {{"msg": "object message"}}},
	"c": {"id": "C1", "action": "dryrun", "operations": ["DELETE"], "violation": {"on delete"}},
	"d": {"id": "D1", "action": "block", "operations": {"CREATE", "DELETE"}, "violation": {{"no": "msg"}}},
	"quiet": {"id": "Q1", "violation": set()},
}

test_findings_carry_id_action_and_message if {
	f := hygiene.findings with input as create with data.strictgate.rules as rules
	f == {
		{"id": "A1-rule", "action": "warn", "msg": "A1-rule: fix it"},
		{"id": "b", "action": "deny", "msg": "object message"},
		{"id": "D1", "action": "deny", "msg": "{\"no\": \"msg\"}"},
	}
}

test_delete_only_runs_rules_that_ask_for_it if {
	f := hygiene.findings with input as delete with data.strictgate.rules as rules
	{x.id | some x in f} == {"C1", "D1"}
}

test_no_rules_no_findings if {
	count(hygiene.findings) == 0 with input as create with data.strictgate.rules as {}
}

kind_rules := {
	"np": {"id": "NP1", "violation": {"np"}},
	"cnp": {"id": "CNP1", "kinds": {"ClusterNetworkPolicy"}, "violation": {"cnp"}},
	"both": {"id": "BOTH1", "kinds": ["NetworkPolicy", "ClusterNetworkPolicy"], "violation": {"both"}},
}

test_rules_judge_network_policies_by_default if {
	f := hygiene.findings with input as create with data.strictgate.rules as kind_rules
	{x.id | some x in f} == {"NP1", "BOTH1"}
}

test_cluster_network_policy_reaches_only_rules_that_ask_for_it if {
	f := hygiene.findings with input as object.union(create, {"kind": "ClusterNetworkPolicy"}) with data.strictgate.rules as kind_rules
	{x.id | some x in f} == {"CNP1", "BOTH1"}
}
