// Package datapath loads, pins, attaches and programs strictgate's eBPF programs
// (bpf/tc_pod.c): per-pod NetworkPolicy enforcement on a pod's host-side interface.
//
// A process opens the datapath with Open (creating the pinned maps or adopting them),
// attaches pods by the ifindex of their host-side interface (Attach), programs their
// compiled rules (Program) and reads counters and events. Maps and links are pinned
// under Options.PinRoot, so a restarted agent adopts them without an enforcement gap;
// Close keeps them, Remove deletes everything.
//
// Several processes may share one pin root: Attach, Detach, SetState and SetAudit are
// safe from any of them (the CNI plugin and the agent); Program and Sweep keep an index
// of the rule maps in memory and must be called by one process only (the agent).
//
// See bpf/README.md for the maps, keys, states, limits and the update protocol.
package datapath

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/internal/contract"
)

// Defaults of the event switches, applied when the maps are first created.
const (
	DefaultEventMode      = EventsDenyOnly
	DefaultEventsPerSec   = 1000
	DefaultEventsBurst    = 200
	MaxEventsPerSecPerCPU = 1_000_000
	MaxEventsBurstPerCPU  = 10_000
)

var (
	// ErrCapacity is returned (wrapped, naming the limit) when rules do not fit the maps.
	// Nothing was changed: the pod keeps its previous rules and state.
	ErrCapacity = errors.New("datapath capacity exceeded")
	// ErrInvalidRules is returned (wrapped) for rules the datapath cannot represent.
	ErrInvalidRules = errors.New("invalid rules")
	// ErrNoPod is returned (wrapped) for an ifindex that has no pod entry.
	ErrNoPod = errors.New("no such pod interface")
	// ErrIncompatiblePins is returned by Open when pinned maps come from an incompatible
	// version; Remove them (strictgate agent cleanup) and start again.
	ErrIncompatiblePins = errors.New("pinned maps are incompatible with this version")
)

// Options configure Open.
type Options struct {
	// PinRoot is the bpffs directory for maps, links and programs (contract.Pins).
	// Empty means contract.DefaultPinRoot.
	PinRoot string
	// Ephemeral creates private, unpinned maps that vanish at Close: for test runs
	// (strictgate verdict --engine=bpf) and tests. Attach still works but does not
	// survive the process.
	Ephemeral bool
	// ForceTC attaches with clsact + cls_bpf (netlink) even where tcx is available.
	ForceTC bool
	// UpgradePrograms moves every attached pod onto the programs of this process
	// (atomic link/filter replacement): the agent sets it at start-up after an upgrade.
	UpgradePrograms bool
	// Logger receives what Open repairs on its own (stale entries of vanished pod
	// interfaces, see Collected). Nil: not logged.
	Logger *slog.Logger
}

// Datapath is an open eBPF datapath: loaded programs and the (pinned) maps they share.
type Datapath struct {
	opts    Options
	pins    contract.Pins
	objs    bpfObjects
	created bool // this Open created the maps

	mu  sync.Mutex // serialises writers in this process
	idx *ruleIndex // built lazily by the first Program/Sweep

	ephemeralLinks []ephemeralLink // Ephemeral: unpinned tcx links, closed by Close
	collected      []Collected     // stale pod entries dropped by this process
}

