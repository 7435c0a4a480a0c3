package webhook

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/strictgate/strictgate/certs"
)

// CertRotationConfig makes the webhook own its CA and serving certificate (chart
// default without cert-manager). open-policy-agent/cert-controller keeps both in a
// Secret and renews them RenewBefore their expiry; this file adds what makes a rotation
// invisible to the API server:
//
//   - the injector puts the Secret's CA into every webhook's caBundle and keeps
//     the previous CAs there until they expire (cert-controller alone would replace the
//     bundle, cutting off replicas still serving the old certificate);
//   - every replica's syncer writes the Secret's certificate into CertDir — where the
//     admission server's certwatcher picks it up — only once every caBundle trusts it,
//     and PropagationDelay later, so that every API server has seen the new bundle.
type CertRotationConfig struct {
	// Enabled turns rotation on; CertDir must then be writable (an emptyDir).
	Enabled bool
	// Secret holds ca.crt, ca.key, tls.crt and tls.key, in the webhook's namespace.
	Secret string
	// DNSNames are the serving certificate's names; the first is its subject.
	DNSNames []string
	// MutatingWebhookConfiguration and ValidatingWebhookConfiguration are the
	// configurations whose caBundle is kept current (empty: none of that kind).
	MutatingWebhookConfiguration   string
	ValidatingWebhookConfiguration string
	// CALifetime and CertLifetime are the validity of new CAs and serving certificates;
	// each is renewed when less than RenewBefore of it is left, checked every
	// CheckInterval.
	CALifetime, CertLifetime, RenewBefore, CheckInterval time.Duration
	// PropagationDelay is how long a syncer waits, after every caBundle trusts a new
	// certificate, before serving it.
	PropagationDelay time.Duration
}

// DefaultCertRotationConfig: a CA for a year and serving certificates for 90 days, each
// renewed a month before it expires.
func DefaultCertRotationConfig() CertRotationConfig {
	return CertRotationConfig{
		Secret:           "strictgate-webhook-cert",
		CALifetime:       365 * 24 * time.Hour,
		CertLifetime:     90 * 24 * time.Hour,
		RenewBefore:      30 * 24 * time.Hour,
		CheckInterval:    time.Hour,
		PropagationDelay: 5 * time.Second,
	}
}

// BindFlags registers the --cert-rotation* flags.
func (c *CertRotationConfig) BindFlags(fs *flag.FlagSet) {
	fs.BoolVar(&c.Enabled, "cert-rotation", c.Enabled, "own the CA and serving certificate in --cert-secret, rotate both before they expire and keep the webhook configurations' caBundle current (--cert-dir must be writable)")
	fs.StringVar(&c.Secret, "cert-secret", c.Secret, "Secret in --namespace holding the rotated CA and serving certificate")
	fs.Func("cert-dns-names", "DNS names of the serving certificate, comma-separated; the first is its subject (with --cert-rotation)", func(v string) error {
		var names []string
		for _, n := range strings.Split(v, ",") {
			names = append(names, strings.TrimSpace(n))
		}
		c.DNSNames = certs.Hosts(names)
		return nil
	})
	fs.StringVar(&c.MutatingWebhookConfiguration, "mutating-webhook-configuration", c.MutatingWebhookConfiguration, "MutatingWebhookConfiguration whose caBundle --cert-rotation keeps current")
	fs.StringVar(&c.ValidatingWebhookConfiguration, "validating-webhook-configuration", c.ValidatingWebhookConfiguration, "ValidatingWebhookConfiguration whose caBundle --cert-rotation keeps current")
	fs.DurationVar(&c.CALifetime, "ca-lifetime", c.CALifetime, "validity of a new CA (with --cert-rotation)")
	fs.DurationVar(&c.CertLifetime, "cert-lifetime", c.CertLifetime, "validity of a new serving certificate (with --cert-rotation)")
	fs.DurationVar(&c.RenewBefore, "cert-renew-before", c.RenewBefore, "renew the CA or the serving certificate when less than this is left")
	fs.DurationVar(&c.CheckInterval, "cert-check-interval", c.CheckInterval, "how often the certificates' expiry is checked")
	fs.DurationVar(&c.PropagationDelay, "cert-propagation-delay", c.PropagationDelay, "wait this long after every caBundle trusts a new certificate before serving it")
}

// Validate reports settings under which a rotation could leave the webhook untrusted.
func (c *CertRotationConfig) Validate() error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	if c.Secret == "" {
		errs = append(errs, errors.New("--cert-rotation needs --cert-secret"))
	}
	if len(c.DNSNames) == 0 {
		errs = append(errs, errors.New("--cert-rotation needs --cert-dns-names (the webhook Service's names)"))
	}
	if c.MutatingWebhookConfiguration == "" && c.ValidatingWebhookConfiguration == "" {
		errs = append(errs, errors.New("--cert-rotation needs --mutating-webhook-configuration or --validating-webhook-configuration: nothing would trust the certificates"))
	}
	if !(c.CheckInterval > 0 && c.CheckInterval+c.PropagationDelay < c.RenewBefore && c.RenewBefore < c.CertLifetime && c.CertLifetime <= c.CALifetime) {
		errs = append(errs, fmt.Errorf("certificate rotation needs 0 < --cert-check-interval (%v) + --cert-propagation-delay (%v) < --cert-renew-before (%v) < --cert-lifetime (%v) <= --ca-lifetime (%v): a certificate must be replaced before it expires",
			c.CheckInterval, c.PropagationDelay, c.RenewBefore, c.CertLifetime, c.CALifetime))
	}
	return errors.Join(errs...)
}

