// SPDX-License-Identifier: GPL-2.0
/* `tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn`: IPv4 TCP (first fragment), SYN without ACK. */
#include "filter_common.h"

SEC("xdp")
int filter_tcpsyn(struct xdp_md *ctx)
{
	struct ethhdr *eth = eth_of(ctx);
	struct iphdr *ip;
	__u8 *tcp;

	if (!eth || !(ip = ipv4_of(ctx, eth)) || ip->protocol != IPPROTO_TCP)
		return 0;
	if (!(tcp = l4_of(ctx, ip, 14)))
		return 0;
	return (tcp[13] & 0x12) == 0x02;
}
