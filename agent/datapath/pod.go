package datapath

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/internal/contract"
)

// AttachMode says how a pod's programs are attached.
type AttachMode uint8

const (
	// AttachNone: registered for test runs only (Register).
	AttachNone AttachMode = AttachMode(bpfSgAttachSG_ATTACH_NONE) // none
	// AttachTCX: tcx links (kernel ≥ 6.6), pinned under PinRoot/links.
	AttachTCX AttachMode = AttachMode(bpfSgAttachSG_ATTACH_TCX) // tcx
	// AttachTC: clsact qdisc + cls_bpf direct-action filters.
	AttachTC AttachMode = AttachMode(bpfSgAttachSG_ATTACH_TC) // tc
)

// Pod is what the kernel holds for one pod interface.
type Pod struct {
	Ifindex int
	// Slot indexes the pod's counters.
	Slot uint32
	// Ingress and Egress are the directions' states.
	Ingress, Egress rules.State
	// Generation changes on every Program and SetState; conntrack entries made under
	// another generation are re-checked.
	Generation uint32
	Audit      bool
	Attach     AttachMode
	// Digest identifies the rules last programmed (RulesDigest of them); 0 if never.
	Digest uint64
}

// State returns the state of direction dir.
func (p Pod) State(dir rules.Direction) rules.State {
	if dir == rules.Egress {
		return p.Egress
	}
	return p.Ingress
}

func podFromRaw(ifindex uint32, v *bpfSgPod) Pod {
	return Pod{
		Ifindex:    int(ifindex),
		Slot:       v.Slot,
		Ingress:    rules.State(v.Dir[rules.Ingress].State),
		Egress:     rules.State(v.Dir[rules.Egress].State),
		Generation: v.Generation,
		Audit:      v.Audit != 0,
		Attach:     AttachMode(v.Attach),
		Digest:     v.Digest,
	}
}

func (d *Datapath) lookupPod(ifindex int) (*bpfSgPod, error) {
	var v bpfSgPod
	if err := d.objs.SgPods.Lookup(uint32(ifindex), &v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil, fmt.Errorf("%w: ifindex %d", ErrNoPod, ifindex)
		}
		return nil, fmt.Errorf("look up pod %d: %w", ifindex, err)
	}
	return &v, nil
}

// Pod returns the kernel's entry for the pod interface ifindex.
func (d *Datapath) Pod(ifindex int) (Pod, error) {
	v, err := d.lookupPod(ifindex)
	if err != nil {
		return Pod{}, err
	}
	return podFromRaw(uint32(ifindex), v), nil
}

// Pods lists every pod entry (after a restart: what the kernel enforces).
func (d *Datapath) Pods() ([]Pod, error) {
	var (
		k   uint32
		v   bpfSgPod
		out []Pod
	)
	it := d.objs.SgPods.Iterate()
	for it.Next(&k, &v) {
		out = append(out, podFromRaw(k, &v))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	return out, nil
}

func validInitialState(s rules.State) error {
	switch s {
	case rules.StateUnprogrammedDeny, rules.StateUnprogrammedAllow, rules.StateUnisolated:
		return nil
	case rules.StateIsolated:
		return fmt.Errorf("%w: state isolated needs rules: use Program", ErrInvalidRules)
	}
	return fmt.Errorf("%w: unknown state %d", ErrInvalidRules, s)
}

func rulesetID(slot uint32, dir rules.Direction, parity uint32) uint32 {
	return slot<<2 | uint32(dir)<<1 | parity&1
}

// Register creates the pod entry for ifindex with the given states, without attaching
// anything: RunPacket can then judge packets for it. Attach registers too. Registering
// an existing pod changes nothing and returns its entry.
func (d *Datapath) Register(ifindex int, ingress, egress rules.State) (Pod, error) {
	return d.register(ifindex, ingress, egress, AttachNone)
}

func (d *Datapath) register(ifindex int, ingress, egress rules.State, mode AttachMode) (Pod, error) {
	if ifindex <= 0 || ifindex > 1<<31-1 {
		return Pod{}, fmt.Errorf("%w: ifindex %d", ErrInvalidRules, ifindex)
	}
	for _, s := range []rules.State{ingress, egress} {
		if err := validInitialState(s); err != nil {
			return Pod{}, err
		}
	}
	if p, err := d.Pod(ifindex); err == nil {
		return p, nil
	} else if !errors.Is(err, ErrNoPod) {
		return Pod{}, err
	}
	slot, err := d.allocSlot(uint32(ifindex))
	if err != nil {
		return Pod{}, err
	}
	if err := d.zeroCounters(slot); err != nil {
		d.objs.SgSlots.Delete(slot)
		return Pod{}, err
	}
	v := bpfSgPod{Slot: slot, Generation: randomUint32(), Attach: uint8(mode)}
	v.Dir[rules.Ingress] = bpfSgPodDir{Ruleset: rulesetID(slot, rules.Ingress, 0), State: uint8(ingress)}
	v.Dir[rules.Egress] = bpfSgPodDir{Ruleset: rulesetID(slot, rules.Egress, 0), State: uint8(egress)}
	if err := d.objs.SgPods.Update(uint32(ifindex), &v, ebpf.UpdateNoExist); err != nil {
		d.objs.SgSlots.Delete(slot)
		if errors.Is(err, ebpf.ErrKeyExist) { // another process registered it meanwhile
			return d.Pod(ifindex)
		}
		return Pod{}, fmt.Errorf("create pod entry %d: %w", ifindex, err)
	}
	return podFromRaw(uint32(ifindex), &v), nil
}

// allocSlot takes the first free counter slot. Inserting with BPF_NOEXIST makes the
// allocation safe between processes without a lock.
func (d *Datapath) allocSlot(ifindex uint32) (uint32, error) {
	start := randomUint32() % contract.MaxPods // spread, so concurrent allocators rarely collide
	for i := uint32(0); i < contract.MaxPods; i++ {
		s := (start + i) % contract.MaxPods
		err := d.objs.SgSlots.Update(s, ifindex, ebpf.UpdateNoExist)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, ebpf.ErrKeyExist) {
			if errors.Is(err, unix.E2BIG) { // full: only when slots leaked beyond MaxPods
				break
			}
			return 0, fmt.Errorf("allocate pod slot: %w", err)
		}
	}
	return 0, fmt.Errorf("%w: all MaxPods (%d) pod slots are in use", ErrCapacity, contract.MaxPods)
}

