// SPDX-License-Identifier: GPL-2.0
/* `vlan 100`: an 802.1Q/802.1ad/0x9100 tag with VLAN id 100. */
#include "filter_common.h"

SEC("xdp")
int filter_vlan100(struct xdp_md *ctx)
{
	struct ethhdr *eth = eth_of(ctx);
	__be16 *tci;

	if (!eth)
		return 0;
	if (eth->h_proto != bpf_htons(ETH_P_8021Q) && eth->h_proto != bpf_htons(ETH_P_8021AD) &&
	    eth->h_proto != bpf_htons(0x9100))
		return 0;
	tci = (void *)(eth + 1);
	if ((void *)(tci + 1) > (void *)(long)ctx->data_end)
		return 0;
	return (*tci & bpf_htons(0x0fff)) == bpf_htons(100);
}
