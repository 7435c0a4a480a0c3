package images

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestStrictgateImage(t *testing.T) {
	dir := t.TempDir()
	im, err := Strictgate(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if im.Repository != StrictgateRepository || !strings.HasPrefix(im.Tag, "dev-") || im.Ref != im.Repository+":"+im.Tag {
		t.Fatalf("image %+v: want %s:dev-<hash>", im, StrictgateRepository)
	}
	tag, err := name.NewTag(im.Ref)
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
	// The chart passes the sub-command as args, so the entrypoint must be the binary
	// alone, with no default command.
	if len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/strictgate" || len(cf.Config.Cmd) != 0 {
		t.Fatalf("entrypoint %v cmd %v, want [/strictgate] and none", cf.Config.Entrypoint, cf.Config.Cmd)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %d (%v), want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	want, err := os.ReadFile(im.Binary)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(rc)
	found := false
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "strictgate" {
			found = h.Size == int64(len(want)) && h.Mode&0o111 != 0
		}
	}
	if !found {
		t.Fatal("layer lacks an executable /strictgate of the built binary's size")
	}
	// The binary in the image runs (static: there is no loader in the image).
	out, err := exec.Command(im.Binary).CombinedOutput()
	if !strings.Contains(string(out), "Usage: strictgate") {
		t.Fatalf("built binary does not run: %v\n%s", err, out)
	}

	// Same binary → same tag: re-running the demo imports nothing new.
	again, err := StrictgateFromBinary(im.Binary, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if again.Tag != im.Tag {
		t.Errorf("tag changed for the same binary: %s then %s", im.Tag, again.Tag)
	}
}

func TestStrictgateFromBinaryRejectsDynamicBinaries(t *testing.T) {
	// /bin/sh on Debian is dynamically linked; in a scratch image it could not start.
	if _, err := StrictgateFromBinary("/bin/sh", t.TempDir()); err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Fatalf("dynamic binary accepted or unclear error: %v", err)
	}
	if _, err := StrictgateFromBinary(filepath.Join(t.TempDir(), "missing"), t.TempDir()); err == nil {
		t.Fatal("missing binary accepted")
	}
}
