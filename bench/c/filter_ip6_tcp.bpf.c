// SPDX-License-Identifier: GPL-2.0
/* `ip6 and tcp`: next header TCP, directly or after one fragment header (libpcap's reading). */
#include "filter_common.h"

SEC("xdp")
int filter_ip6tcp(struct xdp_md *ctx)
{
	struct ethhdr *eth = eth_of(ctx);
	void *end = (void *)(long)ctx->data_end;
	struct ipv6hdr *ip6;
	__u8 *frag;

	if (!eth || eth->h_proto != bpf_htons(ETH_P_IPV6))
		return 0;
	ip6 = (void *)(eth + 1);
	if ((void *)ip6 + 7 > end)
		return 0;
	if (ip6->nexthdr == IPPROTO_TCP)
		return 1;
	if (ip6->nexthdr != IPPROTO_FRAGMENT)
		return 0;
	frag = (void *)(ip6 + 1);
	if ((void *)(frag + 1) > end)
		return 0;
	return *frag == IPPROTO_TCP;
}
