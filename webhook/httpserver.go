package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
)

// Timeouts of every HTTP listener of the webhook process (admission, metrics, health
// probes). controller-runtime's servers allow 32s for headers, 1 MiB of them, no read
// or write timeout and any number of connections, so a client sending one header byte
// every few seconds held a goroutine and a file descriptor for as long as it liked.
// Variables, not constants, so that tests can shorten them.
var (
	// readHeaderTimeout bounds the TLS handshake and the request headers. The API
	// server sends a review's headers in one write.
	readHeaderTimeout = 10 * time.Second
	// readTimeout and writeTimeout bound a whole request and its answer: the API
	// server gives up on a webhook after at most 30s, so nothing useful takes longer.
	// (serveAdmission moves the read deadline to bodyReadTimeout after the headers.)
	readTimeout  = 35 * time.Second
	writeTimeout = 35 * time.Second
	// idleTimeout closes kept-alive connections nobody uses; the API server reopens
	// one when it needs it.
	idleTimeout = 60 * time.Second
	// shutdownTimeout bounds the graceful shutdown of a listener when the context ends.
	shutdownTimeout = 30 * time.Second
)

// maxHeaderBytes caps the request headers (net/http allows 4 KiB of slack on top).
// Admission requests, scrapes and probes carry a few hundred bytes of headers.
const maxHeaderBytes = 16 << 10

// DefaultMaxConnections is how many connections each listener holds open at once; a
// further client waits in the kernel's accept queue until one closes. It is far above
// what the API servers, Prometheus and the kubelet open, and keeps a flood of
// connections from exhausting the process's file descriptors.
const DefaultMaxConnections = 1024