// setupCertRotation adds the rotator, the injector and the syncer to mgr.
func setupCertRotation(mgr manager.Manager, ns, certDir string, c CertRotationConfig) error {
	ready := make(chan struct{})
	if err := rotator.AddRotator(mgr, &rotator.CertRotator{
		SecretKey:      types.NamespacedName{Namespace: ns, Name: c.Secret},
		CertDir:        certDir,
		CAName:         "strictgate-webhook-ca",
		CAOrganization: "strictgate",
		DNSName:        c.DNSNames[0],
		ExtraDNSNames:  c.DNSNames[1:],
		IsReady:        ready,
		// Every replica, not only the leader: a replica must be able to get its
		// certificate while an older leader (say, mid-upgrade, one that does not rotate)
		// holds the lease. Concurrent writers are safe: updates carry resourceVersion,
		// the loser re-reads and finds the winner's certificate valid.
		RequireLeaderElection:  false,
		CaCertDuration:         c.CALifetime,
		ServerCertDuration:     c.CertLifetime,
		LookaheadInterval:      c.RenewBefore,
		RotationCheckFrequency: c.CheckInterval,
		ControllerName:         rotatorName(),
		// No Webhooks: the injector below keeps the caBundles (with the previous CAs).
	}); err != nil {
		return fmt.Errorf("set up certificate rotation: %w", err)
	}
	key := types.NamespacedName{Namespace: ns, Name: c.Secret}
	toSecret := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: key}}
	})
	ours := predicate.NewPredicateFuncs(func(o client.Object) bool {
		switch o.(type) {
		case *corev1.Secret:
			return o.GetNamespace() == ns && o.GetName() == c.Secret
		case *admissionregistrationv1.MutatingWebhookConfiguration:
			return o.GetName() == c.MutatingWebhookConfiguration
		case *admissionregistrationv1.ValidatingWebhookConfiguration:
			return o.GetName() == c.ValidatingWebhookConfiguration
		}
		return false
	})
	configs := webhookConfigs{mutating: c.MutatingWebhookConfiguration, validating: c.ValidatingWebhookConfiguration}
	inj := &caInjector{client: mgr.GetClient(), secret: key, configs: configs}
	notLeader := false // on every replica, like the rotator; merging is idempotent
	if err := watchConfigs(builder.ControllerManagedBy(mgr).Named("strictgate-ca-injector").
		WithOptions(controller.Options{NeedLeaderElection: &notLeader}).
		For(&corev1.Secret{}, builder.WithPredicates(ours)), configs, toSecret, ours).
		Complete(inj); err != nil {
		return fmt.Errorf("set up caBundle injector: %w", err)
	}
	sync := &certSyncer{client: mgr.GetClient(), secret: key, configs: configs, dir: certDir, delay: c.PropagationDelay}
	if err := watchConfigs(builder.ControllerManagedBy(mgr).Named("strictgate-cert-sync").
		WithOptions(controller.Options{NeedLeaderElection: &notLeader}).
		For(&corev1.Secret{}, builder.WithPredicates(ours)), configs, toSecret, ours).
		Complete(sync); err != nil {
		return fmt.Errorf("set up certificate sync: %w", err)
	}
	return nil
}

// rotatorName is the rotator's controller name. cert-controller builds its controller
// outside the manager's options, so the name check the package's tests turn off for the
// rest (several managers in one test process) still applies to it: tests number it.
func rotatorName() string {
	if !testing.Testing() {
		return "strictgate-cert-rotator"
	}
	return fmt.Sprintf("strictgate-cert-rotator-%d", rotators.Add(1))
}

var rotators atomic.Int64

// watchConfigs adds watches of the named configurations only: a kind with no name is
// not watched at all (RBAC grants nothing on it, e.g. no MutatingWebhookConfiguration
// when the gate comes from a MutatingAdmissionPolicy).
func watchConfigs(b *builder.Builder, w webhookConfigs, h handler.EventHandler, p predicate.Predicate) *builder.Builder {
	if w.mutating != "" {
		b = b.Watches(&admissionregistrationv1.MutatingWebhookConfiguration{}, h, builder.WithPredicates(p))
	}
	if w.validating != "" {
		b = b.Watches(&admissionregistrationv1.ValidatingWebhookConfiguration{}, h, builder.WithPredicates(p))
	}
	return b
}

// webhookConfigs names the configurations whose caBundles matter.
type webhookConfigs struct{ mutating, validating string }

