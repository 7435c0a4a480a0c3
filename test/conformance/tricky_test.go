package conformance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	yaml3 "go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/strictgate/strictgate/internal/testenv"
)

// baseCluster is shared by the hand-written cases. Namespace z has no object (it
// exists implicitly, labelled only kubernetes.io/metadata.name=z).
const baseCluster = `
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: x}}
---
apiVersion: v1
kind: Namespace
metadata: {name: y, labels: {team: y}}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec:
  containers:
  - name: c
    image: i
    ports:
    - {name: http, containerPort: 8080}
    - {name: dns, containerPort: 5353, protocol: UDP}
    - {name: sig, containerPort: 9000, protocol: SCTP}
status: {phase: Running, podIP: 10.0.0.1, podIPs: [{ip: 10.0.0.1}, {ip: "fd00::1"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: b}}
spec:
  containers:
  - {name: c, image: i, ports: [{name: http, containerPort: 80}]}
status: {phase: Running, podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: multi, namespace: x, labels: {app: m}}
spec:
  containers:
  - {name: c1, image: i, ports: [{name: http, containerPort: 8080}]}
  - {name: c2, image: i, ports: [{name: http, containerPort: 9090}, {name: http, containerPort: 7070, protocol: UDP}]}
status: {phase: Running, podIP: 10.0.0.10}
---
apiVersion: v1
kind: Service
metadata: {name: multi, namespace: x}
spec:
  clusterIP: 10.96.0.14
  selector: {app: m}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: x, labels: {app: c}}
spec: {containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.0.0.3}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: y, labels: {app: a}}
spec:
  containers:
  - {name: c, image: i, ports: [{name: http, containerPort: 8081}]}
status: {phase: Running, podIP: 10.0.1.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: y, labels: {app: b}}
spec: {containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.0.1.2}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: z, labels: {app: a}}
spec: {containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.0.2.1}
---
apiVersion: v1
kind: Pod
metadata: {name: v6, namespace: x, labels: {app: v6}}
spec:
  containers:
  - {name: c, image: i, ports: [{name: http, containerPort: 80}]}
status: {phase: Running, podIP: "fd00::6"}
---
apiVersion: v1
kind: Pod
metadata: {name: v6, namespace: y, labels: {app: v6}}
spec: {containers: [{name: c, image: i}]}
status: {phase: Running, podIPs: [{ip: "fd00::7"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: host, namespace: x, labels: {app: a}}
spec: {hostNetwork: true, containers: [{name: c, image: i, ports: [{name: http, containerPort: 8080}]}]}
status: {phase: Running, podIP: 192.168.7.1}
---
apiVersion: v1
kind: Pod
metadata: {name: done, namespace: y, labels: {app: a}}
spec: {containers: [{name: c, image: i}]}
status: {phase: Succeeded, podIP: 10.0.1.9}
---
apiVersion: v1
kind: Pod
metadata: {name: reuse, namespace: y, labels: {app: b}}
spec: {containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.0.1.9}
---
apiVersion: v1
kind: Pod
metadata: {name: pending, namespace: x, labels: {app: a}}
spec: {containers: [{name: c, image: i}]}
status: {phase: Pending}
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: x}
spec:
  clusterIP: 10.96.0.10
  selector: {app: b}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: named, namespace: x}
spec:
  clusterIP: 10.96.0.11
  selector: {app: a}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: two, namespace: y}
spec:
  clusterIP: 10.96.0.12
  selector: {}
  ports: [{port: 7000, targetPort: 7000, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: manual, namespace: y}
spec:
  clusterIP: 10.96.0.13
  ports: [{name: p, port: 443, targetPort: 8443}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: manual-1, namespace: y, labels: {kubernetes.io/service-name: manual}}
addressType: IPv4
endpoints: [{addresses: [10.0.1.2]}]
ports: [{name: p, port: 8443}]
`

// trickyFlow is a flow and the verdict the API reference gives for it.
type trickyFlow struct {
	src, dst string
	port     int
	proto    string
	want     string
}

func fl(src, dst string, port int, proto, want string) trickyFlow {
	return trickyFlow{src, dst, port, proto, want}
}

