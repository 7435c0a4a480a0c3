package strictgate.rules.owner_label_test

import data.strictgate.rules.owner_label

test_missing_owner_warns if {
	count(owner_label.violation) == 1 with input as {"request": {"namespace": "shop", "name": "web"}, "policy": {"metadata": {}}}
}

test_owner_present_passes if {
	count(owner_label.violation) == 0 with input as {"policy": {"metadata": {"labels": {"owner": "shop"}}}}
}
