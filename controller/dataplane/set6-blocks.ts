// IPv6 set membership as the pipeline searches it: per /32, the sorted ranges over which the sets
// holding an address stay the same (bpf/progs/include/pipeline.h, "IPv6 set membership").
//
// The IPv4 design (set4-blocks.ts) cut at /32 instead of /16. The trie of every prefix (sl_set6)
// costs one node per bit its keys share: 162 ns a lookup at 100,000 prefixes against 94 at ten
// (bench pipeline-cost). A /32's ranges cost one hash lookup and two to six probes; a /32 that
// holds no prefix longer than /32 costs one lookup in the trie of the short prefixes, which are
// few whatever the set's size. The whole trie stays beside them: it answers for a /32 too dense
// for pages, and it is what a restarted process reads the sets back from.
import { join } from 'node:path';

import { isPinned, openPinned, type BpfMap } from '../../bpf/index.js';
import { u32 } from './abi.js';
import { LimitExceededError } from './errors.js';
import { openOrCreateMap } from './name-table.js';
import type { FamilyIndex, Ranges6, TrieBatch } from './prefix-index.js';
import { settled } from './settled.js';

export const SET6_NONE = 0;
export const SET6_SMALL = 1;
export const SET6_BIG = 2;
export const SET6_DENSE = 3;
export const SET6_TRIE = 4;
const SMALL_N = 4;
const BIG_N = 64;
const PAGES = 256;
const PAGE = 1 << 16;
const BANK_SHIFT = 17;
/** struct sl_set6_entry: hi (u64), lo, mask. */
const ENTRY = 16;
const NODE_BYTES = 8 + ENTRY * SMALL_N;
const BIG_BYTES = ENTRY * BIG_N;
const DENSE_BYTES = 8 + ENTRY * PAGES;
/** max_entries of the maps (pipeline.bpf.c); half may be held, as set4-blocks.ts says why. */
const DIR_ENTRIES = 2 * 1_048_576;
const BIG_ENTRIES = 262_144;
const DENSE_ENTRIES = 8192;
const SET6_BLOCK_CAPACITY = DIR_ENTRIES / 2;
const SET6_BIG_CAPACITY = BIG_ENTRIES / 2;
const DENSE_CAPACITY = DENSE_ENTRIES / 2;
/** The most ranges a /32 holds in pages; past it the /32 is looked up in the whole trie. */
const SET6_RANGES_PER_BLOCK = PAGES * BIG_N;
const BATCH = 16384;
/** A prefix of /32 or shorter is held in sl_set6_short. */
const SHORT_MAX = 32;

/** The pins, relative to the instance directory. */
export const SET6_PINS = ['sl_set6_dir', 'sl_set6_bg', 'sl_set6_dn', 'sl_set6_short'] as const;

/** A dense /32 as the kernel holds it. */
interface Dense {
  pages: number;
  bank: number;
}

/** Keys and values of one map's writes, packed as the batch calls take them (u32 words, LE). */
class Packed {
  keys: Uint32Array;
  values: Uint32Array;
  count = 0;
  constructor(
    /** Words per key: 1 (a /32) or 2 (struct sl_set6_bkey). */
    readonly keyWords: number,
    readonly valueBytes: number,
  ) {
    this.keys = new Uint32Array(64 * keyWords);
    this.values = new Uint32Array((64 * valueBytes) / 4);
  }
  /** Appends key {top, sub}; returns the word where its value starts (read `values` after: it may grow). */
  add(top: number, sub = 0): number {
    if (this.count * this.keyWords === this.keys.length) {
      const keys = new Uint32Array(this.keys.length * 2);
      keys.set(this.keys);
      this.keys = keys;
      const values = new Uint32Array(this.values.length * 2);
      values.set(this.values);
      this.values = values;
    }
    this.keys[this.count * this.keyWords] = top;
    if (this.keyWords === 2) this.keys[this.count * 2 + 1] = sub;
    return (this.count++ * this.valueBytes) / 4;
  }
  get keyBytes(): number {
    return 4 * this.keyWords;
  }
}

const pageSub = (bank: number, page: number): number => (PAGE | (bank << BANK_SHIFT) | page) >>> 0;

