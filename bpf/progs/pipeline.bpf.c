// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The sluice pipeline: parse a frame once, classify it against the active rule-set
 * generation with aggregated bit vectors, apply the first rule that decides (pass, drop,
 * rate-limit, forward), and count the packet once. One source for both hooks: the entry
 * points pipeline_xdp / resume_xdp (SEC "xdp") and pipeline_tc / resume_tc (SEC "tc", direct
 * action: TC_ACT_OK passes, TC_ACT_SHOT drops, bpf_redirect gives TC_ACT_REDIRECT) expand
 * sl_run() with a constant hook: the sl_ctx_* helpers hide the context (packet pointers,
 * frame length, ingress device, verdict codes, the parse), and sl_rewrite / sl_forward
 * branch on the constant for packet writes and the redirect.
 * include/pipeline.h is the contract with user space (maps, index formulas, enums).
 *
 * Traffic it cannot parse. The parse (include/parse.h, which states its rules in full)
 * reads Ethernet, at most two VLAN tags, IPv4 (options, fragments) or IPv6 (at most 8
 * extension headers: hop-by-hop, routing, destination options, fragment), then the first
 * 4-20 bytes of TCP, UDP, SCTP, ICMP or ICMPv6. A frame that ends inside one of those
 * headers is TRUNCATED; an IPv4 header with version != 4 or IHL < 5, an IPv6 header with
 * version != 6 or a 9th extension header is MALFORMED. Both count sl_events[SL_EV_MALFORMED
 * or SL_EV_TRUNCATED] and take the generation's malformed_action (PASS or DROP) without
 * trying a rule; they are still counted in sl_dev_stats and sl_hist. Frames that are not IP
 * (ARP, a third VLAN tag, MPLS, ...) are not malformed: they are classified with their
 * address, port, ICMP and flag dimensions absent (proto and flags use the "not IP" / "not
 * TCP" slots 256). Later fragments have a protocol but no L4 fields. Nothing outside the
 * frame is ever read.
 *
 * Per packet:
 *  1. gen = sl_ctl[0].gen, cfg = sl_gen[gen]; a gen other than 0 or 1 passes the packet
 *     untouched and uncounted (user space has not configured the object yet).
 *  2. Classify: for each dimension in cfg.dims, one lookup gives a class (absent ->
 *     cfg.absent[dim]) and the class a struct sl_vec. The summaries are ANDed first (and
 *     with the positions below cfg.nrules); then, lowest summary bit first, the words of
 *     that index are ANDed across the dimensions, only for words the summary allows, and
 *     the candidates are tried lowest bit first. The work per packet: one lookup per used
 *     dimension, one AND per used dimension for each word the summaries leave (at most
 *     nrules / 64, and few when rules are not spread evenly over every class), and the
 *     candidates tried (at most SL_MAX_STEPS). The size of the sets does not matter.
 *     When the lowest candidate of the first word decides by itself (not COUNT, no
 *     filter, or a filter whose bit of a known mask is set), or is a filter rule with the
 *     mask unknown, it is tried without entering bpf_loop (sl_first_decides); sl_vectors
 *     ANDs word 0 as it reads the summaries, so a rule set of up to 64 rules needs no
 *     second pass over the vectors for it. Before all that, sl_fast (inlined in sl_run, no
 *     global-function call) settles the same first step for a generation of at most 64
 *     rules that uses array dimensions only (PROTO, SPORT, DPORT, ICMP, VLAN, FLAGS): it
 *     ANDs word 0 of those dimensions' vectors and tries up to SL_FAST_STEPS candidates
 *     (COUNT rules, counted only once it settles the walk, then one that decides, needs
 *     the filter bank or ends the walk); anything it cannot settle goes, uncounted, to
 *     sl_classify.
 *     The memo (sl_memo). The walk's outcome depends only on the generation's tables and
 *     the packet's class in each dimension, and most traffic falls in few class tuples
 *     (the classes of one dimension are as many as the distinct ways rules split it, not
 *     as the addresses or ports seen). So sl_classify looks up the classes first and keys
 *     a per-CPU, direct-mapped table of 4,096 slots by them and by the generation's stamp
 *     (sl_stamp[gen], renewed by the loader at each write of that generation, so no slot
 *     outlives the tables it was computed from). A slot holding that very key gives the
 *     outcome (the deciding position, or no decision) without reading a vector; otherwise
 *     the walk runs and its outcome fills the slot, with the positions of the COUNT rules
 *     it counted (a hit counts them again), unless it tried a filter rule (whose match
 *     depends on the packet's bytes, not its classes) or counted more than SL_MEMO_COUNTS:
 *     such tuples always walk. A miss costs what the packet cost before
 *     the memo plus one hash and one 48-byte store, so a flood of distinct tuples costs no
 *     more than that.
 *  3. A candidate with SL_RULE_FILTER needs the filter mask. pipeline_* stops at the first
 *     such candidate and tail-calls the generation's filter bank (sl_progs[gen]), which
 *     stores the mask in sl_scratch and tail-calls resume_* (sl_progs[SL_PROG_RESUME]);
 *     resume_* classifies again with the mask known. pipeline_* leaves its parse in
 *     sl_stash first (the packet is the same), so resume_* does not parse again; and when
 *     the filter candidate was the lowest one (the common case: one expression rule), the
 *     bank's bit for it decides (or, with no other candidate, ends the walk) without a
 *     second classification. The tail calls use constant keys, which the JIT turns into
 *     direct jumps. If the tail call fails,
 *     SL_EV_FILTER_MISSING is counted and the walk starts again with every filter not
 *     matching. COUNT rules tried before that first filter candidate are counted by the
 *     first walk only (resume_* and the restart replay the same candidates and count from
 *     the first filter candidate on), so every rule counter moves once per packet, as if
 *     the mask had been known from the start; sl_dev_stats and sl_hist are counted only
 *     where the packet ends.
 *  4. Steps: each candidate tried costs one step (a filter miss too). COUNT counts and goes
 *     on; PASS, DROP, RATELIMIT and REDIRECT decide. No decision: cfg.default_action with
 *     SL_EV_STEP_LIMIT if a further candidate was left untried after SL_MAX_STEPS steps,
 *     else with SL_EV_DEFAULT (the reference model, controller/dataplane/model-decide.ts).
 *     A counted rule (a COUNT that matched, or the deciding rule) adds the frame to
 *     sl_rule_stats[rule.stats], with last_ns from bpf_ktime_get_coarse_ns()
 *     (CLOCK_MONOTONIC at jiffy resolution): the precise clock costs 10-50 ns a call,
 *     more than the rest of a hit. The coarse clock is read at most once per jiffy per CPU
 *     (sl_coarse_ns caches it in sl_stash, keyed by the inlined bpf_jiffies64()).
 *  5. RATELIMIT: a token bucket (rate per second and burst depth in packets or bits) per
 *     rule limiter, or per source address with SL_LIMIT_PER_SOURCE. Tokens are kept in
 *     unit-nanoseconds (1 packet or bit = 1e9), refilled by elapsed_ns * rate and capped
 *     at burst * 1e9, so the rate is exact in integers. Bursts above 9223372036 units are
 *     clamped there (the cap must fit in 63 bits). Within: pass; over: drop and
 *     SL_EV_RATELIMITED. A missing per-source bucket is inserted full; the LRU may evict a
 *     quiet source, which can only refill its bucket early, never deny it.
 *  6. REDIRECT (forward), IPv4 and IPv6 only (else drop, SL_EV_FWD_FAILED). TTL or hop
 *     limit <= 1: pass to the stack, which sends ICMP time exceeded (SL_EV_FWD_TO_STACK).
 *     bpf_fib_lookup (flags 0, ingress device, addresses, tos/flowinfo, protocol, ports,
 *     L3 length): SUCCESS out of rule.ifindex rewrites both MACs from the result;
 *     SUCCESS out of another device, NOT_FWDED (no route, or a local or broadcast
 *     destination), blackhole, unreachable, prohibit, forwarding disabled, LWT or no
 *     source address: drop (SL_EV_FWD_FAILED); no neighbour or fragmentation needed: pass
 *     to the stack, which resolves the neighbour or sends "fragmentation needed" /
 *     "packet too big" (SL_EV_FWD_TO_STACK).
 *     With a static next hop (rule.nexthop non-zero) the destination MAC is that next
 *     hop whatever the FIB says; the FIB only lends the source MAC when it succeeds out
 *     of rule.ifindex, else the source MAC is left as received. Then the TTL is
 *     decremented (IPv4: incremental checksum update, RFC 1624) or the hop limit, VLAN
 *     tags are kept as received, and XDP redirects through sl_tx[rule.redirect]
 *     (bpf_redirect_map; an empty slot drops with SL_EV_FWD_FAILED), TC to rule.ifindex
 *     (bpf_redirect). The loader must set both rule.ifindex and sl_tx[rule.redirect].
 *  7. Count once: sl_dev_stats[verdict] (packets, bytes = frame length: data_end - data at
 *     XDP, skb->len at TC) and sl_hist[min(floor(log2(len)), 31)] (len 0 -> 0). The verdict
 *     is REDIRECT when redirected, PASS when handed to the stack.
 *
 * Maps (writer -> reader; "loader" is controller/dataplane, which writes a generation's half
 * of every per-generation table, then flips sl_ctl):
 *   sl_set4_*, sl_set6*   shared by all attachments (pinned): set membership, as ranges
 *                         per /16 (IPv4) and per /32 (IPv6, with the short prefixes and
 *                         every prefix in tries beside them); set store -> program
 *                         (SSET/DSET dimensions)
 *   sl_pfx4, sl_pfx6      {gen, dim, address} prefix -> class; loader -> program
 *   sl_setcls             {gen, dim, mask} -> class; loader -> program
 *   sl_proto, sl_ports, sl_icmp, sl_vlan, sl_flags   index formula -> class; loader -> program
 *   sl_vecs               gen * SL_MAX_CLASSES + class -> struct sl_vec; loader -> program
 *   sl_rules              gen * SL_MAX_RULES + position -> struct sl_rule; loader -> program
 *   sl_gen                gen -> struct sl_gen_cfg; loader -> program
 *   sl_ctl                0 -> struct sl_ctl (the active gen); loader -> program
 *   sl_limiters           limiter -> struct sl_limiter; loader -> program
 *   sl_tx                 redirect slot -> ifindex (devmap); loader -> program (XDP)
 *   sl_progs              BANK0/BANK1 -> filter bank, RESUME -> resume_*; loader -> tail calls
 *   sl_buckets            limiter -> struct sl_bucket; program (loader zeroes) -> program
 *   sl_src_buckets        {limiter, family, source} -> struct sl_src_bucket (LRU);
 *                         program -> program
 *   sl_scratch            per CPU: filter mask, gen, done; filter bank -> resume_*
 *   sl_stamp              gen -> u32 stamp; loader -> the memo's keys
 *   sl_memo               per CPU, private to this file: class tuple -> walk outcome
 *                         (deciding position, COUNT rules counted);
 *                         sl_classify -> sl_classify
 *   sl_stash              per CPU, private to this file (not in pipeline.h: user space
 *                         only pins it): pipeline_*'s parse and first filter candidate
 *                         -> resume_*; the coarse clock cache
 *   sl_dev_stats, sl_rule_stats, sl_limit_stats, sl_events, sl_hist
 *                         per-CPU counters; program -> user space (counters.ts)
 *
 * Code shaped by the verifier:
 *  - Classification (sl_classify) and the TC parse (sl_parse_tc) are global functions
 *    (sl_fast, the array-only first step, is inlined: one branch per array dimension on
 *    unknown scalars, then one rule lookup, adds few states). The verifier checks a global
 *    function once, on its own, and its caller sees only unknown scalars in what it
 *    returns; inlined, every parse outcome (family, L4 kind, fragment, ...) would be a
 *    separate path through the classifier, and every classifier path a separate path
 *    through the rest. The XDP parse is inlined all the same (sl_ctx_parse): with the
 *    classifier behind a call its outcomes add few states (the load takes no longer), and
 *    a call costs 6-9 ns where returns are mitigated; inlining sl_classify as well is
 *    refused (past a million instructions). The three frames that are live at
 *    once (sl_run, sl_classify, the walk callback) share the 512-byte stack, so the
 *    rate limiter and the forwarder are separate (static, non-inlined) functions whose
 *    stack is not part of sl_run's frame.
 *  - The candidate walk is a bpf_loop() callback (inlined by the verifier into a plain
 *    loop with a direct call), so the verifier checks its body a few times until the
 *    states converge instead of unrolling 64 words x 64 bits. Its state lives in
 *    sl_classify's stack (struct sl_walk), including the vector pointers, read back at
 *    constant offsets. The step counter starts from io->steps, which is 0 but read from
 *    the caller's memory, so not a constant to the verifier: a known 0 would make it
 *    check the callback once per step count.
 *  - The verifier keeps apart the paths on which a branch could go only one way (it marks
 *    the values precise). So every packet field is tested once (struct sl_pkt carries
 *    one slot per dimension), nrules is not clamped, the dims bits are tested afresh in
 *    each unrolled word (an empty asm stops clang from hoisting the tests), and masks are
 *    built without branches (sl_nonzero, again behind an empty asm).
 *  - Unused dimensions' vector slots point at a real vector (class 0) so that every slot
 *    holds a valid pointer on every path; the dims mask decides which are ANDed.
 *  - The lowest set bit is found with a de Bruijn multiply and a 64-byte table (so the
 *    object has a .rodata map, pipeline.rodata, that libbpf creates and freezes): clang
 *    14 has no BPF lowering for __builtin_ctzll (it crashes), and a binary search would
 *    branch and split states. The index loaded from the table is an unknown byte to the
 *    verifier, hence the & 63 before it addresses a word.
 *  - Indexes derived from data are masked (& 63, & 4095) before they address memory.
 *  - At TC the parse may meet headers beyond the skb's linear data: on TRUNCATED with
 *    more bytes in the skb, bpf_skb_pull_data() makes up to SL_TC_PULL_MAX bytes linear
 *    and the parse runs once more. TC writes to the packet go through
 *    bpf_skb_store_bytes() rather than direct stores, which would make the verifier
 *    unclone every cloned skb in the program's prologue.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "include/pipeline.h"
#include "include/parse.h"
#include "include/log2.h"

#define SL_HOOK_XDP 0
#define SL_HOOK_TC 1

#define SL_AF_INET 2
#define SL_AF_INET6 10

#define SL_NSEC_PER_SEC 1000000000ULL
/* The largest burst whose cap (burst * 1e9) fits in 63 bits. */
#define SL_BURST_MAX 9223372036ULL
/* Frame lengths above this are charged as this many bytes (cost must not overflow). */
#define SL_LEN_MAX (1ULL << 30)
/* Ethernet + 2 tags + IPv6 + 8 extension headers of 2048 bytes + 20 bytes of TCP. */
#define SL_TC_PULL_MAX (14 + 8 + 40 + 8 * 2048 + 20)
/* Summary bits the walk may visit per bpf_loop iteration. */
#define SL_SCAN_WORDS 4
/* Compare-and-swap attempts on a contended per-source bucket before dropping. */
#define SL_CAS_TRIES 4

/* Walk state: how the candidate walk ended. */
#define SL_WALK_RUN 0
#define SL_WALK_END 1 /* no candidate left */
#define SL_WALK_DECIDED 2 /* w.pos decides */
#define SL_WALK_FILTER 3 /* a filter candidate and the mask unknown: call the bank */
#define SL_WALK_STEP_LIMIT 4 /* SL_MAX_STEPS tried and another candidate left */

/* The memo: slots per CPU (a power of two), and the key's words: the stamp and ten 16-bit
 * classes (class < SL_MAX_CLASSES = 8192). */
#define SL_MEMO_SLOTS 4096
#define SL_MEMO_WORDS 3
/* COUNT rules a memoized outcome may carry (counted again on every hit) */
#define SL_MEMO_COUNTS 4

/* sl_walk_io.first, stashed in sl_stash.first for resume_* */
#define SL_FIRST (1U << 0)
#define SL_FIRST_ALONE (1U << 1)

/* ---- maps ---- */

/* Set membership of IPv4 addresses as ranges per /16 (pipeline.h, "IPv4 set membership"):
 * shared by every attachment (pinned); written by the set store, read by SSET/DSET. The hash
 * maps are twice the keys they can hold: a replaced or deleted value still counts against
 * max_entries until it is freed, and a flush may replace every block at once. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u32);
} sl_set4_dir SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct sl_set4_small);
} sl_set4_sm SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct sl_set4_big);
} sl_set4_bg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct sl_set4_dense);
} sl_set4_dn SEC(".maps");

/* Set membership of IPv6 addresses as ranges per /32 (pipeline.h, "IPv6 set membership"),
 * shared and written as the IPv4 maps; twice what they hold, for the same reason. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * 1048576);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct sl_set6_node);
} sl_set6_dir SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sl_set6_bkey);
	__type(value, struct sl_set6_big);
} sl_set6_bg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct sl_set6_dense);
} sl_set6_dn SEC(".maps");

/* The IPv6 prefixes of /32 and shorter, by their first 32 bits: value u64 mask. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1048576);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sl_set6_short_key);
	__type(value, __u64);
} sl_set6_short SEC(".maps");

/* Every IPv6 prefix of every set: key prefix, value u64 mask of the sets holding it. What a
 * /32 too dense for pages is looked up in, and what a restarted process reads back. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1048576);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sl_set6_key);
	__type(value, __u64);
} sl_set6 SEC(".maps");

/* SRC/DST classes of IPv4 prefixes: key {gen, dim, prefix}, value u32 class. A /0 entry
 * exists per gen and dim. Written by the loader, read by the SRC and DST dimensions. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 2 * 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sl_pfx4_key);
	__type(value, __u32);
} sl_pfx4 SEC(".maps");

/* The /16s sl_pfx4's prefixes reach: key gen * 2 + dim (SRC 0, DST 1), value struct
 * sl_pfx4_cover. Written by the loader with the generation, read before sl_pfx4. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct sl_pfx4_cover);
} sl_pfx4_cover SEC(".maps");

/* The same for IPv6. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 2 * 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sl_pfx6_key);
	__type(value, __u32);
} sl_pfx6 SEC(".maps");

/* SSET/DSET classes: key {gen, dim, set mask}, value u32 class; no entry: absent.
 * Written by the loader, read by the SSET and DSET dimensions. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * 4096);
	__type(key, struct sl_setcls_key);
	__type(value, __u32);
} sl_setcls SEC(".maps");

/* The same for a mask of one set, the common case, as an array: an inlined load where
 * sl_setcls is a hash lookup (a call and a hash, some 20 ns). Key (gen * 2 + dim -
 * SL_DIM_SSET) * SL_MAX_SETS + the set's bit, value class + 1; 0 (never written): ask
 * sl_setcls. Written with sl_setcls by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * 2 * SL_MAX_SETS);
	__type(key, __u32);
	__type(value, __u32);
} sl_setcls1 SEC(".maps");

/* Rule-position bit vectors: key gen * SL_MAX_CLASSES + class, value struct sl_vec.
 * Written by the loader, read by the classifier. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * SL_MAX_CLASSES);
	__type(key, __u32);
	__type(value, struct sl_vec);
} sl_vecs SEC(".maps");

/* Rules: key gen * SL_MAX_RULES + position, value struct sl_rule. Loader -> walk. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * SL_MAX_RULES);
	__type(key, __u32);
	__type(value, struct sl_rule);
} sl_rules SEC(".maps");

/* PROTO classes: key gen * 512 + protocol (256: not IP), value u32 class. Loader -> PROTO. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * SL_PROTO_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} sl_proto SEC(".maps");

/* SPORT/DPORT classes: key (gen * 2 + (dim == DPORT)) * 65536 + port, value u32 class.
 * Loader -> SPORT, DPORT. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4 * 65536);
	__type(key, __u32);
	__type(value, __u32);
} sl_ports SEC(".maps");

/* ICMP classes: key (gen * 2 + is_icmpv6) * 65536 + type * 256 + code, value u32 class.
 * Loader -> ICMP. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4 * 65536);
	__type(key, __u32);
	__type(value, __u32);
} sl_icmp SEC(".maps");

/* VLAN classes: key gen * 4352 + outer VID (4096: untagged), value u32 class. Loader -> VLAN. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * SL_VLAN_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} sl_vlan SEC(".maps");

/* FLAGS classes: key gen * 512 + TCP flags byte (256: not TCP), value u32 class.
 * Loader -> FLAGS. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * SL_FLAGS_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} sl_flags SEC(".maps");

/* Generation configuration: key gen, value struct sl_gen_cfg. Loader -> program. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct sl_gen_cfg);
} sl_gen SEC(".maps");

/* The active generation: key 0, value struct sl_ctl. Loader (the flip) -> program. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sl_ctl);
} sl_ctl SEC(".maps");

/* Redirect targets: key rule.redirect, value u32 ifindex. Loader -> XDP forward.
 * (Devmaps and prog arrays take no BTF key/value types, hence the sizes.) */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, SL_MAX_REDIRECTS);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} sl_tx SEC(".maps");

