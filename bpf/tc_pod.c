//go:build ignore
// SPDX-License-Identifier: (GPL-2.0-only OR MIT)
/*
 * strictgate per-pod NetworkPolicy enforcement, attached (tcx or cls_bpf) to a pod's
 * host-side interface: sg_pod_egress runs on the interface's ingress hook (packets the
 * pod sends), sg_pod_ingress on its egress hook (packets towards the pod).
 *
 * Decision order for an IP packet (bpf/README.md has the full picture):
 *   ARP, ND at hop limit 255, MLD at hop limit 1 from fe80::/10 or :: -> pass
 *   sent by the pod from an address the host does not route to its interface -> drop
 *   unparseable                -> pass if the direction is open, else drop (fail closed)
 *   remote is a node address  -> pass (when allow_host)
 *   conntrack hit              -> pass; re-check first if the pod's generation changed
 *   ICMP error about a tracked connection -> pass
 *   otherwise the direction's state and rules (= rules.Lookup) decide; passing creates
 *   a conntrack entry. Audit turns drops into passes reported as AUDIT.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "limits.h"
#include "strictgate.h"

_Static_assert(sizeof(struct sg_skb_ctx) == sizeof(struct __sk_buff), "sg_skb_ctx size");
_Static_assert(__builtin_offsetof(struct sg_skb_ctx, mark) == __builtin_offsetof(struct __sk_buff, mark),
	       "sg_skb_ctx mark");
_Static_assert(__builtin_offsetof(struct sg_skb_ctx, cb) == __builtin_offsetof(struct __sk_buff, cb), "sg_skb_ctx cb");
_Static_assert(__builtin_offsetof(struct sg_skb_ctx, hwtstamp) == __builtin_offsetof(struct __sk_buff, hwtstamp),
	       "sg_skb_ctx hwtstamp");
_Static_assert(sizeof(struct sg_test_result) == sizeof(((struct __sk_buff *)0)->cb), "sg_test_result fills cb");

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	/* No preallocation: a value replaced from user space is freed after an RCU grace
	 * period, so a reader never sees a half-written pod (the atomic flip). */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, SG_MAX_PODS);
	__type(key, __u32); /* ifindex of the host-side interface */
	__type(value, struct sg_pod);
} sg_pods SEC(".maps");

/* Slot allocation: slot -> ifindex, inserted with BPF_NOEXIST so that several processes
 * (CNI plugin, agent) allocate without a lock. Not read by the programs. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SG_MAX_PODS);
	__type(key, __u32);
	__type(value, __u32);
} sg_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, SG_MAX_PREFIXES);
	__type(key, struct sg_lpm_key);
	__type(value, struct sg_lpm_val);
} sg_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SG_MAX_PORT_RULES);
	__type(key, __u32);
	__type(value, struct sg_port_rule);
} sg_port_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SG_MAX_CONNTRACK);
	__type(key, struct sg_ct_key);
	__type(value, struct sg_ct_val);
} sg_ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SG_MAX_FRAGMENTS);
	__type(key, struct sg_frag_key);
	__type(value, struct sg_frag_val);
} sg_frags SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SG_MAX_HOST_ADDRS);
	__type(key, struct sg_addr);
	__type(value, __u8);
} sg_host_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sg_config);
} sg_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SG_MAX_PODS * 2 * SG_VERDICT_MAX);
	__type(key, __u32); /* (slot * 2 + dir) * SG_VERDICT_MAX + verdict */
	__type(value, struct sg_counter);
} sg_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SG_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} sg_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sg_bucket);
} sg_buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, SG_EVENTS_BYTES);
} sg_events SEC(".maps");

/* Keep the types that only Go reads in BTF, so bpf2go can generate them. */
const struct sg_event *unused_sg_event __attribute__((unused));
const struct sg_test_result *unused_sg_test_result __attribute__((unused));
const struct sg_skb_ctx *unused_sg_skb_ctx __attribute__((unused));
const enum sg_reason *unused_sg_reason __attribute__((unused));
const enum sg_event_mode *unused_sg_event_mode __attribute__((unused));
const enum sg_attach *unused_sg_attach __attribute__((unused));
const enum sg_stat *unused_sg_stat __attribute__((unused));
const enum sg_state *unused_sg_state __attribute__((unused));
const enum sg_dir *unused_sg_dir __attribute__((unused));
const enum sg_verdict *unused_sg_verdict __attribute__((unused));
const enum sg_rule *unused_sg_rule __attribute__((unused));
const enum sg_limit *unused_sg_limit __attribute__((unused));
const enum sg_size *unused_sg_size __attribute__((unused));

