package conformance

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// contractCluster: x/a is isolated for ingress and admits only TCP 80 (port protocol
// omitted: TCP) from anywhere; policyTypes omitted (Ingress inferred, no Egress).
var contractFiles = map[string]string{
	"ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n",
	"pods.json": `{"apiVersion":"v1","kind":"PodList","items":[
 {"metadata":{"name":"a","namespace":"x","labels":{"app":"a"}},"spec":{"containers":[{"name":"c","image":"i"}]},"status":{"podIP":"10.0.0.1"}}]}
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"b","namespace":"x"},"spec":{"containers":[{"name":"c","image":"i"}]},"status":{"podIPs":[{"ip":"10.0.0.2"}]}}`,
	"sub/policy.yml": `# a comment before the first document
---
apiVersion: v1
kind: List
items:
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: web, namespace: x}
  spec:
    podSelector: {matchLabels: {app: a}}
    ingress: [{ports: [{port: 80}]}]
    egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8}}]}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ignored, namespace: x}
`,
	"sub/notes.txt": "not a manifest: skipped in directories",
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sg-contract-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestCLIContract(t *testing.T) {
	dir := writeFiles(t, contractFiles)
	flows := "# comment\n\n" +
		`{"src":"x/b","dst":"x/a","port":80}` + "\n" +
		`{"src":"x/b","dst":"x/a","port":80,"protocol":"UDP"}` + "\r\n" +
		`{"src":"10.0.0.2","dst":"x/a","port":80,"protocol":"tcp"}` + "\n" +
		`{"src":"x/a","dst":"10.0.0.2","port":9}` + "\n" + // egress is not isolated: policyTypes inferred as [Ingress]
		`{"src":"x/a","dst":"x/b","port":9,"protocol":"SCTP"}` + "\n"
	want := []string{"allow", "deny", "allow", "allow", "allow"}
	flowsFile := filepath.Join(dir, "flows.jsonl")
	if err := os.WriteFile(flowsFile, []byte(flows), 0o644); err != nil {
		t.Fatal(err)
	}
	runs := map[string]struct {
		args  []string
		stdin []byte
	}{
		"directory, flows file":     {[]string{"verdict", "--manifests", dir, "--flows", flowsFile}, nil},
		"files repeated, stdin":     {[]string{"verdict", "--manifests", filepath.Join(dir, "ns.yaml"), "--manifests", filepath.Join(dir, "pods.json"), "--manifests", filepath.Join(dir, "sub"), "--flows", "-"}, []byte(flows)},
		"file and dir, = syntax":    {[]string{"verdict", "--manifests=" + filepath.Join(dir, "sub", "policy.yml"), "--manifests=" + dir, "--flows=" + flowsFile}, nil},
		"go engine named":           {[]string{"verdict", "--engine=go", "--manifests", dir, "--flows", flowsFile}, nil},
		"single dash flag spelling": {[]string{"verdict", "-manifests", dir, "-flows", flowsFile}, nil},
	}
	// A directory whose name has a comma (t.TempDir() makes such names from subtest
	// names) is one path, not two.
	comma := filepath.Join(writeFiles(t, nil), "with,comma")
	if err := os.MkdirAll(comma, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ns.yaml", "pods.json"} {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		if err := os.WriteFile(filepath.Join(comma, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	runs["comma in a directory name"] = struct {
		args  []string
		stdin []byte
	}{[]string{"verdict", "--manifests", comma, "--manifests", filepath.Join(dir, "sub"), "--flows", flowsFile}, nil}
	runs["comma-separated list"] = struct {
		args  []string
		stdin []byte
	}{[]string{"verdict", "--manifests", filepath.Join(dir, "ns.yaml") + "," + filepath.Join(dir, "pods.json"), "--manifests", filepath.Join(dir, "sub"), "--flows", flowsFile}, nil}
	for name, r := range runs {
		t.Run(name, func(t *testing.T) {
			if strings.Contains(name, "file and dir") {
				// The policy file twice (directly and inside dir) is a duplicate: an error.
				_, stderr, code := runCLI(t, r.stdin, r.args...)
				if code == 0 || !strings.Contains(stderr, "twice") {
					t.Fatalf("duplicate object: exit %d, stderr %q", code, stderr)
				}
				return
			}
			stdout, stderr, code := runCLI(t, r.stdin, r.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			if len(lines) != len(want) {
				t.Fatalf("%d lines for %d flows:\n%s", len(lines), len(want), stdout)
			}
			for i, l := range lines {
				var m map[string]any
				if err := json.Unmarshal([]byte(l), &m); err != nil {
					t.Fatalf("line %d not JSON: %q", i+1, l)
				}
				if m["verdict"] != want[i] {
					t.Errorf("line %d: verdict %v, want %s (%s)", i+1, m["verdict"], want[i], l)
				}
			}
		})
	}
}

// TestCLIErrors: malformed input gives a clear error naming the problem, a non-zero
// exit and no partial output.
func TestCLIErrors(t *testing.T) {
	good := writeFiles(t, contractFiles)
	okFlow := `{"src":"x/b","dst":"x/a","port":80}` + "\n"
	pol := func(spec string) map[string]string {
		return map[string]string{"p.yaml": "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: " + spec + "\n"}
	}
	cases := []struct {
		name  string
		files map[string]string // manifests (nil: the good ones)
		flows string
		want  string // in stderr
	}{
		{"bad YAML", map[string]string{"a.yaml": "apiVersion: v1\nkind: Pod\nmetadata: {name: [\n"}, okFlow, "a.yaml"},
		{"bad JSON", map[string]string{"a.json": `{"apiVersion":"v1","kind":"Pod",`}, okFlow, "a.json"},
		{"not an object", map[string]string{"a.yaml": "- 1\n- 2\n"}, okFlow, "a.yaml"},
		{"no kind", map[string]string{"a.yaml": "apiVersion: v1\nmetadata: {name: a}\n"}, okFlow, "kind"},
		{"unknown field", pol("{podSelecter: {}}"), okFlow, "podSelecter"},
		{"bad cidr", pol("{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]}"), okFlow, "10.0.0.0/33"},
		{"except outside cidr", pol("{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/24, except: [10.0.1.0/24]}}]}]}"), okFlow, "10.0.1.0/24"},
		{"endPort below port", pol("{podSelector: {}, ingress: [{ports: [{port: 80, endPort: 70}]}]}"), okFlow, "80"},
		{"endPort with named port", pol("{podSelector: {}, ingress: [{ports: [{port: http, endPort: 90}]}]}"), okFlow, "endPort"},
		{"empty peer", pol("{podSelector: {}, ingress: [{from: [{}]}]}"), okFlow, "peer"},
		{"ipBlock with selector", pol("{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]}"), okFlow, "ipBlock"},
		{"bad protocol", pol("{podSelector: {}, ingress: [{ports: [{protocol: ICMP}]}]}"), okFlow, "ICMP"},
		{"bad policyType", pol("{podSelector: {}, policyTypes: [Foo]}"), okFlow, "Foo"},
		{"In without values", pol("{podSelector: {matchExpressions: [{key: a, operator: In}]}}"), okFlow, "values"},
		{"missing manifests path", map[string]string{}, okFlow, "no manifests"},
		{"bad flow JSON", nil, okFlow + "{src: x}\n", ":2"},
		{"flow without dst", nil, `{"src":"x/b","port":80}` + "\n", "dst"},
		{"flow port 0", nil, `{"src":"x/b","dst":"x/a","port":0}` + "\n", "port"},
		{"flow port too big", nil, `{"src":"x/b","dst":"x/a","port":65536}` + "\n", "port"},
		{"flow bad protocol", nil, `{"src":"x/b","dst":"x/a","port":80,"protocol":"GRE"}` + "\n", "GRE"},
		{"flow unknown pod", nil, okFlow + `{"src":"x/zz","dst":"x/a","port":80}` + "\n", "x/zz"},
		{"flow neither IP nor pod", nil, `{"src":"nonsense","dst":"x/a","port":80}` + "\n", "nonsense"},
		{"flow IP families differ", nil, `{"src":"fd00::1","dst":"x/a","port":80}` + "\n", "family"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := good
			if tc.files != nil {
				files := map[string]string{}
				for k, v := range contractFiles {
					files[k] = v
				}
				for k, v := range tc.files {
					files[k] = v
				}
				if len(tc.files) == 0 {
					files = nil
				}
				dir = writeFiles(t, files)
			}
			stdout, stderr, code := runCLI(t, []byte(tc.flows), "verdict", "--manifests", dir, "--flows", "-")
			if code == 0 {
				t.Fatalf("exit 0, want an error; stdout %q", stdout)
			}
			if stdout != "" {
				t.Errorf("partial output on error: %q", stdout)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q does not mention %q", stderr, tc.want)
			}
		})
	}
}