// hardenedServer is the one http.Server constructor for every listener of this
// process. It serves HTTP/1.1 only: an empty TLSNextProto turns off net/http's HTTP/2
// support, whose connections are not bounded by ReadHeaderTimeout the same way (and
// which brings stream-reset floods, CVE-2023-44487). The API server, Prometheus and
// the kubelet all speak HTTP/1.1; TLSOptions offers only http/1.1 over ALPN as well.
func hardenedServer(ctx context.Context, handler http.Handler) *http.Server {
	return &http.Server{
		Handler:           handler,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
}

// listenLimited listens on addr (TCP) and accepts at most maxConns connections at a
// time; Accept blocks until one of them is closed.
func listenLimited(ctx context.Context, addr string, maxConns int) (net.Listener, error) {
	l, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return netutil.LimitListener(l, maxConns), nil
}

// serveUntilDone serves l with srv until ctx ends, then shuts srv down gracefully.
func serveUntilDone(ctx context.Context, srv *http.Server, l net.Listener) error {
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		_ = srv.Shutdown(sctx) // a deadline error only means connections were cut
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	<-stopped
	return nil
}

// plainServer is a manager runnable serving h over plain HTTP on addr through
// hardenedServer. It is a *manager.Server so that the manager starts it first, with
// the webhook server, before waiting for caches (liveness must answer meanwhile). The
// port is bound now, as controller-runtime does for its probe listener.
func plainServer(ctx context.Context, name, addr string, maxConns int, h http.Handler) (*manager.Server, error) {
	l, err := listenLimited(ctx, addr, maxConns)
	if err != nil {
		return nil, fmt.Errorf("%s listener %s: %w", name, addr, err)
	}
	timeout := shutdownTimeout
	return &manager.Server{Name: name, Server: hardenedServer(ctx, h), Listener: l, ShutdownTimeout: &timeout}, nil
}

// metricsHandler serves controller-runtime's registry (where metrics.go registers
// strictgate's metrics too) at /metrics, and extra handlers beside it.
func metricsHandler(extra map[string]http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(ctrlmetrics.Registry, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	for path, h := range extra {
		mux.Handle(path, h)
	}
	return mux
}

// probeHandler serves /healthz and /readyz as controller-runtime's manager does,
// subpaths included (/readyz/webhook-tls runs that one check, ?verbose lists them).
func probeHandler(live, ready map[string]healthz.Checker) http.Handler {
	mux := http.NewServeMux()
	for path, checks := range map[string]map[string]healthz.Checker{"/healthz": live, "/readyz": ready} {
		h := http.StripPrefix(path, &healthz.Handler{Checks: checks})
		mux.Handle(path, h)
		mux.Handle(path+"/", h)
	}
	return mux
}

// admissionServer is the HTTPS admission server: controller-runtime's DefaultServer
// (TLSOptions, certificate reloaded from CertDir by certwatcher, a readiness check that
// completes a TLS handshake, graceful shutdown) served through hardenedServer and a
// connection limit, which DefaultServer has no way to set.
type admissionServer struct {
	host     string
	port     int
	certDir  string
	maxConns int
	mux      *http.ServeMux

	mu      sync.Mutex
	addr    string      // where the server listens; set once listening
	tlsCfg  *tls.Config // what the listener serves with; set with addr
	serving bool        // the listener is open and served
}

var _ crwebhook.Server = (*admissionServer)(nil)

func newAdmissionServer(host string, port int, certDir string, maxConns int) *admissionServer {
	return &admissionServer{host: host, port: port, certDir: certDir, maxConns: maxConns, mux: http.NewServeMux()}
}

// NeedLeaderElection is false: every replica answers admission requests.
func (*admissionServer) NeedLeaderElection() bool { return false }

// Register serves hook at path (the mux panics on a duplicate path, as DefaultServer).
func (s *admissionServer) Register(path string, hook http.Handler) { s.mux.Handle(path, hook) }

// WebhookMux returns the mux the handlers are registered on.
func (s *admissionServer) WebhookMux() *http.ServeMux { return s.mux }

// Start serves until ctx ends.
func (s *admissionServer) Start(ctx context.Context) error {
	cfg := &tls.Config{} //nolint:gosec // TLSOptions sets the minimum version
	for _, opt := range TLSOptions() {
		opt(cfg)
	}
	crt, key := filepath.Join(s.certDir, "tls.crt"), filepath.Join(s.certDir, "tls.key")
	// With certificate rotation the files appear once the rotated Secret is trusted
	// (certrotation.go); until then the server is not started, so not ready.
	if err := waitForFiles(ctx, crt, key); err != nil {
		return nil // stopped before a certificate appeared: nothing was served
	}
	cw, err := certwatcher.New(crt, key)
	if err != nil {
		return err
	}
	cfg.GetCertificate = cw.GetCertificate
	go func() {
		if err := cw.Start(ctx); err != nil {
			ctrl.Log.WithName("webhook-server").Error(err, "certificate watcher stopped")
		}
	}()

	l, err := listenLimited(ctx, net.JoinHostPort(s.host, strconv.Itoa(s.port)), s.maxConns)
	if err != nil {
		return fmt.Errorf("admission listener: %w", err)
	}
	s.mu.Lock()
	s.addr = net.JoinHostPort(s.host, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	s.tlsCfg, s.serving = cfg, true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.serving = false
		s.mu.Unlock()
	}()
	ctrl.Log.WithName("webhook-server").Info("serving admission requests", "addr", l.Addr().String())
	// The limit counts TCP connections, so it applies before the TLS handshake.
	return serveUntilDone(ctx, hardenedServer(ctx, s.mux), tls.NewListener(l, cfg))
}

// waitForFiles returns once every path exists, or with ctx's error.
func waitForFiles(ctx context.Context, paths ...string) error {
	for {
		missing := false
		for _, p := range paths {
			if _, err := os.Stat(p); err != nil {
				missing = true
			}
		}
		if !missing {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// StartedChecker is ready while the listener is served and a TLS handshake with the
// server's own TLS configuration and current certificate succeeds. The handshake runs
// in memory, not through the listener: a flood that holds every connection slot must
// not make the replica unready too (the Service would drop it, and the flood would win
// twice); the certificate and key are what it checks.
func (s *admissionServer) StartedChecker() healthz.Checker {
	return func(r *http.Request) error {
		s.mu.Lock()
		cfg, serving := s.tlsCfg, s.serving
		s.mu.Unlock()
		if cfg == nil {
			return errors.New("webhook server has not been started yet")
		}
		if !serving {
			return errors.New("webhook server has stopped serving")
		}
		return handshake(r.Context(), cfg)
	}
}

// handshake completes a TLS handshake against cfg over an in-memory connection.
func handshake(ctx context.Context, cfg *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	sc, cc := net.Pipe()
	defer sc.Close()
	defer cc.Close()
	// No session tickets: the server would write them after the client is done
	// reading, and a pipe has no buffer to hold them.
	cfg = cfg.Clone()
	cfg.SessionTicketsDisabled = true
	srv := tls.Server(sc, cfg)
	errc := make(chan error, 1)
	go func() { errc <- srv.HandshakeContext(ctx) }()
	cli := tls.Client(cc, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}) //nolint:gosec // checks that the server can complete a handshake, not who it is
	if err := cli.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("TLS handshake with the webhook's certificate: %w", err)
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("TLS handshake with the webhook's certificate: %w", err)
	}
	return nil
}
