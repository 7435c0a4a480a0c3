package datapath

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/internal/contract"
)

// Program replaces a pod's rules and states (both directions) atomically and returns
// the pod's new generation. The new rules are written under fresh rule-set ids, the pod
// is flipped to them in one map update, then the old ones are deleted; a packet is
// judged by the old rules or the new ones, never a mix. Connections are re-checked
// against the new rules on their next packet.
//
// Capacity (contract.MaxPrefixesPerPodDirection, contract.MaxPortRulesPerEntry,
// contract.MaxPrefixes, contract.MaxPortRules) is checked before anything is written: an
// error wrapping ErrCapacity or ErrInvalidRules leaves the pod exactly as it was.
//
// Entries of directions that are not isolated are ignored, as rules.Lookup does.
// Program must be called from one process only (it keeps an index of the rule maps).
func (d *Datapath) Program(ifindex int, r *rules.PodRules) (uint32, error) {
	if r == nil {
		return 0, fmt.Errorf("%w: nil rules", ErrInvalidRules)
	}
	var want [2][]lpmEntry
	for _, dir := range []rules.Direction{rules.Ingress, rules.Egress} {
		es, err := prepare(ifindex, dir, r.Dir(dir))
		if err != nil {
			return 0, err
		}
		want[dir] = es
	}
	for attempt := 1; ; attempt++ {
		gen, err := d.programOnce(ifindex, r, &want)
		var wait *quarantineWait
		if !errors.As(err, &wait) || attempt == maxQuarantineWaits {
			return gen, err
		}
		// Sleep without the lock (others keep programming), then start over: the
		// attempt released everything it had reserved.
		quarantineSleep(time.Until(wait.until))
	}
}

// quarantineSleep is time.Sleep; a test replaces it to look at the lock mid-wait.
var quarantineSleep = time.Sleep

// maxQuarantineWaits bounds how often Program waits for freed port-table ranges to
// mature before it reports ErrCapacity: each wait makes the ranges freed before it
// reusable, so only pods churning concurrently can make a second one necessary.
const maxQuarantineWaits = 3

