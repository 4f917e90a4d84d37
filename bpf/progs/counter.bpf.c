// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The first sluice data-plane program: counts every packet per action and
 * applies one configurable verdict (pass or drop). It parses nothing, so no
 * packet is "unparseable": every packet is counted and gets the verdict.
 * counter_xdp and counter_tc are the same logic for the XDP and TC hooks;
 * counter_xdp_v2 differs only in counting into a second slot-set so a test
 * can see which program is behind a link after bpf_link_update.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "include/counter.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_ACTIONS);
	__type(key, __u32);
	__type(value, struct counter_value);
} dev_stats SEC(".maps");

/* Packets seen by counter_xdp_v2 only: key 0, so a link upgrade is observable. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counter_value);
} v2_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} verdict SEC(".maps");

static __always_inline __u32 count(__u64 len)
{
	__u32 zero = 0;
	__u32 *configured = bpf_map_lookup_elem(&verdict, &zero);
	__u32 action = configured && *configured == COUNTER_DROP ? COUNTER_DROP : COUNTER_PASS;
	struct counter_value *value = bpf_map_lookup_elem(&dev_stats, &action);

	if (value) {
		value->packets++;
		value->bytes += len;
	}
	return action;
}

SEC("xdp")
int counter_xdp(struct xdp_md *ctx)
{
	__u64 len = ctx->data_end - ctx->data;

	return count(len) == COUNTER_DROP ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int counter_xdp_v2(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 len = ctx->data_end - ctx->data;
	struct counter_value *value = bpf_map_lookup_elem(&v2_stats, &zero);

	if (value) {
		value->packets++;
		value->bytes += len;
	}
	return count(len) == COUNTER_DROP ? XDP_DROP : XDP_PASS;
}

SEC("tc")
int counter_tc(struct __sk_buff *skb)
{
	return count(skb->len) == COUNTER_DROP ? TC_ACT_SHOT : TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
