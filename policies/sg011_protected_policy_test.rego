package strictgate.rules.sg011_test

import data.strictgate.rules.sg011

sa := "system:serviceaccount:strictgate:strictgate-webhook"

review(op, name, user) := {
	"request": {"operation": op, "namespace": "app", "name": name, "userInfo": {"username": user}},
	"policy": {"metadata": {"name": name, "namespace": "app"}},
	"config": {"privilegedUsers": [sa], "protectedPolicies": ["strictgate-default-deny", "strictgate-allow-dns"]},
}

test_user_delete_denied if {
	v := sg011.violation with input as review("DELETE", "strictgate-default-deny", "alice")
	count(v) == 1
	some msg in v
	contains(msg, "DELETE of NetworkPolicy app/strictgate-default-deny by \"alice\"")
}

test_user_update_of_dns_policy_denied if {
	count(sg011.violation) == 1 with input as review("UPDATE", "strictgate-allow-dns", "alice")
}

test_service_account_allowed if {
	count(sg011.violation) == 0 with input as review("DELETE", "strictgate-default-deny", sa)
	count(sg011.violation) == 0 with input as review("UPDATE", "strictgate-default-deny", sa)
}

test_other_policies_not_protected if {
	count(sg011.violation) == 0 with input as review("DELETE", "my-policy", "alice")
}

test_terminating_namespace_allowed if {
	count(sg011.violation) == 0 with input as object.union(
		review("DELETE", "strictgate-default-deny", "system:serviceaccount:kube-system:namespace-controller"),
		{"cluster": {"namespace": {"name": "app", "terminating": true}}},
	)
}

test_defaults_without_config if {
	count(sg011.violation) == 1 with input as {"request": {"operation": "DELETE", "namespace": "app", "name": "strictgate-default-deny", "userInfo": {"username": sa}}}
}

test_missing_user_info_denied if {
	count(sg011.violation) == 1 with input as {"request": {"operation": "UPDATE", "name": "strictgate-allow-dns"}}
}