// parseYAML reads the multi-document YAML of a case into the model's cluster.
func parseYAML(t *testing.T, docs string) *Cluster {
	t.Helper()
	c := &Cluster{}
	for _, d := range strings.Split(docs, "\n---\n") {
		if strings.TrimSpace(d) == "" {
			continue
		}
		// YAML 1.2 like the CLI: `namespace: y` is the string "y".
		var raw any
		if err := yaml3.Unmarshal([]byte(d), &raw); err != nil {
			t.Fatalf("%v in\n%s", err, d)
		}
		js, err := json.Marshal(raw)
		if err != nil {
			t.Fatal(err)
		}
		var tm struct{ Kind string }
		if err := json.Unmarshal(js, &tm); err != nil {
			t.Fatalf("%v in\n%s", err, d)
		}
		var obj any
		switch tm.Kind {
		case "Namespace":
			o := &corev1.Namespace{}
			c.Namespaces, obj = append(c.Namespaces, o), o
		case "Pod":
			o := &corev1.Pod{}
			c.Pods, obj = append(c.Pods, o), o
		case "NetworkPolicy":
			o := &networkingv1.NetworkPolicy{}
			c.Policies, obj = append(c.Policies, o), o
		case "Service":
			o := &corev1.Service{}
			c.Services, obj = append(c.Services, o), o
		case "EndpointSlice":
			o := &discoveryv1.EndpointSlice{}
			c.EndpointSlices, obj = append(c.EndpointSlices, o), o
		default:
			t.Fatalf("kind %q", tm.Kind)
		}
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.DisallowUnknownFields()
		if err := dec.Decode(obj); err != nil {
			t.Fatalf("%v in\n%s", err, d)
		}
	}
	return c
}

func policy(ns, name, spec string) string {
	return fmt.Sprintf("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: %s, namespace: %s}\nspec:\n%s", name, ns, indent(spec))
}