// programOnce is one attempt of Program, under the lock.
func (d *Datapath) programOnce(ifindex int, r *rules.PodRules, want *[2][]lpmEntry) (uint32, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.ensureIndex(); err != nil {
		return 0, err
	}
	pod, err := d.lookupPod(ifindex)
	if err != nil {
		return 0, err
	}
	ix := d.idx
	ix.ports.releaseMatured(time.Now())

	var target [2]uint32
	total := 0
	for dir := range 2 {
		target[dir] = pod.Dir[dir].Ruleset ^ 1
		if target[dir]>>2 != pod.Slot || (target[dir]>>1)&1 != uint32(dir) {
			// Rule-set ids are derived from the slot; repair anything else.
			target[dir] = rulesetID(pod.Slot, rules.Direction(dir), 0)
			if target[dir] == pod.Dir[dir].Ruleset {
				target[dir] ^= 1
			}
		}
		// Leftovers of a failed update or of an earlier pod in this slot.
		if err := ix.deleteSet(d.objs.SgRules, target[dir], time.Now()); err != nil {
			return 0, err
		}
		total += len(want[dir])
	}
	if ix.total+total > contract.MaxPrefixes {
		return 0, fmt.Errorf("%w: pod %d needs %d prefixes but %d of contract.MaxPrefixes (%d) are in use",
			ErrCapacity, ifindex, total, ix.total, contract.MaxPrefixes)
	}

	// Reserve port-table ranges (in memory) before writing anything. Each entry with
	// ports takes one reference; on success the new rule sets own them.
	var lists []*portList
	release := func() {
		for _, l := range lists {
			ix.ports.unref(l, time.Time{}) // never referenced by a visible prefix: free at once
		}
	}
	for dir := range 2 {
		for i := range want[dir] {
			e := &want[dir][i]
			if len(e.ports) == 0 {
				continue
			}
			l, err := ix.ports.ref(e.ports)
			if err != nil {
				release()
				return 0, fmt.Errorf("pod %d %s: %w", ifindex, rules.Direction(dir), err)
			}
			lists = append(lists, l)
			e.list = l
			e.val = bpfSgLpmVal{Offset: l.off, Count: uint32(len(e.ports))}
		}
	}
	for _, l := range lists {
		if !l.written {
			if err := d.writePorts(l); err != nil {
				release()
				return 0, err
			}
		}
	}

	// Longest prefixes first: a reader that sees part of a rule set (it cannot, the set
	// is not referenced yet, but a stale reader of a recycled id could) only misses allows.
	var written [2][]bpfSgLpmKey
	rollback := func() {
		for dir := range 2 {
			for _, k := range written[dir] {
				d.objs.SgRules.Delete(&k)
			}
		}
		release()
	}
	for dir := range 2 {
		es := want[dir]
		slices.SortStableFunc(es, func(a, b lpmEntry) int { return cmp.Compare(b.key.Prefixlen, a.key.Prefixlen) })
		for _, e := range es {
			k := e.key
			k.Ruleset = target[dir]
			if err := d.objs.SgRules.Update(&k, &e.val, ebpf.UpdateAny); err != nil {
				rollback()
				if errors.Is(err, ebpf.ErrKeyNotExist) || isNoSpace(err) {
					return 0, fmt.Errorf("%w: contract.MaxPrefixes (%d): write prefix of pod %d: %v", ErrCapacity, contract.MaxPrefixes, ifindex, err)
				}
				return 0, fmt.Errorf("write prefix of pod %d: %w", ifindex, err)
			}
			written[dir] = append(written[dir], k)
		}
	}

	// The flip.
	next := *pod
	old := [2]uint32{pod.Dir[0].Ruleset, pod.Dir[1].Ruleset}
	for dir := range 2 {
		next.Dir[dir].Ruleset = target[dir]
		next.Dir[dir].State = uint8(r.Dir(rules.Direction(dir)).State)
	}
	next.Generation = pod.Generation + 1
	next.Digest = RulesDigest(r)
	if err := d.updatePod(ifindex, &next); err != nil {
		rollback()
		return 0, err
	}

	// Committed: index the new sets, drop the old ones (shortest prefixes first).
	now := time.Now()
	for dir := range 2 {
		set := &ruleSet{keys: written[dir]}
		for _, e := range want[dir] {
			if e.list != nil {
				set.lists = append(set.lists, e.list)
			}
		}
		ix.sets[target[dir]] = set
		ix.total += len(set.keys)
	}
	var errs []error
	for dir := range 2 {
		if old[dir] != target[dir] {
			if err := ix.deleteSet(d.objs.SgRules, old[dir], now); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		// The pod is programmed; only garbage remains, which Sweep removes.
		return next.Generation, fmt.Errorf("pod %d programmed, but deleting old rules failed: %w", ifindex, err)
	}
	return next.Generation, nil
}

func isNoSpace(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.E2BIG)
}

// lpmEntry is one prefix to write.
type lpmEntry struct {
	key   bpfSgLpmKey
	val   bpfSgLpmVal
	ports []bpfSgPortRule
	list  *portList
}

// lpmKey builds the trie key of a prefix (without rule-set id).
func lpmKey(p netip.Prefix) bpfSgLpmKey {
	k := bpfSgLpmKey{Addr: p.Addr().As16()}
	if p.Addr().Is4() {
		k.Family = 4
		k.Prefixlen = uint32(64 + 96 + p.Bits())
	} else {
		k.Family = 6
		k.Prefixlen = uint32(64 + p.Bits())
	}
	return k
}

// keyPrefix is the inverse of lpmKey.
func keyPrefix(k bpfSgLpmKey) netip.Prefix {
	a := netip.AddrFrom16(k.Addr)
	bits := int(k.Prefixlen) - 64
	if k.Family == 4 {
		return netip.PrefixFrom(a.Unmap(), bits-96)
	}
	return netip.PrefixFrom(a, bits)
}

