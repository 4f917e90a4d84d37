// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * lb_decap_xdp (SEC "xdp"): the backend's half of sluice's IPIP and GUE forwarding. Attached
 * to a backend's device, it strips the outer headers that lb_xdp (lb.bpf.c, IPIP or GUE mode)
 * put in front of a client's packet and passes the inner packet to the stack, which delivers
 * it to the VIP held on lo, with no tunnel device or module. include/lb.h holds the maps'
 * layout; controller/lb/lb-maps.ts (LbDecapMaps) writes them.
 *
 * What it strips: Ethernet with at most two VLAN tags (kept as received), then
 *  - an outer IPv4 header (options allowed, IHL * 4 bytes) with protocol 4 (IPv4 inside) or
 *    41 (IPv6 inside), not a fragment (MF or an offset: LB_DX_FRAGMENT, passed untouched for
 *    the stack to reassemble, which without a tunnel device then drops it);
 *  - an outer IPv6 header with next header 41 (IPv6 inside) or 4 (IPv4 inside) directly
 *    after it (outer extension headers are not walked: such packets pass untouched);
 *  - GUE: either outer header with protocol / next header 17 and a UDP header to
 *    LB_GUE_PORT (6080) followed by a GUE header, stripped with them (IPv4 + 12 or IPv6 + 12
 *    bytes). Only lb_xdp's kind is taken: variant 0 with version, C, Hlen and flags all 0
 *    (so no control messages, no optional fields) and proto 4 or 41; any other GUE header
 *    is LB_DX_MALFORMED. UDP to another port is not GUE (passed, uncounted); so is a later
 *    fragment of a UDP datagram (its port is in the first). The UDP length and checksum are
 *    not checked: the inner packet's own checksums still are, by the stack;
 * when the outer destination is in lb_decap_dst, or whatever it is with LB_DECAP_ANY in
 * lb_decap_cfg (an empty lb_decap_dst and no flag decapsulate nothing: LB_DX_NOT_LOCAL). The
 * inner header must be there and of the announced version (IPv4: 20 bytes, version 4, IHL
 * >= 5; IPv6: 40 bytes, version 6), else LB_DX_MALFORMED and the frame passes untouched.
 * Counted: every decapsulated packet in LB_DX_DECAPPED, the GUE ones also in
 * LB_DX_GUE_DECAPPED. The checks run in this order: outer header, GUE port, fragment,
 * local destination, GUE header, inner header.
 *
 * The frame keeps its MACs and VLAN tags; the EtherType becomes the inner family's. Nothing
 * inside is changed: no TTL, no checksum (the inner packet's checksums never covered the
 * outer header). The stack may need loose reverse-path filtering (rp_filter 0 or 2) to accept
 * the client's source on this device.
 *
 * Everything else (not IP, neither IPIP nor UDP to LB_GUE_PORT, truncated outer headers)
 * passes untouched and uncounted (XDP_PASS); every verdict is XDP_PASS.
 *
 * Code shaped by the verifier: the outer header length is a variable (IPv4 options), so the
 * L2 header is moved with constant-size copies whose pointers are checked one by one, and
 * the EtherType gets its own pointer (a negative constant offset from a variable pointer is
 * refused).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "include/parse.h"
#include "include/lb.h"

#define LB_IPPROTO_IPIP 4
#define LB_IPPROTO_IPV6 41
/* Ethernet and two VLAN tags. */
#define LB_MAX_L3_OFF 22
/* The outer UDP header and the GUE header. */
#define LB_GUE_HLEN 12

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct lb_addr_key);
	__type(value, __u32);
} lb_decap_dst SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_decap_cfg);
} lb_decap_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_DX_EVENTS);
	__type(key, __u32);
	__type(value, __u64);
} lb_decap_stats SEC(".maps");

static __always_inline int lb_dx_event(__u32 event)
{
	__u64 *n = bpf_map_lookup_elem(&lb_decap_stats, &event);

	if (n)
		*n += 1;
	return XDP_PASS;
}

/*
 * Whether the UDP header at u (outer header length unknown to the verifier: its own pointer) is
 * to LB_GUE_PORT with room for a GUE header after it.
 */
static __always_inline int lb_is_gue(void *u, void *end)
{
	__be16 *dport = u + 2;

	if (u + LB_GUE_HLEN > end)
		return 0;
	return *dport == bpf_htons(LB_GUE_PORT);
}

/* Whether packets to addr (family 4 or 6) are decapsulated here. */
static __always_inline int lb_is_local(__u8 family, const void *addr)
{
	struct lb_addr_key k = { .family = family };
	struct lb_decap_cfg *cfg;
	__u32 zero = 0;

	cfg = bpf_map_lookup_elem(&lb_decap_cfg, &zero);
	if (cfg && (cfg->flags & LB_DECAP_ANY))
		return 1;
	__builtin_memcpy(k.addr, addr, family == 4 ? 4 : 16);
	return bpf_map_lookup_elem(&lb_decap_dst, &k) != 0;
}

