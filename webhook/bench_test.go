package webhook

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/strictgate/strictgate/internal/contract"
)

// benchPod is a realistic pod as the API server sends it at CREATE: labels, two
// containers with ports, env, resources, probes.
func benchPod() *corev1.Pod {
	c := corev1.Container{
		Name: "app", Image: "registry.example/app:1.2.3",
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
		Env:   []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "B", Value: "2"}},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
		},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready"}}},
	}
	sidecar := c
	sidecar.Name = "sidecar"
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "app-", Labels: map[string]string{"app": "web", "tier": "frontend", "pod-template-hash": "abc123"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{c, sidecar}, ServiceAccountName: "web"},
	}
}

// BenchmarkPodMutation measures one pod CREATE admission: the handler alone, and the
// whole HTTP exchange (AdmissionReview decode, handler, response encode) as the API
// server drives it.
func BenchmarkPodMutation(b *testing.B) {
	m := testMutator()
	raw := podJSON(b, benchPod())
	req := podRequest("team-a", admissionv1.Create, raw)
	body := review(b, req.AdmissionRequest)

	b.Run("handler", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if resp := m.Handle(context.Background(), req); len(resp.Patches) != 1 {
				b.Fatal("no patch")
			}
		}
	})
	b.Run("handler-already-gated", func(b *testing.B) {
		gated := benchPod()
		gated.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: contract.ConditionType}}
		r := podRequest("team-a", admissionv1.Create, podJSON(b, gated))
		b.ReportAllocs()
		for b.Loop() {
			if resp := m.Handle(context.Background(), r); len(resp.Patches) != 0 {
				b.Fatal("patched a gated pod")
			}
		}
	})
	b.Run("http", func(b *testing.B) {
		h := Instrumented(PathMutatePod, m)
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			r := httptest.NewRequest(http.MethodPost, PathMutatePod, bytes.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				b.Fatal(w.Code)
			}
		}
	})
}

// BenchmarkNamespaceValidation measures the opt-out label check on a namespace UPDATE.
func BenchmarkNamespaceValidation(b *testing.B) {
	v := &NamespaceValidator{Groups: []string{DefaultOptOutGroup}}
	req := nsRequest(admissionv1.Update, []string{"devs"}, map[string]string{"team": "a"}, map[string]string{"team": "a", "strictgate.dev/enforce": "disabled"})
	b.ReportAllocs()
	for b.Loop() {
		if resp := v.Handle(context.Background(), req); resp.Allowed {
			b.Fatal("allowed")
		}
	}
}
