// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sluice's L4 load balancer, kernel side: lb_xdp (SEC "xdp") balances packets sent to a VIP
 * over the backends of its service (by L2 DSR, IPIP, GUE or NAT), lb_nat_tc (SEC "tc", direct
 * action, ingress of the device facing the backends) turns NAT-mode replies back into packets
 * from the VIP. Both are standalone: attach lb_xdp to the device clients' traffic arrives on,
 * lb_nat_tc where the backends' replies arrive (the same device, for a one-armed balancer).
 * include/lb.h is the contract with user space (every map, struct and constant);
 * controller/lb/lb-maps.ts writes and reads the maps.
 *
 * Parsing: include/parse.h's rules, restated here (lb_parse) for the fields the balancer reads:
 * Ethernet (at most two VLAN tags, kept as received), IPv4 (options), IPv6 (at most
 * SL_IPV6_MAX_EXT hop-by-hop, routing, destination-options and fragment headers, noting
 * fragment headers), and the ports (and TCP flags) of TCP, UDP and SCTP, the only protocols
 * balanced. Traffic it cannot parse (truncated, malformed, not IP, other protocols) and traffic
 * to no service passes untouched and uncounted (XDP_PASS).
 *
 * Per packet (lb_xdp):
 *  1. Service: lb_services4 or lb_services6 (by family)[{dst port, proto, dst address}], then
 *     the same with port 0 (an all-ports service). A service with LB_SVC_DEVICES in its flags
 *     applies only on the devices lb_svc_devs lists for its id ({id, ingress ifindex}
 *     present): elsewhere it is skipped as if absent (so an all-ports service may still
 *     match). Miss: XDP_PASS untouched (LB_EV_OTHER_DEVICE when a service was skipped for the
 *     device, else uncounted). Counted in lb_svc_stats[id] (packets, bytes = frame length)
 *     whatever happens next.
 *  2. Fragments (IPv4 with MF set or a fragment offset; IPv6 with a fragment header that has
 *     M set or an offset) are all treated alike, first fragment included: they are looked up
 *     with port 0 only, hashed with both ports 0, and forwarded statelessly (no flow-table
 *     lookup or insert; LB_EV_FRAGMENT). Every piece of a datagram then takes the same
 *     service and backend, while the later pieces carry no ports. A fragment with no all-ports
 *     service passes untouched (a first fragment that would have matched an exact-port service
 *     counts LB_EV_FRAGMENT_PASS; its later pieces cannot be told apart from other traffic).
 *  3. Flow key, one per family (struct lb_flow4_key, lb_flow6_key): addresses, ports (network
 *     order), proto and the service id. The hash is Linux's jhash2 over the key's address and
 *     port words as loaded (little-endian): 3 for IPv4 (jhash_3words), 9 for IPv6, initval the
 *     service's seed plus proto, after the service's hash mode zeroed fields ('src': dst,
 *     ports, proto; 'src-port': dst, dport, proto). Maglev: slot = (hash * M) >> 32 (the u32
 *     hash scaled into [0, M) by a 64-bit multiply: as even as hash % M, without the
 *     division, which costs more than the rest of the pick), backend =
 *     lb_maglev_d[svc.id][slot] with M = LB_MAGLEV_DEFAULT when the service's table is there,
 *     else lb_maglev[svc.id][slot], M the inner map's max_entries (read through CO-RE from
 *     struct bpf_map; BPF_F_INNER_MAP lets the inner arrays differ in size, Linux >= 5.10,
 *     and costs a call per lookup, which lb_maglev_d's fixed size saves).
 *  4. Flow table of the family (lb_flows4 or lb_flows6; lb_flows4_pc or lb_flows6_pc with
 *     LB_CFG_NO_COMMON_LRU), key the flow key:
 *     - hit, backend still LB_BE_ACTIVE, not timed out, and not (a TCP SYN with the backend
 *       LB_BE_DOWN): that backend (LB_EV_FLOW_HIT). The timestamp is refreshed at most once a
 *       second (so an entry may idle out up to a second early). FIN or RST marks the entry
 *       LB_FLOW_CLOSING (timestamp set, no more refreshes): it then ages out after
 *       lb_config.closing_timeout_s; a later SYN on the same 5-tuple clears the mark.
 *       Timeouts: closing entries closing_timeout_s, TCP svc.tcp_timeout_s, others (UDP,
 *       SCTP) svc.udp_timeout_s; 0 means never (the LRU still evicts).
 *     - otherwise (LB_EV_FLOW_MISS, or LB_EV_FLOW_STALE for an unusable entry): Maglev chooses;
 *       a TCP packet that is not a bare SYN counts LB_EV_NON_SYN_MISS. The new entry is
 *       written if the per-CPU insert bucket (lb_insert_tb: insert_rate per second, depth
 *       insert_burst, with LB_CFG_INSERT_CAP) has a token, else LB_EV_INSERT_CAP and the
 *       packet is forwarded statelessly. lb_svc_stats / lb_be_stats new_flows count entries
 *       written.
 *     A table slot naming a backend that is not LB_BE_ACTIVE, or a service without a table,
 *     passes (LB_EV_NO_BACKEND, LB_EV_NO_TABLE).
 *  5. Forwarding, by svc.fwd_mode. The next hop always comes from bpf_fib_lookup (flags 0,
 *     the forwarding lookup: the ingress device must have forwarding enabled, else
 *     BPF_FIB_LKUP_RET_FWD_DISABLED) on the address the packet will be sent to; its MACs
 *     replace the frame's, VLAN tags stay as received, and the packet leaves by XDP_TX when
 *     the FIB's egress device is the ingress device (LB_EV_TX), else by bpf_redirect
 *     (LB_EV_REDIRECT). Any FIB failure (BPF_FIB_LKUP_RET_NO_NEIGH above all: the daemon's
 *     health checks resolve neighbours) counts LB_EV_FIB_FAIL and lb_fib_stats[reason], and
 *     the packet passes untouched: the FIB is asked before anything is written.
 *     - DSR: the frame otherwise unchanged (the backend holds the VIP). Same family only.
 *     - IPIP: an outer IPv4 (proto 4 for IPv4 inside, 41 for IPv6 inside) or IPv6 header
 *       (next header 41 or 4), by the backend's family, so the cross-family cases work too.
 *       Outer source: lb_config's prefix of the backend's family with its host bits (at most
 *       the low 32) from the flow hash, so the backend's RSS spreads flows; none configured:
 *       LB_EV_NO_SOURCE, passed. Outer IPv4: TOS copied from the inner TOS / traffic class, DF
 *       copied from an inner IPv4 header (set for inner IPv6), id 0, TTL 64, checksum
 *       computed. Outer IPv6: traffic class copied, flow label = the hash's low 20 bits, hop
 *       limit 64.
 *     - GUE (draft-ietf-intarea-gue, variant 0): IPIP's outer header (the same source, TOS,
 *       DF, flow label, next hop), protocol / next header 17, then
 *         UDP   source port 49152 + the flow hash's top 14 bits (LB_GUE_SPORT: the range
 *               49152-65535, so a backend's NIC RSS spreads flows), destination LB_GUE_PORT
 *               (6080), length 12 + the inner packet's, checksum 0 over IPv4 (RFC 768
 *               allows it), computed over IPv6 (pseudo-header and the whole datagram, by
 *               bpf_csum_diff; 0xffff for a result of 0): RFC 8200 wants one (a zero one only
 *               reaches receivers that opt in, RFC 6935/6936);
 *         GUE   4 bytes: 0 (version 0, C 0, Hlen 0), the inner protocol (4 or 41), flags 0;
 *       then the client's packet unchanged: 12 bytes more than IPIP, 32 or 52 in all. GUE over
 *       IPv6 of a packet whose IP length runs past the frame, or of a datagram longer than
 *       LB_CSUM_MAX, counts LB_EV_ENCAP_FAIL and passes untouched. lb_decap.bpf.c strips it;
 *       Linux's own GUE receiver (`ip fou add port 6080 gue`, a tunnel with `encap gue`)
 *       reads the same format. (Katran sends no GUE header: its UDP payload is the inner IP
 *       packet itself, GUE's variant 1.)
 *     - NAT: destination address and port (lb_backend.port, 0: keep the VIP's) rewritten,
 *       the IPv4 header checksum and the TCP/UDP checksum updated incrementally (RFC 1624,
 *       by hand: bpf_l3/l4_csum_replace are TC-only); an IPv4 UDP checksum of 0 stays 0 and a
 *       result of 0 is sent as 0xffff. SCTP: the address only (its CRC32c covers no
 *       address; a port rewrite would need the whole CRC recomputed, so the VIP's port is
 *       kept). Then lb_nat4 or lb_nat6 (by family)[{backend, client, ports, proto}] = {VIP,
 *       VIP port, svc} is written when missing or different, for every NAT packet (insert cap
 *       or not: a reply without it could not be turned back). Same family only. Fragments (of an
 *       all-ports service): every piece gets the new address (and IPv4 header checksum), the
 *       first also its L4 checksum and the reverse entry; no piece gets a new port, since
 *       the later ones carry none.
 *     TTL / hop limit are never decremented: the balancer is a hop the client's packet
 *     tunnels or is bridged through, not a router (Katran and IPVS-DR do the same).
 *     lb_be_stats[backend] counts each packet sent.
 *
 * lb_nat_tc: a reply parsed the same way (at TC, headers beyond the linear data are pulled
 * first) whose {source, destination, ports, proto} is in lb_nat4/6 gets its source
 * address and port turned back into the VIP's, checksums through bpf_l3_csum_replace /
 * bpf_l4_csum_replace (which also keep a CHECKSUM_COMPLETE skb->csum right), and
 * TC_ACT_OK; everything else passes untouched (TC_ACT_OK). Fragments are not rewritten.
 *
 * Counters: lb_events is one per-CPU value holding every event's count: lb_xdp looks it up once
 * per packet and hands the pointer (`ev`) to the functions that count. lb_svc_stats and
 * lb_be_stats are per-CPU arrays by id, one lookup each per packet. The counts every packet
 * makes (the service's and backend's, and the flow-table hit, miss or stale event) are written
 * after forwarding, last: a store in the middle of the path held up the loads after it,
 * some 3 ns a packet (bench lb-cost).
 *
 * Fast path (lb_xdp4, inlined in lb_xdp): an untagged IPv4 frame without options or
 * fragmentation, carrying TCP or UDP, is checked by a few loads and balanced without a call of
 * a function of ours (each costs 6-9 ns where returns go through a retpoline or the SRSO
 * thunk); everything else goes by tail call (lb_progs[LB_PROG_GENERAL], a direct jump once
 * the JIT patches it) to the general path, the program lb_xdp_general (lb_parse_xdp,
 * lb_select, lb_forward). The fast path copies no parse: it reads
 * each field from the packet where it is used, since a copy is held on the stack across every
 * helper call (a store and a load each time, 5-10 ns a packet in bench lb-cost). Both paths
 * share the service lookup (lb_find_service) and the flow table and Maglev (lb_choose); the
 * fast path forwards by IPv4 copies of DSR, NAT and IPIP (lb_fwd4_*, the general functions'
 * steps for such a packet), and GUE and IPIP to an IPv6 backend by the general lb_forward_pkt.
 *
 * Cost (bench/lb-cost.ts compares lb_xdp with a minimal C balancer, bench/c/lb_min.bpf.c): the
 * kernel hashes and compares whole keys on every lookup, so every map a packet looks up by key
 * has a key of its family (lb_services4/6, lb_flows4/6, lb_nat4/6: an IPv4 key 8 or 16 bytes,
 * not 20 or 40), and the IPv4 flow hash is jhash_3words; the rest is instructions on the path:
 * copies by words rather than bytes (their alignment is said where it is relied on), no
 * zeroing of what is written anyway, a map-value pointer kept rather than its value copied.
 *
 * Code shaped by the verifier:
 *  - Parsing, selection (service and backend) and forwarding are global functions on the
 *    general path: each is checked once, and the caller sees only scalars back, so the parse's
 *    outcomes do not multiply the paths through selection and forwarding (the same plan as
 *    pipeline.bpf.c). The fast path has one parse outcome, so it inlines what it uses. The
 *    general path is a program of its own, reached by tail call, so that the fast path's frame
 *    (some 300 bytes) and the general path's chain of calls are not added up against the 512
 *    bytes a chain may use (576 as one program).
 *  - Offsets from the parse (l3_off, l4_off) are unknown to the global functions: each is
 *    bounded (LB_MAX_L3_OFF, LB_MAX_L4_OFF) before it addresses the packet, and every
 *    access is preceded by a check of the pointer it uses (the verifier rejects a negative
 *    constant offset from a variable pointer, hence separate pointers for the EtherType).
 *  - Global functions null-check their pointer arguments (the verifier assumes they may be
 *    NULL).
 *  - GUE's IPv6 UDP checksum sums the frame in a global function of its own (lb_csum_frame):
 *    its chunks and their bounds checks are verified once, not on every path to it.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "include/parse.h"
#include "include/lb.h"

#define LB_AF_INET 2
#define LB_AF_INET6 10
#define LB_NSEC 1000000000ULL
/* A flow entry's timestamp is rewritten at most this often (cache lines stay shared). */
#define LB_REFRESH_NS LB_NSEC
/* The largest burst whose cap (burst * 1e9) fits in 63 bits. */
#define LB_BURST_MAX 9223372036ULL

#define LB_TCP_FIN 0x01
#define LB_TCP_SYN 0x02
#define LB_TCP_RST 0x04
#define LB_TCP_ACK 0x10

/* lb_xdp4: not a packet for the fast path (no verdict has that value) */
#define LB_SLOW -1

#define LB_IPPROTO_IPIP 4
#define LB_IPPROTO_IPV6 41
#define LB_OUTER_TTL 64

/* GUE: the outer UDP header and the GUE header, as written after the outer IP header. */
struct lb_udp_gue {
	__be16 sport;
	__be16 dport;
	__be16 len;
	__u16 check;
	struct lb_gue_hdr gue;
};

#define LB_GUE_HLEN 12 /* sizeof(struct lb_udp_gue) */
/* The outer UDP source port of a flow: 49152 + the hash's top 14 bits (the low bits already
 * vary the outer source and the IPv6 flow label), in the dynamic range (RFC 6335). */
#define LB_GUE_SPORT(hash) (0xc000 | ((hash) >> 18))
/* The longest UDP datagram (GUE over IPv6) whose checksum lb_xdp computes: more than an XDP
 * frame without fragments (a page, less headroom and tail room) holds. */
#define LB_CSUM_MAX 4096

/* Ethernet and two VLAN tags. */
#define LB_MAX_L3_OFF 22
/* IPv4 with options (60), or IPv6 and SL_IPV6_MAX_EXT extension headers of 2048 bytes. */
#define LB_MAX_L4_OFF (LB_MAX_L3_OFF + 40 + SL_IPV6_MAX_EXT * 2048)
/* At TC, bytes made linear before a second parse of a frame that looked truncated. */
#define LB_TC_PULL_MAX (LB_MAX_L4_OFF + 20)

/*
 * The inner Maglev map's size, read from the kernel's struct bpf_map through CO-RE (libbpf
 * relocates the offset against the running kernel's BTF): the lookup in lb_maglev returns a
 * map pointer whose fields the verifier lets a program read.
 */
struct bpf_map___lb {
	__u32 max_entries;
} __attribute__((preserve_access_index));

/* ---- maps (include/lb.h describes each: key, value, writer, reader) ---- */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* replaced values are freed after RCU, never reused
					       * under a reader */
	__uint(max_entries, LB_MAX_SERVICES);
	__type(key, struct lb_svc4_key);
	__type(value, struct lb_svc);
} lb_services4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* as lb_services4 */
	__uint(max_entries, LB_MAX_SERVICES);
	__type(key, struct lb_svc6_key);
	__type(value, struct lb_svc);
} lb_services6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct lb_svc_dev_key);
	__type(value, __u8);
} lb_svc_devs SEC(".maps");

