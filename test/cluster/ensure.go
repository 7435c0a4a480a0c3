package cluster

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/strictgate/strictgate/internal/testenv"
)

var (
	ensureOnce    sync.Once
	ensureCluster *Cluster
	ensureErr     error
	// lockFile stays open (shared lock) for the test process' life: Down in a test
	// takes it exclusively, so it never pulls the cluster from under another package's
	// tests running in parallel.
	lockFile *os.File
)

// Ensure returns the one-node cluster for a test, starting it on first use in this
// process (building components on the very first use ever: ~15 minutes) and reusing
// it when it already runs, also from an earlier `make cluster-up`. It skips the test
// when not root. The cluster keeps running after the tests; `make cluster-down` stops it.
func Ensure(t testing.TB) *Cluster {
	t.Helper()
	testenv.RequireRoot(t, "uses the one-node cluster (network namespaces, routes, nftables, containers)")
	ensureOnce.Do(func() {
		cfg, err := DefaultConfig()
		if err != nil {
			ensureErr = err
			return
		}
		bins, err := cfg.binaries()
		if err != nil {
			ensureErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
		defer cancel()
		// Shared while the cluster is healthy, so test processes of several packages
		// use it at once; exclusive only to start (or restart) it.
		if lockFile, err = lock(cfg, syscall.LOCK_SH, 45*time.Minute); err != nil {
			ensureErr = err
			return
		}
		if !healthy(cfg.status(ctx, bins)) {
			if ensureErr = flockWait(lockFile, syscall.LOCK_EX, 45*time.Minute); ensureErr != nil {
				return
			}
			defer syscall.Flock(int(lockFile.Fd()), syscall.LOCK_SH)
		}
		ensureCluster, ensureErr = Up(ctx, cfg, os.Stderr)
	})
	if ensureErr != nil {
		t.Fatalf("one-node cluster: %v", ensureErr)
	}
	return ensureCluster
}

// WithUpLock runs f (an Up) under the cluster lock the way Ensure takes it: shared when
// the cluster is healthy (a reuse must not wait for running tests), exclusive when it
// has to be started.
func WithUpLock(ctx context.Context, cfg Config, timeout time.Duration, f func() error) error {
	bins, err := cfg.binaries()
	if err != nil {
		return err
	}
	l, err := lock(cfg, syscall.LOCK_SH, timeout)
	if err != nil {
		return err
	}
	defer l.Close()
	if !healthy(cfg.status(ctx, bins)) {
		if err := flockWait(l, syscall.LOCK_EX, timeout); err != nil {
			return err
		}
	}
	return f()
}

// WithExclusiveLock runs f while no test process uses the cluster (tests hold the
// lock shared from Ensure until they exit), waiting up to timeout for them.
func WithExclusiveLock(cfg Config, timeout time.Duration, f func() error) error {
	l, err := lock(cfg, syscall.LOCK_EX, timeout)
	if err != nil {
		return err
	}
	defer l.Close()
	return f()
}

// EnsureExclusive is Ensure for suites that change the cluster for everyone (a helm
// install of strictgate, a chained CNI plugin, webhooks): it waits until no other test
// process uses the cluster and keeps every other process' Ensure waiting until this
// process exits, so tests that expect plain Kubernetes never see those changes.
func EnsureExclusive(t testing.TB) *Cluster {
	t.Helper()
	cl := Ensure(t)
	exclusiveOnce.Do(func() {
		fmt.Fprintln(os.Stderr, "cluster: waiting for other test processes to finish using the cluster")
		exclusiveErr = flockWait(lockFile, syscall.LOCK_EX, 45*time.Minute)
		if exclusiveErr == nil {
			// The wait may have let another process restart the cluster.
			ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
			defer cancel()
			var again *Cluster
			if again, exclusiveErr = Up(ctx, cl.Config, os.Stderr); exclusiveErr == nil {
				ensureCluster, exclusiveDone = again, true
			}
		}
	})
	if exclusiveErr != nil {
		t.Fatalf("one-node cluster, exclusive: %v", exclusiveErr)
	}
	return ensureCluster
}

var (
	exclusiveOnce sync.Once
	exclusiveErr  error
	exclusiveDone bool
)

func exclusiveHeld() bool { return exclusiveDone }

// lock opens the cluster's lock file and takes how (LOCK_EX or LOCK_SH), polling so a
// wait can end.
func lock(cfg Config, how int, timeout time.Duration) (*os.File, error) {
	if err := os.MkdirAll(cfg.CacheDir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(cfg.CacheDir, "cluster.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := flockWait(f, how, timeout); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func flockWait(f *os.File, how int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for i := 0; ; i++ {
		if i == 1 {
			what := "shared"
			if how == syscall.LOCK_EX {
				what = "exclusive"
			}
			fmt.Fprintf(os.Stderr, "cluster: waiting for %s use of the cluster (other test processes hold %s)\n", what, f.Name())
		}
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if err != syscall.EWOULDBLOCK {
			return fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lock %s: still held by other users of the cluster after %s", f.Name(), timeout)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// Exec runs cmd in a container of a pod through the API server and the kubelet (the
// same path as `kubectl exec`) and returns its output. A non-zero exit is an error.
func (cl *Cluster) Exec(ctx context.Context, namespace, pod, container string, cmd ...string) (stdout, stderr string, err error) {
	req := cl.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(namespace).Name(pod).
		SubResource("exec").VersionedParams(&corev1.PodExecOptions{
		Container: container, Command: cmd, Stdout: true, Stderr: true,
	}, scheme.ParameterCodec)
	ex, err := remotecommand.NewSPDYExecutor(cl.RESTConfig, "POST", req.URL())
	if err != nil {
		return "", "", fmt.Errorf("exec in %s/%s: %w", namespace, pod, err)
	}
	var o, e bytes.Buffer
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &o, Stderr: &e})
	if err != nil {
		err = fmt.Errorf("exec %v in %s/%s: %w (stderr: %s)", cmd, namespace, pod, err, e.String())
	}
	return o.String(), e.String(), err
}

// Logs returns a container's log through the API server (`kubectl logs`).
func (cl *Cluster) Logs(ctx context.Context, namespace, pod, container string) (string, error) {
	b, err := cl.Client.CoreV1().Pods(namespace).GetLogs(pod, &corev1.PodLogOptions{Container: container}).DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("logs of %s/%s: %w", namespace, pod, err)
	}
	return string(b), nil
}