#define IPPROTO_ICMPV6_ 58
#define IPPROTO_SCTP_ 132
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_AUTH 51
#define NEXTHDR_DEST 60
#define IPV6_EXT_MAX 6

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

enum parse_result {
	PARSE_OK = 0,
	PARSE_LINK_LOCAL, /* ARP, or ND / MLD that cannot have been routed (icmp6_is_link_local) */
	PARSE_BAD,        /* cannot be judged: fail closed */
};

enum frag_kind {
	FRAG_NONE = 0,
	FRAG_FIRST,    /* offset 0, more fragments follow: carries the ports */
	FRAG_NONFIRST, /* no L4 header */
};

struct pkt {
	__u8 family; /* L3 family of the packet: 4 or 6 */
	__u8 proto;  /* upper-layer protocol */
	__u8 tcp_flags;
	__u8 frag;      /* enum frag_kind */
	__u8 icmp_err;  /* ICMP error whose inner tuple is below */
	__u8 inner_proto;
	__u8 hop_limit; /* IPv6 only */
	__u16 sport; /* network order; 0 for protocols without ports */
	__u16 dport;
	__u16 inner_sport;
	__u16 inner_dport;
	__u32 frag_id;
	__u8 src[16];
	__u8 dst[16];
	__u8 inner_src[16];
	__u8 inner_dst[16];
};

struct decision {
	__u32 verdict;
	__u32 rule;
	__u32 reason;
	__u8 event; /* a decision worth an event (not a plain conntrack hit) */
};

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&sg_stats, &idx);
	if (v)
		*v += 1;
}

static __always_inline void map_v4(__u8 *dst, __be32 addr)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &addr, 4);
}

/* rules.Lookup unmaps IPv4-mapped IPv6 addresses; so does the datapath. */
static __always_inline __u8 addr_family(const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;
	return (w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0x0000ffff)) ? 4 : 6;
}

static __always_inline int addr_equal(const __u8 *a, const __u8 *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;
	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

static __always_inline int has_ports(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP_;
}

static __always_inline int icmp_is_error(__u8 family, __u8 type)
{
	if (family == 4)
		return type == 3 || type == 11 || type == 12; /* unreachable, time exceeded, parameter */
	return type >= 1 && type <= 4; /* unreachable, too big, time exceeded, parameter */
}

static __always_inline int ip6_is_link_local_or_unspec(const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
		return 1;
	return w[0] == 0 && w[1] == 0 && w[2] == 0 && w[3] == 0;
}

/*
 * Neighbour discovery and MLD keep the link working, and policies cannot name ICMPv6.
 * They pass only when they cannot have come from (or be meant for) beyond the link:
 *   ND (133-137: RS, RA, NS, NA, redirect) with hop limit 255, which a router would have
 *     decremented (RFC 4861 7.1.1, 6.1.1, 8.1: receivers drop other hop limits). The peer
 *     may be global: ptp solicits the gateway's global address.
 *   MLD (130-132 v1, 143 v2 report) with hop limit 1 from a link-local source or from ::
 *     (before an address exists, e.g. during DAD) (RFC 2710 3, RFC 3810 5).
 * Any other hop limit or source is judged like any ICMPv6, so the types cannot carry
 * traffic past the policy.
 */
static __always_inline int icmp6_is_link_local(const struct pkt *p, __u8 type)
{
	if (type >= 133 && type <= 137)
		return p->hop_limit == 255;
	if ((type >= 130 && type <= 132) || type == 143)
		return p->hop_limit == 1 && ip6_is_link_local_or_unspec(p->src);
	return 0;
}

/* Reads the IP header and ports of the packet quoted in an ICMP error at off. */
static __always_inline void parse_icmp_inner(struct __sk_buff *skb, struct pkt *p, __u32 off)
{
	__u32 l4;
	if (p->family == 4) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0 || ip.version != 4 || ip.ihl < 5)
			return;
		if (ip.frag_off & bpf_htons(0x1fff))
			return;
		map_v4(p->inner_src, ip.saddr);
		map_v4(p->inner_dst, ip.daddr);
		p->inner_proto = ip.protocol;
		l4 = off + ip.ihl * 4;
	} else {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)) < 0 || ip6.version != 6)
			return;
		__builtin_memcpy(p->inner_src, &ip6.saddr, 16);
		__builtin_memcpy(p->inner_dst, &ip6.daddr, 16);
		p->inner_proto = ip6.nexthdr; /* quoted extension headers: not related, judged as ICMP */
		l4 = off + sizeof(ip6);
	}
	if (has_ports(p->inner_proto)) {
		__u16 ports[2];
		if (bpf_skb_load_bytes(skb, l4, ports, sizeof(ports)) < 0)
			return;
		p->inner_sport = ports[0];
		p->inner_dport = ports[1];
	} else if (p->inner_proto != IPPROTO_ICMP && p->inner_proto != IPPROTO_ICMPV6_) {
		return;
	}
	p->icmp_err = 1;
}