/* The template of every Maglev table; user space creates tables of size M with the same flags. */
struct lb_table {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_INNER_MAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, LB_MAX_SERVICES);
	__type(key, __u32);
	__array(values, struct lb_table);
} lb_maglev SEC(".maps");

/* Tables of the default size: the template's size is every inner array's, so the verifier
 * inlines their lookup (include/lb.h). */
struct lb_table_d {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_MAGLEV_DEFAULT);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, LB_MAX_SERVICES);
	__type(key, __u32);
	__array(values, struct lb_table_d);
} lb_maglev_d SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct lb_backend);
} lb_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LB_FLOWS_DEFAULT);
	__type(key, struct lb_flow4_key);
	__type(value, struct lb_flow);
} lb_flows4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LB_FLOWS_DEFAULT);
	__type(key, struct lb_flow6_key);
	__type(value, struct lb_flow);
} lb_flows6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__uint(max_entries, LB_FLOWS_DEFAULT);
	__type(key, struct lb_flow4_key);
	__type(value, struct lb_flow);
} lb_flows4_pc SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__uint(max_entries, LB_FLOWS_DEFAULT);
	__type(key, struct lb_flow6_key);
	__type(value, struct lb_flow);
} lb_flows6_pc SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LB_NAT_DEFAULT);
	__type(key, struct lb_nat4_key);
	__type(value, struct lb_nat4);
} lb_nat4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LB_NAT_DEFAULT);
	__type(key, struct lb_nat6_key);
	__type(value, struct lb_nat6);
} lb_nat6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_config);
} lb_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_bucket);
} lb_insert_tb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct lb_counter);
} lb_svc_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct lb_counter);
} lb_be_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_events);
} lb_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_now);
} lb_now SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_FIB_REASONS);
	__type(key, __u32);
	__type(value, __u64);
} lb_fib_stats SEC(".maps");

/* ---- parse ---- */

/*
 * The parse (56 bytes, on the stack): what the balancer reads of a packet, written by lb_parse
 * over a zeroed struct. Addresses and flowinfo in network order, ports and lengths host order.
 */
struct lb_pkt {
	__u8 saddr[16]; /* IPv4 in the first 4 bytes, the rest zero */
	__u8 daddr[16];
	__be32 flowinfo; /* IPv6: traffic class and flow label (the version bits cleared) */
	__u16 sport; /* with ports */
	__u16 dport;
	__u16 tot_len; /* IPv4 total length, IPv6 payload length + 40: for the FIB's MTU check */
	__u16 l3_off; /* offset of the IP header in the frame */
	__u16 l4_off; /* offset of the L4 header (past the IP headers for a later fragment) */
	__u8 family; /* 4 or 6 */
	__u8 proto; /* IPv6: the one after the extension headers */
	__u8 tcp_flags; /* 0 unless TCP */
	__u8 tos; /* IPv4 */
	__u8 ports; /* 1: sport and dport were read (not a later fragment) */
	__u8 frag; /* 1: a fragment, first or later */
	__u8 status; /* SL_PARSE_*: why the parse failed (TC pulls on SL_PARSE_TRUNCATED) */
	__u8 pad[3];
};

/* What selection chose (36 bytes): all that forwarding and the counters need. */
struct lb_sel {
	struct lb_backend be;
	__u32 backend; /* id */
	__u32 hash; /* the flow hash (IPIP/GUE outer source, flow label, GUE source port) */
	__u32 svc; /* the service's id */
	__u8 fwd_mode; /* the service's LB_FWD_* */
	__u8 new_flow; /* 1: a flow-table entry was written */
	__u8 flow_event; /* LB_EV_FLOW_HIT, _MISS or _STALE (LB_EVENTS: none), counted last */
	__u8 pad;
};

static __always_inline int lb_parse_fail(struct lb_pkt *lp, __u8 status)
{
	lp->status = status;
	return -1;
}

/*
 * IPv6 and its extension headers at *pos, parse.h's rules (sl_parse_ipv6) with one addition: a
 * fragment header with an offset or with M set makes lp->frag. Returns the L4 protocol, *pos
 * past the headers and *later 1 for a later fragment (no L4 header); or -1.
 */
static __always_inline int lb_parse_ipv6(__u8 **pos, void *end, struct lb_pkt *lp, __u32 *later)
{
	struct ipv6hdr *ip6 = (void *)*pos;
	__u32 next;

	if ((void *)(ip6 + 1) > end)
		return lb_parse_fail(lp, SL_PARSE_TRUNCATED);
	if (ip6->version != 6)
		return lb_parse_fail(lp, SL_PARSE_MALFORMED);

	lp->family = 6;
	lp->tot_len = bpf_ntohs(ip6->payload_len) + sizeof(*ip6);
	lp->flowinfo = *(__be32 *)ip6 & bpf_htonl(0x0fffffff);
	__builtin_memcpy(lp->saddr, &ip6->saddr, 16);
	__builtin_memcpy(lp->daddr, &ip6->daddr, 16);
	next = ip6->nexthdr;
	*pos = (void *)(ip6 + 1);

#pragma unroll
	for (int i = 0; i < SL_IPV6_MAX_EXT; i++) {
		__u8 *ext = *pos;

		if (!sl_is_ipv6_ext(next))
			break;
		if ((void *)(ext + 8) > end)
			return lb_parse_fail(lp, SL_PARSE_TRUNCATED);
		if (next == SL_IPPROTO_FRAGMENT) {
			__be16 field = *(__be16 *)(ext + 2);

			next = ext[0];
			*pos = ext + 8;
			/* offset (top 13 bits) or M (bit 0): a piece of a fragmented datagram */
			if (field & bpf_htons(0xfff9))
				lp->frag = 1;
			if (field & bpf_htons(0xfff8)) {
				*later = 1;
				break;
			}
		} else {
			__u32 len = ((__u32)ext[1] + 1) * 8;

			if ((void *)ext + len > end)
				return lb_parse_fail(lp, SL_PARSE_TRUNCATED);
			next = ext[0];
			*pos = (void *)ext + len;
		}
	}
	if (!*later && sl_is_ipv6_ext(next))
		return lb_parse_fail(lp, SL_PARSE_MALFORMED);
	return next;
}

