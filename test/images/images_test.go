package images

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestBuiltImagesHaveBinaryAndEntrypoint(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		build      func(context.Context, string) (Image, error)
		ref        string
		entrypoint string
		cmd        []string
	}{
		{Pause, PauseRef, "/pause", nil},
		{Probe, ProbeRef, "/probe", []string{"serve"}},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			im, err := tt.build(context.Background(), dir)
			if err != nil {
				t.Fatal(err)
			}
			tag, err := name.NewTag(tt.ref)
			if err != nil {
				t.Fatal(err)
			}
			img, err := tarball.ImageFromPath(im.Tarball, &tag)
			if err != nil {
				t.Fatalf("read back %s: %v", im.Tarball, err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.OS != "linux" || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != tt.entrypoint {
				t.Fatalf("config os=%s entrypoint=%v, want linux [%s]", cf.OS, cf.Config.Entrypoint, tt.entrypoint)
			}
			if len(cf.Config.Cmd) != len(tt.cmd) {
				t.Fatalf("cmd %v, want %v", cf.Config.Cmd, tt.cmd)
			}
			layers, err := img.Layers()
			if err != nil || len(layers) != 1 {
				t.Fatalf("layers %d (%v), want 1", len(layers), err)
			}
			if filepath.Base(im.Tarball) == "" {
				t.Fatal("no tarball path")
			}
		})
	}
}

func TestFromBinaryRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	if _, err := FromBinary(Spec{Ref: "Not A Ref!", Binary: "/bin/true"}, filepath.Join(dir, "a.tar")); err == nil {
		t.Error("bad ref: want error")
	}
	if _, err := FromBinary(Spec{Ref: "strictgate.local/x:1", Binary: filepath.Join(dir, "missing")}, filepath.Join(dir, "b.tar")); err == nil {
		t.Error("missing binary: want error")
	}
}
