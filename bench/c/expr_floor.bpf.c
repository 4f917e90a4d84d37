// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The least an expression rule can cost inside the pipeline, written by hand as one program:
 * the work issue 7 requires of every packet the pipeline sees, and nothing else. It reads the
 * active generation (sl_ctl), parses once with the pipeline's own parse (bpf/progs/include/
 * parse.h: malformed and truncated frames need it), answers `udp and dst port 53` from that
 * parse (cheaper than any compiled expression, which reads the frame again), and counts what
 * the pipeline must count: the rule's packets, bytes and last hit (the coarse clock cached per
 * jiffy, as pipeline.bpf.c does), the device's packets and bytes per verdict, and the size
 * histogram, in two per-CPU lookups. No classification, no tail call, no rule table, no event
 * counter: bench/pipeline-cost.ts sets it beside the standalone expression to show where the
 * ≤ 1.2× target stands against the required work itself.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "../../bpf/progs/include/parse.h"
#include "../../bpf/progs/include/log2.h"

/*
 * Everything the device counts, in one per-CPU value so that one lookup reaches it all (the
 * pipeline keeps these in three maps; one is the cheapest layout, which a lower bound wants).
 */
struct ef_device {
	struct sl_counter verdicts[SL_VERDICTS];
	__u64 hist[SL_HIST_BUCKETS];
	__u64 jiffies; /* the coarse clock's cache: coarse_ns was read at this jiffy */
	__u64 coarse_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sl_ctl);
} ef_ctl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ef_device);
} ef_device SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SL_MAX_RULES);
	__type(key, __u32);
	__type(value, struct sl_rule_counter);
} ef_rule_stats SEC(".maps");

/* the device's counters: packets and bytes by verdict, the size histogram */
static __always_inline int ef_count(struct ef_device *dev, __u32 verdict, __u64 len)
{
	dev->verdicts[verdict & (SL_VERDICTS - 1)].packets++;
	dev->verdicts[verdict & (SL_VERDICTS - 1)].bytes += len;
	dev->hist[sl_log2(len) & (SL_HIST_BUCKETS - 1)]++;
	return verdict == SL_VERDICT_DROP ? XDP_DROP : XDP_PASS;
}

/* the deciding rule's counters: packets, bytes and the last hit (the coarse clock, read at
 * most once per jiffy per CPU, as pipeline.bpf.c does) */
static __always_inline void ef_count_rule(struct ef_device *dev, __u32 rule, __u64 len)
{
	struct sl_rule_counter *r = bpf_map_lookup_elem(&ef_rule_stats, &rule);
	__u64 now = bpf_jiffies64();

	if (dev->jiffies != now) {
		dev->coarse_ns = bpf_ktime_get_coarse_ns();
		dev->jiffies = now;
	}
	if (r) {
		r->packets++;
		r->bytes += len;
		r->last_ns = dev->coarse_ns;
	}
}

SEC("xdp")
int expr_floor(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u64 len = end - data;
	struct ef_device *dev;
	struct sl_pkt pkt;
	struct sl_ctl *ctl;
	__u32 zero = 0;

	ctl = bpf_map_lookup_elem(&ef_ctl, &zero);
	if (!ctl || ctl->gen > 1)
		return XDP_PASS;
	dev = bpf_map_lookup_elem(&ef_device, &zero);
	if (!dev) /* never: a per-CPU array always has key 0 */
		return XDP_PASS;
	__builtin_memset(&pkt, 0, sizeof(pkt));
	/* malformed, truncated and unmatched frames pass, counted by the device only */
	if (sl_parse(data, end, 0, 0, &pkt) < 0)
		return ef_count(dev, SL_VERDICT_PASS, len);
	if (pkt.proto != IPPROTO_UDP || !(pkt.l4 & SL_L4_PORTS) || pkt.dport != 53)
		return ef_count(dev, SL_VERDICT_PASS, len);
	ef_count_rule(dev, 0, len);
	return ef_count(dev, SL_VERDICT_DROP, len);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
