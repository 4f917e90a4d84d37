// Byte images of the structs, keys and constants of bpf/progs/include/pipeline.h (change both together).

/** Rule positions per generation (SL_MAX_RULES); a struct sl_vec holds one bit each. */
export const SL_MAX_RULES = 4096;
export const SL_WORDS = 64;
/** Classes (distinct vectors) per generation. */
export const SL_MAX_CLASSES = 8192;
export const SL_MAX_SETS = 32;
export const SL_MAX_FILTERS = 64;
export const SL_MAX_LIMITERS = 1024;
export const SL_MAX_REDIRECTS = 256;
export const SL_HIST_BUCKETS = 32;
export const SL_MAX_STEPS = 64;

export const SL_PROTO_SLOTS = 512;
export const SL_PROTO_NOT_IP = 256;
export const SL_VLAN_SLOTS = 4352;
export const SL_VLAN_UNTAGGED = 4096;
export const SL_FLAGS_SLOTS = 512;
export const SL_FLAGS_NOT_TCP = 256;
export const SL_PORT_SLOTS = 65536;
export const SL_ICMP_SLOTS = 65536;

/** enum sl_dim */
export const SL_DIM = {
  SRC: 0,
  DST: 1,
  SSET: 2,
  DSET: 3,
  PROTO: 4,
  SPORT: 5,
  DPORT: 6,
  ICMP: 7,
  VLAN: 8,
  FLAGS: 9,
} as const;
export const SL_DIMS = 10;

/** enum sl_action */
export const SL_ACT = { pass: 0, drop: 1, count: 2, ratelimit: 3, redirect: 4 } as const;
export type SlAction = keyof typeof SL_ACT;

/** enum sl_verdict, in index order: sl_dev_stats keys. */
export const SL_VERDICTS = ['pass', 'drop', 'redirect', 'tx'] as const;
export type SlVerdict = (typeof SL_VERDICTS)[number];

/** enum sl_event, in index order: sl_events keys. */
export const SL_EVENTS = [
  'malformed',
  'truncated',
  'default',
  'ratelimited',
  'fwdToStack',
  'fwdFailed',
  'stepLimit',
  'filterMissing',
] as const;
export type SlEvent = (typeof SL_EVENTS)[number];

export const SL_RULE_FILTER = 1 << 0;
export const SL_LIMIT_BITS = 1 << 0;
export const SL_LIMIT_PER_SOURCE = 1 << 1;

export const SL_PROG_BANK0 = 0;
export const SL_PROG_BANK1 = 1;
export const SL_PROG_RESUME = 2;
/** The load balancer: lb_xdp on XDP attachments, lb_nat_tc on tc-ingress ones. */
export const SL_PROG_LB = 3;
export const SL_PROG_SLOTS = 4;

export const SL_SCRATCH_FMASK_OFF = 0;
export const SL_SCRATCH_GEN_OFF = 8;
export const SL_SCRATCH_DONE_OFF = 12;

/** Sizes of the value structs, as the kernel sees them. */
export const SIZE = {
  vec: 8 + 8 * SL_WORDS,
  ctl: 8,
  genCfg: 4 * 4 + 4 * SL_DIMS + 8,
  rule: 24,
  counter: 16,
  ruleCounter: 24,
  limiter: 24,
  limiterCounter: 16,
  bucket: 24,
  srcKey: 24,
  pfx4Key: 12, // padded to the u32 prefixlen's alignment
  pfx6Key: 24,
  pfx4Cover: 8 * 1024 + 8,
  set4Small: 64,
  set4Big: 512,
  set4Dense: 516,
  set6Key: 20,
  setclsKey: 16,
} as const;

export type Gen = 0 | 1;

/** A little-endian u32 key. */
export function u32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(value >>> 0);
  return b;
}

/** struct sl_ctl */
export function encodeCtl(gen: Gen): Buffer {
  const b = Buffer.alloc(SIZE.ctl);
  b.writeUInt32LE(gen, 0);
  return b;
}

export function decodeCtl(b: Uint8Array): Gen {
  return (Buffer.from(b.buffer, b.byteOffset, b.byteLength).readUInt32LE(0) & 1) as Gen;
}

