// The rule model of one attachment: the plain specs users give (rules, rule sets, prefix sets), their validation and normalised form.
import { isIPv6 } from 'node:net';
import { compileFilter } from '../../bpf/filter/index.js';
import {
  SL_MAX_FILTERS,
  SL_MAX_LIMITERS,
  SL_MAX_REDIRECTS,
  SL_MAX_RULES,
  SL_MAX_SETS,
} from './abi.js';
import {
  FilterInvalidError,
  LimitExceededError,
  LimitInvalidError,
  PrefixInvalidError,
  RuleInvalidError,
  RuleSetInvalidError,
  SetInvalidError,
  SetNotFoundError,
  describeRule,
  isFilterCompileError,
  type RuleRef,
} from './errors.js';

// ---------------------------------------------------------------------------------------------
// IP protocol numbers the model names

/** ICMP for IPv4. */
export const IPPROTO_ICMP = 1;
/** TCP. */
export const IPPROTO_TCP = 6;
/** UDP. */
export const IPPROTO_UDP = 17;
/** ICMPv6. */
export const IPPROTO_ICMPV6 = 58;
/** SCTP. */
export const IPPROTO_SCTP = 132;

// ---------------------------------------------------------------------------------------------
// Prefixes

/** An IPv4 or IPv6 prefix; `addr` is in network order with every bit past `len` zero. */
export interface Prefix {
  family: 4 | 6;
  /** 4 or 16 bytes. */
  addr: Uint8Array;
  /** 0..32 or 0..128. */
  len: number;
}

/** Context a prefix error names: a rule's field or a set's entry. */
type PrefixWhere = Omit<
  ConstructorParameters<typeof PrefixInvalidError>[1],
  'prefix' | 'canonical'
>;

/** How a prefix error opens: `prefix`, `rule "web": src`, `set "x": prefixes[3]`. */
function prefixWhere(where: PrefixWhere & { what?: string }): string {
  if (where.what !== undefined) return `${where.what}: prefix`;
  if (where.set !== undefined) return `set "${where.set}": prefixes[${where.entry ?? 0}]`;
  if (where.ruleIndex !== undefined)
    return `${describeRule({ ruleIndex: where.ruleIndex, ruleId: where.ruleId })}: ${where.field}`;
  return 'prefix';
}

function parseIpv4Bytes(text: string, out: Uint8Array, at: number): void {
  const parts = text.split('.');
  for (let i = 0; i < 4; i++) out[at + i] = Number(parts[i]);
}

/**
 * Parses a dotted quad in text[0, end) as node:net's isIPv4 accepts it (four decimal octets up
 * to 255, no leading zeros), without a regular expression or allocation but the result: sets
 * take millions of prefixes. Undefined when it is not one.
 */
function parseIpv4Fast(text: string, end: number): Uint8Array | undefined {
  const out = new Uint8Array(4);
  let part = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= end; i++) {
    const c = i < end ? text.charCodeAt(i) : 46; // a final "." closes the last octet
    if (c === 46) {
      if (digits === 0 || part > 3) return undefined;
      out[part++] = value;
      value = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && value === 0) return undefined; // leading zero
      value = value * 10 + (c - 48);
      if (value > 255) return undefined;
      digits++;
    } else {
      return undefined;
    }
  }
  return part === 4 ? out : undefined;
}

/** Parses an address node:net already accepted as IPv6 (with "::" and a dotted-quad tail). */
function parseIpv6Bytes(text: string): Uint8Array {
  const out = new Uint8Array(16);
  let body = text;
  let tail: Uint8Array | undefined;
  if (body.includes('.')) {
    const cut = body.lastIndexOf(':');
    tail = new Uint8Array(4);
    parseIpv4Bytes(body.slice(cut + 1), tail, 0);
    body = body.slice(0, cut + 1);
    // "::1.2.3.4" leaves "::"; "1::1.2.3.4" leaves "1::"; "1:2:3:4:5:6:1.2.3.4" leaves a trailing ":"
    if (body.endsWith(':') && !body.endsWith('::')) body = body.slice(0, -1);
  }
  const groupsOf = (s: string): number[] =>
    s === '' ? [] : s.split(':').map((g) => parseInt(g, 16));
  const room = tail ? 6 : 8;
  let groups: number[];
  const gap = body.indexOf('::');
  if (gap >= 0) {
    const left = groupsOf(body.slice(0, gap));
    const right = groupsOf(body.slice(gap + 2));
    groups = [...left, ...new Array<number>(room - left.length - right.length).fill(0), ...right];
  } else {
    groups = groupsOf(body);
  }
  for (let i = 0; i < room; i++) {
    out[i * 2] = groups[i] >>> 8;
    out[i * 2 + 1] = groups[i] & 0xff;
  }
  if (tail) out.set(tail, 12);
  return out;
}

/** The address in a prefix's text form: dotted quad, or RFC 5952 for IPv6. */
export function formatAddress(family: 4 | 6, addr: Uint8Array): string {
  if (family === 4) return `${addr[0]}.${addr[1]}.${addr[2]}.${addr[3]}`;
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push((addr[i * 2] << 8) | addr[i * 2 + 1]);
  // IPv4-mapped addresses keep the dotted quad (RFC 5952 section 5)
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff)
    return `::ffff:${addr[12]}.${addr[13]}.${addr[14]}.${addr[15]}`;
  let bestAt = -1;
  let bestLen = 1; // a single zero group is not shortened (RFC 5952 section 4.2.2)
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestAt < 0) return hex.join(':');
  return `${hex.slice(0, bestAt).join(':')}::${hex.slice(bestAt + bestLen).join(':')}`;
}

/** "10.0.0.0/8", "2001:db8::/32": the canonical text of a prefix. */
export function formatPrefix(prefix: Prefix): string {
  return `${formatAddress(prefix.family, prefix.addr)}/${prefix.len}`;
}

/** Clears every bit of `addr` past the first `len` bits, in place; returns whether any was set. */
function maskHostBits(addr: Uint8Array, len: number): boolean {
  let changed = false;
  for (let i = len >>> 3; i < addr.length; i++) {
    const keep = Math.max(0, Math.min(8, len - i * 8));
    const m = (0xff << (8 - keep)) & 0xff;
    if ((addr[i] & ~m) !== 0) {
      changed = true;
      addr[i] &= m;
    }
  }
  return changed;
}

/** True when a bit past `len` is set. */
function hasHostBits(addr: Uint8Array, len: number): boolean {
  for (let i = len >>> 3; i < addr.length; i++) {
    const keep = Math.max(0, Math.min(8, len - i * 8));
    if ((addr[i] & ~((0xff << (8 - keep)) & 0xff)) !== 0) return true;
  }
  return false;
}

