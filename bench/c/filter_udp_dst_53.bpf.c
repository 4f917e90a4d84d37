// SPDX-License-Identifier: GPL-2.0
/* `udp dst port 53`: IPv6 (UDP right after the fixed header) or IPv4 (first fragment), destination 53. */
#include "filter_common.h"

SEC("xdp")
int filter_udp53(struct xdp_md *ctx)
{
	struct ethhdr *eth = eth_of(ctx);
	void *end = (void *)(long)ctx->data_end;
	struct udphdr *udp;
	struct iphdr *ip;

	if (!eth)
		return 0;
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		udp = (void *)(ip6 + 1);
		if ((void *)udp + 4 > end || ip6->nexthdr != IPPROTO_UDP)
			return 0;
	} else {
		if (!(ip = ipv4_of(ctx, eth)) || ip->protocol != IPPROTO_UDP)
			return 0;
		if (!(udp = l4_of(ctx, ip, 4)))
			return 0;
	}
	return udp->dest == bpf_htons(53);
}
