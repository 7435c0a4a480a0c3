// Package webhook is strictgate's admission side: the pod mutator that injects the
// readiness gate, the namespace validator that guards the opt-out label, the
// NetworkPolicy hygiene validator (webhook/hygiene), the server wiring, and the
// default-deny controller (webhook/defaultdeny) that runs in the same process.
package webhook

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/strictgate/strictgate/internal/contract"
	"github.com/strictgate/strictgate/internal/flagutil"
)

// Names other components and the chart depend on.
const (
	// PathMutatePod, PathValidateNamespace and PathValidateNetworkPolicy are the HTTPS
	// paths the webhook configurations point at.
	PathMutatePod             = "/mutate-v1-pod"
	PathValidateNamespace     = "/validate-v1-namespace"
	PathValidateNetworkPolicy = "/validate-networking-v1-networkpolicy"

	// DefaultNamespace is where the chart installs strictgate unless told otherwise.
	DefaultNamespace = "strictgate"
	// DefaultOptOutGroup is the group allowed to set the opt-out label.
	DefaultOptOutGroup = "strictgate:enforcement-admins"
)

// Config is the webhook process's configuration, shared by every handler and the
// default-deny controller. Build it with DefaultConfig, then BindFlags, then Validate.
type Config struct {
	// Namespace is strictgate's own namespace: never enforced, home of the leader
	// election lease and of the gate-guard parameters ConfigMap.
	Namespace string
	// ServiceAccount is the full username of the webhook's own service account
	// (system:serviceaccount:<ns>:<name>); only it may modify the generated policies.
	ServiceAccount string
	// AgentServiceAccount is the full username of the node agent's service account.
	// Only it may set the gate condition; the gate-guard VAP enforces that through
	// the strictgate-gate-setter ClusterRole the chart binds to this account, so the
	// webhook process itself does not read it.
	AgentServiceAccount string
	// ExcludedNamespaces are further namespaces that are never enforced.
	ExcludedNamespaces []string
	// NamespaceSelector, when set, limits enforcement to the namespaces it matches.
	NamespaceSelector labels.Selector
	// DefaultDeny makes the default-deny controller generate strictgate-default-deny
	// (and strictgate-allow-dns) in every enforced namespace. Without it the gate, the
	// hygiene rules and NetworkPolicy enforcement stay, and the controller removes the
	// policies it generated before.
	DefaultDeny bool
	// ConditionTypes are the readiness gates the pod mutator adds (the chart's
	// gate.conditionTypes; the agent's --condition-types).
	ConditionTypes []string
	// OptOutGroups may add or change the opt-out label on a namespace. Removing the
	// label is always allowed: it only switches enforcement back on.
	OptOutGroups []string
	// DNSPolicy makes the default-deny controller also generate strictgate-allow-dns.
	DNSPolicy bool
	// DNSNamespace and DNSPodLabels select the cluster DNS pods strictgate-allow-dns
	// allows egress to (kube-system, k8s-app=kube-dns).
	DNSNamespace string
	DNSPodLabels map[string]string

	// CertDir holds tls.crt and tls.key; they are reloaded when they change.
	CertDir string
	// Host and Port are where the HTTPS admission server listens.
	Host string
	Port int
	// MetricsAddr serves Prometheus /metrics over plain HTTP ("0" disables it).
	MetricsAddr string
	// ProbeAddr serves /healthz and /readyz over plain HTTP.
	ProbeAddr string
	// MaxConnections is how many connections each of the admission, metrics and
	// probe listeners holds open at once (httpserver.go).
	MaxConnections int
	// LeaderElection guards the default-deny controller: only one replica writes.
	LeaderElection bool
	// LeaderElectionID names the Lease in Namespace.
	LeaderElectionID string
	// LeaseDuration, RenewDeadline and RetryPeriod tune leader election
	// (LeaseDuration > RenewDeadline > RetryPeriod; defaults 15s, 10s, 2s).
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration

	// Hygiene configures the NetworkPolicy hygiene validator (networkpolicy.go).
	Hygiene NetworkPolicyConfig
	// CertRotation makes the webhook own and rotate its certificates (certrotation.go).
	CertRotation CertRotationConfig
}