func (d *Datapath) zeroCounters(slot uint32) error {
	zero := make([]bpfSgCounter, ebpf.MustPossibleCPU())
	for dir := uint32(0); dir < 2; dir++ {
		for v := uint32(0); v < uint32(bpfSgVerdictSG_VERDICT_MAX); v++ {
			if err := d.objs.SgCounters.Update(counterIndex(slot, dir, v), zero, ebpf.UpdateAny); err != nil {
				return fmt.Errorf("reset counters of slot %d: %w", slot, err)
			}
		}
	}
	return nil
}

func counterIndex(slot, dir, verdict uint32) uint32 {
	return (slot*2+dir)*uint32(bpfSgVerdictSG_VERDICT_MAX) + verdict
}

func randomUint32() uint32 {
	var b [4]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint32(b[:])
}

// updatePod replaces the pod value in one map update (readers see old or new, never a mix).
func (d *Datapath) updatePod(ifindex int, v *bpfSgPod) error {
	if err := d.objs.SgPods.Update(uint32(ifindex), v, ebpf.UpdateExist); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("%w: ifindex %d (detached meanwhile)", ErrNoPod, ifindex)
		}
		return fmt.Errorf("update pod %d: %w", ifindex, err)
	}
	return nil
}

// SetState switches one direction of a pod to a state that needs no rules
// (unprogrammed-deny, unprogrammed-allow, unisolated); isolation comes with Program.
// It returns the new generation: connections are re-checked under the new state.
func (d *Datapath) SetState(ifindex int, dir rules.Direction, s rules.State) (uint32, error) {
	if err := validInitialState(s); err != nil {
		return 0, err
	}
	if dir != rules.Ingress && dir != rules.Egress {
		return 0, fmt.Errorf("%w: direction %d", ErrInvalidRules, dir)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, err := d.lookupPod(ifindex)
	if err != nil {
		return 0, err
	}
	v.Dir[dir].State = uint8(s)
	v.Generation++
	v.Digest = 0
	if err := d.updatePod(ifindex, v); err != nil {
		return 0, err
	}
	return v.Generation, nil
}

// SetAudit switches audit for one pod (both directions): would-be drops pass and are
// counted and reported as AUDIT. Connections passed only by audit are re-checked when
// audit is switched off.
func (d *Datapath) SetAudit(ifindex int, on bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	v, err := d.lookupPod(ifindex)
	if err != nil {
		return err
	}
	v.Audit = boolByte(on)
	return d.updatePod(ifindex, v)
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// Config is the node-wide switches of the datapath.
type Config struct {
	// AllowHost lets traffic between pods and the addresses of SetHostAddrs pass in
	// every state (kubelet probes).
	AllowHost bool
	// Audit puts every pod in audit mode (in addition to per-pod SetAudit).
	Audit bool
	// EventMode selects which verdicts are reported on the ring buffer.
	EventMode EventMode
	// EventsPerSecPerCPU and EventsBurstPerCPU are the token bucket of each CPU
	// (0 per second = unlimited).
	EventsPerSecPerCPU uint32
	EventsBurstPerCPU  uint32
}

// Config returns the node-wide switches.
func (d *Datapath) Config() (Config, error) {
	var c bpfSgConfig
	if err := d.objs.SgCfg.Lookup(uint32(0), &c); err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	return Config{AllowHost: c.AllowHost != 0, Audit: c.Audit != 0, EventMode: EventMode(c.EventMode),
		EventsPerSecPerCPU: c.EventsPerSec, EventsBurstPerCPU: c.EventsBurst}, nil
}

func (d *Datapath) updateConfig(f func(*bpfSgConfig) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var c bpfSgConfig
	if err := d.objs.SgCfg.Lookup(uint32(0), &c); err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	if err := f(&c); err != nil {
		return err
	}
	if err := d.objs.SgCfg.Update(uint32(0), &c, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// SetAllowHost switches whether traffic with the node's own addresses always passes.
func (d *Datapath) SetAllowHost(on bool) error {
	return d.updateConfig(func(c *bpfSgConfig) error { c.AllowHost = boolByte(on); return nil })
}

// SetGlobalAudit puts every pod in audit mode (on) or leaves it to SetAudit (off).
func (d *Datapath) SetGlobalAudit(on bool) error {
	return d.updateConfig(func(c *bpfSgConfig) error { c.Audit = boolByte(on); return nil })
}

// SetEventMode selects which verdicts are reported.
func (d *Datapath) SetEventMode(m EventMode) error {
	if m > EventsAll {
		return fmt.Errorf("%w: event mode %d", ErrInvalidRules, m)
	}
	return d.updateConfig(func(c *bpfSgConfig) error { c.EventMode = uint8(m); return nil })
}

// SetRateLimit limits events to about perSecond per second node-wide with bursts of
// burst: each CPU gets its share (rounded up), so a flood on one CPU cannot exceed it.
// perSecond 0 removes the limit (not recommended).
func (d *Datapath) SetRateLimit(perSecond, burst uint32) error {
	rate, b := perCPURate(perSecond, burst)
	if rate > MaxEventsPerSecPerCPU || b > MaxEventsBurstPerCPU {
		return fmt.Errorf("%w: rate limit %d/s burst %d is above the per-CPU maximum %d/s burst %d",
			ErrInvalidRules, perSecond, burst, MaxEventsPerSecPerCPU, MaxEventsBurstPerCPU)
	}
	if perSecond > 0 && b == 0 {
		b = 1
	}
	return d.updateConfig(func(c *bpfSgConfig) error { c.EventsPerSec, c.EventsBurst = rate, b; return nil })
}

func perCPURate(perSecond, burst uint32) (uint32, uint32) {
	n := uint32(ebpf.MustPossibleCPU())
	return (perSecond + n - 1) / n, (burst + n - 1) / n
}

// SetHostAddrs replaces the node's addresses whose traffic passes (when AllowHost).
func (d *Datapath) SetHostAddrs(addrs []netip.Addr) error {
	if len(addrs) > maxHostAddrs {
		return fmt.Errorf("%w: %d host addresses, at most %d", ErrCapacity, len(addrs), maxHostAddrs)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	want := map[bpfSgAddr]bool{}
	for _, a := range addrs {
		if !a.IsValid() {
			return fmt.Errorf("%w: invalid host address", ErrInvalidRules)
		}
		want[bpfSgAddr{Addr: a.Unmap().As16()}] = true
	}
	for k := range want {
		if err := d.objs.SgHostAddrs.Update(&k, uint8(1), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("add host address %s: %w", netip.AddrFrom16(k.Addr).Unmap(), err)
		}
	}
	var (
		k     bpfSgAddr
		v     uint8
		stale []bpfSgAddr
	)
	it := d.objs.SgHostAddrs.Iterate()
	for it.Next(&k, &v) {
		if !want[k] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("list host addresses: %w", err)
	}
	for _, k := range stale {
		if err := d.objs.SgHostAddrs.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("remove host address: %w", err)
		}
	}
	return nil
}

// HostAddrs returns the node addresses currently set.
func (d *Datapath) HostAddrs() ([]netip.Addr, error) {
	var (
		k   bpfSgAddr
		v   uint8
		out []netip.Addr
	)
	it := d.objs.SgHostAddrs.Iterate()
	for it.Next(&k, &v) {
		out = append(out, netip.AddrFrom16(k.Addr).Unmap())
	}
	return out, it.Err()
}
