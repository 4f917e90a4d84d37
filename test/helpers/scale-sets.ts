// Big random prefix sets for the data plane's scale test, and an independent membership oracle for them.
//
// The generator makes nested prefixes on purpose: part of every set is children of earlier
// prefixes (the same set's, or the other set's), part is parents around them. The oracle knows
// nothing of the production index (controller/dataplane/prefix-index.ts): IPv4 prefixes are kept
// as one sorted Uint32Array of network addresses per length (binary search), IPv6 ones as one
// Set of BigInt networks per length, and an address is in a set when any length's masked
// address is listed.

/** A deterministic PRNG (mulberry32): the same seed gives the same sets. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const POW2 = Array.from({ length: 129 }, (_, i) => 2 ** i);
const V6_ALL = (1n << 128n) - 1n;

/** The network of `addr` at `len` (IPv4, as an unsigned number). */
export function net4(addr: number, len: number): number {
  const size = POW2[32 - len];
  return Math.floor(addr / size) * size;
}

const MASK6 = Array.from({ length: 129 }, (_, len) =>
  len === 0 ? 0n : (V6_ALL >> BigInt(128 - len)) << BigInt(128 - len),
);

export function mask6(len: number): bigint {
  return MASK6[len];
}

const OCTET = Array.from({ length: 256 }, (_, i) => String(i));

export function formatV4(addr: number): string {
  return `${OCTET[addr >>> 24]}.${OCTET[(addr >>> 16) & 255]}.${OCTET[(addr >>> 8) & 255]}.${OCTET[addr & 255]}`;
}

export function formatV6(addr: bigint): string {
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((addr >> BigInt(i * 16)) & 0xffffn).toString(16));
  return groups.join(':');
}

/** An IPv4 prefix: network address (unsigned) and length. */
export interface P4 {
  net: number;
  len: number;
}

/** An IPv6 prefix. */
export interface P6 {
  net: bigint;
  len: number;
}

export const text4 = (p: P4): string => `${formatV4(p.net)}/${p.len}`;
export const text6 = (p: P6): string => `${formatV6(p.net)}/${p.len}`;

/**
 * IPv4 prefixes kept in typed arrays (a million objects would cost seconds of allocation), in
 * the order generated, each listed once.
 */
export class P4List {
  nets = new Uint32Array(1024);
  lens = new Uint8Array(1024);
  length = 0;
  /** Open-addressing hash set of keys net * 64 + len (0: empty slot; no key is 0 but 0.0.0.0/0). */
  #slots = new Float64Array(1 << 11);

  get(i: number): P4 {
    return { net: this.nets[i], len: this.lens[i] };
  }

