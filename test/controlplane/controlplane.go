// Package controlplane gives Go tests a real kube-apiserver and etcd.
//
// The binaries are built from the Go module proxy by test/tools/build.sh into a cache
// keyed by version (first use: several minutes; later: nothing to do) and started
// through controller-runtime's envtest, so tests talk to the same API server, admission
// chain and validation that a cluster has — no fake clients.
package controlplane

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/strictgate/strictgate/internal/toolchain"
)

// Components are what envtest needs in its binary assets directory.
var Components = []string{"etcd", "kube-apiserver", "kubectl"}

var (
	assetsOnce sync.Once
	assetsDir  string
	assetsErr  error
)

// RepoRoot returns the repository's top directory (toolchain.RepoRoot).
func RepoRoot() string { return toolchain.RepoRoot() }

// CacheDir is where outside components are built (toolchain.CacheDir).
func CacheDir() string { return toolchain.CacheDir() }

// Versions reads test/tools/versions.env (toolchain.Versions).
func Versions() (map[string]string, error) { return toolchain.Versions() }

// BinaryPath returns where build.sh puts component, without building it.
func BinaryPath(component string) (string, error) {
	v, err := Versions()
	if err != nil {
		return "", err
	}
	version := v["KUBERNETES_VERSION"]
	if component == "etcd" {
		version = v["ETCD_VERSION"]
	}
	return filepath.Join(CacheDir(), component+"-"+version, component), nil
}

// Build makes sure the components are built, building the missing ones (toolchain.Build).
func Build(components ...string) error { return toolchain.Build(components...) }

// AssetsDir returns a directory holding etcd, kube-apiserver and kubectl as envtest
// expects them, building them first if needed.
func AssetsDir() (string, error) {
	assetsOnce.Do(func() {
		if assetsErr = Build(Components...); assetsErr != nil {
			return
		}
		v, err := Versions()
		if err != nil {
			assetsErr = err
			return
		}
		dir := filepath.Join(CacheDir(), "envtest-"+v["KUBERNETES_VERSION"]+"-etcd-"+v["ETCD_VERSION"])
		if err := os.MkdirAll(dir, 0o755); err != nil {
			assetsErr = err
			return
		}
		for _, c := range Components {
			src, err := BinaryPath(c)
			if err != nil {
				assetsErr = err
				return
			}
			link := filepath.Join(dir, c)
			if cur, err := os.Readlink(link); err == nil && cur == src {
				continue
			}
			_ = os.Remove(link)
			if err := os.Symlink(src, link); err != nil {
				assetsErr = fmt.Errorf("link %s: %w", c, err)
				return
			}
		}
		assetsDir = dir
	})
	return assetsDir, assetsErr
}

// Start starts env (a plain envtest.Environment when nil) on the real binaries and stops
// it when the test ends. It fails the test when the control plane cannot start.
func Start(tb testing.TB, env *envtest.Environment) *rest.Config {
	tb.Helper()
	dir, err := AssetsDir()
	if err != nil {
		tb.Fatalf("control plane binaries: %v", err)
	}
	if env == nil {
		env = &envtest.Environment{}
	}
	env.BinaryAssetsDirectory = dir
	env.ErrorIfCRDPathMissing = true
	cfg, err := env.Start()
	if err != nil {
		tb.Fatalf("start kube-apiserver + etcd: %v", err)
	}
	tb.Cleanup(func() {
		if err := env.Stop(); err != nil {
			tb.Logf("stop control plane: %v", err)
		}
	})
	return cfg
}
