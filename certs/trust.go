package certs

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"
)

// MaxBundleCAs bounds how many CAs a caBundle keeps: the current one and the previous
// ones that are still valid (a CA is rotated long before it expires, so normally two).
const MaxBundleCAs = 4

// MergeCABundle returns the caBundle the API server should trust once ca is the current
// CA: ca first, then the CAs of current that are still valid at now, without
// duplicates, at most MaxBundleCAs. Keeping the previous CA is what makes a CA rotation
// seamless: webhook replicas still serving a certificate it signed stay trusted until
// they switch (see Trusted). Certificates in current that cannot be parsed or are not
// CAs are dropped.
func MergeCABundle(current, ca []byte, now time.Time) ([]byte, error) {
	fresh, err := parseCerts(ca)
	if err != nil || len(fresh) != 1 || !fresh[0].IsCA {
		return nil, fmt.Errorf("current CA: want one CA certificate in PEM (%d found): %v", len(fresh), err)
	}
	keep := []*x509.Certificate{fresh[0]}
	old, _ := parseCerts(current) // a broken bundle is replaced, not kept
	for _, c := range old {
		if !c.IsCA || now.After(c.NotAfter) || len(keep) == MaxBundleCAs {
			continue
		}
		if !slices.ContainsFunc(keep, func(k *x509.Certificate) bool { return bytes.Equal(k.Raw, c.Raw) }) {
			keep = append(keep, c)
		}
	}
	var out bytes.Buffer
	for _, c := range keep {
		if err := pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}); err != nil {
			return nil, err
		}
	}
	return out.Bytes(), nil
}

// Trusted reports whether the serving certificate cert (PEM, leaf first) verifies
// against the CAs in bundle at now, for server authentication. Names are not checked:
// the question is only whether the API server, holding bundle, would accept the chain.
func Trusted(bundle, cert []byte, now time.Time) bool {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundle) {
		return false
	}
	chain, err := parseCerts(cert)
	if err != nil || len(chain) == 0 {
		return false
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err = chain[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err == nil
}

func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return out, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no certificate")
	}
	return out, nil
}
