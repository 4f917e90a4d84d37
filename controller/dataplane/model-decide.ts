// The reference model of the pipeline: parses a frame as pipeline.bpf.c does and decides it by trying each rule in order.
//
// This file is the specification the C program and the classifier tables are tested against, so
// it is written for clarity, not speed, and shares nothing with classify.ts.
//
// Parse semantics (the C program implements the same):
//  - Ethernet: fewer than 14 bytes → truncated. Up to two VLAN tags (TPID 0x8100 or 0x88a8, in
//    any order); the packet's VLAN is the OUTER tag's 12-bit VID; untagged → none. A tag cut short
//    → truncated. A third VLAN TPID after two tags → non-IP (not malformed). Any EtherType other
//    than IPv4 and IPv6 (ARP, 802.3 lengths, MPLS, …) → non-IP.
//  - IPv4 (0x0800): fewer than 20 bytes → truncated; version != 4 or IHL < 5 → malformed; IHL * 4
//    past the end → truncated. Fragment offset != 0 → a later fragment: the protocol is known,
//    there are no L4 fields. The total length is not checked.
//  - IPv6 (0x86DD): fewer than 40 bytes → truncated; version != 6 → malformed. Extension headers
//    hop-by-hop (0), routing (43) and destination options (60) take (hdrlen + 1) * 8 bytes, the
//    fragment header (44) 8; one that does not fit → truncated. A fragment header with offset != 0
//    makes a later fragment: the protocol is its next header and the walk stops; with offset 0 the
//    walk goes on. At most 8 extension headers: meeting a 9th → malformed (before its bytes are
//    checked). The protocol is the next header after the chain.
//  - L4, only when not a later fragment: TCP (6) needs 20 bytes (ports; flags are byte 13), UDP
//    (17) 8, SCTP (132) 12 (ports), ICMP (1, on IPv4 only) and ICMPv6 (58, on IPv6 only) 4 (type,
//    code); fewer → truncated. Other protocols have no L4 fields (nor can they be truncated).
//  - A non-IP frame has no address, protocol, port, ICMP or flag fields: rules constraining them
//    do not match it; rules constraining only the VLAN (or nothing) do.
//
// Decision: malformed and truncated frames take the rule set's `malformed` action and try no
// rule. Otherwise the rules are tried in position order. A rule whose fields (all but the filter)
// match is a candidate; each candidate tried costs one step, whether its filter then misses, it
// counts, or it decides. A rule failing a field other than the filter is no candidate and costs
// nothing. Count rules are counted and the walk goes on; any other action decides (ratelimit is
// reported as 'ratelimit': the bucket decides pass or drop). After SL_MAX_STEPS steps without a
// decision, the default action applies with event 'step_limit' if a further candidate exists
// (the limit cut the walk short), else with 'default'.
import { compileFilter, runCbpf, type CbpfInsn } from '../../bpf/filter/index.js';
import { SL_MAX_STEPS } from './abi.js';
import {
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_SCTP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  addressInPrefix,
  type Rule,
  type SetAction,
} from './model.js';

/** Whether a frame parsed, and if not, why. */
export type ParseStatus = 'ok' | 'malformed' | 'truncated';

/** The fields of a frame, as the pipeline's parser fills its struct. */
export interface ParsedPacket {
  status: ParseStatus;
  /** VLAN tags parsed (0, 1 or 2). */
  tags: number;
  /** The outer tag's VID; absent when untagged. */
  vlan?: number;
  /** The EtherType after the tags (0x0800, 0x86dd, 0x0806, …; a third TPID when tags ran out). */
  etherType?: number;
  /** 4 or 6 for IP frames; absent for non-IP. */
  family?: 4 | 6;
  src?: Uint8Array;
  dst?: Uint8Array;
  /** IPv4 protocol, or the IPv6 next header after the extension headers. */
  proto?: number;
  /** A fragment with offset != 0: no L4 fields. */
  laterFragment: boolean;
  /** IPv6 extension headers walked. */
  extHeaders: number;
  l3Offset?: number;
  l4Offset?: number;
  sport?: number;
  dport?: number;
  icmp?: { type: number; code: number; icmpv6: boolean };
  /** TCP flags byte (offset 13 of the TCP header). */
  tcpFlags?: number;
}

/** Options of parsePacket. */
export interface ParseOptions {
  /**
   * The hook the frame was seen at. Both parse the same bytes: at TC the frame is the skb's
   * linear data from the Ethernet header, as BPF_PROG_TEST_RUN builds it; a VLAN tag a driver
   * moved into skb metadata is not in those bytes and so not seen.
   */
  hook?: 'xdp' | 'tc';
}

