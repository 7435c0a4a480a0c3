// Package bpfengine is the "bpf" engine of package verdict: it judges flows by running
// them as packets through the real eBPF program (BPF_PROG_TEST_RUN). Importing it
// registers the engine; it is kept apart so that verdict itself needs no kernel.
package bpfengine

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"

	"k8s.io/apimachinery/pkg/types"

	"github.com/strictgate/strictgate/agent/compile"
	"github.com/strictgate/strictgate/agent/datapath"
	"github.com/strictgate/strictgate/agent/datapath/packet"
	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/internal/contract"
	"github.com/strictgate/strictgate/verdict"
)

func init() {
	verdict.Engines["bpf"] = New
}

// bpfEngine runs every query as a packet through the real eBPF program
// (BPF_PROG_TEST_RUN) on a private, unpinned datapath: the compiled rules are written
// into its maps exactly as the agent writes them.
type bpfEngine struct {
	c       *compile.Compiler
	d       *datapath.Datapath
	ifindex map[types.NamespacedName]int
	// seq varies the source port of queries; tracked holds, per interface, the
	// conntrack keys that allowed queries created. A query whose key is there would be
	// answered by conntrack instead of by policy, so the pod is re-registered (which
	// flushes its conntrack) first.
	seq     uint32
	tracked map[int]map[ctKey]bool
}

// ctKey is what the datapath's conntrack keys a connection by (with the interface).
type ctKey struct {
	proto               rules.Protocol
	remote              netip.Addr
	podPort, remotePort uint16
}

// firstIfindex numbers the pretend interfaces; RunPacket needs no real one.
const firstIfindex = 1000

// Opening a datapath creates large maps; engines of one process share one and each
// detaches its own pods when closed.
var shared struct {
	sync.Mutex
	d           *datapath.Datapath
	nextIfindex int
}

// New opens a private datapath (root only) and programs pods into it as they
// are queried.
func New(c *compile.Compiler, _ []verdict.PodAddr, nodeIPs []netip.Addr) (verdict.Engine, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the bpf engine loads eBPF programs and needs root; run as root or use --engine=go")
	}
	shared.Lock()
	defer shared.Unlock()
	if shared.d == nil {
		d, err := datapath.Open(datapath.Options{Ephemeral: true})
		if err != nil {
			return nil, fmt.Errorf("open datapath: %w", err)
		}
		shared.d, shared.nextIfindex = d, firstIfindex
	}
	d := shared.d
	// The node addresses are global to the datapath: engines with different node
	// addresses must not be used at the same time.
	if err := d.SetHostAddrs(nodeIPs); err != nil {
		return nil, fmt.Errorf("set node addresses: %w", err)
	}
	return &bpfEngine{c: c, d: d, ifindex: map[types.NamespacedName]int{}, tracked: map[int]map[ctKey]bool{}}, nil
}

func (b *bpfEngine) pod(k types.NamespacedName) (int, error) {
	if ix, ok := b.ifindex[k]; ok {
		return ix, nil
	}
	r, ok := b.c.Rules(k)
	if !ok {
		return 0, fmt.Errorf("pod %s has no compiled rules", k)
	}
	if len(b.ifindex) >= contract.MaxPods {
		return 0, fmt.Errorf("the datapath holds at most %d pods; split the flows", contract.MaxPods)
	}
	shared.Lock()
	ix := shared.nextIfindex
	shared.nextIfindex++
	shared.Unlock()
	if err := b.register(ix, r); err != nil {
		return 0, fmt.Errorf("program pod %s: %w", k, err)
	}
	b.ifindex[k] = ix
	return ix, nil
}

func (b *bpfEngine) register(ix int, r *rules.PodRules) error {
	if _, err := b.d.Register(ix, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
		return err
	}
	_, err := b.d.Program(ix, r)
	b.tracked[ix] = map[ctKey]bool{}
	return err
}

func (b *bpfEngine) Judge(_ context.Context, q verdict.Query) (rules.Verdict, rules.RuleID, error) {
	ix, err := b.pod(q.Pod)
	if err != nil {
		return rules.Deny, rules.RuleNone, err
	}
	b.seq++
	sport := uint16(20000 + b.seq%40000)
	src, dst := q.PodIP, q.Remote
	if q.Direction == rules.Ingress {
		src, dst = q.Remote, q.PodIP
	}
	proto := uint8(q.Protocol)
	if q.Protocol == rules.ProtocolICMP && !src.Is4() {
		proto = packet.ProtoICMPv6
	}
	frame, err := packet.Packet{Src: src, Dst: dst, Protocol: proto, SrcPort: sport, DstPort: q.Port}.Frame()
	if err != nil {
		return rules.Deny, rules.RuleNone, err
	}
	key := ctKey{proto: rules.Protocol(proto), remote: q.Remote.Unmap(), podPort: sport, remotePort: q.Port}
	if q.Direction == rules.Ingress {
		key.podPort, key.remotePort = q.Port, sport
	}
	if proto != packet.ProtoTCP && proto != packet.ProtoUDP && proto != packet.ProtoSCTP {
		key.podPort, key.remotePort = 0, 0
	}
	if b.tracked[ix][key] {
		r, _ := b.c.Rules(q.Pod)
		if err := b.d.Detach(ix); err != nil {
			return rules.Deny, rules.RuleNone, fmt.Errorf("reset pod %s: %w", q.Pod, err)
		}
		if err := b.register(ix, r); err != nil {
			return rules.Deny, rules.RuleNone, fmt.Errorf("program pod %s: %w", q.Pod, err)
		}
	}
	res, err := b.d.RunPacket(ix, q.Direction, frame)
	if err != nil {
		return rules.Deny, rules.RuleNone, err
	}
	if res.Verdict.Passes() {
		b.tracked[ix][key] = true
	}
	v := rules.Deny
	if res.Verdict == datapath.VerdictAllow {
		v = rules.Allow
	}
	switch res.Reason {
	case datapath.ReasonPolicy:
		return v, res.Rule, nil
	case datapath.ReasonHost:
		return v, rules.RuleHost, nil
	}
	return v, res.Rule, fmt.Errorf("datapath decided by %s, not by policy: a query was not a new connection", res.Reason)
}

// Close removes the engine's pods from the shared datapath.
func (b *bpfEngine) Close() error {
	var errs []error
	for _, ix := range b.ifindex {
		errs = append(errs, b.d.Detach(ix))
	}
	return errors.Join(errs...)
}
