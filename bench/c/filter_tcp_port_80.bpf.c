// SPDX-License-Identifier: GPL-2.0
/* `tcp port 80`: IPv6 (TCP right after the fixed header) or IPv4 (first fragment), either port 80. */
#include "filter_common.h"

SEC("xdp")
int filter_tcp80(struct xdp_md *ctx)
{
	struct ethhdr *eth = eth_of(ctx);
	void *end = (void *)(long)ctx->data_end;
	struct tcphdr *tcp;
	struct iphdr *ip;

	if (!eth)
		return 0;
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		tcp = (void *)(ip6 + 1);
		if ((void *)tcp + 4 > end || ip6->nexthdr != IPPROTO_TCP)
			return 0;
	} else {
		if (!(ip = ipv4_of(ctx, eth)) || ip->protocol != IPPROTO_TCP)
			return 0;
		if (!(tcp = l4_of(ctx, ip, 4)))
			return 0;
	}
	return tcp->source == bpf_htons(80) || tcp->dest == bpf_htons(80);
}
