package agent

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/strictgate/strictgate/agent/eventlog/hostfile"
	"github.com/strictgate/strictgate/internal/contract"
	"github.com/strictgate/strictgate/internal/flagutil"
)

// Config is the agent's configuration; RegisterFlags binds it to command-line flags.
type Config struct {
	// NodeName is this node (from the downward API: spec.nodeName).
	NodeName string
	Mode     contract.Mode
	// Kubeconfig is a kubeconfig path; empty means in-cluster configuration.
	Kubeconfig string
	// MetricsAddr serves /metrics, /healthz and /readyz; empty disables the server.
	MetricsAddr string
	// EventLogFile receives the policy event log in addition to stdout; empty: stdout only.
	EventLogFile string
	// EventLogMaxSizeMB rotates EventLogFile at this size, keeping EventLogMaxBackups
	// rotated files (agent/eventlog/hostfile); 0: append without rotation.
	EventLogMaxSizeMB  int
	EventLogMaxBackups int
	// EventMode is none, deny (DENY and AUDIT verdicts) or all.
	EventMode contract.EventLogMode
	// EventRate limits kernel events per second, node-wide (0 = unlimited).
	EventRate int
	// PinRoot is the bpffs directory of the datapath's pins.
	PinRoot string
	// ResyncPeriod is how often every local pod is checked against the kernel.
	ResyncPeriod time.Duration
	// CRDPollPeriod is how often an agent started without the ClusterNetworkPolicy CRD
	// looks for it again (0: 30s).
	CRDPollPeriod time.Duration
	// Workers reconcile pods in parallel.
	Workers int
	// AllowHost lets traffic with the node's own addresses pass (kubelet probes).
	AllowHost bool
	// Namespace is strictgate's own namespace and ExcludedNamespaces the configured
	// further exclusions: the same inputs the webhook gets (its --namespace and
	// --exclude-namespace), so that agent and webhook agree on which namespaces are
	// enforced and therefore get strictgate-default-deny.
	Namespace          string
	ExcludedNamespaces []string
	// NamespaceSelector is the webhook's --namespace-selector (nil: every namespace).
	NamespaceSelector labels.Selector
	// DefaultDeny is the webhook's --default-deny: whether enforced namespaces get
	// strictgate-default-deny, so whether a pod's first programming waits for it.
	DefaultDeny bool
	// CNISocket, if set, is the unix socket on which the chained CNI plugin asks the
	// agent to program a pod at CNI ADD (agent/cniserver); CNITimeout bounds one request.
	CNISocket  string
	CNITimeout time.Duration
	// ConditionTypes are the readiness-gate condition types the agent sets (the chart's
	// gate.conditionTypes; the webhook's --condition-types).
	ConditionTypes []string
}

// Scope is the set of namespaces strictgate does not enforce, as the webhook computes it.
func (c *Config) Scope() contract.Scope {
	return contract.Scope{OwnNamespace: c.Namespace, Excluded: c.ExcludedNamespaces, Selector: c.NamespaceSelector}
}

// DefaultConfig returns the defaults the flags start from.
func DefaultConfig() Config {
	return Config{
		NodeName:     os.Getenv("NODE_NAME"),
		Mode:         contract.ModeStrict,
		MetricsAddr:  ":9090",
		EventMode:    contract.EventLogDeny,
		EventRate:    1000,
		PinRoot:      contract.DefaultPinRoot,
		ResyncPeriod: time.Minute,
		CNITimeout:   3 * time.Second,
		Workers:      4,
		AllowHost:    true,
		Namespace:    defaultNamespace(),
		DefaultDeny:  true,
		// A copy per Config: the flag writes into it.
		ConditionTypes: contract.DefaultConditionTypes(),
	}
}

// defaultNamespace is the agent pod's own namespace (downward API, env POD_NAMESPACE),
// else the chart's default.
func defaultNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	return "strictgate"
}

