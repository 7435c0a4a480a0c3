package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strictgate/strictgate/internal/testenv"
)

// TestVerdictCLI runs the sub-commands as a user would (flags, stdin, exit status).
func TestVerdictCLI(t *testing.T) {
	// Without --manifests the commands look for a cluster: make sure there is none.
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "absent"))
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	manifests := filepath.Join("..", "..", "verdict", "testdata", "xyz", "manifests")
	flowsFile := filepath.Join(t.TempDir(), "flows.jsonl")
	if err := os.WriteFile(flowsFile, []byte(`{"src":"y/a","dst":"x/a","port":80}`+"\n"+`{"src":"x/b","dst":"x/a","port":80}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		args     []string
		code     int
		stdout   []string // substrings, in order of lines
		stderr   string
		noStdout bool
	}{
		{name: "verdict", args: []string{"verdict", "--manifests", manifests, "--flows", flowsFile}, code: 0,
			stdout: []string{`{"verdict":"allow","src":"y/a","dst":"x/a"`, `{"verdict":"deny","src":"x/b","dst":"x/a"`}},
		{name: "explain one flow", args: []string{"explain", "--manifests", manifests, "--src", "x/b", "--dst", "x/a", "--port", "80"}, code: 0,
			stdout: []string{"x/b (10.0.0.2) → x/a (10.0.0.1) TCP/80: DENY"}},
		{name: "node ip", args: []string{"verdict", "--manifests", manifests, "--flows", flowsFile, "--node-ip", "10.0.1.1"}, code: 0,
			stdout: []string{`"reason":"host"`}},
		{name: "missing manifests", args: []string{"verdict", "--flows", flowsFile}, code: 1, stderr: "no manifests and no cluster: pass --kubeconfig FILE", noStdout: true},
		{name: "manifests and kubeconfig", args: []string{"explain", "--manifests", manifests, "--kubeconfig", flowsFile, "--src", "x/b", "--dst", "x/a", "--port", "80"}, code: 1, stderr: "--manifests (offline) and --kubeconfig/--context (live cluster) are mutually exclusive", noStdout: true},
		{name: "flows and single flow", args: []string{"verdict", "--manifests", manifests, "--flows", flowsFile, "--src", "x/b"}, code: 1, stderr: "mutually exclusive", noStdout: true},
		{name: "verdict one flow", args: []string{"verdict", "--manifests", manifests, "--src", "x/b", "--dst", "x/a", "--port", "80"}, code: 0,
			stdout: []string{`{"verdict":"deny","src":"x/b","dst":"x/a"`}},
		{name: "missing file", args: []string{"verdict", "--manifests", "/nonexistent", "--flows", flowsFile}, code: 1, stderr: "/nonexistent", noStdout: true},
		{name: "unknown engine", args: []string{"verdict", "--manifests", manifests, "--flows", flowsFile, "--engine", "magic"}, code: 1, stderr: `unknown engine "magic"`, noStdout: true},
		{name: "bad node ip", args: []string{"verdict", "--manifests", manifests, "--flows", flowsFile, "--node-ip", "nope"}, code: 1, stderr: `--node-ip "nope"`, noStdout: true},
		{name: "bad flag", args: []string{"verdict", "--bogus"}, code: 1, stderr: "flag provided but not defined", noStdout: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %s", code, tc.code, stderr.String())
			}
			if tc.stderr != "" && !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tc.stderr)
			}
			if tc.noStdout && stdout.Len() > 0 {
				t.Errorf("stdout on error: %q", stdout.String())
			}
			lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
			for i, want := range tc.stdout {
				found := false
				for _, l := range lines[min(i, len(lines)-1):] {
					if strings.Contains(l, want) {
						found = true
						break
					}
				}
				if !found {
					t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
				}
			}
			if tc.args[0] == "verdict" && tc.code == 0 {
				for _, l := range lines {
					var v map[string]any
					if err := json.Unmarshal([]byte(l), &v); err != nil {
						t.Errorf("not JSON: %q", l)
					}
				}
			}
		})
	}
}

func TestVerdictStdin(t *testing.T) {
	manifests := filepath.Join("..", "..", "verdict", "testdata", "xyz", "manifests")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdin
	os.Stdin = r
	t.Cleanup(func() { os.Stdin = old })
	w.WriteString(`{"src":"y/a","dst":"x/a","port":80}` + "\n" + `{"src":"y/a","dst":"x/a","port":"80"}` + "\n")
	w.Close()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"verdict", "--manifests", manifests, "--flows", "-"}, &stdout, &stderr); code != 1 {
		t.Fatalf("exit %d with a bad second line; stdout %q", code, stdout.String())
	}
	if stdout.Len() != 0 || !strings.Contains(stderr.String(), "stdin:2: bad flow") {
		t.Fatalf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
}

// TestPrivilegedVerdictEngineBPF: `--engine=bpf` answers exactly as the Go engine on the
// xyz case (the bpfengine package's differential test covers random clusters).
func TestPrivilegedVerdictEngineBPF(t *testing.T) {
	testenv.RequireRoot(t, "loads eBPF programs (--engine=bpf)")
	dir := filepath.Join("..", "..", "verdict", "testdata", "xyz")
	var outs [2]bytes.Buffer
	for i, engine := range []string{"go", "bpf"} {
		var stderr bytes.Buffer
		args := []string{"verdict", "--engine", engine, "--manifests", filepath.Join(dir, "manifests"), "--flows", filepath.Join(dir, "flows.jsonl"), "--node-ip", "192.168.7.1"}
		if code := run(args, &outs[i], &stderr); code != 0 {
			t.Fatalf("%s engine: exit %d: %s", engine, code, stderr.String())
		}
	}
	if outs[0].String() != outs[1].String() {
		t.Fatalf("engines disagree\ngo:\n%s\nbpf:\n%s", outs[0].String(), outs[1].String())
	}
	if n := strings.Count(outs[1].String(), "\n"); n != 16 {
		t.Fatalf("%d lines, want 16", n)
	}
}
