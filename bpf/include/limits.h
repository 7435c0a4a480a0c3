/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * Limits of the datapath. They are enums, not macros, so that they reach the object's
 * BTF: the compiler and the webhook read the same numbers from internal/contract, whose
 * Go constants `make generate` writes from that BTF (internal/contract/gen.go).
 */
#ifndef STRICTGATE_LIMITS_H
#define STRICTGATE_LIMITS_H

/* What the compiler and the webhook's hygiene rules must respect (internal/contract). */
enum sg_limit {
	/* Pod interfaces one node can enforce on (pod map and counter slots). */
	SG_MAX_PODS = 1024,
	/* Prefix entries in the shared LPM trie: all pods, both directions, both rule-set
	 * generations while an update is in flight. */
	SG_MAX_PREFIXES = 262144,
	/* Prefix entries of one pod in one direction. */
	SG_MAX_PREFIXES_PER_POD_DIRECTION = 65536,
	/* Port rules one prefix may carry; scanned linearly on a conntrack miss only. */
	SG_MAX_PORT_RULES_PER_ENTRY = 512,
	/* Port rules in the shared port table. */
	SG_MAX_PORT_RULES = 262144,
	/* Connections in the LRU conntrack table. */
	SG_MAX_CONNTRACK = 262144,
};

/* Sizes that only the datapath cares about (bpf2go -type sg_size in agent/datapath). */
enum sg_size {
	/* In-flight IP fragment trains tracked so that non-first fragments find their ports. */
	SG_MAX_FRAGMENTS = 8192,
	/* Node addresses whose traffic passes (kubelet probes). */
	SG_MAX_HOST_ADDRS = 256,
	/* Ring buffer for verdict events, in bytes (a power of two and a multiple of the page size). */
	SG_EVENTS_BYTES = 256 * 1024,
};

#endif
