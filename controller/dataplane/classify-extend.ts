// Extends compiled classification tables by rules appended at the end of the rule set, in time
// that grows with the tables' slots a new rule touches and the classes it changes, not with the
// rules already there: a rule added to a device of 2,000 rules costs what it costs on an empty
// one, where compileClassifier does everything again.
//
// An appended rule at position p sets bit p in the vector of every slot its match allows: in
// each dimension it does not constrain, every slot (and the dimension's absent class); in one it
// does, the slots it names. The work is done per reference to a class (a table slot, a prefix or
// set-mask entry, an absent class): references to class c that all gain the same bits change c
// in place, any others get a copy of c with their bits. Classes are never merged again, so the
// count can grow past what a full compile would give; past the limit the caller compiles afresh.
//
// Only the common case is handled: rules appended behind rules whose matches are unchanged, the
// same set bits and masks, no filter expressions among the new rules. Anything else returns
// null, and the caller compiles the whole rule set (which also renumbers classes compactly).
//
// The tables are changed in place (a copy of the vector images and of a port table per rule add
// costs more than everything else together): the tables given are used up by the call, and a
// reader that keeps what it wrote (the attachment's shadow of a generation) keeps a copy.
import { SL_DIM, SL_DIMS, SL_MAX_CLASSES, SL_MAX_RULES } from './abi.js';
import {
  classifierTables,
  constrained,
  LITTLE_ENDIAN,
  SL_VEC_BYTES,
  VEC_WORDS32,
  type ClassifierTables,
  type ClassifyOptions,
  type Position,
  type PrefixClass,
  type SetClass,
} from './classify.js';
import { type Prefix, type Rule } from './model.js';

const { SRC, DST, SSET, DSET, PROTO, SPORT, DPORT, ICMP, VLAN, FLAGS } = SL_DIM;
const MAX_APPENDED = 256;
/** How many more references a group needs than those left unchanged to keep their class. */
const MOVE_MIN = 4096;

/** References to each class in a generation's tables, by class: what decides in place or copy. */
const referenceCounts = new WeakMap<ClassifierTables, Int32Array>();
/**
 * Tables (the arrays, changed in place from one extension to the next) whose every slot holds
 * one class, with that class: most dimensions of a rule set are unconstrained, or nearly.
 */
const uniformTables = new WeakMap<Uint32Array, number>();

/** A run of table slots [from, to) whose vectors all gain the bits of delta `delta`. */
interface Segment {
  from: number;
  to: number;
  delta: number;
}

/** Tables an extension used up: reading them again would see their successor's contents. */
const usedUp = new WeakSet<ClassifierTables>();

/**
 * The tables of `rules` made from `prev` (the tables of a prefix of `rules`) by appending the
 * rest, or null when that is not the case this handles (see the module comment) and
 * compileClassifier must run. Either way `prev` is used up: its buffers may now be the result's
 * or half changed, and extending it again throws.
 */
export function extendClassifier(
  prev: ClassifierTables,
  rules: readonly Rule[],
  options: ClassifyOptions,
): ClassifierTables | null {
  if (usedUp.has(prev)) throw new Error('extendClassifier: these tables were extended already');
  usedUp.add(prev);
  const n0 = prev.nrules;
  const n1 = rules.length;
  // Past a few hundred new rules, one full compile is as quick and numbers classes compactly.
  if (!LITTLE_ENDIAN || n1 <= n0 || n1 > SL_MAX_RULES || n1 - n0 > MAX_APPENDED) return null;
  if (!sameSetContext(prev, options)) return null;
  for (let p = 0; p < n0; p++) {
    const rule = prev.positions[p].rule;
    if (rule !== rules[p] && !sameMatch(rule, rules[p])) return null;
  }
  const added = rules.slice(n0);
  for (const rule of added) {
    if (rule.filter !== undefined) return null;
    for (const name of [rule.srcSet, rule.dstSet])
      if (name !== undefined && options.setBits.get(name) === undefined) return null;
  }

  const step = new Extension(prev, added, n0, options);
  if (!step.plan()) return null;
  return step.build(rules);
}

