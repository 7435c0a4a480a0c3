package strictgate.hygiene_test

import data.strictgate.hygiene

open_ingress := {"request": {"operation": "CREATE", "namespace": "app", "name": "p"}, "policy": {"spec": {"ingress": [{}]}}}

test_findings_carry_id_action_and_message if {
	some f in hygiene.findings with input as open_ingress
	f.id == "SG001-open-rule"
	f.action == "deny"
	startswith(f.msg, "SG001-open-rule: spec.ingress[0]")
}

test_delete_skips_create_update_rules if {
	del := object.union(open_ingress, {"request": {"operation": "DELETE"}})
	count(hygiene.findings) == 0 with input as del
}

test_rule_defaults_for_custom_packages if {
	f := hygiene.findings with input as open_ingress
		with data.strictgate.rules as {"custom": {"violation": {"plain string"}}}
	f == {{"id": "custom", "action": "deny", "msg": "plain string"}}
}

test_object_violations_and_array_operations if {
	rules := {"c": {"id": "C1", "action": "warn", "operations": ["DELETE"], "violation": {{"msg": "m"}}}}
	f := hygiene.findings with input as object.union(open_ingress, {"request": {"operation": "DELETE"}})
		with data.strictgate.rules as rules
	f == {{"id": "C1", "action": "warn", "msg": "m"}}
}

test_unknown_action_falls_back_to_deny if {
	rules := {"c": {"action": "block", "violation": {{"no": "msg"}}}}
	f := hygiene.findings with input as open_ingress with data.strictgate.rules as rules
	f == {{"id": "c", "action": "deny", "msg": "{\"no\": \"msg\"}"}}
}

test_compliant_policy_has_no_findings if {
	compliant := {
		"request": {"operation": "CREATE", "namespace": "app", "name": "p"},
		"policy": {"spec": {
			"podSelector": {"matchLabels": {"app": "web"}},
			"policyTypes": ["Ingress"],
			"ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "lb"}}}], "ports": [{"port": 8080, "protocol": "TCP"}]}],
		}},
	}
	count(hygiene.findings) == 0 with input as compliant
}