// each passes every caBundle of the named configurations that exist to fn, which may
// change them; a configuration fn changed is written back. found counts the
// configurations that exist.
func (w webhookConfigs) each(ctx context.Context, c client.Client, fn func(bundle *[]byte) error) (found int, err error) {
	if w.mutating != "" {
		m := &admissionregistrationv1.MutatingWebhookConfiguration{}
		switch err := c.Get(ctx, types.NamespacedName{Name: w.mutating}, m); {
		case apierrors.IsNotFound(err):
		case err != nil:
			return found, err
		default:
			found++
			changed, err := eachBundle(len(m.Webhooks), func(i int) *[]byte { return &m.Webhooks[i].ClientConfig.CABundle }, fn)
			if err != nil {
				return found, err
			}
			if changed {
				if err := c.Update(ctx, m); err != nil {
					return found, err
				}
			}
		}
	}
	if w.validating != "" {
		v := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		switch err := c.Get(ctx, types.NamespacedName{Name: w.validating}, v); {
		case apierrors.IsNotFound(err):
		case err != nil:
			return found, err
		default:
			found++
			changed, err := eachBundle(len(v.Webhooks), func(i int) *[]byte { return &v.Webhooks[i].ClientConfig.CABundle }, fn)
			if err != nil {
				return found, err
			}
			if changed {
				if err := c.Update(ctx, v); err != nil {
					return found, err
				}
			}
		}
	}
	return found, nil
}

func eachBundle(n int, at func(int) *[]byte, fn func(*[]byte) error) (changed bool, err error) {
	for i := range n {
		b := at(i)
		before := *b
		if err := fn(b); err != nil {
			return false, err
		}
		changed = changed || !bytes.Equal(before, *b)
	}
	return changed, nil
}

// caInjector keeps every caBundle = the Secret's CA + the previous CAs
// still valid (certs.MergeCABundle).
type caInjector struct {
	client  client.Client
	secret  types.NamespacedName
	configs webhookConfigs
}

func (r *caInjector) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	s := &corev1.Secret{}
	if err := r.client.Get(ctx, r.secret, s); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	ca := s.Data[certs.CAFile]
	if len(ca) == 0 {
		return reconcile.Result{}, nil // the rotator has not written it yet
	}
	now := time.Now()
	_, err := r.configs.each(ctx, r.client, func(b *[]byte) error {
		merged, err := certs.MergeCABundle(*b, ca, now)
		if err != nil {
			return fmt.Errorf("secret %s: %w", r.secret, err)
		}
		*b = merged
		return nil
	})
	if apierrors.IsConflict(err) {
		// Our own previous update, not yet in the cache: read again.
		return reconcile.Result{RequeueAfter: 100 * time.Millisecond}, nil
	}
	return reconcile.Result{}, err
}

// certSyncer (every replica) writes the Secret's serving certificate into dir once every
// caBundle trusts it and delay has passed since.
type certSyncer struct {
	client  client.Client
	secret  types.NamespacedName
	configs webhookConfigs
	dir     string
	delay   time.Duration

	mu           sync.Mutex
	trustedSince map[[32]byte]time.Time // by certificate digest
}

func (r *certSyncer) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	s := &corev1.Secret{}
	if err := r.client.Get(ctx, r.secret, s); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	b := &certs.Bundle{CACert: s.Data[certs.CAFile], Cert: s.Data[certs.CertFile], Key: s.Data[certs.KeyFile]}
	if len(b.CACert) == 0 || len(b.Cert) == 0 || len(b.Key) == 0 {
		return reconcile.Result{}, nil
	}
	if cur, err := os.ReadFile(filepath.Join(r.dir, certs.CertFile)); err == nil && bytes.Equal(cur, b.Cert) {
		return reconcile.Result{}, nil
	}
	now := time.Now()
	trusted := true
	found, err := r.configs.each(ctx, r.client, func(bundle *[]byte) error {
		trusted = trusted && certs.Trusted(*bundle, b.Cert, now)
		return nil
	})
	if err != nil {
		return reconcile.Result{}, err
	}
	log := ctrl.LoggerFrom(ctx)
	if !trusted {
		log.V(1).Info("new serving certificate not trusted by every caBundle yet")
		return reconcile.Result{RequeueAfter: time.Second}, nil
	}
	digest := sha256.Sum256(b.Cert)
	r.mu.Lock()
	if r.trustedSince == nil {
		r.trustedSince = map[[32]byte]time.Time{}
	}
	since, ok := r.trustedSince[digest]
	if !ok {
		since = now
		r.trustedSince = map[[32]byte]time.Time{digest: now} // older digests are done with
	}
	r.mu.Unlock()
	// The very first certificate has nothing to wait for: nothing is served yet.
	_, statErr := os.Stat(filepath.Join(r.dir, certs.CertFile))
	if wait := since.Add(r.delay).Sub(now); wait > 0 && statErr == nil && found > 0 {
		return reconcile.Result{RequeueAfter: wait}, nil
	}
	if err := certs.WriteLinked(r.dir, b); err != nil {
		return reconcile.Result{}, fmt.Errorf("write the rotated certificate into %s: %w", r.dir, err)
	}
	log.Info("serving a rotated certificate", "dir", r.dir)
	return reconcile.Result{}, nil
}
