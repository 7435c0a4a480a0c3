package conformance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// sgBin is the strictgate binary built once by TestMain: the tests judge the real CLI.
var sgBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sg-conformance-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sgBin = filepath.Join(dir, "strictgate")
	build := exec.Command("go", "build", "-o", sgBin, "github.com/strictgate/strictgate/cmd/strictgate")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build strictgate:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is the part of a verdict line the tests compare.
type result struct {
	Verdict string `json:"verdict"`
	Src     string `json:"src"`
	Dst     string `json:"dst"`
}

// runCLI runs the binary and returns stdout, stderr and the exit code.
func runCLI(t testing.TB, stdin []byte, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(sgBin, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// verdicts runs `strictgate verdict` and parses one line per flow.
func verdicts(t testing.TB, flows []Flow, extra []string, manifests ...string) []result {
	t.Helper()
	var in bytes.Buffer
	for _, f := range flows {
		b, _ := json.Marshal(f)
		in.Write(b)
		in.WriteByte('\n')
	}
	args := []string{"verdict", "--flows", "-"}
	for _, m := range manifests {
		args = append(args, "--manifests", m)
	}
	args = append(args, extra...)
	stdout, stderr, code := runCLI(t, in.Bytes(), args...)
	if code != 0 {
		t.Fatalf("strictgate %v: exit %d: %s", args, code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if stdout == "" {
		lines = nil
	}
	if len(lines) != len(flows) {
		t.Fatalf("%d output lines for %d flows:\n%s", len(lines), len(flows), stdout)
	}
	out := make([]result, len(lines))
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &out[i]); err != nil {
			t.Fatalf("line %d %q: %v", i+1, l, err)
		}
		if out[i].Verdict != "allow" && out[i].Verdict != "deny" {
			t.Fatalf("line %d: verdict %q", i+1, out[i].Verdict)
		}
		if out[i].Src != flows[i].Src || out[i].Dst != flows[i].Dst {
			t.Fatalf("line %d answers %s→%s, want flow %s→%s (order)", i+1, out[i].Src, out[i].Dst, flows[i].Src, flows[i].Dst)
		}
	}
	return out
}
