// SPDX-License-Identifier: GPL-2.0
/* `ip`: Ethernet type 0x0800. */
#include "filter_common.h"

SEC("xdp")
int filter_ip(struct xdp_md *ctx)
{
	struct ethhdr *eth = eth_of(ctx);

	return eth && eth->h_proto == bpf_htons(ETH_P_IP);
}
