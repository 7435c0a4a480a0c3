package datapath

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/strictgate/strictgate/internal/contract"
)

// ErrNotPinned is returned (wrapped) by OpenReadOnly when no datapath is pinned there.
var ErrNotPinned = errors.New("no datapath pinned")

// OpenReadOnly opens the pinned maps under root (contract.DefaultPinRoot if empty)
// through read-only handles, for tools that look at what the kernel holds while the
// agent runs (strictgate inspect). Unlike Open it creates, repairs and collects nothing,
// loads no program and takes no lock; the kernel refuses any write through these
// handles, so Pod, Pods, ProgrammedRules, Config and HostAddrs are all it is good for.
func OpenReadOnly(root string) (*Datapath, error) {
	if root == "" {
		root = contract.DefaultPinRoot
	}
	if !Pinned(root) {
		return nil, fmt.Errorf("%w at %s: run this on a node where the strictgate agent runs, with its bpffs (/sys/fs/bpf) mounted", ErrNotPinned, root)
	}
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("load eBPF object: %w", err)
	}
	d := &Datapath{opts: Options{PinRoot: root}, pins: contract.PinsAt(root)}
	repl := map[string]*ebpf.Map{}
	defer func() {
		for _, m := range repl {
			m.Close() // LoadAndAssign keeps clones
		}
	}()
	for name := range spec.Maps {
		if !isPinnedMap(name) {
			continue
		}
		m, err := ebpf.LoadPinnedMap(d.pins.Map(name), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			return nil, fmt.Errorf("open pinned map %s read-only: %w", name, err)
		}
		repl[name] = m
	}
	if err := spec.LoadAndAssign(&d.objs.bpfMaps, &ebpf.CollectionOptions{MapReplacements: repl}); err != nil {
		if errors.Is(err, ebpf.ErrMapIncompatible) {
			return nil, fmt.Errorf("%w (%s): %v", ErrIncompatiblePins, root, err)
		}
		return nil, fmt.Errorf("adopt pinned maps: %w", err)
	}
	return d, nil
}
