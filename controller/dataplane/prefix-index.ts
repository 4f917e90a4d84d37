// Prefix-set membership: per prefix, the sets of every prefix that contains it.
//
// The kernel keeps an LPM trie for IPv6 (sl_set6) whose value is a mask of the sets an address is
// in. A longest-prefix lookup returns only the most specific prefix, so when a /8 of set A holds a
// /24 of set B, the /24's value must be A|B: each entry's value is the OR of the "own" masks of all
// its ancestors and itself. IPv4 is held as ranges per /16 (set4-blocks.ts), which ranges()
// computes from the same values; the IPv4 changes ("trie batches") say which /16s to rewrite.
// IPv6 keeps the trie and adds ranges per /32 (set6-blocks.ts, from eachRanges6), which the
// trie's own changes say which to rewrite.
//
// Representation: one sorted array of keys with two parallel arrays, own mask and kernel value. Keys
// sort as (address, length), which puts a prefix right before everything inside it, so
//  - the descendants of a prefix are one contiguous run (a single change touches only that run);
//  - all values follow from one sweep with a stack of enclosing prefixes (bulk loads: a million
//    IPv4 prefixes in well under a second, no per-entry objects).
// IPv4 keys are numbers (address * 64 + length, exact below 2^38) in a Float64Array; IPv6 keys are
// 34-character hex strings (address, then length), whose string order is the same order.
// Masks are u32: at most 32 sets (SL_MAX_SETS).

/** One prefix of one family, network byte order, host bits zero. */
export interface PrefixBytes {
  family: 4 | 6;
  addr: Uint8Array;
  len: number;
}

/** Kernel writes, encoded as the set tries' keys (struct sl_set4_key / sl_set6_key) and u64 values. */
export interface TrieBatch {
  updateKeys: Buffer;
  updateValues: Buffer;
  updates: number;
  deleteKeys: Buffer;
  deletes: number;
}

/** FamilyIndex.ranges6: the ranges of one IPv6 /32. */
export interface Ranges6 {
  hi1: Uint32Array;
  hi2: Uint32Array;
  lo: Uint32Array;
  masks: Uint32Array;
  n: number;
  long: boolean;
}

const ONES = 0xffffffff;
const ZERO96 = '0'.repeat(24);
const HEX32 = (top: number): string => top.toString(16).padStart(8, '0');

/** The u32 written as 8 hex digits at `at` of `k` (no substring: this runs per key per sweep). */
function hexWord(k: string, at: number): number {
  let v = 0;
  for (let c = at; c < at + 8; c++) v = v * 16 + hexDigit(k.charCodeAt(c));
  return v;
}

/** A u32 word's low `bits` bits set (0 to 32 of them). */
function ones(bits: number): number {
  return bits >= 32 ? ONES : bits <= 0 ? 0 : 2 ** bits - 1;
}

/** Addresses in an IPv4 prefix, by length. */
const SIZE4 = Array.from({ length: 33 }, (_, len) => 2 ** (32 - len));

/** Changes past this many prefixes merge and recompute in one sweep instead of walking each. */
const SWEEP_THRESHOLD = 4096;

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** Key arithmetic of one family. */
interface Family<K extends number | string> {
  bits: number;
  keySize: number;
  keyOf(addr: Uint8Array, len: number): K;
  lenOf(key: K): number;
  /** The key of the `len`-bit prefix containing `key`'s address. */
  ancestor(key: K, len: number): K;
  /** The first key past every key inside `key`'s prefix. */
  after(key: K): K;
  /** Writes the kernel key (prefixlen u32 LE, address) at `at`. */
  encode(key: K, out: Buffer, at: number): void;
  sort(keys: K[]): K[];
}

const V4: Family<number> = {
  bits: 32,
  keySize: 8,
  keyOf: (a, len) => (((a[0] << 24) | (a[1] << 16) | (a[2] << 8) | a[3]) >>> 0) * 64 + len,
  // floor and multiply, not %: a float remainder is a library call in V8
  lenOf: (k) => k - Math.floor(k / 64) * 64,
  ancestor: (k, len) => {
    const size = 2 ** (32 - len);
    return Math.floor(Math.floor(k / 64) / size) * size * 64 + len;
  },
  after: (k) => (Math.floor(k / 64) + SIZE4[V4.lenOf(k)]) * 64,
  encode: (k, out, at) => {
    out.writeUInt32LE(V4.lenOf(k), at);
    out.writeUInt32BE(Math.floor(k / 64), at + 4);
  },
  sort: (keys) => Array.from(Float64Array.from(keys).sort()),
};