/* Tail-call targets: SL_PROG_BANK0/1 (filter banks), SL_PROG_RESUME (resume_* of this
 * object). Written by the loader, read by bpf_tail_call in pipeline_* and the banks. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, SL_PROG_SLOTS);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} sl_progs SEC(".maps");

/* Rate limits: key limiter, value struct sl_limiter. Loader -> RATELIMIT. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SL_MAX_LIMITERS);
	__type(key, __u32);
	__type(value, struct sl_limiter);
} sl_limiters SEC(".maps");

/* Per-limiter token buckets: key limiter, value struct sl_bucket (spin-locked).
 * Program -> program; the loader zeroes a bucket when its limiter changes. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SL_MAX_LIMITERS);
	__type(key, __u32);
	__type(value, struct sl_bucket);
} sl_buckets SEC(".maps");

/* Per-source token buckets: key struct sl_src_key, value struct sl_src_bucket (lock-free:
 * an LRU hash cannot hold a bpf_spin_lock). Program -> program. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct sl_src_key);
	__type(value, struct sl_src_bucket);
} sl_src_buckets SEC(".maps");

/* Filter bank result per CPU: key 0, value struct sl_scratch. Bank -> resume_*. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sl_scratch);
} sl_scratch SEC(".maps");

/* The stamp of each generation: key gen, value u32, a new one each time the loader writes that
 * generation (before it flips sl_ctl). Loader -> the memo's keys. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} sl_stamp SEC(".maps");

/*
 * The memo (header, item 2): the walk's outcome by the packet's class in every dimension, under
 * the generation's stamp. Per CPU, direct-mapped: a slot holds the last tuple hashed to it.
 * Private to this file, like sl_stash: user space only pins it.
 */
