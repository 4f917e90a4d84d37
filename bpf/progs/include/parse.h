/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * One-pass packet parsing for pipeline.bpf.c (its only includer): Ethernet, at most two
 * VLAN tags, IPv4 or IPv6 with its extension headers, and the first bytes of TCP, UDP,
 * SCTP, ICMP or ICMPv6, into a struct sl_pkt. User space keeps a reference model of
 * exactly these rules (the lead's data-plane tests compare the two); change both together.
 *
 * Contract: every helper takes a cursor (the next byte to read and the end of the
 * readable data) and returns the next protocol (an EtherType or an IP protocol number,
 * >= 0) or -1 with pkt->status set to SL_PARSE_MALFORMED or SL_PARSE_TRUNCATED. A helper
 * never reads a byte at or past cursor.end: every access is preceded by a bounds check
 * of the form `p + n > end`, the shape the verifier needs to give the pointer a range.
 * sl_parse() runs the helpers in order and fills *pkt; the caller zeroes *pkt first.
 *
 * The rules (the header comment of pipeline.bpf.c restates them for the whole program):
 *  - Ethernet: fewer than 14 bytes: TRUNCATED. Up to two VLAN tags (TPID 0x8100 or
 *    0x88a8, in any order) are skipped; the VLAN dimension uses the outer (first) tag's
 *    VID, SL_VLAN_UNTAGGED without a tag. A tag offloaded by the NIC (TC's vlan_tci) is
 *    the outer tag and counts as one of the two. A tag cut short: TRUNCATED. A VLAN TPID
 *    after two tags is returned as the EtherType: not IP, not malformed.
 *  - IPv4: fewer than 20 bytes: TRUNCATED; version != 4 or IHL < 5: MALFORMED; IHL * 4
 *    past the end: TRUNCATED. A nonzero fragment offset makes a later fragment: the
 *    protocol is known, there are no L4 fields. Total length is not checked.
 *  - IPv6: fewer than 40 bytes: TRUNCATED; version != 6: MALFORMED. Extension headers
 *    0 (hop-by-hop), 43 (routing), 60 (destination options) take (hdrlen + 1) * 8 bytes
 *    (8 needed to read hdrlen); 44 (fragment) takes 8 and, with a nonzero offset, ends
 *    the walk as a later fragment whose protocol is its next header. At most 8
 *    extension headers: a 9th is MALFORMED. A header cut short is TRUNCATED. Any other
 *    next header (6, 17, 59, 50, 51, ...) is the L4 protocol.
 *  - L4, when not a later fragment: TCP needs 20 bytes (ports, flags byte at 13), UDP 8
 *    (ports), SCTP 12 (ports), ICMP (1, IPv4 only) and ICMPv6 (58, IPv6 only) 4 (type,
 *    code); fewer: TRUNCATED. Other protocols have no L4 fields.
 *
 * Byte order: pkt->sport, dport, tot_len and vid are host order; addresses and flowinfo
 * stay in network order, as the maps' keys and bpf_fib_lookup want them.
 */
#ifndef SLUICE_PARSE_H
#define SLUICE_PARSE_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>

#include "pipeline.h"

/* pkt->status */
#define SL_PARSE_OK 0
#define SL_PARSE_MALFORMED 1
#define SL_PARSE_TRUNCATED 2

/* pkt->l4: which L4 fields are valid */
#define SL_L4_PORTS (1U << 0) /* sport, dport: TCP, UDP, SCTP */
#define SL_L4_TCP (1U << 1) /* tcp_flags */
#define SL_L4_ICMP (1U << 2) /* icmp_type, icmp_code (ICMPv6 when family == 6) */
#define SL_L4_LATER_FRAGMENT (1U << 3) /* a fragment with offset != 0: proto only */

#define SL_IPV6_MAX_EXT 8
#define SL_VLAN_MAX_TAGS 2

#define SL_IPPROTO_HOPOPTS 0
#define SL_IPPROTO_ICMP 1
#define SL_IPPROTO_TCP 6
#define SL_IPPROTO_UDP 17
#define SL_IPPROTO_ROUTING 43
#define SL_IPPROTO_FRAGMENT 44
#define SL_IPPROTO_ICMPV6 58
#define SL_IPPROTO_DSTOPTS 60
#define SL_IPPROTO_SCTP 132

/* The parse result (88 bytes, on the caller's stack); user space never sees it. */
struct sl_pkt {
	__u8 status; /* SL_PARSE_* */
	__u8 family; /* 0 (not IP, or not parsed), 4 or 6 */
	__u8 proto; /* IP protocol (IPv6: the one after the extension headers) */
	__u8 l4; /* SL_L4_* */
	__u16 vid; /* outer VLAN ID, or SL_VLAN_UNTAGGED */
	__u16 l3_off; /* offset of the IP header in the frame */
	__u16 sport; /* host order, with SL_L4_PORTS */
	__u16 dport;
	__u16 tot_len; /* IPv4 total length, IPv6 payload length + 40: for the FIB's MTU check */
	__u8 tcp_flags; /* with SL_L4_TCP */
	__u8 icmp_type; /* with SL_L4_ICMP */
	__u8 icmp_code;
	__u8 ttl; /* IPv4 TTL, IPv6 hop limit */
	__u8 tos; /* IPv4 */
	__u8 pad0;
	__be32 flowinfo; /* IPv6: traffic class and flow label (the version bits cleared) */
	__u8 saddr[16]; /* IPv4 in the first 4 bytes, the rest zero */
	__u8 daddr[16];
	/*
	 * The classifier's array indexes within a generation, or SL_SLOT_ABSENT, set by
	 * sl_parse_slots(). One field per dimension, so that the classifier tests each once:
	 * the verifier keeps apart every path on which a second test of a known value could
	 * go only one way.
	 */
	__u32 proto_slot; /* IP protocol, or SL_PROTO_NOT_IP */
	__u32 flags_slot; /* TCP flags byte, or SL_FLAGS_NOT_TCP */
	__u32 sport_slot; /* source port, or absent */
	__u32 dport_slot;
	__u32 icmp_slot; /* is_icmpv6 * 65536 + type * 256 + code, or absent */
	__u32 pad;
};

#define SL_SLOT_ABSENT 0xffffffffU

struct sl_cursor {
	void *pos;
	void *end;
};

struct sl_vlan_hdr {
	__be16 tci;
	__be16 type;
};

static __always_inline int sl_parse_fail(struct sl_pkt *pkt, __u8 status)
{
	pkt->status = status;
	return -1;
}

static __always_inline int sl_is_vlan_tpid(__u32 type)
{
	return type == ETH_P_8021Q || type == ETH_P_8021AD;
}

/*
 * Ethernet and VLAN tags. `offloaded` is 1 when the NIC already took the outer tag out of
 * the frame (TC only), with its TCI in `tci`. Returns the EtherType (host order) or -1.
 */
static __always_inline int sl_parse_eth(struct sl_cursor *c, struct sl_pkt *pkt, __u32 offloaded,
					__u32 tci)
{
	struct ethhdr *eth = c->pos;
	__u32 tags = offloaded ? 1 : 0;
	__u32 type;

	if ((void *)(eth + 1) > c->end)
		return sl_parse_fail(pkt, SL_PARSE_TRUNCATED);
	type = bpf_ntohs(eth->h_proto);
	c->pos = eth + 1;
	pkt->vid = offloaded ? (tci & 0xfff) : SL_VLAN_UNTAGGED;

#pragma unroll
	for (int i = 0; i < SL_VLAN_MAX_TAGS; i++) {
		struct sl_vlan_hdr *vlan = c->pos;

		if (!sl_is_vlan_tpid(type) || tags >= SL_VLAN_MAX_TAGS)
			break;
		if ((void *)(vlan + 1) > c->end)
			return sl_parse_fail(pkt, SL_PARSE_TRUNCATED);
		if (!tags)
			pkt->vid = bpf_ntohs(vlan->tci) & 0xfff;
		type = bpf_ntohs(vlan->type);
		c->pos = vlan + 1;
		tags++;
	}
	return type;
}

/* IPv4 header and options. Returns the IP protocol or -1. */
static __always_inline int sl_parse_ipv4(struct sl_cursor *c, struct sl_pkt *pkt)
{
	struct iphdr *ip = c->pos;
	__u32 hlen;

	if ((void *)(ip + 1) > c->end)
		return sl_parse_fail(pkt, SL_PARSE_TRUNCATED);
	if (ip->version != 4 || ip->ihl < 5)
		return sl_parse_fail(pkt, SL_PARSE_MALFORMED);
	hlen = ip->ihl * 4;
	if (c->pos + hlen > c->end)
		return sl_parse_fail(pkt, SL_PARSE_TRUNCATED);

	pkt->family = 4;
	pkt->proto = ip->protocol;
	pkt->ttl = ip->ttl;
	pkt->tos = ip->tos;
	pkt->tot_len = bpf_ntohs(ip->tot_len);
	__builtin_memcpy(pkt->saddr, &ip->saddr, 4);
	__builtin_memcpy(pkt->daddr, &ip->daddr, 4);
	if (ip->frag_off & bpf_htons(0x1fff))
		pkt->l4 |= SL_L4_LATER_FRAGMENT;
	c->pos += hlen;
	return ip->protocol;
}

static __always_inline int sl_is_ipv6_ext(__u32 next)
{
	return next == SL_IPPROTO_HOPOPTS || next == SL_IPPROTO_ROUTING ||
	       next == SL_IPPROTO_DSTOPTS || next == SL_IPPROTO_FRAGMENT;
}

/*
 * IPv6 header and extension headers. Returns the L4 protocol or -1. The walk is unrolled
 * (SL_IPV6_MAX_EXT copies); each copy's bounds check is against a cursor whose offset the
 * verifier tracks as a range (a header may be 8 to 2048 bytes long).
 */
static __always_inline int sl_parse_ipv6(struct sl_cursor *c, struct sl_pkt *pkt)
{
	struct ipv6hdr *ip6 = c->pos;
	__u32 next;

	if ((void *)(ip6 + 1) > c->end)
		return sl_parse_fail(pkt, SL_PARSE_TRUNCATED);
	if (ip6->version != 6)
		return sl_parse_fail(pkt, SL_PARSE_MALFORMED);

	pkt->family = 6;
	pkt->ttl = ip6->hop_limit;
	pkt->tot_len = bpf_ntohs(ip6->payload_len) + sizeof(*ip6);
	pkt->flowinfo = *(__be32 *)ip6 & bpf_htonl(0x0fffffff);
	__builtin_memcpy(pkt->saddr, &ip6->saddr, 16);
	__builtin_memcpy(pkt->daddr, &ip6->daddr, 16);
	next = ip6->nexthdr;
	c->pos = ip6 + 1;

#pragma unroll
	for (int i = 0; i < SL_IPV6_MAX_EXT; i++) {
		__u8 *ext = c->pos;

		if (!sl_is_ipv6_ext(next))
			break;
		if ((void *)(ext + 8) > c->end)
			return sl_parse_fail(pkt, SL_PARSE_TRUNCATED);
		if (next == SL_IPPROTO_FRAGMENT) {
			next = ext[0];
			c->pos = ext + 8;
			/* offset: the top 13 bits of bytes 2-3 */
			if (*(__be16 *)(ext + 2) & bpf_htons(0xfff8)) {
				pkt->l4 |= SL_L4_LATER_FRAGMENT;
				break;
			}
		} else {
			__u32 len = ((__u32)ext[1] + 1) * 8;

			if ((void *)ext + len > c->end)
				return sl_parse_fail(pkt, SL_PARSE_TRUNCATED);
			next = ext[0];
			c->pos = (void *)ext + len;
		}
	}
	if (!(pkt->l4 & SL_L4_LATER_FRAGMENT) && sl_is_ipv6_ext(next))
		return sl_parse_fail(pkt, SL_PARSE_MALFORMED);
	pkt->proto = next;
	return next;
}

static __always_inline int sl_parse_ports(__u8 *l4, struct sl_pkt *pkt)
{
	pkt->sport = bpf_ntohs(*(__be16 *)l4);
	pkt->dport = bpf_ntohs(*(__be16 *)(l4 + 2));
	pkt->l4 |= SL_L4_PORTS;
	return pkt->proto;
}

/*
 * The L4 header's first bytes, unless pkt is a later fragment. Returns pkt->proto or -1.
 * Each case checks its own constant length: one check of a variable length would leave
 * the verifier with only the smallest length as the pointer's proven range.
 */
static __always_inline int sl_parse_l4(struct sl_cursor *c, struct sl_pkt *pkt)
{
	__u8 *l4 = c->pos;

	if (pkt->l4 & SL_L4_LATER_FRAGMENT)
		return pkt->proto;
	switch (pkt->proto) {
	case SL_IPPROTO_TCP:
		if ((void *)(l4 + 20) > c->end)
			return sl_parse_fail(pkt, SL_PARSE_TRUNCATED);
		pkt->tcp_flags = l4[13];
		pkt->l4 |= SL_L4_TCP;
		return sl_parse_ports(l4, pkt);
	case SL_IPPROTO_UDP:
		if ((void *)(l4 + 8) > c->end)
			return sl_parse_fail(pkt, SL_PARSE_TRUNCATED);
		return sl_parse_ports(l4, pkt);
	case SL_IPPROTO_SCTP:
		if ((void *)(l4 + 12) > c->end)
			return sl_parse_fail(pkt, SL_PARSE_TRUNCATED);
		return sl_parse_ports(l4, pkt);
	case SL_IPPROTO_ICMP:
	case SL_IPPROTO_ICMPV6:
		/* ICMP counts on IPv4 only, ICMPv6 on IPv6 only */
		if (pkt->family != (pkt->proto == SL_IPPROTO_ICMP ? 4 : 6))
			return pkt->proto;
		if ((void *)(l4 + 4) > c->end)
			return sl_parse_fail(pkt, SL_PARSE_TRUNCATED);
		pkt->icmp_type = l4[0];
		pkt->icmp_code = l4[1];
		pkt->l4 |= SL_L4_ICMP;
		return pkt->proto;
	}
	return pkt->proto;
}

/* The per-dimension slots of a parsed packet (struct sl_pkt). */
static __always_inline void sl_parse_slots(struct sl_pkt *pkt)
{
	pkt->proto_slot = pkt->family ? pkt->proto : SL_PROTO_NOT_IP;
	pkt->flags_slot = pkt->l4 & SL_L4_TCP ? pkt->tcp_flags : SL_FLAGS_NOT_TCP;
	pkt->sport_slot = pkt->l4 & SL_L4_PORTS ? pkt->sport : SL_SLOT_ABSENT;
	pkt->dport_slot = pkt->l4 & SL_L4_PORTS ? pkt->dport : SL_SLOT_ABSENT;
	pkt->icmp_slot = pkt->l4 & SL_L4_ICMP ? (pkt->family == 6) * 65536 +
							  pkt->icmp_type * 256 + pkt->icmp_code :
						  SL_SLOT_ABSENT;
}

/*
 * The whole parse over [data, end). Returns the L4 protocol (IP), the EtherType (not IP:
 * pkt->family stays 0), or -1 with pkt->status set.
 */
static __always_inline int sl_parse(void *data, void *end, __u32 offloaded, __u32 tci,
				    struct sl_pkt *pkt)
{
	struct sl_cursor c = { .pos = data, .end = end };
	int type = sl_parse_eth(&c, pkt, offloaded, tci);

	if (type < 0)
		return -1;
	if (type == ETH_P_IP || type == ETH_P_IPV6) {
		pkt->l3_off = c.pos - data;
		if (type == ETH_P_IP ? sl_parse_ipv4(&c, pkt) < 0 : sl_parse_ipv6(&c, pkt) < 0)
			return -1;
		type = sl_parse_l4(&c, pkt);
		if (type < 0)
			return -1;
	}
	sl_parse_slots(pkt);
	return type;
}

#endif