/** One extension: plans every reference's new bits, then rewrites what changes. */
class Extension {
  /** The bits each delta adds, words w0 … w0 + width - 1 of a vector. */
  private readonly deltas: Uint32Array[] = [];
  private readonly deltaIds = new Map<string, number>();
  private readonly w0: number;
  private readonly width: number;
  /** Per dimension: the delta of the rules that do not constrain it (-1: none). */
  private readonly unconstrained: number[] = [];
  /** (class * deltas + delta) → references of that class gaining that delta. */
  private readonly groups = new Map<number, number>();
  /** (class * deltas + delta) → the class those references hold afterwards. */
  private readonly targets = new Map<number, number>();
  /** Class → the copy of its old bits that its unchanged references move to (see decide). */
  private readonly moved = new Map<number, number>();
  private refs!: Int32Array;
  private images!: Uint8Array;
  private words!: Uint32Array;
  private classes: number;
  /** Segments per table, planned once and walked twice (count, then rewrite). */
  private readonly segments = new Map<Uint32Array, Segment[]>();
  private readonly pfx: { entry: PrefixClass; delta: number }[] = [];
  private readonly setcls: { entry: SetClass; delta: number }[] = [];
  /** Entries the new rules add: references the counts of `prev` do not hold. */
  private newEntries: (PrefixClass | SetClass)[] = [];

  constructor(
    private readonly prev: ClassifierTables,
    private readonly added: readonly Rule[],
    private readonly n0: number,
    private readonly options: ClassifyOptions,
  ) {
    this.w0 = n0 >>> 5;
    this.width = ((n0 + added.length - 1) >>> 5) - this.w0 + 1;
    this.classes = prev.vectorImages.length / SL_VEC_BYTES;
  }

  /** Decides every reference's delta and which classes change in place; false past the limit. */
  plan(): boolean {
    const masks = this.added.map(constrained);
    for (let d = 0; d < SL_DIMS; d++) {
      const bits = this.emptyDelta();
      let any = false;
      masks.forEach((m, i) => {
        if (m & (1 << d)) return;
        this.setPosition(bits, this.n0 + i);
        any = true;
      });
      this.unconstrained.push(any ? this.intern(bits) : -1);
    }
    this.planTables();
    this.planPrefixes();
    this.planSetMasks();
    // Only now the number of deltas is final: group keys are class * deltas + delta.
    this.refs = referenceCounts.get(this.prev) ?? countReferences(this.prev);
    referenceCounts.delete(this.prev);
    this.countTables();
    for (const { entry, delta } of [...this.pfx, ...this.setcls])
      if (delta >= 0) this.count(entry.cls, delta, 1);
    for (let d = 0; d < SL_DIMS; d++)
      if (this.unconstrained[d] >= 0) this.count(this.prev.absent[d], this.unconstrained[d], 1);
    return this.decide();
  }

  /** The new generation's tables: copies of what changes, the rest shared with `prev`. */
  build(rules: readonly Rule[]): ClassifierTables {
    const prev = this.prev;
    const to = (cls: number, delta: number): number =>
      delta < 0
        ? (this.moved.get(cls) ?? cls)
        : this.targets.get(cls * this.deltas.length + delta)!;
    const table = (t: Uint32Array): Uint32Array => this.rewriteTable(t);
    const absent = prev.absent.map((cls, d) => to(cls, this.unconstrained[d]));
    const pfx4: PrefixClass[] = [];
    const pfx6: PrefixClass[] = [];
    for (const { entry, delta } of this.pfx) {
      const cls = to(entry.cls, delta);
      (entry.addr.length === 4 ? pfx4 : pfx6).push(cls === entry.cls ? entry : { ...entry, cls });
    }
    const setcls = this.setcls.map(({ entry, delta }) => {
      const cls = to(entry.cls, delta);
      return cls === entry.cls ? entry : { ...entry, cls };
    });
    let dims = 0;
    for (const rule of rules) dims |= constrained(rule);
    if (dims === 0) dims = 1 << PROTO;
    const tables = classifierTables(
      {
        nrules: rules.length,
        dims,
        absent,
        vectorImages: this.images.subarray(0, this.classes * SL_VEC_BYTES),
        pfx4,
        pfx6,
        setcls,
        proto: table(prev.proto),
        ports: [table(prev.ports[0]), table(prev.ports[1])],
        icmp: [table(prev.icmp[0]), table(prev.icmp[1])],
        vlan: table(prev.vlan),
        flags: table(prev.flags),
        filterCls: to(prev.filterCls, -1),
        hasFilters: prev.hasFilters,
        positions: this.positions(rules),
        filters: prev.filters,
      },
      this.options,
    );
    referenceCounts.set(tables, this.refs);
    return tables;
  }

