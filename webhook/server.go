package webhook

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/strictgate/strictgate/webhook/defaultdeny"
	"github.com/strictgate/strictgate/webhook/hygiene"
)

// Scheme holds the types the webhook process reads and writes: the built-in ones and
// ClusterNetworkPolicy (v1beta1, the storage version).
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(fmt.Sprintf("build scheme: %v", err)) // static input; cannot fail
	}
	if err := cnpv1beta1.Install(s); err != nil {
		panic(fmt.Sprintf("build scheme: %v", err))
	}
	return s
}

// TLSOptions are applied to the admission server's tls.Config: TLS 1.3 only (the API
// server's webhook client speaks it) and HTTP/1.1 only, which keeps the server out of
// HTTP/2 stream-reset attacks (CVE-2023-44487) at no cost for admission traffic.
func TLSOptions() []func(*tls.Config) {
	return []func(*tls.Config){func(c *tls.Config) {
		c.MinVersion = tls.VersionTLS13
		c.NextProtos = []string{"http/1.1"}
	}}
}

// NewManager builds the webhook process: the HTTPS admission server with every
// handler registered, /healthz and /readyz, /metrics, and the leader-elected
// default-deny controller. Start it with mgr.Start(ctx).
//
// ctx bounds the loading of the hygiene rules and is what their directory watcher
// runs under; pass the context the manager will be started with.
func NewManager(ctx context.Context, rc *rest.Config, cfg Config) (manager.Manager, error) {
	return newManager(ctx, rc, cfg, nil)
}