export interface GenCfg {
  defaultAction: number;
  malformedAction: number;
  dims: number;
  nrules: number;
  absent: readonly number[];
  filterCls: number;
  hasFilters: boolean;
}

/** struct sl_gen_cfg */
export function encodeGenCfg(cfg: GenCfg): Buffer {
  const b = Buffer.alloc(SIZE.genCfg);
  b.writeUInt32LE(cfg.defaultAction, 0);
  b.writeUInt32LE(cfg.malformedAction, 4);
  b.writeUInt32LE(cfg.dims >>> 0, 8);
  b.writeUInt32LE(cfg.nrules, 12);
  for (let d = 0; d < SL_DIMS; d++) b.writeUInt32LE(cfg.absent[d] ?? 0, 16 + 4 * d);
  b.writeUInt32LE(cfg.filterCls, 16 + 4 * SL_DIMS);
  b.writeUInt32LE(cfg.hasFilters ? 1 : 0, 20 + 4 * SL_DIMS);
  return b;
}

export interface RuleImage {
  action: number;
  flags: number;
  stats: number;
  limiter: number;
  filter: number;
  redirect: number;
  ifindex: number;
  /** Six bytes; all zero: from the FIB. */
  nexthop?: Uint8Array;
}

/** struct sl_rule */
export function encodeRule(rule: RuleImage, into?: Buffer, at = 0): Buffer {
  const b = into ?? Buffer.alloc(SIZE.rule);
  b.fill(0, at, at + SIZE.rule);
  b.writeUInt16LE(rule.action, at);
  b.writeUInt16LE(rule.flags, at + 2);
  b.writeUInt16LE(rule.stats, at + 4);
  b.writeUInt16LE(rule.limiter, at + 6);
  b.writeUInt16LE(rule.filter, at + 8);
  b.writeUInt16LE(rule.redirect, at + 10);
  b.writeUInt32LE(rule.ifindex >>> 0, at + 12);
  if (rule.nexthop) b.set(rule.nexthop.subarray(0, 6), at + 16);
  return b;
}

export interface LimiterImage {
  rate: bigint;
  burst: bigint;
  flags: number;
}

/** struct sl_limiter */
export function encodeLimiter(limiter: LimiterImage): Buffer {
  const b = Buffer.alloc(SIZE.limiter);
  b.writeBigUInt64LE(limiter.rate, 0);
  b.writeBigUInt64LE(limiter.burst, 8);
  b.writeUInt32LE(limiter.flags, 16);
  return b;
}

/** struct sl_pfx4_key / sl_pfx6_key: the generation and dimension are the first 16 bits of the prefix. */
export function encodePfxKey(gen: Gen, dim: number, addr: Uint8Array, len: number): Buffer {
  const b = Buffer.alloc(addr.length === 4 ? SIZE.pfx4Key : SIZE.pfx6Key);
  b.writeUInt32LE(16 + len, 0);
  b[4] = gen;
  b[5] = dim;
  b.set(addr, 6);
  return b;
}

/**
 * struct sl_pfx4_cover of each dimension (SRC, DST) from the IPv4 prefixes of both (each with its
 * /0), in one pass: the bit of every /16 that a prefix other than the /0 reaches, the /0's class,
 * valid = 1. A /16 is the address's first two bytes; bit h is bit (h & 7) of byte h >> 3 of the
 * little-endian u64 words. Written into `covers` when given (SIZE.pfx4Cover bytes each): a write
 * of the rules reuses its two, as zeroed 8 KiB buffers cost more to get than to fill.
 */