struct sl_memo_slot {
	__u64 key[SL_MEMO_WORDS]; /* the stamp, then each dimension's class (SL_MEMO_WORD) */
	__u32 state; /* SL_WALK_END or SL_WALK_DECIDED; 0: empty */
	__u32 pos; /* with SL_WALK_DECIDED */
	__u16 count[SL_MEMO_COUNTS]; /* positions of the COUNT rules the walk counted */
	__u32 ncount;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SL_MEMO_SLOTS);
	__type(key, __u32);
	__type(value, struct sl_memo_slot);
} sl_memo SEC(".maps");

/*
 * What pipeline_* found before it tail-called the filter bank, so that resume_* need not
 * parse and classify again: the parse and, when the walk stopped at the lowest candidate, that
 * candidate. Private to this file (user space and the bank never read it); sl_scratch keeps
 * the bank's 16 bytes.
 */
struct sl_stash {
	struct sl_pkt pkt;
	__u32 valid; /* 1 from pipeline_*'s tail call until resume_* takes it */
	__u32 first; /* SL_FIRST, SL_FIRST_ALONE (sl_walk_io.first) */
	__u32 first_pos; /* with SL_FIRST: the position of that candidate */
	__u32 pad;
	__u64 jiffies; /* sl_coarse_ns()'s cache: coarse_ns was read at this jiffy */
	__u64 coarse_ns;
};

/* Per CPU: key 0, value struct sl_stash. pipeline_* -> resume_*. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sl_stash);
} sl_stash SEC(".maps");

/* Packets and bytes per verdict: key enum sl_verdict. Program -> user space. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SL_VERDICTS);
	__type(key, __u32);
	__type(value, struct sl_counter);
} sl_dev_stats SEC(".maps");

/* Per-rule hits: key sl_rule.stats, value struct sl_rule_counter. Program -> user space. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SL_MAX_RULES);
	__type(key, __u32);
	__type(value, struct sl_rule_counter);
} sl_rule_stats SEC(".maps");

/* Per-limiter outcomes: key limiter, value struct sl_limiter_counter. Program -> user space. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SL_MAX_LIMITERS);
	__type(key, __u32);
	__type(value, struct sl_limiter_counter);
} sl_limit_stats SEC(".maps");

/* Unusual paths: key enum sl_event, value u64 count. Program -> user space. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SL_EVENTS);
	__type(key, __u32);
	__type(value, __u64);
} sl_events SEC(".maps");

/* Frame sizes: key floor(log2(length)) (at most 31), value u64 count. Program -> user space. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SL_HIST_BUCKETS);
	__type(key, __u32);
	__type(value, __u64);
} sl_hist SEC(".maps");

/* ---- the context: XDP or TC, a constant in every expansion ---- */

static __always_inline void *sl_ctx_data(void *ctx, const int hook)
{
	if (hook == SL_HOOK_TC)
		return (void *)(long)((struct __sk_buff *)ctx)->data;
	return (void *)(long)((struct xdp_md *)ctx)->data;
}

static __always_inline void *sl_ctx_data_end(void *ctx, const int hook)
{
	if (hook == SL_HOOK_TC)
		return (void *)(long)((struct __sk_buff *)ctx)->data_end;
	return (void *)(long)((struct xdp_md *)ctx)->data_end;
}

/* The frame length counted in bytes: the linear frame at XDP, the whole skb at TC. */
static __always_inline __u64 sl_ctx_len(void *ctx, const int hook)
{
	if (hook == SL_HOOK_TC)
		return ((struct __sk_buff *)ctx)->len;
	return sl_ctx_data_end(ctx, hook) - sl_ctx_data(ctx, hook);
}

/* The device the packet came in on (TC egress: the device itself for local traffic). */
static __always_inline __u32 sl_ctx_ingress_ifindex(void *ctx, const int hook)
{
	if (hook == SL_HOOK_TC) {
		struct __sk_buff *skb = ctx;

		return skb->ingress_ifindex ? skb->ingress_ifindex : skb->ifindex;
	}
	return ((struct xdp_md *)ctx)->ingress_ifindex;
}

/* The return code of a PASS or DROP verdict. */
static __always_inline int sl_ctx_verdict(__u32 verdict, const int hook)
{
	if (hook == SL_HOOK_TC)
		return verdict == SL_VERDICT_DROP ? TC_ACT_SHOT : TC_ACT_OK;
	return verdict == SL_VERDICT_DROP ? XDP_DROP : XDP_PASS;
}

/* ---- parsing: inlined at XDP, a global function at TC (see the header) ---- */

__noinline int sl_parse_tc(struct __sk_buff *skb, struct sl_pkt *pkt)
{
	if (!pkt)
		return -1;
	return sl_parse((void *)(long)skb->data, (void *)(long)skb->data_end, skb->vlan_present,
			skb->vlan_tci, pkt);
}

/*
 * Parses the frame into *pkt (zeroed here). At TC, a frame that looks truncated but has
 * more bytes outside the linear data is pulled (up to SL_TC_PULL_MAX) and parsed again.
 * At XDP the parse is inlined (header, "Code shaped by the verifier").
 */
static __always_inline int sl_ctx_parse(void *ctx, const int hook, struct sl_pkt *pkt)
{
	int rc;

	__builtin_memset(pkt, 0, sizeof(*pkt));
	if (hook == SL_HOOK_XDP) {
		struct xdp_md *xdp = ctx;

		return sl_parse((void *)(long)xdp->data, (void *)(long)xdp->data_end, 0, 0, pkt);
	}
	rc = sl_parse_tc(ctx, pkt);
	if (rc < 0 && pkt->status == SL_PARSE_TRUNCATED) {
		struct __sk_buff *skb = ctx;
		__u32 len = skb->len;
		__u32 linear = skb->data_end - skb->data;

		if (linear < len) {
			if (len > SL_TC_PULL_MAX)
				len = SL_TC_PULL_MAX;
			if (len > linear && !bpf_skb_pull_data(skb, len)) {
				__builtin_memset(pkt, 0, sizeof(*pkt));
				rc = sl_parse_tc(ctx, pkt);
			}
		}
	}
	return rc;
}

/* ---- counters ---- */

static __always_inline void sl_event(__u32 event)
{
	__u64 *n = bpf_map_lookup_elem(&sl_events, &event);

	if (n)
		*n += 1;
}

/*
 * bpf_ktime_get_coarse_ns(), called at most once per jiffy per CPU: the coarse clock moves
 * only on a tick, and bpf_jiffies64() is a load (the verifier inlines it) where the clock is
 * a helper call. The value can lag one tick where the tick bumps jiffies before the clock.
 */
static __always_inline __u64 sl_coarse_ns(void)
{
	__u32 zero = 0;
	struct sl_stash *st = bpf_map_lookup_elem(&sl_stash, &zero);
	__u64 now = bpf_jiffies64();

	if (!st)
		return bpf_ktime_get_coarse_ns();
	if (st->jiffies != now) {
		st->coarse_ns = bpf_ktime_get_coarse_ns();
		st->jiffies = now;
	}
	return st->coarse_ns;
}

static __always_inline void sl_count_rule(__u32 stats, __u64 len)
{
	struct sl_rule_counter *c = bpf_map_lookup_elem(&sl_rule_stats, &stats);

	if (c) {
		c->packets++;
		c->bytes += len;
		/* the coarse clock (CLOCK_MONOTONIC at jiffy resolution) costs a load; the
		 * precise one costs 10-50 ns a call, more than the rest of a hit */
		c->last_ns = sl_coarse_ns();
	}
}

static __always_inline void sl_count_packet(__u32 verdict, __u64 len)
{
	struct sl_counter *c = bpf_map_lookup_elem(&sl_dev_stats, &verdict);
	__u32 bucket = sl_log2(len);
	__u64 *h;

	if (c) {
		c->packets++;
		c->bytes += len;
	}
	h = bpf_map_lookup_elem(&sl_hist, &bucket);
	if (h)
		*h += 1;
}

/* ---- classification ---- */

/* De Bruijn table of sl_ctz: bit index by ((lowest bit * 0x03f79d71b4cb0a89) >> 58). */
static const __u8 sl_debruijn[64] = {
	0,  1,  48, 2,  57, 49, 28, 3,  61, 58, 50, 42, 38, 29, 17, 4,
	62, 55, 59, 36, 53, 51, 43, 22, 45, 39, 33, 30, 24, 18, 12, 5,
	63, 47, 56, 27, 60, 41, 37, 16, 54, 35, 52, 21, 44, 32, 23, 11,
	46, 26, 40, 15, 34, 20, 31, 10, 25, 14, 19, 9,  13, 8,  7,  6,
};

/* Index of the lowest set bit of x (x != 0; 0 gives 0). */
static __always_inline __u32 sl_ctz(__u64 x)
{
	return sl_debruijn[((x & -x) * 0x03f79d71b4cb0a89ULL) >> 58];
}

/*
 * All ones when x != 0, else 0, without a branch. The empty asm hides the bit from clang,
 * which would otherwise turn the arithmetic back into a compare and a branch.
 */
static __always_inline __u64 sl_nonzero(__u64 x)
{
	__u64 bit = (x | -x) >> 63;

	asm volatile("" : "+r"(bit));
	return -bit;
}

/* Summary bits of the words holding positions below nrules. */
static __always_inline __u64 sl_positions_summary(__u64 nrules)
{
	__u64 words = (nrules + 63) / 64;

	if (words >= 64)
		return ~0ULL;
	return (1ULL << words) - 1;
}

