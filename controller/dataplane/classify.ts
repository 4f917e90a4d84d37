// Compiles a validated rule set into the pipeline's classification tables (aggregated bit vectors, pipeline.h), as plain data.
//
// For each of the SL_DIMS dimensions, every value a packet's field can take is mapped to a class,
// and each class to a vector: the positions of the rules that the value allows. A rule that does
// not constrain a dimension is in every class of it, including the dimension's `absent` class
// (packets without the field). Classes are shared by all dimensions and deduplicated, so equal
// vectors cost one struct sl_vec.
//
// A rule with ports but no protocol matches only TCP, UDP and SCTP, a rule with ICMP only its
// family's ICMP, a rule with TCP flags only TCP, without adding a PROTO constraint: the parser
// gives ports, ICMP fields and flags only to those protocols (not to later fragments), and every
// other packet takes the dimension's absent class, which holds no rule constraining it.
//
// The work is linear in the rules and in the distinct values they name, never in
// 65536 × rules: port and ICMP tables come from a sweep over interval end points (elementary
// intervals), prefix tables from one walk over the sorted prefixes (each prefix's vector is its
// closest enclosing prefix's vector plus its own rules), and vectors are Uint32Array bitsets
// interned through a hash of their words.
import { endianness } from 'node:os';
import { LimitExceededError, SetNotFoundError } from './errors.js';
import {
  SL_DIM,
  SL_DIMS,
  SL_FLAGS_SLOTS,
  SL_MAX_CLASSES,
  SL_MAX_FILTERS,
  SL_MAX_RULES,
  SL_MAX_SETS,
  SL_PROTO_SLOTS,
  SL_VLAN_SLOTS,
  SL_WORDS,
} from './abi.js';
import { addressInPrefix, prefixKey, type Rule, type SetAction } from './model.js';

/** Bytes of one struct sl_vec: the summary word and SL_WORDS words, u64 little-endian. */
export const SL_VEC_BYTES = 8 + SL_WORDS * 8;

/** 32-bit words of a bitset over SL_MAX_RULES positions. */
const WORDS32 = SL_MAX_RULES / 32;
/** 32-bit words of a struct sl_vec image: two of summary, then the rule bits. */
export const VEC_WORDS32 = SL_VEC_BYTES / 4;
// Local copies: hot loops read them, and module bindings may be getters once transpiled.
const { SRC, DST, SSET, DSET, PROTO, SPORT, DPORT, ICMP, VLAN, FLAGS } = SL_DIM;
const MAX_CLASSES = SL_MAX_CLASSES;
const MAX_SETS = SL_MAX_SETS;
export const LITTLE_ENDIAN = endianness() === 'LE';

/** Options of compileClassifier. */
export interface ClassifyOptions {
  /** Bit of the u64 set mask of every set a rule names (assignSetBits). */
  setBits: ReadonlyMap<string, number>;
  /** The distinct masks the shared set tries hold (compileSetEntries().masks). */
  masks: readonly bigint[];
  defaultAction: SetAction;
  malformed: SetAction;
}

/** A sl_pfx4 or sl_pfx6 entry (the loader adds gen and prefixlen = 16 + len to the key). */
export interface PrefixClass {
  dim: 0 | 1;
  /** 4 or 16 bytes, network order, zero past `len`. */
  addr: Uint8Array;
  len: number;
  cls: number;
}

/** A sl_setcls entry: the class of a set mask in a dimension. */
export interface SetClass {
  dim: 2 | 3;
  mask: bigint;
  cls: number;
}

/** A rule position: the rule and, for a filter rule, its bit of the filter mask. */
export interface Position {
  rule: Rule;
  filterBit?: number;
}

