// Package charts drives the strictgate Helm chart from Go: it builds the pinned helm
// binary (test/tools/build.sh, version in test/tools/versions.env), renders the chart
// with given values and installs it. The chart tests, the end-to-end suites and the
// demo all go through it, so they exercise the chart exactly as a user's helm does.
package charts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/strictgate/strictgate/internal/toolchain"
)

// ChartName is the chart's name and the release name the documentation uses.
const ChartName = "strictgate"

// Dir is the chart's directory in this repository.
func Dir() string {
	return filepath.Join(toolchain.RepoRoot(), "charts", ChartName)
}

var (
	helmOnce sync.Once
	helmPath string
	helmErr  error
)

// HelmBinary returns the pinned helm binary, building it on first use (about two
// minutes) into $STRICTGATE_CACHE/helm-<version>/helm.
func HelmBinary() (string, error) {
	helmOnce.Do(func() {
		v, err := toolchain.Versions()
		if err != nil {
			helmErr = err
			return
		}
		version := v["HELM_VERSION"]
		if version == "" {
			helmErr = errors.New("test/tools/versions.env has no HELM_VERSION")
			return
		}
		p := filepath.Join(toolchain.CacheDir(), "helm-"+version, "helm")
		if _, err := os.Stat(p); err != nil {
			if helmErr = toolchain.Build("helm"); helmErr != nil {
				return
			}
		}
		helmPath = p
	})
	return helmPath, helmErr
}

// KubeVersion is the Kubernetes version the tests' clusters run (versions.env). helm
// built from the module proxy lacks the release ldflags that set its default, so
// `helm template` must be told.
func KubeVersion() (string, error) {
	v, err := toolchain.Versions()
	if err != nil {
		return "", err
	}
	if v["KUBERNETES_VERSION"] == "" {
		return "", errors.New("test/tools/versions.env has no KUBERNETES_VERSION")
	}
	return v["KUBERNETES_VERSION"], nil
}

// Helm runs helm against one cluster.
type Helm struct {
	// Bin is the helm binary (HelmBinary).
	Bin string
	// Kubeconfig is the cluster's kubeconfig file; empty for commands that need none.
	Kubeconfig string
	// Stderr, when set, also receives helm's stderr as it runs (progress for people).
	Stderr io.Writer
}

// New returns a Helm for the cluster behind kubeconfig, building helm if needed.
func New(kubeconfig string) (*Helm, error) {
	bin, err := HelmBinary()
	if err != nil {
		return nil, err
	}
	return &Helm{Bin: bin, Kubeconfig: kubeconfig}, nil
}

// Run runs helm with args and returns its stdout; the error carries stderr.
func (h *Helm) Run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, h.Bin, args...)
	// A private helm home keeps tests from reading or writing a person's repositories.
	home := filepath.Join(toolchain.CacheDir(), "helm-home")
	cmd.Env = append(os.Environ(),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	if h.Kubeconfig != "" {
		cmd.Env = append(cmd.Env, "KUBECONFIG="+h.Kubeconfig)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if h.Stderr != nil {
		cmd.Stderr = io.MultiWriter(&stderr, h.Stderr)
	}
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// ValuesFile writes values as a YAML values file in dir and returns its path.
func ValuesFile(dir string, values map[string]any) (string, error) {
	b, err := yaml.Marshal(values)
	if err != nil {
		return "", fmt.Errorf("encode values: %w", err)
	}
	f, err := os.CreateTemp(dir, "values-*.yaml")
	if err != nil {
		return "", fmt.Errorf("write values: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		return "", fmt.Errorf("write values: %w", err)
	}
	return f.Name(), nil
}

// Template renders the chart as release in namespace with values (nil = defaults)
// and returns the manifest stream.
func (h *Helm) Template(ctx context.Context, release, namespace string, values map[string]any) ([]byte, error) {
	kv, err := KubeVersion()
	if err != nil {
		return nil, err
	}
	args := []string{"template", release, Dir(), "--namespace", namespace, "--kube-version", kv}
	if values != nil {
		dir, err := os.MkdirTemp("", "strictgate-values-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		f, err := ValuesFile(dir, values)
		if err != nil {
			return nil, err
		}
		args = append(args, "--values", f)
	}
	return h.Run(ctx, args...)
}

// Upgrade runs `helm upgrade --install` of the chart as release into namespace
// (created when missing) with values and extra flags (e.g. "--wait", "--timeout=3m").
func (h *Helm) Upgrade(ctx context.Context, release, namespace string, values map[string]any, flags ...string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "strictgate-values-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if values == nil {
		values = map[string]any{}
	}
	f, err := ValuesFile(dir, values)
	if err != nil {
		return nil, err
	}
	args := append([]string{"upgrade", "--install", release, Dir(), "--namespace", namespace, "--create-namespace", "--values", f}, flags...)
	return h.Run(ctx, args...)
}

// Uninstall removes release from namespace and waits for its objects to be deleted.
func (h *Helm) Uninstall(ctx context.Context, release, namespace string) ([]byte, error) {
	return h.Run(ctx, "uninstall", release, "--namespace", namespace, "--wait", "--timeout=3m")
}

// Decode splits a manifest stream into objects, skipping empty documents.
func Decode(manifest []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("decode manifest document %d: %w", len(out)+1, err)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}
