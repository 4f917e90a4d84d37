// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The peer of bench/lb-cost.ts: a minimal hand-written IPv4 XDP load balancer doing the work
 * lb_xdp (bpf/progs/lb.bpf.c) does for one plain TCP or UDP packet, and nothing else: no
 * counters, no VLAN tags, no IPv4 options, no fragments, no IPv6, no SCTP, no timeouts, no
 * backend states, no insert cap.
 *
 * Per packet:
 *  1. Parse Ethernet, IPv4 (IHL 5, not a fragment), TCP or UDP ports. Anything else: XDP_PASS.
 *  2. Service: min_services[{VIP, port, proto}]; a miss: XDP_PASS.
 *  3. Flow table: min_flows[{5-tuple}] (LRU). A hit gives the backend id and the hash. A miss:
 *     jhash_3words(src, dst, ports) seeded with the service's seed and the protocol, then
 *     Maglev: min_maglev[service id] (an ARRAY_OF_MAPS, like sluice's lb_maglev) gives the
 *     service's table, an ARRAY of LB_MIN_RING u32 backend ids, slot hash % LB_MIN_RING. The
 *     table size is a compile-time constant and the inner maps carry no BPF_F_INNER_MAP, so
 *     the verifier inlines the inner lookup and the modulo is by a constant.
 *  4. Backend: min_backends[id] (ARRAY): the address and, for NAT, the port.
 *  5. Forward by mode, the next hop from bpf_fib_lookup (flags 0) towards the address the
 *     packet goes to, its MACs written into the frame, XDP_TX when the FIB's device is the
 *     ingress one, else bpf_redirect. A FIB failure: XDP_PASS untouched.
 *     - DSR: only the MACs change.
 *     - IPIP: an outer IPv4 header (proto 4) in front: source LB_MIN_SRC/26 with the host bits
 *       from the flow hash, TOS and DF copied from the inner header, id 0, TTL 64, checksum
 *       computed over the 20 bytes.
 *     - NAT: destination address and port (the backend's; 0: keep the VIP's) rewritten, the
 *       IPv4 and TCP/UDP checksums updated incrementally (RFC 1624; a UDP checksum of 0 stays
 *       0), then min_nat[{backend, client, ports, proto}] = {VIP, VIP port} written when
 *       missing or different.
 *
 * One program per mode and flow-table policy (the mode and policy are constants in each, so
 * the compiler keeps only their path): lb_min_<mode> inserts on a miss (the hit row: every
 * run after the first hits), lb_min_<mode>_ni never inserts (the miss row, like sluice with
 * an insert cap of 0), lb_min_<mode>_re ignores a hit and inserts every time (the insert row:
 * an LRU update that replaces the entry). Names stay within 15 characters.
 *
 * lb_req_<mode>[_ni|_re]: the same programs with the bookkeeping issue 9 requires of sluice
 * added (see "lb_req_*" below), for the bench's context tables: what that work costs by itself.
 * They share min_maglev, min_backends (whose flags only they read) and min_nat, and keep their
 * own services, flows, counters and configuration in req_* maps.
 *
 * Maps (name: key -> value; writer -> reader), all written by bench/lb-cost.ts:
 *   min_services  HASH  struct min_svc_key -> struct min_svc
 *   min_maglev    ARRAY_OF_MAPS  u32 service id -> ARRAY[LB_MIN_RING] of u32 backend ids
 *   min_backends  ARRAY  u32 backend id -> struct min_backend
 *   min_flows     LRU_HASH  struct min_flow_key -> struct min_flow; programs -> programs
 *   min_nat       LRU_HASH  struct min_nat_key -> struct min_nat; NAT programs -> (nobody)
 *   req_*         lb_req_*'s own maps, described with them
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define LB_MIN_RING 65537 /* the Maglev table size, a prime (sluice's default) */
#define LB_MIN_SRC 0xc0000240 /* 192.0.2.64: the IPIP outer source prefix ... */
#define LB_MIN_SRC_HOST 0x3f /* ... a /26: 6 host bits from the hash */
#define LB_MIN_AF_INET 2

#define MODE_DSR 0
#define MODE_IPIP 1
#define MODE_NAT 2

#define FLOW_INSERT 0 /* insert on a miss */
#define FLOW_NO_INSERT 1 /* never insert */
#define FLOW_REINSERT 2 /* ignore a hit, select and insert every time */

struct min_svc_key {
	__be32 vip;
	__be16 port;
	__u8 proto;
	__u8 pad;
};

struct min_svc {
	__u32 id;
	__u32 seed;
};

struct min_backend {
	__be32 addr;
	__be16 port; /* NAT: the destination port; 0: the VIP's */
	__u16 flags; /* REQ_BE_*, read by lb_req_* only */
};

struct min_flow_key {
	__be32 src;
	__be32 dst;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct min_flow {
	__u32 backend;
	__u32 hash;
};

struct min_nat_key {
	__be32 backend;
	__be32 client;
	__be16 bport;
	__be16 cport;
	__u8 proto;
	__u8 pad[3];
};

struct min_nat {
	__be32 vip;
	__be16 vport;
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct min_svc_key);
	__type(value, struct min_svc);
} min_services SEC(".maps");

struct min_table {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_MIN_RING);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__array(values, struct min_table);
} min_maglev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct min_backend);
} min_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct min_flow_key);
	__type(value, struct min_flow);
} min_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct min_nat_key);
	__type(value, struct min_nat);
} min_nat SEC(".maps");