struct sl_walk {
	const struct sl_vec *vec[SL_DIMS]; /* per dimension; unused ones point at class 0 */
	__u64 summary; /* word indexes not visited yet */
	/* candidates left in the current word; until the walk starts, sl_vectors's AND of word 0
	 * over the used dimensions (nrules aside) */
	__u64 word;
	__u64 fmask; /* filter mask, when known */
	/* narrow fields: the three frames live at once must fit the 512-byte stack, and they
	 * fill it (clang 14: pipeline_tc 216 bytes, sl_classify 248 plus the 24 bpf_loop's
	 * inlining adds, the callback 12; each rounded up to 16) */
	__u32 len; /* frame length, for COUNT rules (skb->len is a u32 too) */
	__u32 tail_word; /* nrules / 64: the word nrules cuts (none if past 63) */
	__u16 base; /* position of bit 0 of word */
	__u16 dims;
	__u16 pos; /* the deciding position, with SL_WALK_DECIDED */
	__u16 counts[SL_MEMO_COUNTS]; /* positions of the COUNT rules counted */
	__u8 tail_bits; /* nrules % 64: the positions of word tail_word below nrules */
	__u8 gen;
	__u8 steps; /* candidates tried (at most SL_MAX_STEPS) */
	__u8 state; /* SL_WALK_* */
	__u8 known; /* fmask is valid */
	__u8 counting; /* COUNT rules are counted (resume_*: from the first filter candidate) */
	__u8 alone; /* sl_first_decides: the filter candidate it stopped at is the only one */
	__u8 taint; /* the walk tried a filter rule, or counted too many: not memoized */
	__u8 ncount; /* COUNT rules counted, in counts (at most SL_MEMO_COUNTS) */
	__u64 memo[SL_MEMO_WORDS]; /* the memo key: the stamp, then each dimension's class */
};

/*
 * What sl_classify() takes and gives: scalars only, since the caller sees a global
 * function's writes as unknown scalars. The caller zeroes it and sets the inputs.
 */
struct sl_walk_io {
	__u64 fmask; /* in: the filter mask, when known */
	__u64 len; /* in: frame length, for COUNT rules */
	__u32 gen; /* in */
	__u32 known; /* in: fmask is valid */
	__u32 counting; /* in: count COUNT rules from the first candidate (else from the first
			 * filter candidate: a replay of a walk that counted them already) */
	__u32 steps; /* in: 0 (read by the global function, so unknown to the verifier) */
	__u32 state; /* out: SL_WALK_* (SL_WALK_RUN: the loop ran out, as END) */
	__u32 pos; /* out: the deciding position, with SL_WALK_DECIDED; with SL_WALK_FILTER and
		    * first, the filter candidate's */
	__u32 first; /* out: SL_FIRST (SL_WALK_FILTER at the lowest candidate, before any
		      * step), SL_FIRST_ALONE (and no other candidate) */
	__u32 pad;
};

/* word w's positions below nrules: all but in the word nrules cuts. Branch-free. */
static __always_inline __u64 sl_tail(const struct sl_walk *s, __u32 w)
{
	return ((1ULL << (s->tail_bits & 63)) - 1) | sl_nonzero(w ^ s->tail_word);
}

/*
 * The AND of word w over the used dimensions' vectors, within nrules. The empty asm makes
 * clang test dims afresh in each unrolled copy: a test hoisted out of the copies would be
 * repeated on one register whose bits the verifier then knows, and a branch it can
 * decide splits its states.
 */
static __always_inline __u64 sl_word(const struct sl_walk *s, __u32 w)
{
	__u64 x = sl_tail(s, w);
	__u32 dims = s->dims;

	asm volatile("" : "+r"(dims));
#pragma unroll
	for (int d = 0; d < SL_DIMS; d++)
		if (dims & (1U << d))
			x &= s->vec[d]->words[w];
	return x;
}

/*
 * One step of the walk: move to the next word if the current one is exhausted, then try
 * its lowest candidate. Returns 1 (stop) when the walk ends or decides, 0 to go on.
 */
static __always_inline long sl_walk_once(struct sl_walk *s)
{
	const struct sl_rule *rule;
	__u32 pos, key;

	if (!s->word) {
		/* up to SL_SCAN_WORDS summary bits per iteration: words whose AND is empty are
		 * the common case of a packet no rule matches, and an iteration costs a call */
		__u64 summary = s->summary, word = 0;
		__u32 w = 0;

#pragma unroll
		for (int k = 0; k < SL_SCAN_WORDS; k++) {
			if (word || !summary)
				break;
			w = sl_ctz(summary) & (SL_WORDS - 1);
			summary &= summary - 1;
			word = sl_word(s, w);
		}
		s->summary = summary;
		if (!word) {
			if (summary)
				return 0;
			s->state = SL_WALK_END;
			return 1;
		}
		s->word = word;
		s->base = w * 64;
	}
	if (s->steps >= SL_MAX_STEPS) {
		s->state = SL_WALK_STEP_LIMIT;
		return 1;
	}
	pos = (s->base + sl_ctz(s->word)) & (SL_MAX_RULES - 1);
	key = s->gen * SL_MAX_RULES + pos;
	rule = bpf_map_lookup_elem(&sl_rules, &key);
	if (rule && (rule->flags & SL_RULE_FILTER) && !s->known) {
		/* the bank runs first; this candidate is tried again after it (or skipped) */
		s->state = SL_WALK_FILTER;
		return 1;
	}
	s->word &= s->word - 1;
	s->steps++;
	if (!rule || (rule->flags & SL_RULE_FILTER))
		s->taint = 1;
	if (!rule)
		return 0;
	if (rule->flags & SL_RULE_FILTER) {
		s->counting = 1;
		if (!((s->fmask >> (rule->filter & 63)) & 1))
			return 0;
	}
	if (rule->action != SL_ACT_COUNT) {
		s->pos = pos;
		s->state = SL_WALK_DECIDED;
		return 1;
	}
	if (s->counting)
		sl_count_rule(rule->stats, s->len);
	/* a memo hit counts them again; a walk that counts more is not memoized */
	if (s->ncount < SL_MEMO_COUNTS)
		s->counts[s->ncount++ & (SL_MEMO_COUNTS - 1)] = pos;
	else
		s->taint = 1;
	return 0;
}

/* The bpf_loop callback: one step per iteration. */
static long sl_walk_step(__u64 index, void *arg)
{
	return sl_walk_once(arg);
}

/*
 * The common case without bpf_loop, whose first iteration costs about as much as the rest
 * of a hit: the lowest candidate of the first word decides by itself (not COUNT, no
 * filter). Then the walk ends here (SL_WALK_DECIDED, s->pos) and 1 is returned; otherwise
 * *s is left untouched (0), so the full walk starts from the same state and the verifier
 * checks its callback against the same caller states as without this shortcut.
 */
static __always_inline int sl_first_decides(struct sl_walk *s)
{
	__u32 w = sl_ctz(s->summary) & (SL_WORDS - 1), pos, key;
	const struct sl_rule *rule;
	__u64 word;

	/* word 0 (every rule set of up to 64 rules) was ANDed by sl_vectors, on the cache
	 * lines it read anyway */
	if (s->summary & 1)
		word = s->word & sl_tail(s, 0);
	else
		word = sl_word(s, w);

	if (!word)
		return 0;
	pos = (w * 64 + sl_ctz(word)) & (SL_MAX_RULES - 1);
	key = s->gen * SL_MAX_RULES + pos;
	rule = bpf_map_lookup_elem(&sl_rules, &key);
	if (!rule || rule->action == SL_ACT_COUNT)
		return 0;
	if (rule->flags & SL_RULE_FILTER) {
		if (!s->known) {
			/* the walk would stop here too, before any step; alone: no other
			 * candidate, so a miss ends the walk */
			s->pos = pos;
			s->alone = !(word & (word - 1)) && !(s->summary & (s->summary - 1));
			s->state = SL_WALK_FILTER;
			return 1;
		}
		if (!((s->fmask >> (rule->filter & 63)) & 1)) {
			/* a miss that leaves no candidate ends the walk as it would (one step
			 * of SL_MAX_STEPS); any other candidate: the full walk from the start */
			if ((word & (word - 1)) || (s->summary & (s->summary - 1)))
				return 0;
			s->state = SL_WALK_END;
			return 1;
		}
	}
	s->pos = pos;
	s->state = SL_WALK_DECIDED;
	return 1;
}

static __always_inline const struct sl_vec *sl_vec_of(__u32 gen, __u32 cls)
{
	__u32 key = gen * SL_MAX_CLASSES + cls;

	if (cls >= SL_MAX_CLASSES)
		return 0;
	return bpf_map_lookup_elem(&sl_vecs, &key);
}

static __always_inline __u32 sl_array_class(void *map, __u32 index, __u32 absent)
{
	__u32 *cls = bpf_map_lookup_elem(map, &index);

	return cls ? *cls : absent;
}

/*
 * SRC / DST, IPv4: longest prefix of {gen, dim, address}, where sl_pfx4_cover says a prefix
 * other than the /0 may hold the address; elsewhere (sl_pfx4_class) the /0's class, without
 * walking the trie (most traffic is outside the few /16s that rules name). The trie lookup is
 * a call of its own, so that its key is not in sl_classify's frame; the cover test is
 * inlined, so that most addresses cost no call. `a` is the address as it lies in the packet,
 * loaded into a u32.
 */
static __noinline __u32 sl_pfx4_trie_class(__u32 gen, __u32 dim, __u32 a, __u32 absent)
{
	struct sl_pfx4_key key;
	__u32 *cls;

	__builtin_memset(&key, 0, sizeof(key));
	key.prefixlen = 16 + 32;
	key.gen = gen;
	key.dim = dim;
	__builtin_memcpy(key.addr, &a, 4);
	cls = bpf_map_lookup_elem(&sl_pfx4, &key);
	return cls ? *cls : absent;
}

static __always_inline __u32 sl_pfx4_class(__u32 gen, __u32 dim, const __u8 *addr, __u32 absent)
{
	__u32 hi = (__u32)addr[0] << 8 | addr[1], slot = (gen & 1) * 2 + (dim & 1), a;
	const struct sl_pfx4_cover *cover = bpf_map_lookup_elem(&sl_pfx4_cover, &slot);

	if (cover && cover->valid &&
	    !((cover->bits[(hi >> 6) & (SL_PFX4_COVER_WORDS - 1)] >> (hi & 63)) & 1))
		return cover->zero_cls;
	__builtin_memcpy(&a, addr, 4);
	return sl_pfx4_trie_class(gen, dim, a, absent);
}

static __always_inline __u32 sl_pfx6_class(__u32 gen, __u32 dim, const __u8 *addr, __u32 absent)
{
	struct sl_pfx6_key key;
	__u32 *cls;

	__builtin_memset(&key, 0, sizeof(key));
	key.prefixlen = 16 + 128;
	key.gen = gen;
	key.dim = dim;
	__builtin_memcpy(key.addr, addr, 16);
	cls = bpf_map_lookup_elem(&sl_pfx6, &key);
	return cls ? *cls : absent;
}