static __always_inline int parse_l4(struct __sk_buff *skb, struct pkt *p, __u32 off)
{
	if (p->frag == FRAG_NONFIRST)
		return PARSE_OK;
	switch (p->proto) {
	case IPPROTO_TCP: {
		__u8 h[14];
		if (bpf_skb_load_bytes(skb, off, h, sizeof(h)) < 0)
			return PARSE_BAD;
		__builtin_memcpy(&p->sport, h, 2);
		__builtin_memcpy(&p->dport, h + 2, 2);
		p->tcp_flags = h[13];
		return PARSE_OK;
	}
	case IPPROTO_UDP:
	case IPPROTO_SCTP_: {
		__u16 ports[2];
		if (bpf_skb_load_bytes(skb, off, ports, sizeof(ports)) < 0)
			return PARSE_BAD;
		p->sport = ports[0];
		p->dport = ports[1];
		return PARSE_OK;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6_: {
		__u8 type;
		if (bpf_skb_load_bytes(skb, off, &type, 1) < 0)
			return PARSE_BAD;
		if (p->proto == IPPROTO_ICMPV6_ && p->family == 6 && icmp6_is_link_local(p, type))
			return PARSE_LINK_LOCAL;
		if ((p->proto == IPPROTO_ICMP) == (p->family == 4) && icmp_is_error(p->family, type))
			parse_icmp_inner(skb, p, off + 8);
		return PARSE_OK;
	}
	}
	return PARSE_OK; /* other protocols: judged by protocol alone, port 0 */
}

/*
 * Global (not static) functions are verified once, on their own, instead of at every
 * call site: this keeps the IPv6 extension-header walk and the rule scan from
 * multiplying the verifier's states in handle().
 */
__attribute__((noinline)) int sg_parse(struct __sk_buff *skb, struct pkt *p)
{
	__u32 off = ETH_HLEN;

	if (!skb || !p)
		return PARSE_BAD;

	if (skb->protocol == bpf_htons(ETH_P_ARP))
		return PARSE_LINK_LOCAL;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0)
			return PARSE_BAD;
		if (ip.version != 4 || ip.ihl < 5)
			return PARSE_BAD;
		p->family = 4;
		p->proto = ip.protocol;
		map_v4(p->src, ip.saddr);
		map_v4(p->dst, ip.daddr);
		__u16 fo = bpf_ntohs(ip.frag_off);
		if (fo & 0x1fff)
			p->frag = FRAG_NONFIRST;
		else if (fo & 0x2000)
			p->frag = FRAG_FIRST;
		p->frag_id = ip.id;
		return parse_l4(skb, p, off + ip.ihl * 4);
	}
	if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)) < 0)
			return PARSE_BAD;
		if (ip6.version != 6)
			return PARSE_BAD;
		p->family = 6;
		p->hop_limit = ip6.hop_limit;
		__builtin_memcpy(p->src, &ip6.saddr, 16);
		__builtin_memcpy(p->dst, &ip6.daddr, 16);
		__u8 next = ip6.nexthdr;
		off += sizeof(ip6);
		int i;
		for (i = 0; i < IPV6_EXT_MAX; i++) {
			__u8 h[8];
			if (next == NEXTHDR_HOP || next == NEXTHDR_ROUTING || next == NEXTHDR_DEST) {
				if (bpf_skb_load_bytes(skb, off, h, 2) < 0)
					return PARSE_BAD;
				next = h[0];
				off += (h[1] + 1) * 8;
			} else if (next == NEXTHDR_AUTH) {
				if (bpf_skb_load_bytes(skb, off, h, 2) < 0)
					return PARSE_BAD;
				next = h[0];
				off += (h[1] + 2) * 4;
			} else if (next == NEXTHDR_FRAGMENT) {
				if (bpf_skb_load_bytes(skb, off, h, 8) < 0)
					return PARSE_BAD;
				next = h[0];
				__u16 fo = ((__u16)h[2] << 8) | h[3];
				if (fo & 0xfff8)
					p->frag = FRAG_NONFIRST;
				else if (fo & 1)
					p->frag = FRAG_FIRST;
				__builtin_memcpy(&p->frag_id, h + 4, 4);
				off += 8;
			} else {
				break;
			}
		}
		if (i == IPV6_EXT_MAX)
			return PARSE_BAD; /* too many extension headers to judge: fail closed */
		p->proto = next;
		return parse_l4(skb, p, off);
	}
	return PARSE_BAD; /* other ethertypes (VLAN, MPLS, ...): fail closed */
}