static __always_inline __u32 rol32(__u32 word, __u32 shift)
{
	return (word << shift) | (word >> ((-shift) & 31));
}

/* jhash_3words of include/linux/jhash.h */
static __always_inline __u32 jhash_3words(__u32 a, __u32 b, __u32 c, __u32 initval)
{
	initval += 0xdeadbeef + (3 << 2);
	a += initval;
	b += initval;
	c += initval;
	c ^= b;
	c -= rol32(b, 14);
	a ^= c;
	a -= rol32(c, 11);
	b ^= a;
	b -= rol32(a, 25);
	c ^= b;
	c -= rol32(b, 16);
	a ^= c;
	a -= rol32(c, 4);
	b ^= a;
	b -= rol32(a, 14);
	c ^= b;
	c -= rol32(b, 24);
	return c;
}

static __always_inline __u32 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

/* RFC 1624 eqn. 3: the checksum after 16-bit words changed by `change` (sum of ~old + new). */
static __always_inline __u16 csum_apply(__u16 check, __u32 change)
{
	return ~csum_fold((__u16)~check + csum_fold(change)) & 0xffff;
}

static __always_inline __u32 csum_change32(__u32 old, __u32 new)
{
	return (~old & 0xffff) + (~old >> 16) + (new & 0xffff) + (new >> 16);
}

static __always_inline int xmit(struct xdp_md *ctx, struct bpf_fib_lookup *fib)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end)
		return XDP_DROP;
	__builtin_memcpy(eth->h_dest, fib->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib->smac, ETH_ALEN);
	if (fib->ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(fib->ifindex, 0);
}

/*
 * Step 5 for a packet whose backend is chosen: ip is its IPv4 header (IHL 5) after an untagged
 * Ethernet header, ports its TCP or UDP ports, both checked by the caller.
 */
static __always_inline int min_forward(struct xdp_md *ctx, const int mode, struct iphdr *ip,
				       __be16 *ports, const struct min_backend *be, __u32 hash,
				       struct bpf_fib_lookup *fib)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	fib->family = LB_MIN_AF_INET;
	fib->tos = ip->tos;
	fib->ifindex = ctx->ingress_ifindex;
	fib->ipv4_dst = be->addr;

	if (mode == MODE_DSR) {
		fib->l4_protocol = ip->protocol;
		fib->sport = ports[0];
		fib->dport = ports[1];
		fib->tot_len = bpf_ntohs(ip->tot_len);
		fib->ipv4_src = ip->saddr;
		if (bpf_fib_lookup(ctx, fib, sizeof(*fib), 0) != BPF_FIB_LKUP_RET_SUCCESS)
			return XDP_PASS;
		return xmit(ctx, fib);
	}

	if (mode == MODE_IPIP) {
		__u16 inner_len = bpf_ntohs(ip->tot_len), *w;
		__be32 src = bpf_htonl((LB_MIN_SRC & ~LB_MIN_SRC_HOST) | (hash & LB_MIN_SRC_HOST));
		__be32 dst = be->addr;
		__be16 df = ip->frag_off & bpf_htons(0x4000);
		__u8 tos = ip->tos;
		struct iphdr *outer;
		__u32 sum = 0;

		fib->l4_protocol = IPPROTO_IPIP;
		fib->tot_len = inner_len + sizeof(struct iphdr);
		fib->ipv4_src = src;
		if (bpf_fib_lookup(ctx, fib, sizeof(*fib), 0) != BPF_FIB_LKUP_RET_SUCCESS)
			return XDP_PASS;
		if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct iphdr)))
			return XDP_PASS;
		data = (void *)(long)ctx->data;
		end = (void *)(long)ctx->data_end;
		eth = data;
		outer = (void *)(eth + 1);
		if ((void *)(outer + 1) > end)
			return XDP_DROP;
		eth->h_proto = bpf_htons(ETH_P_IP);
		outer->version = 4;
		outer->ihl = 5;
		outer->tos = tos;
		outer->tot_len = bpf_htons(inner_len + sizeof(struct iphdr));
		outer->id = 0;
		outer->frag_off = df;
		outer->ttl = 64;
		outer->protocol = IPPROTO_IPIP;
		outer->check = 0;
		outer->saddr = src;
		outer->daddr = dst;
		w = (void *)outer;
