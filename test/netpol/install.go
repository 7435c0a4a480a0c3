package netpol

import (
	"compress/gzip"
	"context"
	_ "embed"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
	"sigs.k8s.io/yaml"

	"github.com/strictgate/strictgate/test/cluster"
	"github.com/strictgate/strictgate/test/e2e/harness"
)

// ValuesFile is the committed chart values profile of the conformance runs, relative to
// the repository root.
const ValuesFile = "test/netpol/values-conformance.yaml"

//go:embed values-conformance.yaml
var valuesYAML []byte

// Values returns the conformance values profile: its text and its parsed values.
func Values() (string, map[string]any, error) {
	return parseValues(ValuesFile, valuesYAML)
}

// ValuesFrom reads another values file in place of the profile (make conformance
// -values: the suite against an installation of one's own).
func ValuesFrom(path string) (string, map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", nil, err
	}
	return parseValues(path, b)
}

func parseValues(name string, b []byte) (string, map[string]any, error) {
	var v map[string]any
	if err := yaml.Unmarshal(b, &v); err != nil {
		return "", nil, fmt.Errorf("parse %s: %w", name, err)
	}
	return string(b), v, nil
}

// Install helm-installs strictgate from this tree with values v (the conformance
// profile unless the caller chose others; image built and imported by the e2e
// harness). Uninstall it with the returned Install.
func Install(ctx context.Context, cl *cluster.Cluster, v map[string]any, log io.Writer) (*harness.Install, error) {
	mode, _ := v["mode"].(string)
	return harness.InstallStrictgate(ctx, cl, harness.Options{Mode: mode, Values: v, Log: log})
}

// ImportAgnhost packs the suite's agnhost into an image under the reference the suite's
// manifest uses and imports it into the node's containerd. The suite's pods ask for
// it with imagePullPolicy IfNotPresent, so they find it there and pull nothing.
func ImportAgnhost(ctx context.Context, cl *cluster.Cluster, s Suite) (string, error) {
	ref, err := s.AgnhostRef(ctx)
	if err != nil {
		return "", err
	}
	img, err := s.AgnhostImage(filepath.Dir(s.Agnhost), ref)
	if err != nil {
		return "", err
	}
	if err := cl.ImportImage(ctx, img.Tarball); err != nil {
		return "", err
	}
	return ref, nil
}

// SCTP tells whether this machine can carry SCTP (the sctp kernel module loads and an
// SCTP socket opens) and, if not, why: the suite's [Feature:SCTPConnectivity] specs run
// only when it can.
func SCTP(ctx context.Context) (bool, string) {
	out, modErr := exec.CommandContext(ctx, "modprobe", "sctp").CombinedOutput()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_SCTP)
	if err == nil {
		unix.Close(fd)
		return true, "kernel sctp module loaded: SCTP specs ran"
	}
	why := fmt.Sprintf("socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP): %v", err)
	if modErr != nil {
		why = fmt.Sprintf("`modprobe sctp` fails here (%s) and %s", strings.TrimSpace(firstLine(string(out), modErr.Error())), why)
	}
	if cfg, err := kernelConfig(); err == nil && strings.Contains(cfg, "# CONFIG_IP_SCTP is not set") {
		why += "; the kernel is built without SCTP (CONFIG_IP_SCTP is not set)"
	}
	return false, "not available on this machine, so the `[Feature:SCTPConnectivity]` specs are skipped: " + why
}

// kernelConfig reads /proc/config.gz when the kernel exposes it.
func kernelConfig() (string, error) {
	f, err := os.Open("/proc/config.gz")
	if err != nil {
		return "", err
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		return "", err
	}
	b, err := io.ReadAll(z)
	return string(b), err
}

func firstLine(s, fallback string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return fallback
	}
	l, _, _ := strings.Cut(s, "\n")
	return l
}
