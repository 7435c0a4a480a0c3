package verdict

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*/*.golden from the current output")

func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run with -update if intended):\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// TestGoldenCases runs testdata/<case>/flows.jsonl against testdata/<case>/manifests
// and compares the JSON lines and the explanation with the golden files.
func TestGoldenCases(t *testing.T) {
	dirs, _ := filepath.Glob("testdata/*/manifests")
	if len(dirs) == 0 {
		t.Fatal("no testdata cases")
	}
	for _, md := range dirs {
		dir := filepath.Dir(md)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			o := Options{Manifests: []string{md}, FlowsName: filepath.Join(dir, "flows.jsonl"), NodeIPs: []netip.Addr{netip.MustParseAddr("192.168.7.1")}}
			var out bytes.Buffer
			if err := Run(context.Background(), o, &out); err != nil {
				t.Fatal(err)
			}
			// One line per flow, each a JSON object with a verdict.
			flows, _ := os.ReadFile(o.FlowsName)
			nflows := 0
			for _, l := range strings.Split(string(flows), "\n") {
				if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
					nflows++
				}
			}
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if len(lines) != nflows {
				t.Fatalf("%d output lines for %d flows", len(lines), nflows)
			}
			for _, l := range lines {
				var r map[string]any
				if err := json.Unmarshal([]byte(l), &r); err != nil || (r["verdict"] != "allow" && r["verdict"] != "deny") {
					t.Fatalf("bad line %q: %v", l, err)
				}
			}
			checkGolden(t, filepath.Join(dir, "verdict.golden"), out.Bytes())
			out.Reset()
			if err := Explain(context.Background(), o, &out); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, filepath.Join(dir, "explain.golden"), out.Bytes())
		})
	}
}

func TestExplainSingleFlow(t *testing.T) {
	o := Options{Manifests: []string{"testdata/xyz/manifests"}, Flow: &Flow{Src: "x/b", Dst: "x/a", Port: 80}}
	var out bytes.Buffer
	if err := Explain(context.Background(), o, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"x/b (10.0.0.2) → x/a (10.0.0.1) TCP/80: DENY",
		"egress at x/b: denied: pod x/b is isolated for egress by x/deny-all, x/egress-dns-and-z; no rule of x/deny-all, x/egress-dns-and-z admits to 10.0.0.1 on TCP/80",
		"ingress at x/a: denied: pod x/a is isolated for ingress by x/allow-from-y, x/deny-all",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("explanation lacks %q:\n%s", want, out.String())
		}
	}
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const goodPod = `apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x}
spec: {containers: [{name: c, image: i}]}
status: {podIP: 10.0.0.1}
`