#pragma unroll
		for (int i = 0; i < 10; i++)
			sum += w[i];
		outer->check = ~csum_fold(sum) & 0xffff;
		return xmit(ctx, fib);
	}

	/* MODE_NAT */
	{
		__be32 vip = ip->daddr, bip = be->addr, client = ip->saddr;
		__be16 vport = ports[1], bport = be->port ? be->port : ports[1], cport = ports[0];
		struct min_nat_key nk = {};
		struct min_nat nv = {}, *cur;
		__u32 change;
		__u16 *check;

		fib->l4_protocol = ip->protocol;
		fib->sport = cport;
		fib->dport = bport;
		fib->tot_len = bpf_ntohs(ip->tot_len);
		fib->ipv4_src = client;
		if (bpf_fib_lookup(ctx, fib, sizeof(*fib), 0) != BPF_FIB_LKUP_RET_SUCCESS)
			return XDP_PASS;
		change = csum_change32(vip, bip);
		ip->check = csum_apply(ip->check, change);
		ip->daddr = bip;
		change += (__u16)~vport + bport;
		if (ip->protocol == IPPROTO_TCP) {
			if ((void *)ports + 20 > end)
				return XDP_DROP;
			check = (void *)ports + 16;
			*check = csum_apply(*check, change);
		} else {
			if ((void *)ports + 8 > end)
				return XDP_DROP;
			check = (void *)ports + 6;
			if (*check) {
				*check = csum_apply(*check, change);
				if (!*check)
					*check = 0xffff;
			}
		}
		ports[1] = bport;

		nk.backend = bip;
		nk.client = client;
		nk.bport = bport;
		nk.cport = cport;
		nk.proto = ip->protocol;
		nv.vip = vip;
		nv.vport = vport;
		cur = bpf_map_lookup_elem(&min_nat, &nk);
		if (!cur || cur->vip != vip || cur->vport != vport)
			bpf_map_update_elem(&min_nat, &nk, &nv, BPF_ANY);
		return xmit(ctx, fib);
	}
}

static __always_inline int lb_min(struct xdp_md *ctx, const int mode, const int policy)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct bpf_fib_lookup fib = {};
	struct min_svc_key sk = {};
	struct min_flow_key fk = {};
	struct min_backend *be;
	struct min_flow *f;
	struct min_svc *svc;
	struct iphdr *ip;
	__be16 *ports;
	__u32 id, hash;

	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->ihl != 5 || (ip->frag_off & bpf_htons(0x3fff)))
		return XDP_PASS;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	ports = (void *)(ip + 1);
	if ((void *)(ports + 2) > end)
		return XDP_PASS;

	sk.vip = ip->daddr;
	sk.port = ports[1];
	sk.proto = ip->protocol;
	svc = bpf_map_lookup_elem(&min_services, &sk);
	if (!svc)
		return XDP_PASS;

	fk.src = ip->saddr;
	fk.dst = ip->daddr;
	fk.sport = ports[0];
	fk.dport = ports[1];
	fk.proto = ip->protocol;
	f = bpf_map_lookup_elem(&min_flows, &fk);
	if (f && policy == FLOW_INSERT) {
		id = f->backend;
		hash = f->hash;
	} else {
		__u32 key = svc->id, slot, *backend;
		void *table;

		hash = jhash_3words(ip->saddr, ip->daddr, *(__u32 *)ports,
				    svc->seed + ip->protocol);
		table = bpf_map_lookup_elem(&min_maglev, &key);
		if (!table)
			return XDP_PASS;
		slot = hash % LB_MIN_RING;
		backend = bpf_map_lookup_elem(table, &slot);
		if (!backend)
			return XDP_PASS;
		id = *backend;
		if (policy != FLOW_NO_INSERT) {
			struct min_flow nf = { .backend = id, .hash = hash };

			bpf_map_update_elem(&min_flows, &fk, &nf, BPF_ANY);
		}
	}
	be = bpf_map_lookup_elem(&min_backends, &id);
	if (!be)
		return XDP_PASS;
	return min_forward(ctx, mode, ip, ports, be, hash, &fib);
}