  /** prev's positions (used up with it) holding `rules`, the new ones behind. */
  private positions(rules: readonly Rule[]): Position[] {
    const positions = this.prev.positions;
    for (let p = 0; p < this.n0; p++) {
      const at = positions[p];
      // An earlier rule may be another object with the same match (its action changed, say).
      if (at.rule !== rules[p])
        positions[p] = at.filterBit === undefined ? { rule: rules[p] } : { ...at, rule: rules[p] };
    }
    for (let p = this.n0; p < rules.length; p++) positions.push({ rule: rules[p] });
    return positions;
  }

  // -- deltas --------------------------------------------------------------------------------

  private emptyDelta(): Uint32Array {
    return new Uint32Array(this.width);
  }

  private setPosition(bits: Uint32Array, pos: number): void {
    bits[(pos >>> 5) - this.w0] |= 1 << (pos & 31);
  }

  /** The id of the delta with these bits (-1 for none). */
  private intern(bits: Uint32Array): number {
    let empty = true;
    for (let i = 0; i < bits.length; i++) if (bits[i] !== 0) empty = false;
    if (empty) return -1;
    const key = bits.join(',');
    let id = this.deltaIds.get(key);
    if (id === undefined) {
      id = this.deltas.length;
      this.deltas.push(bits.slice());
      this.deltaIds.set(key, id);
    }
    return id;
  }

  // -- planning ------------------------------------------------------------------------------

  /** The segments of every table: where constrained new rules name slots, and elsewhere. */
  private planTables(): void {
    const added = this.added;
    const intervals = (pick: (rule: Rule) => [number, number][]): Interval[] =>
      added.flatMap((rule, i) => pick(rule).map(([lo, hi]) => ({ pos: this.n0 + i, lo, hi })));
    const prev = this.prev;
    const exact = (v: number | undefined): [number, number][] => (v === undefined ? [] : [[v, v]]);
    this.plan1(
      prev.proto,
      PROTO,
      intervals((r) => exact(r.proto)),
    );
    this.plan1(
      prev.ports[0],
      SPORT,
      intervals((r) => (r.sport ? [[...r.sport]] : [])),
    );
    this.plan1(
      prev.ports[1],
      DPORT,
      intervals((r) => (r.dport ? [[...r.dport]] : [])),
    );
    for (const [i, family] of [4, 6].entries()) {
      this.plan1(
        prev.icmp[i],
        ICMP,
        intervals((r) => {
          const m = r.icmp;
          if (!m || m.family !== family) return [];
          const base = m.type * 256;
          return [m.code === undefined ? [base, base + 255] : [base + m.code, base + m.code]];
        }),
      );
    }
    this.plan1(
      prev.vlan,
      VLAN,
      intervals((r) => exact(r.vlan)),
    );
    this.plan1(
      prev.flags,
      FLAGS,
      intervals((r) => {
        const f = r.tcpFlags;
        if (!f) return [];
        const slots: [number, number][] = [];
        for (let v = 0; v < 256; v++)
          if ((v & f.set) === f.set && (v & f.unset) === 0) slots.push([v, v]);
        return slots;
      }),
    );
  }

