// Package events turns what the kernel reports into what people read: verdict events
// from the datapath's ring buffer become JSON-lines policy event logs, and the
// datapath's always-on per-pod counters become Prometheus metrics, read at scrape time.
//
// Logs are a sample (the kernel rate-limits events); metrics are exact (every packet
// is counted in the kernel). That is why drop metrics come from counters, never from
// counting log lines.
package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/strictgate/strictgate/agent/compile"
	"github.com/strictgate/strictgate/agent/datapath"
	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/internal/contract"
)

// Resolver names what is behind addresses, interfaces and rule IDs (the agent's pod IP
// index, its attachments and the compiler's rule table).
type Resolver interface {
	PodByIP(ip netip.Addr) (types.NamespacedName, bool)
	PodByIfindex(ifindex int) (types.NamespacedName, bool)
	Rule(id rules.RuleID) (compile.RuleRef, bool)
}

// TierResolver, if the Resolver implements it, names the ClusterNetworkPolicy Deny
// rule behind a drop: the datapath only names the rules that allow.
type TierResolver interface {
	DenyRule(ifindex int, d rules.Direction, remote netip.Addr, proto rules.Protocol, port uint16) (compile.RuleRef, bool)
}

// Policy values of records whose verdict no policy rule decided.
const (
	// PolicyDefaultDeny: the pod is isolated in that direction and no rule allowed it.
	PolicyDefaultDeny = "default-deny"
	// PolicyNone: no policy selects the pod in that direction.
	PolicyNone = "no-policy"
	// PolicyUnprogrammed: the pod had no programmed policy yet (the mode's initial state).
	PolicyUnprogrammed = "unprogrammed"
	// PolicyHost: traffic with the node's own addresses.
	PolicyHost = "host"
	// PolicyConntrack: part of a connection allowed earlier.
	PolicyConntrack = "conntrack"
	// PolicyUnknownRule: a rule ID the compiler no longer knows (its policy just changed).
	PolicyUnknownRule = "unknown-rule"
	// PolicySourceValidation: the pod sent from an address that is not its own; no
	// policy was consulted.
	PolicySourceValidation = "source-validation"
)

// Record is one line of the policy event log.
type Record struct {
	Time      time.Time `json:"time"`
	Node      string    `json:"node"`
	Verdict   string    `json:"verdict"` // contract.Verdict.LogName: ACCEPT, DENY or AUDIT
	Direction string    `json:"direction"`
	Protocol  string    `json:"protocol"`
	SrcIP     string    `json:"srcIP,omitempty"`
	SrcPort   uint16    `json:"srcPort"`
	DstIP     string    `json:"dstIP,omitempty"`
	DstPort   uint16    `json:"dstPort"`
	// The pods behind the addresses, when they are pods.
	SrcNamespace string `json:"srcNamespace,omitempty"`
	SrcPod       string `json:"srcPod,omitempty"`
	DstNamespace string `json:"dstNamespace,omitempty"`
	DstPod       string `json:"dstPod,omitempty"`
	// Policy is "namespace/name" of the deciding policy, or one of the Policy* values.
	Policy string `json:"policy"`
	// RuleIndex is the index of the deciding rule in the policy's ingress or egress list.
	RuleIndex *int `json:"ruleIndex,omitempty"`
	// Tier is the tier of the deciding rule: Admin, NetworkPolicy or Baseline (Policy is
	// then a ClusterNetworkPolicy's name for Admin and Baseline); empty when no rule decided.
	Tier string `json:"tier,omitempty"`
	// Reason is the part of the datapath that decided (policy, conntrack, host, ...).
	Reason string `json:"reason"`
	Bytes  uint32 `json:"bytes"`
}

// DatapathMode is the kernel's event switch for the log mode m: the kernel then sends
// no event the log would drop.
func DatapathMode(m contract.EventLogMode) datapath.EventMode {
	switch m {
	case contract.EventLogNone:
		return datapath.EventsNone
	case contract.EventLogAll:
		return datapath.EventsAll
	}
	return datapath.EventsDenyOnly
}

// Logger writes policy event logs.
type Logger struct {
	node string
	res  Resolver
	mode contract.EventLogMode

	mu  sync.Mutex
	enc *json.Encoder
}