// DefaultConfig returns the configuration the chart's defaults correspond to.
func DefaultConfig() Config {
	return Config{
		Namespace:           DefaultNamespace,
		ServiceAccount:      serviceAccountUser(DefaultNamespace, "strictgate-webhook"),
		AgentServiceAccount: serviceAccountUser(DefaultNamespace, "strictgate-agent"),
		OptOutGroups:        []string{DefaultOptOutGroup},
		DefaultDeny:         true,
		ConditionTypes:      contract.DefaultConditionTypes(),
		DNSPolicy:           true,
		DNSNamespace:        "kube-system",
		DNSPodLabels:        map[string]string{"k8s-app": "kube-dns"},
		CertDir:             "/tmp/k8s-webhook-server/serving-certs",
		Port:                9443,
		MetricsAddr:         ":8080",
		ProbeAddr:           ":8081",
		MaxConnections:      DefaultMaxConnections,
		LeaderElection:      true,
		LeaderElectionID:    "strictgate-webhook",
		LeaseDuration:       15 * time.Second,
		RenewDeadline:       10 * time.Second,
		RetryPeriod:         2 * time.Second,
		Hygiene:             DefaultNetworkPolicyConfig(),
		CertRotation:        DefaultCertRotationConfig(),
	}
}

func serviceAccountUser(ns, name string) string {
	return "system:serviceaccount:" + ns + ":" + name
}

// BindFlags registers the configuration's flags on fs, with c's values as defaults.
func (c *Config) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Namespace, "namespace", c.Namespace, "strictgate's own namespace (never enforced; holds the leader-election lease)")
	fs.StringVar(&c.ServiceAccount, "service-account", c.ServiceAccount, "full username of the webhook's own service account, system:serviceaccount:<ns>:<name>")
	fs.StringVar(&c.AgentServiceAccount, "agent-service-account", c.AgentServiceAccount, "full username of the agent's service account")
	fs.Var(flagutil.NewStringList(&c.ExcludedNamespaces), "exclude-namespace", "namespace that is never enforced (repeatable or comma-separated)")
	fs.Var(flagutil.NewStringList(&c.OptOutGroups), "opt-out-group", "group allowed to set the "+contract.EnforceLabel+" label (repeatable or comma-separated; replaces the default)")
	fs.Var(contract.NamespaceSelectorFlag{Dst: &c.NamespaceSelector}, "namespace-selector", contract.NamespaceSelectorUsage)
	fs.Var(contract.NewConditionTypesFlag(&c.ConditionTypes), "condition-types", contract.ConditionTypesUsage+" (give the agent's value)")
	fs.BoolVar(&c.DefaultDeny, "default-deny", c.DefaultDeny, "generate strictgate-default-deny in every enforced namespace (false: gate and enforce NetworkPolicies only; generated policies are removed)")
	fs.BoolVar(&c.DNSPolicy, "dns-policy", c.DNSPolicy, "generate strictgate-allow-dns (egress to kube-dns) beside strictgate-default-deny")
	fs.StringVar(&c.DNSNamespace, "dns-namespace", c.DNSNamespace, "namespace of the cluster DNS pods strictgate-allow-dns allows")
	fs.Func("dns-pod-labels", "labels of the cluster DNS pods, key=value[,key=value] (default k8s-app=kube-dns)", func(v string) error {
		labels, err := parseLabels(v)
		if err != nil {
			return err
		}
		c.DNSPodLabels = labels
		return nil
	})
	fs.StringVar(&c.CertDir, "cert-dir", c.CertDir, "directory with tls.crt and tls.key (reloaded on change)")
	fs.StringVar(&c.Host, "host", c.Host, "address the HTTPS admission server binds (empty = all)")
	fs.IntVar(&c.Port, "port", c.Port, "port of the HTTPS admission server")
	fs.StringVar(&c.MetricsAddr, "metrics-bind-address", c.MetricsAddr, "address of the Prometheus /metrics endpoint (0 disables it)")
	fs.StringVar(&c.ProbeAddr, "health-probe-bind-address", c.ProbeAddr, "address of /healthz and /readyz")
	fs.IntVar(&c.MaxConnections, "max-connections", c.MaxConnections, "connections each listener (admission, metrics, probes) holds open at once; more wait to be accepted")
	fs.BoolVar(&c.LeaderElection, "leader-elect", c.LeaderElection, "elect a leader for the default-deny controller (needed with more than one replica)")
	fs.StringVar(&c.LeaderElectionID, "leader-election-id", c.LeaderElectionID, "name of the leader-election Lease in --namespace")
	fs.DurationVar(&c.LeaseDuration, "leader-lease-duration", c.LeaseDuration, "leader-election lease duration")
	fs.DurationVar(&c.RenewDeadline, "leader-renew-deadline", c.RenewDeadline, "how long the leader keeps trying to renew before giving up")
	fs.DurationVar(&c.RetryPeriod, "leader-retry-period", c.RetryPeriod, "interval between leader-election attempts")
	c.Hygiene.BindFlags(fs)
	c.CertRotation.BindFlags(fs)
}

