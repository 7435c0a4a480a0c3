/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * Limits of the datapath. agent/rules/limits.go holds the same numbers for the
 * compiler and the webhook; bpf/limits_test.go fails when the two disagree.
 */
#ifndef STRICTGATE_LIMITS_H
#define STRICTGATE_LIMITS_H

/* Pod interfaces one node can enforce on (pod map and counter slots). */
#define SG_MAX_PODS 1024
/* Prefix entries in the shared LPM trie: all pods, both directions, both rule-set
 * generations while an update is in flight. */
#define SG_MAX_PREFIXES 262144
/* Prefix entries of one pod in one direction. */
#define SG_MAX_PREFIXES_PER_POD_DIRECTION 65536
/* Port rules one prefix may carry; scanned linearly on a conntrack miss only. */
#define SG_MAX_PORT_RULES_PER_ENTRY 512
/* Port rules in the shared port table. */
#define SG_MAX_PORT_RULES 262144
/* Connections in the LRU conntrack table. */
#define SG_MAX_CONNTRACK 262144

/* Not exported to the compiler: sizes that only the datapath cares about. */
/* In-flight IP fragment trains tracked so that non-first fragments find their ports. */
#define SG_MAX_FRAGMENTS 8192
/* Node addresses whose traffic passes (kubelet probes). */
#define SG_MAX_HOST_ADDRS 256
/* Ring buffer for verdict events, in bytes (a power of two and a multiple of the page size). */
#define SG_EVENTS_BYTES (256 * 1024)

#endif