/*
 * The whole parse of [data, end) into *lp (zeroed by the caller), by parse.h's rules for the
 * part the balancer reads: Ethernet and at most two VLAN tags (`tags` of them offloaded: TC),
 * IPv4 with options or IPv6 with extension headers, then the first bytes of TCP, UDP or SCTP.
 * Returns 0 for TCP, UDP or SCTP over IP, else -1 (lp->status says why when it failed).
 * Written for the balancer rather than through parse.h's struct sl_pkt: it keeps only the
 * fields used here, and the frame's EtherType is read as one halfword, not two bytes.
 */
static __always_inline int lb_parse(void *data, void *end, __u32 tags, struct lb_pkt *lp)
{
	__u8 *pos = data, *l4;
	__u32 later = 0;
	__be16 type;
	int proto;

	if (pos + ETH_HLEN > (__u8 *)end)
		return lb_parse_fail(lp, SL_PARSE_TRUNCATED);
	type = *(__be16 *)(pos + 12);
	pos += ETH_HLEN;
#pragma unroll
	for (int i = 0; i < SL_VLAN_MAX_TAGS; i++) {
		if ((type != bpf_htons(ETH_P_8021Q) && type != bpf_htons(ETH_P_8021AD)) ||
		    tags >= SL_VLAN_MAX_TAGS)
			break;
		if (pos + 4 > (__u8 *)end)
			return lb_parse_fail(lp, SL_PARSE_TRUNCATED);
		type = *(__be16 *)(pos + 2);
		pos += 4;
		tags++;
	}
	lp->l3_off = pos - (__u8 *)data;
	if (type == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)pos;
		__u32 hlen;

		if ((void *)(ip + 1) > end)
			return lb_parse_fail(lp, SL_PARSE_TRUNCATED);
		if (ip->version != 4 || ip->ihl < 5)
			return lb_parse_fail(lp, SL_PARSE_MALFORMED);
		hlen = ip->ihl * 4;
		if (pos + hlen > (__u8 *)end)
			return lb_parse_fail(lp, SL_PARSE_TRUNCATED);
		lp->family = 4;
		lp->tos = ip->tos;
		lp->tot_len = bpf_ntohs(ip->tot_len);
		__builtin_memcpy(lp->saddr, &ip->saddr, 4);
		__builtin_memcpy(lp->daddr, &ip->daddr, 4);
		/* MF or an offset: a fragment; an offset: a later one */
		if (ip->frag_off & bpf_htons(0x3fff))
			lp->frag = 1;
		later = (ip->frag_off & bpf_htons(0x1fff)) != 0;
		proto = ip->protocol;
		pos += hlen;
	} else if (type == bpf_htons(ETH_P_IPV6)) {
		proto = lb_parse_ipv6(&pos, end, lp, &later);
		if (proto < 0)
			return -1;
	} else {
		return -1;
	}
	lp->proto = proto;
	lp->l4_off = pos - (__u8 *)data;
	/* each case checks its own constant length (one check of a variable length would leave
	 * the verifier with the smallest as the pointer's range) */
	l4 = pos;
	switch (proto) {
	case SL_IPPROTO_TCP:
		if (later)
			return 0;
		if (l4 + 20 > (__u8 *)end)
			return lb_parse_fail(lp, SL_PARSE_TRUNCATED);
		lp->tcp_flags = l4[13];
		break;
	case SL_IPPROTO_UDP:
		if (later)
			return 0;
		if (l4 + 8 > (__u8 *)end)
			return lb_parse_fail(lp, SL_PARSE_TRUNCATED);
		break;
	case SL_IPPROTO_SCTP:
		if (later)
			return 0;
		if (l4 + 12 > (__u8 *)end)
			return lb_parse_fail(lp, SL_PARSE_TRUNCATED);
		break;
	default:
		return -1;
	}
	lp->sport = bpf_ntohs(*(__be16 *)l4);
	lp->dport = bpf_ntohs(*(__be16 *)(l4 + 2));
	lp->ports = 1;
	return 0;
}

__noinline int lb_parse_xdp(struct xdp_md *ctx, struct lb_pkt *lp)
{
	if (!lp)
		return -1;
	return lb_parse((void *)(long)ctx->data, (void *)(long)ctx->data_end, 0, lp);
}

__noinline int lb_parse_tc(struct __sk_buff *skb, struct lb_pkt *lp)
{
	if (!lp)
		return -1;
	/* a tag the NIC took out of the frame counts as one of the two */
	return lb_parse((void *)(long)skb->data, (void *)(long)skb->data_end,
			skb->vlan_present ? 1 : 0, lp);
}

/* ---- counters ---- */

/* This CPU's event counters: looked up once per packet, then passed along as `ev`. */
static __always_inline struct lb_events *lb_events_here(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&lb_events, &zero);
}

/* Counts event (a constant everywhere: the bound check compiles away, and would satisfy the
 * verifier otherwise). */
static __always_inline void lb_event(struct lb_events *ev, __u32 event)
{
	if (event < LB_EVENTS)
		ev->n[event] += 1;
}

static __always_inline void lb_count(void *map, __u32 index, __u64 len, __u32 new_flow)
{
	struct lb_counter *c = bpf_map_lookup_elem(map, &index);

	if (c) {
		c->packets += 1;
		c->bytes += len;
		if (new_flow)
			c->new_flows += 1;
	}
}

/* ---- hash ---- */

static __always_inline __u32 lb_rol32(__u32 word, __u32 shift)
{
	return (word << shift) | (word >> ((-shift) & 31));
}

/* include/linux/jhash.h */
#define LB_JHASH_MIX(a, b, c)                                                                      \
	{                                                                                          \
		a -= c;                                                                            \
		a ^= lb_rol32(c, 4);                                                               \
		c += b;                                                                            \
		b -= a;                                                                            \
		b ^= lb_rol32(a, 6);                                                               \
		a += c;                                                                            \
		c -= b;                                                                            \
		c ^= lb_rol32(b, 8);                                                               \
		b += a;                                                                            \
		a -= c;                                                                            \
		a ^= lb_rol32(c, 16);                                                              \
		c += b;                                                                            \
		b -= a;                                                                            \
		b ^= lb_rol32(a, 19);                                                              \
		a += c;                                                                            \
		c -= b;                                                                            \
		c ^= lb_rol32(b, 4);                                                               \
		b += a;                                                                            \
	}

#define LB_JHASH_FINAL(a, b, c)                                                                    \
	{                                                                                          \
		c ^= b;                                                                            \
		c -= lb_rol32(b, 14);                                                              \
		a ^= c;                                                                            \
		a -= lb_rol32(c, 11);                                                              \
		b ^= a;                                                                            \
		b -= lb_rol32(a, 25);                                                              \
		c ^= b;                                                                            \
		c -= lb_rol32(b, 16);                                                              \
		a ^= c;                                                                            \
		a -= lb_rol32(c, 4);                                                               \
		b ^= a;                                                                            \
		b -= lb_rol32(a, 14);                                                              \
		c ^= b;                                                                            \
		c -= lb_rol32(b, 24);                                                              \
	}

/* jhash_3words(a, b, c, initval) of include/linux/jhash.h, which is jhash2 over the 3 words. */
static __always_inline __u32 lb_jhash_3words(__u32 a, __u32 b, __u32 c, __u32 initval)
{
	initval += 0xdeadbeef + (3 << 2);
	a += initval;
	b += initval;
	c += initval;
	LB_JHASH_FINAL(a, b, c);
	return c;
}

/* jhash2(k, 9, initval) of include/linux/jhash.h: two rounds of three words, then the last 3. */
static __always_inline __u32 lb_jhash2_9(const __u32 *k, __u32 initval)
{
	__u32 a, b, c;

	a = b = c = 0xdeadbeef + (9 << 2) + initval;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		a += k[3 * i];
		b += k[3 * i + 1];
		c += k[3 * i + 2];
		LB_JHASH_MIX(a, b, c);
	}
	c += k[8];
	b += k[7];
	a += k[6];
	LB_JHASH_FINAL(a, b, c);
	return c;
}

/* A flow-table key of either family; w: its words as the hash reads them (header, step 3). */
union lb_fkey {
	struct lb_flow4_key v4;
	struct lb_flow6_key v6;
	__u32 w[10];
};

/*
 * The service's flow hash of key k of family 4 or 6 (header, step 3). The port word as loaded
 * holds sport in its low half (x86 is little-endian).
 */
static __always_inline __u32 lb_flow_hash(const union lb_fkey *k, __u8 family,
					  const struct lb_svc *svc)
{
	__u32 mode = svc->hash_mode, seed = svc->seed;
	__u32 sport = mode == LB_HASH_SRC_PORT ? 0xffff : 0;

	if (family == 4) {
		if (mode != LB_HASH_SRC && mode != LB_HASH_SRC_PORT)
			return lb_jhash_3words(k->w[0], k->w[1], k->w[2], seed + k->v4.proto);
		return lb_jhash_3words(k->w[0], 0, k->w[2] & sport, seed);
	}
	if (mode != LB_HASH_SRC && mode != LB_HASH_SRC_PORT)
		return lb_jhash2_9(k->w, seed + k->v6.proto);
	{
		__u32 w[9] = {};

		__builtin_memcpy(w, k->v6.src, 16);
		w[8] = k->w[8] & sport;
		return lb_jhash2_9(w, seed);
	}
}

/* ---- service and backend selection ---- */

/*
 * Whether service s applies on ctx's ingress device (header, step 1): always without
 * LB_SVC_DEVICES, so a service without the flag pays one test of a field it has already loaded
 * (and the device is not even read: three dependent loads in XDP).
 */
static __always_inline int lb_on_device(const struct lb_svc *s, struct xdp_md *ctx)
{
	struct lb_svc_dev_key k;

	if (!(s->flags & LB_SVC_DEVICES))
		return 1;
	k.svc = s->id;
	k.ifindex = ctx->ingress_ifindex;
	return bpf_map_lookup_elem(&lb_svc_devs, &k) != 0;
}

/* A service key of either family: port and proto at the same offsets in both. */
union lb_skey {
	struct lb_svc4_key v4;
	struct lb_svc6_key v6;
};

/*
 * The service map of the family, each at its own call site (the empty asm keeps clang from
 * merging the two calls into one with a map chosen at run time: see lb_flow_lookup).
 */
static __always_inline struct lb_svc *lb_svc_lookup(__u8 family, union lb_skey *k)
{
	struct lb_svc *s;

	if (family == 4) {
		s = bpf_map_lookup_elem(&lb_services4, &k->v4);
		asm volatile("");
		return s;
	}
	return bpf_map_lookup_elem(&lb_services6, &k->v6);
}

/*
 * The service of a packet to daddr (4-byte aligned: a parse or the packet's IPv4 header) and
 * dport (network order, read when `ports`) arriving on ctx's device (header, steps 1-2), or NULL
 * (LB_EV_OTHER_DEVICE, LB_EV_FRAGMENT_PASS counted). Its pointer stays valid for the program's
 * run: lb_services4/6 free replaced values only after an RCU grace period.
 */