// prepare validates one direction and converts it to trie entries.
func prepare(ifindex int, dir rules.Direction, r *rules.DirectionRules) ([]lpmEntry, error) {
	switch r.State {
	case rules.StateUnprogrammedDeny, rules.StateUnprogrammedAllow, rules.StateUnisolated:
		return nil, nil // rules.Lookup ignores entries in these states
	case rules.StateIsolated:
	default:
		return nil, fmt.Errorf("%w: pod %d %s: unknown state %d", ErrInvalidRules, ifindex, dir, r.State)
	}
	if n := len(r.Entries); n > contract.MaxPrefixesPerPodDirection {
		return nil, fmt.Errorf("%w: pod %d %s has %d prefixes, more than contract.MaxPrefixesPerPodDirection (%d)",
			ErrCapacity, ifindex, dir, n, contract.MaxPrefixesPerPodDirection)
	}
	seen := make(map[netip.Prefix]bool, len(r.Entries))
	out := make([]lpmEntry, 0, len(r.Entries))
	for _, e := range r.Entries {
		p := e.Prefix
		if !p.IsValid() || p != p.Masked() {
			return nil, fmt.Errorf("%w: pod %d %s: prefix %s is not canonical (masked)", ErrInvalidRules, ifindex, dir, p)
		}
		if seen[p] {
			return nil, fmt.Errorf("%w: pod %d %s: prefix %s appears twice", ErrInvalidRules, ifindex, dir, p)
		}
		seen[p] = true
		if n := len(e.Ports); n > contract.MaxPortRulesPerEntry {
			return nil, fmt.Errorf("%w: pod %d %s prefix %s has %d port rules, more than contract.MaxPortRulesPerEntry (%d)",
				ErrCapacity, ifindex, dir, p, n, contract.MaxPortRulesPerEntry)
		}
		le := lpmEntry{key: lpmKey(p)}
		for _, pr := range e.Ports {
			if pr.First > pr.Last {
				return nil, fmt.Errorf("%w: pod %d %s prefix %s: port range %d-%d is empty", ErrInvalidRules, ifindex, dir, p, pr.First, pr.Last)
			}
			le.ports = append(le.ports, bpfSgPortRule{Rule: uint32(pr.Rule), FirstPortHost: pr.First, LastPortHost: pr.Last, Proto: uint8(pr.Protocol)})
		}
		out = append(out, le)
	}
	return out, nil
}

// RulesDigest is a hash of rules as the datapath stores them (Pod.Digest): equal rules
// give equal digests, so the agent can tell whether the kernel holds what it computed.
// Entry order does not matter; port-rule order does (the first matching rule is reported).
func RulesDigest(r *rules.PodRules) uint64 {
	h := fnv.New64a()
	var b [8]byte
	for _, dir := range []rules.Direction{rules.Ingress, rules.Egress} {
		dr := r.Dir(dir)
		h.Write([]byte{byte(dir), byte(dr.State)})
		if dr.State != rules.StateIsolated {
			continue
		}
		es := slices.Clone(dr.Entries)
		sortEntries(es)
		for _, e := range es {
			a := e.Prefix.Addr().As16()
			h.Write(a[:])
			h.Write([]byte{byte(e.Prefix.Bits()), boolByte(e.Prefix.Addr().Is4())})
			binary.LittleEndian.PutUint32(b[:4], uint32(len(e.Ports)))
			h.Write(b[:4])
			for _, p := range e.Ports {
				binary.LittleEndian.PutUint16(b[0:], p.First)
				binary.LittleEndian.PutUint16(b[2:], p.Last)
				binary.LittleEndian.PutUint32(b[4:], uint32(p.Rule))
				h.Write([]byte{byte(p.Protocol)})
				h.Write(b[:])
			}
		}
	}
	if s := h.Sum64(); s != 0 {
		return s
	}
	return 1
}

// Sweep deletes rules of pods that no longer exist or of directions that are no longer
// isolated (left behind by a Detach in another process, e.g. the CNI plugin). Call it
// from the agent now and then; Program reuses such space by itself as well.
func (d *Datapath) Sweep() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.ensureIndex(); err != nil {
		return err
	}
	return d.sweepLocked()
}

func (d *Datapath) sweepLocked() error {
	live, err := d.liveRulesets()
	if err != nil {
		return err
	}
	now := time.Now()
	var errs []error
	for id := range d.idx.sets {
		if !live[id] {
			errs = append(errs, d.idx.deleteSet(d.objs.SgRules, id, now))
		}
	}
	return errors.Join(errs...)
}

// liveRulesets returns the rule-set ids that some pod's isolated direction uses.
func (d *Datapath) liveRulesets() (map[uint32]bool, error) {
	pods, err := d.rawPods()
	if err != nil {
		return nil, err
	}
	live := map[uint32]bool{}
	for _, p := range pods {
		for dir := range 2 {
			if p.Dir[dir].State == uint8(rules.StateIsolated) {
				live[p.Dir[dir].Ruleset] = true
			}
		}
	}
	return live, nil
}