// NewLogger writes JSON lines to w (for example io.MultiWriter(os.Stdout, file)).
func NewLogger(w io.Writer, node string, mode contract.EventLogMode, res Resolver) *Logger {
	return &Logger{node: node, res: res, mode: mode, enc: json.NewEncoder(w)}
}

// Record builds the log record of a kernel event.
func (l *Logger) Record(e datapath.Event) Record {
	r := Record{
		Time:      e.Time.UTC(),
		Node:      l.node,
		Verdict:   e.Verdict.LogName(),
		Direction: e.Direction.String(),
		Protocol:  e.Protocol.String(),
		Reason:    e.Reason.String(),
		Bytes:     e.Bytes,
	}
	if e.Src.IsValid() {
		r.SrcIP, r.SrcPort = e.Src.Addr().String(), e.Src.Port()
		r.SrcNamespace, r.SrcPod = l.podOf(e.Src.Addr())
	}
	if e.Dst.IsValid() {
		r.DstIP, r.DstPort = e.Dst.Addr().String(), e.Dst.Port()
		r.DstNamespace, r.DstPod = l.podOf(e.Dst.Addr())
	}
	// The local pod is known by its interface even before its IP reaches the index.
	if k, ok := l.res.PodByIfindex(e.Ifindex); ok {
		if e.Direction == rules.Egress && r.SrcPod == "" {
			r.SrcNamespace, r.SrcPod = k.Namespace, k.Name
		}
		if e.Direction == rules.Ingress && r.DstPod == "" {
			r.DstNamespace, r.DstPod = k.Namespace, k.Name
		}
	}
	switch {
	case e.Reason == datapath.ReasonSpoofed:
		r.Policy = PolicySourceValidation
	case e.Rule == rules.RuleNone:
		r.Policy = PolicyDefaultDeny
		if tr, ok := l.res.(TierResolver); ok && e.Src.IsValid() {
			remote, port := e.Src.Addr(), e.Dst.Port()
			if e.Direction == rules.Egress {
				remote = e.Dst.Addr()
			}
			if ref, ok := tr.DenyRule(e.Ifindex, e.Direction, remote, e.Protocol, port); ok {
				r.Policy, r.Tier = ref.Policy.Name, ref.Tier
				idx := ref.Index
				r.RuleIndex = &idx
			}
		}
	case e.Rule == rules.RuleUnisolated:
		r.Policy = PolicyNone
	case e.Rule == rules.RuleUnprogrammed:
		r.Policy = PolicyUnprogrammed
	case e.Rule == rules.RuleHost:
		r.Policy = PolicyHost
	case e.Rule == rules.RuleConntrack:
		r.Policy = PolicyConntrack
	default:
		if ref, ok := l.res.Rule(e.Rule); ok {
			r.Policy = ref.Policy.String()
			if ref.Tier != "" {
				r.Policy = ref.Policy.Name
			}
			r.Tier = ref.TierOf()
			idx := ref.Index
			r.RuleIndex = &idx
		} else {
			r.Policy = PolicyUnknownRule
		}
	}
	return r
}

func (l *Logger) podOf(a netip.Addr) (ns, name string) {
	if k, ok := l.res.PodByIP(a); ok {
		return k.Namespace, k.Name
	}
	return "", ""
}

// Wanted reports whether the logger's mode keeps events of verdict v.
func (l *Logger) Wanted(v datapath.Verdict) bool { return l.mode.Keeps(v) }

// Log writes the event's record if the mode wants it.
func (l *Logger) Log(e datapath.Event) error {
	if !l.Wanted(e.Verdict) {
		return nil
	}
	r := l.Record(e)
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.enc.Encode(r)
}

// Source is where events come from (*datapath.EventReader).
type Source interface {
	Read() (datapath.Event, error)
	Close() error
}

// Run logs events from src until ctx ends (then it closes src) or src fails.
func Run(ctx context.Context, src Source, l *Logger) error {
	stop := context.AfterFunc(ctx, func() { src.Close() })
	defer stop()
	for {
		e, err := src.Read()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, datapath.ErrClosed) {
				return nil
			}
			return fmt.Errorf("read events: %w", err)
		}
		if err := l.Log(e); err != nil {
			return fmt.Errorf("write event log: %w", err)
		}
	}
}