static __always_inline struct lb_svc *lb_find_service(struct xdp_md *ctx, __u8 family,
						      const void *daddr, __u8 proto, __be16 dport,
						      __u8 frag, __u8 ports, struct lb_events *ev)
{
	union lb_skey k;
	struct lb_svc *s;
	__u32 elsewhere = 0;

	daddr = __builtin_assume_aligned(daddr, 4);
	if (family == 4)
		__builtin_memcpy(&k.v4.addr, daddr, 4);
	else
		__builtin_memcpy(k.v6.addr, daddr, 16);
	k.v4.proto = proto;
	k.v4.pad = 0;
	if (!frag) {
		k.v4.port = dport;
		s = lb_svc_lookup(family, &k);
		if (s) {
			if (lb_on_device(s, ctx))
				return s;
			elsewhere = 1;
		}
	}
	k.v4.port = 0;
	s = lb_svc_lookup(family, &k);
	if (s) {
		if (lb_on_device(s, ctx))
			return s;
		elsewhere = 1;
	}
	if (elsewhere) {
		lb_event(ev, LB_EV_OTHER_DEVICE);
		return NULL;
	}
	if (frag && ports) {
		k.v4.port = dport;
		if (lb_svc_lookup(family, &k))
			lb_event(ev, LB_EV_FRAGMENT_PASS);
	}
	return NULL;
}

/*
 * What the flow table or Maglev chose for a packet: the backend (its lb_backends value, read in
 * place), the flow hash, and what to count.
 */
struct lb_choice {
	const struct lb_backend *be;
	__u32 backend; /* id */
	__u32 hash;
	__u8 flow_event; /* LB_EV_FLOW_HIT, _MISS or _STALE (LB_EVENTS: none), counted last */
	__u8 new_flow; /* 1: a flow-table entry was written */
};

/*
 * sel->be = *be, word by word: struct lb_backend is 2-byte aligned (its fields are bytes and a
 * __be16), so clang would copy it by halfwords; both sides are 4-byte aligned (a map value,
 * struct lb_sel).
 */
static __always_inline void lb_copy_backend(struct lb_sel *sel, const struct lb_backend *be)
{
	const __u32 *from = (const void *)be;
	__u32 *to = (void *)&sel->be;

#pragma unroll
	for (int i = 0; i < sizeof(*be) / 4; i++)
		to[i] = from[i];
}

/* Maglev: the backend of flow's slot in the service's table, into *ch. 0, or -1 (counted). */
static __always_inline int lb_pick(const union lb_fkey *k, __u8 family, const struct lb_svc *svc,
				   struct lb_choice *ch, struct lb_events *ev)
{
	struct bpf_map___lb *table = NULL;
	struct lb_backend *be;
	__u32 id = svc->id, hash, slot, m, *backend;
	void *table_d;

	/* a table of the default size first: its lookup is inlined (include/lb.h, lb_maglev_d) */
	table_d = bpf_map_lookup_elem(&lb_maglev_d, &id);
	if (table_d) {
		m = LB_MAGLEV_DEFAULT;
	} else {
		table = bpf_map_lookup_elem(&lb_maglev, &id);
		m = table ? table->max_entries : 0;
		if (!m) {
			lb_event(ev, LB_EV_NO_TABLE);
			return -1;
		}
	}
	hash = lb_flow_hash(k, family, svc);
	slot = ((__u64)hash * m) >> 32;
	/* The empty asm keeps clang from merging the two inner lookups into one call site that
	 * two kinds of inner map reach: the verifier can inline neither then, and calls the
	 * generic helper, an indirect call (see lb_flow_lookup). */
	if (table_d) {
		backend = bpf_map_lookup_elem(table_d, &slot);
		asm volatile("" ::: "memory");
	} else {
		backend = bpf_map_lookup_elem(table, &slot);
	}
	if (!backend) {
		lb_event(ev, LB_EV_NO_TABLE);
		return -1;
	}
	id = *backend;
	be = bpf_map_lookup_elem(&lb_backends, &id);
	if (!be || !(be->flags & LB_BE_ACTIVE)) {
		lb_event(ev, LB_EV_NO_BACKEND);
		return -1;
	}
	ch->be = be;
	ch->backend = id;
	ch->hash = hash;
	return 0;
}

/*
 * The time of this packet (bpf_ktime_get_coarse_ns), read into *now on first use (*now starts
 * at 0): a packet that never needs it, a miss that inserts nothing, never reads the clock.
 */
static __always_inline __u64 lb_clock(__u64 *now)
{
	struct lb_now *c;
	__u32 zero = 0;
	__u64 jiffies;

	if (*now)
		return *now;
	/* the clock is a helper call (6-9 ns where returns go through a retpoline or the SRSO
	 * thunk, bench lb-cost); bpf_jiffies64 is a load the verifier inlines, and the coarse
	 * clock moves only on a tick, so it is read once per jiffy per CPU. It can lag a tick
	 * where the tick bumps jiffies before the clock: flow timestamps are compared in seconds,
	 * and the insert bucket refills at the clock's tick resolution either way. */
	c = bpf_map_lookup_elem(&lb_now, &zero);
	jiffies = bpf_jiffies64();
	if (!c) { /* never: a per-CPU array always has key 0 */
		*now = bpf_ktime_get_coarse_ns();
		return *now;
	}
	if (c->jiffies != jiffies) {
		c->coarse_ns = bpf_ktime_get_coarse_ns();
		c->jiffies = jiffies;
	}
	*now = c->coarse_ns;
	return *now;
}

/* One token from this CPU's insert bucket (header, step 4): 1 if granted. clock: lb_clock's. */
static __always_inline int lb_insert_allowed(const struct lb_config *cfg, __u64 *clock)
{
	struct lb_bucket *b;
	__u64 burst, cap, rate, tokens, last, now;
	__u32 zero = 0, granted;

	if (!(cfg->flags & LB_CFG_INSERT_CAP))
		return 1;
	burst = cfg->insert_burst;
	/* a depth of 0 never grants, whatever the bucket holds: left unread and unwritten (its
	 * state decides nothing until setConfig, which zeroes it) */
	if (!burst)
		return 0;
	b = bpf_map_lookup_elem(&lb_insert_tb, &zero);
	if (!b)
		return 0;
	now = lb_clock(clock);
	if (burst > LB_BURST_MAX)
		burst = LB_BURST_MAX;
	cap = burst * LB_NSEC;
	rate = cfg->insert_rate;
	tokens = b->tokens;
	last = b->last_ns;
	if (!last) {
		tokens = cap;
	} else if (now > last && rate) {
		__u64 elapsed = now - last;

		/* elapsed * rate < cap here, so the product cannot overflow */
		if (elapsed >= cap / rate)
			tokens = cap;
		else
			tokens += elapsed * rate;
	}
	if (tokens > cap)
		tokens = cap;
	granted = tokens >= LB_NSEC;
	if (granted)
		tokens -= LB_NSEC;
	/* each field stored only when it changes: a store in the middle of the packet's path
	 * holds up the loads after it (bench lb-cost), and a full or empty bucket within one
	 * clock tick changes nothing */
	if (tokens != b->tokens)
		b->tokens = tokens;
	now = now ? now : 1;
	if (now != last)
		b->last_ns = now;
	return granted;
}

/*
 * The flow table of the family and kind, each map at its own call site. Without the empty
 * asms, clang merges calls into one whose map is chosen at run time; the verifier can then
 * neither inline the lookup nor call the map's own function, and every packet pays an indirect
 * call (a retpoline on hosts that need one): 5 to 19 ns measured (bench lb-cost).
 */
static __always_inline struct lb_flow *lb_flow_lookup(__u32 flags, __u8 family, union lb_fkey *k)
{
	struct lb_flow *f;

	if (family == 4) {
		if (flags & LB_CFG_NO_COMMON_LRU) {
			f = bpf_map_lookup_elem(&lb_flows4_pc, &k->v4);
			asm volatile("");
			return f;
		}
		f = bpf_map_lookup_elem(&lb_flows4, &k->v4);
		asm volatile("" ::: "memory");
		return f;
	}
	if (flags & LB_CFG_NO_COMMON_LRU) {
		f = bpf_map_lookup_elem(&lb_flows6_pc, &k->v6);
		asm volatile("");
		return f;
	}
	return bpf_map_lookup_elem(&lb_flows6, &k->v6);
}

static __always_inline long lb_flow_update(__u32 flags, __u8 family, union lb_fkey *k,
					   struct lb_flow *f)
{
	long err;

	if (family == 4) {
		if (flags & LB_CFG_NO_COMMON_LRU) {
			err = bpf_map_update_elem(&lb_flows4_pc, &k->v4, f, BPF_ANY);
			asm volatile("");
			return err;
		}
		err = bpf_map_update_elem(&lb_flows4, &k->v4, f, BPF_ANY);
		asm volatile("" ::: "memory");
		return err;
	}
	if (flags & LB_CFG_NO_COMMON_LRU) {
		err = bpf_map_update_elem(&lb_flows6_pc, &k->v6, f, BPF_ANY);
		asm volatile("");
		return err;
	}
	return bpf_map_update_elem(&lb_flows6, &k->v6, f, BPF_ANY);
}

/* Whether entry f has idled out (header, step 4). */
static __always_inline int lb_flow_expired(const struct lb_flow *f, const struct lb_svc *svc,
					   const struct lb_config *cfg, __u32 tcp, __u64 now)
{
	__u64 timeout;

	if (f->state & LB_FLOW_CLOSING)
		timeout = cfg->closing_timeout_s;
	else
		timeout = tcp ? svc->tcp_timeout_s : svc->udp_timeout_s;
	return timeout && now > f->ts_ns && now - f->ts_ns > timeout * LB_NSEC;
}

/*
 * The flow table and Maglev for a flow of service svc (header, step 4): key k of family, every
 * field set; tcp_flags 0 unless TCP. Returns 0 (ch filled), or -2 when the packet passes (no
 * table or no backend: counted in ev). ch->flow_event and ch->new_flow are set either way, for
 * the caller to count last (header, counters).
 */
static __always_inline int lb_choose(const struct lb_svc *svc, const struct lb_config *cfg,
				     union lb_fkey *k, __u8 family, __u8 proto, __u8 tcp_flags,
				     struct lb_choice *ch, struct lb_events *ev)
{
	__u32 flags = cfg->flags, tcp, syn, fin_rst;
	struct lb_flow *f;
	__u64 now = 0;

	ch->new_flow = 0;
	tcp = proto == SL_IPPROTO_TCP;
	syn = (tcp_flags & (LB_TCP_SYN | LB_TCP_ACK)) == LB_TCP_SYN;
	fin_rst = tcp_flags & (LB_TCP_FIN | LB_TCP_RST);

