package compile_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strictgate/strictgate/agent/compile"
	"github.com/strictgate/strictgate/verdict"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// TestGolden compiles each testdata/*.yaml and compares every pod's rules with
// testdata/*.golden (go test ./agent/compile -run TestGolden -update to accept).
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			m, err := verdict.Load([]string{f}, nil)
			if err != nil {
				t.Fatal(err)
			}
			c, err := compile.Build(m.State, compile.Options{})
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			if err := c.Dump(&got); err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("%s differs from the compiled rules (run with -update if intended):\n--- got\n%s--- want\n%s", golden, got.String(), want)
			}
		})
	}
}