/** Throws the PrefixInvalidError for `text` at `where`. */
function prefixFail(
  text: unknown,
  where: PrefixWhere & { what?: string },
  why: string,
  canonical?: string,
): never {
  const shown = typeof text === 'string' ? `"${text}"` : (JSON.stringify(text) ?? String(text));
  throw new PrefixInvalidError(`${prefixWhere(where)} ${shown} ${why}`, {
    ...where,
    prefix: typeof text === 'string' ? text : String(text),
    ...(canonical !== undefined ? { canonical } : {}),
  });
}

// No closures here: sets pass millions of prefixes through this function.
function parsePrefixAt(text: unknown, where: PrefixWhere & { what?: string }): Prefix {
  if (typeof text !== 'string')
    return prefixFail(
      text,
      where,
      'is not a string: expected a prefix such as "192.0.2.0/24" or "2001:db8::/32"',
    );
  const slash = text.indexOf('/');
  const addrEnd = slash < 0 ? text.length : slash;
  let family: 4 | 6;
  let addr: Uint8Array | undefined = parseIpv4Fast(text, addrEnd);
  const addrText = addr ? '' : text.slice(0, addrEnd);
  if (addr) {
    family = 4;
  } else if (isIPv6(addrText) && !addrText.includes('%')) {
    family = 6;
    addr = parseIpv6Bytes(addrText);
  } else if (addrText.includes('%') && isIPv6(addrText)) {
    return prefixFail(text, where, 'has a zone index: prefixes have none');
  } else {
    return prefixFail(
      text,
      where,
      'is not an IPv4 or IPv6 prefix: expected an address with an optional length, such as "192.0.2.0/24" or "2001:db8::/32"',
    );
  }
  const max = family === 4 ? 32 : 128;
  let len = max;
  if (slash >= 0) {
    // 1 to 3 digits, no leading zero, at most `max`
    const n = text.length - slash - 1;
    let value = 0;
    let ok = n >= 1 && n <= 3 && !(n > 1 && text.charCodeAt(slash + 1) === 48);
    for (let i = slash + 1; ok && i < text.length; i++) {
      const c = text.charCodeAt(i);
      ok = c >= 48 && c <= 57;
      value = value * 10 + (c - 48);
    }
    if (!ok || value > max)
      return prefixFail(text, where, `has a bad length: expected 0 to ${max} after "/"`);
    len = value;
  }
  if (hasHostBits(addr, len)) {
    const masked = addr.slice();
    maskHostBits(masked, len);
    const canonical = formatPrefix({ family, addr: masked, len });
    return prefixFail(text, where, `has host bits set: did you mean "${canonical}"?`, canonical);
  }
  return { family, addr, len };
}

/**
 * Parses an IPv4 or IPv6 prefix: "10.0.0.0/8", "2001:db8::/32", or a bare address (a /32 or
 * /128). IPv6 takes "::" and a dotted-quad tail ("::ffff:192.0.2.1"). Throws `PrefixInvalidError`
 * for anything else, for a zone index ("fe80::1%eth0"), and for host bits set past the length
 * (naming the canonical form: `prefix "10.0.0.1/8" has host bits set: did you mean "10.0.0.0/8"?`).
 * `what`, when given, opens the message: `set "x" prefix #3: prefix "…" …`.
 */
export function parsePrefix(text: string, what?: string): Prefix {
  return parsePrefixAt(text, what === undefined ? {} : { what });
}

/** A string equal for equal prefixes (family, length, address), for maps and sets of prefixes. */
export function prefixKey(prefix: Prefix): string {
  const a = prefix.addr;
  if (prefix.family === 4)
    return `4/${prefix.len}/${((a[0] << 24) | (a[1] << 16) | (a[2] << 8) | a[3]) >>> 0}`;
  let text = `6/${prefix.len}/`;
  for (let i = 0; i < 16; i += 2) text += String.fromCharCode((a[i] << 8) | a[i + 1]);
  return text;
}

/** True when `outer` contains `inner` (same family, no longer, equal in outer's bits). */
export function prefixContains(outer: Prefix, inner: Prefix): boolean {
  return (
    outer.family === inner.family &&
    outer.len <= inner.len &&
    addressInPrefix(outer, inner.family, inner.addr)
  );
}

/** True when the address (4 or 16 bytes, network order) of that family is in the prefix. */
export function addressInPrefix(prefix: Prefix, family: 4 | 6, addr: Uint8Array): boolean {
  if (prefix.family !== family) return false;
  const full = prefix.len >>> 3;
  for (let i = 0; i < full; i++) if (prefix.addr[i] !== addr[i]) return false;
  const rest = prefix.len & 7;
  if (rest === 0) return true;
  const m = (0xff << (8 - rest)) & 0xff;
  return (prefix.addr[full] & m) === (addr[full] & m);
}

// ---------------------------------------------------------------------------------------------
// Specs

/** What a rule does with a packet it matches. */
export type RuleAction = 'drop' | 'pass' | 'count' | 'ratelimit' | 'redirect';
/** What a rule set does with packets no rule decides, or that it cannot parse. */
export type SetAction = 'pass' | 'drop';
/** IP protocol names a rule takes; any other protocol by number (0..255). */
export type ProtoName = 'tcp' | 'udp' | 'icmp' | 'icmpv6' | 'sctp';
/** A port (80), an inclusive range ([1024, 65535]), or either as text ("80", "1024-65535"). */
export type PortSpec = number | readonly [number, number] | string;

/**
 * One rule as users give it. Every field but `action` is optional; a rule matches a packet
 * when every field given matches (a field left out matches anything, including packets that
 * lack that header).
 */
export interface RuleSpec {
  /** Stable name, unique in the rule set: letters, digits, "_", ".", "-", at most 64. */
  id?: string;
  /** Lower is tried first; equal priorities keep the order given. Default 1000. */
  priority?: number;
  /** Source prefix ("192.0.2.0/24", "2001:db8::/32", a bare address). */
  src?: string;
  /** Destination prefix. */
  dst?: string;
  /** Name of a prefix set holding the source address. May be given with `src` (both must hold). */
  srcSet?: string;
  /** Name of a prefix set holding the destination address. */
  dstSet?: string;
  /**
   * IP protocol: a name or a number 0..255, matched against the IPv4 protocol or the IPv6 next
   * header after the extension headers, in either family unless an address says which ("icmp" is
   * 1 and also matches an IPv6 packet whose next header is 1; ICMP fields need the right family).
   */
  proto?: ProtoName | number;
  /** TCP/UDP/SCTP source port or range; without `proto`, matches those three. */
  sport?: PortSpec;
  /** TCP/UDP/SCTP destination port or range. */
  dport?: PortSpec;
  /** ICMP type and optional code; needs `proto` "icmp" (ICMPv4) or "icmpv6". */
  icmp?: { type: number; code?: number };
  /** Outer 802.1Q/802.1ad VLAN id, 0..4095; untagged packets never match. */
  vlan?: number;
  /**
   * TCP flags: "syn,!ack" (names fin syn rst psh ack urg ece cwr; "!" = must be clear), or
   * masks { set, unset }. Implies TCP; `proto` may only be "tcp".
   */
  tcpFlags?: string | { set: number; unset: number };
  /** A tcpdump (pcap-filter) expression the packet must also match. */
  filter?: string;
  action: RuleAction;
  /**
   * For "ratelimit": packets ("1000pps", "10kpps", a bare number) or bits per second
   * ("500kbit", "10mbit", "2gbit"; "kibit" etc. count by 1024), or bytes per second as tc
   * spells them ("64kbps" = 64000 bytes = 512000 bits per second).
   */
  rate?: string | number;
  /** Bucket depth: packets for a packet rate, bytes for a bit or byte rate. */
  burst?: number;
  /** One bucket per source address instead of one for the rule. */
  perSource?: boolean;
  /** For "redirect": the device to send the packet out of. */
  to?: string;
  /** For "redirect": a static next-hop MAC ("aa:bb:cc:dd:ee:ff"); default from the FIB. */
  via?: string;
}