  /** Segments of one table: elementary intervals of `intervals`, over the dimension's delta. */
  private plan1(table: Uint32Array, dim: number, intervals: Interval[]): void {
    const base = this.unconstrained[dim];
    const size = table.length;
    const segments: Segment[] = [];
    if (intervals.length === 0) {
      if (base >= 0) segments.push({ from: 0, to: size, delta: base });
      this.segments.set(table, segments);
      return;
    }
    // event = point * 2^13 + position * 2 + (1 = add, 0 = remove); removals sort before additions
    const events = new Float64Array(intervals.length * 2);
    let n = 0;
    for (const { pos, lo, hi } of intervals) {
      events[n++] = lo * 8192 + pos * 2 + 1;
      if (hi + 1 < size) events[n++] = (hi + 1) * 8192 + pos * 2;
    }
    const sorted = events.subarray(0, n).sort();
    const cur = base >= 0 ? this.deltas[base].slice() : this.emptyDelta();
    let from = 0;
    let delta = base;
    const close = (to: number): void => {
      if (to > from && delta >= 0) segments.push({ from, to, delta });
    };
    for (let i = 0; i < n;) {
      const point = Math.floor(sorted[i] / 8192);
      close(point);
      from = point;
      for (; i < n && Math.floor(sorted[i] / 8192) === point; i++) {
        const rest = sorted[i] % 8192;
        const pos = rest >>> 1;
        const word = (pos >>> 5) - this.w0;
        if (rest & 1) cur[word] |= 1 << (pos & 31);
        else cur[word] &= ~(1 << (pos & 31));
      }
      delta = this.intern(cur);
    }
    close(size);
    this.segments.set(table, segments);
  }

  /** Prefix entries: each gains the rules not constraining its dimension and those holding it. */
  private planPrefixes(): void {
    const prev = this.prev;
    const entries = [...prev.pfx4, ...prev.pfx6];
    for (const dim of [SRC, DST] as const) {
      const named: { prefix: Prefix; pos: number }[] = [];
      this.added.forEach((rule, i) => {
        const prefix = dim === SRC ? rule.src : rule.dst;
        if (prefix) named.push({ prefix, pos: this.n0 + i });
      });
      const mine = entries.filter((e) => e.dim === dim);
      // A prefix no entry has yet starts from its closest enclosing entry's class.
      const known = new Set(mine.map((e) => entryKey(e)));
      for (const { prefix } of named) {
        const key = entryKey({ addr: prefix.addr, len: prefix.len });
        if (known.has(key)) continue;
        known.add(key);
        let closest: PrefixClass | undefined;
        for (const e of mine)
          if (
            e.addr.length === prefix.addr.length &&
            e.len <= prefix.len &&
            holds(e.addr, e.len, prefix.addr) &&
            (!closest || e.len > closest.len)
          )
            closest = e;
        // Every family has its /0, so some entry always holds the prefix.
        mine.push({ dim, addr: prefix.addr.slice(), len: prefix.len, cls: closest!.cls });
      }
      for (const entry of mine) {
        const base = this.unconstrained[dim];
        const bits = base >= 0 ? this.deltas[base].slice() : this.emptyDelta();
        for (const { prefix, pos } of named)
          if (
            prefix.addr.length === entry.addr.length &&
            prefix.len <= entry.len &&
            holds(prefix.addr, prefix.len, entry.addr)
          )
            this.setPosition(bits, pos);
        this.pfx.push({ entry, delta: this.intern(bits) });
      }
    }
  }