const ETH_P_IP = 0x0800;
const ETH_P_IPV6 = 0x86dd;
const ETH_P_8021Q = 0x8100;
const ETH_P_8021AD = 0x88a8;
/** Most IPv6 extension headers walked; a 9th is malformed. */
export const MAX_EXT_HEADERS = 8;

/** Parses a frame with the pipeline's semantics (see this file's header). Never throws. */
export function parsePacket(frame: Uint8Array, _opts: ParseOptions = {}): ParsedPacket {
  const p: ParsedPacket = { status: 'ok', tags: 0, laterFragment: false, extHeaders: 0 };
  const len = frame.length;
  const u16 = (at: number): number => (frame[at] << 8) | frame[at + 1];
  if (len < 14) return { ...p, status: 'truncated' };
  let type = u16(12);
  let off = 14;
  while ((type === ETH_P_8021Q || type === ETH_P_8021AD) && p.tags < 2) {
    if (off + 4 > len) return { ...p, status: 'truncated' };
    if (p.tags === 0) p.vlan = u16(off) & 0xfff;
    p.tags++;
    type = u16(off + 2);
    off += 4;
  }
  p.etherType = type;
  if (type === ETH_P_IP) {
    p.l3Offset = off;
    if (off + 20 > len) return { ...p, status: 'truncated' };
    const version = frame[off] >> 4;
    const ihl = frame[off] & 0xf;
    if (version !== 4 || ihl < 5) return { ...p, status: 'malformed' };
    if (off + ihl * 4 > len) return { ...p, status: 'truncated' };
    p.family = 4;
    p.proto = frame[off + 9];
    p.src = frame.slice(off + 12, off + 16);
    p.dst = frame.slice(off + 16, off + 20);
    p.laterFragment = (u16(off + 6) & 0x1fff) !== 0;
    off += ihl * 4;
  } else if (type === ETH_P_IPV6) {
    p.l3Offset = off;
    if (off + 40 > len) return { ...p, status: 'truncated' };
    if (frame[off] >> 4 !== 6) return { ...p, status: 'malformed' };
    p.family = 6;
    p.src = frame.slice(off + 8, off + 24);
    p.dst = frame.slice(off + 24, off + 40);
    let next = frame[off + 6];
    off += 40;
    for (;;) {
      if (next !== 0 && next !== 43 && next !== 60 && next !== 44) break;
      if (p.extHeaders === MAX_EXT_HEADERS) return { ...p, proto: next, status: 'malformed' };
      p.extHeaders++;
      if (next === 44) {
        if (off + 8 > len) return { ...p, status: 'truncated' };
        const fragOffset = u16(off + 2) >> 3;
        next = frame[off];
        off += 8;
        if (fragOffset !== 0) {
          p.laterFragment = true;
          break;
        }
      } else {
        if (off + 2 > len) return { ...p, status: 'truncated' };
        const size = (frame[off + 1] + 1) * 8;
        if (off + size > len) return { ...p, status: 'truncated' };
        next = frame[off];
        off += size;
      }
    }
    p.proto = next;
  } else {
    return p;
  }
  if (p.laterFragment) return p;
  p.l4Offset = off;
  const need = (n: number): boolean => off + n <= len;
  switch (p.proto) {
    case IPPROTO_TCP:
      if (!need(20)) return { ...p, status: 'truncated' };
      p.sport = u16(off);
      p.dport = u16(off + 2);
      p.tcpFlags = frame[off + 13];
      break;
    case IPPROTO_UDP:
      if (!need(8)) return { ...p, status: 'truncated' };
      p.sport = u16(off);
      p.dport = u16(off + 2);
      break;
    case IPPROTO_SCTP:
      if (!need(12)) return { ...p, status: 'truncated' };
      p.sport = u16(off);
      p.dport = u16(off + 2);
      break;
    case IPPROTO_ICMP:
    case IPPROTO_ICMPV6: {
      const icmpv6 = p.proto === IPPROTO_ICMPV6;
      if (icmpv6 !== (p.family === 6)) break; // ICMP on IPv6 or ICMPv6 on IPv4: no L4 fields
      if (!need(4)) return { ...p, status: 'truncated' };
      p.icmp = { type: frame[off], code: frame[off + 1], icmpv6 };
      break;
    }
    default:
      break;
  }
  return p;
}

/** The verdict decide() reaches; 'ratelimit' leaves pass or drop to the rule's bucket. */
export type Verdict = 'pass' | 'drop' | 'redirect' | 'ratelimit';
/** Why a packet took an unusual path (the sl_events the decision accounts for). */
export type DecisionEvent = 'malformed' | 'truncated' | 'default' | 'step_limit';

