package datapath

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/strictgate/strictgate/internal/contract"
)

// extent is a range [off, off+n) of the port table.
type extent struct{ off, n uint32 }

// portList is one run of port rules in the port table, shared by every prefix (of any
// pod) with exactly these rules in this order.
type portList struct {
	off     uint32
	rules   []bpfSgPortRule
	key     string
	refs    int
	written bool
}

type quarantined struct {
	extent
	until time.Time
}

// portTable allocates ranges of sg_port_rules: first fit over a sorted, coalesced free
// list. Freed ranges are quarantined for portRangeGraceMillis before reuse, so a program
// that looked up a prefix just before it was deleted still reads that prefix's rules.
type portTable struct {
	size       uint32
	free       []extent
	quarantine []quarantined
	dedup      map[string]*portList
	byOffset   map[uint32]*portList
}

func newPortTable(size uint32) *portTable {
	return &portTable{
		size:     size,
		free:     []extent{{0, size}},
		dedup:    map[string]*portList{},
		byOffset: map[uint32]*portList{},
	}
}

// setUsed makes everything but used free.
func (t *portTable) setUsed(used []extent) {
	slices.SortFunc(used, func(a, b extent) int { return int(int64(a.off) - int64(b.off)) })
	t.free = t.free[:0]
	next := uint32(0)
	for _, u := range used {
		if u.off > next {
			t.free = append(t.free, extent{next, u.off - next})
		}
		if end := u.off + u.n; end > next {
			next = end
		}
	}
	if next < t.size {
		t.free = append(t.free, extent{next, t.size - next})
	}
}

func portKey(rs []bpfSgPortRule) string {
	b := make([]byte, 0, len(rs)*9)
	for _, r := range rs {
		b = binary.LittleEndian.AppendUint32(b, r.Rule)
		b = binary.LittleEndian.AppendUint16(b, r.FirstPortHost)
		b = binary.LittleEndian.AppendUint16(b, r.LastPortHost)
		b = append(b, r.Proto)
	}
	return string(b)
}

// ref returns the list holding exactly rs, allocating (not writing) it if needed, and
// takes a reference.
func (t *portTable) ref(rs []bpfSgPortRule) (*portList, error) {
	key := portKey(rs)
	if l, ok := t.dedup[key]; ok {
		l.refs++
		return l, nil
	}
	n := uint32(len(rs))
	off, ok := t.alloc(n)
	if !ok && len(t.quarantine) > 0 {
		// Recently freed ranges may make room once their grace period ends. Waiting is
		// the caller's business: it holds the datapath lock, which every other pod's
		// programming needs meanwhile (Program waits without it and tries again).
		last := t.quarantine[0].until
		for _, q := range t.quarantine {
			if q.until.After(last) {
				last = q.until
			}
		}
		return nil, &quarantineWait{until: last, n: n}
	}
	if !ok {
		return nil, fmt.Errorf("%w: no room for %d more port rules in the port table (%d of contract.MaxPortRules (%d) free, largest free range %d)",
			ErrCapacity, n, t.freeCount(), contract.MaxPortRules, t.largestFree())
	}
	l := &portList{off: off, rules: rs, key: key, refs: 1}
	t.dedup[key] = l
	t.byOffset[off] = l
	return l, nil
}

// quarantineWait: the port table has no room for n rules now, but ranges in quarantine
// mature by until. It is a capacity error if the caller gives up waiting.
type quarantineWait struct {
	until time.Time
	n     uint32
}

func (w *quarantineWait) Error() string {
	return fmt.Sprintf("%v: no room for %d more port rules in the port table until recently freed ranges may be reused", ErrCapacity, w.n)
}

func (w *quarantineWait) Unwrap() error { return ErrCapacity }

// unref drops a reference; the last one frees the range, at once if now is zero
// (never visible to a program) or after the grace period.
func (t *portTable) unref(l *portList, now time.Time) {
	l.refs--
	if l.refs > 0 {
		return
	}
	if t.dedup[l.key] == l {
		delete(t.dedup, l.key)
	}
	if t.byOffset[l.off] == l {
		delete(t.byOffset, l.off)
	}
	e := extent{l.off, uint32(len(l.rules))}
	if now.IsZero() {
		t.release(e)
		return
	}
	t.quarantine = append(t.quarantine, quarantined{e, now.Add(portRangeGraceMillis * time.Millisecond)})
}

// releaseMatured frees quarantined ranges whose grace period ended by now.
func (t *portTable) releaseMatured(now time.Time) {
	keep := t.quarantine[:0]
	for _, q := range t.quarantine {
		if now.Before(q.until) {
			keep = append(keep, q)
			continue
		}
		t.release(q.extent)
	}
	t.quarantine = keep
}

func (t *portTable) alloc(n uint32) (uint32, bool) {
	for i, f := range t.free {
		if f.n < n {
			continue
		}
		if f.n == n {
			t.free = slices.Delete(t.free, i, i+1)
		} else {
			t.free[i] = extent{f.off + n, f.n - n}
		}
		return f.off, true
	}
	return 0, false
}

func (t *portTable) release(e extent) {
	if e.n == 0 {
		return
	}
	i, _ := slices.BinarySearchFunc(t.free, e.off, func(f extent, off uint32) int { return int(int64(f.off) - int64(off)) })
	t.free = slices.Insert(t.free, i, e)
	// Coalesce with the neighbours.
	if i+1 < len(t.free) && t.free[i].off+t.free[i].n == t.free[i+1].off {
		t.free[i].n += t.free[i+1].n
		t.free = slices.Delete(t.free, i+1, i+2)
	}
	if i > 0 && t.free[i-1].off+t.free[i-1].n == t.free[i].off {
		t.free[i-1].n += t.free[i].n
		t.free = slices.Delete(t.free, i, i+1)
	}
}

func (t *portTable) freeCount() uint32 {
	var n uint32
	for _, f := range t.free {
		n += f.n
	}
	return n
}

func (t *portTable) largestFree() uint32 {
	var n uint32
	for _, f := range t.free {
		n = max(n, f.n)
	}
	return n
}