// newManager is NewManager with a hook that wraps the default-deny controller's client
// (tests count its writes through it).
func newManager(ctx context.Context, rc *rest.Config, cfg Config, wrapControllerClient func(client.Client) client.Client) (manager.Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// The webhook server would fail on the same files at start with only the TLS
	// library's words ("private key does not match public key"); say which files.
	// With rotation the files come later, from the rotated Secret.
	if !cfg.CertRotation.Enabled {
		if _, err := tls.LoadX509KeyPair(filepath.Join(cfg.CertDir, "tls.crt"), filepath.Join(cfg.CertDir, "tls.key")); err != nil {
			return nil, fmt.Errorf("serving certificate --cert-dir %s (tls.crt, tls.key): %w", cfg.CertDir, err)
		}
	}
	byObject := map[client.Object]cache.ByObject{
		// Every pod of the cluster is cached for the hygiene rules; keep only what
		// they read. Nothing else in this process reads pods from the cache.
		&corev1.Pod{}: {Transform: StripPodForHygiene},
	}
	if r := cfg.CertRotation; r.Enabled {
		// Only the objects rotation reads, by name: RBAC grants no more.
		byObject[&corev1.Secret{}] = cache.ByObject{
			Namespaces: map[string]cache.Config{cfg.Namespace: {}},
			Field:      fields.OneTermEqualSelector("metadata.name", r.Secret),
		}
		if r.MutatingWebhookConfiguration != "" {
			byObject[&admissionregistrationv1.MutatingWebhookConfiguration{}] = cache.ByObject{Field: fields.OneTermEqualSelector("metadata.name", r.MutatingWebhookConfiguration)}
		}
		if r.ValidatingWebhookConfiguration != "" {
			byObject[&admissionregistrationv1.ValidatingWebhookConfiguration{}] = cache.ByObject{Field: fields.OneTermEqualSelector("metadata.name", r.ValidatingWebhookConfiguration)}
		}
	}
	lease, renew, retry := cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod
	mgr, err := ctrl.NewManager(rc, ctrl.Options{
		Scheme: Scheme(),
		// /metrics, /healthz and /readyz are served below through hardenedServer:
		// controller-runtime's own listeners have no way to set their timeouts or a
		// connection limit.
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:        "0",
		LeaderElection:                cfg.LeaderElection,
		LeaderElectionID:              cfg.LeaderElectionID,
		LeaderElectionNamespace:       cfg.Namespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &lease,
		RenewDeadline:                 &renew,
		RetryPeriod:                   &retry,
		Cache: cache.Options{
			DefaultTransform: cache.TransformStripManagedFields(),
			ByObject:         byObject,
		},
		// One manager per process in production, where controller-runtime's check for
		// duplicate controller names guards its metrics; the package's tests run several.
		Controller: ctrlconfig.Controller{SkipNameValidation: ptr.To(testing.Testing())},
		// tls.crt + tls.key from CertDir, reloaded by certwatcher on change.
		WebhookServer: newAdmissionServer(cfg.Host, cfg.Port, cfg.CertDir, cfg.MaxConnections),
	})
	if err != nil {
		return nil, fmt.Errorf("create manager: %w", err)
	}

	if cfg.CertRotation.Enabled {
		if err := setupCertRotation(mgr, cfg.Namespace, cfg.CertDir, cfg.CertRotation); err != nil {
			return nil, err
		}
	}
	srv := mgr.GetWebhookServer()
	namespaces := CachedNamespaces{Cache: mgr.GetClient(), Live: mgr.GetAPIReader()}
	for path, h := range Handlers(cfg, namespaces) {
		srv.Register(path, Instrumented(path, h))
	}
	engine, err := SetupNetworkPolicyValidator(ctx, mgr, cfg, cfg.Hygiene)
	if err != nil {
		return nil, fmt.Errorf("set up NetworkPolicy hygiene validator: %w", err)
	}
	cnpv := NewClusterNetworkPolicyValidator(engine, ReaderCNPFacts{Cached: mgr.GetClient(), Live: mgr.GetAPIReader()}, cfg.ServiceAccount)
	srv.Register(PathValidateClusterNetworkPolicy, Instrumented(PathValidateClusterNetworkPolicy, cnpv))
	ddClient := mgr.GetClient()
	if wrapControllerClient != nil {
		ddClient = wrapControllerClient(ddClient)
	}
	dd := &defaultdeny.Reconciler{
		Client: ddClient, Scope: cfg.Scope(), Disabled: !cfg.DefaultDeny,
		DNSPolicy: cfg.DNSPolicy, DNSNamespace: cfg.DNSNamespace, DNSPodLabels: cfg.DNSPodLabels,
	}
	if err := dd.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("set up default-deny controller: %w", err)
	}

	live := map[string]healthz.Checker{"ping": healthz.Ping}
	// Ready means the API server can use us: the TLS listener completes a handshake
	// with the current certificate, and the namespace cache the pod mutator reads has
	// synced.
	ready := map[string]healthz.Checker{
		"webhook-tls": srv.StartedChecker(),
		"informers": func(r *http.Request) error {
			ctx, cancel := context.WithTimeout(r.Context(), time.Second)
			defer cancel()
			if !mgr.GetCache().WaitForCacheSync(ctx) {
				return fmt.Errorf("informer caches have not synced")
			}
			return nil
		},
	}
	// The listeners are bound last, so that no earlier error leaves a port bound.
	var listeners []*manager.Server
	if cfg.MetricsAddr != "0" && cfg.MetricsAddr != "" {
		// A broken custom rule set keeps the last good one in force, so it must not
		// make the webhook unready (that would fail every admission closed); it is
		// reported at /status here and in strictgate_hygiene_* metrics instead.
		m, err := plainServer(ctx, "metrics", cfg.MetricsAddr, cfg.MaxConnections, metricsHandler(map[string]http.Handler{"/status": statusHandler(engine)}))
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, m)
	}
	if cfg.ProbeAddr != "0" && cfg.ProbeAddr != "" {
		p, err := plainServer(ctx, "health probe", cfg.ProbeAddr, cfg.MaxConnections, probeHandler(live, ready))
		if err != nil {
			for _, l := range listeners {
				_ = l.Listener.Close()
			}
			return nil, err
		}
		listeners = append(listeners, p)
	}
	for _, l := range listeners {
		if err := mgr.Add(l); err != nil {
			return nil, fmt.Errorf("add %s server: %w", l.Name, err)
		}
	}
	return mgr, nil
}

// Run builds the manager and runs it until ctx ends.
func Run(ctx context.Context, rc *rest.Config, cfg Config) error {
	mgr, err := NewManager(ctx, rc, cfg)
	if err != nil {
		return err
	}
	return mgr.Start(ctx)
}

// Handlers returns strictgate's own admission handlers by path (the NetworkPolicy
// validator is registered separately since it needs the manager's informers).
func Handlers(cfg Config, namespaces NamespaceGetter) map[string]admission.Handler {
	return map[string]admission.Handler{
		PathMutatePod:         &PodMutator{Scope: cfg.Scope(), Namespaces: namespaces, ConditionTypes: cfg.ConditionTypes},
		PathValidateNamespace: &NamespaceValidator{Groups: cfg.OptOutGroups},
	}
}

// Instrumented wraps h as the HTTP handler the server mounts at path, recording
// RequestDuration. Panics in h are recovered by admission.Webhook and answered with
// an error response; they never reach the client as a broken connection.
func Instrumented(path string, h admission.Handler) http.Handler {
	return instrument(path, &admission.Webhook{Handler: h})
}

// statusHandler serves the process's status as JSON: today the hygiene rule set in
// force and the newest load attempt.
func statusHandler(engine *hygiene.Engine) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(struct {
			Hygiene hygiene.Status `json:"hygiene"`
		}{engine.Status()})
	})
}
