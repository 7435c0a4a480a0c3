package datapath

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Collected is a pod entry that Open (or Attach) dropped because the interface it was
// attached to is gone: pods deleted while no strictgate process ran. Its links were
// unpinned, its entry, slot and conntrack deleted; its rules are left for the agent's
// Sweep (or the next Program of the slot), as after a Detach by another process.
type Collected struct {
	Ifindex int
	Slot    uint32
	Attach  AttachMode
	// Reason says what showed the interface to be gone.
	Reason string
}

// Collected lists the stale pod entries this Datapath dropped: at Open (see
// Collected), or in Attach for an entry of an earlier interface with the same index.
func (d *Datapath) Collected() []Collected {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Collected(nil), d.collected...)
}

func (d *Datapath) log() *slog.Logger {
	if d.opts.Logger != nil {
		return d.opts.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// lockRoot takes the exclusive flock on the pin root (nothing for an Ephemeral
// datapath): Open's adoption and Attach take turns between processes, so an Attach is
// never half-done (entry without hooks yet) while Open judges entries by their hooks.
func (d *Datapath) lockRoot() (func(), error) {
	if d.opts.Ephemeral {
		return func() {}, nil
	}
	fd, err := unix.Open(d.pins.Root(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open pin root %s: %w", d.pins.Root(), err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("lock pin root %s: %w", d.pins.Root(), err)
	}
	return func() { unix.Close(fd) }, nil // the lock goes with the descriptor
}

// pinState is what a tcx link pin says about its interface.
type pinState int

const (
	pinMissing pinState = iota // no pin
	pinLive                    // a tcx link attached to the expected interface
	pinDead                    // severed (interface deleted), defunct or elsewhere
)

func tcxPinState(pin string, ifindex int) (pinState, string) {
	l, err := link.LoadPinnedLink(pin, nil)
	if errors.Is(err, os.ErrNotExist) {
		return pinMissing, ""
	}
	if err != nil {
		return pinDead, fmt.Sprintf("link pin not loadable: %v", err)
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		// Cannot tell: count it as attached rather than drop a pod that may be live.
		return pinLive, ""
	}
	tcx := info.TCX()
	switch {
	case tcx == nil:
		return pinDead, "pinned link is not a tcx link"
	case tcx.Ifindex == 0:
		return pinDead, "tcx link severed (interface deleted)"
	case int(tcx.Ifindex) != ifindex:
		return pinDead, fmt.Sprintf("tcx link is on interface %d", tcx.Ifindex)
	}
	return pinLive, ""
}

// interfaceGone reports whether no interface has this index in the calling thread's
// network namespace. Errors other than "not found" count as present.
func interfaceGone(ifindex int) bool {
	_, err := netlink.LinkByIndex(ifindex)
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

// staleReason says why the pod's entry belongs to an interface that is gone, or "" if
// it may be live. Only positive evidence counts: a tcx link the kernel severed, or no
// interface with the index. An entry whose hooks are merely missing on an existing
// interface stays (Attach re-attaches them); so does a cls_bpf pod whose index now
// names another interface (indistinguishable from filters someone removed).
func (d *Datapath) staleReason(p Pod) string {
	switch p.Attach {
	case AttachTCX:
		if d.opts.Ephemeral {
			return ""
		}
		var dead string
		for _, h := range hooks {
			switch st, why := tcxPinState(d.linkPin(p.Ifindex, h.name), p.Ifindex); st {
			case pinLive:
				return ""
			case pinDead:
				dead = why
			}
		}
		if dead != "" {
			return dead
		}
		if interfaceGone(p.Ifindex) {
			return "no tcx link and no interface"
		}
	case AttachTC:
		if interfaceGone(p.Ifindex) {
			return "interface gone (its cls_bpf filters with it)"
		}
	}
	return ""
}

// collectStale drops the entries of pods whose interface is gone, and link pins of no
// pod that the kernel severed. Called by Open under the pin root lock, before anything
// touches the pods' links: stale per-pod state must never make Open fail.
func (d *Datapath) collectStale() error {
	pods, err := d.Pods()
	if err != nil {
		return err
	}
	var stale []Collected
	known := map[int]bool{}
	for _, p := range pods {
		known[p.Ifindex] = true
		if why := d.staleReason(p); why != "" {
			stale = append(stale, Collected{Ifindex: p.Ifindex, Slot: p.Slot, Attach: p.Attach, Reason: why})
		}
	}
	d.dropStale(stale)
	if d.opts.Ephemeral {
		return nil
	}
	// Pins of no pod entry (an interrupted Detach): remove only the severed ones; a live
	// link without an entry drops its interface's traffic (fail closed) until a Detach.
	entries, _ := os.ReadDir(d.linkDir())
	for _, e := range entries {
		var (
			ifindex int
			hook    string
		)
		if _, err := fmt.Sscanf(e.Name(), "if%d_%s", &ifindex, &hook); err != nil || known[ifindex] {
			continue
		}
		pin := filepath.Join(d.linkDir(), e.Name())
		if st, why := tcxPinState(pin, ifindex); st == pinDead {
			if err := unpinLink(pin); err != nil {
				d.log().Warn("remove stale link pin", "pin", pin, "error", err)
				continue
			}
			d.log().Info("removed stale link pin of no pod", "pin", pin, "reason", why)
		}
	}
	return nil
}

// dropStale unpins the links of pods whose interface is gone and deletes their entries,
// slots and conntrack. Their rules are left for Sweep. Failures are logged, never
// returned: the entries are inert (no interface runs our programs with them).
func (d *Datapath) dropStale(stale []Collected) {
	if len(stale) == 0 {
		return
	}
	gone := map[uint32]bool{}
	for _, c := range stale {
		if c.Attach == AttachTCX {
			// No netlink on the device: cls_bpf filters went with it, and a device that
			// now has the index is someone else's.
			if err := d.detachHooks(c.Ifindex, AttachTCX); err != nil {
				d.log().Warn("unpin links of a vanished interface", "ifindex", c.Ifindex, "error", err)
			}
		}
		d.forget(c.Ifindex, c.Slot)
		gone[uint32(c.Ifindex)] = true
		d.log().Info("dropped the datapath entry of a vanished pod interface",
			"ifindex", c.Ifindex, "slot", c.Slot, "attach", c.Attach.String(), "reason", c.Reason)
	}
	if err := d.flushConntrackOf(gone); err != nil {
		d.log().Warn("flush conntrack of vanished pod interfaces", "error", err)
	}
	d.mu.Lock()
	d.collected = append(d.collected, stale...)
	d.mu.Unlock()
}