/** The desired rule set of one attachment. */
export interface RuleSetSpec {
  rules: RuleSpec[];
  /** For packets no rule decides. Default "pass". */
  defaultAction?: SetAction;
  /** For malformed and truncated packets. Default "drop": they would slip past address rules. */
  malformed?: SetAction;
}

/** A named prefix set, shared by every attachment of the instance. */
export interface SetSpec {
  /** Letters, digits, "_", ".", "-", 1 to 64 characters. */
  name: string;
  /** IPv4 and IPv6 prefixes in any mix; duplicates are merged. */
  prefixes: string[];
}

// ---------------------------------------------------------------------------------------------
// Normalised forms

/** An inclusive port range. */
export type PortRange = readonly [number, number];

/** A rule's ICMP match: family 4 for ICMP, 6 for ICMPv6; no code means every code. */
export interface IcmpMatch {
  family: 4 | 6;
  type: number;
  code?: number;
}

/** A TCP flags match: `(flags & set) === set && (flags & unset) === 0`. */
export interface TcpFlagsMatch {
  set: number;
  unset: number;
}

/** A rate limit in the kernel's units (struct sl_limiter). */
export interface Limiter {
  /** Per second: packets or bits. */
  rate: number;
  /** Bucket depth: packets or bits. */
  burst: number;
  unit: 'packets' | 'bits';
  perSource: boolean;
}

/** A redirect target. */
export interface Redirect {
  /** Device name. */
  to: string;
  /** Its ifindex, when the validation context knew the device's. */
  ifindex?: number;
  /** Static next-hop MAC (6 bytes); absent: from the FIB. */
  via?: Uint8Array;
}

/** A validated rule: parsed, range-checked and consistent. */
export interface Rule {
  /** Index in `RuleSetSpec.rules`. */
  index: number;
  /**
   * The rule's identity, stable while the rule exists (counters and limiter slots hang on it):
   * the id given, else "~" and 14 hex digits of a hash of the rule's fields but `priority`, then
   * ".2", ".3", … for repeats of an equal rule. Users' ids cannot start with "~".
   */
  id: string;
  /** True when `id` was given, false when generated. */
  idGiven: boolean;
  priority: number;
  src?: Prefix;
  dst?: Prefix;
  srcSet?: string;
  dstSet?: string;
  /** 0..255. */
  proto?: number;
  sport?: PortRange;
  dport?: PortRange;
  icmp?: IcmpMatch;
  /** 0..4095. */
  vlan?: number;
  tcpFlags?: TcpFlagsMatch;
  filter?: string;
  action: RuleAction;
  /** Present exactly for "ratelimit". */
  limit?: Limiter;
  /** Present exactly for "redirect". */
  redirect?: Redirect;
}

/** A rule set's own actions, defaults applied. */
export interface RuleSetActions {
  defaultAction: SetAction;
  malformed: SetAction;
}

/** A validated prefix set. */
export interface PrefixSet {
  name: string;
  /** Distinct prefixes, in the order first given. */
  prefixes: Prefix[];
}

/** What validateRuleSet checks names against. */
export interface ValidationContext {
  /** The prefix sets that exist (a Map: name → set bit). */
  sets: ReadonlySet<string> | ReadonlyMap<string, number>;
  /** When given, the devices a redirect may name (a Map: name → ifindex). */
  devices?: ReadonlySet<string> | ReadonlyMap<string, number>;
}

// ---------------------------------------------------------------------------------------------
// Rule validation

const RULE_FIELDS = [
  'id',
  'priority',
  'src',
  'dst',
  'srcSet',
  'dstSet',
  'proto',
  'sport',
  'dport',
  'icmp',
  'vlan',
  'tcpFlags',
  'filter',
  'action',
  'rate',
  'burst',
  'perSource',
  'to',
  'via',
] as const;
const RULE_FIELD_SET: ReadonlySet<string> = new Set(RULE_FIELDS);

const ACTIONS: readonly RuleAction[] = ['drop', 'pass', 'count', 'ratelimit', 'redirect'];
const PROTO_NUMBERS: Readonly<Record<ProtoName, number>> = {
  tcp: IPPROTO_TCP,
  udp: IPPROTO_UDP,
  icmp: IPPROTO_ICMP,
  icmpv6: IPPROTO_ICMPV6,
  sctp: IPPROTO_SCTP,
};
const TCP_FLAG_BITS: Readonly<Record<string, number>> = {
  fin: 0x01,
  syn: 0x02,
  rst: 0x04,
  psh: 0x08,
  ack: 0x10,
  urg: 0x20,
  ece: 0x40,
  cwr: 0x80,
};
const NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;
/** Largest Ethernet frame the hooks see, for the default burst of a bit rate (TC sees GSO packets). */
const DEFAULT_MIN_BURST_BITS = 65536 * 8;
const MAX_PACKET_RATE = 1e10;
const MAX_BIT_RATE = 1e14;
const DEFAULT_PRIORITY = 1000;
const MAX_PRIORITY = 0x7fffffff;

/** Rate units: multiplier to packets or bits, by the unit as written (lower-cased where noted). */
const PACKET_UNITS: Readonly<Record<string, number>> = { pps: 1, kpps: 1e3, mpps: 1e6 };
const BIT_UNITS: Readonly<Record<string, number>> = {
  bit: 1,
  kbit: 1e3,
  mbit: 1e6,
  gbit: 1e9,
  tbit: 1e12,
  kibit: 1024,
  mibit: 1024 ** 2,
  gibit: 1024 ** 3,
  tibit: 1024 ** 4,
};
const BYTE_UNITS: Readonly<Record<string, number>> = {
  bps: 8,
  kbps: 8e3,
  mbps: 8e6,
  gbps: 8e9,
  tbps: 8e12,
  kibps: 8 * 1024,
  mibps: 8 * 1024 ** 2,
  gibps: 8 * 1024 ** 3,
  tibps: 8 * 1024 ** 4,
};