func indent(s string) string {
	lines := strings.Split(strings.Trim(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n")
}

// trickyCases are derived from the NetworkPolicy API reference and the upstream e2e
// netpol intent; the expected verdicts were written by hand, not computed.
type trickyCase struct {
	name     string
	policies []string
	flows    []trickyFlow
}

var trickyCases = []trickyCase{
	{"no policy: everything allowed", nil, []trickyFlow{
		fl("x/b", "x/a", 1, "TCP", "allow"), fl("10.9.9.9", "y/a", 53, "UDP", "allow")}},
	{"empty ingress list isolates", []string{policy("x", "deny", "podSelector: {}\npolicyTypes: [Ingress]")}, []trickyFlow{
		fl("x/b", "x/a", 8080, "TCP", "deny"), fl("y/a", "x/b", 80, "TCP", "deny"),
		fl("x/a", "y/a", 8081, "TCP", "allow"), // egress not isolated, y not selected
		fl("x/a", "10.9.9.9", 80, "TCP", "allow")}},
	{"inferred types: only egress rules isolate both directions", []string{policy("x", "eg", `
podSelector: {matchLabels: {app: a}}
egress: [{to: [{podSelector: {}}]}]`)}, []trickyFlow{
		fl("x/b", "x/a", 8080, "TCP", "deny"), // ingress isolated (Ingress is always inferred), no ingress rules
		fl("x/a", "x/b", 80, "TCP", "allow"), fl("x/a", "y/a", 8081, "TCP", "deny"), fl("x/a", "10.0.1.1", 8081, "TCP", "deny")}},
	{"explicitly empty policyTypes is inferred like an omitted one", []string{policy("x", "eg", `
podSelector: {matchLabels: {app: a}}
policyTypes: []
egress: [{to: [{podSelector: {}}]}]`)}, []trickyFlow{
		fl("x/b", "x/a", 8080, "TCP", "deny"), fl("x/a", "x/b", 80, "TCP", "allow"), fl("x/a", "y/a", 8081, "TCP", "deny")}},
	{"explicit Egress only: ingress rules ignored", []string{policy("x", "eg", `
podSelector: {}
policyTypes: [Egress]
ingress: [{from: [{ipBlock: {cidr: 10.0.9.0/24}}]}]
egress: [{ports: [{port: 80}]}]`)}, []trickyFlow{
		fl("y/a", "x/a", 8080, "TCP", "allow"), fl("x/a", "y/a", 80, "TCP", "allow"), fl("x/a", "y/a", 80, "UDP", "deny")}},
	{"explicit Ingress only: egress rules ignored", []string{policy("x", "in", `
podSelector: {}
policyTypes: [Ingress]
ingress: [{}]
egress: []`)}, []trickyFlow{
		fl("x/a", "10.9.9.9", 1, "TCP", "allow"), fl("y/b", "x/b", 5, "UDP", "allow")}},
	{"empty rule admits all", []string{policy("x", "all", "podSelector: {}\ningress: [{}]\negress: [{}]")}, []trickyFlow{
		fl("10.9.9.9", "x/a", 1, "SCTP", "allow"), fl("x/a", "fd00::99", 1, "UDP", "allow"), fl("x/a", "y/a", 1, "ICMP", "allow")}},
	{"explicitly empty from/to lists admit all", []string{policy("x", "all", "podSelector: {}\ningress: [{from: [], ports: [{port: 80}]}]\negress: [{to: []}]")}, []trickyFlow{
		fl("10.9.9.9", "x/b", 80, "TCP", "allow"), fl("y/a", "x/b", 81, "TCP", "deny"), fl("x/b", "y/a", 9, "UDP", "allow")}},
	{"podSelector peer is the policy's namespace only", []string{policy("x", "p", "podSelector: {matchLabels: {app: a}}\ningress: [{from: [{podSelector: {}}]}]")}, []trickyFlow{
		fl("x/b", "x/a", 8080, "TCP", "allow"), fl("y/b", "x/a", 8080, "TCP", "deny"), fl("10.0.1.2", "x/a", 8080, "TCP", "deny"),
		fl("x/host", "x/a", 8080, "TCP", "deny"), // host-network pods are not pod peers
	}},
	{"namespaceSelector {} is every namespace, incl. implicit ones", []string{policy("x", "p", "podSelector: {matchLabels: {app: a}}\ningress: [{from: [{namespaceSelector: {}}]}]")}, []trickyFlow{
		fl("z/a", "x/a", 8080, "TCP", "allow"), fl("y/b", "x/a", 1, "UDP", "allow"), fl("10.0.9.9", "x/a", 8080, "TCP", "deny"),
		fl("192.168.7.1", "x/a", 8080, "TCP", "deny")}},
	{"pod+namespace selector in one peer is AND", []string{policy("x", "p", "podSelector: {}\ningress: [{from: [{namespaceSelector: {matchLabels: {team: y}}, podSelector: {matchLabels: {app: a}}}]}]")}, []trickyFlow{
		fl("y/a", "x/b", 80, "TCP", "allow"), fl("y/b", "x/b", 80, "TCP", "deny"), fl("x/a", "x/b", 80, "TCP", "deny"), fl("z/a", "x/b", 80, "TCP", "deny")}},
	{"pod and namespace selector in two peers is OR", []string{policy("x", "p", "podSelector: {}\ningress: [{from: [{namespaceSelector: {matchLabels: {team: y}}}, {podSelector: {matchLabels: {app: a}}}]}]")}, []trickyFlow{
		fl("y/a", "x/b", 80, "TCP", "allow"), fl("y/b", "x/b", 80, "TCP", "allow"), fl("x/a", "x/b", 80, "TCP", "allow"), fl("x/c", "x/b", 80, "TCP", "deny"), fl("z/a", "x/b", 80, "TCP", "deny")}},
	{"implicit namespace by metadata.name label", []string{policy("x", "p", "podSelector: {}\ningress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: z}}}]}]")}, []trickyFlow{
		fl("z/a", "x/b", 80, "TCP", "allow"), fl("y/a", "x/b", 80, "TCP", "deny")}},
	{"matchExpressions NotIn and DoesNotExist match a missing key", []string{policy("x", "p", `
podSelector: {}
ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: team, operator: NotIn, values: [x]}]}, podSelector: {matchExpressions: [{key: tier, operator: DoesNotExist}]}}]}]`)}, []trickyFlow{
		fl("z/a", "x/b", 80, "TCP", "allow"), fl("y/b", "x/b", 80, "TCP", "allow"), fl("x/a", "x/b", 80, "TCP", "deny")}},
	{"ipBlock matches pod IPs, except carves them out", []string{policy("x", "p", "podSelector: {}\ningress: [{from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.1.0/24, 10.0.0.3/32]}}]}]")}, []trickyFlow{
		fl("x/b", "x/a", 8080, "TCP", "allow"), fl("z/a", "x/a", 8080, "TCP", "allow"), fl("y/a", "x/a", 8080, "TCP", "deny"),
		fl("x/c", "x/a", 8080, "TCP", "deny"), fl("10.0.5.5", "x/a", 8080, "TCP", "allow"), fl("10.1.0.1", "x/a", 8080, "TCP", "deny"),
		fl("x/v6", "x/a", 8080, "TCP", "deny"), // v6 source never matches a v4 block
	}},
	{"ipBlock with host bits set means its network", []string{policy("x", "p", "podSelector: {}\ningress: [{from: [{ipBlock: {cidr: 10.0.1.5/24}}]}]")}, []trickyFlow{
		fl("y/a", "x/a", 8080, "TCP", "allow"), fl("x/b", "x/a", 8080, "TCP", "deny")}},
	{"IPv6 blocks", []string{policy("x", "p", "podSelector: {}\ningress: [{from: [{ipBlock: {cidr: '::/0', except: ['fd00::7/128']}}]}]")}, []trickyFlow{
		fl("fd00::99", "x/v6", 80, "TCP", "allow"), fl("y/v6", "x/v6", 80, "TCP", "deny"), fl("fd00::1", "x/v6", 80, "TCP", "allow"),
		fl("10.0.0.2", "x/a", 8080, "TCP", "deny"), // a v6 block says nothing about v4
	}},
	{"named port on ingress resolves per destination pod and protocol", []string{policy("x", "p", "podSelector: {}\ningress: [{ports: [{port: http}, {port: dns, protocol: UDP}, {port: sig, protocol: SCTP}]}]")}, []trickyFlow{
		fl("y/a", "x/a", 8080, "TCP", "allow"), fl("y/a", "x/a", 80, "TCP", "deny"), fl("y/a", "x/b", 80, "TCP", "allow"), fl("y/a", "x/b", 8080, "TCP", "deny"),
		fl("y/a", "x/a", 5353, "UDP", "allow"), fl("y/a", "x/a", 5353, "TCP", "deny"), fl("y/a", "x/a", 9000, "SCTP", "allow"),
		fl("y/a", "x/c", 80, "TCP", "deny"), // x/c has no ports at all
	}},
	{"named port with the wrong protocol resolves to nothing", []string{policy("x", "p", "podSelector: {}\ningress: [{ports: [{port: http, protocol: UDP}]}]")}, []trickyFlow{
		fl("y/a", "x/a", 8080, "UDP", "deny"), fl("y/a", "x/a", 8080, "TCP", "deny")}},
	{"named port on egress resolves per destination pod", []string{policy("x", "p", "podSelector: {matchLabels: {app: c}}\negress: [{to: [{namespaceSelector: {}}], ports: [{port: http}]}]")}, []trickyFlow{
		fl("x/c", "x/a", 8080, "TCP", "allow"), fl("x/c", "x/b", 80, "TCP", "allow"), fl("x/c", "y/a", 8081, "TCP", "allow"), fl("x/c", "y/a", 8080, "TCP", "deny"),
		fl("x/c", "10.0.1.1", 8081, "TCP", "allow"), fl("x/c", "10.9.9.9", 80, "TCP", "deny")}},
	{"named port on egress through an ipBlock that covers pods", []string{policy("x", "p", "podSelector: {matchLabels: {app: c}}\negress: [{to: [{ipBlock: {cidr: 10.0.0.0/8}}], ports: [{port: http}]}]")}, []trickyFlow{
		fl("x/c", "x/a", 8080, "TCP", "allow"), fl("x/c", "y/a", 8081, "TCP", "allow"), fl("x/c", "y/a", 80, "TCP", "deny"), fl("x/c", "10.9.9.9", 80, "TCP", "deny"), fl("x/c", "10.9.9.9", 8080, "TCP", "deny")}},
	{"a port name shared by two containers means either port", []string{
		policy("x", "in", "podSelector: {matchLabels: {app: m}}\ningress: [{ports: [{port: http}]}]"),
		policy("y", "out", "podSelector: {matchLabels: {app: a}}\npolicyTypes: [Egress]\negress: [{ports: [{port: http}]}]")}, []trickyFlow{
		fl("z/a", "x/multi", 8080, "TCP", "allow"), fl("z/a", "x/multi", 9090, "TCP", "allow"), fl("z/a", "x/multi", 7070, "TCP", "deny"), fl("z/a", "x/multi", 80, "TCP", "deny"),
		fl("y/a", "x/multi", 8080, "TCP", "allow"), fl("y/a", "x/multi", 9090, "TCP", "allow"), fl("y/a", "10.0.0.10", 7070, "TCP", "deny"),
		fl("z/a", "10.96.0.14", 80, "TCP", "allow"), // targetPort http is 8080 (first container, as FindPort)
	}},
	{"protocol defaults to TCP; port-less port matches the whole protocol", []string{policy("x", "p", "podSelector: {}\ningress: [{ports: [{port: 80}, {protocol: UDP}]}]")}, []trickyFlow{
		fl("y/a", "x/b", 80, "TCP", "allow"), fl("y/a", "x/b", 80, "SCTP", "deny"), fl("y/a", "x/b", 1, "UDP", "allow"), fl("y/a", "x/b", 65535, "UDP", "allow"), fl("y/a", "x/b", 81, "TCP", "deny")}},
	{"endPort ranges are inclusive", []string{policy("x", "p", "podSelector: {}\ningress: [{ports: [{port: 8000, endPort: 8080}, {port: 9000, endPort: 9000, protocol: SCTP}]}]")}, []trickyFlow{
		fl("y/a", "x/a", 8000, "TCP", "allow"), fl("y/a", "x/a", 8080, "TCP", "allow"), fl("y/a", "x/a", 7999, "TCP", "deny"), fl("y/a", "x/a", 8081, "TCP", "deny"),
		fl("y/a", "x/a", 8050, "UDP", "deny"), fl("y/a", "x/a", 9000, "SCTP", "allow"), fl("y/a", "x/a", 9001, "SCTP", "deny")}},
	{"rule ports restrict only their own rule; policies are a union", []string{
		policy("x", "p1", "podSelector: {}\ningress: [{from: [{podSelector: {matchLabels: {app: b}}}], ports: [{port: 8080}]}, {from: [{podSelector: {matchLabels: {app: c}}}]}]"),
		policy("x", "p2", "podSelector: {matchLabels: {app: a}}\ningress: [{from: [{namespaceSelector: {matchLabels: {team: y}}}], ports: [{port: 1, endPort: 100, protocol: UDP}]}]"),
		policy("x", "deny", "podSelector: {}\npolicyTypes: [Ingress, Egress]")}, []trickyFlow{
		fl("x/b", "x/a", 8080, "TCP", "deny"), // egress of x/b is denied by x/deny
		fl("y/a", "x/a", 53, "UDP", "allow"), fl("y/a", "x/a", 8080, "TCP", "deny"), fl("z/a", "x/a", 53, "UDP", "deny"), fl("10.0.0.2", "x/c", 3, "TCP", "deny"),
		fl("y/b", "x/b", 99, "UDP", "deny")}},
	{"isolated egress: raw IPs, node and ICMP", []string{policy("x", "p", "podSelector: {}\npolicyTypes: [Egress]\negress: [{to: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}}], ports: [{port: 53, protocol: UDP}]}, {to: [{podSelector: {matchLabels: {app: b}}}]}]")}, []trickyFlow{
		fl("x/a", "8.8.8.8", 53, "UDP", "allow"), fl("x/a", "8.8.8.8", 53, "TCP", "deny"), fl("x/a", "10.0.1.1", 53, "UDP", "deny"),
		fl("x/a", "x/b", 1, "ICMP", "allow"), fl("x/a", "x/c", 1, "ICMP", "deny"), fl("x/a", "8.8.8.8", 0, "ICMP", "deny"),
		fl("x/a", "192.168.7.1", 53, "UDP", "allow"), // the host-network pod's address is just an address
	}},
	{"host-network pods are not targets", []string{policy("x", "p", "podSelector: {}\npolicyTypes: [Ingress, Egress]")}, []trickyFlow{
		fl("y/a", "x/host", 8080, "TCP", "allow"), fl("x/host", "y/a", 8081, "TCP", "allow"), fl("x/host", "x/a", 8080, "TCP", "deny")}},
	{"terminated pods are no peers; their reused IP belongs to the live pod", []string{policy("x", "p", "podSelector: {}\ningress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: a}}}]}]")}, []trickyFlow{
		fl("10.0.1.9", "x/b", 80, "TCP", "deny"), fl("y/reuse", "x/b", 80, "TCP", "deny"), fl("y/a", "x/b", 80, "TCP", "allow")}},
	{"dual-stack pods talk over IPv4 first", []string{policy("x", "p", "podSelector: {matchLabels: {app: b}}\ningress: [{from: [{ipBlock: {cidr: 10.0.0.1/32}}]}]")}, []trickyFlow{
		fl("x/a", "x/b", 80, "TCP", "allow"), fl("fd00::1", "x/v6", 80, "TCP", "allow")}},
	{"ClusterIP: judged at every ready backend", []string{policy("x", "p", "podSelector: {matchLabels: {app: b}}\ningress: [{from: [{namespaceSelector: {matchLabels: {team: y}}}], ports: [{port: 80}]}]")}, []trickyFlow{
		fl("y/a", "10.96.0.10", 80, "TCP", "allow"), fl("z/a", "10.96.0.10", 80, "TCP", "deny"), fl("y/a", "10.96.0.10", 81, "TCP", "deny"),
		fl("y/a", "10.96.0.10", 80, "UDP", "deny"),   // no such service port
		fl("y/a", "10.96.0.11", 80, "TCP", "allow"),  // x/a (http=8080) is not isolated
		fl("y/a", "10.96.0.13", 443, "TCP", "allow"), // EndpointSlice backend y/b
	}},
	{"ClusterIP: client egress must allow the backends, not the ClusterIP", []string{policy("y", "p", "podSelector: {matchLabels: {app: a}}\npolicyTypes: [Egress]\negress: [{to: [{podSelector: {matchLabels: {app: b}}, namespaceSelector: {}}], ports: [{port: 80}]}, {to: [{ipBlock: {cidr: 10.96.0.0/12}}]}]")}, []trickyFlow{
		fl("y/a", "10.96.0.10", 80, "TCP", "allow"), // backend x/b:80 allowed
		fl("y/a", "10.96.0.11", 80, "TCP", "deny"),  // backend x/a:8080 not allowed; the ipBlock on the service range does not count
		fl("y/a", "10.96.0.13", 443, "TCP", "deny"), // backend y/b:8443 not allowed
	}},
	{"ClusterIP: named targetPort in the client's egress rule", []string{policy("y", "p", "podSelector: {matchLabels: {app: a}}\npolicyTypes: [Egress]\negress: [{to: [{namespaceSelector: {}}], ports: [{port: http}]}]")}, []trickyFlow{
		fl("y/a", "10.96.0.11", 80, "TCP", "allow"), fl("y/a", "10.96.0.10", 80, "TCP", "allow"), fl("y/a", "x/a", 80, "TCP", "deny")}},
	{"ClusterIP: every backend must admit", []string{policy("y", "p", "podSelector: {matchLabels: {app: b}}\ningress: [{ports: [{port: 7000, protocol: UDP}]}]")}, []trickyFlow{
		// selector {} selects nothing (no endpoints controller), so no backend
		fl("x/a", "10.96.0.12", 7000, "UDP", "deny")}},
}

// TestTrickyCases checks hand-derived verdicts against both the model and the CLI.
// nodeCases run with --node-ip 192.168.7.1, the address of host-network pod x/host.
var nodeCases = []trickyCase{
	{"the node is always allowed, also behind a ClusterIP", []string{
		policy("y", "deny", "podSelector: {}\npolicyTypes: [Ingress, Egress]"),
		policy("x", "to-b", "podSelector: {}\npolicyTypes: [Egress]\negress: [{to: [{podSelector: {matchLabels: {app: b}}}]}]")}, []trickyFlow{
		fl("192.168.7.1", "y/a", 8081, "TCP", "allow"), fl("y/a", "192.168.7.1", 6443, "TCP", "allow"), fl("x/host", "y/b", 1, "UDP", "allow"),
		fl("y/a", "10.96.0.15", 443, "TCP", "allow"), // the only backend is the node
		fl("x/a", "10.96.0.15", 443, "TCP", "allow"),
		fl("x/a", "10.96.0.16", 443, "TCP", "allow"), // node + x/b, which x/to-b allows
		fl("x/a", "10.96.0.17", 443, "TCP", "deny"),  // node + x/c, which nothing allows
		fl("y/a", "10.96.0.16", 443, "TCP", "deny"),
	}},
}

const nodeServices = `
apiVersion: v1
kind: Service
metadata: {name: kubernetes, namespace: default}
spec: {clusterIP: 10.96.0.15, ports: [{name: https, port: 443, targetPort: 6443}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: kubernetes, namespace: default, labels: {kubernetes.io/service-name: kubernetes}}
addressType: IPv4
endpoints: [{addresses: [192.168.7.1]}]
ports: [{name: https, port: 6443}]
---
apiVersion: v1
kind: Service
metadata: {name: mixed-ok, namespace: x}
spec: {clusterIP: 10.96.0.16, ports: [{name: https, port: 443, targetPort: 6443}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: mixed-ok, namespace: x, labels: {kubernetes.io/service-name: mixed-ok}}
addressType: IPv4
endpoints: [{addresses: [192.168.7.1]}, {addresses: [10.0.0.2]}]
ports: [{name: https, port: 6443}]
---
apiVersion: v1
kind: Service
metadata: {name: mixed-bad, namespace: x}
spec: {clusterIP: 10.96.0.17, ports: [{name: https, port: 443, targetPort: 6443}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: mixed-bad, namespace: x, labels: {kubernetes.io/service-name: mixed-bad}}
addressType: IPv4
endpoints: [{addresses: [192.168.7.1]}, {addresses: [10.0.0.3]}]
ports: [{name: https, port: 6443}]
`

func TestTrickyCases(t *testing.T) {
	runTricky(t, trickyCases, "")
	runTricky(t, nodeCases, nodeServices, "--node-ip", "192.168.7.1")
}

// TestPrivilegedBPFTrickyCases runs the hand-derived cases through the real eBPF
// programs.
func TestPrivilegedBPFTrickyCases(t *testing.T) {
	testenv.RequireRoot(t, "runs --engine=bpf (BPF_PROG_TEST_RUN)")
	runTricky(t, trickyCases, "", "--engine=bpf")
	runTricky(t, nodeCases, nodeServices, "--node-ip", "192.168.7.1", "--engine=bpf")
}

func runTricky(t *testing.T, cases []trickyCase, extraDocs string, extra ...string) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			docs := baseCluster + "\n---\n" + strings.Join(tc.policies, "\n---\n")
			if extraDocs != "" {
				docs += "\n---\n" + extraDocs
			}
			c := parseYAML(t, docs)
			for i, a := range extra {
				if a == "--node-ip" {
					c.NodeIPs = append(c.NodeIPs, netip.MustParseAddr(extra[i+1]))
				}
			}
			dir, err := os.MkdirTemp("", "sg-tricky-") // no commas: --manifests splits on them
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(dir)
			if err := os.WriteFile(filepath.Join(dir, "all.yaml"), []byte(docs), 0o644); err != nil {
				t.Fatal(err)
			}
			var flows []Flow
			for _, f := range tc.flows {
				flows = append(flows, Flow{Src: f.src, Dst: f.dst, Port: f.port, Protocol: f.proto})
			}
			got := verdicts(t, flows, extra, dir)
			for i, f := range tc.flows {
				j, err := c.Judge(flows[i])
				if err != nil {
					t.Errorf("%s → %s %s/%d: model: %v", f.src, f.dst, f.proto, f.port, err)
					continue
				}
				model := map[bool]string{true: "allow", false: "deny"}[j.Allow]
				if model != f.want {
					t.Errorf("%s → %s %s/%d: model says %s, hand-derived %s:\n  %s", f.src, f.dst, f.proto, f.port, model, f.want, strings.Join(j.Why, "\n  "))
				}
				if got[i].Verdict != f.want {
					t.Errorf("%s → %s %s/%d: strictgate says %s, want %s", f.src, f.dst, f.proto, f.port, got[i].Verdict, f.want)
				}
			}
		})
	}
}