// RegisterFlags binds c to fs; c's current values are the defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.NodeName, "node-name", c.NodeName, "this node's name (downward API spec.nodeName; env NODE_NAME)")
	fs.Func("mode", "enforcement mode: strict, standard or audit (default "+string(c.Mode)+")", func(s string) error {
		m, err := contract.ParseMode(s)
		c.Mode = m
		return err
	})
	fs.StringVar(&c.Kubeconfig, "kubeconfig", c.Kubeconfig, "kubeconfig file; empty: in-cluster configuration")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", c.MetricsAddr, "address of /metrics, /healthz and /readyz; empty disables")
	fs.StringVar(&c.EventLogFile, "event-log-file", c.EventLogFile, "also append policy event logs (JSON lines) to this file")
	fs.IntVar(&c.EventLogMaxSizeMB, "event-log-max-size-mb", c.EventLogMaxSizeMB, "rotate --event-log-file at this many megabytes (0: never rotate)")
	fs.IntVar(&c.EventLogMaxBackups, "event-log-max-backups", c.EventLogMaxBackups, "rotated --event-log-file files to keep (with --event-log-max-size-mb)")
	fs.Func("event-mode", "policy events to log: none, deny (DENY and AUDIT) or all (default "+string(c.EventMode)+")", func(s string) error {
		m, err := contract.ParseEventLogMode(s)
		c.EventMode = m
		return err
	})
	fs.IntVar(&c.EventRate, "event-rate", c.EventRate, "maximum kernel events per second on this node (0: unlimited)")
	fs.StringVar(&c.PinRoot, "pin-root", c.PinRoot, "bpffs directory of the datapath's pinned maps and links")
	fs.DurationVar(&c.ResyncPeriod, "resync-period", c.ResyncPeriod, "how often every local pod is verified against the kernel")
	fs.DurationVar(&c.CRDPollPeriod, "crd-poll-period", c.CRDPollPeriod, "how often to look for the ClusterNetworkPolicy CRD while it is not installed (0: 30s)")
	fs.IntVar(&c.Workers, "workers", c.Workers, "pods reconciled in parallel")
	fs.BoolVar(&c.AllowHost, "allow-host", c.AllowHost, "let traffic between pods and their node's own addresses pass (kubelet probes)")
	fs.StringVar(&c.Namespace, "namespace", c.Namespace, "strictgate's own namespace, never enforced (give the webhook's --namespace; env POD_NAMESPACE)")
	fs.Var(flagutil.NewStringList(&c.ExcludedNamespaces), "exclude-namespace", "namespace that is never enforced (repeatable or comma-separated; give the webhook's --exclude-namespace values)")
	fs.Var(contract.NamespaceSelectorFlag{Dst: &c.NamespaceSelector}, "namespace-selector", contract.NamespaceSelectorUsage+" (give the webhook's value)")
	fs.StringVar(&c.CNISocket, "cni-socket", c.CNISocket, "unix socket (mode 0600) on which the CNI plugin asks for program-at-ADD; empty disables")
	fs.DurationVar(&c.CNITimeout, "cni-timeout", c.CNITimeout, "how long one program-at-ADD request may take")
	fs.Var(contract.NewConditionTypesFlag(&c.ConditionTypes), "condition-types", contract.ConditionTypesUsage+" (give the webhook's value)")
	fs.BoolVar(&c.DefaultDeny, "default-deny", c.DefaultDeny, "enforced namespaces get strictgate-default-deny, so a new pod's first programming waits for it (give the webhook's value)")
}

// Validate reports the first invalid setting, with what to do about it.
func (c *Config) Validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("--node-name is required (set it from the downward API: fieldRef spec.nodeName)"))
	}
	if _, err := contract.ParseMode(string(c.Mode)); err != nil {
		errs = append(errs, err)
	}
	if _, err := contract.ParseEventLogMode(string(c.EventMode)); err != nil {
		errs = append(errs, fmt.Errorf("unknown --event-mode %q: want none, deny or all", c.EventMode))
	}
	if c.EventLogMaxSizeMB != 0 {
		if err := (hostfile.Options{Path: c.EventLogFile, MaxSizeMB: c.EventLogMaxSizeMB, MaxBackups: c.EventLogMaxBackups}).Validate(); err != nil {
			errs = append(errs, fmt.Errorf("--event-log-file with --event-log-max-size-mb: %w", err))
		}
	} else if c.EventLogMaxBackups != 0 {
		errs = append(errs, errors.New("--event-log-max-backups needs --event-log-max-size-mb"))
	}
	if c.EventRate < 0 {
		errs = append(errs, fmt.Errorf("--event-rate %d: want 0 (unlimited) or more", c.EventRate))
	}
	if c.Namespace == "" {
		errs = append(errs, errors.New("--namespace must not be empty: give strictgate's own namespace (the webhook's --namespace)"))
	}
	if c.PinRoot == "" {
		errs = append(errs, errors.New("--pin-root must not be empty"))
	}
	if c.Workers < 1 {
		errs = append(errs, fmt.Errorf("--workers %d: want at least 1", c.Workers))
	}
	if err := contract.ValidateConditionTypes(c.ConditionTypes); err != nil {
		errs = append(errs, fmt.Errorf("--condition-types: %w", err))
	}
	if c.ResyncPeriod <= 0 {
		errs = append(errs, fmt.Errorf("--resync-period %s: want a positive duration", c.ResyncPeriod))
	}
	return errors.Join(errs...)
}
