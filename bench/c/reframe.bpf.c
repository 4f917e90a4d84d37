// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The bench's frame restorer (bench/lb-cost.ts): puts the original frame back in front of every
 * iteration of a repeated BPF_PROG_TEST_RUN, then tail-calls the program timed.
 *
 * A test run hands each iteration the previous one's output. A balancer that encapsulates
 * (IPIP) grows the frame every iteration, so the second would see its own tunnel packet and pass
 * it. This program strips what the frame grew by and writes the 64 original bytes back, so every
 * iteration balances the same frame, warm, as the DSR and NAT rows are timed. The floor of such
 * a row runs this program too (into `r0 = XDP_TX`), so its cost and the tail call's are in the
 * floor and drop out of the net figures.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define FRAME_BYTES 64

/* Key 0: the frame every iteration starts from. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u8[FRAME_BYTES]);
} reframe_frame SEC(".maps");

/* Key 0: the program timed. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} reframe_next SEC(".maps");

SEC("xdp")
int reframe(struct xdp_md *ctx)
{
	__u32 key = 0;
	const __u64 *orig = bpf_map_lookup_elem(&reframe_frame, &key);
	long grown = (long)ctx->data_end - (long)ctx->data - FRAME_BYTES;
	__u64 *data;

	if (!orig)
		return XDP_ABORTED;
	if (grown && bpf_xdp_adjust_head(ctx, (int)grown))
		return XDP_ABORTED;
	data = (__u64 *)(long)ctx->data;
	if ((void *)(data + FRAME_BYTES / 8) > (void *)(long)ctx->data_end)
		return XDP_ABORTED;
#pragma unroll
	for (int i = 0; i < FRAME_BYTES / 8; i++)
		data[i] = orig[i];
	bpf_tail_call(ctx, &reframe_next, 0);
	return XDP_ABORTED;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
