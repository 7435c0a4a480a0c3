package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/internal/contract"
)

// Verdict is what the datapath did with a packet (the contract's spelling).
type Verdict = contract.Verdict

const (
	VerdictDeny  = contract.VerdictDeny
	VerdictAllow = contract.VerdictAllow
	// VerdictAudit: the packet would have been dropped and passed because of audit.
	VerdictAudit = contract.VerdictAudit
)

// Reason says which part of the datapath reached a verdict.
type Reason uint8

const (
	// ReasonPolicy: the direction's state and rules (the rules.Lookup model).
	ReasonPolicy = Reason(bpfSgReasonSG_REASON_POLICY) // policy
	// ReasonConntrack: a packet of a connection allowed earlier.
	ReasonConntrack = Reason(bpfSgReasonSG_REASON_CONNTRACK) // conntrack
	// ReasonRecheck: a connection judged again after the pod's generation changed.
	ReasonRecheck = Reason(bpfSgReasonSG_REASON_RECHECK) // recheck
	// ReasonRelated: an ICMP error about a tracked connection.
	ReasonRelated = Reason(bpfSgReasonSG_REASON_RELATED) // related
	// ReasonHost: the remote address is one of the node's (SetHostAddrs).
	ReasonHost = Reason(bpfSgReasonSG_REASON_HOST) // host
	// ReasonLinkLocal: ARP, IPv6 neighbour discovery or MLD.
	ReasonLinkLocal = Reason(bpfSgReasonSG_REASON_LINK_LOCAL) // link-local
	// ReasonUnparseable: a packet that cannot be judged (fail closed unless the direction is open).
	ReasonUnparseable = Reason(bpfSgReasonSG_REASON_UNPARSEABLE) // unparseable
	// ReasonNoPod: the interface has no pod entry (dropped).
	ReasonNoPod = Reason(bpfSgReasonSG_REASON_NO_POD) // no-pod
	// ReasonSpoofed: the pod sent from an address the host does not route to its
	// interface (dropped, in every mode but audit).
	ReasonSpoofed = Reason(bpfSgReasonSG_REASON_SPOOFED) // spoofed
)

// EventMode selects which verdicts the kernel reports on the ring buffer.
type EventMode uint8

const (
	// EventsNone reports nothing (counters still count).
	EventsNone = EventMode(bpfSgEventModeSG_EVENTS_NONE) // none
	// EventsDenyOnly reports DENY and AUDIT decisions (the default).
	EventsDenyOnly = EventMode(bpfSgEventModeSG_EVENTS_DENY_ONLY) // deny-only
	// EventsAll also reports allowed new connections and re-checks.
	EventsAll = EventMode(bpfSgEventModeSG_EVENTS_ALL) // all
)

// Event is one verdict reported by the kernel. Events are sent for decisions (the
// first packet of a connection, re-checks, drops), not for every packet of an allowed
// connection.
type Event struct {
	Time       time.Time
	Ifindex    int
	Slot       uint32
	Direction  rules.Direction
	Verdict    Verdict
	Reason     Reason
	Rule       rules.RuleID
	Generation uint32
	// Protocol is the IP protocol (0 with Src/Dst invalid for non-IP packets).
	Protocol rules.Protocol
	// Src and Dst are the packet's addresses and ports (ports 0 when the protocol has none).
	Src, Dst netip.AddrPort
	// Bytes is the packet length.
	Bytes uint32
}

// Remote returns the peer's address: the destination for egress, the source for ingress.
func (e Event) Remote() netip.AddrPort {
	if e.Direction == rules.Egress {
		return e.Dst
	}
	return e.Src
}

// EventReader reads verdict events from the ring buffer. One reader per datapath.
type EventReader struct {
	rd    *ringbuf.Reader
	clock wallClock
}

// NewEventReader opens the ring buffer for reading.
func (d *Datapath) NewEventReader() (*EventReader, error) {
	rd, err := ringbuf.NewReader(d.objs.SgEvents)
	if err != nil {
		return nil, fmt.Errorf("open event ring buffer: %w", err)
	}
	r := &EventReader{rd: rd, clock: wallClock{mono: readMonotonic, wall: time.Now}}
	if _, err := r.clock.offset(); err != nil {
		rd.Close()
		return nil, err
	}
	return r, nil
}

