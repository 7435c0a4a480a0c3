package webhook

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/strictgate/strictgate/internal/contract"
)

// cnpCase is one ClusterNetworkPolicy spec with the verdict strictgate must give it.
// The same table runs against the handler directly and through a real API server
// with the experimental-channel CRD (clusternetworkpolicy_apiserver_test.go), so the
// handler is neither stricter nor more lenient than the CRD's schema on what it lets
// through, and refuses the fields strictgate does not implement.
type cnpCase struct {
	name string
	spec string
	// want is "" for admitted, else substrings of the refusal (the handler's words;
	// the API server's own schema errors are checked only for being a refusal).
	want []string
	// schema: the CRD's schema refuses it before any webhook is called.
	schema bool
}

const cnpSubject = `"subject":{"namespaces":{"matchLabels":{"team":"a"}}}`

func cnpCases() []cnpCase {
	return []cnpCase{
		{name: "admin accept from namespaces", spec: `{"tier":"Admin","priority":10,` + cnpSubject + `,"ingress":[{"name":"mon","action":"Accept","from":[{"namespaces":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]}]}`},
		{name: "admin deny to metadata IP", spec: `{"tier":"Admin","priority":0,"subject":{"namespaces":{}},"egress":[{"action":"Deny","to":[{"networks":["169.254.169.254/32"]}]}]}`},
		{name: "baseline deny all", spec: `{"tier":"Baseline","priority":1000,"subject":{"pods":{"namespaceSelector":{},"podSelector":{}}},"ingress":[{"action":"Deny","from":[{"namespaces":{}}]}],"egress":[{"action":"Deny","to":[{"networks":["0.0.0.0/0","::/0"]}]}]}`},
		{name: "pass with ports", spec: `{"tier":"Admin","priority":5,` + cnpSubject + `,"egress":[{"action":"Pass","to":[{"pods":{"namespaceSelector":{},"podSelector":{"matchLabels":{"app":"db"}}}}],"protocols":[{"tcp":{"destinationPort":{"number":5432}}},{"udp":{"destinationPort":{"range":{"start":1000,"end":2000}}}},{"sctp":{"destinationPort":{"number":9}}}]}]}`},
		{name: "nodes peer", spec: `{"tier":"Admin","priority":3,` + cnpSubject + `,"egress":[{"action":"Accept","to":[{"nodes":{"matchLabels":{"role":"infra"}}}]}]}`},
		{name: "destination named port", spec: `{"tier":"Admin","priority":4,` + cnpSubject + `,"egress":[{"action":"Accept","to":[{"namespaces":{}}],"protocols":[{"destinationNamedPort":"http"}]}]}`},
		{
			name: "egress domainNames unsupported",
			spec: `{"tier":"Admin","priority":7,` + cnpSubject + `,"egress":[{"action":"Accept","to":[{"namespaces":{}}]},{"action":"Deny","to":[{"domainNames":["example.com"]}]}]}`,
			want: []string{`spec.egress[1].to[0].domainNames: Forbidden: not supported by strictgate`, "FQDN"},
		},
		{name: "bad tier", schema: true, spec: `{"tier":"Middle","priority":1,` + cnpSubject + `}`, want: []string{`spec.tier: Unsupported value: "Middle"`}},
		{name: "priority too high", schema: true, spec: `{"tier":"Admin","priority":1001,` + cnpSubject + `}`, want: []string{"spec.priority: Invalid value: 1001"}},
		{name: "no subject", schema: true, spec: `{"tier":"Admin","priority":1,"subject":{}}`, want: []string{"spec.subject: Required value"}},
		{name: "two subjects", schema: true, spec: `{"tier":"Admin","priority":1,"subject":{"namespaces":{},"pods":{"namespaceSelector":{},"podSelector":{}}}}`, want: []string{"spec.subject: Invalid value"}},
		{name: "bad action", schema: true, spec: `{"tier":"Admin","priority":1,` + cnpSubject + `,"ingress":[{"action":"Allow","from":[{"namespaces":{}}]}]}`, want: []string{`spec.ingress[0].action: Unsupported value: "Allow"`}},
		{name: "no peers", schema: true, spec: `{"tier":"Admin","priority":1,` + cnpSubject + `,"ingress":[{"action":"Deny","from":[]}]}`, want: []string{"spec.ingress[0].from: Required value"}},
		{name: "two peer kinds", schema: true, spec: `{"tier":"Admin","priority":1,` + cnpSubject + `,"egress":[{"action":"Deny","to":[{"namespaces":{},"networks":["10.0.0.0/8"]}]}]}`, want: []string{"spec.egress[0].to[0]: Invalid value"}},
		{name: "host bits in CIDR", schema: true, spec: `{"tier":"Admin","priority":1,` + cnpSubject + `,"egress":[{"action":"Deny","to":[{"networks":["10.0.0.1/8"]}]}]}`, want: []string{`spec.egress[0].to[0].networks[0]: Invalid value: "10.0.0.1/8"`, "10.0.0.0/8"}},
		{name: "not a CIDR", schema: true, spec: `{"tier":"Admin","priority":1,` + cnpSubject + `,"egress":[{"action":"Deny","to":[{"networks":["10.0.0.300/33"]}]}]}`, want: []string{"networks[0]: Invalid value"}},
		{name: "port too high", schema: true, spec: `{"tier":"Admin","priority":1,` + cnpSubject + `,"ingress":[{"action":"Deny","from":[{"namespaces":{}}],"protocols":[{"tcp":{"destinationPort":{"number":70000}}}]}]}`, want: []string{"spec.ingress[0].protocols[0].tcp.destinationPort.number: Invalid value: 70000"}},
		{name: "inverted range", schema: true, spec: `{"tier":"Admin","priority":1,` + cnpSubject + `,"ingress":[{"action":"Deny","from":[{"namespaces":{}}],"protocols":[{"udp":{"destinationPort":{"range":{"start":9,"end":3}}}}]}]}`, want: []string{"Start port must be less than End port"}},
		{name: "two protocols in one entry", schema: true, spec: `{"tier":"Admin","priority":1,` + cnpSubject + `,"ingress":[{"action":"Deny","from":[{"namespaces":{}}],"protocols":[{"tcp":{"destinationPort":{"number":1}},"udp":{"destinationPort":{"number":1}}}]}]}`, want: []string{"spec.ingress[0].protocols[0]: Invalid value"}},
		{name: "named port to networks", schema: true, spec: `{"tier":"Admin","priority":1,` + cnpSubject + `,"egress":[{"action":"Deny","to":[{"networks":["10.0.0.0/8"]}],"protocols":[{"destinationNamedPort":"http"}]}]}`, want: []string{"spec.egress[0].protocols[0].destinationNamedPort", "no namedPorts for networks"}},
		{name: "bad selector", schema: false, spec: `{"tier":"Admin","priority":1,"subject":{"namespaces":{"matchLabels":{"a b":"c"}}}}`, want: []string{"spec.subject.namespaces.matchLabels: Invalid value"}},
	}
}

