// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Fixture for the addon's kernel tests (test/kernel/addon-*.test.ts): one map
 * of each kind the binding handles and a few trivial programs. Not attached by
 * sluice itself. Traffic it cannot parse: every program returns a fixed
 * verdict, except addon_parse_xdp which drops UDP to port 53 and passes the rest.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct lpm_v4_key {
	__u32 prefixlen;
	__u32 addr;
};

/* Key u32, value u64; written by tests, read by tests. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} test_hash SEC(".maps");

/* Key u32 index, value u64; written by tests and addon_count_xdp. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} test_array SEC(".maps");

/* Key prefixlen + IPv4 (network order), value u64; written by tests. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v4_key);
	__type(value, __u64);
} test_lpm SEC(".maps");

/* Key u32, per-CPU u64; incremented by addon_count_xdp, read by tests. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} test_pcpu SEC(".maps");

struct inner_array {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} inner_proto SEC(".maps");

/* Key u32 slot, value: an inner array map (fd on update, id on lookup). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, struct inner_array);
} test_outer SEC(".maps");

/* Key u32 slot, value: a program (fd on update, id on lookup); used by addon_tail_xdp. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} test_progs SEC(".maps");

SEC("xdp")
int addon_pass_xdp(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int addon_drop_xdp(struct xdp_md *ctx)
{
	return XDP_DROP;
}

/* Drops IPv4 UDP to port 53, passes everything else (also what it cannot parse). */
SEC("xdp")
int addon_parse_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct udphdr *udp;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP || ip->ihl != 5)
		return XDP_PASS;
	udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > data_end)
		return XDP_PASS;
	return udp->dest == bpf_htons(53) ? XDP_DROP : XDP_PASS;
}

/* Counts packets per CPU in test_pcpu[0] and passes them. */
SEC("xdp")
int addon_count_xdp(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 one = 1, *value = bpf_map_lookup_elem(&test_pcpu, &zero);

	if (value)
		*value += 1;
	else
		bpf_map_update_elem(&test_pcpu, &zero, &one, BPF_NOEXIST);
	return XDP_PASS;
}

/* Tail-calls test_progs[0]; returns XDP_ABORTED if the slot is empty. */
SEC("xdp")
int addon_tail_xdp(struct xdp_md *ctx)
{
	bpf_tail_call(ctx, &test_progs, 0);
	return XDP_ABORTED;
}

SEC("tc")
int addon_pass_tc(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