  /** Set-mask entries: each gains the rules not constraining its dimension and those it allows. */
  private planSetMasks(): void {
    for (const dim of [SSET, DSET] as const) {
      const bitOf: { bit: number; pos: number }[] = [];
      this.added.forEach((rule, i) => {
        const name = dim === SSET ? rule.srcSet : rule.dstSet;
        if (name !== undefined)
          bitOf.push({ bit: this.options.setBits.get(name)!, pos: this.n0 + i });
      });
      const mine = this.prev.setcls.filter((e) => e.dim === dim);
      const have = new Set(mine.map((e) => e.mask));
      // A mask without an entry held no rule of this dimension: its vector was the absent one.
      if (bitOf.length > 0)
        for (const mask of new Set(this.options.masks))
          if (!have.has(mask) && bitOf.some(({ bit }) => ((mask >> BigInt(bit)) & 1n) === 1n)) {
            mine.push({ dim, mask, cls: this.prev.absent[dim] });
            have.add(mask);
          }
      for (const entry of mine) {
        const base = this.unconstrained[dim];
        const bits = base >= 0 ? this.deltas[base].slice() : this.emptyDelta();
        for (const { bit, pos } of bitOf)
          if (((entry.mask >> BigInt(bit)) & 1n) === 1n) this.setPosition(bits, pos);
        this.setcls.push({ entry, delta: this.intern(bits) });
      }
    }
    const before = new Set([...this.prev.pfx4, ...this.prev.pfx6, ...this.prev.setcls]);
    this.newEntries = [...this.pfx, ...this.setcls]
      .map((e) => e.entry)
      .filter((e) => !before.has(e as PrefixClass & SetClass));
  }

  // -- counting and deciding -----------------------------------------------------------------

  private count(cls: number, delta: number, n: number): void {
    const key = cls * this.deltas.length + delta;
    this.groups.set(key, (this.groups.get(key) ?? 0) + n);
  }

  private countTables(): void {
    for (const e of this.newEntries) this.refs[e.cls]++;
    for (const [table, segments] of this.segments) {
      const whole = this.wholeTable(table, segments);
      if (whole !== undefined) {
        this.count(whole, segments[0].delta, table.length);
        continue;
      }
      forEachRun(table, segments, (cls, delta, s, e) => this.count(cls, delta, e - s));
    }
  }

  /**
   * For each class some references change: the largest group of them (a class, the bits they
   * gain) keeps the class and changes it in place; every other group gets a copy, taken from its
   * old bits first. References that gain nothing keep the class instead, unless a group
   * outnumbers them by MOVE_MIN or more: then they move to a copy of the old bits (#moved),
   * which rewrites fewer table slots. (The first rule to constrain the destination port makes
   * the slots of every unconstrained dimension gain it, and leaves the other ports as they were:
   * those 65,535 slots move, not the 200,000 others.)
   */
  private decide(): boolean {
    const nd = this.deltas.length;
    const refs = this.refs;
    const keysOf = new Map<number, number[]>();
    for (const key of this.groups.keys()) {
      const cls = Math.floor(key / nd);
      const keys = keysOf.get(cls);
      if (keys) keys.push(key);
      else keysOf.set(cls, [key]);
    }
    const plans: { cls: number; keys: number[]; keeper: number; unchanged: number }[] = [];
    let extra = 0;
    for (const [cls, keys] of keysOf) {
      let grouped = 0;
      let keeper = keys[0];
      for (const key of keys) {
        grouped += this.groups.get(key)!;
        if (this.groups.get(key)! > this.groups.get(keeper)!) keeper = key;
      }
      const unchanged = refs[cls] - grouped;
      if (unchanged > 0 && this.groups.get(keeper)! < unchanged + MOVE_MIN) keeper = -1;
      // A copy per group but the keeper, and one for the unchanged references that move.
      extra += unchanged === 0 ? keys.length - 1 : keys.length;
      plans.push({ cls, keys, keeper, unchanged });
    }
    if (this.classes + extra > SL_MAX_CLASSES) return false;
    const total = this.classes + extra;
    this.images = withRoom(this.prev.vectorImages, total * SL_VEC_BYTES);
    this.words = new Uint32Array(
      this.images.buffer,
      this.images.byteOffset,
      this.images.byteLength / 4,
    );
    for (const { cls, keys, keeper, unchanged } of plans) {
      for (const key of keys) {
        if (key === keeper) continue;
        const n = this.groups.get(key)!;
        const target = this.copyOf(cls);
        refs[cls] -= n;
        refs[target] = n;
        this.addBits(target, this.deltas[key - cls * nd]);
        this.targets.set(key, target);
      }
      if (keeper < 0) continue;
      if (unchanged > 0) {
        const moved = this.copyOf(cls);
        refs[cls] -= unchanged;
        refs[moved] = unchanged;
        this.moved.set(cls, moved);
      }
      this.addBits(cls, this.deltas[keeper - cls * nd]);
      this.targets.set(keeper, cls);
    }
    return true;
  }