/*
 * The decision for the first packet of a flow: exactly rules.DirectionRules.Lookup.
 * remote is the peer address, dport the destination port in network order (0 if none).
 */
__attribute__((noinline)) int sg_policy_eval(const struct sg_pod_dir *pd, const struct sg_addr *remote, __u32 proto,
					     __u32 dport, __u32 *rule)
{
	if (!pd || !remote || !rule)
		return SG_VERDICT_DENY;
	switch (pd->state) {
	case SG_STATE_UNPROGRAMMED_DENY:
		*rule = SG_RULE_UNPROGRAMMED;
		return SG_VERDICT_DENY;
	case SG_STATE_UNPROGRAMMED_ALLOW:
		*rule = SG_RULE_UNPROGRAMMED;
		return SG_VERDICT_ALLOW;
	case SG_STATE_UNISOLATED:
		*rule = SG_RULE_UNISOLATED;
		return SG_VERDICT_ALLOW;
	case SG_STATE_ISOLATED:
		break;
	default: /* unknown state: fail closed */
		*rule = SG_RULE_NONE;
		return SG_VERDICT_DENY;
	}

	struct sg_lpm_key k = {};
	k.prefixlen = 64 + 128;
	k.ruleset = pd->ruleset;
	k.family = addr_family(remote->addr);
	__builtin_memcpy(k.addr, remote->addr, 16);

	*rule = SG_RULE_NONE;
	struct sg_lpm_val *v = bpf_map_lookup_elem(&sg_rules, &k);
	if (!v || v->count == 0)
		return SG_VERDICT_DENY;

	__u32 off = v->offset;
	__u32 n = v->count;
	__u16 port = has_ports(proto) ? bpf_ntohs((__u16)dport) : 0;
	/* A bounded loop, not bpf_loop: the callback call per rule costs more than the rule. */
	for (__u32 i = 0; i < SG_MAX_PORT_RULES_PER_ENTRY; i++) {
		if (i >= n)
			break;
		__u32 idx = off + i;
		struct sg_port_rule *r = bpf_map_lookup_elem(&sg_port_rules, &idx);
		if (!r)
			break;
		if (r->proto != 0 && r->proto != proto)
			continue;
		if (port < r->first_port_host || port > r->last_port_host)
			continue;
		*rule = r->rule;
		return SG_VERDICT_ALLOW;
	}
	return SG_VERDICT_DENY;
}

static __always_inline __u32 policy_eval(const struct sg_pod *pod, __u32 dir, const __u8 *remote, __u8 proto,
					 __u16 dport, __u32 *rule)
{
	return sg_policy_eval(&pod->dir[dir & 1], (const struct sg_addr *)remote, proto, dport, rule);
}