/* ---- lb_req_*: the same balancer with the bookkeeping issue 9 requires of every balancer ---- */

/*
 * What sluice must do besides the work above, done the cheapest way a hand-written program can:
 * the events it counts (hits, misses, stale entries, non-SYN misses, inserts refused or failed,
 * closing flows, XDP_TX and redirects) and a coarse clock cached per jiffy in one per-CPU value;
 * per-service and per-backend packets, bytes and new flows; a service limited to some devices;
 * backend states (a removed backend's flows go elsewhere, a down one takes no new SYN); flow
 * entries that idle out (per-service TCP and UDP timeouts, a closing timeout after FIN or RST)
 * and are refreshed at most once a second; the per-CPU cap on inserts. lb_xdp keeps these in
 * the same maps the daemon reads; bench/lb-cost.ts times lb_req_* beside both balancers, so the
 * tables show what the bookkeeping itself costs and what sluice costs beyond it.
 */
#define REQ_EV_HIT 0
#define REQ_EV_MISS 1
#define REQ_EV_STALE 2
#define REQ_EV_NON_SYN_MISS 3
#define REQ_EV_INSERT_CAP 4
#define REQ_EV_INSERT_FAIL 5
#define REQ_EV_CLOSING 6
#define REQ_EV_TX 7
#define REQ_EV_REDIRECT 8
#define REQ_EV_OTHER_DEVICE 9
#define REQ_EVENTS 10

#define REQ_SVC_DEVICES 1 /* req_svc.flags: only on the devices in req_svc_devs */
#define REQ_BE_REMOVED 1 /* min_backend.flags: no flow may use it */
#define REQ_BE_DOWN 2 /* min_backend.flags: failing checks, no new connection */
#define REQ_FLOW_CLOSING 1 /* req_flow.state: a FIN or RST was seen */
#define REQ_CFG_INSERT_CAP 1 /* req_config.flags */
#define REQ_NSEC 1000000000ULL

struct req_svc {
	__u32 id;
	__u32 seed;
	__u16 flags; /* REQ_SVC_* */
	__u16 pad;
	__u32 udp_timeout_s; /* 0: never */
	__u32 tcp_timeout_s;
};

struct req_flow {
	__u32 backend;
	__u32 hash;
	__u64 ts_ns; /* last refreshed, or marked closing */
	__u32 state; /* REQ_FLOW_* */
	__u32 svc; /* the service the entry belongs to (the 5-tuple key does not say) */
};

struct req_cpu {
	__u64 events[REQ_EVENTS];
	__u64 jiffies; /* the coarse clock's cache: coarse_ns was read at this jiffy */
	__u64 coarse_ns;
	__u64 tokens; /* the insert cap's bucket, in units of 1e9 per entry */
	__u64 last_ns;
};

struct req_counter {
	__u64 packets;
	__u64 bytes;
	__u64 new_flows;
};

struct req_config {
	__u64 insert_rate; /* entries per second per CPU, with REQ_CFG_INSERT_CAP */
	__u64 insert_burst;
	__u32 flags; /* REQ_CFG_* */
	__u32 closing_timeout_s;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct min_svc_key);
	__type(value, struct req_svc);
} req_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* service id << 32 | ifindex */
	__type(value, __u8);
} req_svc_devs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct min_flow_key);
	__type(value, struct req_flow);
} req_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct req_cpu);
} req_cpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct req_counter);
} req_svc_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct req_counter);
} req_be_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct req_config);
} req_config SEC(".maps");