  /** A new class holding `cls`'s bits. */
  private copyOf(cls: number): number {
    const target = this.classes++;
    this.words.copyWithin(target * VEC_WORDS32, cls * VEC_WORDS32, (cls + 1) * VEC_WORDS32);
    return target;
  }

  /** ORs `bits` into class `cls`'s vector and keeps its summary word right. */
  private addBits(cls: number, bits: Uint32Array): void {
    const words = this.words;
    const at = cls * VEC_WORDS32;
    for (let i = 0; i < bits.length; i++) {
      if (bits[i] === 0) continue;
      const w = this.w0 + i;
      words[at + 2 + w] |= bits[i];
      // Summary bit per u64 word: u32 word w is in u64 word w >> 1.
      const u64 = w >>> 1;
      if (u64 < 32) words[at] |= 1 << u64;
      else words[at + 1] |= 1 << (u64 - 32);
    }
  }

  /**
   * The class of every slot of `table` when all hold one (uniformTables) and all gain the same
   * bits: then the table is counted and rewritten without a walk over its slots.
   */
  private wholeTable(table: Uint32Array, segments: readonly Segment[]): number | undefined {
    if (segments.length !== 1 || segments[0].from !== 0 || segments[0].to !== table.length)
      return undefined;
    return uniformTables.get(table);
  }

  /** `table` with the slots whose class changed rewritten. */
  private rewriteTable(table: Uint32Array): Uint32Array {
    const nd = this.deltas.length;
    const segments = this.segments.get(table) ?? [];
    const whole = this.wholeTable(table, segments);
    if (whole !== undefined) {
      const target = this.targets.get(whole * nd + segments[0].delta)!;
      if (target !== whole) {
        table.fill(target);
        uniformTables.set(table, target);
      }
      return table;
    }
    // Slots now gain different bits, or the table was never known to be uniform.
    if (segments.length > 0) uniformTables.delete(table);
    forEachRun(table, segments, (cls, delta, s, e) => {
      const target = this.targets.get(cls * nd + delta)!;
      if (target !== cls) table.fill(target, s, e);
    });
    if (this.moved.size > 0) this.moveUnchanged(table, segments);
    return table;
  }

  /** The slots of `table` outside `segments` whose class moved (see decide), rewritten. */
  private moveUnchanged(table: Uint32Array, segments: readonly Segment[]): void {
    const uniform = segments.length === 0 ? uniformTables.get(table) : undefined;
    if (uniform !== undefined) {
      const target = this.moved.get(uniform);
      if (target !== undefined) {
        table.fill(target);
        uniformTables.set(table, target);
      }
      return;
    }
    const gaps: Segment[] = [];
    let from = 0;
    for (const seg of segments) {
      if (seg.from > from) gaps.push({ from, to: seg.from, delta: -1 });
      from = seg.to;
    }
    if (from < table.length) gaps.push({ from, to: table.length, delta: -1 });
    forEachRun(table, gaps, (cls, _delta, s, e) => {
      const target = this.moved.get(cls);
      if (target !== undefined) table.fill(target, s, e);
    });
  }
}

/**
 * `images` with `bytes` bytes (its first bytes kept): the same memory when its buffer has room
 * past it, else a copy in a buffer with room for as many classes again (at most SL_MAX_CLASSES).
 */
function withRoom(images: Uint8Array, bytes: number): Uint8Array {
  if (roomy.has(images.buffer) && images.byteOffset + bytes <= images.buffer.byteLength)
    return new Uint8Array(images.buffer, images.byteOffset, bytes);
  const room = Math.min(SL_MAX_CLASSES * SL_VEC_BYTES, Math.max(bytes, 2 * images.length));
  const out = new Uint8Array(room);
  roomy.add(out.buffer);
  out.set(images);
  return out.subarray(0, bytes);
}

