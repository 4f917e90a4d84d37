// SPDX-License-Identifier: GPL-2.0
/* `udp and ip[6:2] & 0x1fff != 0`: IPv4 UDP, not the first fragment. */
#include "filter_common.h"

SEC("xdp")
int filter_udpfrag(struct xdp_md *ctx)
{
	struct ethhdr *eth = eth_of(ctx);
	struct iphdr *ip;

	if (!eth || !(ip = ipv4_of(ctx, eth)))
		return 0;
	return ip->protocol == IPPROTO_UDP && (ip->frag_off & bpf_htons(IP_FRAG_OFFSET));
}