static __always_inline __u64 req_now(struct req_cpu *cpu)
{
	__u64 jiffies = bpf_jiffies64();

	if (cpu->jiffies != jiffies) {
		cpu->coarse_ns = bpf_ktime_get_coarse_ns();
		cpu->jiffies = jiffies;
	}
	return cpu->coarse_ns;
}

/* The insert cap: a token bucket per CPU, full at first. */
static __always_inline int req_insert_allowed(const struct req_config *cfg, struct req_cpu *cpu)
{
	__u64 cap, tokens, now;

	if (!(cfg->flags & REQ_CFG_INSERT_CAP))
		return 1;
	if (!cfg->insert_burst)
		return 0;
	now = req_now(cpu);
	cap = cfg->insert_burst * REQ_NSEC;
	tokens = cpu->last_ns ? cpu->tokens + (now - cpu->last_ns) * cfg->insert_rate : cap;
	if (tokens > cap)
		tokens = cap;
	cpu->last_ns = now;
	if (tokens < REQ_NSEC) {
		cpu->tokens = tokens;
		return 0;
	}
	cpu->tokens = tokens - REQ_NSEC;
	return 1;
}

static __always_inline void req_count(void *map, __u32 id, __u64 len, __u32 new_flow)
{
	struct req_counter *c = bpf_map_lookup_elem(map, &id);

	if (c) {
		c->packets++;
		c->bytes += len;
		if (new_flow)
			c->new_flows++;
	}
}

