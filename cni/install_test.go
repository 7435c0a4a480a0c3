package cni_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/strictgate/strictgate/cni"
	"github.com/strictgate/strictgate/internal/contract"
)

func TestPatchConfList(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := cni.PatchConfList(dir, cni.Entry("strict", "/sys/fs/bpf/strictgate", ""), false); !errors.Is(err, cni.ErrNoConfList) {
		t.Fatalf("empty dir: %v, want ErrNoConfList", err)
	}
	main := `{"cniVersion":"1.0.0","name":"k8s","plugins":[{"type":"ptp","ipam":{"type":"host-local"}},{"type":"portmap"}]}`
	path := filepath.Join(dir, "10-ptp.conflist")
	if err := os.WriteFile(path, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	// A later file is not the one the runtime uses.
	if err := os.WriteFile(filepath.Join(dir, "99-other.conflist"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	types := func() []string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var c struct {
			Name    string
			Plugins []map[string]any
		}
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range c.Plugins {
			out = append(out, p["type"].(string)+":"+func() string { m, _ := p["mode"].(string); return m }())
		}
		return out
	}
	for _, step := range []struct {
		mode    string
		remove  bool
		changed bool
		want    string
	}{
		{"strict", false, true, "[ptp: portmap: strictgate:strict]"},
		{"strict", false, false, "[ptp: portmap: strictgate:strict]"},
		{"standard", false, true, "[ptp: portmap: strictgate:standard]"},
		{"", true, true, "[ptp: portmap:]"},
		{"", true, false, "[ptp: portmap:]"},
	} {
		got, changed, err := cni.PatchConfList(dir, cni.Entry(contract.Mode(step.mode), "/sys/fs/bpf/strictgate", ""), step.remove)
		if err != nil || got != path || changed != step.changed {
			t.Fatalf("PatchConfList(%q, remove %v) = %s, %v, %v; want %s, changed %v", step.mode, step.remove, got, changed, err, path, step.changed)
		}
		if s := fmtSlice(types()); s != step.want {
			t.Fatalf("after %q/%v plugins = %s, want %s", step.mode, step.remove, s, step.want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "99-other.conflist")); string(b) != main {
		t.Fatal("a conflist the runtime does not use was changed")
	}
}

func fmtSlice(s []string) string {
	out := "["
	for i, v := range s {
		if i > 0 {
			out += " "
		}
		out += v
	}
	return out + "]"
}
