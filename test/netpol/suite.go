// Package netpol runs the upstream Kubernetes NetworkPolicy e2e suite — the
// `[sig-network] Netpol` specs of k8s.io/kubernetes/test/e2e/network/netpol, unmodified —
// against strictgate on the one-node cluster, and turns its JUnit report into
// CONFORMANCE.md. The suite binary and agnhost are built from the Go module proxy at the
// cluster's Kubernetes version by test/tools/build.sh (components e2e-netpol, agnhost);
// agnhost is packed into an image under the exact reference the suite's image manifest
// names, so nothing is ever pulled.
package netpol

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/strictgate/strictgate/internal/toolchain"
	"github.com/strictgate/strictgate/test/images"
)

// Component is the build.sh component of the suite binary the runs use (see
// test/netpol/README.md for why this one).
const Component = "e2e-netpol"

// Suite is the built suite binary and agnhost of one Kubernetes version.
type Suite struct {
	// KubernetesVersion is the version both were built from (versions.env).
	KubernetesVersion string
	// Binary is the suite binary: the entry point of k8s.io/kubernetes/test/e2e with
	// only the netpol specs linked in (see test/tools/build.sh, e2e-netpol).
	Binary string
	// Agnhost is the static agnhost binary the suite's pods run.
	Agnhost string
	// Ginkgo is Ginkgo's CLI at the version the suite uses, for parallel runs.
	Ginkgo string
	// BuildTook is how long build.sh ran (near zero when both were cached).
	BuildTook time.Duration
}

// Build builds (once; cached in cacheDir keyed by version) the suite binary and agnhost
// with test/tools/build.sh from toolsDir. Progress and build errors go to out.
func Build(ctx context.Context, toolsDir, cacheDir string, out io.Writer) (Suite, error) {
	v, err := toolchain.ReadVersions(filepath.Join(toolsDir, "versions.env"))
	if err != nil {
		return Suite{}, err
	}
	k := v["KUBERNETES_VERSION"]
	if k == "" {
		return Suite{}, fmt.Errorf("versions.env has no KUBERNETES_VERSION")
	}
	s := Suite{
		KubernetesVersion: k,
		Binary:            filepath.Join(cacheDir, Component+"-"+k, "e2e.test"),
		Agnhost:           filepath.Join(cacheDir, "agnhost-"+k, "agnhost"),
		Ginkgo:            filepath.Join(cacheDir, "ginkgo-"+k, "ginkgo"),
	}
	if !executable(s.Binary) || !executable(s.Agnhost) || !executable(s.Ginkgo) {
		fmt.Fprintf(out, "netpol: building the %s netpol e2e suite and agnhost into %s (first time: several minutes)\n", k, cacheDir)
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, filepath.Join(toolsDir, "build.sh"), Component, "agnhost", "ginkgo")
	cmd.Env = append(os.Environ(), "STRICTGATE_CACHE="+cacheDir)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return Suite{}, fmt.Errorf("build %s agnhost ginkgo: %w", Component, err)
	}
	s.BuildTook = time.Since(start)
	return s, nil
}

// Description says what the suite binary is, for CONFORMANCE.md.
func (s Suite) Description() string {
	if Component == "e2e-full" {
		return "`e2e.test` of k8s.io/kubernetes/test/e2e@" + s.KubernetesVersion + ", focused on the netpol specs"
	}
	return "the entry point of k8s.io/kubernetes/test/e2e@" + s.KubernetesVersion + " with only its `network/netpol` spec package linked (test/tools/build.sh e2e-netpol)"
}

// agnhostRef matches the suite's agnhost reference in --list-images output. The
// manifest also lists older and private-registry agnhosts; the one the netpol pods run
// is the one whose tag is agnhost's own VERSION at this Kubernetes version.
var agnhostRef = regexp.MustCompile(`^(\S+/e2e-test-images/agnhost):(\S+)$`)

// AgnhostRef returns the image reference the suite's pods use for agnhost, read from
// the suite's own image manifest (`e2e.test --list-images`) and checked against the
// version of the agnhost source that was built (test/images/agnhost/VERSION of the same
// k8s.io/kubernetes module): the two must agree, or the pods would run another agnhost
// than the one built.
func (s Suite) AgnhostRef(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, s.Binary, "--list-images").Output()
	if err != nil {
		return "", fmt.Errorf("%s --list-images: %w", s.Binary, err)
	}
	want, err := agnhostSourceVersion(ctx, s.KubernetesVersion)
	if err != nil {
		return "", err
	}
	var seen []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := agnhostRef.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		seen = append(seen, m[0])
		if m[2] == want {
			return m[0], nil
		}
	}
	return "", fmt.Errorf("the suite's image manifest has no agnhost:%s (agnhost's VERSION at %s); it lists %v", want, s.KubernetesVersion, seen)
}

// agnhostSourceVersion reads test/images/agnhost/VERSION from the module cache.
func agnhostSourceVersion(ctx context.Context, k8sVersion string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "mod", "download", "-json", "k8s.io/kubernetes@"+k8sVersion).Output()
	if err != nil {
		return "", fmt.Errorf("locate k8s.io/kubernetes@%s in the module cache: %w", k8sVersion, err)
	}
	m := regexp.MustCompile(`"Dir":\s*"([^"]+)"`).FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("go mod download k8s.io/kubernetes@%s: no Dir in %s", k8sVersion, out)
	}
	b, err := os.ReadFile(filepath.Join(string(m[1]), "test", "images", "agnhost", "VERSION"))
	if err != nil {
		return "", fmt.Errorf("read agnhost's VERSION: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// AgnhostImage packs the built agnhost into an image tarball in dir under ref (the
// suite's own reference, e.g. registry.k8s.io/e2e-test-images/agnhost:2.66.1), with
// the binary at /agnhost where the suite's pods run it from.
func (s Suite) AgnhostImage(dir, ref string) (images.Image, error) {
	name := strings.NewReplacer("/", "_", ":", "_").Replace(ref)
	return images.FromBinary(images.Spec{Ref: ref, Binary: s.Agnhost, Path: "/agnhost"}, filepath.Join(dir, name+".tar"))
}

func executable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode()&0o111 != 0
}
