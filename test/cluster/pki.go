package cluster

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// identity is one client or serving certificate signed by the cluster CA.
type identity struct {
	file   string // pki/<file>.crt + .key
	cn     string
	orgs   []string
	server bool
	dns    []string
	ips    []net.IP
}

// identities are the cluster's users: one per component (RBAC's bootstrap policy knows
// system:kube-controller-manager, system:kube-scheduler, system:kube-proxy and the Node
// authorizer knows system:node:<name> in system:nodes), an admin, the API server's
// client identity towards the kubelet, and the two serving certificates.
func (c Config) identities() []identity {
	svcIP := firstIP(c.ServiceCIDR)
	return []identity{
		{file: "admin", cn: "strictgate-admin", orgs: []string{"system:masters"}},
		{file: "kube-controller-manager", cn: "system:kube-controller-manager"},
		{file: "kube-scheduler", cn: "system:kube-scheduler"},
		{file: "kube-proxy", cn: "system:kube-proxy"},
		{file: "kubelet", cn: "system:node:" + c.NodeName, orgs: []string{"system:nodes"}},
		// The API server is a cluster admin towards the kubelet (exec, logs, port-forward).
		{file: "apiserver-kubelet-client", cn: "kube-apiserver-kubelet-client", orgs: []string{"system:masters"}},
		{file: "apiserver", cn: "kube-apiserver", server: true,
			dns: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
			ips: c.apiServerIPs(svcIP)},
		// The controller-manager and scheduler would sign their own serving certificates.
		{file: "kube-controller-manager-serving", cn: "kube-controller-manager", server: true,
			dns: []string{"localhost"}, ips: []net.IP{net.IPv4(127, 0, 0, 1)}},
		{file: "kube-scheduler-serving", cn: "kube-scheduler", server: true,
			dns: []string{"localhost"}, ips: []net.IP{net.IPv4(127, 0, 0, 1)}},
		{file: "kubelet-serving", cn: c.NodeName, server: true,
			dns: []string{c.NodeName, "localhost"}, ips: c.withV6(net.IPv4(127, 0, 0, 1), c.NodeIP)},
	}
}

// apiServerIPs are the API server certificate's addresses; with IPv6 primary the
// kubernetes Service's ClusterIP (what pods connect to) is the first IPv6 service IP.
func (c Config) apiServerIPs(svcIP net.IP) []net.IP {
	ips := c.withV6(net.IPv4(127, 0, 0, 1), c.NodeIP, svcIP)
	if c.PrimaryFamily() == "ipv6" {
		ips = append(ips, firstIP(c.ServiceCIDRv6))
	}
	return ips
}

func (c Config) withV6(ips ...net.IP) []net.IP {
	if c.DualStack() {
		ips = append(ips, c.NodeIPv6)
	}
	return ips
}

// writePKI creates the CA, every identity and the service-account key pair, keeping
// what already exists so that kubeconfigs handed out stay valid across restarts.
func (c Config) writePKI() error {
	dir := filepath.Join(c.Dir, "pki")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	caCert, caKey, err := loadOrCreateCA(c.pki("ca"))
	if err != nil {
		return err
	}
	for _, id := range c.identities() {
		if exists(c.pki(id.file+".crt")) && exists(c.pki(id.file+".key")) {
			continue
		}
		if err := issue(caCert, caKey, id, c.pki(id.file)); err != nil {
			return fmt.Errorf("issue certificate %s: %w", id.file, err)
		}
	}
	if !exists(c.pki("sa.key")) {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return err
		}
		pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil {
			return err
		}
		if err := writePEM(c.pki("sa.pub"), "PUBLIC KEY", pub, 0o600); err != nil {
			return err
		}
		if err := writeKey(c.pki("sa.key"), k); err != nil {
			return err
		}
	}
	return nil
}

func loadOrCreateCA(base string) (*x509.Certificate, crypto.Signer, error) {
	if exists(base+".crt") && exists(base+".key") {
		cert, err := readCert(base + ".crt")
		if err != nil {
			return nil, nil, err
		}
		kb, err := os.ReadFile(base + ".key")
		if err != nil {
			return nil, nil, err
		}
		blk, _ := pem.Decode(kb)
		if blk == nil {
			return nil, nil, fmt.Errorf("%s.key holds no PEM block", base)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("parse %s.key: %w", base, err)
		}
		return cert, k.(crypto.Signer), nil
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "strictgate-cluster-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return nil, nil, err
	}
	if err := writePEM(base+".crt", "CERTIFICATE", der, 0o644); err != nil {
		return nil, nil, err
	}
	if err := writeKey(base+".key", k); err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, k, err
}

func issue(ca *x509.Certificate, caKey crypto.Signer, id identity, base string) error {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: id.cn, Organization: id.orgs},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(5, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		DNSNames:     id.dns,
		IPAddresses:  id.ips,
	}
	if id.server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
	if err != nil {
		return err
	}
	if err := writePEM(base+".crt", "CERTIFICATE", der, 0o644); err != nil {
		return err
	}
	return writeKey(base+".key", k)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

func writeKey(path string, k crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return err
	}
	return writePEM(path, "PRIVATE KEY", der, 0o600)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s holds no PEM block", path)
	}
	return x509.ParseCertificate(blk.Bytes)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// firstIP is the first usable address of a CIDR: the kubernetes Service's ClusterIP.
func firstIP(n *net.IPNet) net.IP {
	ip := make(net.IP, len(n.IP))
	copy(ip, n.IP)
	ip[len(ip)-1]++
	return ip
}
