// SPDX-License-Identifier: GPL-2.0
/* `ip src net 10.0.0.0/8`. */
#include "filter_common.h"

SEC("xdp")
int filter_srcnet(struct xdp_md *ctx)
{
	struct ethhdr *eth = eth_of(ctx);
	struct iphdr *ip;

	if (!eth || !(ip = ipv4_of(ctx, eth)))
		return 0;
	return (ip->saddr & bpf_htonl(0xff000000)) == bpf_htonl(0x0a000000);
}