/** Writes ranges [from, to) of `r` as `slots` entries at word `at`, padded with the last. */
function encodeRanges(
  out: Uint32Array,
  at: number,
  r: Ranges6,
  from: number,
  to: number,
  slots: number,
): void {
  const { hi1, hi2, lo, masks } = r;
  for (let s = 0, o = at; s < slots; s++, o += 4) {
    const i = Math.min(from + s, to - 1);
    out[o] = hi2[i];
    out[o + 1] = hi1[i];
    out[o + 2] = lo[i];
    out[o + 3] = masks[i];
  }
}

/** What one flush writes: blocks and pages, then dense nodes, then the dir, then deletes. */
export interface Set6Writes {
  big: Packed;
  dense: Packed;
  dir: Packed;
  deleteDir: number[];
  deleteBig: [number, number][];
  deleteDense: number[];
}

/**
 * The IPv6 range maps of one instance and what they hold: each /32's representation, and each
 * dense /32's pages. sl_set6_short is written here too, from the trie's own changes.
 */
export class Set6Blocks {
  #kinds = new Map<number, number>();
  #dense = new Map<number, Dense>();
  /** sl_set6_bg entries in use: BIG /32s and pages. */
  #bigUsed = 0;

  private constructor(
    readonly dir: BpfMap,
    readonly big: BpfMap,
    readonly denseMap: BpfMap,
    readonly short: BpfMap,
    /** True when the maps were created here, not adopted. */
    readonly created: boolean,
  ) {}

  /**
   * Opens the pinned maps under `dir`, or creates and pins them. What they hold is read back by
   * readBack(), when the sets are loaded: a restart that trusts the pins needs none of it.
   */
  static open(dir: string): Set6Blocks {
    const created = !SET6_PINS.every((name) => isPinned(join(dir, name)));
    const hash = (name: string, keySize: number, valueSize: number, maxEntries: number): BpfMap =>
      openOrCreateMap(join(dir, name), {
        type: 'hash',
        keySize,
        valueSize,
        maxEntries,
        flags: NO_PREALLOC,
        name,
      });
    return new Set6Blocks(
      hash('sl_set6_dir', 4, NODE_BYTES, DIR_ENTRIES),
      hash('sl_set6_bg', 8, BIG_BYTES, BIG_ENTRIES),
      hash('sl_set6_dn', 4, DENSE_BYTES, DENSE_ENTRIES),
      openOrCreateMap(join(dir, 'sl_set6_short'), {
        type: 'lpm_trie',
        keySize: 8,
        valueSize: 8,
        maxEntries: 1_048_576,
        flags: NO_PREALLOC,
        name: 'sl_set6_short',
      }),
      created,
    );
  }

  /**
   * The /32s whose ranges the trie writes in `batches` change: a prefix longer than /32 changes
   * its own /32; a shorter one every /32 inside it that has a block.
   */
  dirtyOf(batches: readonly TrieBatch[]): Set<number> {
    const dirty = new Set<number>();
    const spans: [number, number][] = [];
    const visit = (keys: Buffer, count: number): void => {
      for (let k = 0; k < count; k++) {
        const len = keys.readUInt32LE(20 * k);
        const top = keys.readUInt32BE(20 * k + 4);
        if (len > SHORT_MAX) dirty.add(top);
        else spans.push([top, top + 2 ** (SHORT_MAX - len)]);
      }
    };
    for (const b of batches) {
      visit(b.updateKeys, b.updates);
      visit(b.deleteKeys, b.deletes);
    }
    if (spans.length > 0) {
      spans.sort((a, b) => a[0] - b[0]);
      const merged: [number, number][] = [];
      for (const s of spans) {
        const m = merged[merged.length - 1];
        if (m && s[0] <= m[1]) m[1] = Math.max(m[1], s[1]);
        else merged.push([s[0], s[1]]);
      }
      for (const top of this.#kinds.keys()) {
        let lo = 0;
        let hi = merged.length;
        while (lo < hi) {
          const mid = (lo + hi) >>> 1;
          if (merged[mid][0] <= top) lo = mid + 1;
          else hi = mid;
        }
        if (lo > 0 && top < merged[lo - 1][1]) dirty.add(top);
      }
    }
    return dirty;
  }