func (d *Datapath) rawPods() (map[uint32]bpfSgPod, error) {
	var (
		k uint32
		v bpfSgPod
	)
	out := map[uint32]bpfSgPod{}
	it := d.objs.SgPods.Iterate()
	for it.Next(&k, &v) {
		out[k] = v
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	return out, nil
}

func (d *Datapath) writePorts(l *portList) error {
	keys := make([]uint32, len(l.rules))
	for i := range keys {
		keys[i] = l.off + uint32(i)
	}
	if _, err := d.objs.SgPortRules.BatchUpdate(keys, l.rules, nil); err != nil {
		// Older kernels: one by one.
		for i, k := range keys {
			if err := d.objs.SgPortRules.Update(k, &l.rules[i], ebpf.UpdateAny); err != nil {
				return fmt.Errorf("write port rules: %w", err)
			}
		}
	}
	l.written = true
	return nil
}

// ensureIndex builds the in-memory index of the rule maps from the kernel (once per
// process) and removes garbage of interrupted updates.
func (d *Datapath) ensureIndex() error {
	if d.idx != nil {
		return nil
	}
	ix := newRuleIndex()
	var (
		k bpfSgLpmKey
		v bpfSgLpmVal
	)
	byOff := map[uint32]uint32{} // offset -> count
	it := d.objs.SgRules.Iterate()
	type kv struct {
		k bpfSgLpmKey
		v bpfSgLpmVal
	}
	var all []kv
	for it.Next(&k, &v) {
		all = append(all, kv{k, v})
		if v.Count > 0 {
			byOff[v.Offset] = v.Count
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read rule trie: %w", err)
	}
	// Rebuild the port lists the trie references.
	var used []extent
	for off, n := range byOff {
		if uint64(off)+uint64(n) > contract.MaxPortRules {
			continue
		}
		l := &portList{off: off, written: true}
		var pr bpfSgPortRule
		for i := uint32(0); i < n; i++ {
			if err := d.objs.SgPortRules.Lookup(off+i, &pr); err != nil {
				return fmt.Errorf("read port rules: %w", err)
			}
			l.rules = append(l.rules, pr)
		}
		l.key = portKey(l.rules)
		if _, dup := ix.ports.dedup[l.key]; !dup {
			ix.ports.dedup[l.key] = l
		}
		ix.ports.byOffset[off] = l
		used = append(used, extent{off, n})
	}
	ix.ports.setUsed(used)
	for _, e := range all {
		set := ix.sets[e.k.Ruleset]
		if set == nil {
			set = &ruleSet{}
			ix.sets[e.k.Ruleset] = set
		}
		set.keys = append(set.keys, e.k)
		if e.v.Count > 0 {
			if l := ix.ports.byOffset[e.v.Offset]; l != nil {
				l.refs++
				set.lists = append(set.lists, l)
			}
		}
		ix.total++
	}
	// Lists whose ranges overlap others (cannot happen unless the maps were corrupted)
	// are simply never deduplicated against; unreferenced ones were not indexed.
	d.idx = ix
	return d.sweepLocked()
}

// ruleIndex mirrors the trie and the port table in memory.
type ruleIndex struct {
	sets  map[uint32]*ruleSet
	total int
	ports *portTable
}

type ruleSet struct {
	keys  []bpfSgLpmKey
	lists []*portList // one reference per entry with ports
}

func newRuleIndex() *ruleIndex {
	return &ruleIndex{sets: map[uint32]*ruleSet{}, ports: newPortTable(contract.MaxPortRules)}
}

// deleteSet removes a rule set from the trie, shortest prefixes first: a program still
// reading the set then finds the most specific prefix or nothing (deny), never a
// shorter prefix in place of a deleted longer one.
func (ix *ruleIndex) deleteSet(m *ebpf.Map, id uint32, now time.Time) error {
	set := ix.sets[id]
	if set == nil {
		return nil
	}
	slices.SortStableFunc(set.keys, func(a, b bpfSgLpmKey) int { return cmp.Compare(a.Prefixlen, b.Prefixlen) })
	for i, k := range set.keys {
		if err := m.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			set.keys = set.keys[i:]
			ix.total -= i
			return fmt.Errorf("delete rule: %w", err)
		}
	}
	ix.total -= len(set.keys)
	for _, l := range set.lists {
		ix.ports.unref(l, now)
	}
	delete(ix.sets, id)
	return nil
}