/** What decide() (and evaluateTables()) concluded about one frame. */
export interface Decision {
  verdict: Verdict;
  /** Positions counted, in order: every count rule that matched, then the deciding rule. */
  matched: number[];
  /** Absent when a rule decided. */
  event?: DecisionEvent;
  /** Candidates tried (at most SL_MAX_STEPS). */
  steps: number;
}

/** The sets (by name) whose prefixes hold an address. */
export type SetMembership = (family: 4 | 6, addr: Uint8Array) => ReadonlySet<string>;
/** Whether a tcpdump expression matches a frame. */
export type FilterMatch = (expression: string, frame: Uint8Array) => boolean;

const compiledFilters = new Map<string, CbpfInsn[]>();

/**
 * The filter semantics of the pipeline's filter bank: the expression compiled by bpf/filter
 * and run as classic BPF over the frame (wire length = frame length); it matches when it
 * returns non-zero. Compiled programs are cached by expression. Throws the filter compiler's
 * errors for an expression that does not compile.
 */
export function defaultFilterMatch(expression: string, frame: Uint8Array): boolean {
  let insns = compiledFilters.get(expression);
  if (!insns) {
    insns = compileFilter(expression);
    compiledFilters.set(expression, insns);
  }
  return runCbpf(insns, frame, frame.length) !== 0;
}

/** True when the packet matches every field of the rule but its filter. */
export function matchesFields(
  rule: Rule,
  packet: ParsedPacket,
  setsOf: (which: 'src' | 'dst') => ReadonlySet<string>,
): boolean {
  const { family } = packet;
  if (rule.src && (family === undefined || !addressInPrefix(rule.src, family, packet.src!)))
    return false;
  if (rule.dst && (family === undefined || !addressInPrefix(rule.dst, family, packet.dst!)))
    return false;
  if (rule.srcSet !== undefined && (family === undefined || !setsOf('src').has(rule.srcSet)))
    return false;
  if (rule.dstSet !== undefined && (family === undefined || !setsOf('dst').has(rule.dstSet)))
    return false;
  if (rule.proto !== undefined && packet.proto !== rule.proto) return false;
  if (rule.sport) {
    const port = packet.sport;
    if (port === undefined || port < rule.sport[0] || port > rule.sport[1]) return false;
  }
  if (rule.dport) {
    const port = packet.dport;
    if (port === undefined || port < rule.dport[0] || port > rule.dport[1]) return false;
  }
  if (rule.icmp) {
    const icmp = packet.icmp;
    if (!icmp || icmp.icmpv6 !== (rule.icmp.family === 6) || icmp.type !== rule.icmp.type)
      return false;
    if (rule.icmp.code !== undefined && icmp.code !== rule.icmp.code) return false;
  }
  if (rule.vlan !== undefined && packet.vlan !== rule.vlan) return false;
  if (rule.tcpFlags) {
    const f = packet.tcpFlags;
    if (f === undefined) return false;
    if ((f & rule.tcpFlags.set) !== rule.tcpFlags.set || (f & rule.tcpFlags.unset) !== 0)
      return false;
  }
  return true;
}

/**
 * Decides one frame by trying each rule in order (see this file's header for the parse and the
 * step rule). `rules` are in position order; `sets` tells which sets hold an address;
 * `filterMatch` defaults to `defaultFilterMatch`. Never throws but for what `sets` or
 * `filterMatch` throw.
 */
export function decide(
  rules: readonly Rule[],
  ruleSet: { defaultAction: SetAction; malformed: SetAction },
  sets: SetMembership,
  frame: Uint8Array,
  filterMatch: FilterMatch = defaultFilterMatch,
  opts: ParseOptions = {},
): Decision {
  const packet = parsePacket(frame, opts);
  if (packet.status !== 'ok')
    return { verdict: ruleSet.malformed, matched: [], event: packet.status, steps: 0 };
  const memo: Partial<Record<'src' | 'dst', ReadonlySet<string>>> = {};
  const setsOf = (which: 'src' | 'dst'): ReadonlySet<string> =>
    (memo[which] ??= sets(packet.family!, which === 'src' ? packet.src! : packet.dst!));
  const matched: number[] = [];
  let steps = 0;
  for (let pos = 0; pos < rules.length; pos++) {
    const rule = rules[pos];
    if (!matchesFields(rule, packet, setsOf)) continue;
    if (steps === SL_MAX_STEPS)
      return { verdict: ruleSet.defaultAction, matched, event: 'step_limit', steps };
    steps++;
    if (rule.filter !== undefined && !filterMatch(rule.filter, frame)) continue;
    matched.push(pos);
    if (rule.action === 'count') continue;
    return { verdict: rule.action, matched, steps };
  }
  return { verdict: ruleSet.defaultAction, matched, event: 'default', steps };
}