/** Everything one generation of the classification maps holds, as plain data. */
export interface ClassifierTables {
  /** Positions in use. */
  nrules: number;
  /** Bit (1 << SL_DIM_x) per dimension the program ANDs (sl_gen_cfg.dims). */
  dims: number;
  /** [SL_DIMS] class of the rules that do not constrain each dimension. */
  absent: number[];
  /**
   * The struct sl_vec images of all classes, SL_VEC_BYTES each in class order (summary u64 LE,
   * then SL_WORDS words u64 LE): what the loader writes.
   */
  vectorImages: Uint8Array;
  /** class → its image in vectorImages (views, made on first use). */
  readonly vectors: Uint8Array[];
  /** sl_pfx4 entries; a /0 per dimension always. */
  pfx4: PrefixClass[];
  /** sl_pfx6 entries; a /0 per dimension always. */
  pfx6: PrefixClass[];
  /** sl_setcls entries; masks whose vector is the absent one are left out. */
  setcls: SetClass[];
  /** sl_proto half: SL_PROTO_SLOTS classes; index 256 = not IP. */
  proto: Uint32Array;
  /** sl_ports halves: [sport, dport], 65536 classes each. */
  ports: [Uint32Array, Uint32Array];
  /** sl_icmp halves: [ICMPv4, ICMPv6], 65536 classes each, index type * 256 + code. */
  icmp: [Uint32Array, Uint32Array];
  /** sl_vlan half: SL_VLAN_SLOTS classes; index 4096 = untagged. */
  vlan: Uint32Array;
  /** sl_flags half: SL_FLAGS_SLOTS classes; index 256 = not TCP. */
  flags: Uint32Array;
  /** Class of the vector of every rule with a filter (an empty vector when there is none). */
  filterCls: number;
  hasFilters: boolean;
  /** position → rule. */
  positions: Position[];
  /** filter bit → expression. */
  filters: string[];
  /** The set bits and masks the set dimensions were compiled against (ClassifyOptions). */
  setBits: ReadonlyMap<string, number>;
  masks: readonly bigint[];
  defaultAction: SetAction;
  malformed: SetAction;
}

/** A getter of the views of each class's image in `images`, made on first use. */
function lazyVectors(images: Uint8Array): () => Uint8Array[] {
  let vectors: Uint8Array[] | undefined;
  return () =>
    (vectors ??= Array.from({ length: images.length / SL_VEC_BYTES }, (_, cls) =>
      images.subarray(cls * SL_VEC_BYTES, (cls + 1) * SL_VEC_BYTES),
    ));
}

/**
 * Interns bitsets: equal vectors get one class id, in order of first appearance. A vector is
 * kept as its first `nw` words (the rules in use), not SL_MAX_RULES bits: the rest are zero.
 */
class ClassPool {
  private readonly stride: number;
  private store: Uint32Array;
  private readonly buckets = new Map<number, number[]>();
  count = 0;

  constructor(private readonly nw: number) {
    this.stride = Math.max(nw, 1);
    this.store = new Uint32Array(256 * this.stride);
  }

  intern(vec: Uint32Array): number {
    const nw = this.nw;
    const stride = this.stride;
    let h = 0x811c9dc5;
    for (let i = 0; i < nw; i++) {
      h = Math.imul(h ^ vec[i], 0x01000193);
      h ^= h >>> 15; // without it, high bits never reach low ones and vectors collide
    }
    const bucket = this.buckets.get(h);
    if (bucket) {
      for (const cls of bucket) {
        const base = cls * stride;
        let same = true;
        for (let i = 0; i < nw; i++)
          if (this.store[base + i] !== vec[i]) {
            same = false;
            break;
          }
        if (same) return cls;
      }
    }
    const cls = this.count;
    if (cls >= MAX_CLASSES)
      throw new LimitExceededError(
        `rule set needs more than ${SL_MAX_CLASSES} classes (distinct sets of rules allowed by one field value): ` +
          'use fewer distinct prefixes, port ranges or ICMP types, or move prefixes into sets',
        { resource: 'classes', limit: SL_MAX_CLASSES, count: cls + 1 },
      );
    if ((cls + 1) * stride > this.store.length) {
      const grown = new Uint32Array(this.store.length * 2);
      grown.set(this.store);
      this.store = grown;
    }
    // A loop, not store.set(vec.subarray(…)): a typed-array view costs more than the copy.
    const store = this.store;
    const base = cls * stride;
    for (let i = 0; i < nw; i++) store[base + i] = vec[i];
    this.count++;
    if (bucket) bucket.push(cls);
    else this.buckets.set(h, [cls]);
    return cls;
  }