/* SSET / DSET: {gen, dim, mask of the sets holding the address} -> class. */
static __always_inline __u32 sl_setcls_class(__u32 gen, __u32 dim, __u64 mask, __u32 absent)
{
	struct sl_setcls_key key;
	__u32 *cls;

	if (!mask)
		return absent;
	if (!(mask & (mask - 1))) {
		__u32 one = ((gen & 1) * 2 + ((dim - SL_DIM_SSET) & 1)) * SL_MAX_SETS +
			    (sl_ctz(mask) & (SL_MAX_SETS - 1));

		cls = bpf_map_lookup_elem(&sl_setcls1, &one);
		if (cls && *cls)
			return *cls - 1;
	}
	__builtin_memset(&key, 0, sizeof(key));
	key.gen = gen;
	key.dim = dim;
	key.mask = mask;
	cls = bpf_map_lookup_elem(&sl_setcls, &key);
	return cls ? *cls : absent;
}

/*
 * The mask of the last range of a block (n entries, a power of two, constant once inlined)
 * starting at or before off: a search of fixed probes, the padding repeating the last range.
 */
static __always_inline __u32 sl_range_mask(const __u64 *e, const __u32 n, __u32 off)
{
	__u32 pos = 0;

#pragma unroll
	for (__u32 step = n / 2; step; step >>= 1)
		if ((__u32)(e[(pos + step) & (n - 1)] >> 32) <= off)
			pos += step;
	return (__u32)e[pos & (n - 1)];
}

/* The page of a dense /16 holding off: the last whose first start is at or before it. */
static __always_inline __u32 sl_dense_page(const struct sl_set4_dense *d, __u32 off)
{
	__u32 pos = 0;

#pragma unroll
	for (__u32 step = SL_SET4_PAGES / 2; step; step >>= 1)
		if (d->first[(pos + step) & (SL_SET4_PAGES - 1)] <= off)
			pos += step;
	return pos < d->pages ? pos : (__u32)d->pages - 1;
}

/* The mask of the sets holding IPv4 address a (host order; pipeline.h, "IPv4 set
 * membership"). Inlined: its one stack key fits sl_classify's frame beside the walk, and a
 * call would cost more than the rest of a small /16's lookup. */
static __always_inline __u32 sl_set4_mask(__u32 a)
{
	__u32 hi = a >> 16, off = a & 0xffff;
	const struct sl_set4_small *sb;
	const struct sl_set4_big *bb;
	const struct sl_set4_dense *d;
	__u32 key = hi, *kind;

	kind = bpf_map_lookup_elem(&sl_set4_dir, &key);
	if (!kind)
		return 0;
	switch (*kind) {
	case SL_SET4_SMALL:
		sb = bpf_map_lookup_elem(&sl_set4_sm, &key);
		return sb ? sl_range_mask(sb->e, SL_SET4_SMALL_N, off) : 0;
	case SL_SET4_BIG:
		bb = bpf_map_lookup_elem(&sl_set4_bg, &key);
		return bb ? sl_range_mask(bb->e, SL_SET4_BIG_N, off) : 0;
	case SL_SET4_DENSE:
		d = bpf_map_lookup_elem(&sl_set4_dn, &key);
		if (!d)
			return 0;
		key = SL_SET4_PAGE | (__u32)(d->bank & 1) << SL_SET4_BANK_SHIFT | hi << 8 |
		      (sl_dense_page(d, off) & (SL_SET4_PAGES - 1));
		bb = bpf_map_lookup_elem(&sl_set4_bg, &key);
		return bb ? sl_range_mask(bb->e, SL_SET4_BIG_N, off) : 0;
	default:
		return 0;
	}
}

static __always_inline __u32 sl_set4_class(__u32 gen, __u32 dim, const __u8 *addr, __u32 absent)
{
	__u32 a = ((__u32)addr[0] << 24) | ((__u32)addr[1] << 16) | ((__u32)addr[2] << 8) | addr[3];

	return sl_setcls_class(gen, dim, sl_set4_mask(a), absent);
}

/* sl_range_mask for IPv6 ranges: the last entry starting at or before (hi, lo). */
static __always_inline __u32 sl_range6_mask(const struct sl_set6_entry *e, const __u32 n, __u64 hi,
					    __u32 lo)
{
	const struct sl_set6_entry *p;
	__u32 pos = 0;

#pragma unroll
	for (__u32 step = n / 2; step; step >>= 1) {
		p = &e[(pos + step) & (n - 1)];
		if (p->hi < hi || (p->hi == hi && p->lo <= lo))
			pos += step;
	}
	return e[pos & (n - 1)].mask;
}

/* The page of a dense /32 holding (hi, lo): the last whose first start is at or before it. */
static __always_inline __u32 sl_dense6_page(const struct sl_set6_dense *d, __u64 hi, __u32 lo)
{
	const struct sl_set6_entry *p;
	__u32 pos = 0;

#pragma unroll
	for (__u32 step = SL_SET6_PAGES / 2; step; step >>= 1) {
		p = &d->first[(pos + step) & (SL_SET6_PAGES - 1)];
		if (p->hi < hi || (p->hi == hi && p->lo <= lo))
			pos += step;
	}
	return pos < d->pages ? pos : (__u32)d->pages - 1;
}

/* The mask of the sets holding the IPv6 address top:hi:lo (host order; pipeline.h, "IPv6 set
 * membership"). A call of its own, as sl_set4_mask. */
static __noinline __u32 sl_set6_mask(__u32 top, __u64 hi, __u32 lo)
{
	const struct sl_set6_node *node;
	const struct sl_set6_dense *d;
	const struct sl_set6_big *bb;
	struct sl_set6_bkey bkey = { .top = top };
	__u32 key = top;
	__u64 *mask;

	node = bpf_map_lookup_elem(&sl_set6_dir, &key);
	if (!node) {
		struct sl_set6_short_key skey = { .prefixlen = 32 };

		key = bpf_htonl(top);
		__builtin_memcpy(skey.addr, &key, 4);
		mask = bpf_map_lookup_elem(&sl_set6_short, &skey);
		return mask ? (__u32)*mask : 0;
	}
	switch (node->kind) {
	case SL_SET6_SMALL:
		return sl_range6_mask(node->e, SL_SET6_SMALL_N, hi, lo);
	case SL_SET6_BIG:
		bb = bpf_map_lookup_elem(&sl_set6_bg, &bkey);
		return bb ? sl_range6_mask(bb->e, SL_SET6_BIG_N, hi, lo) : 0;
	case SL_SET6_DENSE:
		d = bpf_map_lookup_elem(&sl_set6_dn, &key);
		if (!d)
			return 0;
		bkey.sub = SL_SET6_PAGE | (__u32)(d->bank & 1) << SL_SET6_BANK_SHIFT |
			   (sl_dense6_page(d, hi, lo) & (SL_SET6_PAGES - 1));
		bb = bpf_map_lookup_elem(&sl_set6_bg, &bkey);
		return bb ? sl_range6_mask(bb->e, SL_SET6_BIG_N, hi, lo) : 0;
	case SL_SET6_TRIE: {
		struct sl_set6_key tkey = { .prefixlen = 128 };
		__u64 h = bpf_cpu_to_be64(hi);
		__u32 t = bpf_htonl(top), l = bpf_htonl(lo);

		__builtin_memcpy(tkey.addr, &t, 4);
		__builtin_memcpy(tkey.addr + 4, &h, 8);
		__builtin_memcpy(tkey.addr + 12, &l, 4);
		mask = bpf_map_lookup_elem(&sl_set6, &tkey);
		return mask ? (__u32)*mask : 0;
	}
	default:
		return 0;
	}
}

static __always_inline __u32 sl_set6_class(__u32 gen, __u32 dim, const __u8 *addr, __u32 absent)
{
	__u32 top, lo;
	__u64 hi;

	__builtin_memcpy(&top, addr, 4);
	__builtin_memcpy(&hi, addr + 4, 8);
	__builtin_memcpy(&lo, addr + 12, 4);
	return sl_setcls_class(gen, dim,
			       sl_set6_mask(bpf_ntohl(top), bpf_be64_to_cpu(hi), bpf_ntohl(lo)),
			       absent);
}

/* The class in a flat per-generation array at base + slot, or absent. */
static __always_inline __u32 sl_slot_class(void *map, __u32 base, __u32 slot, __u32 absent)
{
	if (slot == SL_SLOT_ABSENT)
		return absent;
	return sl_array_class(map, base + slot, absent);
}

/*
 * X(dim, class) for each array dimension, in order (sl_classes and sl_fast), with the
 * expression of the packet's class in it; uses gen, pkt and cfg from the caller.
 */
#define SL_EACH_ARRAY_DIM(X)                                                                \
	X(SL_DIM_PROTO, sl_slot_class(&sl_proto, gen * SL_PROTO_SLOTS, pkt->proto_slot,     \
				      cfg->absent[SL_DIM_PROTO]));                          \
	X(SL_DIM_SPORT, sl_slot_class(&sl_ports, (gen * 2) * 65536, pkt->sport_slot,        \
				      cfg->absent[SL_DIM_SPORT]));                          \
	X(SL_DIM_DPORT, sl_slot_class(&sl_ports, (gen * 2 + 1) * 65536, pkt->dport_slot,    \
				      cfg->absent[SL_DIM_DPORT]));                          \
	X(SL_DIM_ICMP, sl_slot_class(&sl_icmp, (gen * 2) * 65536, pkt->icmp_slot,           \
				     cfg->absent[SL_DIM_ICMP]));                            \
	X(SL_DIM_VLAN, sl_slot_class(&sl_vlan, gen * SL_VLAN_SLOTS, pkt->vid,               \
				     cfg->absent[SL_DIM_VLAN]));                            \
	X(SL_DIM_FLAGS, sl_slot_class(&sl_flags, gen * SL_FLAGS_SLOTS, pkt->flags_slot,     \
				      cfg->absent[SL_DIM_FLAGS]))

/* Where dimension d's class sits in the memo key: 16 bits each after the 32-bit stamp. */
#define SL_MEMO_WORD(d) (((d) + 2) / 4)
#define SL_MEMO_SHIFT(d) (16 * (((d) + 2) % 4))

/*
 * Looks up the packet's class in every used dimension into the memo key (memo, whose
 * first word the caller set to the stamp); an unused dimension's stays 0. Returns 0, or -1
 * when a class is out of range (no vector: the walk would find no candidate). Each packet
 * field is tested once (see struct sl_pkt's slots); the family once for all four address
 * dimensions.
 */
