package verdict

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestLoopback: a pod's traffic to its own address is allowed even under deny-all in
// both directions (it never leaves the pod's network namespace; the upstream netpol
// truth tables expect it allowed), while the same port from elsewhere stays denied.
func TestLoopback(t *testing.T) {
	dir := t.TempDir()
	manifest := `apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x}
spec: {containers: [{name: c, image: i}]}
status: {podIPs: [{ip: 10.0.0.1}, {ip: "fd00::1"}], podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x}
spec: {containers: [{name: c, image: i}]}
status: {podIP: 10.0.0.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: x}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
`
	path := filepath.Join(dir, "m.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Load([]string{path}, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := NewEvaluator(m, "go", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		flow   Flow
		want   string
		reason string
	}{
		{Flow{Src: "x/a", Dst: "x/a", Port: 80}, "allow", ReasonLoopback},
		{Flow{Src: "10.0.0.1", Dst: "x/a", Port: 80}, "allow", ReasonLoopback},
		{Flow{Src: "fd00::1", Dst: "fd00::1", Port: 80}, "allow", ReasonLoopback},
		{Flow{Src: "x/b", Dst: "x/a", Port: 80}, "deny", ""},
		{Flow{Src: "x/a", Dst: "x/b", Port: 80}, "deny", ""},
	} {
		res, err := ev.Evaluate(context.Background(), tc.flow)
		if err != nil {
			t.Fatalf("%+v: %v", tc.flow, err)
		}
		if res.Verdict != tc.want || res.Reason != tc.reason {
			t.Errorf("%s → %s: verdict %q reason %q, want %q %q", tc.flow.Src, tc.flow.Dst, res.Verdict, res.Reason, tc.want, tc.reason)
		}
	}
}
