/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared by the hand-written filter benchmarks (bench/c/filter_*.bpf.c): each program is the C a careful
 * developer would write for one tcpdump expression, returning 1 on a match and 0 otherwise, like the
 * compiled filter's "return" verdict. Packets too short for a header do not match. Fields are compared
 * in network byte order.
 */
#ifndef FILTER_COMMON_H
#define FILTER_COMMON_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define IP_FRAG_OFFSET 0x1fff

/* The Ethernet header, or NULL if the packet is shorter. */
static __always_inline struct ethhdr *eth_of(struct xdp_md *ctx)
{
	struct ethhdr *eth = (void *)(long)ctx->data;

	if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
		return NULL;
	return eth;
}

/* The IPv4 header after `eth`, or NULL if the packet is not IPv4 or too short. */
static __always_inline struct iphdr *ipv4_of(struct xdp_md *ctx, struct ethhdr *eth)
{
	struct iphdr *ip = (void *)(eth + 1);

	if (eth->h_proto != bpf_htons(ETH_P_IP) || (void *)(ip + 1) > (void *)(long)ctx->data_end)
		return NULL;
	return ip;
}

/* The first `len` bytes of the IPv4 payload (ihl honoured), or NULL; also NULL for later fragments. */
static __always_inline void *l4_of(struct xdp_md *ctx, struct iphdr *ip, __u32 len)
{
	void *l4 = (void *)ip + ip->ihl * 4;

	if (ip->frag_off & bpf_htons(IP_FRAG_OFFSET))
		return NULL;
	if (l4 + len > (void *)(long)ctx->data_end)
		return NULL;
	/* Verifier: keep clang from re-deriving the pointer from data without the checked range. */
	asm volatile("" : "+r"(l4));
	return l4;
}

char LICENSE[] SEC("license") = "GPL";

#endif