  /** The struct sl_vec images of every class, one after another. */
  images(): Uint8Array {
    const n = this.count;
    const nw = this.nw;
    const stride = this.stride;
    // Zero-filled: words past the rules in use stay zero.
    const bytes = new Uint8Array(n * SL_VEC_BYTES);
    const all = new Uint32Array(bytes.buffer);
    const store = this.store;
    for (let cls = 0; cls < n; cls++) {
      const from = cls * stride;
      const to = cls * VEC_WORDS32;
      let summaryLo = 0;
      let summaryHi = 0;
      for (let w = 0; 2 * w < nw; w++) {
        const lo = store[from + 2 * w];
        const hi = 2 * w + 1 < nw ? store[from + 2 * w + 1] : 0;
        all[to + 2 + 2 * w] = lo;
        all[to + 3 + 2 * w] = hi;
        if ((lo | hi) !== 0) {
          if (w < 32) summaryLo |= 1 << w;
          else summaryHi |= 1 << (w - 32);
        }
      }
      all[to] = summaryLo;
      all[to + 1] = summaryHi;
    }
    // The words were stored in host order; the kernel's u64 are little-endian.
    if (!LITTLE_ENDIAN) for (let i = 0; i < all.length; i++) all[i] = swap32(all[i]);
    return bytes;
  }
}