	f = lb_flow_lookup(flags, family, k);
	if (f) {
		__u32 id = f->backend;
		struct lb_backend *be = bpf_map_lookup_elem(&lb_backends, &id);

		lb_clock(&now);
		if (be && (be->flags & LB_BE_ACTIVE) && !(syn && (be->flags & LB_BE_DOWN)) &&
		    !lb_flow_expired(f, svc, cfg, tcp, now)) {
			ch->be = be;
			ch->backend = id;
			ch->hash = f->hash;
			if (fin_rst) {
				if (!(f->state & LB_FLOW_CLOSING)) {
					f->state |= LB_FLOW_CLOSING;
					f->ts_ns = now;
					lb_event(ev, LB_EV_FLOW_CLOSING);
				}
			} else if (syn && (f->state & LB_FLOW_CLOSING)) {
				f->state &= ~LB_FLOW_CLOSING;
				f->ts_ns = now;
			} else if (!(f->state & LB_FLOW_CLOSING) && now > f->ts_ns + LB_REFRESH_NS) {
				f->ts_ns = now;
			}
			ch->flow_event = LB_EV_FLOW_HIT;
			return 0;
		}
		ch->flow_event = LB_EV_FLOW_STALE;
	} else {
		ch->flow_event = LB_EV_FLOW_MISS;
	}
	if (tcp && !syn)
		lb_event(ev, LB_EV_NON_SYN_MISS);
	if (lb_pick(k, family, svc, ch, ev) < 0)
		return -2;
	if (!lb_insert_allowed(cfg, &now)) {
		lb_event(ev, LB_EV_INSERT_CAP);
		return 0;
	}
	lb_clock(&now);
	{
		/* built here, not zeroed up front: a hit never needs it */
		struct lb_flow entry = {
			.backend = ch->backend,
			.hash = ch->hash,
			.ts_ns = now,
			.state = fin_rst ? LB_FLOW_CLOSING : 0,
		};

		if (lb_flow_update(flags, family, k, &entry)) {
			lb_event(ev, LB_EV_INSERT_FAIL);
			return 0;
		}
	}
	ch->new_flow = 1;
	return 0;
}

/*
 * Chooses the service and backend of lp, arriving on ctx's device, into *sel (header, steps
 * 1-4). Returns 0 (sel filled), -1 when no service applies, or -2 when the service's packet
 * passes (no table or no backend: counted in ev; sel->svc is set). The flow-table event is left
 * in sel->flow_event for the caller to count (header, counters).
 */
static __always_inline int lb_select_pkt(struct xdp_md *ctx, const struct lb_pkt *lp,
					 struct lb_sel *sel, struct lb_events *ev)
{
	struct lb_choice ch;
	union lb_fkey k;
	struct lb_config *cfg;
	struct lb_svc *svc;
	__u32 zero = 0;
	__u8 family = lp->family;

	svc = lb_find_service(ctx, family, lp->daddr, lp->proto, bpf_htons(lp->dport), lp->frag,
			      lp->ports, ev);
	if (!svc)
		return -1;
	sel->svc = svc->id;
	sel->fwd_mode = svc->fwd_mode;
	sel->new_flow = 0;
	sel->flow_event = LB_EVENTS;
	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	if (!cfg)
		return -2;
	/* the flow key, IPv4's 16 bytes or IPv6's 40, every byte written (pad, unset ports) */
	if (family == 4) {
		__builtin_memcpy(&k.v4.src, lp->saddr, 4);
		__builtin_memcpy(&k.v4.dst, lp->daddr, 4);
		k.w[2] = 0;
		k.v4.proto = lp->proto;
		k.v4.pad = 0;
		k.v4.svc = svc->id;
	} else {
		__builtin_memcpy(k.v6.src, lp->saddr, 16);
		__builtin_memcpy(k.v6.dst, lp->daddr, 16);
		k.w[8] = 0;
		k.v6.proto = lp->proto;
		k.v6.pad = 0;
		k.v6.svc = svc->id;
	}
	if (lp->frag) {
		/* ports stay 0: every piece of the datagram hashes alike, statelessly */
		if (lb_pick(&k, family, svc, &ch, ev) < 0)
			return -2;
		lb_event(ev, LB_EV_FRAGMENT);
	} else {
		int rc;

		if (family == 4) {
			k.v4.sport = bpf_htons(lp->sport);
			k.v4.dport = bpf_htons(lp->dport);
		} else {
			k.v6.sport = bpf_htons(lp->sport);
			k.v6.dport = bpf_htons(lp->dport);
		}
		rc = lb_choose(svc, cfg, &k, family, lp->proto, lp->tcp_flags, &ch, ev);
		sel->flow_event = ch.flow_event;
		sel->new_flow = ch.new_flow;
		if (rc < 0)
			return rc;
	}
	lb_copy_backend(sel, ch.be);
	sel->backend = ch.backend;
	sel->hash = ch.hash;
	return 0;
}

/* lb_select_pkt for the general path: checked once by the verifier, whatever the parse gave. */
__noinline int lb_select(struct xdp_md *ctx, struct lb_pkt *lp, struct lb_sel *sel,
			 struct lb_events *ev)
{
	if (!lp || !sel || !ev)
		return -1;
	return lb_select_pkt(ctx, lp, sel, ev);
}

/* ---- forwarding ---- */

/*
 * The FIB's next hop towards dst (header, step 5). Returns 0 on success, else the lookup's
 * return code (counted; negative: bad arguments).
 */
static __always_inline long lb_fib(struct xdp_md *ctx, struct bpf_fib_lookup *fib, __u8 family,
				   const __u8 *src, const __u8 *dst, __u8 proto, __be16 sport,
				   __be16 dport, __u32 tot_len, __u8 tos, __be32 flowinfo,
				   struct lb_events *ev)
{
	__u32 reason;
	long rc;

	__builtin_memset(fib, 0, sizeof(*fib));
	fib->family = family == 4 ? LB_AF_INET : LB_AF_INET6;
	fib->l4_protocol = proto;
	fib->sport = sport;
	fib->dport = dport;
	fib->tot_len = tot_len;
	fib->ifindex = ctx->ingress_ifindex;
	/* every caller's addresses are 4-byte aligned (struct lb_pkt, struct lb_sel, an aligned
	 * local): copied by words, not byte by byte */
	src = __builtin_assume_aligned(src, 4);
	dst = __builtin_assume_aligned(dst, 4);
	if (family == 4) {
		fib->tos = tos;
		__builtin_memcpy(&fib->ipv4_src, src, 4);
		__builtin_memcpy(&fib->ipv4_dst, dst, 4);
	} else {
		fib->flowinfo = flowinfo;
		__builtin_memcpy(fib->ipv6_src, src, 16);
		__builtin_memcpy(fib->ipv6_dst, dst, 16);
	}
	rc = bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS)
		return 0;
	reason = rc > 0 && rc < LB_FIB_REASONS ? rc : 0;
	lb_event(ev, LB_EV_FIB_FAIL);
	{
		__u64 *n = bpf_map_lookup_elem(&lb_fib_stats, &reason);

		if (n)
			*n += 1;
	}
	return rc ? rc : -1;
}

/* The FIB's MACs into the frame, then out: XDP_TX or bpf_redirect (header, step 5). */
static __always_inline int lb_xmit(struct xdp_md *ctx, const struct bpf_fib_lookup *fib,
				   struct lb_events *ev)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	const __u16 *dmac = (const void *)fib->dmac, *smac = (const void *)fib->smac;
	__u16 *to = data;

	if ((void *)(eth + 1) > end)
		return XDP_DROP;
	/* by halfwords, not bytes: dmac and smac are 2-byte aligned in the struct, and stores to
	 * the packet may be unaligned */
	to[0] = dmac[0];
	to[1] = dmac[1];
	to[2] = dmac[2];
	to[3] = smac[0];
	to[4] = smac[1];
	to[5] = smac[2];
	if (fib->ifindex == ctx->ingress_ifindex) {
		lb_event(ev, LB_EV_TX);
		return XDP_TX;
	}
	lb_event(ev, LB_EV_REDIRECT);
	return bpf_redirect(fib->ifindex, 0);
}

/* The inner TOS byte: IPv4's, or IPv6's traffic class. */
static __always_inline __u8 lb_tos(const struct lb_pkt *p)
{
	return p->family == 4 ? p->tos : (__u8)(bpf_ntohl(p->flowinfo) >> 20);
}

/* L2 DSR: only the MACs change. */
static __always_inline int lb_fwd_dsr(struct xdp_md *ctx, const struct lb_pkt *lp,
				      const struct lb_backend *be, struct lb_events *ev)
{
	struct bpf_fib_lookup fib __attribute__((aligned(8))); /* zeroed by words of 8 */

	if (be->family != lp->family) {
		lb_event(ev, LB_EV_FAMILY);
		return XDP_PASS;
	}
	if (lb_fib(ctx, &fib, lp->family, lp->saddr, be->addr, lp->proto,
		   bpf_htons(lp->sport), bpf_htons(lp->dport), lp->tot_len, lp->tos,
		   lp->flowinfo, ev))
		return XDP_PASS;
	return lb_xmit(ctx, &fib, ev);
}

/*
 * The IPIP/GUE outer source for a backend of `family` (header, step 5), into src (words, network
 * order; IPv4 in src[0]). 0, or -1. lb_config's prefixes sit at 4-byte aligned offsets of the
 * map value: read by words.
 */
static __always_inline int lb_outer_src(const struct lb_config *cfg, __u8 family, __u32 hash,
					__be32 *src)
{
	const __be32 *prefix;
	__u32 len, host;

	if (family == 4) {
		if (!(cfg->flags & LB_CFG_SRC4))
			return -1;
		len = cfg->src4_len;
		host = len >= 32 ? 0 : 0xffffffffU >> len;
		prefix = __builtin_assume_aligned(cfg->src4, 4);
		src[0] = bpf_htonl((bpf_ntohl(prefix[0]) & ~host) | (hash & host));
		return 0;
	}
	if (!(cfg->flags & LB_CFG_SRC6))
		return -1;
	len = cfg->src6_len;
	host = len >= 128 ? 0 : len <= 96 ? 0xffffffffU : 0xffffffffU >> (len - 96);
	prefix = __builtin_assume_aligned(cfg->src6, 4);
	src[0] = prefix[0];
	src[1] = prefix[1];
	src[2] = prefix[2];
	src[3] = bpf_htonl((bpf_ntohl(prefix[3]) & ~host) | (hash & host));
	return 0;
}

/* A one's complement sum (RFC 1071) folded to 16 bits (its end-around carries added). */
static __always_inline __u32 lb_csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

/*
 * The one's complement sum, folded to 16 bits (not inverted), of the len bytes at offset off of
 * the frame: the UDP datagram of GUE over IPv6, whose checksum needs it (header, step 5).
 * Returns the sum, or -1 when the bytes are not all in the frame or len > LB_CSUM_MAX.
 *
 * Shaped by the verifier: a global function, checked once with off and len unknown rather than
 * once per path of lb_forward. Whole 512-byte chunks (bpf_csum_diff's limit) at constant
 * offsets, then the rest as at most one chunk of each power of two from 256 down to 4, then 2
 * and 1 bytes, each at off + (whole chunks) + (the larger pieces present), computed from len
 * alone; the branches test copies of len (`full`, `bits`), never len, so no pointer depends on
 * the branches taken and the states after each one differ only in the sum, which the verifier
 * prunes instead of walking 2^9 paths.
 */
