package charts

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/strictgate/strictgate/test/controlplane"
)

// upstreamCRDs are the CustomResourceDefinitions the chart's optional objects need, as
// their projects publish them in their Go modules (versions in test/tools/versions.env):
// validating our Issuer, Certificate, ServiceMonitor and PrometheusRule against the real
// schemas, not against copies of our own.
var upstreamCRDs = []struct {
	versionKey, module, dir string
	files                   []string
}{
	{"CERT_MANAGER_VERSION", "github.com/cert-manager/cert-manager", "deploy/crds",
		[]string{"cert-manager.io_issuers.yaml", "cert-manager.io_clusterissuers.yaml", "cert-manager.io_certificates.yaml", "cert-manager.io_certificaterequests.yaml"}},
	{"PROMETHEUS_OPERATOR_VERSION", "github.com/prometheus-operator/prometheus-operator", "example/prometheus-operator-crd",
		[]string{"monitoring.coreos.com_servicemonitors.yaml", "monitoring.coreos.com_prometheusrules.yaml"}},
}

// upstreamCRDPaths downloads the modules through the Go module proxy (cached in the
// module cache like any dependency) and returns the CRD files' paths.
func upstreamCRDPaths(t *testing.T) []string {
	t.Helper()
	versions, err := controlplane.Versions()
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, c := range upstreamCRDs {
		version := versions[c.versionKey]
		if version == "" {
			t.Fatalf("test/tools/versions.env has no %s", c.versionKey)
		}
		dir, err := moduleDir(c.module, version)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range c.files {
			p := filepath.Join(dir, c.dir, f)
			if _, err := os.Stat(p); err != nil {
				t.Fatalf("%s@%s has no CRD %s/%s: %v", c.module, version, c.dir, f, err)
			}
			paths = append(paths, p)
		}
	}
	return paths
}

// moduleDir runs `go mod download` outside any module, so the repository's go.mod is
// not involved.
func moduleDir(module, version string) (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", module+"@"+version)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GO111MODULE=on")
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr == nil && info.Error != "" {
		return "", fmt.Errorf("download %s@%s: %s", module, version, info.Error)
	}
	if err != nil {
		return "", fmt.Errorf("download %s@%s: %w", module, version, err)
	}
	if info.Dir == "" {
		return "", fmt.Errorf("download %s@%s: no directory in %s", module, version, out)
	}
	return info.Dir, nil
}