func cnpObject(version, name, spec string) []byte {
	return []byte(`{"apiVersion":"policy.networking.k8s.io/` + version + `","kind":"ClusterNetworkPolicy","metadata":{"name":"` + name + `"},"spec":` + spec + `}`)
}

func cnpRequest(version string, op admissionv1.Operation, raw []byte) admission.Request {
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       "u1",
		Kind:      metav1.GroupVersionKind{Group: CNPGroup, Version: version, Kind: "ClusterNetworkPolicy"},
		Resource:  metav1.GroupVersionResource{Group: CNPGroup, Version: version, Resource: "clusternetworkpolicies"},
		Operation: op,
		Object:    runtime.RawExtension{Raw: raw},
	}}
}

func TestClusterNetworkPolicyValidator(t *testing.T) {
	for _, tc := range cnpCases() {
		for _, version := range []string{"v1beta1", "v1alpha2"} {
			t.Run(tc.name+"/"+version, func(t *testing.T) {
				if !json.Valid([]byte(tc.spec)) {
					t.Fatalf("test spec is not JSON: %s", tc.spec)
				}
				resp := (&ClusterNetworkPolicyValidator{}).Handle(context.Background(), cnpRequest(version, admissionv1.Create, cnpObject(version, "p", tc.spec)))
				checkCNPVerdict(t, resp, tc.want)
			})
		}
	}
}

func checkCNPVerdict(t *testing.T, resp admission.Response, want []string) {
	t.Helper()
	msg := ""
	if resp.Result != nil {
		msg = resp.Result.Message
	}
	if len(want) == 0 {
		if !resp.Allowed {
			t.Fatalf("refused: %s", msg)
		}
		return
	}
	if resp.Allowed {
		t.Fatalf("admitted, want refusal containing %q", want)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("refusal %q does not contain %q", msg, w)
		}
	}
}