/** A value as a message shows it: strings quoted, the rest as JSON. */
function show(value: unknown): string {
  if (typeof value === 'string') return `"${value}"`;
  if (typeof value === 'bigint') return `${value}n`;
  return JSON.stringify(value) ?? String(value);
}

function isInt(v: unknown, lo: number, hi: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi;
}

function names(list: readonly string[]): string {
  return list.map((s) => `"${s}"`).join(', ');
}

/** Validates one rule; `ref` names it in errors. */
class RuleChecker {
  private readonly name: string;

  constructor(
    private readonly spec: Record<string, unknown>,
    private readonly ref: RuleRef,
    private readonly context: ValidationContext,
    private readonly filterCache: Map<string, unknown>,
  ) {
    this.name = describeRule(ref);
  }

  fail(field: string, why: string): never {
    throw new RuleInvalidError(`${this.name}: ${field} ${why}`, { ...this.ref, field });
  }

  failLimit(field: string, why: string): never {
    throw new LimitInvalidError(`${this.name}: ${field} ${why}`, { ...this.ref, field });
  }

  has(field: string): boolean {
    return this.spec[field] !== undefined;
  }

  check(): Rule {
    const s = this.spec;
    for (const key of Object.keys(s)) {
      if (!RULE_FIELD_SET.has(key))
        this.fail(key, `is not a rule field: expected one of ${RULE_FIELDS.join(', ')}`);
      if (s[key] === null) this.fail(key, 'is null: give a value or leave the field out');
    }
    const action = s.action;
    if (action === undefined) this.fail('action', `is missing: expected one of ${names(ACTIONS)}`);
    if (typeof action !== 'string' || !(ACTIONS as readonly string[]).includes(action))
      this.fail('action', `${show(action)} is not an action: expected one of ${names(ACTIONS)}`);
    const rule: Rule = {
      index: this.ref.ruleIndex,
      id: this.ref.ruleId ?? '',
      idGiven: this.ref.ruleId !== undefined,
      priority: DEFAULT_PRIORITY,
      action: action as RuleAction,
    };
    if (this.has('priority')) {
      if (!isInt(s.priority, 0, MAX_PRIORITY))
        this.fail(
          'priority',
          `${show(s.priority)} is out of range: expected an integer from 0 to ${MAX_PRIORITY}`,
        );
      rule.priority = s.priority;
    }
    this.addresses(rule);
    this.protocol(rule);
    if (this.has('vlan')) {
      if (!isInt(s.vlan, 0, 4095))
        this.fail('vlan', `${show(s.vlan)} is not a VLAN id: expected an integer from 0 to 4095`);
      rule.vlan = s.vlan;
    }
    if (this.has('filter')) rule.filter = this.filter(s.filter);
    this.actionFields(rule);
    return rule;
  }

  private addresses(rule: Rule): void {
    const s = this.spec;
    for (const field of ['src', 'dst'] as const) {
      if (this.has(field)) rule[field] = parsePrefixAt(s[field], { ...this.ref, field });
    }
    if (rule.src && rule.dst && rule.src.family !== rule.dst.family)
      this.fail(
        'dst',
        `${show(s.dst)} is IPv${rule.dst.family} but src ${show(s.src)} is IPv${rule.src.family}: a packet has one family`,
      );
    for (const field of ['srcSet', 'dstSet'] as const) {
      if (!this.has(field)) continue;
      const name = s[field];
      if (typeof name !== 'string' || !NAME_RE.test(name))
        this.fail(
          field,
          `${show(name)} is not a set name: expected 1 to 64 letters, digits, "_", "." or "-"`,
        );
      if (!this.context.sets.has(name))
        throw new SetNotFoundError(`${this.name}: ${field} "${name}" names no prefix set`, {
          ...this.ref,
          field,
          set: name,
        });
      rule[field] = name;
    }
  }

  private protocol(rule: Rule): void {
    const s = this.spec;
    let protoText = '';
    if (this.has('proto')) {
      const p = s.proto;
      if (typeof p === 'string' && Object.hasOwn(PROTO_NUMBERS, p)) {
        rule.proto = PROTO_NUMBERS[p as ProtoName];
      } else if (isInt(p, 0, 255)) {
        rule.proto = p;
      } else {
        this.fail(
          'proto',
          `${show(p)} is not a protocol: expected ${names(Object.keys(PROTO_NUMBERS))} or a number from 0 to 255`,
        );
      }
      protoText = show(p);
      const family = rule.src?.family ?? rule.dst?.family;
      const addrField = rule.src ? 'src' : 'dst';
      if (rule.proto === IPPROTO_ICMP && family === 6)
        this.fail(
          'proto',
          `${protoText} is ICMP for IPv4 but ${addrField} ${show(s[addrField])} is IPv6: use "icmpv6"`,
        );
      if (rule.proto === IPPROTO_ICMPV6 && family === 4)
        this.fail(
          'proto',
          `${protoText} is ICMPv6 but ${addrField} ${show(s[addrField])} is IPv4: use "icmp"`,
        );
    }
    for (const field of ['sport', 'dport'] as const) {
      if (!this.has(field)) continue;
      if (
        rule.proto !== undefined &&
        rule.proto !== IPPROTO_TCP &&
        rule.proto !== IPPROTO_UDP &&
        rule.proto !== IPPROTO_SCTP
      )
        this.fail(
          field,
          `needs proto "tcp", "udp" or "sctp" (or none, for all three), not ${protoText}`,
        );
      rule[field] = this.ports(field, s[field]);
    }
    if (this.has('icmp')) {
      if (rule.proto !== IPPROTO_ICMP && rule.proto !== IPPROTO_ICMPV6)
        this.fail(
          'icmp',
          rule.proto === undefined
            ? 'needs proto "icmp" or "icmpv6" to say which ICMP'
            : `needs proto "icmp" or "icmpv6", not ${protoText}`,
        );
      rule.icmp = this.icmp(s.icmp, rule.proto === IPPROTO_ICMPV6 ? 6 : 4);
    }
    if (this.has('tcpFlags')) {
      if (rule.proto !== undefined && rule.proto !== IPPROTO_TCP)
        this.fail('tcpFlags', `needs proto "tcp" (or none), not ${protoText}`);
      rule.tcpFlags = this.tcpFlags(s.tcpFlags);
    }
  }

  private ports(field: string, value: unknown): PortRange {
    const expected = 'expected a port from 0 to 65535, a range "1024-65535" or [1024, 65535]';
    let lo: unknown;
    let hi: unknown;
    if (typeof value === 'number') {
      lo = hi = value;
    } else if (Array.isArray(value) && value.length === 2) {
      [lo, hi] = value as unknown[];
    } else if (typeof value === 'string') {
      const m = /^([0-9]{1,5})(?:-([0-9]{1,5}))?$/.exec(value);
      if (!m) this.fail(field, `${show(value)} is not a port or range: ${expected}`);
      lo = Number(m[1]);
      hi = m[2] === undefined ? lo : Number(m[2]);
    } else {
      this.fail(field, `${show(value)} is not a port or range: ${expected}`);
    }
    if (!isInt(lo, 0, 65535) || !isInt(hi, 0, 65535))
      this.fail(field, `${show(value)} is out of range: ${expected}`);
    if (lo > hi)
      this.fail(
        field,
        `${show(value)} has its low port above its high port: did you mean "${hi}-${lo}"?`,
      );
    return [lo, hi];
  }

