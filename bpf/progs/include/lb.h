/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The contract between the L4 load balancer's programs (lb.bpf.c: lb_xdp, lb_nat_tc;
 * lb_decap.bpf.c: lb_decap_xdp) and user space (controller/lb/lb-abi.ts mirrors every struct
 * and constant here byte for byte; change both together). Included by those two C files only.
 *
 * Byte order: fields typed __be* and every address are network order; everything else is
 * host order (little-endian on x86). Addresses are 16 bytes, IPv4 in the first 4, the rest
 * zero, with a family byte of 4 or 6 beside them; the keys of lb_services4/6, lb_flows4/6 and
 * lb_nat4/6 excepted (a map per family, IPv4 addresses 4 bytes there).
 *
 * Maps of lb.bpf.c (name: key -> value; writer -> reader):
 *   lb_services4   HASH  struct lb_svc4_key -> struct lb_svc: services of IPv4 VIPs;
 *   lb_services6   HASH  struct lb_svc6_key -> struct lb_svc: services of IPv6 VIPs; both
 *                  user space -> lb_xdp. A service matches (VIP, port, proto); port 0 matches
 *                  every port and is tried after the exact port. One map per family so that
 *                  an IPv4 key is 8 bytes, not 20 (the kernel hashes and compares it whole).
 *   lb_svc_devs    HASH  struct lb_svc_dev_key -> u8 (unused, 1): the devices a service with
 *                  LB_SVC_DEVICES applies on; user space (entries added before the flag is
 *                  set, removed after it is cleared) -> lb_xdp.
 *   lb_maglev      ARRAY_OF_MAPS  u32 service id -> inner ARRAY (flags BPF_F_INNER_MAP) of
 *                  u32 backend ids; the inner map's max_entries is the table size M (a prime
 *                  up to LB_MAGLEV_MAX), read by the program from the map itself, so one
 *                  outer-slot swap changes table and size together. User space -> lb_xdp.
 *   lb_maglev_d    ARRAY_OF_MAPS  u32 service id -> inner ARRAY of LB_MAGLEV_DEFAULT u32
 *                  backend ids, without BPF_F_INNER_MAP: a table of the default size, whose
 *                  lookup the verifier inlines (the one in lb_maglev is a call). A service's
 *                  table is in one of the two: lb_xdp asks lb_maglev_d first, so user space
 *                  moving a table between them writes the new slot before deleting the old.
 *                  User space -> lb_xdp.
 *   lb_backends    ARRAY  u32 backend id -> struct lb_backend; user space -> lb_xdp.
 *   lb_flows4      LRU_HASH  struct lb_flow4_key -> struct lb_flow: IPv4 flows (one LRU list
 *                  for all CPUs); lb_xdp -> lb_xdp, user space reads (dry runs) and may delete.
 *   lb_flows6      LRU_HASH  struct lb_flow6_key -> struct lb_flow: IPv6 flows, the same way.
 *                  One table per family so that an IPv4 key is 16 bytes, not an IPv6 one's 40:
 *                  the kernel hashes and compares the whole key on every lookup.
 *   lb_flows4_pc, lb_flows6_pc  the same with BPF_F_NO_COMMON_LRU (a free/LRU list per CPU):
 *                  used instead of lb_flows4/6 when lb_config.flags has LB_CFG_NO_COMMON_LRU.
 *                  The pair left unused is shrunk to one entry each by the loader.
 *   lb_nat4        LRU_HASH  struct lb_nat4_key -> struct lb_nat4: IPv4 reverse-NAT entries;
 *   lb_nat6        LRU_HASH  struct lb_nat6_key -> struct lb_nat6: IPv6 ones (a map per family,
 *                  as for flows: a 16-byte IPv4 key, not 40); both lb_xdp (NAT mode) ->
 *                  lb_nat_tc (reverse path), user space reads.
 *   lb_config      ARRAY[1]  struct lb_config; user space -> lb_xdp.
 *   lb_insert_tb   PERCPU_ARRAY[1]  struct lb_bucket: the per-CPU new-flow insert bucket;
 *                  lb_xdp -> lb_xdp (user space zeroes it: a zero bucket starts full).
 *   lb_svc_stats   PERCPU_ARRAY[LB_MAX_SERVICES]  struct lb_counter by service id;
 *   lb_be_stats    PERCPU_ARRAY[LB_MAX_BACKENDS]  struct lb_counter by backend id;
 *   lb_events      PERCPU_ARRAY[1]  struct lb_events: a u64 per enum lb_event, in one value
 *                  so that a packet looks its CPU's counters up once, whatever it counts;
 *   lb_fib_stats   PERCPU_ARRAY[LB_FIB_REASONS]  u64 by bpf_fib_lookup's return code
 *                  (BPF_FIB_LKUP_RET_*; 0 counts negative returns, i.e. bad arguments);
 *                  all four: programs -> user space, summed over CPUs.
 *   lb_now         PERCPU_ARRAY[1]  struct lb_now: lb_xdp's clock cache (lb.bpf.c, lb_clock);
 *                  programs only, not pinned.
 *   lb_progs       PROG_ARRAY[1]  LB_PROG_GENERAL -> lb_xdp_general, the general path lb_xdp
 *                  tail-calls (filled by libbpf at load from the object's own initializer,
 *                  pinned with the other maps, so an older lb_xdp behind the same pins reaches
 *                  the newest build's general path, which reads the same maps).
 *
 * Maps of lb_decap.bpf.c:
 *   lb_decap_dst   HASH  struct lb_addr_key -> u32 (unused, 0): the local addresses whose
 *                  IPIP and GUE packets are decapsulated; user space -> lb_decap_xdp.
 *   lb_decap_cfg   ARRAY[1]  struct lb_decap_cfg; user space -> lb_decap_xdp.
 *   lb_decap_stats PERCPU_ARRAY[LB_DX_EVENTS]  u64 by enum lb_decap_event; program -> user.
 */
#ifndef SLUICE_LB_H
#define SLUICE_LB_H

#include <linux/types.h>

#define LB_MAX_SERVICES 4096 /* service ids 0 .. 4095 */
#define LB_MAX_BACKENDS 65536 /* backend ids 0 .. 65535 */
#define LB_MAGLEV_MAX 1048573 /* the largest table size (a prime) */
#define LB_MAGLEV_DEFAULT 65537 /* the default table size: lb_maglev_d's inner arrays */
#define LB_FLOWS_DEFAULT 65536 /* entries of each flow table unless the loader sets them */
#define LB_NAT_DEFAULT 65536 /* entries of each NAT table unless the loader sets them */
#define LB_FIB_REASONS 16

/* lb_svc.hash_mode: which flow-key fields the backend hash covers */
#define LB_HASH_5TUPLE 0 /* all */
#define LB_HASH_SRC 1 /* src (dst, ports, proto zeroed) */
#define LB_HASH_SRC_PORT 2 /* src and sport (dst, dport, proto zeroed) */

/* lb_svc.fwd_mode */
#define LB_FWD_DSR 0 /* L2 direct server return: MACs rewritten */
#define LB_FWD_IPIP 1 /* IP-in-IP (IPv4 proto 4 / IPv6 next header 41) */
#define LB_FWD_NAT 2 /* destination address and port rewritten, reverse at lb_nat_tc */
#define LB_FWD_GUE 3 /* outer IP, UDP to LB_GUE_PORT, a 4-byte GUE variant 0 header */

/*
 * GUE (draft-ietf-intarea-gue, variant 0): the outer UDP destination port, the port Katran and
 * Linux's fou examples use. lb_xdp sends to it; lb_decap_xdp takes only UDP to it as GUE.
 */
#define LB_GUE_PORT 6080
/* The GUE header lb_xdp writes and lb_decap_xdp accepts (4 bytes): version 0, C 0, Hlen 0 in
 * the first byte (so the byte is 0), the inner protocol (4: IPv4, 41: IPv6), flags 0. */
struct lb_gue_hdr {
	__u8 vch; /* version (2 bits), C (1), Hlen (5): 0 */
	__u8 proto; /* 4 or 41 */
	__be16 flags; /* 0 */
};

/* lb_svc.flags */
#define LB_SVC_DEVICES (1U << 0) /* applies only on the devices lb_svc_devs lists for its id */

/* lb_backend.flags */
#define LB_BE_ACTIVE (1U << 0) /* the backend exists; cleared: removed, its flows re-select */
#define LB_BE_DOWN (1U << 1) /* failing health checks: a TCP SYN re-selects */
#define LB_BE_DRAINING (1U << 2) /* no table slot, keeps its flows (informational here) */

/* lb_flow.state */
#define LB_FLOW_CLOSING (1U << 0) /* FIN or RST seen: ages out after closing_timeout_s */

/* lb_config.flags */
#define LB_CFG_INSERT_CAP (1U << 0) /* cap flow-table inserts by insert_rate / insert_burst */
#define LB_CFG_NO_COMMON_LRU (1U << 1) /* the flow tables are lb_flows4_pc/6_pc, not 4/6 */
#define LB_CFG_SRC4 (1U << 2) /* src4/src4_len hold the IPIP/GUE outer IPv4 source prefix */
#define LB_CFG_SRC6 (1U << 3) /* src6/src6_len hold the IPIP/GUE outer IPv6 source prefix */

/* lb_decap_cfg.flags */
#define LB_DECAP_ANY (1U << 0) /* decapsulate whatever the outer destination */

/* lb_services4 key (8 bytes); port and proto where lb_svc6_key has them */
struct lb_svc4_key {
	__be16 port; /* 0: every port */
	__u8 proto; /* 6, 17 or 132 */
	__u8 pad; /* 0 */
	__be32 addr; /* the VIP */
};

/* lb_services6 key (20 bytes) */
struct lb_svc6_key {
	__be16 port; /* 0: every port */
	__u8 proto;
	__u8 pad; /* 0 */
	__u8 addr[16]; /* the VIP */
};

/* lb_services4 / lb_services6 value (20 bytes) */
struct lb_svc {
	__u32 id; /* < LB_MAX_SERVICES: lb_maglev slot, lb_svc_stats index, flow-key svc */
	__u32 seed; /* the flow hash's initval (plus the protocol) */
	__u8 hash_mode; /* LB_HASH_* */
	__u8 fwd_mode; /* LB_FWD_* */
	__u16 flags; /* LB_SVC_* */
	__u32 udp_timeout_s; /* non-TCP flows idle out after this; 0: never (LRU only) */
	__u32 tcp_timeout_s; /* TCP flows idle out after this; 0: never (LRU only) */
};

/* lb_svc_devs key (8 bytes) */
struct lb_svc_dev_key {
	__u32 svc; /* lb_svc.id */
	__u32 ifindex; /* the ingress device (xdp_md.ingress_ifindex) */
};

/* lb_backends value (20 bytes). The address of a live id never changes (ids are not reused
 * while flows may name them); removal clears flags, a one-byte store. */
struct lb_backend {
	__u8 addr[16];
	__be16 port; /* NAT: the destination port; 0: the VIP's port */
	__u8 family; /* 4 or 6 */
	__u8 flags; /* LB_BE_* */
};

/*
 * The flow-table keys, one per family: a flow (addresses and ports in network order, proto)
 * of service svc. The flow hash is Linux's jhash2 over the key's leading words as loaded
 * (little-endian): the addresses and the port word, 3 words for IPv4 (jhash_3words), 9 for
 * IPv6, with initval lb_svc.seed + proto (lb.bpf.c's header, step 3, and
 * controller/lb/flow-hash.ts).
 */

/* lb_flows4 / lb_flows4_pc key (16 bytes) */
struct lb_flow4_key {
	__be32 src;
	__be32 dst;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad; /* 0 */
	__u16 svc; /* lb_svc.id (< LB_MAX_SERVICES) */
};

/* lb_flows6 / lb_flows6_pc key (40 bytes) */
struct lb_flow6_key {
	__u8 src[16];
	__u8 dst[16];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad; /* 0 */
	__u16 svc; /* lb_svc.id */
};

/* lb_flows4/6(_pc) value (24 bytes) */
struct lb_flow {
	__u32 backend; /* backend id */
	__u32 hash; /* the flow hash that chose it (IPIP/GUE outer source and UDP port bits) */
	__u64 ts_ns; /* bpf_ktime_get_coarse_ns() when last refreshed (at most once a second),
		      * or when marked closing */
	__u32 state; /* LB_FLOW_* */
	__u32 pad;
};

/* lb_nat4 key (16 bytes): an IPv4 reply's source and destination, as lb_nat_tc sees them */
struct lb_nat4_key {
	__be32 backend;
	__be32 client;
	__be16 bport; /* the backend's port (the rewritten destination port) */
	__be16 cport; /* the client's port */
	__u8 proto;
	__u8 pad[3];
};

/* lb_nat4 value (12 bytes): what the reply's source becomes */
struct lb_nat4 {
	__be32 vip;
	__be16 vport;
	__u8 pad[2];
	__u32 svc; /* service id, for user space */
};

/* lb_nat6 key (40 bytes): the same for IPv6 */
struct lb_nat6_key {
	__u8 backend[16];
	__u8 client[16];
	__be16 bport;
	__be16 cport;
	__u8 proto;
	__u8 pad[3];
};

/* lb_nat6 value (24 bytes) */
struct lb_nat6 {
	__u8 vip[16];
	__be16 vport;
	__u8 pad[2];
	__u32 svc;
};

/* lb_config[0] (48 bytes) */
struct lb_config {
	__u64 insert_rate; /* new flow-table entries per second per CPU, with LB_CFG_INSERT_CAP */
	__u64 insert_burst; /* bucket depth in entries (0 with rate 0: never insert) */
	__u32 flags; /* LB_CFG_* */
	__u32 closing_timeout_s; /* a TCP entry marked closing ages out after this; 0: LRU only */
	__u8 src4[4]; /* IPIP/GUE outer IPv4 source prefix: the host bits come from the flow hash */
	__u8 src4_len; /* prefix length, 0 .. 32 */
	__u8 src6_len; /* prefix length, 0 .. 128 (at most the last 32 bits vary) */
	__u8 pad[2];
	__u8 src6[16];
};

/* lb_insert_tb[0], per CPU: tokens in units of 1e9 per entry; last_ns 0: never used (full) */
struct lb_bucket {
	__u64 tokens;
	__u64 last_ns;
};

/* lb_svc_stats, lb_be_stats */
struct lb_counter {
	__u64 packets;
	__u64 bytes; /* frame length as received */
	__u64 new_flows; /* flow-table entries created */
};

/* lb_events[0].n index */
enum lb_event {
	LB_EV_FLOW_HIT = 0, /* a flow-table entry chose the backend */
	LB_EV_FLOW_MISS = 1, /* no entry: Maglev chose */
	LB_EV_NON_SYN_MISS = 2, /* a TCP packet without SYN (or with SYN+ACK) selected by Maglev */
	LB_EV_INSERT_CAP = 3, /* a new flow over the insert cap: forwarded, not inserted */
	LB_EV_FLOW_STALE = 4, /* an entry whose backend is gone (or down, for a SYN) or that
			       * timed out: Maglev chose again and the entry was replaced */
	LB_EV_FRAGMENT = 5, /* a fragment forwarded by an all-ports service, statelessly */
	LB_EV_FRAGMENT_PASS = 6, /* a fragment of a VIP with no all-ports service: passed */
	LB_EV_NO_TABLE = 7, /* the service has no Maglev table: passed */
	LB_EV_NO_BACKEND = 8, /* the table names a backend that does not exist: passed */
	LB_EV_FAMILY = 9, /* DSR or NAT to a backend of the other family: passed */
	LB_EV_NO_SOURCE = 10, /* IPIP/GUE without an outer source prefix of the backend's family */
	LB_EV_FIB_FAIL = 11, /* bpf_fib_lookup failed: passed (reason in lb_fib_stats) */
	LB_EV_TX = 12, /* forwarded out of the ingress device (XDP_TX) */
	LB_EV_REDIRECT = 13, /* forwarded out of another device (bpf_redirect) */
	LB_EV_ENCAP_FAIL = 14, /* bpf_xdp_adjust_head refused the room for the outer header */
	LB_EV_NAT_REVERSE = 15, /* lb_nat_tc rewrote a reply's source */
	LB_EV_NAT_INSERT_FAIL = 16, /* the NAT entry could not be written: forwarded anyway */
	LB_EV_FLOW_CLOSING = 17, /* FIN or RST marked an entry closing */
	LB_EV_INSERT_FAIL = 18, /* the flow-table update failed: forwarded, not inserted */
	LB_EV_OTHER_DEVICE = 19, /* only services (LB_SVC_DEVICES) that do not apply on the ingress
				  * device matched: passed, not counted in lb_svc_stats */
	LB_EVENTS = 20,
};

/* lb_progs keys */
#define LB_PROG_GENERAL 0

/* lb_now[0], per CPU: the coarse clock read at a jiffy */
struct lb_now {
	__u64 jiffies;
	__u64 coarse_ns;
};

/* lb_events[0] (160 bytes), per CPU */
struct lb_events {
	__u64 n[LB_EVENTS];
};

/* lb_decap_dst key (20 bytes) */
struct lb_addr_key {
	__u8 family; /* 4 or 6 */
	__u8 pad[3];
	__u8 addr[16];
};

/* lb_decap_cfg[0] */
struct lb_decap_cfg {
	__u32 flags; /* LB_DECAP_* */
	__u32 pad;
};

/* lb_decap_stats index */
enum lb_decap_event {
	LB_DX_DECAPPED = 0, /* outer headers stripped (IPIP or GUE), inner packet passed up */
	LB_DX_NOT_LOCAL = 1, /* IPIP or GUE to an address not in lb_decap_dst: passed untouched */
	LB_DX_MALFORMED = 2, /* inner header cut short or of the wrong version, or a GUE header
			      * other than lb_gue_hdr's (version, C, Hlen or flags not 0, proto
			      * not 4 or 41): passed untouched */
	LB_DX_FRAGMENT = 3, /* a fragmented outer IPv4 packet: passed untouched */
	LB_DX_GUE_DECAPPED = 4, /* the GUE ones among LB_DX_DECAPPED (counted in both) */
	LB_DX_EVENTS = 5,
};

#endif
