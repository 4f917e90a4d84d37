/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The contract between pipeline.bpf.c and user space (controller/dataplane/abi.ts
 * mirrors every struct here byte for byte; change both together). All fields are
 * host byte order (little-endian) unless typed __be*; addresses are network order.
 *
 * One object is loaded per attachment (device x hook). Its maps fall in three groups:
 *
 *  - shared by every attachment of one sluice instance (pinned once, reused by
 *    libbpf at load): sl_set4_dir, sl_set4_sm, sl_set4_bg, sl_set4_dn (IPv4) and
 *    sl_set6_dir, sl_set6_bg, sl_set6_dn, sl_set6_short, sl_set6 (IPv6) — prefix-set
 *    membership;
 *  - classification tables, two generations side by side: the program reads
 *    sl_ctl[0].gen once per packet and uses only that generation's half of every
 *    table, so the loader writes the other half and then flips one u32;
 *  - state and counters, which never depend on the generation.
 *
 * Classification ("aggregated bit vectors"). A rule set of at most SL_MAX_RULES
 * rules is ordered (priority, then insertion): position 0 is tried first. Each of
 * the SL_DIMS dimensions maps the packet's field to a class, and each class to a
 * struct sl_vec: the positions of the rules that the field value allows (a rule
 * that does not constrain the dimension is in every class of it). The candidates
 * are the AND over the dimensions the generation uses (sl_gen_cfg.dims); the
 * first candidate (lowest set bit) is tried first. A dimension whose field the
 * packet lacks (ports of an ICMP packet or of a later fragment, addresses of ARP,
 * flags of UDP, an address in no set) uses sl_gen_cfg.absent[dim]: the rules that
 * do not constrain that dimension.
 *
 * The per-dimension lookups:
 *   SL_DIM_SRC, SL_DIM_DST   sl_pfx4 / sl_pfx6 (LPM; key gen, dim, address;
 *                            a /0 entry per gen, dim and family always exists);
 *                            IPv4 asks sl_pfx4_cover first (struct below)
 *   SL_DIM_SSET, SL_DIM_DSET the shared set maps give the mask of the sets holding
 *                            the address (the range blocks below, IPv4 and
 *                            IPv6); sl_setcls (hash; gen, dim, mask)
 *                            gives the class; mask 0 or no entry → absent.
 *                            A one-set mask asks sl_setcls1 first (array;
 *                            index in pipeline.bpf.c), which repeats sl_setcls
 *   SL_DIM_PROTO             sl_proto[gen * 512 + proto]; 256 = not IP
 *   SL_DIM_SPORT, SL_DIM_DPORT sl_ports[(gen * 2 + (dim == DPORT)) * 65536 + port]
 *   SL_DIM_ICMP              sl_icmp[(gen * 2 + is_icmpv6) * 65536 + type * 256 + code]
 *   SL_DIM_VLAN              sl_vlan[gen * 4352 + vid]; 4096 = untagged (outer tag)
 *   SL_DIM_FLAGS             sl_flags[gen * 512 + tcp flags byte]; 256 = not TCP
 *
 * Every class value indexes sl_vecs[gen * SL_MAX_CLASSES + class].
 *
 * A rule with a tcpdump expression (SL_RULE_FILTER) also needs bit sl_rule.filter
 * of the filter mask. The mask is computed by a program generated at run time (the
 * "filter bank", bpf/filter's eBPF of each expression in sequence), tail-called
 * from sl_progs[gen] only when a candidate has SL_RULE_FILTER (sl_gen_cfg.filter_cls
 * names the class holding every filter rule). The bank stores the mask, the gen and
 * done = 1 in sl_scratch and tail-calls sl_progs[SL_PROG_RESUME] (the resume_* entry
 * of the same object), which classifies again with the mask known. Nothing is
 * counted before the tail call, so a packet is counted once.
 *
 * Map names (pipeline.bpf.c defines them; all BTF-defined, 15 characters at most):
 *   shared      sl_set4_dir sl_set4_sm sl_set4_bg sl_set4_dn sl_set6_dir sl_set6_bg
 *               sl_set6_dn sl_set6_short sl_set6
 *   per gen     sl_gen sl_pfx4 sl_pfx4_cover sl_pfx6 sl_setcls sl_setcls1 sl_proto sl_ports
 *               sl_icmp sl_vlan sl_flags sl_vecs sl_rules (see the index formulas above)
 *   control     sl_ctl[1], sl_limiters[SL_MAX_LIMITERS], sl_tx (devmap, SL_MAX_REDIRECTS),
 *               sl_progs (prog array, SL_PROG_SLOTS), sl_stamp[2] (u32 per generation: a value
 *               never given before, written with each write of that generation, before the
 *               flip; the pipeline memoizes classification outcomes under it)
 *   state       sl_buckets[SL_MAX_LIMITERS], sl_src_buckets (LRU hash of struct sl_src_key →
 *               struct sl_src_bucket),
 *               sl_scratch (per-CPU, 1), sl_stash (per-CPU, 1: the parse the pipeline hands to
 *               resume_* across the filter bank; private to the C program, user space only pins it),
 *               sl_memo (per-CPU, 4096: classification outcomes by class tuple; private likewise)
 *   counters    per-CPU arrays: sl_dev_stats[SL_VERDICTS] (struct sl_counter),
 *               sl_rule_stats[SL_MAX_RULES] (struct sl_rule_counter, by sl_rule.stats),
 *               sl_limit_stats[SL_MAX_LIMITERS], sl_events[SL_EVENTS] (u64),
 *               sl_hist[SL_HIST_BUCKETS] (u64; bucket = log2 of the frame length)
 * Programs: pipeline_xdp + resume_xdp (SEC "xdp"), pipeline_tc + resume_tc (SEC "tc").
 * sl_progs takes one program type, so the loader autoloads only one pair per object.
 */
#ifndef SLUICE_PIPELINE_H
#define SLUICE_PIPELINE_H

#define SL_MAX_RULES 4096
#define SL_WORDS 64 /* SL_MAX_RULES / 64 */
#define SL_MAX_CLASSES 8192 /* per generation */
#define SL_MAX_SETS 32
#define SL_MAX_FILTERS 64
#define SL_MAX_LIMITERS 1024
#define SL_MAX_REDIRECTS 256
#define SL_HIST_BUCKETS 32
#define SL_MAX_STEPS 64 /* rules tried per packet (count, filter misses, then the match) */

#define SL_PROTO_SLOTS 512
#define SL_PROTO_NOT_IP 256
#define SL_VLAN_SLOTS 4352
#define SL_VLAN_UNTAGGED 4096
#define SL_FLAGS_SLOTS 512
#define SL_FLAGS_NOT_TCP 256

enum sl_dim {
	SL_DIM_SRC = 0,
	SL_DIM_DST = 1,
	SL_DIM_SSET = 2,
	SL_DIM_DSET = 3,
	SL_DIM_PROTO = 4,
	SL_DIM_SPORT = 5,
	SL_DIM_DPORT = 6,
	SL_DIM_ICMP = 7,
	SL_DIM_VLAN = 8,
	SL_DIM_FLAGS = 9,
	SL_DIMS = 10,
};

/* sl_rule.action, sl_gen_cfg.default_action and .malformed_action. */
enum sl_action {
	SL_ACT_PASS = 0,
	SL_ACT_DROP = 1,
	SL_ACT_COUNT = 2, /* count, then try the next candidate */
	SL_ACT_RATELIMIT = 3, /* within the limit: pass; over it: drop */
	SL_ACT_REDIRECT = 4,
};

/* What happened to the packet in the end: sl_dev_stats index. */
enum sl_verdict {
	SL_VERDICT_PASS = 0,
	SL_VERDICT_DROP = 1,
	SL_VERDICT_REDIRECT = 2,
	SL_VERDICT_TX = 3, /* reserved for the load balancer */
	SL_VERDICTS = 4,
};

/* sl_events index: why a packet took an unusual path (counted besides its verdict). */
enum sl_event {
	SL_EV_MALFORMED = 0, /* a header is inconsistent (IHL < 5, bad version, too many ext headers) */
	SL_EV_TRUNCATED = 1, /* the frame ends inside a header */
	SL_EV_DEFAULT = 2, /* no rule decided: the default action applied */
	SL_EV_RATELIMITED = 3, /* dropped by a rate limit */
	SL_EV_FWD_TO_STACK = 4, /* redirect fell back to the stack: no neighbour, TTL <= 1, FIB said no */
	SL_EV_FWD_FAILED = 5, /* redirect: the FIB routes out of another device than the rule's, or no route: dropped */
	SL_EV_STEP_LIMIT = 6, /* SL_MAX_STEPS rules tried without a decision: default applied */
	SL_EV_FILTER_MISSING = 7, /* the filter bank tail call failed: filters counted as not matching */
	SL_EVENTS = 8,
};

/* sl_rule.flags */
#define SL_RULE_FILTER (1U << 0) /* also needs bit .filter of the filter mask */

/* sl_limiter.flags */
#define SL_LIMIT_BITS (1U << 0) /* rate and burst count bits (bytes * 8), else packets */
#define SL_LIMIT_PER_SOURCE (1U << 1) /* one bucket per source address (sl_src_buckets) */

/* One bit per rule position; summary bit w is set iff words[w] != 0. */
struct sl_vec {
	__u64 summary;
	__u64 words[SL_WORDS];
};

struct sl_ctl {
	__u32 gen; /* 0 or 1: the generation packets use */
	__u32 pad;
};

/* sl_gen: one per generation; written by the loader before it flips sl_ctl. */
struct sl_gen_cfg {
	__u32 default_action; /* enum sl_action: PASS or DROP */
	__u32 malformed_action; /* PASS or DROP, for malformed and truncated packets */
	__u32 dims; /* bit (1 << enum sl_dim) per dimension some rule constrains */
	__u32 nrules; /* positions in use */
	__u32 absent[SL_DIMS]; /* class for a packet without the dimension's field */
	__u32 filter_cls; /* class of the vector of rules with SL_RULE_FILTER */
	__u32 has_filters; /* 0: no rule has SL_RULE_FILTER */
};

/*
 * sl_pfx4_cover[gen * 2 + dim] (dim SL_DIM_SRC or SL_DIM_DST): which /16s the generation's IPv4
 * prefixes of that dimension reach, so that an address in none of them takes the /0 entry's
 * class without the trie. Bit (h & 63) of bits[h / 64] is set when some prefix other than the
 * /0 holds an address of the /16 h (the address's first two bytes). valid = 0 (a map created
 * by this build and not written yet): ask the trie.
 */
#define SL_PFX4_COVER_WORDS 1024
struct sl_pfx4_cover {
	__u64 bits[SL_PFX4_COVER_WORDS];
	__u32 zero_cls; /* the class of the dimension's /0 entry */
	__u32 valid;
};

/* sl_rules[gen * SL_MAX_RULES + position] */
struct sl_rule {
	__u16 action; /* enum sl_action */
	__u16 flags; /* SL_RULE_* */
	__u16 stats; /* index into sl_rule_stats: stable while the rule exists */
	__u16 limiter; /* index into sl_limiters, for SL_ACT_RATELIMIT */
	__u16 filter; /* bit of the filter mask, for SL_RULE_FILTER */
	__u16 redirect; /* index into sl_tx (devmap), for SL_ACT_REDIRECT */
	__u32 ifindex; /* redirect target (TC redirects by ifindex) */
	__u8 nexthop[6]; /* static next-hop MAC; all zero: from the FIB (bpf_fib_lookup) */
	__u8 pad[2];
};

struct sl_counter {
	__u64 packets;
	__u64 bytes;
};

struct sl_rule_counter {
	__u64 packets;
	__u64 bytes;
	__u64 last_ns; /* bpf_ktime_get_coarse_ns() (CLOCK_MONOTONIC, jiffy resolution) of the
			* last hit on this CPU */
};

/* sl_limiters[i]: written by the loader; rate and burst in packets or bits. */
struct sl_limiter {
	__u64 rate; /* per second, > 0 */
	__u64 burst; /* bucket depth, > 0 */
	__u32 flags; /* SL_LIMIT_* */
	__u32 pad;
};

struct sl_limiter_counter {
	__u64 passed;
	__u64 dropped;
};

/* A token bucket: sl_buckets[limiter], updated under its bpf_spin_lock. */
struct sl_bucket {
	struct bpf_spin_lock lock;
	__u32 pad;
	__u64 tokens; /* private to the program (user space only zeroes buckets) */
	__u64 last_ns; /* 0: never used: the bucket starts full */
};

/*
 * sl_src_buckets[{limiter, family, addr}]: the same 24 bytes as struct sl_bucket, but the
 * kernel refuses a bpf_spin_lock in an LRU hash (EOPNOTSUPP), so this bucket is updated
 * lock-free (xchg of last_ns, cmpxchg of tokens) and its first word is unused.
 */
struct sl_src_bucket {
	__u32 unused;
	__u32 pad;
	__u64 tokens;
	__u64 last_ns;
};

struct sl_src_key {
	__u32 limiter;
	__u32 family; /* 4 or 6 */
	__u8 addr[16]; /* IPv4 in the first 4 bytes, the rest zero */
};

struct sl_pfx4_key {
	__u32 prefixlen; /* 16 + address bits */
	__u8 gen;
	__u8 dim; /* SL_DIM_SRC or SL_DIM_DST */
	__u8 addr[4];
};

struct sl_pfx6_key {
	__u32 prefixlen; /* 16 + address bits */
	__u8 gen;
	__u8 dim;
	__u8 addr[16];
};

/*
 * IPv4 set membership as ranges (controller/dataplane/set4-blocks.ts writes them). The
 * address space is cut at /16: within one, the sets an address is in change only at a
 * few addresses, so a /16 is a sorted list of (start, mask) ranges, start being the low 16
 * bits of the first address. The lookup is the same few loads for a set of 10 prefixes
 * or of millions, where an LPM trie walks one node per bit the keys share.
 *
 *   sl_set4_dir[addr >> 16]  (array, u32) the /16's representation:
 *     SL_SET4_NONE   no set holds any address of it;
 *     SL_SET4_SMALL  at most SL_SET4_SMALL_N ranges: sl_set4_sm[addr >> 16];
 *     SL_SET4_BIG    at most SL_SET4_BIG_N ranges: sl_set4_bg[addr >> 16];
 *     SL_SET4_DENSE  more: sl_set4_dn[addr >> 16] lists the first start of each page
 *                    of SL_SET4_BIG_N ranges, the page is sl_set4_bg[SL_SET4_PAGE |
 *                    bank << SL_SET4_BANK_SHIFT | (addr >> 16) << 8 | page]; a rewrite
 *                    fills the other bank, then replaces the node.
 *   A block's unused entries repeat its last range, so the search probes a fixed count.
 *
 * Writes are ordered so that no packet sees half a change: a block is written (a hash
 * update replaces a value whole) before the dir entry that names it, and a block is
 * deleted only after no dir entry or dense node names it. A dir entry changes one byte.
 */
#define SL_SET4_NONE 0
#define SL_SET4_SMALL 1
#define SL_SET4_BIG 2
#define SL_SET4_DENSE 3
#define SL_SET4_SMALL_N 8
#define SL_SET4_BIG_N 64
#define SL_SET4_PAGES 256 /* pages of a dense /16: 16,384 ranges */
#define SL_SET4_PAGE (1U << 24) /* key flag of a dense /16's page */
#define SL_SET4_BANK_SHIFT 25

/* sl_set4_sm / sl_set4_bg value: entry = start << 32 | mask, sorted by start, e[0] starts at 0 */
struct sl_set4_small {
	__u64 e[SL_SET4_SMALL_N];
};

struct sl_set4_big {
	__u64 e[SL_SET4_BIG_N];
};

/* sl_set4_dn value: the first start of each page; unused ones repeat the last */
struct sl_set4_dense {
	__u16 pages; /* 1 to SL_SET4_PAGES */
	__u16 bank; /* 0 or 1 */
	__u16 first[SL_SET4_PAGES];
};

/*
 * IPv6 set membership (controller/dataplane/set6-blocks.ts writes it), the IPv4 design cut at
 * /32: within a /32, the sets an address is in change only at a few addresses, so a /32 that
 * holds a prefix longer than /32 is a sorted list of (start, mask) ranges, start being the
 * address's low 96 bits. Prefixes of /32 and shorter are few whatever the set's size (a /32 is
 * a whole provider) and live in a trie of 32-bit keys, sl_set6_short; a block's ranges include
 * them too, so one of the two answers, never both.
 *
 *   sl_set6_dir[addr >> 96]  (hash, struct sl_set6_node) the /32's representation, absent when
 *                            it holds no prefix longer than /32 (then sl_set6_short answers):
 *     SL_SET6_SMALL  at most SL_SET6_SMALL_N ranges, in the node itself;
 *     SL_SET6_BIG    at most SL_SET6_BIG_N ranges: sl_set6_bg[{addr >> 96, 0}];
 *     SL_SET6_DENSE  more: sl_set6_dn[addr >> 96] lists the first start of each page of
 *                    SL_SET6_BIG_N ranges, the page is sl_set6_bg[{addr >> 96, SL_SET6_PAGE |
 *                    bank << SL_SET6_BANK_SHIFT | page}]; a rewrite fills the other bank;
 *     SL_SET6_TRIE   more than the pages hold: the /32 is looked up in sl_set6, the trie of
 *                    every prefix (kept whole beside the ranges; adoption reads it back).
 *   A block's unused entries repeat its last range, so the search probes a fixed count.
 *
 * Writes are ordered as for IPv4: pages and big blocks before the node that names them, and
 * deleted only after nothing names them.
 */
#define SL_SET6_SMALL 1
#define SL_SET6_BIG 2
#define SL_SET6_DENSE 3
#define SL_SET6_TRIE 4
#define SL_SET6_SMALL_N 4
#define SL_SET6_BIG_N 64
#define SL_SET6_PAGES 256 /* pages of a dense /32: 16,384 ranges */
#define SL_SET6_PAGE (1U << 16) /* sub-key flag of a dense /32's page */
#define SL_SET6_BANK_SHIFT 17

/* A range's start (address bits 32..127, host order) and the mask of the sets holding it. */
struct sl_set6_entry {
	__u64 hi; /* address bits 32..95 */
	__u32 lo; /* address bits 96..127 */
	__u32 mask;
};

struct sl_set6_node {
	__u32 kind;
	__u32 pad;
	struct sl_set6_entry e[SL_SET6_SMALL_N]; /* SL_SET6_SMALL only */
};

struct sl_set6_bkey {
	__u32 top; /* address bits 0..31, host order */
	__u32 sub; /* 0: the BIG block; else SL_SET6_PAGE | bank << SL_SET6_BANK_SHIFT | page */
};

struct sl_set6_big {
	struct sl_set6_entry e[SL_SET6_BIG_N];
};

/* sl_set6_dn value: the first start of each page (mask unused); unused ones repeat the last */
struct sl_set6_dense {
	__u16 pages; /* 1 to SL_SET6_PAGES */
	__u16 bank; /* 0 or 1 */
	__u32 pad;
	struct sl_set6_entry first[SL_SET6_PAGES];
};

struct sl_set6_short_key {
	__u32 prefixlen; /* 0 to 32 */
	__u8 addr[4];
};

struct sl_set6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

struct sl_setcls_key {
	__u8 gen;
	__u8 dim; /* SL_DIM_SSET or SL_DIM_DSET */
	__u8 pad[6];
	__u64 mask;
};

/* sl_scratch[0], per CPU: the filter bank's result for the packet being classified. */
struct sl_scratch {
	__u64 fmask; /* bit i: filter i matched */
	__u32 gen; /* the generation the packet started with */
	__u32 done; /* 1 from the bank until resume_* reads it */
};

/* sl_progs slots */
#define SL_PROG_BANK0 0 /* filter bank of generation 0 */
#define SL_PROG_BANK1 1 /* filter bank of generation 1 */
#define SL_PROG_RESUME 2 /* resume_xdp / resume_tc of the same object */
#define SL_PROG_LB 3 /* the load balancer (lb_xdp, lb_nat_tc), run on what the rules pass */
#define SL_PROG_SLOTS 4

/* Offsets the generated filter bank writes (it has no BTF). */
#define SL_SCRATCH_FMASK_OFF 0
#define SL_SCRATCH_GEN_OFF 8
#define SL_SCRATCH_DONE_OFF 12

#endif
