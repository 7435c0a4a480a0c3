package images

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// StrictgateRepository is the repository of strictgate's own image on the test cluster;
// StrictgateTag picks the tag. The chart runs it with image.pullPolicy Never.
const StrictgateRepository = "strictgate.local/strictgate"

// StrictgateImage is a built strictgate image: its tarball plus the repository and tag
// to give the chart (image.repository, image.tag).
type StrictgateImage struct {
	Image
	Repository string
	Tag        string
	// Binary is the static binary inside the image, usable on the host as well (the
	// demo runs `strictgate explain` with it).
	Binary string
}

// Strictgate builds the strictgate binary statically (CGO_ENABLED=0) from the module's
// ./cmd/strictgate into dir and packs it into an image whose entrypoint is the binary:
// the chart's webhook, agent and CNI installer pass their sub-command as args.
//
// The tag is "dev-" plus the binary's content hash, so a rebuilt binary is a new tag
// (helm upgrade rolls the pods) and an unchanged one is the same image (re-running is
// a no-op for the cluster).
func Strictgate(ctx context.Context, dir string) (StrictgateImage, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return StrictgateImage{}, err
	}
	bin := filepath.Join(dir, "strictgate")
	if err := BuildGo(ctx, "github.com/strictgate/strictgate/cmd/strictgate", bin); err != nil {
		return StrictgateImage{}, err
	}
	return StrictgateFromBinary(bin, dir)
}

// StrictgateFromBinary packs an already built strictgate binary (e.g. `make build`'s
// bin/strictgate) into an image tarball in dir. The binary must be static: the image
// has no C library.
func StrictgateFromBinary(bin, dir string) (StrictgateImage, error) {
	if err := checkStatic(bin); err != nil {
		return StrictgateImage{}, err
	}
	sum, err := fileHash(bin)
	if err != nil {
		return StrictgateImage{}, err
	}
	tag := "dev-" + sum[:12]
	img, err := FromBinary(Spec{
		Ref:    StrictgateRepository + ":" + tag,
		Binary: bin,
		Path:   "/strictgate",
	}, filepath.Join(dir, "strictgate-"+tag+".tar"))
	if err != nil {
		return StrictgateImage{}, err
	}
	return StrictgateImage{Image: img, Repository: StrictgateRepository, Tag: tag, Binary: bin}, nil
}

// checkStatic refuses dynamically linked binaries: they would fail in the image with a
// confusing "no such file or directory" for the missing loader.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked: build it with CGO_ENABLED=0", path)
		}
	}
	return nil
}

func fileHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