__noinline int lb_csum_frame(struct xdp_md *ctx, __u32 off, __u32 len)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u64 o = off, n = len, full, bits, rest, at; /* 64-bit: no zero-extension after checks */
	__s64 s = 0;
	__u8 *p, *q;

	/* checked on the registers used below (clang would check zero-extended copies) */
	asm volatile("" : "+r"(o), "+r"(n));
	if (o > LB_MAX_L3_OFF + 40 || n > LB_CSUM_MAX)
		return -1;
	p = data + o;
	/* opaque to clang, which would otherwise test n itself (and the verifier narrow it) */
	full = n >> 9;
	asm volatile("" : "+r"(full));
	bits = n >> 1;
	asm volatile("" : "+r"(bits));
#pragma unroll
	for (int i = 0; i < LB_CSUM_MAX / 512; i++) {
		if (full > i) {
			q = p + i * 512;
			if (q + 512 > (__u8 *)end)
				return -1;
			s = bpf_csum_diff(NULL, 0, (__be32 *)q, 512, s);
		}
	}
	rest = n & 511;
	at = n & ~511ULL;
#pragma unroll
	for (int k = 256; k >= 4; k >>= 1) {
		if (bits & (k >> 1)) {
			q = p + at + (rest & ~(__u64)(2 * k - 1));
			if (q + k > (__u8 *)end)
				return -1;
			s = bpf_csum_diff(NULL, 0, (__be32 *)q, k, s);
		}
	}
	if (bits & 1) {
		q = p + at + (rest & ~3ULL);
		if (q + 2 > (__u8 *)end)
			return -1;
		s += *(__u16 *)q;
	}
	if (n & 1) {
		q = p + at + (rest & ~1ULL);
		if (q + 1 > (__u8 *)end)
			return -1;
		/* the odd last byte is the high half of a zero-padded network-order word */
		s += bpf_htons((__u16)*q << 8);
	}
	return lb_csum_fold(lb_csum_fold(s & 0xffffffff) + lb_csum_fold(s >> 32));
}

/*
 * Writes an outer IPv4 header at o (20 bytes the caller checked): total length len, DF as df,
 * protocol proto, from src to dst (4 bytes). The header is built as its five words, as a
 * little-endian machine loads them, summed for the checksum before they are stored (a sum of
 * halfwords does not depend on the byte order): version and IHL, TOS, total length; id 0 and
 * DF; TTL, protocol and the checksum; the addresses. Stores to the packet may be unaligned.
 */
static __always_inline void lb_outer4(__u8 *o, __u32 tos, __u32 len, __be16 df, __u8 proto,
				      __be32 src, const __u8 *dst)
{
	__u32 w[5], sum = 0, *to = (void *)o;

	w[0] = 0x45 | tos << 8 | (__u32)bpf_htons(len) << 16;
	w[1] = (__u32)df << 16;
	w[2] = LB_OUTER_TTL | (__u32)proto << 8;
	w[3] = src;
	__builtin_memcpy(&w[4], dst, 4);
#pragma unroll
	for (int i = 0; i < 5; i++)
		sum += (w[i] & 0xffff) + (w[i] >> 16);
	w[2] |= (__u32)(~lb_csum_fold(sum) & 0xffff) << 16;
#pragma unroll
	for (int i = 0; i < 5; i++)
		to[i] = w[i];
}

/*
 * IPIP and GUE: outer headers in front (header, step 5). gue 0: an outer IP header whose
 * protocol is the inner family's (4 or 41); gue 1: outer IP, UDP to LB_GUE_PORT, lb_gue_hdr.
 */
static __always_inline int lb_fwd_encap(struct xdp_md *ctx, const struct lb_pkt *lp,
					const struct lb_backend *be, __u32 hash,
					const struct lb_config *cfg, __u32 gue,
					struct lb_events *ev)
{
	struct bpf_fib_lookup fib __attribute__((aligned(8))); /* zeroed by words of 8 */
	__be32 src[4] = {};
	__u32 l3 = lp->l3_off, inner_len = lp->tot_len, hdr, tos = lb_tos(lp);
	__u8 outer = be->family;
	__u8 inner_proto = lp->family == 4 ? LB_IPPROTO_IPIP : LB_IPPROTO_IPV6;
	__u8 proto = gue ? SL_IPPROTO_UDP : inner_proto;
	__be16 sport = gue ? bpf_htons(LB_GUE_SPORT(hash)) : 0;
	__be16 dport = gue ? bpf_htons(LB_GUE_PORT) : 0;
	__u32 udp_len = inner_len + LB_GUE_HLEN;
	void *data, *end;
	__u8 *p, *o;

	if (outer != 4 && outer != 6)
		return XDP_PASS;
	if (l3 < ETH_HLEN || l3 > LB_MAX_L3_OFF)
		return XDP_PASS;
	hdr = (outer == 4 ? sizeof(struct iphdr) : sizeof(struct ipv6hdr)) +
	      (gue ? LB_GUE_HLEN : 0);
	if (inner_len + hdr > 0xffff) {
		lb_event(ev, LB_EV_ENCAP_FAIL);
		return XDP_PASS;
	}
	/* GUE over IPv6 sums the inner packet for the UDP checksum: it must all be there */
	if (gue && outer == 6 &&
	    (udp_len > LB_CSUM_MAX || ctx->data_end - ctx->data < l3 + inner_len)) {
		lb_event(ev, LB_EV_ENCAP_FAIL);
		return XDP_PASS;
	}
	if (lb_outer_src(cfg, outer, hash, src)) {
		lb_event(ev, LB_EV_NO_SOURCE);
		return XDP_PASS;
	}
	if (lb_fib(ctx, &fib, outer, (const __u8 *)src, be->addr, proto, sport, dport,
		   inner_len + hdr, tos, bpf_htonl((tos << 20) | (hash & 0xfffff)), ev))
		return XDP_PASS;
	if (bpf_xdp_adjust_head(ctx, -(int)hdr)) {
		lb_event(ev, LB_EV_ENCAP_FAIL);
		return XDP_PASS;
	}
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;

	/* VLAN tags of the received frame, now hdr bytes further in, move to the front */
	p = data;
	if (p + hdr + LB_MAX_L3_OFF > (__u8 *)end)
		goto broken;
	if (l3 >= ETH_HLEN + 4)
		__builtin_memcpy(p + 12, p + hdr + 12, 4);
	if (l3 >= ETH_HLEN + 8)
		__builtin_memcpy(p + 16, p + hdr + 16, 4);
	/* the EtherType just before the outer header (its own pointer: see the header) */
	p = data + (l3 - 2);
	if (p + 2 > (__u8 *)end)
		goto broken;
	*(__be16 *)p = outer == 4 ? bpf_htons(ETH_P_IP) : bpf_htons(ETH_P_IPV6);

	o = data + l3;
	if (outer == 4) {
		__be16 df = bpf_htons(0x4000); /* set for IPv6 inside */

		if (o + sizeof(struct iphdr) > (__u8 *)end)
			goto broken;
		if (lp->family == 4) {
			struct iphdr *in = (void *)o + hdr;

			if ((void *)(in + 1) > end)
				goto broken;
			df = in->frag_off & bpf_htons(0x4000);
		}
		lb_outer4(o, tos, inner_len + hdr, df, proto, src[0], be->addr);
		o += sizeof(struct iphdr);
	} else {
		struct ipv6hdr *ip6 = (void *)o;

		if ((void *)(ip6 + 1) > end)
			goto broken;
		*(__be32 *)ip6 = bpf_htonl((6U << 28) | (tos << 20) | (hash & 0xfffff));
		ip6->payload_len = bpf_htons(inner_len + hdr - sizeof(*ip6));
		ip6->nexthdr = proto;
		ip6->hop_limit = LB_OUTER_TTL;
		__builtin_memcpy(&ip6->saddr, src, 16);
		__builtin_memcpy(&ip6->daddr, be->addr, 16);
		o += sizeof(*ip6);
	}
	if (gue) {
		struct lb_udp_gue *u = (void *)o;

		if ((void *)(u + 1) > end)
			goto broken;
		u->sport = sport;
		u->dport = dport;
		u->len = bpf_htons(udp_len);
		u->check = 0; /* none over IPv4 (RFC 768) */
		u->gue.vch = 0;
		u->gue.proto = inner_proto;
		u->gue.flags = 0;
		if (outer == 6) {
			/* RFC 8200 wants one over IPv6: the pseudo-header, then the datagram */
			const __u16 *a = (const __u16 *)src, *b = (const __u16 *)be->addr;
			int sum = lb_csum_frame(ctx, l3 + sizeof(struct ipv6hdr), udp_len);

			if (sum < 0)
				goto broken;
#pragma unroll
			for (int i = 0; i < 8; i++)
				sum += a[i] + b[i];
			sum += bpf_htons(udp_len) + bpf_htons(SL_IPPROTO_UDP);
			u->check = ~lb_csum_fold(sum) & 0xffff;
			if (!u->check)
				u->check = 0xffff;
		}
	}
	return lb_xmit(ctx, &fib, ev);

broken:
	/* not reached: the frame held l3 + hdr bytes after the parse already (and, for GUE over
	 * IPv6, the whole inner packet: checked before anything was written) */
	lb_event(ev, LB_EV_ENCAP_FAIL);
	return XDP_DROP;
}

/* Adds the change of n 16-bit words from old to new to a one's complement sum (RFC 1624). */
static __always_inline __u32 lb_csum_diff(__u32 sum, const __u16 *old, const __u16 *new, int n)
{
#pragma unroll
	for (int i = 0; i < 8; i++) {
		if (i >= n)
			break;
		sum += (__u16)~old[i];
		sum += new[i];
	}
	return sum;
}

/* A checksum field updated by a one's complement change (RFC 1624, eqn. 3). */
static __always_inline __u16 lb_csum_apply(__u16 check, __u32 change)
{
	return ~lb_csum_fold((__u16)~check + lb_csum_fold(change)) & 0xffff;
}