func TestClusterNetworkPolicyValidatorBadRequests(t *testing.T) {
	good := cnpObject("v1beta1", "p", `{"tier":"Admin","priority":1,`+cnpSubject+`}`)
	cases := []struct {
		name    string
		req     func() admission.Request
		allowed bool
		code    int32
		want    string
	}{
		{name: "no uid", req: func() admission.Request { r := cnpRequest("v1beta1", admissionv1.Create, good); r.UID = ""; return r }, code: 400, want: "no uid"},
		{name: "wrong kind", req: func() admission.Request {
			r := cnpRequest("v1beta1", admissionv1.Create, good)
			r.Kind = metav1.GroupVersionKind{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicy"}
			return r
		}, code: 400, want: "must send only policy.networking.k8s.io ClusterNetworkPolicies"},
		{name: "unknown version", req: func() admission.Request {
			r := cnpRequest("v1beta1", admissionv1.Create, good)
			r.Kind.Version = "v1"
			return r
		}, code: 400, want: "v1beta1, v1alpha2"},
		{name: "status subresource", req: func() admission.Request {
			r := cnpRequest("v1beta1", admissionv1.Update, good)
			r.SubResource = "status"
			return r
		}, code: 400, want: `subresource "status"`},
		{name: "no object", req: func() admission.Request { return cnpRequest("v1beta1", admissionv1.Create, nil) }, code: 403, want: "carries no object"},
		{name: "not JSON", req: func() admission.Request { return cnpRequest("v1beta1", admissionv1.Create, []byte("{")) }, code: 403, want: "not a ClusterNetworkPolicy"},
		{name: "unknown field", req: func() admission.Request {
			return cnpRequest("v1beta1", admissionv1.Create, cnpObject("v1beta1", "p", `{"tier":"Admin","priority":1,`+cnpSubject+`,"egress":[{"action":"Deny","to":[{"services":["x"]}]}]}`))
		}, code: 403, want: `unknown field "spec.egress[0].to[0].services": strictgate does not implement this field`},
		{name: "version mismatch", req: func() admission.Request {
			return cnpRequest("v1alpha2", admissionv1.Create, good)
		}, code: 403, want: "does not match the request's version"},
		{name: "delete not judged", req: func() admission.Request { return cnpRequest("v1beta1", admissionv1.Delete, nil) }, allowed: true},
		{name: "update while deleting", req: func() admission.Request {
			return cnpRequest("v1beta1", admissionv1.Update, []byte(`{"apiVersion":"policy.networking.k8s.io/v1beta1","kind":"ClusterNetworkPolicy","metadata":{"name":"p","deletionTimestamp":"2026-01-01T00:00:00Z"},"spec":{"tier":"Bad"}}`))
		}, allowed: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := (&ClusterNetworkPolicyValidator{}).Handle(context.Background(), tc.req())
			if resp.Allowed != tc.allowed {
				t.Fatalf("allowed=%v, want %v (%+v)", resp.Allowed, tc.allowed, resp.Result)
			}
			if tc.allowed {
				return
			}
			if resp.Result.Code != tc.code || !strings.Contains(resp.Result.Message, tc.want) {
				t.Fatalf("code %d message %q, want %d containing %q", resp.Result.Code, resp.Result.Message, tc.code, tc.want)
			}
		})
	}
}

func TestClusterNetworkPolicyGuardsGenerated(t *testing.T) {
	const self = "system:serviceaccount:strictgate:strictgate-webhook"
	v := NewClusterNetworkPolicyValidator(nil, nil, self)
	gen := cnpObject("v1beta1", contract.DefaultDenyPolicy, `{"tier":"Baseline","priority":1000,"subject":{"namespaces":{}}}`)
	for _, tc := range []struct {
		name    string
		op      admissionv1.Operation
		user    string
		object  string
		raw     []byte
		allowed bool
	}{
		{"create by a user", admissionv1.Create, "alice", contract.DefaultDenyPolicy, gen, false},
		{"update by a user", admissionv1.Update, "alice", contract.DefaultDenyPolicy, gen, false},
		{"delete by a user", admissionv1.Delete, "alice", contract.DefaultDenyPolicy, nil, false},
		{"delete by strictgate", admissionv1.Delete, self, contract.DefaultDenyPolicy, nil, true},
		{"update by strictgate", admissionv1.Update, self, contract.DefaultDenyPolicy, gen, true},
		{"finalizer removal after delete", admissionv1.Update, "alice", contract.DefaultDenyPolicy,
			[]byte(`{"apiVersion":"policy.networking.k8s.io/v1beta1","kind":"ClusterNetworkPolicy","metadata":{"name":"strictgate-default-deny","deletionTimestamp":"2026-01-01T00:00:00Z"},"spec":{}}`), true},
		{"another name", admissionv1.Delete, "alice", "platform", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := cnpRequest("v1beta1", tc.op, tc.raw)
			req.Name, req.UserInfo.Username = tc.object, tc.user
			resp := v.Handle(context.Background(), req)
			if resp.Allowed != tc.allowed {
				t.Fatalf("allowed=%v, want %v: %+v", resp.Allowed, tc.allowed, resp.Result)
			}
			if !tc.allowed && !strings.Contains(resp.Result.Message, "only strictgate's controller ("+self+") may "+strings.ToLower(string(tc.op))) {
				t.Fatalf("message %q does not say who may change it", resp.Result.Message)
			}
		})
	}
}