  /** Appends `p` unless listed; true when appended. */
  add(p: P4): boolean {
    const key = p.net * 64 + p.len + 1;
    if (!this.#insert(key)) return false;
    if (this.length === this.nets.length) {
      const nets = new Uint32Array(this.length * 2);
      nets.set(this.nets);
      const lens = new Uint8Array(this.length * 2);
      lens.set(this.lens);
      this.nets = nets;
      this.lens = lens;
    }
    this.nets[this.length] = p.net;
    this.lens[this.length++] = p.len;
    if (this.length * 2 > this.#slots.length) this.#rehash();
    return true;
  }

  has(p: P4): boolean {
    const key = p.net * 64 + p.len + 1;
    const mask = this.#slots.length - 1;
    for (let i = hash(key) & mask; ; i = (i + 1) & mask) {
      if (this.#slots[i] === key) return true;
      if (this.#slots[i] === 0) return false;
    }
  }

  #insert(key: number): boolean {
    const mask = this.#slots.length - 1;
    for (let i = hash(key) & mask; ; i = (i + 1) & mask) {
      if (this.#slots[i] === key) return false;
      if (this.#slots[i] === 0) {
        this.#slots[i] = key;
        return true;
      }
    }
  }

  #rehash(): void {
    this.#slots = new Float64Array(this.#slots.length * 4);
    for (let i = 0; i < this.length; i++) this.#insert(this.nets[i] * 64 + this.lens[i] + 1);
  }

  *[Symbol.iterator](): Iterator<P4> {
    for (let i = 0; i < this.length; i++) yield this.get(i);
  }
}

function hash(key: number): number {
  const lo = key % 4294967296;
  const hi = (key - lo) / 4294967296;
  return Math.imul(lo ^ Math.imul(hi, 0x9e3779b1), 0x85ebca6b) >>> 7;
}

/** One set as the test knows it. */
export interface ScaleSet {
  v4: P4List;
  v6: P6[];
}

/** Prefixes of one set nested in, around or equal to one of the other's. */
export interface Nesting {
  v4: P4[];
  v6: P6[];
}

export interface ScaleSets {
  a: ScaleSet;
  b: ScaleSet;
  /** Prefixes whose every address is in both sets (the inner prefix of each cross-set nesting). */
  both: Nesting;
}

export interface ScaleOptions {
  seed: number;
  a4: number;
  a6: number;
  b4: number;
  b6: number;
}

/** First octets (IPv4) and first 16 bits (IPv6) each set draws fresh prefixes from. */
export const UNIVERSE = {
  a4: [1, 99],
  b4: [60, 139],
  a6: [0x2000, 0x20ff],
  b6: [0x2080, 0x217f],
} as const;

/** IPv4 /8s set A lists outright (everything under them nests). */
export const A_SLASH8 = [20, 70];
/** IPv6 /16s set A lists outright. */
export const A_SLASH16 = [0x2042];

function fresh4(rnd: () => number, [lo, hi]: readonly [number, number]): P4 {
  const r = rnd();
  const len =
    r < 0.0005
      ? 9 + Math.floor(rnd() * 7)
      : r < 0.03
        ? 16 + Math.floor(rnd() * 8)
        : 24 + Math.floor(rnd() * 9);
  const first = lo + Math.floor(rnd() * (hi - lo + 1));
  const addr = first * 16777216 + Math.floor(rnd() * 16777216);
  return { net: net4(addr, len), len };
}

function random128(rnd: () => number): bigint {
  let v = 0n;
  for (let i = 0; i < 4; i++) v = (v << 32n) | BigInt(Math.floor(rnd() * 4294967296));
  return v;
}

function fresh6(rnd: () => number, [lo, hi]: readonly [number, number]): P6 {
  const r = rnd();
  const len =
    r < 0.005
      ? 17 + Math.floor(rnd() * 15)
      : r < 0.6
        ? 32 + Math.floor(rnd() * 33)
        : 65 + Math.floor(rnd() * 64);
  const first = BigInt(lo + Math.floor(rnd() * (hi - lo + 1)));
  const addr = (first << 112n) | (random128(rnd) & ((1n << 112n) - 1n));
  return { net: addr & mask6(len), len };
}

/** A random prefix inside `p`, `1..span` bits longer (at most `bits`). */
function child4(rnd: () => number, p: P4, span: number): P4 {
  const len = p.len + 1 + Math.floor(rnd() * Math.min(span, 32 - p.len));
  return { net: p.net + Math.floor(rnd() * POW2[len - p.len]) * POW2[32 - len], len };
}

function child6(rnd: () => number, p: P6, span: number): P6 {
  const len = p.len + 1 + Math.floor(rnd() * Math.min(span, 128 - p.len));
  return { net: (p.net | (random128(rnd) & ~mask6(p.len))) & mask6(len), len };
}

/** A random prefix around `p`, 1..span bits shorter, never shorter than `min`. */
function parent4(rnd: () => number, p: P4, span: number, min: number): P4 {
  const lo = Math.max(min, p.len - span);
  const len = lo + Math.floor(rnd() * (p.len - lo));
  return { net: net4(p.net, len), len };
}

function parent6(rnd: () => number, p: P6, span: number, min: number): P6 {
  const lo = Math.max(min, p.len - span);
  const len = lo + Math.floor(rnd() * (p.len - lo));
  return { net: p.net & mask6(len), len };
}

class Distinct6 {
  readonly seen = new Set<string>();
  readonly list: P6[] = [];
  add(p: P6): boolean {
    const k = `${p.net.toString(16)}/${p.len}`;
    if (this.seen.has(k)) return false;
    this.seen.add(k);
    this.list.push(p);
    return true;
  }
}

/**
 * Set A: `a4` distinct IPv4 prefixes (/8 to /32, 40 % of them children of an earlier one) and
 * `a6` IPv6 ones. Set B: `b4`/`b6` prefixes, 30 % inside an A prefix, 20 % around one, 2 % equal
 * to one, the rest fresh in a range that half overlaps A's.
 */
export function generateScaleSets(o: ScaleOptions): ScaleSets {
  const rnd = prng(o.seed);
  const a4 = new P4List();
  for (const first of A_SLASH8) a4.add({ net: first * 16777216, len: 8 });
  while (a4.length < o.a4) {
    if (rnd() < 0.4) {
      const parent = a4.get(Math.floor(rnd() * a4.length));
      if (parent.len < 32) {
        a4.add(child4(rnd, parent, 12));
        continue;
      }
    }
    a4.add(fresh4(rnd, UNIVERSE.a4));
  }
  const a6 = new Distinct6();
  for (const first of A_SLASH16) a6.add({ net: BigInt(first) << 112n, len: 16 });
  while (a6.list.length < o.a6) {
    if (rnd() < 0.4) {
      const parent = a6.list[Math.floor(rnd() * a6.list.length)];
      if (parent.len < 128) {
        a6.add(child6(rnd, parent, 24));
        continue;
      }
    }
    a6.add(fresh6(rnd, UNIVERSE.a6));
  }

  const b4 = new P4List();
  const b6 = new Distinct6();
  const both: Nesting = { v4: [], v6: [] };
  while (b4.length < o.b4) {
    const r = rnd();
    const of = a4.get(Math.floor(rnd() * a4.length));
    if (r < 0.3 && of.len < 32) {
      const p = child4(rnd, of, 8);
      if (b4.add(p)) both.v4.push(p);
    } else if (r < 0.5 && of.len > 9) {
      if (b4.add(parent4(rnd, of, 8, 8))) both.v4.push(of);
    } else if (r < 0.52) {
      if (b4.add(of)) both.v4.push(of);
    } else b4.add(fresh4(rnd, UNIVERSE.b4));
  }
  while (b6.list.length < o.b6) {
    const r = rnd();
    const of = a6.list[Math.floor(rnd() * a6.list.length)];
    if (r < 0.3 && of.len < 128) {
      const p = child6(rnd, of, 16);
      if (b6.add(p)) both.v6.push(p);
    } else if (r < 0.5 && of.len > 17) {
      if (b6.add(parent6(rnd, of, 16, 16))) both.v6.push(of);
    } else if (r < 0.52) {
      if (b6.add(of)) both.v6.push(of);
    } else b6.add(fresh6(rnd, UNIVERSE.b6));
  }
  return { a: { v4: a4, v6: a6.list }, b: { v4: b4, v6: b6.list }, both };
}

const DIGITS = Array.from({ length: 256 }, (_, i) => Buffer.from(String(i)));

/**
 * The set as the text Dataplane.apply takes. The IPv4 texts are written as one buffer of lines
 * and split (as a prefix list read from a file would be): a million template strings cost
 * seconds on a busy machine.
 */
export function setTexts(s: ScaleSet): string[] {
  const { nets, lens, length } = s.v4;
  const buf = Buffer.allocUnsafe(length * 19 + 1);
  let w = 0;
  const put = (v: number): void => {
    const d = DIGITS[v];
    for (let i = 0; i < d.length; i++) buf[w++] = d[i];
  };
  for (let k = 0; k < length; k++) {
    const a = nets[k];
    put(a >>> 24);
    buf[w++] = 46;
    put((a >>> 16) & 255);
    buf[w++] = 46;
    put((a >>> 8) & 255);
    buf[w++] = 46;
    put(a & 255);
    buf[w++] = 47;
    put(lens[k]);
    buf[w++] = 10;
  }
  const out = length > 0 ? buf.toString('latin1', 0, w - 1).split('\n') : [];
  for (const p of s.v6) out.push(text6(p));
  return out;
}

/** A random address inside `p`. */
export function inside4(rnd: () => number, p: P4): number {
  return p.net + Math.floor(rnd() * POW2[32 - p.len]);
}

export function inside6(rnd: () => number, p: P6): bigint {
  return p.net | (random128(rnd) & ~mask6(p.len));
}

/** A random address whose first octet / first 16 bits are in [lo, hi]. */
export function random4(rnd: () => number, lo: number, hi: number): number {
  return (lo + Math.floor(rnd() * (hi - lo + 1))) * 16777216 + Math.floor(rnd() * 16777216);
}

export function random6(rnd: () => number, lo: number, hi: number): bigint {
  return (
    (BigInt(lo + Math.floor(rnd() * (hi - lo + 1))) << 112n) |
    (random128(rnd) & ((1n << 112n) - 1n))
  );
}

/** The first `len` bits of an IPv6 address given as 32 hex digits, as hex (last digit masked). */
function bits6(hex: string, len: number): string {
  const whole = len >> 2;
  const rem = len & 3;
  if (rem === 0) return hex.slice(0, whole);
  const d = parseInt(hex[whole], 16) & ((0xf << (4 - rem)) & 0xf);
  return hex.slice(0, whole) + d.toString(16);
}

const hex128 = (addr: bigint): string => addr.toString(16).padStart(32, '0');

/**
 * Membership of one set, by brute force over prefix lengths: sorted network addresses per IPv4
 * length (binary search), a Set of network bits per IPv6 length. add()/remove() follow single
 * changes.
 */
export class SetOracle {
  readonly #v4 = new Map<number, Uint32Array>();
  readonly #v4Added = new Set<number>();
  readonly #v4Removed = new Set<number>();
  readonly #v6 = new Map<number, Set<string>>();

  constructor(s: ScaleSet) {
    const counts = new Uint32Array(33);
    for (let k = 0; k < s.v4.length; k++) counts[s.v4.lens[k]]++;
    const fill = new Uint32Array(33);
    const byLen = Array.from({ length: 33 }, (_, len) => new Uint32Array(counts[len]));
    for (let k = 0; k < s.v4.length; k++) {
      const len = s.v4.lens[k];
      byLen[len][fill[len]++] = s.v4.nets[k];
    }
    byLen.forEach((nets, len) => {
      if (nets.length > 0) this.#v4.set(len, nets.sort());
    });
    for (const p of s.v6) this.add6(p);
  }

  #listed4(net: number, len: number): boolean {
    const key = net * 64 + len;
    if (this.#v4Added.has(key)) return true;
    if (this.#v4Removed.has(key)) return false;
    const nets = this.#v4.get(len);
    if (!nets) return false;
    let lo = 0;
    let hi = nets.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (nets[mid] < net) lo = mid + 1;
      else hi = mid;
    }
    return lo < nets.length && nets[lo] === net;
  }

  /** The listed prefixes holding `addr`, shortest first. */
  covering4(addr: number): P4[] {
    const out: P4[] = [];
    for (let len = 0; len <= 32; len++) {
      const net = net4(addr, len);
      if (this.#listed4(net, len)) out.push({ net, len });
    }
    return out;
  }

  has4(addr: number): boolean {
    for (let len = 0; len <= 32; len++) if (this.#listed4(net4(addr, len), len)) return true;
    return false;
  }

  has6(addr: bigint): boolean {
    const hex = hex128(addr);
    for (const [len, nets] of this.#v6) if (nets.has(bits6(hex, len))) return true;
    return false;
  }

  add4(p: P4): void {
    this.#v4Removed.delete(p.net * 64 + p.len);
    if (!this.#listed4(p.net, p.len)) this.#v4Added.add(p.net * 64 + p.len);
  }

  remove4(p: P4): void {
    const key = p.net * 64 + p.len;
    if (this.#v4Added.delete(key)) return;
    this.#v4Removed.add(key);
  }

  add6(p: P6): void {
    let l = this.#v6.get(p.len);
    if (!l) this.#v6.set(p.len, (l = new Set()));
    l.add(bits6(hex128(p.net), p.len));
  }

  remove6(p: P6): void {
    this.#v6.get(p.len)?.delete(bits6(hex128(p.net), p.len));
  }
}
