// Package images builds container image tarballs from static binaries without a docker
// daemon or a registry: one layer holding the binary, a config naming it as entrypoint,
// written as a docker-archive tarball that `ctr images import` (containerd) and
// `docker load` both accept. The one-node cluster imports the sandbox (pause) image and
// the probe image this way; strictgate's own image is built with the same FromBinary.
package images

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Refs of the images this package builds from the repository's own sources. The
// strictgate.local domain cannot resolve, so nothing ever tries to pull them.
const (
	PauseRef = "strictgate.local/pause:3.10"
	ProbeRef = "strictgate.local/probe:dev"
)

// Probe server ports (see test/images/probe): TCP echo, UDP echo and HTTP.
const (
	ProbeTCPPort  = 8080
	ProbeUDPPort  = 8081
	ProbeHTTPPort = 8082
)

// Spec describes a single-binary image.
type Spec struct {
	// Ref names the image, e.g. "strictgate.local/strictgate:dev".
	Ref string
	// Binary is the host path of a static binary.
	Binary string
	// Path is where the binary sits in the image; default "/" + its base name.
	Path string
	// Entrypoint defaults to [Path]; Cmd is appended by the runtime.
	Entrypoint []string
	Cmd        []string
	Env        []string
	// Files adds more host files: image path → host path (e.g. a CNI plugin copy).
	Files map[string]string
}

// Image is a built image tarball.
type Image struct {
	Ref     string
	Tarball string
}

// FromBinary builds the image described by spec into the tarball out.
func FromBinary(spec Spec, out string) (Image, error) {
	ref, err := name.ParseReference(spec.Ref)
	if err != nil {
		return Image{}, fmt.Errorf("parse image ref %q: %w", spec.Ref, err)
	}
	if spec.Path == "" {
		spec.Path = "/" + filepath.Base(spec.Binary)
	}
	if len(spec.Entrypoint) == 0 {
		spec.Entrypoint = []string{spec.Path}
	}
	files := map[string]string{spec.Path: spec.Binary}
	for k, v := range spec.Files {
		files[k] = v
	}
	layerTar, err := layer(files)
	if err != nil {
		return Image{}, err
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return Image{}, fmt.Errorf("make layer for %s: %w", spec.Ref, err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return Image{}, fmt.Errorf("append layer for %s: %w", spec.Ref, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return Image{}, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Entrypoint = spec.Entrypoint
	cf.Config.Cmd = spec.Cmd
	cf.Config.Env = append([]string{"PATH=/"}, spec.Env...)
	cf.Config.WorkingDir = "/"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return Image{}, fmt.Errorf("set config of %s: %w", spec.Ref, err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return Image{}, err
	}
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		return Image{}, fmt.Errorf("write image %s to %s: %w", spec.Ref, out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return Image{}, err
	}
	return Image{Ref: spec.Ref, Tarball: out}, nil
}

// layer makes an uncompressed tar of files (image path → host path) plus the
// directories every container expects to exist (/etc, /tmp, /dev, /proc, /sys).
func layer(files map[string]string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	dirs := map[string]bool{}
	addDir := func(d string, mode int64) error {
		if d == "" || d == "." || dirs[d] {
			return nil
		}
		dirs[d] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: mode, ModTime: epoch})
	}
	for _, d := range []string{"etc", "dev", "proc", "sys", "var"} {
		if err := addDir(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := addDir("tmp", 0o1777); err != nil {
		return nil, err
	}
	for _, p := range sortedKeys(files) {
		b, err := os.ReadFile(files[p])
		if err != nil {
			return nil, fmt.Errorf("read image file %s: %w", files[p], err)
		}
		rel := path.Clean(p)[1:]
		var parents []string
		for d := path.Dir(rel); d != "."; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if err := addDir(d, 0o755); err != nil {
				return nil, err
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: 0o755, Size: int64(len(b)), ModTime: epoch}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

// BuildGo builds a static, stripped binary of the Go package pkg (an import path inside
// the current module, or any path `go build` accepts) into out.
func BuildGo(ctx context.Context, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// Pause builds the sandbox image (test/images/pause) into dir.
func Pause(ctx context.Context, dir string) (Image, error) {
	return FromGoPackage(ctx, dir, "github.com/strictgate/strictgate/test/images/pause", PauseRef, nil)
}

// Probe builds the probe server image (test/images/probe) into dir. Its default
// command serves TCP 8080, UDP 8081 and HTTP 8082.
func Probe(ctx context.Context, dir string) (Image, error) {
	return FromGoPackage(ctx, dir, "github.com/strictgate/strictgate/test/images/probe", ProbeRef, []string{"serve"})
}

// FromGoPackage builds the Go main package pkg statically and makes it an image named
// ref with the binary at /<last element of pkg> as entrypoint and cmd as default
// arguments; binary and tarball go to dir. strictgate's own image:
//
//	images.FromGoPackage(ctx, dir, "github.com/strictgate/strictgate/cmd/strictgate", "strictgate.local/strictgate:dev", nil)
func FromGoPackage(ctx context.Context, dir, pkg, ref string, cmd []string) (Image, error) {
	bin := path.Base(pkg)
	binPath := filepath.Join(dir, bin)
	if err := BuildGo(ctx, pkg, binPath); err != nil {
		return Image{}, err
	}
	return FromBinary(Spec{Ref: ref, Binary: binPath, Cmd: cmd}, filepath.Join(dir, bin+".tar"))
}