  private icmp(value: unknown, family: 4 | 6): IcmpMatch {
    const expected = 'expected { type: 0..255, code?: 0..255 }';
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      this.fail('icmp', `${show(value)} is not an ICMP match: ${expected}`);
    const o = value as Record<string, unknown>;
    for (const key of Object.keys(o))
      if (key !== 'type' && key !== 'code')
        this.fail('icmp', `has an unknown member "${key}": ${expected}`);
    if (!isInt(o.type, 0, 255))
      this.fail('icmp', `type ${show(o.type)} is out of range: expected 0 to 255`);
    const out: IcmpMatch = { family, type: o.type };
    if (o.code !== undefined) {
      if (!isInt(o.code, 0, 255))
        this.fail('icmp', `code ${show(o.code)} is out of range: expected 0 to 255`);
      out.code = o.code;
    }
    return out;
  }

  private tcpFlags(value: unknown): TcpFlagsMatch {
    const flagNames = Object.keys(TCP_FLAG_BITS).join(' ');
    let set = 0;
    let unset = 0;
    if (typeof value === 'string' && value.trim() !== '') {
      for (const raw of value.split(',')) {
        const word = raw.trim().toLowerCase();
        const negated = word.startsWith('!');
        const flag = negated ? word.slice(1).trim() : word;
        const bit = Object.hasOwn(TCP_FLAG_BITS, flag) ? TCP_FLAG_BITS[flag] : undefined;
        if (bit === undefined)
          this.fail(
            'tcpFlags',
            `${show(value)} has ${show(raw.trim())}, not a flag: expected a comma-separated list of ${flagNames}, each optionally preceded by "!"`,
          );
        if ((set | unset) & bit)
          this.fail('tcpFlags', `${show(value)} names "${flag}" more than once`);
        if (negated) unset |= bit;
        else set |= bit;
      }
    } else if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
      const o = value as Record<string, unknown>;
      for (const key of Object.keys(o))
        if (key !== 'set' && key !== 'unset')
          this.fail('tcpFlags', `has an unknown member "${key}": expected { set, unset }`);
      if (!isInt(o.set ?? 0, 0, 255) || !isInt(o.unset ?? 0, 0, 255))
        this.fail('tcpFlags', `${show(value)} has a mask outside 0..255`);
      set = (o.set as number | undefined) ?? 0;
      unset = (o.unset as number | undefined) ?? 0;
      if (set & unset)
        this.fail(
          'tcpFlags',
          `${show(value)} asks for flags both set and unset (0x${(set & unset).toString(16)})`,
        );
    } else if (typeof value !== 'string') {
      this.fail(
        'tcpFlags',
        `${show(value)} is not a flags match: expected "syn,!ack" or { set, unset }`,
      );
    }
    if (set === 0 && unset === 0)
      this.fail(
        'tcpFlags',
        `${show(value)} names no flag: to match any TCP packet use proto "tcp"`,
      );
    return { set, unset };
  }

  private filter(value: unknown): string {
    if (typeof value !== 'string' || value.trim() === '')
      this.fail('filter', `${show(value)} is not a filter: expected a tcpdump expression`);
    let cached = this.filterCache.get(value);
    if (cached === undefined) {
      try {
        compileFilter(value);
        cached = true;
      } catch (err: unknown) {
        if (!isFilterCompileError(err)) throw err;
        cached = err;
      }
      this.filterCache.set(value, cached);
    }
    if (cached !== true && isFilterCompileError(cached))
      throw new FilterInvalidError(`${this.name}: filter ${show(value)}: ${cached.message}`, {
        ...this.ref,
        cause: cached,
      });
    return value;
  }

  private actionFields(rule: Rule): void {
    const s = this.spec;
    const action = rule.action;
    if (action !== 'ratelimit')
      for (const field of ['rate', 'burst', 'perSource'])
        if (this.has(field)) this.fail(field, `is only for action "ratelimit", not "${action}"`);
    if (action !== 'redirect')
      for (const field of ['to', 'via'])
        if (this.has(field)) this.fail(field, `is only for action "redirect", not "${action}"`);
    if (action === 'ratelimit') rule.limit = this.limiter();
    if (action === 'redirect') {
      if (!this.has('to')) this.fail('to', 'is missing: action "redirect" needs a device');
      const to = s.to;
      if (
        typeof to !== 'string' ||
        to.length === 0 ||
        Buffer.byteLength(to) > 15 ||
        to === '.' ||
        to === '..' ||
        /[/:\s]/.test(to)
      )
        this.fail(
          'to',
          `${show(to)} is not a device name: expected 1 to 15 bytes without "/", ":" or spaces`,
        );
      const devices = this.context.devices;
      if (devices && !devices.has(to)) this.fail('to', `${show(to)} is not a known device`);
      const redirect: Redirect = { to };
      if (devices instanceof Map) redirect.ifindex = devices.get(to) as number;
      if (this.has('via')) {
        const via = s.via;
        if (typeof via !== 'string' || !/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(via))
          this.fail('via', `${show(via)} is not a MAC address: expected "aa:bb:cc:dd:ee:ff"`);
        const mac = Uint8Array.from(via.split(':').map((h) => parseInt(h, 16)));
        if (mac.every((b) => b === 0))
          this.fail(
            'via',
            `${show(via)} is all zero: leave via out to take the next hop from the FIB`,
          );
        if (mac[0] & 1)
          this.fail('via', `${show(via)} is a multicast address: expected a unicast next hop`);
        redirect.via = mac;
      }
      rule.redirect = redirect;
    }
  }

  private limiter(): Limiter {
    const s = this.spec;
    if (!this.has('rate'))
      this.failLimit(
        'rate',
        'is missing: action "ratelimit" needs a rate such as "1000pps" or "10mbit"',
      );
    const { rate, unit } = this.rate(s.rate);
    let burst: number;
    if (this.has('burst')) {
      const what = unit === 'packets' ? 'packets' : 'bytes';
      if (!isInt(s.burst, 1, Math.floor(Number.MAX_SAFE_INTEGER / 8)))
        this.failLimit(
          'burst',
          `${show(s.burst)} is not a burst: expected a whole number of ${what}, at least 1`,
        );
      burst = unit === 'packets' ? s.burst : s.burst * 8;
    } else {
      burst =
        unit === 'packets'
          ? Math.max(1, Math.ceil(rate / 10))
          : Math.max(DEFAULT_MIN_BURST_BITS, Math.ceil(rate / 10));
    }
    let perSource = false;
    if (this.has('perSource')) {
      if (typeof s.perSource !== 'boolean')
        this.failLimit('perSource', `${show(s.perSource)} is not true or false`);
      perSource = s.perSource;
    }
    return { rate, burst, unit, perSource };
  }

  private rate(value: unknown): { rate: number; unit: 'packets' | 'bits' } {
    const units =
      '"1000pps", "10kpps", "500kbit", "10mbit", "2gbit", or bytes per second as tc writes them, "64kbps"';
    if (typeof value === 'number') {
      if (!isInt(value, 1, MAX_PACKET_RATE))
        this.failLimit(
          'rate',
          `${show(value)} is not a packet rate: expected a whole number of packets per second from 1 to ${MAX_PACKET_RATE}`,
        );
      return { rate: value, unit: 'packets' };
    }
    if (typeof value !== 'string')
      this.failLimit('rate', `${show(value)} is not a rate: expected ${units}`);
    const m = /^([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)$/.exec(value);
    if (!m) this.failLimit('rate', `${show(value)} is not a rate: expected ${units}`);
    const amount = Number(m[1]);
    const written = m[2];
    const lower = written.toLowerCase();
    let mult: number;
    let unit: 'packets' | 'bits';
    if (written === '')
      this.failLimit('rate', `${show(value)} has no unit: write "${m[1]}pps" or "${m[1]}bit"`);
    if (Object.hasOwn(PACKET_UNITS, lower)) {
      mult = PACKET_UNITS[lower];
      unit = 'packets';
    } else if (Object.hasOwn(BIT_UNITS, lower)) {
      mult = BIT_UNITS[lower];
      unit = 'bits';
    } else if (Object.hasOwn(BYTE_UNITS, lower)) {
      if (written !== lower)
        this.failLimit(
          'rate',
          `${show(value)} is ambiguous: write "${m[1]}${lower.replace('ps', 'it')}" for bits or "${m[1]}${lower}" for bytes per second (as tc)`,
        );
      mult = BYTE_UNITS[lower];
      unit = 'bits';
    } else {
      this.failLimit('rate', `${show(value)} has an unknown unit "${written}": expected ${units}`);
    }
    const exact = amount * mult;
    const rounded = Math.round(exact);
    if (Math.abs(exact - rounded) > 1e-6 * Math.max(1, exact) || rounded < 1)
      this.failLimit(
        'rate',
        `${show(value)} is not a whole number of ${unit} per second (${exact})`,
      );
    const max = unit === 'packets' ? MAX_PACKET_RATE : MAX_BIT_RATE;
    if (rounded > max)
      this.failLimit('rate', `${show(value)} is above the largest rate, ${max} ${unit} per second`);
    return { rate: rounded, unit };
  }
}

