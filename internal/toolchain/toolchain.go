// Package toolchain locates the repository and builds the outside tools it pins
// (test/tools/versions.env, built by test/tools/build.sh into a cache keyed by version):
// kube-apiserver and etcd for the tests, helm for the chart. Shipped packages such as
// charts use it without depending on the test tree.
package toolchain

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// RepoRoot returns the repository's top directory, found from this source file.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// CacheDir is where outside components are built: $STRICTGATE_CACHE or
// ~/.cache/strictgate.
func CacheDir() string {
	if d := os.Getenv("STRICTGATE_CACHE"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = os.TempDir()
	}
	return filepath.Join(home, ".cache", "strictgate")
}

// Versions reads test/tools/versions.env.
func Versions() (map[string]string, error) {
	return ReadVersions(filepath.Join(RepoRoot(), "test", "tools", "versions.env"))
}

// ReadVersions reads a versions.env file: KEY=VALUE lines, # comments, values
// optionally quoted (the file is also sourced by shell scripts).
func ReadVersions(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read component versions: %w", err)
	}
	v := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, val, ok := strings.Cut(line, "="); ok {
			v[k] = strings.Trim(val, `"'`)
		}
	}
	return v, nil
}

// Build makes sure the components are built, building the missing ones.
func Build(components ...string) error {
	cmd := exec.Command(filepath.Join(RepoRoot(), "test", "tools", "build.sh"), components...)
	cmd.Env = append(os.Environ(), "STRICTGATE_CACHE="+CacheDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("build %s: %w\n%s", strings.Join(components, " "), err, out)
	}
	return nil
}
