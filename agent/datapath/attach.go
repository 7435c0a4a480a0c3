package datapath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/strictgate/strictgate/agent/rules"
)

// hooks of the host-side interface: its ingress carries what the pod sends (pod egress).
var hooks = []struct {
	dir    rules.Direction
	tcx    ebpf.AttachType
	parent uint32 // clsact parent for cls_bpf
	name   string // pin and filter name suffix
}{
	{rules.Egress, ebpf.AttachTCXIngress, netlink.HANDLE_MIN_INGRESS, "host_ingress"},
	{rules.Ingress, ebpf.AttachTCXEgress, netlink.HANDLE_MIN_EGRESS, "host_egress"},
}

// tc filter identity: priority 1 so strictgate runs before other classifiers.
const (
	filterPriority = 1
	filterHandle   = 0x5347 // "SG"
)

// Attach registers the pod interface ifindex (in the calling thread's network
// namespace) with the given initial states and attaches the programs to both of its
// hooks: tcx links where the kernel has them (pinned, so they outlive the process),
// else clsact + cls_bpf. Strict mode passes unprogrammed-deny for both directions.
//
// Attaching an attached pod only re-attaches missing hooks; its states stay. An entry
// left by an earlier interface with the same index (its tcx links severed) is dropped
// first, so the new pod starts in the given states. If attaching fails, the pod entry
// is removed again and the error returned: the caller (the CNI plugin) must then fail
// rather than leave the pod unenforced.
func (d *Datapath) Attach(ifindex int, ingress, egress rules.State) (Pod, error) {
	if ifindex == loopbackIfindex {
		// Test runs use the loopback index to take the pod key from the mark.
		return Pod{}, fmt.Errorf("attach to interface %d: refusing to enforce on loopback", ifindex)
	}
	mode := AttachTCX
	if d.opts.ForceTC {
		mode = AttachTC
	}
	// One Attach at a time per pin root, and never during Open's adoption.
	unlock, err := d.lockRoot()
	if err != nil {
		return Pod{}, err
	}
	defer unlock()
	existing, err := d.Pod(ifindex)
	fresh := errors.Is(err, ErrNoPod)
	if err != nil && !fresh {
		return Pod{}, err
	}
	if err == nil {
		if why := d.staleReason(existing); why != "" {
			d.dropStale([]Collected{{Ifindex: ifindex, Slot: existing.Slot, Attach: existing.Attach, Reason: why}})
			fresh = true
		}
	}
	if !fresh && existing.Attach != AttachNone {
		mode = existing.Attach
	}
	p, err := d.register(ifindex, ingress, egress, mode)
	if err != nil {
		return Pod{}, err
	}
	if err := d.attachHooks(ifindex, &mode); err != nil {
		if fresh {
			d.detachHooks(ifindex, mode)
			d.forget(ifindex, p.Slot)
		}
		return Pod{}, err
	}
	if p.Attach != mode {
		d.mu.Lock()
		v, err := d.lookupPod(ifindex)
		if err == nil {
			v.Attach = uint8(mode)
			err = d.updatePod(ifindex, v)
		}
		d.mu.Unlock()
		if err != nil {
			return Pod{}, err
		}
		p.Attach = mode
	}
	return p, nil
}

// AttachByName is Attach for an interface name.
func (d *Datapath) AttachByName(name string, ingress, egress rules.State) (Pod, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return Pod{}, fmt.Errorf("attach to %s: %w", name, err)
	}
	return d.Attach(l.Attrs().Index, ingress, egress)
}

func (d *Datapath) linkPin(ifindex int, hook string) string {
	return filepath.Join(d.linkDir(), fmt.Sprintf("if%d_%s", ifindex, hook))
}

// attachHooks attaches both programs; with tcx unavailable it falls back to tc and
// reports that through mode.
func (d *Datapath) attachHooks(ifindex int, mode *AttachMode) error {
	if *mode == AttachTCX {
		err := d.attachTCX(ifindex)
		if err == nil {
			return nil
		}
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return err
		}
		*mode = AttachTC
	}
	return d.attachTC(ifindex)
}

func (d *Datapath) attachTCX(ifindex int) error {
	for _, h := range hooks {
		pin := d.linkPin(ifindex, h.name)
		if !d.opts.Ephemeral {
			if attachedTCX(pin, ifindex) {
				continue // attached earlier (by us or another process)
			}
			if err := unpinLink(pin); err != nil { // a defunct link of an earlier interface
				return err
			}
		}
		l, err := link.AttachTCX(link.TCXOptions{
			Interface: ifindex,
			Program:   d.program(h.dir),
			Attach:    h.tcx,
			// First in the chain: policy is judged before anything else sees the packet.
			Anchor: link.Head(),
		})
		if err != nil {
			return fmt.Errorf("attach %s program to %s of interface %d: %w", h.dir, h.name, ifindex, err)
		}
		if d.opts.Ephemeral {
			// Not pinned: keep the link open until Close (tests only).
			d.ephemeralLinks = append(d.ephemeralLinks, ephemeralLink{ifindex, l})
			continue
		}
		if err := l.Pin(pin); err != nil {
			l.Close()
			return fmt.Errorf("pin %s link of interface %d: %w", h.name, ifindex, err)
		}
		l.Close() // the pin keeps it attached
	}
	return nil
}