static __always_inline __u64 ct_timeout(__u32 flags, __u8 proto)
{
	if (proto != IPPROTO_TCP)
		return SG_CT_TIMEOUT_OTHER;
	if ((flags & SG_CT_RST) || ((flags & SG_CT_FIN_ORIGIN) && (flags & SG_CT_FIN_REPLY)))
		return SG_CT_TIMEOUT_TCP_CLOSING;
	if (flags & SG_CT_SEEN_REPLY)
		return SG_CT_TIMEOUT_TCP_ESTABLISHED;
	return SG_CT_TIMEOUT_TCP_OPENING;
}

static __always_inline int ct_closing(__u32 flags)
{
	return (flags & SG_CT_RST) || ((flags & SG_CT_FIN_ORIGIN) && (flags & SG_CT_FIN_REPLY));
}

static __always_inline __u32 ct_packet_flags(const struct pkt *p, int reply)
{
	__u32 f = reply ? SG_CT_SEEN_REPLY : 0;
	if (p->proto == IPPROTO_TCP) {
		if (p->tcp_flags & TCP_FLAG_FIN)
			f |= reply ? SG_CT_FIN_REPLY : SG_CT_FIN_ORIGIN;
		if (p->tcp_flags & TCP_FLAG_RST)
			f |= SG_CT_RST;
	}
	return f;
}

static __always_inline void ct_touch(struct sg_ct_val *ct, const struct pkt *p, __u32 dir, __u64 now)
{
	__u32 add = ct_packet_flags(p, dir != ct->origin_dir);
	int changed = (ct->flags & add) != add;

	if (changed)
		__sync_fetch_and_or(&ct->flags, add);
	if (changed || now - ct->last_seen_ns > SG_CT_REFRESH_NS)
		ct->last_seen_ns = now;
}

/* Per-CPU token bucket: at most events_per_sec events per second per CPU, bursts of events_burst. */
static __always_inline int event_allowed(const struct sg_config *cfg, __u64 now)
{
	__u64 rate = cfg->events_per_sec;
	if (rate == 0)
		return 1;
	__u32 zero = 0;
	struct sg_bucket *b = bpf_map_lookup_elem(&sg_buckets, &zero);
	if (!b)
		return 0;
	__u64 full = (__u64)cfg->events_burst * SG_NSEC;
	__u64 elapsed = now - b->last_ns;
	/* Go bounds rate and burst so that elapsed * rate cannot overflow below this cap. */
	if (elapsed >= full)
		b->tokens = full;
	else {
		__u64 t = b->tokens + elapsed * rate;
		b->tokens = t > full ? full : t;
	}
	b->last_ns = now;
	if (b->tokens < SG_NSEC)
		return 0;
	b->tokens -= SG_NSEC;
	return 1;
}

static __always_inline void emit_event(struct __sk_buff *skb, const struct sg_config *cfg,
				       const struct sg_pod *pod, __u32 key, __u32 dir,
				       const struct pkt *p, const struct decision *d, __u64 now)
{
	if (!d->event || cfg->event_mode == SG_EVENTS_NONE)
		return;
	if (cfg->event_mode == SG_EVENTS_DENY_ONLY && d->verdict == SG_VERDICT_ALLOW)
		return;
	if (!event_allowed(cfg, now)) {
		stat_inc(SG_STAT_EVENTS_RATELIMITED);
		return;
	}
	struct sg_event *e = bpf_ringbuf_reserve(&sg_events, sizeof(*e), 0);
	if (!e) {
		stat_inc(SG_STAT_EVENTS_LOST);
		return;
	}
	e->timestamp_ns = now;
	e->ifindex = key;
	e->slot = pod->slot;
	e->rule = d->rule;
	e->generation = pod->generation;
	e->len = skb->len;
	e->dir = dir;
	e->verdict = d->verdict;
	e->reason = d->reason;
	e->proto = p->proto;
	e->family = p->family;
	e->pad = 0;
	e->src_port_network = p->sport;
	e->dst_port_network = p->dport;
	e->pad2 = 0;
	__builtin_memcpy(e->src_addr, p->src, 16);
	__builtin_memcpy(e->dst_addr, p->dst, 16);
	bpf_ringbuf_submit(e, 0);
	stat_inc(SG_STAT_EVENTS_SENT);
}