// Open loads the programs and creates or adopts the maps. With pins present (a
// restarted agent, the CNI plugin) the existing maps are reused, keeping rules,
// conntrack and counters; entries of pods whose interface is gone are dropped (see
// Collected), so stale per-pod state never makes Open fail. Call it in the network
// namespace of the pod interfaces.
func Open(opts Options) (*Datapath, error) {
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("load eBPF object: %w", err)
	}
	d := &Datapath{opts: opts, pins: contract.PinsAt(opts.PinRoot)}
	var copts ebpf.CollectionOptions
	if !opts.Ephemeral {
		if err := checkBPFFS(d.pins.Root()); err != nil {
			return nil, err
		}
		for _, dir := range []string{d.mapDir(), d.linkDir()} {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("create pin directory: %w", err)
			}
		}
		// Processes opening at the same time (CNI plugin, agent) take turns: the first
		// creates and pins, the others adopt. Attach takes the lock too.
		unlock, err := d.lockRoot()
		if err != nil {
			return nil, err
		}
		defer unlock()
		if _, err := os.Stat(d.pins.Map(bpfMapSgCfg)); errors.Is(err, os.ErrNotExist) {
			d.created = true
		}
		for name, m := range spec.Maps {
			if isPinnedMap(name) {
				m.Pinning = ebpf.PinByName
			}
		}
		copts.Maps.PinPath = d.mapDir()
	} else {
		d.created = true
	}
	if err := spec.LoadAndAssign(&d.objs.bpfMaps, &copts); err != nil {
		if errors.Is(err, ebpf.ErrMapIncompatible) {
			return nil, fmt.Errorf("%w (%s): %v", ErrIncompatiblePins, d.pins.Root(), err)
		}
		return nil, fmt.Errorf("load eBPF maps: %w", err)
	}
	if err := d.loadPrograms(spec); err != nil {
		d.objs.Close()
		return nil, err
	}
	if d.created {
		cfg := bpfSgConfig{AllowHost: 1, EventMode: uint8(DefaultEventMode)}
		cfg.EventsPerSec, cfg.EventsBurst = perCPURate(DefaultEventsPerSec, DefaultEventsBurst)
		if err := d.objs.SgCfg.Update(uint32(0), &cfg, ebpf.UpdateAny); err != nil {
			d.objs.Close()
			return nil, fmt.Errorf("initialise config map: %w", err)
		}
	}
	// Pods deleted while no strictgate process ran left entries and (tcx) links the
	// kernel severed: drop them before anything touches links.
	if err := d.collectStale(); err != nil {
		d.objs.Close()
		return nil, fmt.Errorf("collect stale pods: %w", err)
	}
	if opts.UpgradePrograms {
		if err := d.upgradePrograms(); err != nil {
			d.objs.Close()
			return nil, err
		}
		if !opts.Ephemeral {
			if err := d.removeOldPrograms(); err != nil {
				d.objs.Close()
				return nil, fmt.Errorf("unpin old programs: %w", err)
			}
		}
	}
	return d, nil
}

// loadPrograms loads the programs against the maps of d. With pins, programs of this
// very object are pinned under PinRoot/progs/<object hash>/ and reused by the next
// Open (the CNI plugin opens once per pod: no verification then).
func (d *Datapath) loadPrograms(spec *ebpf.CollectionSpec) error {
	dir := filepath.Join(d.progDir(), objectHash())
	if !d.opts.Ephemeral {
		eg, err1 := ebpf.LoadPinnedProgram(filepath.Join(dir, bpfProgSgPodEgress), nil)
		ig, err2 := ebpf.LoadPinnedProgram(filepath.Join(dir, bpfProgSgPodIngress), nil)
		if err1 == nil && err2 == nil {
			d.objs.SgPodEgress, d.objs.SgPodIngress = eg, ig
			return nil
		}
		eg.Close()
		ig.Close()
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	maps := map[string]*ebpf.Map{}
	mv := &d.objs.bpfMaps
	for name, m := range map[string]*ebpf.Map{
		bpfMapSgBuckets: mv.SgBuckets, bpfMapSgCfg: mv.SgCfg, bpfMapSgCounters: mv.SgCounters,
		bpfMapSgCt: mv.SgCt, bpfMapSgEvents: mv.SgEvents, bpfMapSgFrags: mv.SgFrags,
		bpfMapSgHostAddrs: mv.SgHostAddrs, bpfMapSgPods: mv.SgPods, bpfMapSgPortRules: mv.SgPortRules,
		bpfMapSgRules: mv.SgRules, bpfMapSgSlots: mv.SgSlots, bpfMapSgStats: mv.SgStats,
	} {
		maps[name] = m
	}
	err := spec.LoadAndAssign(&d.objs.bpfPrograms, &ebpf.CollectionOptions{MapReplacements: maps})
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return fmt.Errorf("load eBPF programs: %+v", verr)
		}
		return fmt.Errorf("load eBPF programs: %w", err)
	}
	if d.opts.Ephemeral {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create pin directory: %w", err)
	}
	for name, p := range map[string]*ebpf.Program{bpfProgSgPodEgress: d.objs.SgPodEgress, bpfProgSgPodIngress: d.objs.SgPodIngress} {
		// Losing a race with another process pinning the same object is fine.
		if err := p.Pin(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("pin program %s: %w", name, err)
		}
	}
	return nil
}

// objectHash identifies the embedded eBPF object (pinned programs are reused only by
// the same object).
func objectHash() string {
	sum := sha256.Sum256(_BpfBytes)
	return hex.EncodeToString(sum[:8])
}