func (d *Datapath) attachTC(ifindex int) error {
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	if err := netlink.QdiscAdd(qdisc); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add clsact qdisc to interface %d: %w", ifindex, err)
	}
	for _, h := range hooks {
		f := d.tcFilter(ifindex, h.parent, h.name, d.program(h.dir))
		if err := netlink.FilterReplace(f); err != nil {
			return fmt.Errorf("attach %s program to %s of interface %d (cls_bpf): %w", h.dir, h.name, ifindex, err)
		}
	}
	return nil
}

func (d *Datapath) tcFilter(ifindex int, parent uint32, name string, prog *ebpf.Program) *netlink.BpfFilter {
	f := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: ifindex,
			Parent:    parent,
			Handle:    filterHandle,
			Priority:  filterPriority,
			Protocol:  unix.ETH_P_ALL,
		},
		Name:         "strictgate_" + name,
		DirectAction: true,
	}
	if prog != nil {
		f.Fd = prog.FD()
	}
	return f
}

// Detach removes the pod's programs from its interface (links and their pins, or the
// tc filters), its pod entry, slot and conntrack entries, and (in the process that
// programs rules) its rules. Detaching an unknown pod removes leftovers and succeeds.
func (d *Datapath) Detach(ifindex int) error {
	mode := AttachNone
	var slot uint32
	p, err := d.Pod(ifindex)
	switch {
	case err == nil:
		mode, slot = p.Attach, p.Slot
	case errors.Is(err, ErrNoPod):
		mode = AttachTCX // remove leftover pins, if any
	default:
		return err
	}
	var errs []error
	if err := d.detachHooks(ifindex, mode); err != nil {
		errs = append(errs, err)
	}
	if p.Ifindex == 0 && (hasOurFilter(ifindex, netlink.HANDLE_MIN_INGRESS) || hasOurFilter(ifindex, netlink.HANDLE_MIN_EGRESS)) {
		// Leftover filters of an interrupted Detach.
		if err := d.detachHooks(ifindex, AttachTC); err != nil {
			errs = append(errs, err)
		}
	}
	if p.Ifindex != 0 {
		d.forget(ifindex, slot)
	}
	if err := d.flushConntrack(uint32(ifindex)); err != nil {
		errs = append(errs, err)
	}
	d.mu.Lock()
	if d.idx != nil {
		if err := d.sweepLocked(); err != nil {
			errs = append(errs, err)
		}
	}
	d.mu.Unlock()
	return errors.Join(errs...)
}

// forget deletes the pod entry and its slot.
func (d *Datapath) forget(ifindex int, slot uint32) {
	d.objs.SgPods.Delete(uint32(ifindex))
	var owner uint32
	if err := d.objs.SgSlots.Lookup(slot, &owner); err == nil && owner == uint32(ifindex) {
		d.objs.SgSlots.Delete(slot)
	}
}

func (d *Datapath) detachHooks(ifindex int, mode AttachMode) error {
	var errs []error
	switch mode {
	case AttachTCX:
		for _, h := range hooks {
			if err := unpinLink(d.linkPin(ifindex, h.name)); err != nil {
				errs = append(errs, err)
			}
		}
		d.closeEphemeralLinks(ifindex)
	case AttachTC:
		for _, h := range hooks {
			err := netlink.FilterDel(d.tcFilter(ifindex, h.parent, h.name, nil))
			if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.EINVAL) {
				errs = append(errs, fmt.Errorf("remove %s filter of interface %d: %w", h.name, ifindex, err))
			}
		}
		if err := removeEmptyClsact(ifindex); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeEmptyClsact deletes the clsact qdisc when no filter is left on it, so a
// detached interface looks as before.
func removeEmptyClsact(ifindex int) error {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return nil // interface gone: so is the qdisc
	}
	for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
		fs, err := netlink.FilterList(l, parent)
		if err != nil || len(fs) > 0 {
			return nil
		}
	}
	err = netlink.QdiscDel(&netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	})
	if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("remove clsact qdisc of interface %d: %w", ifindex, err)
	}
	return nil
}

// attachedTCX reports whether pin holds a live tcx link on ifindex.
func attachedTCX(pin string, ifindex int) bool {
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		return false
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		return false
	}
	tcx := info.TCX()
	return tcx != nil && int(tcx.Ifindex) == ifindex
}

// unpinLink detaches and unpins a pinned link; a missing pin is fine.
func unpinLink(pin string) error {
	l, err := link.LoadPinnedLink(pin, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		// Not loadable (defunct): the pin is all that is left.
		if rmErr := os.Remove(pin); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
			return fmt.Errorf("remove link pin %s: %w", pin, err)
		}
		return nil
	}
	defer l.Close()
	if err := l.Unpin(); err != nil {
		return fmt.Errorf("unpin link %s: %w", pin, err)
	}
	// Closing our fd releases the last reference; detach explicitly too, in case
	// another process still holds one.
	if err := l.Detach(); err != nil && !errors.Is(err, ebpf.ErrNotSupported) && !errors.Is(err, unix.ENOLINK) {
		return fmt.Errorf("detach link %s: %w", pin, err)
	}
	return nil
}