function hexDigit(c: number): number {
  return c <= 57 ? c - 48 : c - 87;
}

/** The hex address of a key with every bit past `len` cleared (fill "0") or set (fill "f"). */
function maskHex(k: string, len: number, fill: '0' | 'f'): string {
  const whole = len >> 2;
  const rem = len & 3;
  if (whole >= 32) return k.slice(0, 32);
  let s = k.slice(0, whole);
  let rest = 32 - whole;
  if (rem !== 0) {
    const d = hexDigit(k.charCodeAt(whole));
    const keep = (0xf << (4 - rem)) & 0xf;
    s += (fill === '0' ? d & keep : d | (~keep & 0xf)).toString(16);
    rest--;
  }
  return s + fill.repeat(rest);
}

const V6: Family<string> = {
  bits: 128,
  keySize: 20,
  keyOf: (a, len) => {
    let s = '';
    for (const b of a) s += HEX[b];
    return s + HEX[len];
  },
  lenOf: (k) => (hexDigit(k.charCodeAt(32)) << 4) | hexDigit(k.charCodeAt(33)),
  ancestor: (k, len) => maskHex(k, len, '0') + HEX[len],
  // The last address of the prefix, then "g": after every key inside it ("g" > any hex digit).
  after: (k) => maskHex(k, V6.lenOf(k), 'f') + 'g',
  encode: (k, out, at) => {
    out.writeUInt32LE(V6.lenOf(k), at);
    out.write(k.slice(0, 32), at + 4, 'hex');
  },
  sort: (keys) => keys.sort(),
};

/** Keys of one family, sorted: numbers (IPv4) or hex strings (IPv6). */
export type KeyArray = Float64Array | string[];

/** The index key of a prefix. */
export function prefixKey(p: PrefixBytes): number | string {
  return p.family === 4 ? V4.keyOf(p.addr, p.len) : V6.keyOf(p.addr, p.len);
}

