package certs

import (
	"bytes"
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func mustGenerate(t *testing.T, validity time.Duration) *Bundle {
	t.Helper()
	b, err := Generate([]string{"strictgate-webhook.strictgate.svc"}, validity)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func countCAs(t *testing.T, bundle []byte) int {
	t.Helper()
	cs, err := parseCerts(bundle)
	if err != nil {
		t.Fatal(err)
	}
	return len(cs)
}

func TestMergeCABundle(t *testing.T) {
	now := time.Now()
	a, b, c, d, e := mustGenerate(t, time.Hour), mustGenerate(t, time.Hour), mustGenerate(t, time.Hour), mustGenerate(t, time.Hour), mustGenerate(t, time.Hour)
	short := mustGenerate(t, time.Minute)
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	tests := []struct {
		name    string
		current []byte
		at      time.Time
		wantN   int
	}{
		{"empty bundle", nil, now, 1},
		{"garbage bundle is replaced", []byte("not PEM"), now, 1},
		{"previous CA kept", a.CACert, now, 2},
		{"current CA not duplicated", cat(b.CACert, a.CACert), now, 2},
		{"expired previous CA dropped", cat(a.CACert, short.CACert), now.Add(10 * time.Minute), 2},
		{"serving certificates are not CAs", cat(a.CACert, a.Cert), now, 2},
		{"at most MaxBundleCAs", cat(a.CACert, c.CACert, d.CACert, e.CACert), now, MaxBundleCAs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MergeCABundle(tt.current, b.CACert, tt.at)
			if err != nil {
				t.Fatal(err)
			}
			if n := countCAs(t, got); n != tt.wantN {
				t.Fatalf("%d CAs, want %d", n, tt.wantN)
			}
			if !bytes.HasPrefix(got, b.CACert) {
				t.Fatal("the current CA is not first")
			}
			if !Trusted(got, b.Cert, now) {
				t.Fatal("the merged bundle does not trust the current CA's certificate")
			}
		})
	}
	if _, err := MergeCABundle(nil, a.Cert, now); err == nil {
		t.Fatal("a serving certificate accepted as the CA")
	}
	if _, err := MergeCABundle(nil, []byte("x"), now); err == nil {
		t.Fatal("garbage accepted as the CA")
	}
}

func TestTrusted(t *testing.T) {
	now := time.Now()
	a, b := mustGenerate(t, time.Hour), mustGenerate(t, time.Hour)
	for _, tt := range []struct {
		name         string
		bundle, cert []byte
		at           time.Time
		want         bool
	}{
		{"own CA", a.CACert, a.Cert, now, true},
		{"other CA", b.CACert, a.Cert, now, false},
		{"both CAs", append(append([]byte{}, b.CACert...), a.CACert...), a.Cert, now, true},
		{"expired", a.CACert, a.Cert, now.Add(2 * time.Hour), false},
		{"empty bundle", nil, a.Cert, now, false},
		{"garbage certificate", a.CACert, []byte("x"), now, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := Trusted(tt.bundle, tt.cert, tt.at); got != tt.want {
				t.Fatalf("Trusted = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWriteLinked(t *testing.T) {
	dir := t.TempDir()
	a, b := mustGenerate(t, time.Hour), mustGenerate(t, time.Hour)
	for _, want := range []*Bundle{a, b, a} {
		if err := WriteLinked(dir, want); err != nil {
			t.Fatal(err)
		}
		if _, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)); err != nil {
			t.Fatalf("pair after WriteLinked: %v", err)
		}
		got, err := os.ReadFile(filepath.Join(dir, CertFile))
		if err != nil || !bytes.Equal(got, want.Cert) {
			t.Fatalf("tls.crt is not the one written (%v)", err)
		}
		gens, _ := filepath.Glob(filepath.Join(dir, "..gen-*"))
		if len(gens) != 1 {
			t.Fatalf("%d generations left, want 1", len(gens))
		}
	}
}