export function encodePfx4Covers(
  prefixes: readonly { dim: number; addr: Uint8Array; len: number; cls: number }[],
  covers: [Buffer, Buffer] = [Buffer.alloc(SIZE.pfx4Cover), Buffer.alloc(SIZE.pfx4Cover)],
): [Buffer, Buffer] {
  const bits = SIZE.pfx4Cover - 8;
  for (const b of covers) b.fill(0);
  for (const { dim, addr, len, cls } of prefixes) {
    const b = covers[dim & 1];
    if (len === 0) {
      b.writeUInt32LE(cls, bits);
      continue;
    }
    if (len >= 16) {
      const h = (addr[0] << 8) | addr[1];
      b[h >> 3] |= 1 << (h & 7);
      continue;
    }
    const span = 2 ** (16 - len);
    const first = ((addr[0] << 8) | addr[1]) & ~(span - 1);
    for (let h = first; h < first + span; h++) b[h >> 3] |= 1 << (h & 7);
  }
  for (const b of covers) b.writeUInt32LE(1, bits + 4);
  return covers;
}

/** struct sl_set6_key (and an IPv4 prefix's trie key, as FamilyIndex encodes its changes) */
export function encodeSetKey(addr: Uint8Array, len: number): Buffer {
  const b = Buffer.alloc(4 + addr.length);
  b.writeUInt32LE(len, 0);
  b.set(addr, 4);
  return b;
}

/** struct sl_setcls_key */
export function encodeSetclsKey(gen: Gen, dim: number, mask: bigint): Buffer {
  const b = Buffer.alloc(SIZE.setclsKey);
  b[0] = gen;
  b[1] = dim;
  b.writeBigUInt64LE(BigInt.asUintN(64, mask), 8);
  return b;
}

/**
 * One generation's half of sl_setcls1: for SSET then DSET, the class + 1 of each one-set mask,
 * the class sl_setcls gives it (absent when it has no entry).
 */
export function encodeSetcls1(t: {
  setcls: readonly { dim: number; mask: bigint; cls: number }[];
  absent: readonly number[];
}): Uint32Array {
  const out = new Uint32Array(2 * SL_MAX_SETS);
  for (const dim of [SL_DIM.SSET, SL_DIM.DSET]) {
    out.fill(
      t.absent[dim] + 1,
      (dim - SL_DIM.SSET) * SL_MAX_SETS,
      (dim - SL_DIM.SSET + 1) * SL_MAX_SETS,
    );
  }
  for (const e of t.setcls) {
    const bit = e.mask.toString(2).length - 1; // the highest: the only one of a one-set mask
    if (bit < SL_MAX_SETS && e.mask === 1n << BigInt(bit))
      out[(e.dim - SL_DIM.SSET) * SL_MAX_SETS + bit] = e.cls + 1;
  }
  return out;
}

/** A u64 mask value (sl_set6). */
export function encodeMask(mask: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt.asUintN(64, mask));
  return b;
}

/** Index formulas of the per-generation arrays. */
export const index = {
  vec: (gen: Gen, cls: number): number => gen * SL_MAX_CLASSES + cls,
  rule: (gen: Gen, position: number): number => gen * SL_MAX_RULES + position,
  proto: (gen: Gen, slot: number): number => gen * SL_PROTO_SLOTS + slot,
  port: (gen: Gen, dport: boolean, port: number): number =>
    (gen * 2 + (dport ? 1 : 0)) * SL_PORT_SLOTS + port,
  icmp: (gen: Gen, v6: boolean, slot: number): number =>
    (gen * 2 + (v6 ? 1 : 0)) * SL_ICMP_SLOTS + slot,
  vlan: (gen: Gen, slot: number): number => gen * SL_VLAN_SLOTS + slot,
  flags: (gen: Gen, slot: number): number => gen * SL_FLAGS_SLOTS + slot,
  /** `slot` of encodeSetcls1's array. */
  setcls1: (gen: Gen, slot: number): number => gen * 2 * SL_MAX_SETS + slot,
};

/** Sum of a per-CPU value's u64 fields at `offsets`, over CPUs. */
export function sumU64(values: readonly Buffer[] | null, offset: number): number {
  let total = 0n;
  for (const v of values ?? []) total += v.readBigUInt64LE(offset);
  return Number(total);
}

/** Largest u64 at `offset` over CPUs (for last-hit times). */
export function maxU64(values: readonly Buffer[] | null, offset: number): bigint {
  let max = 0n;
  for (const v of values ?? []) {
    const x = v.readBigUInt64LE(offset);
    if (x > max) max = x;
  }
  return max;
}
