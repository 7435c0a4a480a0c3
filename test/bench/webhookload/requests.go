package webhookload

import (
	"encoding/json"
	"fmt"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// compliantPolicy is a typical application policy: web accepts 8080 from app1 and the
// ingress controller namespace, and talks to app2 on a named port. It passes every
// built-in rule.
const compliantPolicy = `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy",
"metadata":{"name":"web","namespace":"NS","labels":{"app":"web"},"annotations":{"owner":"team-shop"}},
"spec":{"podSelector":{"matchLabels":{"app":"web"}},"policyTypes":["Ingress","Egress"],
"ingress":[{"from":[{"podSelector":{"matchLabels":{"app":"app1"}}},
  {"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"ingress"}},"podSelector":{"matchLabels":{"app":"nginx"}}}],
  "ports":[{"protocol":"TCP","port":8080}]}],
"egress":[{"to":[{"podSelector":{"matchLabels":{"app":"app2"}}}],"ports":[{"protocol":"TCP","port":"http"}]},
  {"to":[{"ipBlock":{"cidr":"10.20.0.0/16","except":["10.20.1.0/24"]}}],"ports":[{"protocol":"TCP","port":443}]}]}}`

// openPolicy admits everything to every pod: several built-in rules refuse it.
const openPolicy = `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"open","namespace":"NS"},
"spec":{"podSelector":{},"policyTypes":["Ingress"],"ingress":[{}]}}`

var networkPolicyKind = metav1.GroupVersionKind{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicy"}

// NetworkPolicyRequest is a CREATE of the compliant policy (or, with open, of the
// refused one) in namespace ns.
func NetworkPolicyRequest(ns string, open bool) admission.Request {
	obj, name := compliantPolicy, "web"
	if open {
		obj, name = openPolicy, "open"
	}
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       types.UID("load-" + ns + "-" + name),
		Kind:      networkPolicyKind,
		Resource:  metav1.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"},
		Namespace: ns, Name: name,
		Operation: admissionv1.Create,
		UserInfo:  authenticationv1.UserInfo{Username: "alice", Groups: []string{"system:authenticated"}},
		Object:    runtime.RawExtension{Raw: []byte(strings.ReplaceAll(obj, `"NS"`, fmt.Sprintf("%q", ns)))},
	}}
}

// PodRequest is a CREATE of an ordinary two-container pod in namespace ns.
func PodRequest(ns string) (admission.Request, error) {
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
	sidecar.Name, sidecar.Ports = "sidecar", nil
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "web-", Labels: map[string]string{"app": "web", "pod-template-hash": "5d8f9c"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{c, sidecar}},
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		return admission.Request{}, err
	}
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       types.UID("load-pod-" + ns),
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: ns, Operation: admissionv1.Create,
		UserInfo: authenticationv1.UserInfo{Username: "system:serviceaccount:kube-system:replicaset-controller"},
		Object:   runtime.RawExtension{Raw: raw},
	}}, nil
}

// ReviewBody is the AdmissionReview the API server would POST for r.
func ReviewBody(r admission.Request) ([]byte, error) {
	req := r.AdmissionRequest
	return json.Marshal(&admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  &req,
	})
}