static __always_inline int sl_classes(__u32 gen, __u32 dims, __u64 *memo,
				      const struct sl_gen_cfg *cfg, const struct sl_pkt *pkt)
{
	__u32 cls;

/* Dimension d's class from `expr`, when the generation uses d. */
#define SL_CLASS(d, expr)                                                                  \
	do {                                                                               \
		if (dims & (1U << (d))) {                                                  \
			cls = (expr);                                                      \
			if (cls >= SL_MAX_CLASSES)                                         \
				return -1;                                                 \
			memo[SL_MEMO_WORD(d)] |= (__u64)cls << SL_MEMO_SHIFT(d);           \
		}                                                                          \
	} while (0)

	SL_EACH_ARRAY_DIM(SL_CLASS);
/* The four address dimensions through one family's prefix and set lookups. */
#define SL_ADDR_CLASSES(pfx_class, set_class)                                              \
	do {                                                                               \
		SL_CLASS(SL_DIM_SRC, pfx_class(gen, SL_DIM_SRC, pkt->saddr,                \
					       cfg->absent[SL_DIM_SRC]));                  \
		SL_CLASS(SL_DIM_DST, pfx_class(gen, SL_DIM_DST, pkt->daddr,                \
					       cfg->absent[SL_DIM_DST]));                  \
		SL_CLASS(SL_DIM_SSET, set_class(gen, SL_DIM_SSET, pkt->saddr,              \
						cfg->absent[SL_DIM_SSET]));                \
		SL_CLASS(SL_DIM_DSET, set_class(gen, SL_DIM_DSET, pkt->daddr,              \
						cfg->absent[SL_DIM_DSET]));                \
	} while (0)

	if (pkt->family == 4) {
		SL_ADDR_CLASSES(sl_pfx4_class, sl_set4_class);
	} else if (pkt->family == 6) {
		SL_ADDR_CLASSES(sl_pfx6_class, sl_set6_class);
	} else {
		SL_CLASS(SL_DIM_SRC, cfg->absent[SL_DIM_SRC]);
		SL_CLASS(SL_DIM_DST, cfg->absent[SL_DIM_DST]);
		SL_CLASS(SL_DIM_SSET, cfg->absent[SL_DIM_SSET]);
		SL_CLASS(SL_DIM_DSET, cfg->absent[SL_DIM_DSET]);
	}
#undef SL_ADDR_CLASSES
#undef SL_CLASS
	return 0;
}

/*
 * The vectors of the classes in the memo key into w->vec (an unused dimension's: class 0,
 * never ANDed), and w->word the AND of their word 0. Returns the AND of their summaries
 * (and of the positions below nrules); 0: no candidate.
 */
static __always_inline __u64 sl_vectors(struct sl_walk *w, const struct sl_gen_cfg *cfg)
{
	__u32 gen = w->gen, dims = w->dims;
	const struct sl_vec *any = sl_vec_of(gen, 0), *v;
	__u64 summary = sl_positions_summary(cfg->nrules), word0 = ~0ULL;

	if (!any)
		return 0;
#pragma unroll
	for (int d = 0; d < SL_DIMS; d++) {
		w->vec[d] = any;
		if (dims & (1U << d)) {
			v = sl_vec_of(gen, (w->memo[SL_MEMO_WORD(d)] >> SL_MEMO_SHIFT(d)) & 0xffff);
			if (!v)
				return 0;
			w->vec[d] = v;
			summary &= v->summary;
			word0 &= v->words[0];
		}
	}
	w->word = word0;
	return summary;
}

/* Candidates sl_fast tries (COUNT rules, then the one that settles the walk). */
#define SL_FAST_STEPS 4

/* Counts the COUNT rule at the lowest position in seen, if any; returns the rest. */
static __always_inline __u64 sl_fast_count(__u32 gen, __u64 seen, __u64 len)
{
	__u32 key = gen * SL_MAX_RULES + (sl_ctz(seen) & 63);
	const struct sl_rule *rule;

	if (!seen)
		return 0;
	rule = bpf_map_lookup_elem(&sl_rules, &key);
	if (rule)
		sl_count_rule(rule->stats, len);
	return seen & (seen - 1);
}

/* The dimensions whose lookup is an array index (inlined by the verifier). */
#define SL_ARRAY_DIMS                                                                      \
	((1U << SL_DIM_PROTO) | (1U << SL_DIM_SPORT) | (1U << SL_DIM_DPORT) |             \
	 (1U << SL_DIM_ICMP) | (1U << SL_DIM_VLAN) | (1U << SL_DIM_FLAGS))

/*
 * The common case without sl_classify() (a global function call, its state set up, and all
 * ten dimensions gathered): at most 64 rules, array dimensions only, and the lowest
 * candidate settles the walk at its first step as sl_first_decides() would: it decides
 * (not COUNT; a filter whose bit of a known mask is set), it is a filter rule and the
 * mask unknown (SL_WALK_FILTER, with io->first), it is a filter miss with no other
 * candidate (SL_WALK_END), or there is no candidate (SL_WALK_END). Word 0 is then the only
 * word, so the summaries are not needed. Anything else leaves io->state SL_WALK_RUN for
 * sl_classify(). Inlined into sl_run: its branches are few (one per array dimension) and
 * on unknown scalars, so they add few verifier states.
 */
static __always_inline void sl_fast(const struct sl_gen_cfg *cfg, __u32 gen,
				    const struct sl_pkt *pkt, struct sl_walk_io *io)
{
	__u32 dims = cfg->dims, nrules = cfg->nrules, p, key;
	const struct sl_rule *rule;
	const struct sl_vec *v;
	__u64 word, seen = 0;

	if ((dims & ~SL_ARRAY_DIMS) || nrules > 64)
		return;
	word = nrules == 64 ? ~0ULL : (1ULL << (nrules & 63)) - 1;

#define SL_FAST_DIM(d, expr)                             \
	do {                                             \
		if (dims & (1U << (d))) {                \
			v = sl_vec_of(gen, (expr));      \
			if (!v)                          \
				return;                  \
			word &= v->words[0];             \
		}                                        \
	} while (0)

	SL_EACH_ARRAY_DIM(SL_FAST_DIM);
#undef SL_FAST_DIM

	/* COUNT candidates before the first other one are passed over (seen) and counted
	 * only once sl_fast settles the walk: when it leaves the walk to sl_classify, that
	 * walk counts them */
#pragma unroll
	for (int i = 0; i < SL_FAST_STEPS; i++) {
		if (!word) {
			io->state = SL_WALK_END;
			goto settled;
		}
		p = sl_ctz(word) & 63;
		key = gen * SL_MAX_RULES + p;
		rule = bpf_map_lookup_elem(&sl_rules, &key);
		if (!rule)
			return;
		if (rule->action == SL_ACT_COUNT && !(rule->flags & SL_RULE_FILTER)) {
			seen |= word & -word;
			word &= word - 1;
			continue;
		}
		word &= word - 1;
		if (rule->flags & SL_RULE_FILTER) {
			/* word 0 is the only word: alone when no bit is left after this one */
			if (rule->action == SL_ACT_COUNT)
				return;
			if (!io->known) {
				io->pos = p;
				if (!i)
					io->first = SL_FIRST | (word ? 0 : SL_FIRST_ALONE);
				io->state = SL_WALK_FILTER;
				goto settled;
			}
			if (!((io->fmask >> (rule->filter & 63)) & 1)) {
				if (word)
					return;
				io->state = SL_WALK_END;
				goto settled;
			}
		}
		io->pos = p;
		io->state = SL_WALK_DECIDED;
		goto settled;
	}
	return;
settled:
	if (!io->counting)
		return;
	/* the COUNT rules passed over: at most SL_FAST_STEPS - 1 bits (written out: clang
	 * would not unroll a loop here) */
	_Static_assert(SL_FAST_STEPS == 4, "sl_fast counts up to 3 passed-over rules");
	seen = sl_fast_count(gen, seen, io->len);
	seen = sl_fast_count(gen, seen, io->len);
	sl_fast_count(gen, seen, io->len);
}

/* The memo slot of a key: a multiplicative hash of its three words. */
static __always_inline struct sl_memo_slot *sl_memo_slot_of(const __u64 *key)
{
	__u64 h = (key[0] * 0x9e3779b97f4a7c15ULL) ^ key[1];
	__u32 index;

	h = (h * 0xc2b2ae3d27d4eb4fULL) ^ key[2];
	index = (h * 0x165667b19e3779f9ULL) >> 52 & (SL_MEMO_SLOTS - 1);
	return bpf_map_lookup_elem(&sl_memo, &index);
}

/* The slot takes the outcome of walk w. Per CPU, and a program never runs nested in itself on
 * one CPU, so no reader sees the slot half written. */
static __always_inline void sl_memo_store(struct sl_memo_slot *slot, const struct sl_walk *w)
{
	slot->key[0] = w->memo[0];
	slot->key[1] = w->memo[1];
	slot->key[2] = w->memo[2];
	slot->pos = w->pos;
	slot->ncount = w->ncount;
#pragma unroll
	for (int i = 0; i < SL_MEMO_COUNTS; i++)
		slot->count[i] = w->counts[i];
	slot->state = w->state;
}

/* A hit: the COUNT rules the walk counted are counted for this packet too. */
static __always_inline void sl_memo_count(const struct sl_memo_slot *slot, __u32 gen, __u64 len)
{
	const struct sl_rule *rule;
	__u32 n = slot->ncount, key;

#pragma unroll
	for (int i = 0; i < SL_MEMO_COUNTS; i++) {
		if (i < n) {
			key = gen * SL_MAX_RULES + (slot->count[i] & (SL_MAX_RULES - 1));
			rule = bpf_map_lookup_elem(&sl_rules, &key);
			if (rule)
				sl_count_rule(rule->stats, len);
		}
	}
}

/* Whether slot holds an outcome for key. */
static __always_inline int sl_memo_holds(const struct sl_memo_slot *slot, const __u64 *key)
{
	return slot && slot->state && slot->key[0] == key[0] && slot->key[1] == key[1] &&
	       slot->key[2] == key[2];
}

/*
 * On a hit, the outcome the memo holds for the packet's class tuple, into io->state and io->pos
 * (and the COUNT rules the walk counted, counted again when io->counting). A miss, or a class
 * out of range, leaves io as it was: sl_classify then finds the same. memo: the key's room
 * (zeroed by the caller).
 */
static __always_inline void sl_memo_probe(struct sl_walk_io *io, __u64 *memo,
					  const struct sl_gen_cfg *cfg, const struct sl_pkt *pkt)
{
	__u32 gen = io->gen & 1, *stamp = bpf_map_lookup_elem(&sl_stamp, &gen);
	struct sl_memo_slot *slot;

	if (!stamp)
		return;
	memo[0] = *stamp;
	if (sl_classes(gen, cfg->dims & ((1U << SL_DIMS) - 1), memo, cfg, pkt) < 0)
		return;
	/* a memoized walk tried no filter rule, so the filter mask, known or not, does not
	 * change its outcome */
	slot = sl_memo_slot_of(memo);
	if (!sl_memo_holds(slot, memo))
		return;
	if (io->counting)
		sl_memo_count(slot, gen, io->len);
	io->state = slot->state;
	io->pos = slot->pos;
}

/*
 * Classification (header, items 2-4) as a global function: the verifier checks it once,
 * apart from the caller's paths, and its own paths reach bpf_loop() with few distinct
 * states. Returns 0; the outcome is in io->state and io->pos.
 */