// wallClock turns the kernel's event timestamps (CLOCK_MONOTONIC, bpf_ktime_get_ns)
// into wall-clock times. The offset between the two clocks is not constant: NTP slews
// the wall clock and an administrator or a VM resume steps it, while the monotonic
// clock only counts. An offset taken once at start put an agent's events 26 s behind
// `date` after ~20 minutes on a machine whose clock had been stepped, so it is taken
// again whenever it is older than offsetRefresh (by the monotonic clock).
type wallClock struct {
	mono func() (int64, error) // nanoseconds of CLOCK_MONOTONIC
	wall func() time.Time

	at   int64         // monotonic time of the last sample; 0: none
	diff time.Duration // wall - monotonic at that sample
}

// offsetRefresh: how stale the offset may get. An event is read within milliseconds of
// being sent, so its time is off by at most how far the wall clock moved in this long
// (a slew of a few µs, or a step, which then shows for at most this long).
const offsetRefresh = time.Second

// offset returns wall - monotonic, sampled again when older than offsetRefresh.
func (c *wallClock) offset() (time.Duration, error) {
	now, err := c.mono()
	if err != nil {
		return 0, fmt.Errorf("read monotonic clock: %w", err)
	}
	if c.at != 0 && time.Duration(now-c.at) < offsetRefresh {
		return c.diff, nil
	}
	// Sample the monotonic clock on both sides of the wall clock and take the middle:
	// the pair is then off by at most half the time between the two reads.
	w := c.wall()
	after, err := c.mono()
	if err != nil {
		return 0, fmt.Errorf("read monotonic clock: %w", err)
	}
	c.at = now + (after-now)/2
	c.diff = time.Duration(w.UnixNano() - c.at)
	return c.diff, nil
}

func readMonotonic() (int64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, err
	}
	return ts.Nano(), nil
}

// ErrClosed is returned by Read after Close.
var ErrClosed = ringbuf.ErrClosed

// Read blocks until an event arrives, the deadline passes (os.ErrDeadlineExceeded) or
// the reader is closed (ErrClosed).
func (r *EventReader) Read() (Event, error) {
	for {
		rec, err := r.rd.Read()
		if err != nil {
			return Event{}, err
		}
		if e, ok := r.decode(rec.RawSample); ok {
			return e, nil
		}
	}
}

// SetDeadline makes Read return os.ErrDeadlineExceeded after t (zero: no deadline).
func (r *EventReader) SetDeadline(t time.Time) { r.rd.SetDeadline(t) }

// Close stops the reader; a blocked Read returns ErrClosed.
func (r *EventReader) Close() error { return r.rd.Close() }

// IsTimeout reports whether err is the deadline of SetDeadline.
func IsTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

func (r *EventReader) decode(b []byte) (Event, bool) {
	var raw bpfSgEvent
	if len(b) < int(unsafe.Sizeof(raw)) {
		return Event{}, false
	}
	if _, err := binary.Decode(b, binary.NativeEndian, &raw); err != nil {
		return Event{}, false
	}
	off, err := r.clock.offset()
	if err != nil {
		off = r.clock.diff // the clock did read before; keep its last offset
	}
	return decodeEvent(&raw, off), true
}

func decodeEvent(raw *bpfSgEvent, monoToWall time.Duration) Event {
	e := Event{
		Time:       time.Unix(0, int64(raw.TimestampNs)+int64(monoToWall)),
		Ifindex:    int(raw.Ifindex),
		Slot:       raw.Slot,
		Direction:  rules.Direction(raw.Dir),
		Verdict:    Verdict(raw.Verdict),
		Reason:     Reason(raw.Reason),
		Rule:       rules.RuleID(raw.Rule),
		Generation: raw.Generation,
		Protocol:   rules.Protocol(raw.Proto),
		Bytes:      raw.Len,
	}
	if raw.Family == 4 || raw.Family == 6 {
		src, dst := netip.AddrFrom16(raw.SrcAddr), netip.AddrFrom16(raw.DstAddr)
		if raw.Family == 4 {
			src, dst = src.Unmap(), dst.Unmap()
		}
		e.Src = netip.AddrPortFrom(src, ntohs(raw.SrcPortNetwork))
		e.Dst = netip.AddrPortFrom(dst, ntohs(raw.DstPortNetwork))
	}
	return e
}

// ntohs converts a port read from the packet (network order in a native uint16).
func ntohs(v uint16) uint16 {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], v)
	return binary.BigEndian.Uint16(b[:])
}

func htons(v uint16) uint16 { return ntohs(v) }