/* a == b for two 16-byte addresses (clang has no BPF lowering for memcmp). */
static __always_inline int lb_addr_equal(const __u8 *a, const __u8 *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

/*
 * lb_nat_remember's IPv4 entry (addresses and ports in network order), written when missing or
 * different: 0, or the update's error.
 */
static __always_inline long lb_nat4_remember(const struct lb_backend *be, __be32 client,
					     __be16 cport, __u8 proto, __be32 vip, __be16 vport,
					     __u32 svc, __be16 bport)
{
	struct lb_nat4_key nk = {};
	struct lb_nat4 nv = {}, *cur;

	__builtin_memcpy(&nk.backend, be->addr, 4);
	nk.client = client;
	nk.bport = bport;
	nk.cport = cport;
	nk.proto = proto;
	nv.vip = vip;
	nv.vport = vport;
	nv.svc = svc;
	cur = bpf_map_lookup_elem(&lb_nat4, &nk);
	if (!cur || cur->vip != nv.vip || cur->vport != nv.vport || cur->svc != nv.svc)
		return bpf_map_update_elem(&lb_nat4, &nk, &nv, BPF_ANY);
	return 0;
}

/*
 * The reverse-NAT entry of lp of service svc sent to backend be at port bport (header, step 5),
 * written when missing or different: lb_nat4 or lb_nat6, by family.
 */
static __always_inline void lb_nat_remember(const struct lb_pkt *lp, const struct lb_backend *be,
					    __u32 svc, __be16 bport, __be16 vport,
					    struct lb_events *ev)
{
	long err = 0;

	if (lp->family == 4) {
		__be32 client, vip;

		__builtin_memcpy(&client, lp->saddr, 4);
		__builtin_memcpy(&vip, lp->daddr, 4);
		err = lb_nat4_remember(be, client, bpf_htons(lp->sport), lp->proto, vip, vport, svc,
				       bport);
	} else {
		struct lb_nat6_key nk = {};
		struct lb_nat6 nv = {}, *cur;

		__builtin_memcpy(nk.backend, be->addr, 16);
		__builtin_memcpy(nk.client, lp->saddr, 16);
		nk.bport = bport;
		nk.cport = bpf_htons(lp->sport);
		nk.proto = lp->proto;
		__builtin_memcpy(nv.vip, lp->daddr, 16);
		nv.vport = vport;
		nv.svc = svc;
		cur = bpf_map_lookup_elem(&lb_nat6, &nk);
		if (!cur || cur->vport != nv.vport || cur->svc != nv.svc ||
		    !lb_addr_equal(cur->vip, nv.vip))
			err = bpf_map_update_elem(&lb_nat6, &nk, &nv, BPF_ANY);
	}
	if (err)
		lb_event(ev, LB_EV_NAT_INSERT_FAIL);
}

/* NAT: destination address and port rewritten, reverse entry written (header, step 5). */
static __always_inline int lb_fwd_nat(struct xdp_md *ctx, const struct lb_pkt *lp,
				      const struct lb_backend *be, __u32 svc, struct lb_events *ev)
{
	struct bpf_fib_lookup fib __attribute__((aligned(8))); /* zeroed by words of 8 */
	__u32 l3 = lp->l3_off, l4 = lp->l4_off, words, change;
	__be16 vport = bpf_htons(lp->dport), bport = be->port ? be->port : vport;
	void *data, *end;
	__u16 *check;
	__u8 *ip, *l4p;

	if (be->family != lp->family) {
		lb_event(ev, LB_EV_FAMILY);
		return XDP_PASS;
	}
	/* SCTP: a new port would need the CRC32c recomputed; fragments: the later pieces have no
	 * port to rewrite, so no piece gets one */
	if (lp->proto == SL_IPPROTO_SCTP || lp->frag)
		bport = vport;
	if (l3 > LB_MAX_L3_OFF || l4 > LB_MAX_L4_OFF)
		return XDP_PASS;
	if (lb_fib(ctx, &fib, lp->family, lp->saddr, be->addr, lp->proto,
		   bpf_htons(lp->sport), bport, lp->tot_len, lp->tos, lp->flowinfo, ev))
		return XDP_PASS;

	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	words = lp->family == 4 ? 2 : 8;
	/* the address change, for the IPv4 header and the L4 pseudo-header */
	change = lb_csum_diff(0, (const __u16 *)lp->daddr, (const __u16 *)be->addr,
			      words);
	ip = data + l3;
	if (lp->family == 4) {
		struct iphdr *h = (void *)ip;

		if ((void *)(h + 1) > end)
			return XDP_DROP;
		h->check = lb_csum_apply(h->check, change);
		__builtin_memcpy(&h->daddr, be->addr, 4);
	} else {
		struct ipv6hdr *h = (void *)ip;

		if ((void *)(h + 1) > end)
			return XDP_DROP;
		__builtin_memcpy(&h->daddr, be->addr, 16);
	}
	/* a later fragment carries no L4 header: its address is all there is to change */
	if (!(lp->ports))
		return lb_xmit(ctx, &fib, ev);
	change = lb_csum_diff(change, &vport, &bport, 1);
	l4p = data + l4;
	if (lp->proto == SL_IPPROTO_TCP) {
		if (l4p + 20 > (__u8 *)end)
			return XDP_DROP;
		check = (__u16 *)(l4p + 16);
		*check = lb_csum_apply(*check, change);
		*(__be16 *)(l4p + 2) = bport;
	} else if (lp->proto == SL_IPPROTO_UDP) {
		if (l4p + 8 > (__u8 *)end)
			return XDP_DROP;
		check = (__u16 *)(l4p + 6);
		if (*check || lp->family == 6) {
			*check = lb_csum_apply(*check, change);
			if (!*check)
				*check = 0xffff;
		}
		*(__be16 *)(l4p + 2) = bport;
	}

	lb_nat_remember(lp, be, svc, bport, vport, ev);
	return lb_xmit(ctx, &fib, ev);
}

/* Sends the packet to backend be of service svc by its mode (header, step 5). */
static __always_inline int lb_forward_pkt(struct xdp_md *ctx, const struct lb_pkt *lp,
					  __u8 fwd_mode, const struct lb_backend *be, __u32 hash,
					  __u32 svc, struct lb_events *ev)
{
	struct lb_config *cfg;
	__u32 zero = 0;

	switch (fwd_mode) {
	case LB_FWD_DSR:
		return lb_fwd_dsr(ctx, lp, be, ev);
	case LB_FWD_IPIP:
	case LB_FWD_GUE:
		cfg = bpf_map_lookup_elem(&lb_config, &zero);
		if (!cfg)
			return XDP_PASS;
		/* a constant `gue` at each call: IPIP's copy has none of GUE's code on its path */
		if (fwd_mode == LB_FWD_IPIP)
			return lb_fwd_encap(ctx, lp, be, hash, cfg, 0, ev);
		return lb_fwd_encap(ctx, lp, be, hash, cfg, 1, ev);
	case LB_FWD_NAT:
		return lb_fwd_nat(ctx, lp, be, svc, ev);
	}
	return XDP_PASS;
}

/* lb_forward_pkt for the general path: checked once by the verifier, whatever the parse gave. */
__noinline int lb_forward(struct xdp_md *ctx, struct lb_pkt *lp, struct lb_sel *sel,
			  struct lb_events *ev)
{
	if (!lp || !sel || !ev)
		return XDP_PASS;
	return lb_forward_pkt(ctx, lp, sel->fwd_mode, &sel->be, sel->hash, sel->svc, ev);
}

/*
 * A balanced packet's counts, written last, after forwarding (header, counters): its flow-table
 * event, its service's, and its backend's when the packet left for it (rc).
 */
static __always_inline void lb_count_packet(struct lb_events *ev, __u8 flow_event, __u32 svc,
					    __u32 backend, __u64 len, __u8 new_flow, int rc)
{
	lb_event(ev, flow_event);
	lb_count(&lb_svc_stats, svc, len, new_flow);
	if (rc == XDP_TX || rc == XDP_REDIRECT)
		lb_count(&lb_be_stats, backend, len, new_flow);
}

/*
 * lp of an lb_xdp4 packet (ip: its IPv4 header, l4: 20 bytes of TCP or UDP after it), as
 * lb_parse would fill it: for forwarding, read from the packet once selection is done.
 */
static __always_inline void lb_pkt_ipv4(struct lb_pkt *lp, const struct iphdr *ip,
					const __u8 *l4)
{
	__builtin_memset(lp, 0, sizeof(*lp));
	__builtin_memcpy(lp->saddr, &ip->saddr, 4);
	__builtin_memcpy(lp->daddr, &ip->daddr, 4);
	lp->sport = bpf_ntohs(*(__be16 *)l4);
	lp->dport = bpf_ntohs(*(__be16 *)(l4 + 2));
	lp->tot_len = bpf_ntohs(ip->tot_len);
	lp->l3_off = ETH_HLEN;
	lp->l4_off = ETH_HLEN + sizeof(*ip);
	lp->family = 4;
	lp->proto = ip->protocol;
	lp->tos = ip->tos;
	lp->ports = 1;
}

/*
 * The forwarding of lb_xdp4 packets (ip: the IPv4 header after an untagged Ethernet header,
 * l4: 20 bytes of TCP or UDP after it, both checked by lb_xdp4): lb_fwd_dsr, lb_fwd_nat and
 * lb_fwd_encap (IPIP to an IPv4 backend) as they run for such a packet, each field read from
 * the packet where it is used.
 */
static __always_inline int lb_fwd4_dsr(struct xdp_md *ctx, const struct iphdr *ip,
				       const __u8 *l4, const struct lb_backend *be,
				       struct lb_events *ev)
{
	struct bpf_fib_lookup fib __attribute__((aligned(8))); /* zeroed by words of 8 */

	if (be->family != 4) {
		lb_event(ev, LB_EV_FAMILY);
		return XDP_PASS;
	}
	if (lb_fib(ctx, &fib, 4, (const __u8 *)&ip->saddr, be->addr, ip->protocol,
		   *(__be16 *)l4, *(__be16 *)(l4 + 2), bpf_ntohs(ip->tot_len), ip->tos, 0, ev))
		return XDP_PASS;
	return lb_xmit(ctx, &fib, ev);
}

static __always_inline int lb_fwd4_nat(struct xdp_md *ctx, struct iphdr *ip, __u8 *l4,
				       const struct lb_backend *be, __u32 svc,
				       struct lb_events *ev)
{
	struct bpf_fib_lookup fib __attribute__((aligned(8))); /* zeroed by words of 8 */
	__be16 vport = *(__be16 *)(l4 + 2), bport = be->port ? be->port : vport;
	__u32 change;
	__be32 vip;
	__u16 *check;

	if (be->family != 4) {
		lb_event(ev, LB_EV_FAMILY);
		return XDP_PASS;
	}
	if (lb_fib(ctx, &fib, 4, (const __u8 *)&ip->saddr, be->addr, ip->protocol,
		   *(__be16 *)l4, bport, bpf_ntohs(ip->tot_len), ip->tos, 0, ev))
		return XDP_PASS;

	vip = ip->daddr;
	change = lb_csum_diff(0, (const __u16 *)&vip, (const __u16 *)be->addr, 2);
	ip->check = lb_csum_apply(ip->check, change);
	__builtin_memcpy(&ip->daddr, be->addr, 4);
	change = lb_csum_diff(change, &vport, &bport, 1);
	if (ip->protocol == SL_IPPROTO_TCP) {
		check = (__u16 *)(l4 + 16);
		*check = lb_csum_apply(*check, change);
	} else {
		check = (__u16 *)(l4 + 6);
		if (*check) {
			*check = lb_csum_apply(*check, change);
			if (!*check)
				*check = 0xffff;
		}
	}
	*(__be16 *)(l4 + 2) = bport;
	if (lb_nat4_remember(be, ip->saddr, *(__be16 *)l4, ip->protocol, vip, vport, svc, bport))
		lb_event(ev, LB_EV_NAT_INSERT_FAIL);
	return lb_xmit(ctx, &fib, ev);
}

static __always_inline int lb_fwd4_ipip(struct xdp_md *ctx, const struct iphdr *ip,
					const struct lb_backend *be, __u32 hash,
					const struct lb_config *cfg, struct lb_events *ev)
{
	struct bpf_fib_lookup fib __attribute__((aligned(8))); /* zeroed by words of 8 */
	__u32 inner_len = bpf_ntohs(ip->tot_len), len = inner_len + sizeof(struct iphdr);
	__u32 tos;
	__be32 src;
	void *data, *end;
	struct iphdr *in;
	__u8 *o;

	if (len > 0xffff) {
		lb_event(ev, LB_EV_ENCAP_FAIL);
		return XDP_PASS;
	}
	if (lb_outer_src(cfg, 4, hash, &src)) {
		lb_event(ev, LB_EV_NO_SOURCE);
		return XDP_PASS;
	}
	tos = ip->tos;
	if (lb_fib(ctx, &fib, 4, (const __u8 *)&src, be->addr, LB_IPPROTO_IPIP, 0, 0, len, tos, 0,
		   ev))
		return XDP_PASS;
	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct iphdr))) {
		lb_event(ev, LB_EV_ENCAP_FAIL);
		return XDP_PASS;
	}
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	o = data + ETH_HLEN;
	in = (void *)(o + sizeof(struct iphdr));
	/* not taken: the frame held the inner headers before (lb_fwd_encap's `broken`) */
	if ((void *)(in + 1) > end || data + sizeof(struct iphdr) + LB_MAX_L3_OFF > end) {
		lb_event(ev, LB_EV_ENCAP_FAIL);
		return XDP_DROP;
	}
	*(__be16 *)(data + 12) = bpf_htons(ETH_P_IP);
	lb_outer4(o, tos, len, in->frag_off & bpf_htons(0x4000), LB_IPPROTO_IPIP, src, be->addr);
	return lb_xmit(ctx, &fib, ev);
}