static __always_inline void count(const struct sg_pod *pod, __u32 dir, __u32 verdict, __u32 len)
{
	__u32 slot = pod->slot;
	if (slot >= SG_MAX_PODS || verdict >= SG_VERDICT_MAX)
		return;
	__u32 idx = (slot * 2 + (dir & 1)) * SG_VERDICT_MAX + verdict;
	struct sg_counter *c = bpf_map_lookup_elem(&sg_counters, &idx);
	if (c) {
		c->packets += 1;
		c->bytes += len;
	}
}

static __always_inline void test_result(struct __sk_buff *skb, const struct decision *d, __u32 generation)
{
	skb->cb[0] = d->verdict;
	skb->cb[1] = d->rule;
	skb->cb[2] = d->reason;
	skb->cb[3] = generation;
	skb->cb[4] = SG_TEST_MAGIC;
}

/* The direction's open/closed default for packets that cannot be judged by rules. */
static __always_inline void state_default(struct decision *d, __u32 state)
{
	switch (state) {
	case SG_STATE_UNPROGRAMMED_ALLOW:
		d->verdict = SG_VERDICT_ALLOW;
		d->rule = SG_RULE_UNPROGRAMMED;
		break;
	case SG_STATE_UNISOLATED:
		d->verdict = SG_VERDICT_ALLOW;
		d->rule = SG_RULE_UNISOLATED;
		break;
	case SG_STATE_UNPROGRAMMED_DENY:
		d->verdict = SG_VERDICT_DENY;
		d->rule = SG_RULE_UNPROGRAMMED;
		break;
	default:
		d->verdict = SG_VERDICT_DENY;
		d->rule = SG_RULE_NONE;
	}
}

/*
 * Source-address validation for packets the pod sends: the host must route the source
 * back through this very interface (strict reverse path, as rp_filter=1 would for IPv4,
 * and for IPv6 too). Without it a pod could write another pod's address, or any
 * address an ipBlock admits, into its packets and be judged by the receiver as that
 * peer. The lookup is the output route towards the source restricted to the interface.
 */
static __always_inline int src_routed_here(struct __sk_buff *skb, __u32 ifindex, const struct pkt *p)
{
	struct bpf_fib_lookup fib = {};
	fib.ifindex = ifindex;
	if (p->family == 4) {
		fib.family = 2; /* AF_INET */
		__builtin_memcpy(&fib.ipv4_dst, p->src + 12, 4);
		__builtin_memcpy(&fib.ipv4_src, p->dst + 12, 4);
	} else {
		fib.family = 10; /* AF_INET6 */
		__builtin_memcpy(fib.ipv6_dst, p->src, 16);
		__builtin_memcpy(fib.ipv6_src, p->dst, 16);
	}
	long rc = bpf_fib_lookup(skb, &fib, sizeof(fib), BPF_FIB_LOOKUP_OUTPUT);
	return (rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH) && fib.ifindex == ifindex;
}

