package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/strictgate/strictgate/certs"
	"github.com/strictgate/strictgate/test/controlplane"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestWebhookCommand runs `strictgate webhook` in-process against a real API server:
// flags parse, the self-signed bootstrap writes a certificate, the process becomes
// ready and stops cleanly on cancel. The handlers themselves are tested in ./webhook.
func TestWebhookCommand(t *testing.T) {
	env := &envtest.Environment{}
	controlplane.Start(t, env)
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	certDir := filepath.Join(dir, "certs")
	probe := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--namespace=default",
		"--cert-dir=" + certDir,
		"--self-signed-hosts=127.0.0.1,localhost",
		"--host=127.0.0.1", fmt.Sprintf("--port=%d", freePort(t)),
		"--metrics-bind-address=0",
		"--health-probe-bind-address=" + probe,
		"--leader-elect=false",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runWebhook(ctx, args, io.Discard, io.Discard) }()

	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + probe + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("webhook exited before it was ready: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready within 60s (last: %v)", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, f := range []string{certs.CertFile, certs.KeyFile, certs.CAFile} {
		if _, err := os.Stat(filepath.Join(certDir, f)); err != nil {
			t.Errorf("self-signed bootstrap: %v", err)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("webhook returned %v after cancel", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("webhook did not stop within 60s of cancel")
	}
}

func TestWebhookCommandRejectsBadFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--port=0"}, "--port"},
		{[]string{"--service-account=nobody"}, "--service-account"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
	} {
		err := runWebhook(context.Background(), tt.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v, want an error about %s", tt.args, err, tt.want)
		}
	}
}
