package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

func TestGenerateServesTLSToClientsTrustingTheCA(t *testing.T) {
	b, err := Generate([]string{"strictgate-webhook.strictgate.svc", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(b.Cert, b.Key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b.CACert)
	for _, name := range []string{"strictgate-webhook.strictgate.svc", "127.0.0.1"} {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: name})
		if err != nil {
			t.Fatalf("dial as %s: %v", name, err)
		}
		c.Close()
	}
	if _, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "other.example"}); err == nil {
		t.Fatal("certificate accepted for a name it does not cover")
	}
}

func TestGenerateRejectsBadInput(t *testing.T) {
	if _, err := Generate(nil, time.Hour); err == nil {
		t.Fatal("no hosts accepted")
	}
	if _, err := Generate([]string{"x"}, 0); err == nil {
		t.Fatal("zero validity accepted")
	}
}

func TestEnsure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	hosts := ServiceDNSNames("strictgate-webhook", "strictgate")
	ca1, renewed, err := Ensure(dir, hosts, time.Hour, time.Minute)
	if err != nil || !renewed {
		t.Fatalf("first Ensure: renewed=%v err=%v", renewed, err)
	}
	st, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v, want 0600", st.Mode().Perm())
	}
	ca2, renewed, err := Ensure(dir, hosts, time.Hour, time.Minute)
	if err != nil || renewed || !bytes.Equal(ca1, ca2) {
		t.Fatalf("second Ensure rewrote a usable certificate: renewed=%v err=%v", renewed, err)
	}
	// A new name, or a certificate inside its renewal window, means new files.
	if _, renewed, err := Ensure(dir, append(hosts, "extra.example"), time.Hour, time.Minute); err != nil || !renewed {
		t.Fatalf("Ensure with a new host: renewed=%v err=%v", renewed, err)
	}
	if _, renewed, err := Ensure(dir, hosts, time.Hour, 2*time.Hour); err != nil || !renewed {
		t.Fatalf("Ensure inside the renewal window: renewed=%v err=%v", renewed, err)
	}
	// A corrupted key is replaced rather than served.
	if err := os.WriteFile(filepath.Join(dir, KeyFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, renewed, err := Ensure(dir, hosts, time.Hour, time.Minute); err != nil || !renewed {
		t.Fatalf("Ensure with a broken key: renewed=%v err=%v", renewed, err)
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)); err != nil {
		t.Fatalf("files after Ensure do not load: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) != 0 {
		t.Fatalf("temporary files left behind: %v", left)
	}
}

func TestHosts(t *testing.T) {
	got := Hosts([]string{"a", "", "b", "a"})
	if len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Fatalf("Hosts = %v", got)
	}
	if n := net.ParseIP(ServiceDNSNames("s", "n")[3]); n != nil {
		t.Fatal("service name parsed as IP")
	}
}

func TestCertManagerExampleParses(t *testing.T) {
	// The example is documentation people apply; keep it well-formed YAML naming the
	// Secret the chart mounts.
	b, err := os.ReadFile("cert-manager.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs := bytes.Split(b, []byte("\n---\n"))
	if len(docs) != 4 {
		t.Fatalf("cert-manager.yaml has %d documents, want 4", len(docs))
	}
	for i, d := range docs {
		var m map[string]any
		if err := yaml.Unmarshal(d, &m); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		if m["apiVersion"] != "cert-manager.io/v1" {
			t.Fatalf("document %d: apiVersion %v", i, m["apiVersion"])
		}
	}
	if !bytes.Contains(b, []byte("secretName: strictgate-webhook-tls")) {
		t.Fatal("serving Secret name changed: update the chart and webhook/README.md too")
	}
}
