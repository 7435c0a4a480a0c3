package contract

import "path/filepath"

// DefaultPinRoot is the bpffs directory the datapath pins its maps, links and programs
// under, shared by the agent and the CNI plugin so a restart loses no enforcement.
const DefaultPinRoot = "/sys/fs/bpf/strictgate"

// Pins is the layout under a pin root. Every process that opens the datapath (agent,
// CNI plugin, cleanup) agrees on it, so it lives here rather than in one of them.
type Pins string

// PinsAt is the layout under root; an empty root means DefaultPinRoot.
func PinsAt(root string) Pins {
	if root == "" {
		return DefaultPinRoot
	}
	return Pins(root)
}

// Root is the pin root itself.
func (p Pins) Root() string { return string(p) }

// Maps is the directory of pinned maps (by map name).
func (p Pins) Maps() string { return filepath.Join(string(p), "maps") }

// Map is the pin of the map called name.
func (p Pins) Map(name string) string { return filepath.Join(p.Maps(), name) }

// Links is the directory of pinned tcx links.
func (p Pins) Links() string { return filepath.Join(string(p), "links") }

// Programs is the directory of pinned programs, one subdirectory per object.
func (p Pins) Programs() string { return filepath.Join(string(p), "progs") }