static __always_inline int lb_req(struct xdp_md *ctx, const int mode, const int policy)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u64 len = end - data;
	struct ethhdr *eth = data;
	struct bpf_fib_lookup fib = {};
	struct min_svc_key sk = {};
	struct min_flow_key fk = {};
	struct min_backend *be = 0;
	struct req_config *cfg;
	struct req_cpu *cpu;
	struct req_flow *f;
	struct req_svc *svc;
	struct iphdr *ip;
	__u32 id, hash, zero = 0, event, new_flow = 0, tcp, syn, fin_rst;
	__u8 tcp_flags = 0;
	__be16 *ports;
	int rc;

	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->ihl != 5 || (ip->frag_off & bpf_htons(0x3fff)))
		return XDP_PASS;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	ports = (void *)(ip + 1);
	if ((void *)ports + 20 > end)
		return XDP_PASS;
	tcp = ip->protocol == IPPROTO_TCP;
	if (tcp)
		tcp_flags = *((__u8 *)ports + 13);
	syn = (tcp_flags & 0x12) == 0x02; /* SYN without ACK */
	fin_rst = tcp_flags & 0x05;

	cpu = bpf_map_lookup_elem(&req_cpu, &zero);
	if (!cpu)
		return XDP_PASS;
	sk.vip = ip->daddr;
	sk.port = ports[1];
	sk.proto = ip->protocol;
	svc = bpf_map_lookup_elem(&req_services, &sk);
	if (!svc)
		return XDP_PASS;
	if (svc->flags & REQ_SVC_DEVICES) {
		__u64 dk = (__u64)svc->id << 32 | ctx->ingress_ifindex;

		if (!bpf_map_lookup_elem(&req_svc_devs, &dk)) {
			cpu->events[REQ_EV_OTHER_DEVICE]++;
			return XDP_PASS;
		}
	}
	cfg = bpf_map_lookup_elem(&req_config, &zero);
	if (!cfg)
		return XDP_PASS;

	fk.src = ip->saddr;
	fk.dst = ip->daddr;
	fk.sport = ports[0];
	fk.dport = ports[1];
	fk.proto = ip->protocol;
	f = bpf_map_lookup_elem(&req_flows, &fk);
	event = f ? REQ_EV_STALE : REQ_EV_MISS;
	if (f && policy == FLOW_INSERT && f->svc == svc->id) {
		__u64 now = req_now(cpu), timeout;

		id = f->backend;
		be = bpf_map_lookup_elem(&min_backends, &id);
		if (f->state & REQ_FLOW_CLOSING)
			timeout = cfg->closing_timeout_s;
		else
			timeout = tcp ? svc->tcp_timeout_s : svc->udp_timeout_s;
		if (be && !(be->flags & REQ_BE_REMOVED) && !(syn && (be->flags & REQ_BE_DOWN)) &&
		    !(timeout && now > f->ts_ns && now - f->ts_ns > timeout * REQ_NSEC)) {
			hash = f->hash;
			event = REQ_EV_HIT;
			if (fin_rst) {
				if (!(f->state & REQ_FLOW_CLOSING)) {
					f->state |= REQ_FLOW_CLOSING;
					f->ts_ns = now;
					cpu->events[REQ_EV_CLOSING]++;
				}
			} else if (syn && (f->state & REQ_FLOW_CLOSING)) {
				f->state &= ~REQ_FLOW_CLOSING;
				f->ts_ns = now;
			} else if (!(f->state & REQ_FLOW_CLOSING) && now > f->ts_ns + REQ_NSEC) {
				f->ts_ns = now;
			}
		} else {
			be = 0;
		}
	}
	if (!be) {
		__u32 key = svc->id, slot, *backend;
		void *table;

		if (tcp && !syn)
			cpu->events[REQ_EV_NON_SYN_MISS]++;
		/* Maglev as lb_min does it (not a shared function: clang then schedules lb_min's
		 * code differently, and the target's peer would change) */
		hash = jhash_3words(ip->saddr, ip->daddr, *(__u32 *)ports,
				    svc->seed + ip->protocol);
		table = bpf_map_lookup_elem(&min_maglev, &key);
		if (!table)
			return XDP_PASS;
		slot = hash % LB_MIN_RING;
		backend = bpf_map_lookup_elem(table, &slot);
		if (!backend)
			return XDP_PASS;
		id = *backend;
		be = bpf_map_lookup_elem(&min_backends, &id);
		if (!be)
			return XDP_PASS;
		if (policy == FLOW_NO_INSERT || !req_insert_allowed(cfg, cpu)) {
			cpu->events[REQ_EV_INSERT_CAP]++;
		} else {
			struct req_flow entry = {
				.backend = id,
				.hash = hash,
				.ts_ns = req_now(cpu),
				.state = fin_rst ? REQ_FLOW_CLOSING : 0,
				.svc = svc->id,
			};

			if (bpf_map_update_elem(&req_flows, &fk, &entry, BPF_ANY))
				cpu->events[REQ_EV_INSERT_FAIL]++;
			else
				new_flow = 1;
		}
	}
	rc = min_forward(ctx, mode, ip, ports, be, hash, &fib);
	cpu->events[event]++;
	req_count(&req_svc_stats, svc->id, len, new_flow);
	if (rc == XDP_TX || rc == XDP_REDIRECT) {
		cpu->events[rc == XDP_TX ? REQ_EV_TX : REQ_EV_REDIRECT]++;
		req_count(&req_be_stats, id, len, new_flow);
	}
	return rc;
}

/* One program per balancer, mode and flow-table policy: <balancer>_<mode>[_ni|_re]. */
#define LB_PROG(balancer, suffix, mode, policy)                                                    \
	SEC("xdp") int balancer##suffix(struct xdp_md *ctx)                                        \
	{                                                                                          \
		return balancer(ctx, mode, policy);                                                \
	}

#define LB_PROGS(balancer)                                                                         \
	LB_PROG(balancer, _dsr, MODE_DSR, FLOW_INSERT)                                             \
	LB_PROG(balancer, _dsr_ni, MODE_DSR, FLOW_NO_INSERT)                                       \
	LB_PROG(balancer, _dsr_re, MODE_DSR, FLOW_REINSERT)                                        \
	LB_PROG(balancer, _ipip, MODE_IPIP, FLOW_INSERT)                                           \
	LB_PROG(balancer, _ipip_ni, MODE_IPIP, FLOW_NO_INSERT)                                     \
	LB_PROG(balancer, _ipip_re, MODE_IPIP, FLOW_REINSERT)                                      \
	LB_PROG(balancer, _nat, MODE_NAT, FLOW_INSERT)                                             \
	LB_PROG(balancer, _nat_ni, MODE_NAT, FLOW_NO_INSERT)                                       \
	LB_PROG(balancer, _nat_re, MODE_NAT, FLOW_REINSERT)

LB_PROGS(lb_min)
LB_PROGS(lb_req)

char LICENSE[] SEC("license") = "Dual BSD/GPL";
