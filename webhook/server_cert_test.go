package webhook

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/strictgate/strictgate/certs"
)

// TestNewManagerNamesUnusableCertificate: an unusable serving certificate fails the
// start with the files named, not with only the TLS library's words (found by
// test/webhookprobe: "strictgate webhook: tls: private key does not match public key").
func TestNewManagerNamesUnusableCertificate(t *testing.T) {
	a, err := certs.Generate([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, err := certs.Generate([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name      string
		cert, key []byte
	}{
		{"missing", nil, nil},
		{"key of another certificate", a.Cert, b.Key},
		{"garbage", []byte("nope"), []byte("nope")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.cert != nil {
				_ = os.WriteFile(filepath.Join(dir, certs.CertFile), tt.cert, 0o600)
				_ = os.WriteFile(filepath.Join(dir, certs.KeyFile), tt.key, 0o600)
			}
			cfg := DefaultConfig()
			cfg.CertDir = dir
			_, err := NewManager(context.Background(), &rest.Config{Host: "https://127.0.0.1:1"}, cfg)
			if err == nil || !strings.Contains(err.Error(), "tls.crt") || !strings.Contains(err.Error(), dir) {
				t.Fatalf("NewManager: %v, want an error naming %s/tls.crt", err, dir)
			}
		})
	}
}