static __always_inline int handle(struct __sk_buff *skb, const __u32 dir)
{
	struct decision d = { .verdict = SG_VERDICT_DENY, .rule = SG_RULE_NONE, .reason = SG_REASON_POLICY };
	__u32 key = skb->ifindex;
	int test = 0;

	if (key == SG_LOOPBACK_IFINDEX) {
		/* BPF_PROG_TEST_RUN runs on lo; we are never attached to lo. */
		key = skb->mark;
		test = 1;
	}

	struct sg_pod *pod = bpf_map_lookup_elem(&sg_pods, &key);
	__u32 zero = 0;
	struct sg_config *cfg = bpf_map_lookup_elem(&sg_cfg, &zero);
	if (!pod || !cfg) {
		stat_inc(SG_STAT_NO_POD);
		d.reason = SG_REASON_NO_POD;
		if (test)
			test_result(skb, &d, 0);
		return TC_ACT_SHOT;
	}

	const __u32 state = pod->dir[dir & 1].state;
	const int audit = pod->audit || cfg->audit;
	__u64 now = bpf_ktime_get_ns();
	struct pkt p = {};
	struct sg_ct_key ck = {};
	const __u8 *remote, *local;

	int pr = sg_parse(skb, &p);
	if (dir == SG_DIR_EGRESS) {
		local = p.src;
		remote = p.dst;
	} else {
		local = p.dst;
		remote = p.src;
	}

	if (pr == PARSE_LINK_LOCAL) {
		d.verdict = SG_VERDICT_ALLOW;
		d.reason = SG_REASON_LINK_LOCAL;
		goto out;
	}
	/* Test runs (BPF_PROG_TEST_RUN on lo) have no pod interface to route to. */
	if (pr == PARSE_OK && dir == SG_DIR_EGRESS && !test && !src_routed_here(skb, key, &p)) {
		d.verdict = audit ? SG_VERDICT_AUDIT : SG_VERDICT_DENY;
		d.rule = SG_RULE_NONE;
		d.reason = SG_REASON_SPOOFED;
		d.event = 1;
		goto out;
	}
	if (pr == PARSE_OK && cfg->allow_host && bpf_map_lookup_elem(&sg_host_addrs, remote)) {
		d.verdict = SG_VERDICT_ALLOW;
		d.rule = SG_RULE_HOST;
		d.reason = SG_REASON_HOST;
		goto out;
	}
	if (pr == PARSE_OK && p.frag == FRAG_NONFIRST) {
		struct sg_frag_key fk = { .ifindex = key, .id = p.frag_id, .proto = p.proto, .dir = dir };
		__builtin_memcpy(fk.src, p.src, 16);
		__builtin_memcpy(fk.dst, p.dst, 16);
		struct sg_frag_val *fv = bpf_map_lookup_elem(&sg_frags, &fk);
		if (fv) {
			p.sport = fv->src_port_network;
			p.dport = fv->dst_port_network;
		} else if (has_ports(p.proto)) {
			stat_inc(SG_STAT_FRAGMENT_UNKNOWN);
			pr = PARSE_BAD;
		}
	}
	if (pr != PARSE_OK) {
		stat_inc(SG_STAT_UNPARSEABLE);
		state_default(&d, state);
		d.reason = SG_REASON_UNPARSEABLE;
		d.event = 1;
		goto audit;
	}

	ck.ifindex = key;
	ck.proto = p.proto;
	__builtin_memcpy(ck.pod_addr, local, 16);
	__builtin_memcpy(ck.remote_addr, remote, 16);
	if (dir == SG_DIR_EGRESS) {
		ck.pod_port_network = p.sport;
		ck.remote_port_network = p.dport;
	} else {
		ck.pod_port_network = p.dport;
		ck.remote_port_network = p.sport;
	}

	struct sg_ct_val *ct = bpf_map_lookup_elem(&sg_ct, &ck);
	if (ct) {
		__u32 flags = ct->flags;
		int new_syn = p.proto == IPPROTO_TCP && (p.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
		if (now - ct->last_seen_ns > ct_timeout(flags, p.proto)) {
			stat_inc(SG_STAT_CT_EXPIRED);
			bpf_map_delete_elem(&sg_ct, &ck);
			ct = NULL;
		} else if (new_syn && ct_closing(flags)) {
			/* A new connection reusing the tuple of a closed one is judged afresh. */
			bpf_map_delete_elem(&sg_ct, &ck);
			ct = NULL;
		}
	}
	if (ct) {
		__u32 flags = ct->flags;
		if (ct->generation != pod->generation || ((flags & SG_CT_AUDITED) && !audit)) {
			/* Policy changed since the connection was judged: judge its first packet again. */
			__u32 orig = ct->origin_dir & 1;
			__u16 orig_dport = orig == SG_DIR_EGRESS ? ck.remote_port_network : ck.pod_port_network;
			__u32 rule;
			__u32 v = policy_eval(pod, orig, remote, p.proto, orig_dport, &rule);
			d.event = 1;
			d.reason = SG_REASON_RECHECK;
			d.rule = rule;
			if (v == SG_VERDICT_ALLOW) {
				ct->generation = pod->generation;
				ct->rule = rule;
				if (flags & SG_CT_AUDITED)
					__sync_fetch_and_and(&ct->flags, ~SG_CT_AUDITED);
				d.verdict = SG_VERDICT_ALLOW;
			} else if (audit) {
				ct->generation = pod->generation;
				if (!(flags & SG_CT_AUDITED))
					__sync_fetch_and_or(&ct->flags, SG_CT_AUDITED);
				d.verdict = SG_VERDICT_AUDIT;
			} else {
				/* Cut: the packet is judged below as a new flow (and reported so). */
				stat_inc(SG_STAT_CT_RECHECK_DENIED);
				bpf_map_delete_elem(&sg_ct, &ck);
				ct = NULL;
			}
		} else {
			d.verdict = (flags & SG_CT_AUDITED) ? SG_VERDICT_AUDIT : SG_VERDICT_ALLOW;
			d.rule = SG_RULE_CONNTRACK;
			d.reason = SG_REASON_CONNTRACK;
		}
		if (ct) {
			ct_touch(ct, &p, dir, now);
			goto out;
		}
	}

	if (p.icmp_err) {
		/* The quoted packet went the other way: from the receiver of this error. */
		struct sg_ct_key ik = { .ifindex = key, .proto = p.inner_proto };
		const __u8 *ilocal = dir == SG_DIR_INGRESS ? p.inner_src : p.inner_dst;
		const __u8 *iremote = dir == SG_DIR_INGRESS ? p.inner_dst : p.inner_src;
		__builtin_memcpy(ik.pod_addr, ilocal, 16);
		__builtin_memcpy(ik.remote_addr, iremote, 16);
		if (dir == SG_DIR_INGRESS) {
			ik.pod_port_network = p.inner_sport;
			ik.remote_port_network = p.inner_dport;
		} else {
			ik.pod_port_network = p.inner_dport;
			ik.remote_port_network = p.inner_sport;
		}
		if (addr_equal(ik.pod_addr, local) && bpf_map_lookup_elem(&sg_ct, &ik)) {
			d.verdict = SG_VERDICT_ALLOW;
			d.rule = SG_RULE_CONNTRACK;
			d.reason = SG_REASON_RELATED;
			goto out;
		}
	}

	/* A new flow (or one whose entry was cut): the direction's state and rules decide. */
	d.reason = SG_REASON_POLICY;
	d.event = 1;
	d.verdict = policy_eval(pod, dir, remote, p.proto, p.dport, &d.rule);

audit:
	if (d.verdict == SG_VERDICT_DENY && audit)
		d.verdict = SG_VERDICT_AUDIT;
	if (pr == PARSE_OK && d.verdict != SG_VERDICT_DENY) {
		struct sg_ct_val nv = {
			.created_ns = now,
			.last_seen_ns = now,
			.generation = pod->generation,
			.rule = d.rule,
			.flags = ct_packet_flags(&p, 0) | (d.verdict == SG_VERDICT_AUDIT ? SG_CT_AUDITED : 0),
			.origin_dir = dir,
		};
		if (bpf_map_update_elem(&sg_ct, &ck, &nv, BPF_ANY) == 0)
			stat_inc(SG_STAT_CT_CREATED);
	}

out:
	if (pr == PARSE_OK && p.frag == FRAG_FIRST && d.verdict != SG_VERDICT_DENY) {
		struct sg_frag_key fk = { .ifindex = key, .id = p.frag_id, .proto = p.proto, .dir = dir };
		__builtin_memcpy(fk.src, p.src, 16);
		__builtin_memcpy(fk.dst, p.dst, 16);
		struct sg_frag_val fv = { .src_port_network = p.sport, .dst_port_network = p.dport };
		bpf_map_update_elem(&sg_frags, &fk, &fv, BPF_ANY);
	}
	count(pod, dir, d.verdict, skb->len);
	emit_event(skb, cfg, pod, key, dir, &p, &d, now);
	if (test)
		test_result(skb, &d, pod->generation);
	/* UNSPEC, not OK: let later tcx programs / tc filters (the CNI's own) run too. */
	return d.verdict == SG_VERDICT_DENY ? TC_ACT_SHOT : TC_ACT_UNSPEC;
}

/* Attached to the host-side interface's ingress: packets the pod sends. */
SEC("tc")
int sg_pod_egress(struct __sk_buff *skb)
{
	return handle(skb, SG_DIR_EGRESS);
}

/* Attached to the host-side interface's egress: packets towards the pod. */
SEC("tc")
int sg_pod_ingress(struct __sk_buff *skb)
{
	return handle(skb, SG_DIR_INGRESS);
}
