package webhookprobe

import (
	"encoding/json"
	"testing"
)

// Request builders: AdmissionReviews shaped exactly as kube-apiserver sends them, as
// generic JSON so that tests can break them in any way.

type obj = map[string]any

var (
	podKind = obj{"group": "", "version": "v1", "kind": "Pod"}
	podRes  = obj{"group": "", "version": "v1", "resource": "pods"}
	nsKind  = obj{"group": "", "version": "v1", "kind": "Namespace"}
	nsRes   = obj{"group": "", "version": "v1", "resource": "namespaces"}
	npKind  = obj{"group": "networking.k8s.io", "version": "v1", "kind": "NetworkPolicy"}
	npRes   = obj{"group": "networking.k8s.io", "version": "v1", "resource": "networkpolicies"}

	normalUser = obj{"username": "alice", "groups": []any{"system:authenticated"}}
	masterUser = obj{"username": "root", "groups": []any{"system:masters", "system:authenticated"}}
)

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// reviewJSON wraps request into an AdmissionReview of apiVersion.
func reviewJSON(t *testing.T, apiVersion string, request obj) []byte {
	t.Helper()
	return mustJSON(t, obj{"apiVersion": apiVersion, "kind": "AdmissionReview", "request": request})
}

func pod(name string, spec obj) obj {
	if spec == nil {
		spec = obj{}
	}
	if _, ok := spec["containers"]; !ok {
		spec["containers"] = []any{obj{"name": "c", "image": "registry.example/app:1"}}
	}
	// metadata.namespace stays empty: on CREATE the API server may send it only in
	// the request.
	return obj{"apiVersion": "v1", "kind": "Pod", "metadata": obj{"name": name}, "spec": spec}
}

func podRequest(uid, ns, op string, object obj) obj {
	r := obj{
		"uid": uid, "kind": podKind, "resource": podRes, "requestKind": podKind, "requestResource": podRes,
		"namespace": ns, "operation": op, "userInfo": normalUser, "dryRun": false,
	}
	if object != nil {
		r["object"] = object
		if m, ok := object["metadata"].(obj); ok {
			r["name"] = m["name"]
		}
	}
	if op == "UPDATE" {
		r["oldObject"] = object
	}
	return r
}

func namespaceObj(name string, labels obj) obj {
	return obj{"apiVersion": "v1", "kind": "Namespace", "metadata": obj{"name": name, "labels": labels}}
}

func namespaceUpdate(uid, name string, oldLabels, newLabels obj, user obj) obj {
	return obj{
		"uid": uid, "kind": nsKind, "resource": nsRes, "name": name, "operation": "UPDATE",
		"userInfo": user, "object": namespaceObj(name, newLabels), "oldObject": namespaceObj(name, oldLabels),
	}
}

func networkPolicy(ns, name string, spec obj) obj {
	return obj{
		"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
		"metadata": obj{"name": name, "namespace": ns}, "spec": spec,
	}
}

func npRequest(uid, ns, op string, object obj, user obj, dryRun bool) obj {
	r := obj{
		"uid": uid, "kind": npKind, "resource": npRes, "namespace": ns, "operation": op,
		"userInfo": user, "dryRun": dryRun,
	}
	m := object["metadata"].(obj)
	r["name"] = m["name"]
	switch op {
	case "CREATE":
		r["object"] = object
	case "UPDATE":
		r["object"], r["oldObject"] = object, object
	case "DELETE":
		r["oldObject"] = object
	}
	return r
}

// compliantPolicy passes every deny rule: a selected ingress peer, explicit types.
func compliantPolicy(ns, name string) obj {
	return networkPolicy(ns, name, obj{
		"podSelector": obj{"matchLabels": obj{"app": "web"}},
		"policyTypes": []any{"Ingress"},
		"ingress": []any{obj{
			"from":  []any{obj{"podSelector": obj{"matchLabels": obj{"app": "client"}}}},
			"ports": []any{obj{"protocol": "TCP", "port": 8080}},
		}},
	})
}

// anyCIDRPolicy allows ingress from 0.0.0.0/0 without except: SG002 denies it.
func anyCIDRPolicy(ns, name string) obj {
	return networkPolicy(ns, name, obj{
		"podSelector": obj{},
		"policyTypes": []any{"Ingress"},
		"ingress":     []any{obj{"from": []any{obj{"ipBlock": obj{"cidr": "0.0.0.0/0"}}}}},
	})
}
