// Package certs bootstraps the webhook's serving certificate without cert-manager: a
// private CA and a serving certificate for the webhook Service's DNS names, written as
// tls.crt, tls.key and ca.crt (the names controller-runtime and Secrets of type
// kubernetes.io/tls use). Production installs should prefer cert-manager
// (cert-manager.yaml beside this file); this is for development, tests and clusters
// without it.
package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// File names inside a certificate directory.
const (
	CertFile = "tls.crt"
	KeyFile  = "tls.key"
	CAFile   = "ca.crt"
)

// Bundle is a CA and a serving certificate signed by it, PEM-encoded.
type Bundle struct {
	CACert []byte
	Cert   []byte
	Key    []byte
}

// ServiceDNSNames are the names the API server may use to reach Service svc in ns.
func ServiceDNSNames(svc, ns string) []string {
	return []string{svc, svc + "." + ns, svc + "." + ns + ".svc", svc + "." + ns + ".svc.cluster.local"}
}

// Generate makes a fresh CA and a serving certificate for hosts (DNS names or IP
// addresses), both valid for validity from now.
func Generate(hosts []string, validity time.Duration) (*Bundle, error) {
	if len(hosts) == 0 {
		return nil, errors.New("generate certificate: no hosts: give the webhook Service's DNS names")
	}
	if validity <= 0 {
		return nil, fmt.Errorf("generate certificate: validity %v must be positive", validity)
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "strictgate-webhook-ca"},
		NotBefore:             now.Add(-time.Minute), // tolerate small clock skew
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("sign CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate serving key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("sign serving certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode serving key: %w", err)
	}
	return &Bundle{
		CACert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		Cert:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key:    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("read random serial: %v", err)) // crypto/rand does not fail on Linux
	}
	return n
}

// Write stores b in dir as tls.crt, tls.key (mode 0600) and ca.crt. Each file is
// replaced atomically (write + rename) so a watcher never reads half a file.
func Write(dir string, b *Bundle) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create certificate directory %s: %w", dir, err)
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{CAFile, b.CACert, 0o644}, {KeyFile, b.Key, 0o600}, {CertFile, b.Cert, 0o644}} {
		if err := writeAtomic(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Ensure keeps dir's certificate when it is usable — key and certificate match, it
// covers every host, and it stays valid for longer than renewBefore — and otherwise
// writes a fresh bundle. It returns the CA certificate (PEM) to put into the webhook
// configurations' caBundle, and whether it wrote new files.
func Ensure(dir string, hosts []string, validity, renewBefore time.Duration) (caPEM []byte, renewed bool, err error) {
	if ca, ok := usable(dir, hosts, renewBefore); ok {
		return ca, false, nil
	}
	b, err := Generate(hosts, validity)
	if err != nil {
		return nil, false, err
	}
	if err := Write(dir, b); err != nil {
		return nil, false, err
	}
	return b.CACert, true, nil
}

func usable(dir string, hosts []string, renewBefore time.Duration) ([]byte, bool) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, false
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, false
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil || time.Until(leaf.NotAfter) < renewBefore {
		return nil, false
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, false
	}
	for _, h := range hosts {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: h, Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			return nil, false
		}
	}
	return bytes.Clone(caPEM), true
}

// Hosts deduplicates and drops empty entries from a host list given on a command line.
func Hosts(in []string) []string {
	var out []string
	for _, h := range in {
		if h != "" && !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}

// WriteLinked stores b in dir the way the kubelet lays out a Secret volume: the files
// go into a fresh hidden directory, dir/..data is switched to it with one rename, and
// dir/tls.crt, tls.key and ca.crt are symlinks through ..data. A reader therefore sees
// the old certificate and key or the new ones, never a new key with an old certificate
// (as it can between the renames of Write). Earlier generations are removed.
func WriteLinked(dir string, b *Bundle) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create certificate directory %s: %w", dir, err)
	}
	gen, err := os.MkdirTemp(dir, "..gen-")
	if err != nil {
		return fmt.Errorf("write certificates into %s: %w", dir, err)
	}
	if err := os.Chmod(gen, 0o755); err != nil {
		return fmt.Errorf("write certificates into %s: %w", dir, err)
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{CAFile, b.CACert, 0o644}, {KeyFile, b.Key, 0o600}, {CertFile, b.Cert, 0o644}} {
		if err := writeAtomic(filepath.Join(gen, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	if err := replaceSymlink(filepath.Base(gen), filepath.Join(dir, "..data")); err != nil {
		return err
	}
	for _, name := range []string{CAFile, KeyFile, CertFile} {
		target := filepath.Join("..data", name)
		if cur, err := os.Readlink(filepath.Join(dir, name)); err == nil && cur == target {
			continue
		}
		if err := replaceSymlink(target, filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	old, _ := filepath.Glob(filepath.Join(dir, "..gen-*"))
	for _, o := range old {
		if o != gen {
			_ = os.RemoveAll(o) // garbage only; the next write retries
		}
	}
	return nil
}

// replaceSymlink makes link point at target, atomically (symlink + rename).
func replaceSymlink(target, link string) error {
	tmp := link + ".tmp"
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("link %s: %w", link, err)
	}
	if err := os.Rename(tmp, link); err != nil {
		return fmt.Errorf("link %s: %w", link, err)
	}
	return nil
}
