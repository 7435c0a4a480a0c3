package rules

// Limits of the datapath, in one place. The eBPF maps in bpf/ are sized from these
// (bpf/include/limits.h must agree; a test in agent/datapath checks it), the compiler
// and the webhook's hygiene rules use them to refuse what cannot be programmed.
const (
	// MaxPods is the number of pod interfaces one node can enforce on.
	MaxPods = 1024
	// MaxPrefixes is the total number of prefix entries (all pods, both directions,
	// both generations during an update) in the LPM trie.
	MaxPrefixes = 262144
	// MaxPrefixesPerPodDirection bounds one direction of one pod, so a single pod
	// cannot take the whole trie.
	MaxPrefixesPerPodDirection = 65536
	// MaxPortRulesPerEntry is how many (protocol, port range) rules one prefix may carry.
	// The kernel scans them linearly on a conntrack miss only.
	MaxPortRulesPerEntry = 512
	// MaxPortRules is the total number of port rules in the shared port table.
	MaxPortRules = 262144
	// MaxConntrack is the size of the LRU conntrack table.
	MaxConntrack = 262144
)