__noinline int sl_classify(struct sl_walk_io *io, const struct sl_pkt *pkt)
{
	struct sl_memo_slot *slot = 0;
	const struct sl_gen_cfg *cfg;
	struct sl_walk w;
	__u32 gen, *stamp;

	if (!io || !pkt)
		return 0;
	gen = io->gen & 1;
	cfg = bpf_map_lookup_elem(&sl_gen, &gen);
	stamp = bpf_map_lookup_elem(&sl_stamp, &gen);
	if (!cfg || !stamp) {
		io->state = SL_WALK_END;
		return 0;
	}
	/* every field but vec (sl_vectors's) is set here: no memset of the whole struct */
	w.word = 0;
	w.base = 0;
	w.pos = 0;
	w.state = SL_WALK_RUN;
	w.alone = 0;
	w.gen = gen;
	w.dims = cfg->dims & ((1U << SL_DIMS) - 1);
	/* nrules is not clamped (a clamp would give the verifier a constant path): a
	 * tail_word past 63 matches no word */
	w.tail_word = cfg->nrules / 64;
	w.tail_bits = cfg->nrules & 63;
	w.len = io->len;
	w.fmask = io->fmask;
	w.known = io->known;
	w.counting = io->counting;
	/* 0, but not a constant the verifier knows: a known 0 would make it check the
	 * callback once per step count */
	w.steps = io->steps;
	w.taint = 0;
	w.ncount = 0;
	w.memo[0] = *stamp;
	w.memo[1] = 0;
	w.memo[2] = 0;
	if (sl_classes(gen, w.dims, w.memo, cfg, pkt) < 0) {
		io->state = SL_WALK_END;
		return 0;
	}
	/* a memoized walk tried no filter rule, so the filter mask, known or not, does not
	 * change its outcome (sl_memo_probe, inlined by hand: through it the frame would
	 * grow past the 512 bytes the three live frames share) */
	slot = sl_memo_slot_of(w.memo);
	if (sl_memo_holds(slot, w.memo)) {
		if (w.counting)
			sl_memo_count(slot, gen, w.len);
		io->state = slot->state;
		io->pos = slot->pos;
		return 0;
	}
	w.summary = sl_vectors(&w, cfg);
	if (!w.summary)
		w.state = SL_WALK_END;
	else if (!sl_first_decides(&w)) {
		w.word = 0;
		bpf_loop(SL_WORDS + SL_MAX_STEPS, sl_walk_step, &w, 0);
	} else
		io->first = SL_FIRST | (w.alone ? SL_FIRST_ALONE : 0);
	io->state = w.state;
	io->pos = w.pos;
	/* the slot is found again rather than kept: a pointer live across bpf_loop would
	 * take a stack slot */
	if (!w.taint && (w.state == SL_WALK_END || w.state == SL_WALK_DECIDED)) {
		slot = sl_memo_slot_of(w.memo);
		if (slot)
			sl_memo_store(slot, &w);
	}
	return 0;
}

/* ---- rate limiting ---- */

/*
 * tokens + elapsed * rate, capped at cap, without overflow: the product is only formed
 * when it is known to be at most 2^62 or at most the room left in the bucket.
 */
static __always_inline __u64 sl_refill(__u64 tokens, __u64 elapsed, __u64 rate, __u64 cap)
{
	__u64 room;

	if (tokens >= cap)
		return cap;
	room = cap - tokens;
	if (!elapsed || !rate)
		return tokens;
	if ((elapsed | rate) >> 31) {
		/* elapsed * rate may overflow: compare with the room first (rarely taken: only
		 * for rates of 2^31 units per second or gaps over 2 seconds) */
		if (elapsed > room / rate)
			return cap;
	} else if (elapsed * rate >= room) {
		return cap;
	}
	return tokens + elapsed * rate;
}

/*
 * Token bucket of limiter `id` for this packet: 1 within the limit, 0 over it. Not
 * inlined, like sl_forward_*, so that its stack is not part of sl_run's frame, which is
 * live during sl_classify() and its callback: the three together must stay within 512.
 */
static __noinline int sl_limit(__u32 id, const struct sl_pkt *pkt, __u64 len)
{
	struct sl_limiter *lim = bpf_map_lookup_elem(&sl_limiters, &id);
	struct sl_limiter_counter *stats;
	__u64 rate, burst, cap, cost, now;
	int pass = 1;

	if (!lim)
		return 1; /* no such limiter: nothing to enforce */
	rate = lim->rate;
	burst = lim->burst < SL_BURST_MAX ? lim->burst : SL_BURST_MAX;
	cap = burst * SL_NSEC_PER_SEC;
	if (len > SL_LEN_MAX)
		len = SL_LEN_MAX;
	cost = (lim->flags & SL_LIMIT_BITS ? len * 8 : 1) * SL_NSEC_PER_SEC;

	if (lim->flags & SL_LIMIT_PER_SOURCE) {
		struct sl_src_key key;
		struct sl_src_bucket *b;
		__u64 prev, tokens, elapsed;

		__builtin_memset(&key, 0, sizeof(key));
		key.limiter = id;
		key.family = pkt->family;
		__builtin_memcpy(key.addr, pkt->saddr, 16);
		now = bpf_ktime_get_ns();
		b = bpf_map_lookup_elem(&sl_src_buckets, &key);
		if (!b) {
			/* a new source starts full; if another CPU inserts it first, that
			 * bucket is used (BPF_NOEXIST) */
			struct sl_src_bucket fresh = { .tokens = cap, .last_ns = now };

			bpf_map_update_elem(&sl_src_buckets, &key, &fresh, BPF_NOEXIST);
			b = bpf_map_lookup_elem(&sl_src_buckets, &key);
		}
		if (!b)
			goto out; /* cannot track the source: let it through */
		/* Each CPU takes the time since the previous packet (xchg), so refills from
		 * concurrent CPUs cover disjoint intervals; then a cmpxchg loop applies refill
		 * and cost to the tokens. last_ns == 0 (zeroed by user space): full. */
		prev = __sync_lock_test_and_set(&b->last_ns, now);
		elapsed = prev && now > prev ? now - prev : 0;
		tokens = b->tokens;
		pass = 0;
#pragma unroll
		for (int i = 0; i < SL_CAS_TRIES; i++) {
			__u64 next = prev ? sl_refill(tokens, elapsed, rate, cap) : cap;
			__u64 seen;
			int ok = next >= cost;

			if (ok)
				next -= cost;
			seen = __sync_val_compare_and_swap(&b->tokens, tokens, next);
			if (seen == tokens) {
				pass = ok;
				break;
			}
			tokens = seen;
		}
	} else {
		struct sl_bucket *b = bpf_map_lookup_elem(&sl_buckets, &id);
		__u64 tokens;

		if (!b)
			goto out;
		now = bpf_ktime_get_ns();
		bpf_spin_lock(&b->lock);
		if (!b->last_ns)
			tokens = cap;
		else
			tokens = sl_refill(b->tokens, now > b->last_ns ? now - b->last_ns : 0, rate,
					   cap);
		pass = tokens >= cost;
		if (pass)
			tokens -= cost;
		b->tokens = tokens;
		if (now > b->last_ns)
			b->last_ns = now;
		bpf_spin_unlock(&b->lock);
	}
out:
	stats = bpf_map_lookup_elem(&sl_limit_stats, &id);
	if (stats) {
		if (pass)
			stats->passed++;
		else
			stats->dropped++;
	}
	if (!pass)
		sl_event(SL_EV_RATELIMITED);
	return pass;
}

/* ---- forwarding ---- */

static __always_inline int sl_mac_is_zero(const __u8 *mac)
{
	return !(mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]);
}

/*
 * Rewrites the MACs (smac may be 0: keep the source MAC) and decrements the TTL or hop
 * limit. Returns 0, or -1 when the headers are no longer where the parse found them.
 */
static __always_inline int sl_rewrite(void *ctx, const int hook, const struct sl_pkt *pkt,
				      const __u8 *dmac, const __u8 *smac)
{
	void *data = sl_ctx_data(ctx, hook);
	void *end = sl_ctx_data_end(ctx, hook);
	__u32 off = pkt->l3_off;
	struct ethhdr *eth = data;

	/* l3_off comes out of the global parse as an unknown scalar: bound it (at most two
	 * tags) before it is added to a packet pointer */
	if (off > ETH_HLEN + 2 * sizeof(struct sl_vlan_hdr))
		return -1;
	if ((void *)(eth + 1) > end)
		return -1;

	if (pkt->family == 4) {
		struct iphdr *ip = data + off;
		__u32 check;

		if ((void *)(ip + 1) > end)
			return -1;
		/* RFC 1624 incremental update for TTL - 1, as the kernel's ip_decrease_ttl() */
		check = ip->check;
		check += bpf_htons(0x0100);
		check = (check + (check >= 0xffff)) & 0xffff;
		if (hook == SL_HOOK_XDP) {
			ip->check = check;
			ip->ttl--;
		} else {
			/* ttl, protocol, check: bytes 8-11 */
			struct {
				__u8 ttl;
				__u8 protocol;
				__u16 check;
			} patch = { ip->ttl - 1, ip->protocol, check };

			if (bpf_skb_store_bytes(ctx, off + 8, &patch, sizeof(patch), 0))
				return -1;
		}
	} else {
		struct ipv6hdr *ip6 = data + off;

		if ((void *)(ip6 + 1) > end)
			return -1;
		if (hook == SL_HOOK_XDP) {
			ip6->hop_limit--;
		} else {
			__u8 hop_limit = ip6->hop_limit - 1;

			if (bpf_skb_store_bytes(ctx, off + 7, &hop_limit, 1, 0))
				return -1;
		}
	}

	if (hook == SL_HOOK_XDP) {
		/* the stores above did not move the data: eth is still valid */
		__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
		if (smac)
			__builtin_memcpy(eth->h_source, smac, ETH_ALEN);
	} else {
		__u8 macs[2 * ETH_ALEN];

		__builtin_memcpy(macs, dmac, ETH_ALEN);
		if (smac)
			__builtin_memcpy(macs + ETH_ALEN, smac, ETH_ALEN);
		if (bpf_skb_store_bytes(ctx, 0, macs, smac ? 2 * ETH_ALEN : ETH_ALEN, 0))
			return -1;
	}
	return 0;
}