// ResetConntrack forgets every connection of the pod ifindex (and its fragment
// trains): the next packet of each is judged as a new flow. RunPacket users (verdict)
// call it between independent flows.
func (d *Datapath) ResetConntrack(ifindex int) error {
	return d.flushConntrack(uint32(ifindex))
}

// flushConntrack deletes the conntrack and fragment entries of an interface, so that a
// later interface with the same index starts clean.
func (d *Datapath) flushConntrack(ifindex uint32) error {
	return d.flushConntrackOf(map[uint32]bool{ifindex: true})
}

// flushConntrackOf is flushConntrack for several interfaces in one pass over the maps.
func (d *Datapath) flushConntrackOf(ifindexes map[uint32]bool) error {
	var (
		k    bpfSgCtKey
		v    bpfSgCtVal
		keys []bpfSgCtKey
	)
	it := d.objs.SgCt.Iterate()
	for it.Next(&k, &v) {
		if ifindexes[k.Ifindex] {
			keys = append(keys, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("list conntrack: %w", err)
	}
	for _, k := range keys {
		d.objs.SgCt.Delete(&k)
	}
	var (
		fk    bpfSgFragKey
		fv    bpfSgFragVal
		fkeys []bpfSgFragKey
	)
	fit := d.objs.SgFrags.Iterate()
	for fit.Next(&fk, &fv) {
		if ifindexes[fk.Ifindex] {
			fkeys = append(fkeys, fk)
		}
	}
	for _, k := range fkeys {
		d.objs.SgFrags.Delete(&k)
	}
	return nil
}

// upgradePrograms points every attached pod at this process's programs. A pod whose
// interface vanishes meanwhile (a severed link, a device gone) is dropped like Open's
// stale entries and is no error; a pod without links or filters on a live interface is
// skipped (Attach re-attaches it with the new programs).
func (d *Datapath) upgradePrograms() error {
	pods, err := d.Pods()
	if err != nil {
		return err
	}
	var (
		errs  []error
		stale []Collected
	)
	for _, p := range pods {
		var gone string
		for _, h := range hooks {
			switch p.Attach {
			case AttachTCX:
				pin := d.linkPin(p.Ifindex, h.name)
				l, err := link.LoadPinnedLink(pin, nil)
				if errors.Is(err, os.ErrNotExist) {
					d.log().Warn("pod has no link to upgrade", "ifindex", p.Ifindex, "hook", h.name)
					continue
				}
				if err != nil {
					gone = fmt.Sprintf("link pin not loadable: %v", err)
					continue
				}
				err = l.Update(d.program(h.dir))
				l.Close()
				if errors.Is(err, unix.ENOLINK) {
					gone = "tcx link severed (interface deleted)"
					continue
				}
				if err != nil {
					errs = append(errs, fmt.Errorf("upgrade program of interface %d: %w", p.Ifindex, err))
				}
			case AttachTC:
				if !hasOurFilter(p.Ifindex, h.parent) {
					continue // interface gone (maybe its index reused): never attach elsewhere
				}
				err := netlink.FilterReplace(d.tcFilter(p.Ifindex, h.parent, h.name, d.program(h.dir)))
				if err != nil && interfaceGone(p.Ifindex) {
					gone = "interface gone (its cls_bpf filters with it)"
					continue
				}
				if err != nil {
					errs = append(errs, fmt.Errorf("upgrade filter of interface %d: %w", p.Ifindex, err))
				}
			}
		}
		if gone != "" && d.staleReason(p) != "" {
			stale = append(stale, Collected{Ifindex: p.Ifindex, Slot: p.Slot, Attach: p.Attach, Reason: gone})
		}
	}
	d.dropStale(stale)
	return errors.Join(errs...)
}

// hasOurFilter reports whether ifindex carries strictgate's cls_bpf filter at parent.
func hasOurFilter(ifindex int, parent uint32) bool {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return false
	}
	fs, err := netlink.FilterList(l, parent)
	if err != nil {
		return false
	}
	for _, f := range fs {
		if bf, ok := f.(*netlink.BpfFilter); ok && bf.Handle == filterHandle && bf.Priority == filterPriority &&
			len(bf.Name) >= len("strictgate_") && bf.Name[:len("strictgate_")] == "strictgate_" {
			return true
		}
	}
	return false
}

type ephemeralLink struct {
	ifindex int
	l       link.Link
}

func (d *Datapath) closeEphemeralLinks(ifindex int) {
	keep := d.ephemeralLinks[:0]
	for _, e := range d.ephemeralLinks {
		if ifindex < 0 || e.ifindex == ifindex {
			e.l.Close()
			continue
		}
		keep = append(keep, e)
	}
	d.ephemeralLinks = keep
}