SEC("xdp")
int lb_decap_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct sl_cursor c = { .pos = data, .end = end };
	struct sl_pkt pkt = {};
	__u64 l3, hdr; /* 64-bit: no zero-extension between their checks and their use */
	__u32 inner, proto, gue = 0;
	__u8 l2[LB_MAX_L3_OFF];
	__u8 *p;
	int type;

	type = sl_parse_eth(&c, &pkt, 0, 0);
	l3 = c.pos - data;
	/* a scalar from here: clang would fold data + l3 back into c.pos, whose range is lost */
	asm volatile("" : "+r"(l3));
	if (l3 < ETH_HLEN || l3 > LB_MAX_L3_OFF)
		return XDP_PASS;
	p = data + l3;
	if (type == ETH_P_IP) {
		struct iphdr *ip = (void *)p;

		if ((void *)(ip + 1) > end || ip->version != 4 || ip->ihl < 5)
			return XDP_PASS;
		proto = ip->protocol;
		hdr = ip->ihl * 4;
		if (proto == SL_IPPROTO_UDP) {
			/* a later fragment has no UDP header to tell GUE by */
			if (ip->frag_off & bpf_htons(0x1fff))
				return XDP_PASS;
			if (!lb_is_gue(p + hdr, end))
				return XDP_PASS;
			gue = 1;
		} else if (proto != LB_IPPROTO_IPIP && proto != LB_IPPROTO_IPV6) {
			return XDP_PASS;
		}
		if (ip->frag_off & bpf_htons(0x3fff))
			return lb_dx_event(LB_DX_FRAGMENT);
		if (!lb_is_local(4, &ip->daddr))
			return lb_dx_event(LB_DX_NOT_LOCAL);
	} else if (type == ETH_P_IPV6) {
		struct ipv6hdr *ip6 = (void *)p;

		if ((void *)(ip6 + 1) > end || ip6->version != 6)
			return XDP_PASS;
		proto = ip6->nexthdr;
		hdr = sizeof(*ip6);
		if (proto == SL_IPPROTO_UDP) {
			if (!lb_is_gue(p + hdr, end))
				return XDP_PASS;
			gue = 1;
		} else if (proto != LB_IPPROTO_IPIP && proto != LB_IPPROTO_IPV6) {
			return XDP_PASS;
		}
		if (!lb_is_local(6, &ip6->daddr))
			return lb_dx_event(LB_DX_NOT_LOCAL);
	} else {
		return XDP_PASS;
	}

	if (gue) {
		struct lb_gue_hdr *g = (void *)(data + l3 + hdr + 8);

		if ((void *)(g + 1) > end)
			return XDP_PASS; /* not reached: lb_is_gue saw it */
		if (g->vch || g->flags ||
		    (g->proto != LB_IPPROTO_IPIP && g->proto != LB_IPPROTO_IPV6))
			return lb_dx_event(LB_DX_MALFORMED);
		proto = g->proto;
		hdr += LB_GUE_HLEN;
	}
	inner = proto == LB_IPPROTO_IPIP ? 4 : 6;

	/* the inner header, at l3 + hdr */
	p = data + l3 + hdr;
	if (inner == 4) {
		struct iphdr *in = (void *)p;

		if ((void *)(in + 1) > end || in->version != 4 || in->ihl < 5)
			return lb_dx_event(LB_DX_MALFORMED);
	} else {
		struct ipv6hdr *in6 = (void *)p;

		if ((void *)(in6 + 1) > end || in6->version != 6)
			return lb_dx_event(LB_DX_MALFORMED);
	}

	/* the L2 header (MACs, tags) moves hdr bytes in, right before the inner header */
	p = data;
	if (p + LB_MAX_L3_OFF > (__u8 *)end)
		return XDP_PASS; /* not reached: the frame holds l3 + hdr + 20 bytes */
	__builtin_memcpy(l2, p, LB_MAX_L3_OFF);
	p = data + hdr;
	if (p + LB_MAX_L3_OFF > (__u8 *)end)
		return XDP_PASS;
	__builtin_memcpy(p, l2, 12);
	if (l3 >= ETH_HLEN + 4)
		__builtin_memcpy(p + 12, l2 + 12, 4);
	if (l3 >= ETH_HLEN + 8)
		__builtin_memcpy(p + 16, l2 + 16, 4);
	l3 = hdr + l3 - 2; /* the EtherType's offset, opaque: clang would fold the - 2 */
	asm volatile("" : "+r"(l3));
	if (l3 > 60 + LB_GUE_HLEN + LB_MAX_L3_OFF)
		return XDP_PASS;
	p = data + l3;
	if (p + 2 > (__u8 *)end)
		return XDP_PASS;
	*(__be16 *)p = inner == 4 ? bpf_htons(ETH_P_IP) : bpf_htons(ETH_P_IPV6);
	if (bpf_xdp_adjust_head(ctx, hdr))
		return lb_dx_event(LB_DX_MALFORMED);
	if (gue)
		lb_dx_event(LB_DX_GUE_DECAPPED);
	return lb_dx_event(LB_DX_DECAPPED);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