/* REDIRECT: the program's return code; *verdict says what happened (header, item 6). */
static __always_inline int sl_forward(void *ctx, const int hook, const struct sl_pkt *pkt,
				      const struct sl_rule *rule, __u32 *verdict)
{
	struct bpf_fib_lookup fib;
	const __u8 *dmac, *smac;
	long rc;
	int ret;

	if (pkt->family != 4 && pkt->family != 6)
		goto failed;
	if (pkt->ttl <= 1)
		goto stack;

	__builtin_memset(&fib, 0, sizeof(fib));
	fib.family = pkt->family == 4 ? SL_AF_INET : SL_AF_INET6;
	fib.l4_protocol = pkt->proto;
	if (pkt->l4 & SL_L4_PORTS) {
		fib.sport = bpf_htons(pkt->sport);
		fib.dport = bpf_htons(pkt->dport);
	}
	fib.tot_len = pkt->tot_len;
	fib.ifindex = sl_ctx_ingress_ifindex(ctx, hook);
	if (pkt->family == 4) {
		fib.tos = pkt->tos;
		__builtin_memcpy(&fib.ipv4_src, pkt->saddr, 4);
		__builtin_memcpy(&fib.ipv4_dst, pkt->daddr, 4);
	} else {
		fib.flowinfo = pkt->flowinfo;
		__builtin_memcpy(fib.ipv6_src, pkt->saddr, 16);
		__builtin_memcpy(fib.ipv6_dst, pkt->daddr, 16);
	}
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);

	if (!sl_mac_is_zero(rule->nexthop)) {
		dmac = rule->nexthop;
		smac = 0;
		if (rc == BPF_FIB_LKUP_RET_SUCCESS && fib.ifindex == rule->ifindex)
			smac = fib.smac;
	} else if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		if (fib.ifindex != rule->ifindex)
			goto failed;
		dmac = fib.dmac;
		smac = fib.smac;
	} else if (rc == BPF_FIB_LKUP_RET_NO_NEIGH || rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) {
		goto stack;
	} else {
		goto failed;
	}

	if (sl_rewrite(ctx, hook, pkt, dmac, smac))
		goto failed;
	if (hook == SL_HOOK_TC) {
		ret = bpf_redirect(rule->ifindex, 0);
		if (ret != TC_ACT_REDIRECT)
			goto failed;
	} else {
		/* the low bits of flags are the return code when sl_tx has no such slot */
		ret = bpf_redirect_map(&sl_tx, rule->redirect, XDP_DROP);
		if (ret != XDP_REDIRECT)
			goto failed;
	}
	*verdict = SL_VERDICT_REDIRECT;
	return ret;

stack:
	sl_event(SL_EV_FWD_TO_STACK);
	*verdict = SL_VERDICT_PASS;
	return sl_ctx_verdict(SL_VERDICT_PASS, hook);
failed:
	sl_event(SL_EV_FWD_FAILED);
	*verdict = SL_VERDICT_DROP;
	return sl_ctx_verdict(SL_VERDICT_DROP, hook);
}

static __noinline int sl_forward_xdp(struct xdp_md *ctx, const struct sl_pkt *pkt,
				     const struct sl_rule *rule, __u32 *verdict)
{
	return sl_forward(ctx, SL_HOOK_XDP, pkt, rule, verdict);
}

static __noinline int sl_forward_tc(struct __sk_buff *skb, const struct sl_pkt *pkt,
				    const struct sl_rule *rule, __u32 *verdict)
{
	return sl_forward(skb, SL_HOOK_TC, pkt, rule, verdict);
}

/* ---- the pipeline ---- */

static __always_inline __u32 sl_set_verdict(__u32 action)
{
	return action == SL_ACT_DROP ? SL_VERDICT_DROP : SL_VERDICT_PASS;
}

/*
 * resume_* after pipeline_* stopped at the lowest candidate, a filter rule (sl_stash.first):
 * the walk's outcome without walking again, or SL_WALK_RUN when it needs the walk. The rule
 * is looked up again, as the walk would, in case the rule set changed meanwhile.
 */
static __always_inline __u32 sl_first_filter(__u32 gen, __u32 first, __u32 pos, __u64 fmask)
{
	__u32 key = gen * SL_MAX_RULES + (pos & (SL_MAX_RULES - 1));
	const struct sl_rule *rule = bpf_map_lookup_elem(&sl_rules, &key);

	if (!(first & SL_FIRST) || !rule || rule->action == SL_ACT_COUNT ||
	    !(rule->flags & SL_RULE_FILTER))
		return SL_WALK_RUN;
	if ((fmask >> (rule->filter & 63)) & 1)
		return SL_WALK_DECIDED;
	return first & SL_FIRST_ALONE ? SL_WALK_END : SL_WALK_RUN;
}

static __always_inline int sl_run(void *ctx, const int hook, const int resume)
{
	__u64 len = sl_ctx_len(ctx, hook);
	struct sl_pkt stack_pkt __attribute__((aligned(8)));
	struct sl_stash *stash = 0;
	const struct sl_gen_cfg *cfg;
	const struct sl_rule *rule;
	struct sl_pkt *pkt = &stack_pkt;
	struct sl_walk_io io;
	struct sl_ctl *ctl;
	__u32 zero = 0, gen, verdict, key;
	int ret, stashed = 0;

	__builtin_memset(&io, 0, sizeof(io));
	ctl = bpf_map_lookup_elem(&sl_ctl, &zero);
	if (!ctl)
		return sl_ctx_verdict(SL_VERDICT_PASS, hook);
	gen = ctl->gen;
	io.counting = 1;
	if (resume) {
		struct sl_scratch *scratch = bpf_map_lookup_elem(&sl_scratch, &zero);

		stash = bpf_map_lookup_elem(&sl_stash, &zero);
		if (!stash) /* never: a per-CPU array always has key 0 */
			return sl_ctx_verdict(SL_VERDICT_PASS, hook);
		/* resume_* works on the parse pipeline_* stashed before the tail call (the
		 * packet is the same), or parses into the same place when there is none */
		pkt = &stash->pkt;
		if (scratch && scratch->done == 1) {
			gen = scratch->gen;
			io.fmask = scratch->fmask;
			scratch->done = 0;
			/* pipeline_* counted the COUNT rules before the first filter candidate */
			io.counting = 0;
			stashed = stash->valid == 1;
		} else {
			/* resume_* without the bank's result: no filter matches */
			sl_event(SL_EV_FILTER_MISSING);
		}
		io.known = 1;
		stash->valid = 0;
	}
	if (gen > 1)
		return sl_ctx_verdict(SL_VERDICT_PASS, hook); /* not configured: untouched */
	cfg = bpf_map_lookup_elem(&sl_gen, &gen);
	if (!cfg)
		return sl_ctx_verdict(SL_VERDICT_PASS, hook);
	if (!cfg->has_filters)
		io.known = 1; /* fmask 0: a filter rule without a bank never matches */

	if (!stashed && sl_ctx_parse(ctx, hook, pkt) < 0) {
		sl_event(pkt->status == SL_PARSE_MALFORMED ? SL_EV_MALFORMED : SL_EV_TRUNCATED);
		verdict = sl_set_verdict(cfg->malformed_action);
		ret = sl_ctx_verdict(verdict, hook);
		goto out;
	}

	io.gen = gen;
	io.len = len;
	if (stashed) {
		/* when the walk's first step decides or ends it, io.pos is that step's */
		io.pos = stash->first_pos;
		io.state = sl_first_filter(gen, stash->first, io.pos, io.fmask);
	}
	if (io.state == SL_WALK_RUN)
		sl_fast(cfg, gen, pkt, &io);
	/* At XDP the memo is asked here first, saving the call into sl_classify (6-9 ns) on a
	 * hit, the common case; a miss computes the classes again in there. Not at TC, whose
	 * frame has no room for the key, nor in resume_*, where the verifier would check this
	 * once per path through the stash and the filter bank's result (170,000 more
	 * instructions processed; pipeline_xdp takes 140,000 more, some 0.2-0.3 s of load). */
	if (hook == SL_HOOK_XDP && !resume && io.state == SL_WALK_RUN) {
		__u64 memo[SL_MEMO_WORDS] = {};

		sl_memo_probe(&io, memo, cfg, pkt);
	}
	if (io.state == SL_WALK_RUN)
		sl_classify(&io, pkt);
	if (!resume && io.state == SL_WALK_FILTER) {
		stash = bpf_map_lookup_elem(&sl_stash, &zero);
		if (stash) {
			__builtin_memcpy(&stash->pkt, pkt, sizeof(*pkt));
			stash->first = io.first;
			stash->first_pos = io.pos;
			stash->valid = 1;
		}
		/* a constant key per call site (bpf_tail_call_static: clang may not merge the
		 * two calls into one with a variable key) lets the JIT patch in a direct jump */
		if (gen)
			bpf_tail_call_static(ctx, &sl_progs, SL_PROG_BANK1);
		else
			bpf_tail_call_static(ctx, &sl_progs, SL_PROG_BANK0);
		/* no bank: every filter counts as not matching. The walk starts again and,
		 * like resume_*, counts COUNT rules only from the first filter candidate. */
		if (stash)
			stash->valid = 0;
		sl_event(SL_EV_FILTER_MISSING);
		io.known = 1;
		io.fmask = 0;
		io.counting = 0;
		io.steps = 0;
		io.state = SL_WALK_RUN;
		sl_classify(&io, pkt);
	}
	if (io.state != SL_WALK_DECIDED)
		goto no_decision;

	key = gen * SL_MAX_RULES + (io.pos & (SL_MAX_RULES - 1));
	rule = bpf_map_lookup_elem(&sl_rules, &key);
	if (!rule)
		goto no_decision;
	sl_count_rule(rule->stats, len);
	switch (rule->action) {
	case SL_ACT_DROP:
		verdict = SL_VERDICT_DROP;
		break;
	case SL_ACT_RATELIMIT:
		verdict = sl_limit(rule->limiter, pkt, len) ? SL_VERDICT_PASS : SL_VERDICT_DROP;
		break;
	case SL_ACT_REDIRECT:
		if (hook == SL_HOOK_TC)
			ret = sl_forward_tc(ctx, pkt, rule, &verdict);
		else
			ret = sl_forward_xdp(ctx, pkt, rule, &verdict);
		goto out;
	default:
		verdict = SL_VERDICT_PASS;
		break;
	}
	ret = sl_ctx_verdict(verdict, hook);
	goto out;

no_decision:
	sl_event(io.state == SL_WALK_STEP_LIMIT ? SL_EV_STEP_LIMIT : SL_EV_DEFAULT);
	verdict = sl_set_verdict(cfg->default_action);
	ret = sl_ctx_verdict(verdict, hook);
out:
	sl_count_packet(verdict, len);
	/* What the rules pass goes on to the load balancer when one is installed (lb_xdp at XDP,
	 * lb_nat_tc's reverse NAT at TC ingress; an empty slot falls through). The rules thus run
	 * in front of the VIPs, as a firewall in front of a balancer does. Only a plain pass: a
	 * redirect has its own verdict, and the packet is counted by the device as passed. */
	if (verdict == SL_VERDICT_PASS && ret == sl_ctx_verdict(SL_VERDICT_PASS, hook))
		bpf_tail_call_static(ctx, &sl_progs, SL_PROG_LB);
	return ret;
}

SEC("xdp")
int pipeline_xdp(struct xdp_md *ctx)
{
	return sl_run(ctx, SL_HOOK_XDP, 0);
}

SEC("xdp")
int resume_xdp(struct xdp_md *ctx)
{
	return sl_run(ctx, SL_HOOK_XDP, 1);
}

SEC("tc")
int pipeline_tc(struct __sk_buff *skb)
{
	return sl_run(skb, SL_HOOK_TC, 0);
}

SEC("tc")
int resume_tc(struct __sk_buff *skb)
{
	return sl_run(skb, SL_HOOK_TC, 1);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