/** The prefix of an index key, as text ("10.0.0.0/8", "2001:db8::/32" in full hex groups). */
export function formatKey(key: number | string): string {
  if (typeof key === 'number') {
    const a = Math.floor(key / 64);
    return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}/${key % 64}`;
  }
  const groups: string[] = [];
  for (let i = 0; i < 32; i += 4) groups.push(parseInt(key.slice(i, i + 4), 16).toString(16));
  return `${groups.join(':')}/${parseInt(key.slice(32), 16)}`;
}

/** The membership index of one address family. */
export class FamilyIndex {
  readonly #f: Family<number | string>;
  /** Sorted keys (#n used); entry i has own mask #own[i] and kernel value #value[i] (0: absent). */
  #keys: KeyArray;
  #own = new Uint32Array(0);
  #value = new Uint32Array(0);
  #n = 0;
  /** How many entries hold each non-zero value: the distinct masks the classifiers need. */
  readonly #maskCount = new Map<number, number>();
  /** Prefix lengths with a non-zero own mask, with counts, for the ancestor walk. */
  readonly #lengths = new Map<number, number>();

  /** What #sweep6 returns, kept across calls. */
  #ranges6: Ranges6 = {
    hi1: new Uint32Array(64),
    hi2: new Uint32Array(64),
    lo: new Uint32Array(64),
    masks: new Uint32Array(64),
    n: 1,
    long: false,
  };

  /** #sweep6's stack of enclosing prefixes, kept across calls. */
  readonly #stack6 = {
    e1: new Uint32Array(130),
    e2: new Uint32Array(130),
    e3: new Uint32Array(130),
    inside: new Uint8Array(130),
    vals: new Uint32Array(130),
  };

  /** IPv4 held as ranges: the /16s whose entries changed since clearTouched(), not kernel keys. */
  readonly #touched: Uint8Array | undefined;

  /**
   * `ranges`: IPv4 only; the changes are not encoded as trie keys (their batches carry counts
   * only), their /16s are marked for touched() instead.
   */
  constructor(
    readonly family: 4 | 6,
    options: { ranges?: boolean } = {},
  ) {
    this.#f = (family === 4 ? V4 : V6) as Family<number | string>;
    this.#keys = this.#newKeys(0);
    if (options.ranges && family === 4) this.#touched = new Uint8Array(65536);
  }

  /** The /16s marked since the last clearTouched(), one byte each (see the constructor). */
  touched(): Uint8Array {
    if (!this.#touched) throw new Error('FamilyIndex.touched: not an index of IPv4 ranges');
    return this.#touched.slice();
  }

  /** Forgets the marks, once the ranges they name are planned. */
  clearTouched(): void {
    this.#touched?.fill(0);
  }

  /** Prefixes listed by some set. */
  get size(): number {
    let n = 0;
    for (const c of this.#lengths.values()) n += c;
    return n;
  }

  /** Distinct values the kernel holds (non-zero masks). */
  masks(): number[] {
    return [...this.#maskCount.keys()];
  }

  /** The kernel-side value for an address (longest prefix), for tests and the model. */
  lookup(addr: Uint8Array): number {
    const full = this.#f.keyOf(addr, this.#f.bits);
    const lengths = [...this.#lengths.keys()].sort((a, b) => b - a);
    for (const len of lengths) {
      const i = this.#find(this.#f.ancestor(full, len));
      if (i >= 0 && this.#value[i] !== 0) return this.#value[i];
    }
    return 0;
  }

  /**
   * IPv4: the masks over the addresses [lo, hi) as ranges (hi up to 2^32): starts[0..n) ascends
   * from lo, and masks[i] holds from starts[i] up to the next start (or hi); neighbours differ.
   * One sweep over the keys inside, with a stack of the prefixes enclosing the address reached.
   */
  ranges(lo: number, hi: number): { starts: Uint32Array; masks: Uint32Array; n: number } {
    if (this.family !== 4) throw new Error('FamilyIndex.ranges: IPv4 only');
    const keys = this.#keys as Float64Array;
    const value = this.#value;
    let first = this.#find(lo * 64);
    if (first < 0) first = -first - 1;
    let last = this.#find(hi * 64);
    if (last < 0) last = -last - 1;
    // each prefix opens one range and closes one
    // every start is an address below hi, so below 2^32
    const starts = new Uint32Array(2 * (last - first) + 1);
    const masks = new Uint32Array(starts.length);
    const ends = new Float64Array(34);
    const vals = new Uint32Array(34);
    let depth = 0;
    // The prefixes that start before lo and hold it, outermost first (those starting at lo or
    // later come in the sweep).
    for (let len = 0; len <= 32; len++) {
      const size = SIZE4[len];
      const base = Math.floor(lo / size) * size;
      if (base === lo) break;
      const i = this.#find(base * 64 + len);
      if (i >= 0 && value[i] !== 0) {
        ends[depth] = base + size;
        vals[depth++] = value[i];
      }
    }
    starts[0] = lo;
    masks[0] = depth > 0 ? vals[depth - 1] : 0;
    let n = 1;
    let i = first;
    while (i < last && value[i] === 0) i++;
    // Events in address order: a prefix on the stack ends (its parent's mask resumes), or the
    // next key starts (its mask, pushed). Equal starts overwrite; a range equal to the one
    // before it merges into it.
    for (;;) {
      let next = hi;
      let len = -1;
      if (i < last) {
        // floor and multiply, not %: a float remainder is a library call in V8
        next = Math.floor(keys[i] / 64);
        len = keys[i] - next * 64;
      }
      let at: number;
      let mask: number;
      if (depth > 0 && ends[depth - 1] <= next && ends[depth - 1] < hi) {
        at = ends[--depth];
        mask = depth > 0 ? vals[depth - 1] : 0;
      } else if (len >= 0) {
        at = next;
        mask = value[i];
        ends[depth] = at + SIZE4[len];
        vals[depth++] = mask;
        do i++;
        while (i < last && value[i] === 0);
      } else break;
      if (starts[n - 1] === at) {
        masks[n - 1] = mask;
        if (n > 1 && masks[n - 2] === mask) n--;
      } else if (masks[n - 1] !== mask) {
        starts[n] = at;
        masks[n++] = mask;
      }
    }
    return { starts, masks, n };
  }

  /**
   * IPv6: the masks over each /32 of `tops` (ascending) as ranges of its low 96 bits
   * (set6-blocks.ts), passed to `visit`: range i starts at hi[i] * 2^32 + lo[i] (hi as two u32
   * words, hi1 the upper) and holds masks[i] up to the next start or the /32's end; neighbours
   * differ. `long`: a prefix longer than /32 with a value lies inside (else the /32 needs no
   * block: the short trie answers for it). One pass over the keys: the prefixes of /31 and
   * shorter around each /32 come from a stack kept along the way, and each /32's keys from a
   * cursor, so a rewrite of every /32 costs one sweep, not a search per /32. The ranges passed
   * to `visit` are valid only during the call.
   */
  eachRanges6(tops: ArrayLike<number>, visit: (top: number, r: Ranges6) => void): void {
    if (this.family !== 6) throw new Error('FamilyIndex.eachRanges6: IPv6 only');
    const keys = this.#keys as string[];
    const value = this.#value;
    const n = this.#n;
    // The prefixes of /31 and shorter with a value, in key order: first /32, past-last /32.
    const sStart: number[] = [];
    const sEnd: number[] = [];
    const sVal: number[] = [];
    if ([...this.#lengths.keys()].some((len) => len < 32)) {
      for (let i = 0; i < n; i++) {
        if (value[i] === 0) continue;
        const len = V6.lenOf(keys[i]);
        if (len >= 32) continue;
        const start = parseInt(keys[i].slice(0, 8), 16);
        sStart.push(start);
        sEnd.push(start + 2 ** (32 - len));
        sVal.push(value[i]);
      }
    }
    const stackEnd: number[] = [];
    const stackVal: number[] = [];
    let s = 0;
    let i = 0;
    for (let t = 0; t < tops.length; t++) {
      const top = tops[t];
      // The deepest of them that holds the /32 and starts before it: its value already ORs
      // every prefix around it. Those starting with the /32 come in its sweep.
      while (s < sStart.length && sStart[s] < top) {
        while (stackEnd.length > 0 && stackEnd[stackEnd.length - 1] <= sStart[s]) {
          stackEnd.pop();
          stackVal.pop();
        }
        stackEnd.push(sEnd[s]);
        stackVal.push(sVal[s++]);
      }
      while (stackEnd.length > 0 && stackEnd[stackEnd.length - 1] <= top) {
        stackEnd.pop();
        stackVal.pop();
      }
      const base = stackVal.length > 0 ? stackVal[stackVal.length - 1] : 0;
      // the /32's keys: from the first at or after its start, while they begin with it
      const hex = HEX32(top);
      const from = hex + ZERO96 + '00';
      // most often the cursor is there already (the /32s of a rewrite follow one another)
      if (i < n && keys[i] < from) {
        let hi = n;
        while (i < hi) {
          const mid = (i + hi) >>> 1;
          if (keys[mid] < from) i = mid + 1;
          else hi = mid;
        }
      }
      let last = i;
      while (last < n && keys[last].startsWith(hex)) last++;
      visit(top, this.#sweep6(i, last, base));
      i = last;
    }
  }

  /**
   * The ranges of one /32 from its keys [first, last) and the mask around it (`base`), in
   * arrays kept for the next call: valid until then.
   */
  #sweep6(first: number, last: number, base: number): Ranges6 {
    const keys = this.#keys as string[];
    const value = this.#value;
    const cap = 2 * (last - first) + 1;
    let out = this.#ranges6;
    if (out.masks.length < cap) {
      const size = Math.max(cap, 2 * out.masks.length);
      out = this.#ranges6 = {
        hi1: new Uint32Array(size),
        hi2: new Uint32Array(size),
        lo: new Uint32Array(size),
        masks: new Uint32Array(size),
        n: 1,
        long: false,
      };
    }
    out.n = 1;
    out.long = false;
    const { hi1, hi2, lo, masks } = out;
    hi1[0] = 0;
    hi2[0] = 0;
    lo[0] = 0;
    masks[0] = base;
    // The stack of enclosing prefixes: last address (words), whether it ends inside the /32.
    const { e1, e2, e3, inside, vals } = this.#stack6;
    let depth = 0;
    let n = 1;
    let i = first;
    while (i < last && value[i] === 0) i++;
    for (;;) {
      let k1 = 0;
      let k2 = 0;
      let k3 = 0;
      let len = -1;
      if (i < last) {
        const k = keys[i];
        k1 = hexWord(k, 8);
        k2 = hexWord(k, 16);
        k3 = hexWord(k, 24);
        len = V6.lenOf(k);
      }
      let a1: number;
      let a2: number;
      let a3: number;
      let mask: number;
      const d = depth - 1;
      if (
        depth > 0 &&
        inside[d] &&
        (len < 0 || e1[d] < k1 || (e1[d] === k1 && (e2[d] < k2 || (e2[d] === k2 && e3[d] < k3))))
      ) {
        // the prefix ends: the range after it starts at its last address + 1
        a3 = (e3[d] + 1) >>> 0;
        a2 = a3 === 0 ? (e2[d] + 1) >>> 0 : e2[d];
        a1 = a3 === 0 && a2 === 0 ? e1[d] + 1 : e1[d];
        depth--;
        mask = depth > 0 ? vals[depth - 1] : base;
      } else if (len >= 0) {
        a1 = k1;
        a2 = k2;
        a3 = k3;
        mask = value[i];
        if (len > 32) out.long = true;
        const host = 128 - len;
        e1[depth] = (k1 | ones(host - 64)) >>> 0;
        e2[depth] = (k2 | ones(host - 32)) >>> 0;
        e3[depth] = (k3 | ones(host)) >>> 0;
        // a prefix that reaches the /32's end (or holds it) never ends inside it
        inside[depth] =
          len > 32 && !(e1[depth] === ONES && e2[depth] === ONES && e3[depth] === ONES) ? 1 : 0;
        vals[depth++] = mask;
        do i++;
        while (i < last && value[i] === 0);
      } else break;
      const p = n - 1;
      if (hi1[p] === a1 && hi2[p] === a2 && lo[p] === a3) {
        masks[p] = mask;
        if (n > 1 && masks[p - 1] === mask) n--;
      } else if (masks[p] !== mask) {
        hi1[n] = a1;
        hi2[n] = a2;
        lo[n] = a3;
        masks[n++] = mask;
      }
    }
    out.n = n;
    return out;
  }

  /** IPv6: the /32s holding a prefix longer than /32 with a value (each needs a block). */
  longTops(): number[] {
    if (this.family !== 6) throw new Error('FamilyIndex.longTops: IPv6 only');
    const keys = this.#keys as string[];
    const tops: number[] = [];
    let last = 'g';
    for (let i = 0; i < this.#n; i++) {
      const k = keys[i];
      if (k.startsWith(last) || this.#value[i] === 0 || V6.lenOf(k) <= 32) continue;
      last = k.slice(0, 8);
      tops.push(parseInt(last, 16));
    }
    return tops;
  }

  /** IPv6: the prefixes of /32 and shorter with a value, as the short trie's keys and values. */
  shortEntries(): { keys: Buffer; values: Buffer; count: number } {
    if (this.family !== 6) throw new Error('FamilyIndex.shortEntries: IPv6 only');
    const keys = this.#keys as string[];
    const picked: number[] = [];
    for (let i = 0; i < this.#n; i++) {
      if (this.#value[i] !== 0 && V6.lenOf(keys[i]) <= 32) picked.push(i);
    }
    const out = {
      keys: Buffer.alloc(8 * picked.length),
      values: Buffer.alloc(8 * picked.length),
      count: picked.length,
    };
    picked.forEach((i, k) => {
      out.keys.writeUInt32LE(V6.lenOf(keys[i]), 8 * k);
      out.keys.write(keys[i].slice(0, 8), 8 * k + 4, 'hex');
      out.values.writeUInt32LE(this.#value[i], 8 * k);
    });
    return out;
  }

  /**
   * Sets bit `bit` on (or off) for each prefix and returns the kernel writes that follow. Small
   * changes walk the changed prefixes and their descendants; large ones merge and sweep.
   */
  change(prefixes: readonly PrefixBytes[], bit: number, on: boolean): TrieBatch {
    return this.changeKeys(this.#sortedKeys(prefixes), bit, on);
  }

  /** change() for keys already sorted and without repeats (see prefix-keys.ts). */
  changeKeys(keys: KeyArray, bit: number, on: boolean): TrieBatch {
    const flag = (1 << bit) >>> 0;
    if (keys.length > SWEEP_THRESHOLD) {
      this.#merge(keys, flag, on ? 'or' : 'clear');
      this.#recountLengths();
      return this.#sweep();
    }
    const touched: (number | string)[] = [];
    for (let k = 0; k < keys.length; k++) {
      const key = keys[k];
      let i = this.#find(key);
      if (i < 0) {
        if (!on) continue;
        i = this.#insert(key, -i - 1);
      }
      const before = this.#own[i];
      const after = (on ? before | flag : before & ~flag) >>> 0;
      if (after === before) continue;
      this.#setOwn(i, after, this.#f.lenOf(key));
      touched.push(key);
    }
    const writes = new Map<number, number>();
    for (const key of touched) {
      const after = this.#f.after(key);
      for (let j = this.#find(key); j < this.#n && this.#keys[j] < after; j++) {
        writes.set(j, this.#own[j] === 0 ? 0 : this.#valueOf(this.#keys[j]));
      }
    }
    return this.#apply([...writes.keys()], [...writes.values()]);
  }

  /** What must change for set `bit` to hold exactly `keys` (sorted, no repeats). */
  diffKeys(keys: KeyArray, bit: number): { add: KeyArray; remove: KeyArray } {
    const flag = (1 << bit) >>> 0;
    const add: (number | string)[] = [];
    const remove: (number | string)[] = [];
    let i = 0;
    let j = 0;
    while (i < this.#n || j < keys.length) {
      if (j >= keys.length || (i < this.#n && this.#keys[i] < keys[j])) {
        if (this.#own[i] & flag) remove.push(this.#keys[i]);
        i++;
      } else if (i >= this.#n || keys[j] < this.#keys[i]) {
        add.push(keys[j++]);
      } else {
        if (!(this.#own[i] & flag)) add.push(keys[j]);
        i++;
        j++;
      }
    }
    return { add: this.#fromList(add), remove: this.#fromList(remove) };
  }

  /** The keys set `bit` lists, sorted. */
  keysWithBit(bit: number): KeyArray {
    const flag = (1 << bit) >>> 0;
    const out: (number | string)[] = [];
    for (let i = 0; i < this.#n; i++) if (this.#own[i] & flag) out.push(this.#keys[i]);
    return this.#fromList(out);
  }

  #fromList(list: (number | string)[]): KeyArray {
    return this.family === 4 ? Float64Array.from(list as number[]) : (list as string[]);
  }

  /** Records the values the kernel already holds (adoption); own masks follow with replaceOwn(). */
  seedValues(batch: { keys: Buffer; values: Buffer; count: number }): void {
    const ks = this.#f.keySize;
    const n = batch.count;
    const values = new Uint32Array(n);
    for (let i = 0; i < n; i++) values[i] = batch.values.readUInt32LE(i * 8);
    let order: Uint32Array;
    let keys: KeyArray;
    if (this.family === 4) {
      // Numeric keys in a typed array, sorted through a typed index: no boxing of a million keys.
      const k4 = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        k4[i] = V4.keyOf(
          batch.keys.subarray(i * ks + 4, i * ks + 8),
          batch.keys.readUInt32LE(i * ks),
        );
      }
      order = new Uint32Array(n).map((_, i) => i).sort((a, b) => k4[a] - k4[b]);
      keys = new Float64Array(n);
      for (let i = 0; i < n; i++) keys[i] = k4[order[i]];
    } else {
      const k6: string[] = [];
      for (let i = 0; i < n; i++) {
        k6.push(
          V6.keyOf(batch.keys.subarray(i * ks + 4, (i + 1) * ks), batch.keys.readUInt32LE(i * ks)),
        );
      }
      order = new Uint32Array(n)
        .map((_, i) => i)
        .sort((a, b) => (k6[a] < k6[b] ? -1 : k6[a] > k6[b] ? 1 : 0));
      keys = Array.from(order, (i) => k6[i]);
    }
    this.#keys = keys;
    this.#own = new Uint32Array(n);
    this.#value = new Uint32Array(n);
    this.#n = n;
    this.#maskCount.clear();
    this.#lengths.clear();
    for (let i = 0; i < n; i++) {
      this.#value[i] = values[order[i]];
      this.#count(this.#value[i], 1);
    }
  }

  /** Replaces all own masks (one sorted key list per mask) and returns the kernel writes. */
  replaceOwn(groups: readonly { keys: KeyArray; mask: number }[]): TrieBatch {
    this.#own.fill(0);
    this.#lengths.clear();
    for (const { keys, mask } of groups) this.#merge(keys, mask, 'or');
    this.#recountLengths();
    return this.#sweep();
  }

  #newKeys(n: number): KeyArray {
    return this.family === 4 ? new Float64Array(n) : new Array<string>(n);
  }

  #sortedKeys(prefixes: readonly PrefixBytes[]): KeyArray {
    if (this.family === 4) {
      const keys = new Float64Array(prefixes.length);
      prefixes.forEach((p, i) => (keys[i] = V4.keyOf(p.addr, p.len)));
      return keys.sort();
    }
    return prefixes.map((p) => V6.keyOf(p.addr, p.len)).sort();
  }

  #find(key: number | string): number {
    const keys = this.#keys;
    let lo = 0;
    let hi = this.#n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (keys[mid] < key) lo = mid + 1;
      else hi = mid;
    }
    return lo < this.#n && keys[lo] === key ? lo : -(lo + 1);
  }

  #insert(key: number | string, at: number): number {
    if (this.#n === this.#own.length) this.#grow(Math.max(16, this.#n * 2));
    if (this.#keys instanceof Float64Array) this.#keys.copyWithin(at + 1, at, this.#n);
    else this.#keys.splice(at, 0, '');
    this.#own.copyWithin(at + 1, at, this.#n);
    this.#value.copyWithin(at + 1, at, this.#n);
    this.#keys[at] = key;
    this.#own[at] = 0;
    this.#value[at] = 0;
    this.#n++;
    return at;
  }

  #grow(capacity: number): void {
    const own = new Uint32Array(capacity);
    own.set(this.#own.subarray(0, this.#n));
    const value = new Uint32Array(capacity);
    value.set(this.#value.subarray(0, this.#n));
    if (this.#keys instanceof Float64Array) {
      const keys = new Float64Array(capacity);
      keys.set(this.#keys.subarray(0, this.#n));
      this.#keys = keys;
    }
    this.#own = own;
    this.#value = value;
  }

  #setOwn(i: number, mask: number, len: number): void {
    const before = this.#own[i];
    if (before === 0 && mask !== 0) this.#lengths.set(len, (this.#lengths.get(len) ?? 0) + 1);
    if (before !== 0 && mask === 0) {
      const n = this.#lengths.get(len)! - 1;
      if (n === 0) this.#lengths.delete(len);
      else this.#lengths.set(len, n);
    }
    this.#own[i] = mask;
  }

  #recountLengths(): void {
    this.#lengths.clear();
    for (let k = 0; k < this.#n; k++) {
      if (this.#own[k] === 0) continue;
      const len = this.#f.lenOf(this.#keys[k]);
      this.#lengths.set(len, (this.#lengths.get(len) ?? 0) + 1);
    }
  }

  /** Merges sorted keys in: OR `mask` into their own masks, or clear it (then #recountLengths). */
  #merge(incoming: KeyArray, mask: number, how: 'or' | 'clear'): void {
    const total = this.#n + incoming.length;
    const keys = this.#newKeys(total);
    const own = new Uint32Array(total);
    const value = new Uint32Array(total);
    const old = this.#keys;
    let i = 0;
    let j = 0;
    let w = 0;
    while (i < this.#n || j < incoming.length) {
      if (j >= incoming.length || (i < this.#n && old[i] < incoming[j])) {
        keys[w] = old[i];
        own[w] = this.#own[i];
        value[w++] = this.#value[i++];
        continue;
      }
      const key = incoming[j++];
      // Equal keys: the existing entry (or the one just added for a duplicate) takes the mask.
      if (w === 0 || keys[w - 1] !== key) {
        if (i < this.#n && old[i] === key) {
          keys[w] = key;
          own[w] = this.#own[i];
          value[w++] = this.#value[i++];
        } else {
          if (how === 'clear') continue;
          keys[w] = key;
          own[w] = 0;
          value[w++] = 0;
        }
      }
      own[w - 1] = (how === 'or' ? own[w - 1] | mask : own[w - 1] & ~mask) >>> 0;
    }
    this.#keys = keys instanceof Float64Array ? keys : keys.slice(0, w);
    this.#own = own;
    this.#value = value;
    this.#n = w;
  }

  #count(mask: number, delta: number): void {
    if (mask === 0) return;
    const n = (this.#maskCount.get(mask) ?? 0) + delta;
    if (n <= 0) this.#maskCount.delete(mask);
    else this.#maskCount.set(mask, n);
  }

  /** OR of the own masks of `key`'s prefix and every shorter prefix containing it. */
  #valueOf(key: number | string): number {
    const len = this.#f.lenOf(key);
    let v = 0;
    for (const l of this.#lengths.keys()) {
      if (l > len) continue;
      const i = this.#find(l === len ? key : this.#f.ancestor(key, l));
      if (i >= 0) v |= this.#own[i];
    }
    return v >>> 0;
  }

  /** Every value in one pass with a stack of enclosing prefixes. */
  #sweep(): TrieBatch {
    const idx = new Int32Array(this.#n);
    const vals = new Uint32Array(this.#n);
    let w = 0;
    // At most bits + 1 prefixes enclose one another.
    const ends: (number | string)[] = new Array<number | string>(this.#f.bits + 1);
    const values = new Uint32Array(this.#f.bits + 1);
    let depth = 0;
    const keys = this.#keys;
    const bits = this.#f.bits;
    for (let i = 0; i < this.#n; i++) {
      const key = keys[i];
      while (depth > 0 && ends[depth - 1] <= key) depth--;
      const own = this.#own[i];
      const value = own === 0 ? 0 : ((depth > 0 ? values[depth - 1] : 0) | own) >>> 0;
      if (value !== this.#value[i]) {
        idx[w] = i;
        vals[w++] = value;
      }
      if (own !== 0 && this.#f.lenOf(key) < bits) {
        ends[depth] = this.#f.after(key);
        values[depth++] = value;
      }
    }
    return this.#apply(idx.subarray(0, w), vals.subarray(0, w));
  }

  /** Encodes the writes (entry index → new value), records them, and drops entries left empty. */
  #apply(idx: ArrayLike<number>, vals: ArrayLike<number>): TrieBatch {
    let updates = 0;
    let deletes = 0;
    for (let k = 0; k < idx.length; k++) {
      if (vals[k] === this.#value[idx[k]]) continue;
      if (vals[k] === 0) deletes++;
      else updates++;
    }
    const touched = this.#touched;
    const ks = touched ? 0 : this.#f.keySize;
    const batch: TrieBatch = {
      updateKeys: Buffer.alloc(updates * ks),
      updateValues: Buffer.alloc(touched ? 0 : updates * 8),
      updates,
      deleteKeys: Buffer.alloc(deletes * ks),
      deletes,
    };
    let u = 0;
    let d = 0;
    let empty = false;
    for (let k = 0; k < idx.length; k++) {
      const i = idx[k];
      const v = vals[k];
      if (v === this.#value[i]) continue;
      this.#count(this.#value[i], -1);
      this.#count(v, 1);
      this.#value[i] = v;
      if (v === 0 && this.#own[i] === 0) empty = true;
      if (touched) {
        const key = this.#keys[i] as number;
        const first = Math.floor(key / 64 / 65536);
        const len = V4.lenOf(key);
        if (len >= 16) touched[first] = 1;
        else touched.fill(1, first, first + 2 ** (16 - len));
      } else if (v === 0) {
        this.#f.encode(this.#keys[i], batch.deleteKeys, ks * d++);
      } else {
        this.#f.encode(this.#keys[i], batch.updateKeys, ks * u);
        batch.updateValues.writeUInt32LE(v, 8 * u++);
      }
    }
    if (empty) this.#compact();
    return batch;
  }

  #compact(): void {
    let w = 0;
    for (let r = 0; r < this.#n; r++) {
      if (this.#own[r] === 0 && this.#value[r] === 0) continue;
      this.#keys[w] = this.#keys[r];
      this.#own[w] = this.#own[r];
      this.#value[w] = this.#value[r];
      w++;
    }
    this.#n = w;
    if (!(this.#keys instanceof Float64Array)) this.#keys.length = w;
  }
}
