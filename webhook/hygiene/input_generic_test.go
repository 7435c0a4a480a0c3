package hygiene

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestPolicyTermMatchesGenericConversion: the hand-built input.object (policyTerm, fast
// and allocation-light) must say exactly what OPA's generic conversion of the object's
// JSON says, for a policy with every spec field set. The policy is filled by reflection,
// so a field a future k8s.io/api adds to NetworkPolicySpec is set here too and fails
// this test until policyTerm renders it: no new field can silently be invisible to the
// rules. metadata is the documented subset (policies/README.md).
func TestPolicyTermMatchesGenericConversion(t *testing.T) {
	p := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{
		Name: "web", Namespace: "team-a", UID: types.UID("0b7c"),
		Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"note": "n"},
		// Outside the subset: the generic side drops them as the builder does.
		ResourceVersion: "7", Generation: 3, Finalizers: []string{"f"},
	}}
	fill(t, reflect.ValueOf(&p.Spec).Elem(), "spec")

	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	meta := doc["metadata"].(map[string]any)
	subset := map[string]any{}
	for _, k := range []string{"name", "namespace", "uid", "labels", "annotations"} {
		if v, ok := meta[k]; ok {
			subset[k] = v
		}
	}
	generic, err := ast.InterfaceToValue(map[string]any{"metadata": subset, "spec": doc["spec"]})
	if err != nil {
		t.Fatal(err)
	}
	if ours := policyTerm(p).Value; ours.Compare(generic) != 0 {
		t.Fatalf("policyTerm differs from the generic conversion of the same object:\n ours:    %v\n generic: %v", ours, generic)
	}
}

// TestPolicyTermDefaultsProtocol: the one intended difference from the generic
// conversion. A port without protocol means TCP (the API server defaults it; the rules
// may rely on the field being there).
func TestPolicyTermDefaultsProtocol(t *testing.T) {
	port := intstr.FromInt32(80)
	p := &networkingv1.NetworkPolicy{Spec: networkingv1.NetworkPolicySpec{
		Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &port}}}},
	}}
	want := ast.MustParseTerm(`{"metadata": {"name": "", "namespace": ""}, "spec": {"podSelector": {}, "ingress": [{"ports": [{"protocol": "TCP", "port": 80}]}]}}`)
	if got := policyTerm(p); !got.Equal(want) {
		t.Fatalf("policyTerm = %v, want %v", got, want)
	}
}

// fill sets every field reachable from v to a non-zero value: one element per slice,
// one entry per map, pointers allocated. Values are distinct per path so that a field
// rendered under the wrong key cannot compare equal by accident.
func fill(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	switch v.Interface().(type) {
	case intstr.IntOrString:
		// Its Type tag must agree with the value; both forms are exercised by the
		// ports of the ingress and egress rules (fill reaches them in turn).
		if len(path)%2 == 0 {
			v.Set(reflect.ValueOf(intstr.FromString("http")))
		} else {
			v.Set(reflect.ValueOf(intstr.FromInt32(8080)))
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if f := v.Type().Field(i); f.IsExported() {
				fill(t, v.Field(i), path+"."+f.Name)
			}
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, v.Elem(), path)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(t, v.Index(0), path+"[0]")
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			t.Fatalf("%s: map key %s: teach fill about it", path, v.Type().Key())
		}
		m := reflect.MakeMap(v.Type())
		val := reflect.New(v.Type().Elem()).Elem()
		fill(t, val, path+"[k]")
		m.SetMapIndex(reflect.ValueOf("k-"+fmt.Sprint(len(path))).Convert(v.Type().Key()), val)
		v.Set(m)
	case reflect.String:
		v.SetString(fmt.Sprintf("v%d", len(path)))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(1000 + len(path)))
	case reflect.Bool:
		v.SetBool(true)
	default:
		t.Fatalf("%s: kind %s: teach fill about it", path, v.Kind())
	}
}
