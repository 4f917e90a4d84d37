// The load balancer's flow hash, computed exactly as the kernel side does, so that user space can predict which Maglev slot a flow lands in.
//
// The contract shared with the BPF program (it computes the same thing, written to this text):
//
//   the flow's fields, one layout for both families (flowKey; the kernel's flow-table keys,
//   struct lb_flow4_key and lb_flow6_key, hold the same fields, IPv4 addresses in 4 bytes):
//
//   flow key, 40 bytes                 offset  size
//     src     address, network order        0    16   IPv4 in bytes 0..3, the rest zero
//     dst     address, network order       16    16   IPv4 in bytes 16..19, the rest zero
//     sport   __be16                       32     2
//     dport   __be16                       34     2
//     proto   IPPROTO_TCP/UDP/SCTP         36     1   6, 17, 132
//     family  4 or 6                       37     1
//     pad     zero                         38     2
//
//   Hash modes clear fields before hashing: '5tuple' keeps all; 'src' clears dst, sport, dport
//   and proto; 'src-port' clears dst, dport and proto.
//
//   hash = jhash2(words, n, seed + proto) (Linux include/linux/jhash.h; u32 arithmetic) over
//   the address and port words, each read LITTLE-ENDIAN (as an x86 BPF program loads them from
//   its key in memory):
//     IPv4, n = 3: src (bytes 0..3), dst (16..19), the port word (32..35); jhash2 over 3 words
//                  is the kernel's jhash_3words(src, dst, ports, seed + proto);
//     IPv6, n = 9: src (0..15), dst (16..31), the port word (32..35).
//   The family picks the words and is not hashed itself. A flow's Maglev slot is
//   maglevSlot(hash, M) (maglev.ts).
import { PrefixInvalidError } from '../dataplane/errors.js';
import { IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, parsePrefix } from '../dataplane/model.js';
import { AddressInvalidError, FamilyMismatchError, FlowInvalidError } from './errors.js';

/** Which fields of a flow choose its backend. */
export type LbHashMode = '5tuple' | 'src' | 'src-port';

/** Every hash mode, in the order of the documentation. */
export const LB_HASH_MODES: readonly LbHashMode[] = ['5tuple', 'src', 'src-port'];

/** The transport protocols the load balancer hashes. */
export type LbProto = 'tcp' | 'udp' | 'sctp';

/** One flow as user space names it: addresses as text (both IPv4 or both IPv6), host-order ports. */
export interface LbFlow {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  proto: LbProto;
}

/** Size of a flow key in bytes (both families). */
export const FLOW_KEY_SIZE = 40;

/** jhash's initial value (include/linux/jhash.h). */
export const JHASH_INITVAL = 0xdeadbeef;

const PROTO_NUMBERS: Readonly<Record<LbProto, number>> = {
  tcp: IPPROTO_TCP,
  udp: IPPROTO_UDP,
  sctp: IPPROTO_SCTP,
};

function rol32(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/**
 * Linux's `jhash2(k, length, initval)` with `length = words.length`: every step in u32 arithmetic,
 * the same fall-through for the last 1 to 3 words, 0 words giving the initial value unmixed.
 * For an IPv4 flow's 3 words this is the final mix alone (the kernel's jhash_3words); for an IPv6
 * flow's 9, two mixing rounds over words 0..5, then words 6..8 and the final mix. Returns the
 * u32 `c`. `seed` is taken mod 2^32. Throws nothing.
 */
export function jhash2(words: Uint32Array, seed: number): number {
  let length = words.length;
  // int32 arithmetic: `| 0` wraps sums and differences exactly as u32 arithmetic does in C
  let a = (JHASH_INITVAL + ((length << 2) | 0) + (seed | 0)) | 0;
  let b = a;
  let c = a;
  let k = 0;
  while (length > 3) {
    a = (a + words[k]) | 0;
    b = (b + words[k + 1]) | 0;
    c = (c + words[k + 2]) | 0;
    // __jhash_mix
    a = (a - c) | 0;
    a ^= rol32(c, 4);
    c = (c + b) | 0;
    b = (b - a) | 0;
    b ^= rol32(a, 6);
    a = (a + c) | 0;
    c = (c - b) | 0;
    c ^= rol32(b, 8);
    b = (b + a) | 0;
    a = (a - c) | 0;
    a ^= rol32(c, 16);
    c = (c + b) | 0;
    b = (b - a) | 0;
    b ^= rol32(a, 19);
    a = (a + c) | 0;
    c = (c - b) | 0;
    c ^= rol32(b, 4);
    b = (b + a) | 0;
    length -= 3;
    k += 3;
  }
  if (length === 0) return c >>> 0;
  if (length === 3) c = (c + words[k + 2]) | 0;
  if (length >= 2) b = (b + words[k + 1]) | 0;
  a = (a + words[k]) | 0;
  // __jhash_final
  c ^= b;
  c = (c - rol32(b, 14)) | 0;
  a ^= c;
  a = (a - rol32(c, 11)) | 0;
  b ^= a;
  b = (b - rol32(a, 25)) | 0;
  c ^= b;
  c = (c - rol32(b, 16)) | 0;
  a ^= c;
  a = (a - rol32(c, 4)) | 0;
  b ^= a;
  b = (b - rol32(a, 14)) | 0;
  c ^= b;
  c = (c - rol32(b, 24)) | 0;
  return c >>> 0;
}

/** Parses one address of a flow; `field` names it in errors. */
function parseAddress(text: string, field: 'src' | 'dst'): { family: 4 | 6; addr: Uint8Array } {
  const why = 'is not an IPv4 or IPv6 address';
  if (typeof text !== 'string' || text.includes('/'))
    throw new AddressInvalidError(`flow key: ${field} ${JSON.stringify(text)} ${why}`, {
      field,
      address: String(text),
    });
  try {
    const { family, addr } = parsePrefix(text);
    return { family, addr };
  } catch (err: unknown) {
    if (!(err instanceof PrefixInvalidError)) throw err;
    throw new AddressInvalidError(`flow key: ${field} "${text}" ${why}`, {
      field,
      address: text,
      cause: err,
    });
  }
}

function checkPort(value: number, field: 'sport' | 'dport'): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff)
    throw new FlowInvalidError(
      `flow key: ${field} ${JSON.stringify(value)} is not a port: expected an integer from 0 to 65535`,
      { field },
    );
}

