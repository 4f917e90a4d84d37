// SPDX-License-Identifier: GPL-2.0
/* `ip host 192.0.2.1`: IPv4 source or destination 192.0.2.1. */
#include "filter_common.h"

SEC("xdp")
int filter_iphost(struct xdp_md *ctx)
{
	struct ethhdr *eth = eth_of(ctx);
	struct iphdr *ip;

	if (!eth || !(ip = ipv4_of(ctx, eth)))
		return 0;
	return ip->saddr == bpf_htonl(0xc0000201) || ip->daddr == bpf_htonl(0xc0000201);
}