/**
 * The rule set's `defaultAction` (default "pass") and `malformed` (default "drop": malformed
 * packets would otherwise slip past address rules). Throws `RuleSetInvalidError` for anything
 * but "pass" or "drop".
 */
export function ruleSetActions(
  spec: Pick<RuleSetSpec, 'defaultAction' | 'malformed'>,
): RuleSetActions {
  const setAction = (field: 'defaultAction' | 'malformed', fallback: SetAction): SetAction => {
    const v: unknown = spec[field];
    if (v === undefined) return fallback;
    if (v !== 'pass' && v !== 'drop')
      throw new RuleSetInvalidError(
        `rule set: ${field} ${show(v)} is not an action: expected "pass" or "drop"`,
        { field },
      );
    return v;
  };
  return {
    defaultAction: setAction('defaultAction', 'pass'),
    malformed: setAction('malformed', 'drop'),
  };
}

/** The fields a generated id hashes: all but id and priority, in a fixed order. */
const FINGERPRINT_FIELDS = RULE_FIELDS.filter((f) => f !== 'id' && f !== 'priority');

/**
 * A validated rule spec as text, equal for equal rules whatever the key order: each field given,
 * in FINGERPRINT_FIELDS order, with nested objects in a fixed member order.
 */
function fingerprint(spec: Record<string, unknown>): string {
  let out = '';
  for (const field of FINGERPRINT_FIELDS) {
    const v = spec[field];
    if (v === undefined) continue;
    let text: string;
    if (field === 'icmp') {
      const m = v as { type: number; code?: number };
      text = `${m.type}/${m.code ?? ''}`;
    } else if (field === 'tcpFlags' && typeof v === 'object') {
      const m = v as { set?: number; unset?: number };
      text = `${m.set ?? 0}/${m.unset ?? 0}`;
    } else {
      text = JSON.stringify(v);
    }
    out += `${field}=${text};`;
  }
  return out;
}

/** cyrb53: a fast 53-bit string hash (not cryptographic), as 14 hex digits. */
function hash53(text: string): string {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(16).padStart(14, '0');
}

/**
 * Rules already checked, by the very spec object: the controller keeps a rule's spec object while
 * the rule is unchanged, so a change to one rule of thousands checks one. Only for checks without
 * a device map (the one context a check depends on besides the sets, which a hit checks again).
 */
const checkedRules = new WeakMap<object, Rule>();

function checkRule(
  spec: Record<string, unknown>,
  ref: RuleRef,
  context: ValidationContext,
  filterCache: Map<string, unknown>,
): Rule {
  const cacheable = context.devices === undefined;
  const hit = cacheable ? checkedRules.get(spec) : undefined;
  if (
    hit &&
    (hit.srcSet === undefined || context.sets.has(hit.srcSet)) &&
    (hit.dstSet === undefined || context.sets.has(hit.dstSet))
  ) {
    return { ...hit, index: ref.ruleIndex };
  }
  const rule = new RuleChecker(spec, ref, context, filterCache).check();
  if (cacheable) checkedRules.set(spec, { ...rule });
  return rule;
}