/*
 * lb_forward_pkt for lb_xdp4 packets: DSR, NAT, and IPIP to an IPv4 backend above; the rest
 * (GUE, IPIP to an IPv6 backend) through lb_forward_pkt, lp read from the packet.
 */
static __always_inline int lb_forward4(struct xdp_md *ctx, struct iphdr *ip, __u8 *l4,
				       __u8 fwd_mode, const struct lb_backend *be, __u32 hash,
				       __u32 svc, struct lb_events *ev)
{
	struct lb_config *cfg;
	struct lb_pkt lp;
	__u32 zero = 0;

	switch (fwd_mode) {
	case LB_FWD_DSR:
		return lb_fwd4_dsr(ctx, ip, l4, be, ev);
	case LB_FWD_NAT:
		return lb_fwd4_nat(ctx, ip, l4, be, svc, ev);
	case LB_FWD_IPIP:
		if (be->family != 4)
			break;
		cfg = bpf_map_lookup_elem(&lb_config, &zero);
		if (!cfg)
			return XDP_PASS;
		return lb_fwd4_ipip(ctx, ip, be, hash, cfg, ev);
	}
	lb_pkt_ipv4(&lp, ip, l4);
	return lb_forward_pkt(ctx, &lp, fwd_mode, be, hash, svc, ev);
}

/*
 * The fast path (header): an untagged IPv4 frame without options, not a fragment, carrying TCP
 * or UDP with 20 bytes past the IP header; anything else returns LB_SLOW before any count or
 * write. Selection reads the packet where it needs a field instead of a parse copied up front:
 * the packet stays in cache, and a copy would be held on the stack across every helper call.
 */
static __always_inline int lb_xdp4(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + ETH_HLEN;
	__u8 *l4 = (void *)(ip + 1), proto, tcp_flags;
	__u64 len = end - data;
	struct lb_choice ch;
	struct lb_config *cfg;
	struct lb_events *ev;
	struct lb_svc *svc;
	union lb_fkey k;
	__u32 zero = 0;
	int rc;

	if (l4 + 20 > (__u8 *)end || *(__be16 *)(data + 12) != bpf_htons(ETH_P_IP))
		return LB_SLOW;
	/* version 4, IHL 5; neither MF nor an offset */
	if (*(__u8 *)ip != 0x45 || (ip->frag_off & bpf_htons(0x3fff)))
		return LB_SLOW;
	proto = ip->protocol;
	if (proto == SL_IPPROTO_TCP)
		tcp_flags = l4[13];
	else if (proto == SL_IPPROTO_UDP)
		tcp_flags = 0;
	else
		return LB_SLOW;

	ev = lb_events_here();
	if (!ev)
		return XDP_PASS;
	svc = lb_find_service(ctx, 4, &ip->daddr, proto, *(__be16 *)(l4 + 2), 0, 1, ev);
	if (!svc)
		return XDP_PASS;
	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	if (!cfg) {
		lb_count(&lb_svc_stats, svc->id, len, 0);
		return XDP_PASS;
	}
	k.v4.src = ip->saddr;
	k.v4.dst = ip->daddr;
	k.w[2] = *(__u32 *)l4;
	k.v4.proto = proto;
	k.v4.pad = 0;
	k.v4.svc = svc->id;
	rc = lb_choose(svc, cfg, &k, 4, proto, tcp_flags, &ch, ev);
	if (!rc)
		rc = lb_forward4(ctx, ip, l4, svc->fwd_mode, ch.be, ch.hash, svc->id, ev);
	else
		rc = XDP_PASS;
	lb_count_packet(ev, ch.flow_event, svc->id, ch.backend, len, ch.new_flow, rc);
	return rc;
}

/* The general path (header): every packet lb_xdp4 leaves, reached from lb_xdp by tail call. */
SEC("xdp")
int lb_xdp_general(struct xdp_md *ctx)
{
	__u64 len = ctx->data_end - ctx->data;
	struct lb_events *ev;
	struct lb_pkt lp;
	struct lb_sel sel; /* not zeroed: selection writes every field read here and in
			    * forwarding before it returns 0 (svc, new_flow and flow_event
			    * before -2) */
	int rc;

	__builtin_memset(&lp, 0, sizeof(lp));
	if (lb_parse_xdp(ctx, &lp) < 0)
		return XDP_PASS;
	ev = lb_events_here();
	if (!ev)
		return XDP_PASS;
	rc = lb_select(ctx, &lp, &sel, ev);
	if (rc == -1)
		return XDP_PASS;
	if (rc < 0) {
		lb_count_packet(ev, sel.flow_event, sel.svc, 0, len, sel.new_flow, XDP_PASS);
		return XDP_PASS;
	}
	rc = lb_forward(ctx, &lp, &sel, ev);
	lb_count_packet(ev, sel.flow_event, sel.svc, sel.backend, len, sel.new_flow, rc);
	return rc;
}

/* lb_progs[LB_PROG_GENERAL] is lb_xdp_general, set by libbpf as the object loads. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32)); /* no BTF types: the kernel refuses them on a PROG_ARRAY */
	__array(values, int(struct xdp_md *));
} lb_progs SEC(".maps") = {
	.values = { [LB_PROG_GENERAL] = (void *)&lb_xdp_general },
};

SEC("xdp")
int lb_xdp(struct xdp_md *ctx)
{
	int rc = lb_xdp4(ctx);

	if (rc != LB_SLOW)
		return rc;
	bpf_tail_call_static(ctx, &lb_progs, LB_PROG_GENERAL);
	/* not reached while the object's maps are held (an fd or a pin keeps the slot) */
	return XDP_PASS;
}

/* ---- the reverse NAT path (TC) ---- */

SEC("tc")
int lb_nat_tc(struct __sk_buff *skb)
{
	__u8 backend[16] __attribute__((aligned(4))), vip[16] __attribute__((aligned(4)));
	struct lb_events *ev;
	struct lb_pkt lp;
	__u32 l3, l4, csum_off, udp;
	__be16 sport, vport;
	int rc;

	__builtin_memset(&lp, 0, sizeof(lp));
	rc = lb_parse_tc(skb, &lp);
	if (rc < 0 && lp.status == SL_PARSE_TRUNCATED) {
		__u32 len = skb->len, linear = skb->data_end - skb->data;

		if (len > LB_TC_PULL_MAX)
			len = LB_TC_PULL_MAX;
		if (len > linear && !bpf_skb_pull_data(skb, len)) {
			__builtin_memset(&lp, 0, sizeof(lp));
			rc = lb_parse_tc(skb, &lp);
		}
	}
	if (rc < 0 || lp.frag)
		return TC_ACT_OK;

	sport = bpf_htons(lp.sport);
	__builtin_memcpy(backend, lp.saddr, 16);
	if (lp.family == 4) {
		struct lb_nat4_key nk = {};
		struct lb_nat4 *n;

		__builtin_memcpy(&nk.backend, lp.saddr, 4);
		__builtin_memcpy(&nk.client, lp.daddr, 4);
		nk.bport = sport;
		nk.cport = bpf_htons(lp.dport);
		nk.proto = lp.proto;
		n = bpf_map_lookup_elem(&lb_nat4, &nk);
		if (!n)
			return TC_ACT_OK;
		__builtin_memset(vip, 0, 16);
		__builtin_memcpy(vip, &n->vip, 4);
		vport = n->vport;
	} else {
		struct lb_nat6_key nk = {};
		struct lb_nat6 *n;

		__builtin_memcpy(nk.backend, lp.saddr, 16);
		__builtin_memcpy(nk.client, lp.daddr, 16);
		nk.bport = sport;
		nk.cport = bpf_htons(lp.dport);
		nk.proto = lp.proto;
		n = bpf_map_lookup_elem(&lb_nat6, &nk);
		if (!n)
			return TC_ACT_OK;
		__builtin_memcpy(vip, n->vip, 16);
		vport = n->vport;
	}

	l3 = lp.l3_off;
	l4 = lp.l4_off;
	udp = lp.proto == SL_IPPROTO_UDP;
	csum_off = l4 + (udp ? 6 : 16);
	if (lp.family == 4) {
		__be32 from, to;

		__builtin_memcpy(&from, backend, 4);
		__builtin_memcpy(&to, vip, 4);
		if (bpf_l3_csum_replace(skb, l3 + offsetof(struct iphdr, check), from, to, 4))
			return TC_ACT_OK;
		if (lp.proto != SL_IPPROTO_SCTP &&
		    bpf_l4_csum_replace(skb, csum_off, from, to,
					BPF_F_PSEUDO_HDR | 4 | (udp ? BPF_F_MARK_MANGLED_0 : 0)))
			return TC_ACT_OK;
		if (bpf_skb_store_bytes(skb, l3 + offsetof(struct iphdr, saddr), &to, 4, 0))
			return TC_ACT_OK;
	} else {
		__s64 diff = bpf_csum_diff((__be32 *)backend, 16, (__be32 *)vip, 16, 0);

		if (lp.proto != SL_IPPROTO_SCTP &&
		    bpf_l4_csum_replace(skb, csum_off, 0, diff,
					BPF_F_PSEUDO_HDR | (udp ? BPF_F_MARK_MANGLED_0 : 0)))
			return TC_ACT_OK;
		if (bpf_skb_store_bytes(skb, l3 + offsetof(struct ipv6hdr, saddr), vip, 16, 0))
			return TC_ACT_OK;
	}
	if (sport != vport && lp.proto != SL_IPPROTO_SCTP) {
		if (bpf_l4_csum_replace(skb, csum_off, sport, vport,
					2 | (udp ? BPF_F_MARK_MANGLED_0 : 0)))
			return TC_ACT_OK;
		if (bpf_skb_store_bytes(skb, l4, &vport, 2, 0))
			return TC_ACT_OK;
	}
	ev = lb_events_here();
	if (ev)
		lb_event(ev, LB_EV_NAT_REVERSE);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
