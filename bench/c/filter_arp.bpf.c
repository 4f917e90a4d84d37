// SPDX-License-Identifier: GPL-2.0
/* `arp`: Ethernet type 0x0806. */
#include "filter_common.h"

SEC("xdp")
int filter_arp(struct xdp_md *ctx)
{
	struct ethhdr *eth = eth_of(ctx);

	return eth && eth->h_proto == bpf_htons(ETH_P_ARP);
}
