package datapath

// Sizes of maps that only the datapath knows about (bpf/include/limits.h); the limits
// the compiler must respect are in agent/rules/limits.go. TestMapSizes checks both
// against the compiled object.
const (
	maxHostAddrs = 256
	maxFragments = 8192
	eventsBytes  = 256 * 1024
	// portRangeGrace is how long a freed range of the port table stays unused, so a
	// program that read an old rule's offset just before the flip still finds the old
	// rules there (programs run for microseconds; an RCU grace period is milliseconds).
	portRangeGraceMillis = 50
)