/** True when both lists hold the very same objects in the same order (caches key on identity). */
export function sameElements(a: readonly unknown[], b: readonly unknown[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * A rule set as checked, with what resuming the check for rules appended to it needs: the rules
 * in the order given, the ids and generated-id repeats seen, the filters, limiters and redirect
 * devices counted, and the highest priority.
 */
interface CheckedRuleSet {
  /** The spec's rules, as checked (a copy: a spec changed in place is checked again). */
  specRules: readonly unknown[];
  sets: string;
  actions: string;
  /** The rules in the order given. */
  given: Rule[];
  ids: Map<string, number>;
  repeats: Map<string, number>;
  filters: Set<string>;
  limiters: number;
  redirects: Set<string>;
  maxPriority: number;
  /** In position order: what validateRuleSet returns. */
  result: Rule[];
}

/**
 * Rule sets already validated, by the very spec object: the controller validates a document and
 * then applies it, the same objects both times. A hit needs the same rule objects too.
 */
const validatedSets = new WeakMap<object, CheckedRuleSet>();
/**
 * The rule sets validated last: a rule add gives a spec whose rules are another's plus one,
 * and only the new ones are checked (most recent first, a few).
 */
const recentSets: CheckedRuleSet[] = [];
const RECENT_SETS = 8;

/**
 * Validates a rule set and returns its rules normalised, in position order (priority ascending,
 * then the order given): prefixes parsed, ports as ranges, protocols as numbers, flags as masks,
 * rate limits in the kernel's units, an `id` for every rule (generated from the rule's fields
 * when not given). Also checks `defaultAction` and `malformed` (see `ruleSetActions`).
 * Throws `RuleSetInvalidError` (RULESET_INVALID) for the set's own fields; `RuleInvalidError`
 * (RULE_INVALID), `LimitInvalidError`, `PrefixInvalidError`, `SetNotFoundError` or
 * `FilterInvalidError` naming the rule (id, else `#index`) and the field; `LimitExceededError`
 * past SL_MAX_RULES rules, SL_MAX_FILTERS distinct filters, SL_MAX_LIMITERS rate limits or
 * SL_MAX_REDIRECTS redirect devices. Needs no kernel.
 */
export function validateRuleSet(spec: RuleSetSpec, context: ValidationContext): Rule[] {
  if (context.devices !== undefined || typeof spec !== 'object' || spec === null)
    return checkRuleSet(spec, context, '', '').result;
  const sets = [...context.sets.keys()].join('\0');
  const actions = `${String(spec.defaultAction)} ${String(spec.malformed)}`;
  const hit = validatedSets.get(spec);
  if (
    hit &&
    hit.sets === sets &&
    hit.actions === actions &&
    Array.isArray(spec.rules) &&
    sameElements(hit.specRules, spec.rules)
  )
    return hit.result;
  const base = Array.isArray(spec.rules)
    ? recentSets.find(
        (r) =>
          r.sets === sets &&
          r.actions === actions &&
          r.specRules.length < spec.rules.length &&
          r.specRules.every((rule, i) => rule === spec.rules[i]),
      )
    : undefined;
  const checked = checkRuleSet(spec, context, sets, actions, base);
  validatedSets.set(spec, checked);
  recentSets.unshift(checked);
  if (recentSets.length > RECENT_SETS) recentSets.pop();
  return checked.result;
}

/**
 * Checks `spec` whole, or, given `base` (a check of the first rules of `spec.rules`, against the
 * same sets and actions), only the rules after them.
 */
function checkRuleSet(
  spec: RuleSetSpec,
  context: ValidationContext,
  sets: string,
  actions: string,
  base?: CheckedRuleSet,
): CheckedRuleSet {
  if (typeof spec !== 'object' || spec === null)
    throw new RuleSetInvalidError(`rule set ${show(spec)} is not an object`, { field: 'rules' });
  const known = ['rules', 'defaultAction', 'malformed'];
  for (const key of Object.keys(spec))
    if (!known.includes(key))
      throw new RuleSetInvalidError(
        `rule set: ${key} is not a rule set field: expected one of ${known.join(', ')}`,
        { field: key },
      );
  ruleSetActions(spec);
  if (!Array.isArray(spec.rules))
    throw new RuleSetInvalidError(`rule set: rules ${show(spec.rules)} is not an array`, {
      field: 'rules',
    });
  if (spec.rules.length > SL_MAX_RULES)
    throw new LimitExceededError(
      `rule set has ${spec.rules.length} rules, more than the ${SL_MAX_RULES} a pipeline holds`,
      { resource: 'rules', limit: SL_MAX_RULES, count: spec.rules.length },
    );
  const from = base?.given.length ?? 0;
  const ids = new Map(base?.ids);
  const filterCache = new Map<string, unknown>();
  const added: Rule[] = [];
  for (let ruleIndex = from; ruleIndex < spec.rules.length; ruleIndex++) {
    const raw: unknown = spec.rules[ruleIndex];
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
      throw new RuleInvalidError(`rule #${ruleIndex} is ${show(raw)}, not an object`, {
        ruleIndex,
        field: '',
      });
    const r = raw as Record<string, unknown>;
    const ref: RuleRef = { ruleIndex };
    if (r.id !== undefined) {
      if (typeof r.id !== 'string' || !NAME_RE.test(r.id))
        throw new RuleInvalidError(
          `rule #${ruleIndex}: id ${show(r.id)} is not a rule id: expected 1 to 64 letters, digits, "_", "." or "-"`,
          { ruleIndex, field: 'id' },
        );
      const first = ids.get(r.id);
      if (first !== undefined)
        throw new RuleInvalidError(
          `rule "${r.id}": id is also rule #${first}'s: ids are unique in a rule set`,
          { ruleIndex, ruleId: r.id, field: 'id' },
        );
      ids.set(r.id, ruleIndex);
      ref.ruleId = r.id;
    }
    added.push(checkRule(r, ref, context, filterCache));
  }
  // Generated ids: a hash of the fields but id and priority, so that a rule keeps its counters
  // when rules are added or moved around it; repeats of an equal rule are told apart by order.
  const repeats = new Map(base?.repeats);
  for (const rule of added) {
    if (rule.idGiven) continue;
    const fields = spec.rules[rule.index] as unknown as Record<string, unknown>;
    const hash = `~${hash53(fingerprint(fields))}`;
    const n = (repeats.get(hash) ?? 0) + 1;
    repeats.set(hash, n);
    rule.id = n === 1 ? hash : `${hash}.${n}`;
  }
  const count = (
    resource: 'filters' | 'limiters' | 'redirects',
    n: number,
    limit: number,
    what: string,
  ): void => {
    if (n > limit)
      throw new LimitExceededError(
        `rule set has ${n} ${what}, more than the ${limit} a pipeline holds`,
        { resource, limit, count: n },
      );
  };
  const filters = new Set(base?.filters);
  const redirects = new Set(base?.redirects);
  let limiters = base?.limiters ?? 0;
  let maxPriority = base?.maxPriority ?? -Infinity;
  // True when no new rule goes before a rule of `base`.
  let inOrder = true;
  for (const r of added) {
    if (r.filter !== undefined) filters.add(r.filter);
    if (r.redirect) redirects.add(r.redirect.to);
    if (r.limit) limiters++;
    if (base && r.priority < base.maxPriority) inOrder = false;
    maxPriority = Math.max(maxPriority, r.priority);
  }
  count('filters', filters.size, SL_MAX_FILTERS, 'distinct filter expressions');
  count('limiters', limiters, SL_MAX_LIMITERS, 'ratelimit rules');
  count('redirects', redirects.size, SL_MAX_REDIRECTS, 'redirect devices');
  const given = base ? [...base.given, ...added] : added;
  // Array.prototype.sort is stable: equal priorities keep the order given. Rules appended with
  // priorities no lower than any before them go behind the rules as they were.
  const byPriority = (a: Rule, b: Rule): number => a.priority - b.priority;
  const result =
    base && inOrder ? [...base.result, ...added.sort(byPriority)] : [...given].sort(byPriority);
  return {
    specRules: [...spec.rules],
    sets,
    actions,
    given,
    ids,
    repeats,
    filters,
    limiters,
    redirects,
    maxPriority,
    result,
  };
}

// ---------------------------------------------------------------------------------------------
// Prefix sets

/**
 * Validates one prefix set: its name and every prefix (duplicates merged, first order kept).
 * Throws `SetInvalidError` (SET_INVALID) for the name or a `prefixes` that is not an array,
 * `PrefixInvalidError` naming the set and the entry's index for a bad prefix.
 */
export function validateSet(spec: SetSpec): PrefixSet {
  const name = spec?.name;
  if (typeof name !== 'string' || !NAME_RE.test(name))
    throw new SetInvalidError(
      `set name ${show(name)} is not valid: expected 1 to 64 letters, digits, "_", "." or "-"`,
      { set: String(name), field: 'name' },
    );
  if (!Array.isArray(spec.prefixes))
    throw new SetInvalidError(`set "${name}": prefixes ${show(spec.prefixes)} is not an array`, {
      set: name,
      field: 'prefixes',
    });
  const seen = new Set<string>();
  const prefixes: Prefix[] = [];
  const list: unknown[] = spec.prefixes;
  const where = { set: name, entry: 0, field: 'prefixes' };
  for (let entry = 0; entry < list.length; entry++) {
    where.entry = entry; // read only when a prefix fails
    const p = parsePrefixAt(list[entry], where);
    const key = prefixKey(p);
    if (seen.has(key)) continue;
    seen.add(key);
    prefixes.push(p);
  }
  return { name, prefixes };
}

/**
 * Validates the prefix sets of an instance: each set, unique names, at most SL_MAX_SETS.
 * Throws as `validateSet`, `SetInvalidError` for a repeated name, `LimitExceededError` past
 * SL_MAX_SETS sets.
 */
export function validateSets(specs: readonly SetSpec[]): PrefixSet[] {
  if (specs.length > SL_MAX_SETS)
    throw new LimitExceededError(
      `${specs.length} prefix sets, more than the ${SL_MAX_SETS} an instance holds`,
      { resource: 'sets', limit: SL_MAX_SETS, count: specs.length },
    );
  const seen = new Set<string>();
  return specs.map((spec) => {
    const set = validateSet(spec);
    if (seen.has(set.name))
      throw new SetInvalidError(`set "${set.name}" is given twice: set names are unique`, {
        set: set.name,
        field: 'name',
      });
    seen.add(set.name);
    return set;
  });
}

/**
 * Gives each set name a bit of the u64 set mask (0..63). Names in `previous` keep their bit, so
 * that sets unchanged by an update keep their kernel entries; new names take the lowest free
 * bits, in the order given. Throws `LimitExceededError` past SL_MAX_SETS names.
 */
export function assignSetBits(
  setNames: Iterable<string>,
  previous: ReadonlyMap<string, number> = new Map(),
): Map<string, number> {
  const wanted = [...new Set(setNames)];
  if (wanted.length > SL_MAX_SETS)
    throw new LimitExceededError(
      `${wanted.length} prefix sets, more than the ${SL_MAX_SETS} an instance holds`,
      { resource: 'sets', limit: SL_MAX_SETS, count: wanted.length },
    );
  const out = new Map<string, number>();
  const used = new Set<number>();
  for (const name of wanted) {
    const bit = previous.get(name);
    if (bit !== undefined && bit >= 0 && bit < SL_MAX_SETS && !used.has(bit)) {
      out.set(name, bit);
      used.add(bit);
    }
  }
  let next = 0;
  for (const name of wanted) {
    if (out.has(name)) continue;
    while (used.has(next)) next++;
    out.set(name, next);
    used.add(next);
  }
  return out;
}

/** One prefix of the shared set maps and the sets holding it. */
export interface SetEntry {
  addr: Uint8Array;
  len: number;
  /** Bit i: the set with bit i holds every address of this prefix. */
  mask: bigint;
}

/** The set tries' entries per family, and the distinct masks they hold (for compileClassifier). */
export interface SetEntries {
  v4: SetEntry[];
  v6: SetEntry[];
  masks: bigint[];
}

function compareAddr(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}

/**
 * Builds the entries of the LPM set tries. An LPM lookup finds only the longest prefix, so each
 * entry's mask is its own sets' bits OR the mask of every shorter prefix containing it (a set
 * holding 10.0.0.0/8 also holds 10.1.0.0/16 of another set). Entries are sorted by address,
 * shorter first; masks are the distinct non-zero masks in order of first appearance. Throws
 * `SetInvalidError` for a set without a bit in `bits`.
 */
export function compileSetEntries(
  sets: readonly PrefixSet[],
  bits: ReadonlyMap<string, number>,
): SetEntries {
  const own = [new Map<string, SetEntry>(), new Map<string, SetEntry>()];
  for (const set of sets) {
    const bit = bits.get(set.name);
    if (bit === undefined || bit < 0 || bit >= SL_MAX_SETS)
      throw new SetInvalidError(`set "${set.name}" has no bit of the set mask`, {
        set: set.name,
        field: 'name',
      });
    const setMask = 1n << BigInt(bit);
    for (const p of set.prefixes) {
      const table = own[p.family === 4 ? 0 : 1];
      const key = prefixKey(p);
      const e = table.get(key);
      if (e) e.mask |= setMask;
      else table.set(key, { addr: p.addr, len: p.len, mask: setMask });
    }
  }
  const masks = new Set<bigint>();
  const walk = (entries: SetEntry[], family: 4 | 6): SetEntry[] => {
    const stack: Prefix[] = [];
    const stackMasks: bigint[] = [];
    const out: SetEntry[] = [];
    for (const e of entries) {
      while (stack.length > 0 && !addressInPrefix(stack[stack.length - 1], family, e.addr)) {
        stack.pop();
        stackMasks.pop();
      }
      const mask = stack.length > 0 ? e.mask | stackMasks[stackMasks.length - 1] : e.mask;
      out.push({ addr: e.addr, len: e.len, mask });
      stack.push({ family, addr: e.addr, len: e.len });
      stackMasks.push(mask);
      masks.add(mask);
    }
    return out;
  };
  // IPv4 sorts by the address as a number, IPv6 byte by byte; shorter prefixes first.
  const keyed = [...own[0].values()].map((e) => {
    const a = e.addr;
    return { e, k: (((a[0] << 24) | (a[1] << 16) | (a[2] << 8) | a[3]) >>> 0) * 64 + e.len };
  });
  keyed.sort((a, b) => a.k - b.k);
  const v4 = keyed.map((x) => x.e);
  const v6 = [...own[1].values()].sort((a, b) => compareAddr(a.addr, b.addr) || a.len - b.len);
  return { v4: walk(v4, 4), v6: walk(v6, 6), masks: [...masks] };
}