// TestBadInput: malformed manifests and flows fail with an error naming the file and
// line, and print nothing.
func TestBadInput(t *testing.T) {
	cases := []struct {
		name, manifest, flows, want string
	}{
		{"yaml syntax", goodPod + "---\nkind: [\n", `{"src":"x/a","dst":"1.1.1.1","port":80}`, "m.yaml:7: bad YAML: did not find expected node content"},
		{"yaml indentation", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n   namespace: x\n", `{"src":"1.1.1.1","dst":"1.1.1.2","port":80}`, "m.yaml:5: bad YAML: mapping values are not allowed"},
		{"unknown field", goodPod + "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelecter: {}}\n", `{"src":"x/a","dst":"1.1.1.1","port":80}`, `m.yaml:7: NetworkPolicy: json: unknown field "podSelecter"`},
		{"no kind", goodPod + "---\nmetadata: {name: b}\n", `{"src":"x/a","dst":"1.1.1.1","port":80}`, "m.yaml:7: object without apiVersion or kind"},
		{"bad cidr", goodPod + "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]}\n", `{"src":"x/a","dst":"1.1.1.1","port":80}`, "m.yaml:7: networkpolicy x/p: ingress[0]: peer 0: ipBlock cidr"},
		{"bad selector", goodPod + "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {matchExpressions: [{key: a, operator: Foo}]}}\n", `{"src":"x/a","dst":"1.1.1.1","port":80}`, "m.yaml:7: networkpolicy x/p: podSelector"},
		{"bad pod IP", "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nstatus: {podIP: 10.0.0.300}\n", `{"src":"1.1.1.1","dst":"1.1.1.2","port":80}`, `m.yaml:1: pod default/a: bad IP "10.0.0.300"`},
		{"duplicate", goodPod + "---\n" + goodPod, `{"src":"x/a","dst":"1.1.1.1","port":80}`, "m.yaml:7: Pod x/a defined twice (first at"},
		{"flow not json", goodPod, "{\"src\":\"x/a\",\"dst\":\"1.1.1.1\",\"port\":80}\n\nnot json\n", "flows.jsonl:3: bad flow"},
		{"flow bad port", goodPod, `{"src":"x/a","dst":"1.1.1.1","port":70000}`, `flows.jsonl:1: bad flow: "port" must be 1-65535`},
		{"flow missing port", goodPod, `{"src":"x/a","dst":"1.1.1.1"}`, `flows.jsonl:1: bad flow: "port" must be 1-65535`},
		{"flow bad protocol", goodPod, `{"src":"x/a","dst":"1.1.1.1","port":1,"protocol":"GRE"}`, `flows.jsonl:1: bad flow: unknown protocol "GRE"`},
		{"flow unknown pod", goodPod, "{\"src\":\"x/a\",\"dst\":\"1.1.1.1\",\"port\":80}\n{\"src\":\"x/zz\",\"dst\":\"1.1.1.1\",\"port\":80}\n", "flows.jsonl: flow 2 (x/zz → 1.1.1.1): src: pod x/zz is not in the manifests"},
		{"flow bad end", goodPod, `{"src":"nothing","dst":"1.1.1.1","port":80}`, `src: "nothing" is neither an IP nor namespace/pod`},
		{"flow mixed families", goodPod, `{"src":"x/a","dst":"fd00::1","port":80}`, "no addresses of the same IP family"},
		{"pod without IP", "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x}\n", `{"src":"x/a","dst":"1.1.1.1","port":80}`, "pod x/a has no IP (set status.podIP)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			m := write(t, dir, "m.yaml", tc.manifest)
			f := write(t, dir, "flows.jsonl", tc.flows)
			var out bytes.Buffer
			err := Run(context.Background(), Options{Manifests: []string{m}, FlowsName: f}, &out)
			if err == nil {
				t.Fatalf("no error; output %q", out.String())
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
			if out.Len() != 0 {
				t.Fatalf("partial output on error: %q", out.String())
			}
		})
	}
}

// TestLoadForms: YAML 1.2 scalars (namespace y stays "y"), JSON streams, Lists,
// defaults (protocol TCP, inferred policyTypes, namespace label).
func TestLoadForms(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: y, labels: {on: yes}}\n---\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: y}\nspec:\n  podSelector: {}\n  egress: [{ports: [{port: 80}]}]\n")
	write(t, dir, "b.json", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","namespace":"y"},"status":{"podIP":"10.0.0.1"}}
{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Service","metadata":{"name":"s","namespace":"y"},"spec":{"clusterIP":"10.96.0.1","ports":[{"port":80}]}}]}`)
	write(t, dir, "ignored.txt", "not a manifest")
	// As the API returns lists: typed, items without kind.
	write(t, dir, "c.yml", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicyList\nitems:\n- metadata: {name: q, namespace: y}\n  spec: {podSelector: {}}\n")
	m, err := Load([]string{dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.State.Namespaces) != 1 || m.State.Namespaces[0].Name != "y" || m.State.Namespaces[0].Labels["on"] != "yes" || m.State.Namespaces[0].Labels["kubernetes.io/metadata.name"] != "y" {
		t.Errorf("namespace: %+v", m.State.Namespaces)
	}
	if len(m.State.Policies) != 2 {
		t.Fatalf("policies: %d", len(m.State.Policies))
	}
	p := m.State.Policies[0]
	if p.Name != "p" {
		p = m.State.Policies[1]
	}
	if p.Namespace != "y" || len(p.Spec.PolicyTypes) != 2 || *p.Spec.Egress[0].Ports[0].Protocol != "TCP" {
		t.Errorf("policy defaults: %+v", p.Spec)
	}
	if len(m.State.Pods) != 1 || len(m.State.Pods[0].Status.PodIPs) != 1 {
		t.Errorf("pods: %+v", m.State.Pods)
	}
	if len(m.State.Services) != 1 || m.State.Services[0].Spec.Ports[0].Protocol != "TCP" || m.State.Services[0].Spec.Ports[0].TargetPort.IntValue() != 80 {
		t.Errorf("services: %+v", m.State.Services)
	}
	if got := m.Origin("Pod", "y", "a"); got != filepath.Join(dir, "b.json")+":1" {
		t.Errorf("origin %q", got)
	}
}
