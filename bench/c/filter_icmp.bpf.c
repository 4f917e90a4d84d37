// SPDX-License-Identifier: GPL-2.0
/* `icmp`: IPv4, protocol 1. */
#include "filter_common.h"

SEC("xdp")
int filter_icmp(struct xdp_md *ctx)
{
	struct ethhdr *eth = eth_of(ctx);
	struct iphdr *ip;

	if (!eth || !(ip = ipv4_of(ctx, eth)))
		return 0;
	return ip->protocol == IPPROTO_ICMP;
}