  /**
   * The writes that make the /32s in `dirty` (or every /32 that holds or needs a block) hold what
   * `index` says, and the in-memory record of them. A /32 whose pages do not fit is left to the
   * whole trie (SET6_TRIE). Throws LimitExceededError, before anything changes, past
   * SET6_BLOCK_CAPACITY /32s.
   */
  plan(index: FamilyIndex, dirty: Iterable<number> | 'all'): Set6Writes {
    const tops = dirty === 'all' ? new Set([...this.#kinds.keys(), ...index.longTops()]) : dirty;
    const w: Set6Writes = {
      big: new Packed(2, BIG_BYTES),
      dense: new Packed(1, DENSE_BYTES),
      dir: new Packed(1, NODE_BYTES),
      deleteDir: [],
      deleteBig: [],
      deleteDense: [],
    };
    const kinds = new Map(this.#kinds);
    const dense = new Map(this.#dense);
    let bigAdded = 0;
    let bigFreed = 0;
    const sorted = Uint32Array.from(tops).sort();
    index.eachRanges6(sorted, (top, r) => {
      const n = r.n;
      const before = this.#kinds.get(top) ?? SET6_NONE;
      const old = this.#dense.get(top);
      let kind = !r.long
        ? SET6_NONE
        : n <= SMALL_N
          ? SET6_SMALL
          : n <= BIG_N
            ? SET6_BIG
            : n <= SET6_RANGES_PER_BLOCK
              ? SET6_DENSE
              : SET6_TRIE;
      // Blocks that would outgrow sl_set6_bg or sl_set6_dn are left to the whole trie: slower
      // for that /32, never wrong (old pages stay until the new ones are published, so both
      // count against the map's size).
      const pagesNeeded = kind === SET6_BIG ? 1 : kind === SET6_DENSE ? Math.ceil(n / BIG_N) : 0;
      if (
        this.#bigUsed + bigAdded + pagesNeeded > SET6_BIG_CAPACITY ||
        (kind === SET6_DENSE && !old && dense.size >= DENSE_CAPACITY)
      ) {
        kind = SET6_TRIE;
      }
      if (kind === SET6_BIG) {
        const at = w.big.add(top, 0);
        encodeRanges(w.big.values, at, r, 0, n, BIG_N);
        if (before !== SET6_BIG) bigAdded++;
      } else if (kind === SET6_DENSE) {
        const bank = old ? 1 - old.bank : 0;
        const pages = Math.ceil(n / BIG_N);
        const node = w.dense.add(top);
        const values = w.dense.values;
        values[node] = pages | (bank << 16); // u16 pages, u16 bank
        for (let p = 0; p < PAGES; p++) {
          encodeRanges(values, node + 2 + 4 * p, r, Math.min(p, pages - 1) * BIG_N, n, 1);
        }
        for (let p = 0; p < pages; p++) {
          const from = p * BIG_N;
          const at = w.big.add(top, pageSub(bank, p));
          encodeRanges(w.big.values, at, r, from, Math.min(n, from + BIG_N), BIG_N);
        }
        bigAdded += pages;
        dense.set(top, { pages, bank });
      }
      if (kind === SET6_SMALL) {
        const at = w.dir.add(top);
        w.dir.values[at] = kind;
        encodeRanges(w.dir.values, at + 2, r, 0, n, SMALL_N);
      } else if (kind !== before && kind !== SET6_NONE) {
        w.dir.values[w.dir.add(top)] = kind;
      }
      if (kind === SET6_NONE && before !== SET6_NONE) w.deleteDir.push(top);
      if (before === SET6_BIG && kind !== SET6_BIG) {
        w.deleteBig.push([top, 0]);
        bigFreed++;
      }
      if (old) {
        for (let p = 0; p < old.pages; p++) w.deleteBig.push([top, pageSub(old.bank, p)]);
        bigFreed += old.pages;
        if (kind !== SET6_DENSE) {
          w.deleteDense.push(top);
          dense.delete(top);
        }
      }
      if (kind === SET6_NONE) kinds.delete(top);
      else kinds.set(top, kind);
    });
    // As many /32s as the whole trie has prefixes fit: reached only past the trie's own limit.
    if (kinds.size > SET6_BLOCK_CAPACITY) {
      throw new LimitExceededError(
        `IPv6 sets: ${kinds.size} /32s would hold prefixes longer than /32; at most ${SET6_BLOCK_CAPACITY} fit`,
        { resource: 'set-ranges', limit: SET6_BLOCK_CAPACITY, count: kinds.size },
      );
    }
    this.#kinds = kinds;
    this.#dense = dense;
    this.#bigUsed += bigAdded - bigFreed;
    return w;
  }

  /**
   * Writes planned changes in the order that keeps every lookup whole: blocks and pages, then
   * dense nodes, then the dir, then deletes of what nothing names any more. Returns the entries
   * written and deleted.
   */
  async write(w: Set6Writes): Promise<number> {
    try {
      await batchUpdate(this.big, w.big);
      await batchUpdate(this.denseMap, w.dense);
      await batchUpdate(this.dir, w.dir);
      await settled([
        batchDelete(
          this.dir,
          w.deleteDir.map((top) => blockKeyBytes(top)),
        ),
        batchDelete(
          this.big,
          w.deleteBig.map(([top, sub]) => blockKeyBytes(top, sub)),
        ),
        batchDelete(
          this.denseMap,
          w.deleteDense.map((top) => blockKeyBytes(top)),
        ),
      ]);
    } catch (error) {
      await this.readBack().catch(() => undefined);
      throw error;
    }
    return (
      w.big.count +
      w.dense.count +
      w.dir.count +
      w.deleteDir.length +
      w.deleteBig.length +
      w.deleteDense.length
    );
  }

  /**
   * Makes sl_set6_short hold the short prefixes of `index` and nothing else (after adoption,
   * when what it holds is not known). Returns the entries written and deleted.
   */
  async rewriteShort(index: FamilyIndex): Promise<number> {
    const want = index.shortEntries();
    const held = await this.short.lookupBatch();
    const wanted = new Set<string>();
    for (let i = 0; i < want.count; i++) wanted.add(want.keys.toString('hex', 8 * i, 8 * i + 8));
    const stale: Buffer[] = [];
    for (let i = 0; i < held.count; i++) {
      const key = held.keys.subarray(8 * i, 8 * i + 8);
      if (!wanted.has(key.toString('hex'))) stale.push(Buffer.from(key));
    }
    if (want.count > 0) {
      await this.short.updateBatch(want.keys, want.values, { count: want.count });
    }
    await batchDelete(this.short, stale);
    return want.count + stale.length;
  }

  /** Applies the changes of the whole trie's `batch` to sl_set6_short (its short prefixes). */
  async writeShort(batch: TrieBatch): Promise<number> {
    /** The short prefixes' 8-byte keys (prefixlen, first 4 address bytes), and their values. */
    const pick = (keys: Buffer, count: number, values?: Buffer) => {
      const picked = { keys: [] as Buffer[], values: [] as Buffer[] };
      for (let k = 0; k < count; k++) {
        if (keys.readUInt32LE(20 * k) > SHORT_MAX) continue;
        picked.keys.push(keys.subarray(20 * k, 20 * k + 8));
        if (values) picked.values.push(values.subarray(8 * k, 8 * k + 8));
      }
      return picked;
    };
    const up = pick(batch.updateKeys, batch.updates, batch.updateValues);
    if (up.keys.length > 0) {
      await this.short.updateBatch(Buffer.concat(up.keys), Buffer.concat(up.values), {
        count: up.keys.length,
      });
    }
    const down = pick(batch.deleteKeys, batch.deletes).keys;
    await batchDelete(this.short, down);
    return up.keys.length + down.length;
  }

  /** Closes the map handles (the pins stay). */
  close(): void {
    for (const map of [this.dir, this.big, this.denseMap, this.short]) map.close();
  }

  /** Reads back each /32's representation and the dense nodes (before the first plan). */
  async readBack(): Promise<void> {
    this.#kinds = new Map();
    this.#dense = new Map();
    const dir = await this.dir.lookupBatch();
    for (let i = 0; i < dir.count; i++) {
      const kind = dir.values.readUInt32LE(NODE_BYTES * i);
      if (kind >= SET6_SMALL && kind <= SET6_TRIE)
        this.#kinds.set(dir.keys.readUInt32LE(4 * i), kind);
    }
    const nodes = await this.denseMap.lookupBatch();
    for (let i = 0; i < nodes.count; i++) {
      const at = DENSE_BYTES * i;
      this.#dense.set(nodes.keys.readUInt32LE(4 * i), {
        pages: nodes.values.readUInt16LE(at),
        bank: nodes.values.readUInt16LE(at + 2) & 1,
      });
    }
    this.#bigUsed = 0;
    for (const kind of this.#kinds.values()) if (kind === SET6_BIG) this.#bigUsed++;
    for (const d of this.#dense.values()) this.#bigUsed += d.pages;
  }
}

const NO_PREALLOC = 1; // BPF_F_NO_PREALLOC

function blockKeyBytes(top: number, sub?: number): Buffer {
  const b = Buffer.alloc(sub === undefined ? 4 : 8);
  b.writeUInt32LE(top, 0);
  if (sub !== undefined) b.writeUInt32LE(sub >>> 0, 4);
  return b;
}

async function batchUpdate(map: BpfMap, packed: Packed): Promise<void> {
  const { keyBytes, valueBytes } = packed;
  const keys = Buffer.from(packed.keys.buffer, 0, keyBytes * packed.count);
  const values = Buffer.from(packed.values.buffer, 0, valueBytes * packed.count);
  for (let at = 0; at < packed.count; at += BATCH) {
    const n = Math.min(BATCH, packed.count - at);
    await map.updateBatch(
      keys.subarray(keyBytes * at, keyBytes * (at + n)),
      values.subarray(valueBytes * at, valueBytes * (at + n)),
      { count: n },
    );
  }
}

async function batchDelete(map: BpfMap, keys: Buffer[]): Promise<void> {
  for (let at = 0; at < keys.length; at += BATCH) {
    const chunk = keys.slice(at, at + BATCH);
    await map.deleteBatch(Buffer.concat(chunk), { count: chunk.length });
  }
}

/** The range maps and both tries, as set6MaskOf reads them. */
export interface Set6Maps {
  dir: BpfMap;
  big: BpfMap;
  dense: BpfMap;
  short: BpfMap;
  trie: BpfMap;
}

/** The IPv6 maps pinned under an instance directory; close() releases them. */
export function openPinnedSet6(dir: string): Set6Maps & { close(): void } {
  const opened: BpfMap[] = [];
  try {
    for (const name of [...SET6_PINS, 'sl_set6']) {
      const pinned = openPinned(join(dir, name));
      if (pinned.kind !== 'map')
        throw new Error(`"${join(dir, name)}" pins a ${pinned.kind}, not a map`);
      opened.push(pinned.map);
    }
  } catch (error) {
    for (const map of opened) map.close();
    throw error;
  }
  const [dirMap, big, dense, short, trie] = opened;
  return { dir: dirMap, big, dense, short, trie, close: () => opened.forEach((m) => m.close()) };
}

/**
 * The mask of the sets holding `addr` (16 bytes, network order), read from the maps as the
 * pipeline reads them: for tests and tools that check what the kernel holds.
 */
export function set6MaskOf(maps: Set6Maps, addr: Uint8Array): number {
  const a = Buffer.from(addr);
  const top = a.readUInt32BE(0);
  const want = [a.readUInt32BE(4), a.readUInt32BE(8), a.readUInt32BE(12)];
  const atOrBefore = (v: Buffer, o: number): boolean => {
    const e = [v.readUInt32LE(o + 4), v.readUInt32LE(o), v.readUInt32LE(o + 8)];
    for (let k = 0; k < 3; k++) if (e[k] !== want[k]) return e[k] < want[k];
    return true;
  };
  const search = (v: Buffer | null, at: number, slots: number): number => {
    if (!v) return 0;
    let pos = 0;
    for (let step = slots / 2; step >= 1; step /= 2) {
      if (atOrBefore(v, at + ENTRY * (pos + step))) pos += step;
    }
    return v.readUInt32LE(at + ENTRY * pos + 12);
  };
  const node = maps.dir.lookup(u32(top));
  if (!node) {
    const key = Buffer.alloc(8);
    key.writeUInt32LE(32, 0);
    a.copy(key, 4, 0, 4);
    return maps.short.lookup(key)?.readUInt32LE(0) ?? 0;
  }
  switch (node.readUInt32LE(0)) {
    case SET6_SMALL:
      return search(node, 8, SMALL_N);
    case SET6_BIG:
      return search(maps.big.lookup(blockKeyBytes(top, 0)), 0, BIG_N);
    case SET6_DENSE: {
      const d = maps.dense.lookup(u32(top));
      if (!d) return 0;
      let pos = 0;
      for (let step = PAGES / 2; step >= 1; step /= 2) {
        if (atOrBefore(d, 8 + ENTRY * (pos + step))) pos += step;
      }
      const page = Math.min(pos, d.readUInt16LE(0) - 1);
      const sub = pageSub(d.readUInt16LE(2) & 1, page);
      return search(maps.big.lookup(blockKeyBytes(top, sub)), 0, BIG_N);
    }
    case SET6_TRIE: {
      const key = Buffer.alloc(20);
      key.writeUInt32LE(128, 0);
      a.copy(key, 4);
      return maps.trie.lookup(key)?.readUInt32LE(0) ?? 0;
    }
    default:
      return 0;
  }
}
