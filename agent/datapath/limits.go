package datapath

// Sizes of maps that only the datapath knows about, from enum sg_size of
// bpf/include/limits.h (generated); the limits the compiler must respect are in
// internal/contract. TestMapSizes checks both against the compiled object.
const (
	maxHostAddrs = int(bpfSgSizeSG_MAX_HOST_ADDRS)
	maxFragments = uint32(bpfSgSizeSG_MAX_FRAGMENTS)
	eventsBytes  = uint32(bpfSgSizeSG_EVENTS_BYTES)
	// portRangeGrace is how long a freed range of the port table stays unused, so a
	// program that read an old rule's offset just before the flip still finds the old
	// rules there (programs run for microseconds; an RCU grace period is milliseconds).
	portRangeGraceMillis = 50
)
