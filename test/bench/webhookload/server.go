package webhookload

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"runtime"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/strictgate/strictgate/internal/contract"
	"github.com/strictgate/strictgate/webhook"
)

// Paths the load server serves.
const (
	PathMutatePod       = webhook.PathMutatePod
	PathValidateNP      = webhook.PathValidateNetworkPolicy
	PathGatekeeperNP    = "/gatekeeper" + webhook.PathValidateNetworkPolicy
	PathStats           = "/stats"
	serverCommonName    = "strictgate-webhook-load"
	serverCertValidity  = 24 * time.Hour
	serverReadHeaderMax = 10 * time.Second
)

// Handlers are the load server's handlers over f: strictgate's pod mutator and
// NetworkPolicy validator exactly as the webhook registers them (Instrumented), and
// the Gatekeeper-style baseline over the same rules behind the same HTTP stack.
type Handlers struct {
	MutatePod, ValidateNP, GatekeeperNP http.Handler
	// Strictgate and Baseline are the two NetworkPolicy handlers without HTTP, for the
	// agreement check.
	Strictgate, Baseline admission.Handler
}

// NewHandlers loads the built-in rules and wires the handlers.
func NewHandlers(ctx context.Context, f *Fixture) (*Handlers, error) {
	engine, err := webhook.NewHygieneEngine(ctx, webhook.DefaultNetworkPolicyConfig())
	if err != nil {
		return nil, err
	}
	reader := f.Reader()
	v := webhook.NewNetworkPolicyValidator(engine, reader, webhook.NetworkPolicyOptions{PodIndex: f.Index, Log: logr.Discard()})
	gk, err := NewGatekeeper(engine, f)
	if err != nil {
		return nil, err
	}
	m := &webhook.PodMutator{Scope: contract.Scope{OwnNamespace: "strictgate"}, Namespaces: webhook.CachedNamespaces{Cache: reader}}
	return &Handlers{
		MutatePod:    webhook.Instrumented(PathMutatePod, m),
		ValidateNP:   webhook.Instrumented(PathValidateNP, v),
		GatekeeperNP: webhook.Instrumented(PathGatekeeperNP, gk),
		Strictgate:   v,
		Baseline:     gk,
	}, nil
}

// Stats is what the server reports about itself at PathStats.
type Stats struct {
	Mallocs   uint64 `json:"mallocs"`
	HeapAlloc uint64 `json:"heapAlloc"`
}

// Serve serves the handlers over HTTPS (the webhook's TLS options: TLS 1.3, HTTP/1.1)
// on ln until ctx ends.
func Serve(ctx context.Context, ln net.Listener, h *Handlers, cert tls.Certificate) error {
	mux := http.NewServeMux()
	mux.Handle(PathMutatePod, h.MutatePod)
	mux.Handle(PathValidateNP, h.ValidateNP)
	mux.Handle(PathGatekeeperNP, h.GatekeeperNP)
	mux.HandleFunc(PathStats, func(w http.ResponseWriter, _ *http.Request) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		_ = json.NewEncoder(w).Encode(Stats{Mallocs: ms.Mallocs, HeapAlloc: ms.HeapAlloc})
	})
	tc := &tls.Config{Certificates: []tls.Certificate{cert}}
	for _, o := range webhook.TLSOptions() {
		o(tc)
	}
	srv := &http.Server{Handler: mux, TLSConfig: tc, ReadHeaderTimeout: serverReadHeaderMax}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// SelfSigned returns a serving certificate for 127.0.0.1 and the pool that trusts it.
func SelfSigned() (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: serverCommonName},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(serverCertValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
}

// AgreementRequests are the NetworkPolicy requests CheckAgreement is run on: the
// compliant policy and the refused one, in every namespace size.
func AgreementRequests() []admission.Request {
	var reqs []admission.Request
	for _, n := range PodCounts {
		reqs = append(reqs, NetworkPolicyRequest(Namespace(n), false), NetworkPolicyRequest(Namespace(n), true))
	}
	return reqs
}

// CheckAgreement judges every NetworkPolicy request with strictgate and the baseline
// and fails unless both decide the same (allowed, warnings, message): a baseline that
// answered differently would be measuring other work.
func CheckAgreement(ctx context.Context, h *Handlers, reqs []admission.Request) error {
	for _, r := range reqs {
		a, b := h.Strictgate.Handle(ctx, r), h.Baseline.Handle(ctx, r)
		if a.Allowed != b.Allowed || fmt.Sprint(a.Warnings) != fmt.Sprint(b.Warnings) || message(a) != message(b) {
			return fmt.Errorf("%s/%s: strictgate allowed=%v warnings=%q message=%q; baseline allowed=%v warnings=%q message=%q",
				r.Namespace, r.Name, a.Allowed, a.Warnings, message(a), b.Allowed, b.Warnings, message(b))
		}
	}
	return nil
}

func message(r admission.Response) string {
	if r.Result == nil {
		return ""
	}
	return r.Result.Message
}