function swap32(v: number): number {
  return ((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24);
}

function setBit(vec: Uint32Array, pos: number): void {
  vec[pos >>> 5] |= 1 << (pos & 31);
}

function clearBit(vec: Uint32Array, pos: number): void {
  vec[pos >>> 5] &= ~(1 << (pos & 31));
}

/** Which dimensions a rule constrains, as a bit mask. */
export function constrained(rule: Rule): number {
  let m = 0;
  if (rule.src) m |= 1 << SRC;
  if (rule.dst) m |= 1 << DST;
  if (rule.srcSet !== undefined) m |= 1 << SSET;
  if (rule.dstSet !== undefined) m |= 1 << DSET;
  if (rule.proto !== undefined) m |= 1 << PROTO;
  if (rule.sport) m |= 1 << SPORT;
  if (rule.dport) m |= 1 << DPORT;
  if (rule.icmp) m |= 1 << ICMP;
  if (rule.vlan !== undefined) m |= 1 << VLAN;
  if (rule.tcpFlags) m |= 1 << FLAGS;
  return m;
}

/**
 * Fills `table` (one class per value) from inclusive intervals, one per rule: the class of a value
 * is the vector of `base` plus every rule whose interval holds it. Sweeps the sorted end points,
 * so the cost is the number of intervals, not the table size times the rules.
 */
function sweepIntervals(
  table: Uint32Array,
  base: Uint32Array,
  intervals: { pos: number; lo: number; hi: number }[],
  pool: ClassPool,
): void {
  const size = table.length;
  // event = point * 2^13 + position * 2 + (1 = add, 0 = remove); removals sort before additions
  const events = new Float64Array(intervals.length * 2);
  let n = 0;
  for (const { pos, lo, hi } of intervals) {
    events[n++] = lo * 8192 + pos * 2 + 1;
    if (hi + 1 < size) events[n++] = (hi + 1) * 8192 + pos * 2;
  }
  const sorted = events.subarray(0, n).sort();
  const cur = base.slice();
  let from = 0;
  let i = 0;
  while (i < n) {
    const point = Math.floor(sorted[i] / 8192);
    if (point > from) {
      table.fill(pool.intern(cur), from, point);
      from = point;
    }
    while (i < n && Math.floor(sorted[i] / 8192) === point) {
      const rest = sorted[i] % 8192;
      const pos = rest >>> 1;
      if (rest & 1) setBit(cur, pos);
      else clearBit(cur, pos);
      i++;
    }
  }
  table.fill(pool.intern(cur), from, size);
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}

/**
 * Fills `table[value]` with a class for each value some rule names exactly (a protocol, a VLAN
 * id): the unconstrained rules plus the rules naming that value. Other slots keep what they hold.
 */
function exactValueClasses(
  table: Uint32Array,
  rules: readonly Rule[],
  pick: (rule: Rule) => number | undefined,
  unconstrained: Uint32Array,
  pool: ClassPool,
): void {
  const byValue = new Map<number, number[]>();
  rules.forEach((rule, pos) => {
    const value = pick(rule);
    if (value === undefined) return;
    const list = byValue.get(value);
    if (list) list.push(pos);
    else byValue.set(value, [pos]);
  });
  for (const [value, positions] of [...byValue].sort((a, b) => a[0] - b[0])) {
    const vec = unconstrained.slice();
    for (const pos of positions) setBit(vec, pos);
    table[value] = pool.intern(vec);
  }
}

/**
 * Compiles rules (in position order: validateRuleSet's `rules`) into one generation's
 * classification tables, exactly as pipeline.h describes them. Every table is filled, also for
 * dimensions no rule constrains (with the absent class, which is then class 0: every rule), so
 * that any of them may be read; only
 * the constrained ones get their bit in `dims`, except that `dims` is never 0: with no
 * constraint at all it holds SL_DIM_PROTO, whose every class is then the vector of all rules,
 * so the program never ANDs over an empty set of dimensions. Throws `LimitExceededError` past
 * SL_MAX_RULES rules, SL_MAX_FILTERS distinct filters or SL_MAX_CLASSES classes, and
 * `SetNotFoundError` for a set without a bit in `options.setBits`. Needs no kernel.
 */
export function compileClassifier(
  rules: readonly Rule[],
  options: ClassifyOptions,
): ClassifierTables {
  const nrules = rules.length;
  if (nrules > SL_MAX_RULES)
    throw new LimitExceededError(
      `rule set has ${nrules} rules, more than the ${SL_MAX_RULES} a pipeline holds`,
      { resource: 'rules', limit: SL_MAX_RULES, count: nrules },
    );
  const nw = Math.ceil(nrules / 32);
  const pool = new ClassPool(nw);
  const masks = rules.map(constrained);

  // Per dimension: the rules that do not constrain it.
  const unconstrained: Uint32Array[] = [];
  let dims = 0;
  for (let d = 0; d < SL_DIMS; d++) {
    const v = new Uint32Array(WORDS32);
    for (let p = 0; p < nrules; p++) {
      if (masks[p] & (1 << d)) dims |= 1 << d;
      else setBit(v, p);
    }
    unconstrained.push(v);
  }
  if (dims === 0) dims = 1 << PROTO;
  // Class 0 is the vector of every rule: the absent class of each dimension no rule constrains,
  // so those dimensions' tables are all zero whatever the rule set, and a new generation's
  // write of them differs from the last in nothing.
  const all = new Uint32Array(WORDS32);
  for (let p = 0; p < nrules; p++) setBit(all, p);
  pool.intern(all);
  const absent = unconstrained.map((v) => pool.intern(v));

  // SL_DIM_SRC, SL_DIM_DST: every distinct prefix per family, and a /0.
  const pfx4: PrefixClass[] = [];
  const pfx6: PrefixClass[] = [];
  for (const dim of [SRC, DST] as const) {
    for (const family of [4, 6] as const) {
      const bytes = family === 4 ? 4 : 16;
      const byKey = new Map<string, { addr: Uint8Array; len: number; positions: number[] }>();
      const zero = new Uint8Array(bytes);
      byKey.set(prefixKey({ family, addr: zero, len: 0 }), { addr: zero, len: 0, positions: [] });
      rules.forEach((rule, pos) => {
        const p = dim === SRC ? rule.src : rule.dst;
        if (!p || p.family !== family) return;
        const key = prefixKey(p);
        let e = byKey.get(key);
        if (!e) {
          e = { addr: p.addr, len: p.len, positions: [] };
          byKey.set(key, e);
        }
        e.positions.push(pos);
      });
      const sorted = [...byKey.values()].sort(
        (a, b) => compareBytes(a.addr, b.addr) || a.len - b.len,
      );
      const out = family === 4 ? pfx4 : pfx6;
      // The /0 sorts first and contains everything, so the stack never empties below it.
      const stack: { addr: Uint8Array; len: number; vec: Uint32Array }[] = [];
      for (const e of sorted) {
        while (
          stack.length > 0 &&
          !addressInPrefix(
            { family, addr: stack[stack.length - 1].addr, len: stack[stack.length - 1].len },
            family,
            e.addr,
          )
        )
          stack.pop();
        const vec = (stack.length > 0 ? stack[stack.length - 1].vec : unconstrained[dim]).slice();
        for (const pos of e.positions) setBit(vec, pos);
        stack.push({ addr: e.addr, len: e.len, vec });
        out.push({ dim, addr: e.addr.slice(), len: e.len, cls: pool.intern(vec) });
      }
    }
  }

  // SL_DIM_SSET, SL_DIM_DSET: one entry per set mask that allows some rule.
  const setcls: SetClass[] = [];
  for (const dim of [SSET, DSET] as const) {
    const byBit: (number[] | undefined)[] = new Array(MAX_SETS);
    rules.forEach((rule, pos) => {
      const name = dim === SSET ? rule.srcSet : rule.dstSet;
      if (name === undefined) return;
      const bit = options.setBits.get(name);
      if (bit === undefined || !(bit >= 0 && bit < MAX_SETS))
        throw new SetNotFoundError(
          `compile rule set: position ${pos}: set "${name}" has no bit of the set mask`,
          {
            ruleIndex: rule.index,
            ...(rule.id !== undefined ? { ruleId: rule.id } : {}),
            field: dim === SSET ? 'srcSet' : 'dstSet',
            set: name,
          },
        );
      (byBit[bit] ??= []).push(pos);
    });
    if (!byBit.some((b) => b)) continue;
    const seen = new Set<bigint>();
    for (const mask of options.masks) {
      if (seen.has(mask)) continue;
      seen.add(mask);
      let vec: Uint32Array | undefined;
      for (let bit = 0; bit < MAX_SETS; bit++) {
        const positions = byBit[bit];
        if (!positions || ((mask >> BigInt(bit)) & 1n) === 0n) continue;
        vec ??= unconstrained[dim].slice();
        for (const pos of positions) setBit(vec, pos);
      }
      if (vec) setcls.push({ dim, mask, cls: pool.intern(vec) });
    }
  }

  // SL_DIM_PROTO: one class per protocol a rule names; 256 (not IP) and the rest are absent.
  const proto = new Uint32Array(SL_PROTO_SLOTS).fill(absent[PROTO]);
  exactValueClasses(proto, rules, (rule) => rule.proto, unconstrained[PROTO], pool);

  // SL_DIM_SPORT, SL_DIM_DPORT: elementary intervals of the port ranges.
  const ports: [Uint32Array, Uint32Array] = [new Uint32Array(65536), new Uint32Array(65536)];
  for (const [i, dim] of [SPORT, DPORT].entries()) {
    const intervals: { pos: number; lo: number; hi: number }[] = [];
    rules.forEach((rule, pos) => {
      const r = dim === SPORT ? rule.sport : rule.dport;
      if (r) intervals.push({ pos, lo: r[0], hi: r[1] });
    });
    sweepIntervals(ports[i], unconstrained[dim], intervals, pool);
  }

  // SL_DIM_ICMP: a type is the interval of its 256 codes.
  const icmp: [Uint32Array, Uint32Array] = [new Uint32Array(65536), new Uint32Array(65536)];
  for (const [i, family] of [4, 6].entries()) {
    const intervals: { pos: number; lo: number; hi: number }[] = [];
    rules.forEach((rule, pos) => {
      const m = rule.icmp;
      if (!m || m.family !== family) return;
      const base = m.type * 256;
      if (m.code === undefined) intervals.push({ pos, lo: base, hi: base + 255 });
      else intervals.push({ pos, lo: base + m.code, hi: base + m.code });
    });
    sweepIntervals(icmp[i], unconstrained[ICMP], intervals, pool);
  }

  // SL_DIM_VLAN: one class per VLAN id a rule names; untagged (4096) and the rest are absent.
  const vlan = new Uint32Array(SL_VLAN_SLOTS).fill(absent[VLAN]);
  exactValueClasses(vlan, rules, (rule) => rule.vlan, unconstrained[VLAN], pool);

  // SL_DIM_FLAGS: each of the 256 flag bytes against each distinct (set, unset) pair.
  const flags = new Uint32Array(SL_FLAGS_SLOTS).fill(absent[FLAGS]);
  if (dims & (1 << FLAGS)) {
    const byPair = new Map<number, number[]>();
    rules.forEach((rule, pos) => {
      const f = rule.tcpFlags;
      if (!f) return;
      const key = (f.set << 8) | f.unset;
      const list = byPair.get(key);
      if (list) list.push(pos);
      else byPair.set(key, [pos]);
    });
    const pairs = [...byPair];
    for (let f = 0; f < 256; f++) {
      const vec = unconstrained[FLAGS].slice();
      for (const [key, positions] of pairs) {
        const set = key >>> 8;
        const unset = key & 0xff;
        if ((f & set) === set && (f & unset) === 0) for (const pos of positions) setBit(vec, pos);
      }
      flags[f] = pool.intern(vec);
    }
  }

  // Filters: a bit per distinct expression, in position order; one class holds every filter rule.
  const filters: string[] = [];
  const filterBits = new Map<string, number>();
  const filterVec = new Uint32Array(WORDS32);
  const positions: Position[] = rules.map((rule, pos) => {
    if (rule.filter === undefined) return { rule };
    let bit = filterBits.get(rule.filter);
    if (bit === undefined) {
      bit = filters.length;
      if (bit >= SL_MAX_FILTERS)
        throw new LimitExceededError(
          `rule set has more than ${SL_MAX_FILTERS} distinct filter expressions, the most a pipeline holds`,
          { resource: 'filters', limit: SL_MAX_FILTERS, count: bit + 1 },
        );
      filters.push(rule.filter);
      filterBits.set(rule.filter, bit);
    }
    setBit(filterVec, pos);
    return { rule, filterBit: bit };
  });
  const filterCls = pool.intern(filterVec);

  return classifierTables(
    {
      nrules,
      dims,
      absent,
      vectorImages: pool.images(),
      pfx4,
      pfx6,
      setcls,
      proto,
      ports,
      icmp,
      vlan,
      flags,
      filterCls,
      hasFilters: filters.length > 0,
      positions,
      filters,
    },
    options,
  );
}

/**
 * Tables of `parts` compiled with `options`: with the per-class views of their vector images made
 * on first use, and the options' set bits, masks and actions (what an extension must match).
 */
export function classifierTables(
  parts: Omit<ClassifierTables, 'vectors' | 'setBits' | 'masks' | 'defaultAction' | 'malformed'>,
  options: ClassifyOptions,
): ClassifierTables {
  const vectors = lazyVectors(parts.vectorImages);
  return {
    ...parts,
    get vectors(): Uint8Array[] {
      return vectors();
    },
    setBits: options.setBits,
    masks: options.masks,
    defaultAction: options.defaultAction,
    malformed: options.malformed,
  };
}