/** Buffers withRoom made: nothing else lives past their images. */
const roomy = new WeakSet<ArrayBufferLike>();

/** Calls `fn` for each run [s, e) of equal classes within the segments of `table`. */
function forEachRun(
  table: Uint32Array,
  segments: readonly Segment[],
  fn: (cls: number, delta: number, s: number, e: number) => void,
): void {
  for (const { from, to, delta } of segments) {
    let s = from;
    while (s < to) {
      const cls = table[s];
      let e = s + 1;
      while (e < to && table[e] === cls) e++;
      fn(cls, delta, s, e);
      s = e;
    }
  }
}

interface Interval {
  pos: number;
  lo: number;
  hi: number;
}

/**
 * Counts, per class, the references the tables hold (slots, entries, absent and filter classes),
 * and notes the tables whose slots all hold one class.
 */
function countReferences(t: ClassifierTables): Int32Array {
  const refs = new Int32Array(SL_MAX_CLASSES);
  for (const table of [t.proto, t.ports[0], t.ports[1], t.icmp[0], t.icmp[1], t.vlan, t.flags]) {
    let uniform = true;
    for (let s = 0; s < table.length; s++) {
      refs[table[s]]++;
      if (table[s] !== table[0]) uniform = false;
    }
    if (uniform) uniformTables.set(table, table[0]);
  }
  for (const e of t.pfx4) refs[e.cls]++;
  for (const e of t.pfx6) refs[e.cls]++;
  for (const e of t.setcls) refs[e.cls]++;
  for (const cls of t.absent) refs[cls]++;
  refs[t.filterCls]++;
  referenceCounts.set(t, refs);
  return refs;
}

function entryKey(e: { addr: Uint8Array; len: number }): string {
  return `${e.len}/${e.addr.join('.')}`;
}

/** True when the first `len` bits of `addr` equal those of `prefix` (same length arrays). */
function holds(prefix: Uint8Array, len: number, addr: Uint8Array): boolean {
  const full = len >>> 3;
  for (let i = 0; i < full; i++) if (prefix[i] !== addr[i]) return false;
  const rest = len & 7;
  if (rest === 0) return true;
  const m = (0xff << (8 - rest)) & 0xff;
  return (prefix[full] & m) === (addr[full] & m);
}

/** True when `options` give the sets the same bits and masks `prev` was compiled with. */
function sameSetContext(prev: ClassifierTables, options: ClassifyOptions): boolean {
  if (prev.masks.length !== options.masks.length) return false;
  for (let i = 0; i < prev.masks.length; i++) if (prev.masks[i] !== options.masks[i]) return false;
  if (prev.setBits.size !== options.setBits.size) return false;
  for (const [name, bit] of prev.setBits) if (options.setBits.get(name) !== bit) return false;
  return true;
}

/** True when two rules match the same packets field by field (actions may differ). */
export function sameMatch(a: Rule, b: Rule): boolean {
  return (
    samePrefix(a.src, b.src) &&
    samePrefix(a.dst, b.dst) &&
    a.srcSet === b.srcSet &&
    a.dstSet === b.dstSet &&
    a.proto === b.proto &&
    sameRange(a.sport, b.sport) &&
    sameRange(a.dport, b.dport) &&
    a.icmp?.family === b.icmp?.family &&
    a.icmp?.type === b.icmp?.type &&
    a.icmp?.code === b.icmp?.code &&
    a.vlan === b.vlan &&
    a.tcpFlags?.set === b.tcpFlags?.set &&
    a.tcpFlags?.unset === b.tcpFlags?.unset &&
    a.filter === b.filter
  );
}

function samePrefix(a: Prefix | undefined, b: Prefix | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.family !== b.family || a.len !== b.len) return false;
  for (let i = 0; i < a.addr.length; i++) if (a.addr[i] !== b.addr[i]) return false;
  return true;
}

function sameRange(
  a: readonly [number, number] | undefined,
  b: readonly [number, number] | undefined,
): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a[0] === b[0] && a[1] === b[1];
}