/**
 * The 40-byte flow key of `flow` as the kernel builds it (layout at the top of this file), with
 * the fields `mode` leaves out cleared. Throws `AddressInvalidError` (LB_ADDRESS_INVALID) when
 * src or dst is not an address, `FamilyMismatchError` (LB_FAMILY_MISMATCH) when they are of
 * different families, and `FlowInvalidError` (LB_FLOW_INVALID) for a port outside 0..65535, a
 * protocol other than tcp, udp and sctp, or an unknown mode. An IPv4-mapped IPv6 address
 * ("::ffff:192.0.2.1") is IPv6: the family is the text's, as the packet's would be.
 */
export function flowKey(flow: LbFlow, mode: LbHashMode): Uint8Array {
  if (!LB_HASH_MODES.includes(mode))
    throw new FlowInvalidError(
      `flow key: unknown hash mode ${JSON.stringify(mode)}: expected one of ${LB_HASH_MODES.join(', ')}`,
      { field: 'mode' },
    );
  const proto = Object.hasOwn(PROTO_NUMBERS, flow.proto) ? PROTO_NUMBERS[flow.proto] : undefined;
  if (proto === undefined)
    throw new FlowInvalidError(
      `flow key: unknown protocol ${JSON.stringify(flow.proto)}: expected tcp, udp or sctp`,
      { field: 'proto' },
    );
  checkPort(flow.sport, 'sport');
  checkPort(flow.dport, 'dport');
  const src = parseAddress(flow.src, 'src');
  const dst = parseAddress(flow.dst, 'dst');
  if (src.family !== dst.family)
    throw new FamilyMismatchError(
      `flow key: dst "${flow.dst}" is IPv${dst.family} but src "${flow.src}" is IPv${src.family}`,
      { address: flow.dst },
    );
  const key = new Uint8Array(FLOW_KEY_SIZE);
  key.set(src.addr, 0);
  key[37] = src.family;
  if (mode !== 'src') {
    key[32] = flow.sport >>> 8;
    key[33] = flow.sport & 0xff;
  }
  if (mode === '5tuple') {
    key.set(dst.addr, 16);
    key[34] = flow.dport >>> 8;
    key[35] = flow.dport & 0xff;
    key[36] = proto;
  }
  return key;
}

/**
 * The hash of a 40-byte flow key (from `flowKey`): jhash2 over its address and port words read
 * little-endian (3 for IPv4, 9 for IPv6, as its family byte says), initval `seed` + its proto
 * (layout at the top of this file). Throws `RangeError` when the key is not 40 bytes or its
 * family byte is neither 4 nor 6.
 */
export function hashFlowKey(key: Uint8Array, seed = 0): number {
  if (key.length !== FLOW_KEY_SIZE)
    throw new RangeError(`hash flow key: ${key.length} bytes: expected ${FLOW_KEY_SIZE}`);
  const family = key[37];
  if (family !== 4 && family !== 6)
    throw new RangeError(`hash flow key: family byte ${family}: expected 4 or 6`);
  const view = new DataView(key.buffer, key.byteOffset, key.byteLength);
  const n = family === 4 ? 1 : 4;
  const words = new Uint32Array(2 * n + 1);
  for (let i = 0; i < n; i++) {
    words[i] = view.getUint32(i * 4, true);
    words[n + i] = view.getUint32(16 + i * 4, true);
  }
  words[2 * n] = view.getUint32(32, true);
  return jhash2(words, (seed + key[36]) >>> 0);
}

/**
 * The u32 hash the kernel computes for `flow` under `mode` and `seed` (the service's seed); its
 * Maglev slot is `maglevSlot(hash, M)`. Throws what `flowKey` throws.
 */
export function flowHash(flow: LbFlow, mode: LbHashMode, seed = 0): number {
  return hashFlowKey(flowKey(flow, mode), seed);
}