// removeOldPrograms unpins programs of other objects (after UpgradePrograms moved
// every pod to ours).
func (d *Datapath) removeOldPrograms() error {
	entries, err := os.ReadDir(d.progDir())
	if err != nil {
		return nil
	}
	var errs []error
	for _, e := range entries {
		if e.Name() != objectHash() {
			errs = append(errs, os.RemoveAll(filepath.Join(d.progDir(), e.Name())))
		}
	}
	return errors.Join(errs...)
}

// checkBPFFS fails unless root is (or would be created) on a bpf filesystem.
func checkBPFFS(root string) error {
	dir := filepath.Clean(root)
	for {
		var st unix.Statfs_t
		err := unix.Statfs(dir, &st)
		if err == nil {
			if st.Type != unix.BPF_FS_MAGIC {
				return fmt.Errorf("pin root %s: %s is not on a bpf filesystem: mount one (mount -t bpf bpf /sys/fs/bpf)", root, dir)
			}
			return nil
		}
		if !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("pin root %s: %w", root, err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return fmt.Errorf("pin root %s: no existing parent directory", root)
		}
		dir = parent
	}
}

// isPinnedMap reports whether a map of the object is shared through the pin root;
// the .bss of the unused type anchors is private to each process.
func isPinnedMap(name string) bool {
	return len(name) > 3 && name[:3] == "sg_"
}

func (d *Datapath) mapDir() string  { return d.pins.Maps() }
func (d *Datapath) linkDir() string { return d.pins.Links() }
func (d *Datapath) progDir() string { return d.pins.Programs() }

// Pinned reports whether root holds the pinned maps of a datapath on a bpf filesystem:
// the CNI plugin's cheap answer to a runtime's STATUS, without loading programs.
func Pinned(root string) bool {
	pins := contract.PinsAt(root)
	var st unix.Statfs_t
	_, err := os.Stat(pins.Map(bpfMapSgCfg))
	return err == nil && unix.Statfs(pins.Root(), &st) == nil && st.Type == unix.BPF_FS_MAGIC
}

// PinRoot returns the directory the maps and links are pinned under ("" if Ephemeral).
func (d *Datapath) PinRoot() string {
	if d.opts.Ephemeral {
		return ""
	}
	return d.pins.Root()
}

// Close releases this process's handles. Pins, links and filters stay: enforcement
// continues and the next Open adopts them. An Ephemeral datapath detaches its pods.
func (d *Datapath) Close() error {
	var errs []error
	if d.opts.Ephemeral {
		if pods, err := d.Pods(); err == nil {
			for _, p := range pods {
				if p.Attach == AttachTC {
					errs = append(errs, d.detachHooks(p.Ifindex, p.Attach))
				}
			}
		}
		d.closeEphemeralLinks(-1)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	errs = append(errs, d.objs.Close())
	return errors.Join(errs...)
}

// Remove detaches every pod, deletes all pins and closes the datapath: nothing of
// strictgate remains in the kernel afterwards.
func (d *Datapath) Remove() error {
	pods, err := d.Pods()
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range pods {
		if err := d.Detach(p.Ifindex); err != nil {
			errs = append(errs, err)
		}
	}
	if !d.opts.Ephemeral {
		// Links of interfaces that vanished without a Detach.
		entries, _ := os.ReadDir(d.linkDir())
		for _, e := range entries {
			if err := unpinLink(filepath.Join(d.linkDir(), e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
		for _, m := range d.pinnedMaps() {
			if err := m.Unpin(); err != nil {
				errs = append(errs, fmt.Errorf("unpin map: %w", err))
			}
		}
		if err := os.RemoveAll(d.progDir()); err != nil {
			errs = append(errs, fmt.Errorf("unpin programs: %w", err))
		}
		for _, dir := range []string{d.linkDir(), d.mapDir(), d.pins.Root()} {
			if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove %s: %w", dir, err))
			}
		}
	}
	if err := d.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (d *Datapath) pinnedMaps() []*ebpf.Map {
	m := &d.objs.bpfMaps
	return []*ebpf.Map{m.SgBuckets, m.SgCfg, m.SgCounters, m.SgCt, m.SgEvents, m.SgFrags,
		m.SgHostAddrs, m.SgPods, m.SgPortRules, m.SgRules, m.SgSlots, m.SgStats}
}

// program returns the program for a direction of the pod.
func (d *Datapath) program(dir rules.Direction) *ebpf.Program {
	if dir == rules.Egress {
		return d.objs.SgPodEgress
	}
	return d.objs.SgPodIngress
}