// Validate reports configuration errors a person can fix from the message.
func (c *Config) Validate() error {
	var errs []error
	if c.Namespace == "" {
		errs = append(errs, errors.New("--namespace must not be empty"))
	}
	for flagName, user := range map[string]string{"--service-account": c.ServiceAccount, "--agent-service-account": c.AgentServiceAccount} {
		if !strings.HasPrefix(user, "system:serviceaccount:") || strings.Count(user, ":") != 3 {
			errs = append(errs, fmt.Errorf("%s %q: want system:serviceaccount:<namespace>:<name>", flagName, user))
		}
	}
	if err := contract.ValidateConditionTypes(c.ConditionTypes); err != nil {
		errs = append(errs, fmt.Errorf("--condition-types: %w", err))
	}
	if c.Port <= 0 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("--port %d: want 1-65535", c.Port))
	}
	if c.MaxConnections <= 0 {
		errs = append(errs, fmt.Errorf("--max-connections %d: want at least 1", c.MaxConnections))
	}
	if c.DNSPolicy && (c.DNSNamespace == "" || len(c.DNSPodLabels) == 0) {
		errs = append(errs, errors.New("--dns-policy needs --dns-namespace and --dns-pod-labels"))
	}
	if c.CertDir == "" {
		errs = append(errs, errors.New("--cert-dir must not be empty"))
	}
	if c.LeaderElection && c.LeaderElectionID == "" {
		errs = append(errs, errors.New("--leader-election-id must not be empty with --leader-elect"))
	}
	if c.LeaderElection && !(c.LeaseDuration > c.RenewDeadline && c.RenewDeadline > c.RetryPeriod && c.RetryPeriod > 0) {
		errs = append(errs, fmt.Errorf("leader election needs --leader-lease-duration (%v) > --leader-renew-deadline (%v) > --leader-retry-period (%v) > 0",
			c.LeaseDuration, c.RenewDeadline, c.RetryPeriod))
	}
	if err := c.Hygiene.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.CertRotation.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Scope is the set of namespaces strictgate does not enforce, as enforce needs it.
func (c *Config) Scope() contract.Scope {
	return contract.Scope{OwnNamespace: c.Namespace, Excluded: c.ExcludedNamespaces, Selector: c.NamespaceSelector}
}

// parseLabels parses key=value[,key=value].
func parseLabels(v string) (map[string]string, error) {
	out := map[string]string{}
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, val, ok := strings.Cut(part, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("label %q: want key=value", part)
		}
		out[k] = val
	}
	if len(out) == 0 {
		return nil, errors.New("no labels: want key=value[,key=value]")
	}
	return out, nil
}
