// IPv4 set membership as the pipeline searches it: per /16, the sorted ranges over which the sets
// holding an address stay the same (bpf/progs/include/pipeline.h, "IPv4 set membership").
//
// A longest-prefix trie costs one node per bit its keys share: about 90 ns per lookup at a million
// prefixes against 15 at ten (bench pipeline-cost). A /16's ranges cost one array load, one hash
// lookup and six probes, whatever the set's size. The ranges follow from the membership index
// (FamilyIndex.ranges) after each change, for the /16s the change touched; a /16 is rewritten as a
// whole and published by one write, in the order pipeline.h gives, so no packet sees half of it.
import { join } from 'node:path';

import { isPinned, openPinned, type BpfMap } from '../../bpf/index.js';
import { u32 } from './abi.js';
import { LimitExceededError } from './errors.js';
import { openOrCreateMap } from './name-table.js';
import { settled } from './settled.js';
import type { FamilyIndex } from './prefix-index.js';

/** FamilyIndex.ranges: starts and masks of n ranges. */
type Ranges = ReturnType<FamilyIndex['ranges']>;

export const SET4_NONE = 0;
export const SET4_SMALL = 1;
export const SET4_BIG = 2;
export const SET4_DENSE = 3;
const SMALL_N = 8;
const BIG_N = 64;
const PAGES = 256;
const PAGE = 1 << 24;
const BANK_SHIFT = 25;
const BLOCKS = 65536;
/**
 * max_entries of sl_set4_bg (pipeline.bpf.c); half of it may hold the BIG /16s and the dense
 * pages. A replaced or deleted value still counts against max_entries until the kernel frees it
 * (after the packets that may hold it are done), and a flush may replace every block at once:
 * the maps are twice what they hold, or an insert would find the map "full".
 */
const BIG_MAP_ENTRIES = 262144;
export const SET4_BIG_CAPACITY = BIG_MAP_ENTRIES / 2;
/** The most ranges one /16 can hold: a dense node's pages, full. */
export const SET4_RANGES_PER_BLOCK = PAGES * BIG_N;
const BATCH = 16384;
const DENSE_BYTES = 4 + 2 * PAGES;

/** The pins, relative to the instance directory. */
export const SET4_PINS = ['sl_set4_dir', 'sl_set4_sm', 'sl_set4_bg', 'sl_set4_dn'] as const;

/** A dense /16 as the kernel holds it. */
interface Dense {
  pages: number;
  bank: number;
}

/** Keys and values for one map, packed as the batch calls take them (u32 words, little-endian). */
class Packed {
  keys: Uint32Array;
  values: Uint32Array;
  count = 0;
  constructor(
    readonly words: number,
    capacity = 64,
  ) {
    this.keys = new Uint32Array(capacity);
    this.values = new Uint32Array(capacity * words);
  }
  /** Appends a key; returns the word where its value starts (read `values` after: it may grow). */
  add(key: number): number {
    if (this.count === this.keys.length) {
      const keys = new Uint32Array(this.count * 2);
      keys.set(this.keys);
      this.keys = keys;
      const values = new Uint32Array(this.count * 2 * this.words);
      values.set(this.values);
      this.values = values;
    }
    this.keys[this.count] = key;
    return this.count++ * this.words;
  }
}

/**
 * Blocks to write, not yet encoded: key, and the ranges [from, to) of ranges `run` from `base`.
 * write() encodes them a chunk at a time, so the kernel inserts one chunk while the next is
 * encoded, into one buffer kept across flushes rather than one the size of a whole load.
 */
class BlockList {
  readonly keys: number[] = [];
  readonly runs: number[] = [];
  readonly from: number[] = [];
  readonly to: number[] = [];
  readonly base: number[] = [];
  add(key: number, run: number, from: number, to: number, base: number): void {
    this.keys.push(key);
    this.runs.push(run);
    this.from.push(from);
    this.to.push(to);
    this.base.push(base);
  }
  get count(): number {
    return this.keys.length;
  }
}

/** What one flush writes, in three steps: blocks and pages, then nodes and the dir, then deletes. */
export interface Set4Writes {
  ranges: Ranges[];
  small: BlockList;
  big: BlockList;
  dense: Packed;
  dir: Packed;
  deleteSmall: number[];
  deleteBig: number[];
  deleteDense: number[];
}

/**
 * Writes one block's entries at word `at` of `out`: start offset << 32 | mask as u64, ranges
 * [from, to) of the sweep, padded with the last.
 */
function encodeRanges(
  out: Uint32Array,
  at: number,
  r: Ranges,
  from: number,
  to: number,
  base: number,
  slots: number,
): void {
  const { starts, masks } = r;
  let o = at;
  for (let i = from; i < to; i++) {
    // a block's first range may have begun before the block: it starts at offset 0 here
    const off = starts[i] - base;
    out[o++] = masks[i];
    out[o++] = off > 0 ? off : 0;
  }
  const mask = out[o - 2];
  const off = out[o - 1];
  for (let s = to - from; s < slots; s++) {
    out[o++] = mask;
    out[o++] = off;
  }
}

/** The dense node at word `at`: page count and bank, each page's first start, padded. */
function encodeDense(out: Uint32Array, at: number, firsts: number[], bank: number): void {
  const half = new Uint16Array(out.buffer, out.byteOffset + 4 * at, DENSE_BYTES / 2);
  half[0] = firsts.length;
  half[1] = bank;
  for (let p = 0; p < PAGES; p++) half[2 + p] = firsts[Math.min(p, firsts.length - 1)];
}

function pageKey(block: number, bank: number, page: number): number {
  return (PAGE | (bank << BANK_SHIFT) | (block << 8) | page) >>> 0;
}

/**
 * The IPv4 range maps of one instance (pinned beside the IPv6 trie) and what they hold: the
 * representation of each /16, and each dense /16's pages.
 */
export class Set4Blocks {
  #kinds = new Uint8Array(BLOCKS);
  #dense = new Map<number, Dense>();
  /** sl_set4_bg entries in use: BIG /16s and pages. */
  #bigUsed = 0;

  private constructor(
    readonly dir: BpfMap,
    readonly small: BpfMap,
    readonly big: BpfMap,
    readonly denseMap: BpfMap,
    /** True when the maps were created here, not adopted. */
    readonly created: boolean,
  ) {}

  /** Opens the pinned maps under `dir`, or creates and pins them; reads back what they hold. */
  static async open(dir: string): Promise<Set4Blocks> {
    const created = !SET4_PINS.every((name) => isPinned(join(dir, name)));
    const hash = (name: string, valueSize: number, maxEntries: number): BpfMap =>
      openOrCreateMap(join(dir, name), {
        type: 'hash',
        keySize: 4,
        valueSize,
        maxEntries,
        flags: NO_PREALLOC,
        name,
      });
    const blocks = new Set4Blocks(
      openOrCreateMap(join(dir, 'sl_set4_dir'), {
        type: 'array',
        keySize: 4,
        valueSize: 4,
        maxEntries: BLOCKS,
        name: 'sl_set4_dir',
      }),
      hash('sl_set4_sm', 8 * SMALL_N, 2 * BLOCKS),
      hash('sl_set4_bg', 8 * BIG_N, BIG_MAP_ENTRIES),
      hash('sl_set4_dn', DENSE_BYTES, 2 * BLOCKS),
      created,
    );
    await blocks.#readBack();
    return blocks;
  }

  /** True when some /16 holds a set's address. */
  get occupied(): boolean {
    return this.#kinds.some((k) => k !== SET4_NONE);
  }

  /**
   * The writes that make the /16s marked in `dirty` (or all) hold what `index` says, and the
   * in-memory record of them. Throws LimitExceededError, before anything changes, when a /16
   * holds more than SET4_RANGES_PER_BLOCK ranges or the blocks outgrow sl_set4_bg.
   */
  plan(index: FamilyIndex, dirty: Uint8Array | 'all'): Set4Writes {
    // 1. The ranges of each run of dirty /16s, and each /16's slice of them [j, to).
    const runs: { r: Ranges; first: number; cuts: Int32Array }[] = [];
    for (let run = 0; run < BLOCKS;) {
      if (dirty !== 'all' && !dirty[run]) {
        run++;
        continue;
      }
      let end = run + 1;
      while (end < BLOCKS && (dirty === 'all' || dirty[end])) end++;
      const r = index.ranges(run * BLOCKS, end * BLOCKS);
      const cuts = new Int32Array(2 * (end - run));
      let j = 0;
      for (let block = run; block < end; block++) {
        const base = block * BLOCKS;
        while (j + 1 < r.n && r.starts[j + 1] <= base) j++;
        let to = j + 1;
        while (to < r.n && r.starts[to] < base + BLOCKS) to++;
        cuts[2 * (block - run)] = j;
        cuts[2 * (block - run) + 1] = to;
      }
      runs.push({ r, first: run, cuts });
      run = end;
    }
    const w: Set4Writes = {
      ranges: runs.map((run) => run.r),
      small: new BlockList(),
      big: new BlockList(),
      dense: new Packed(DENSE_BYTES / 4),
      dir: new Packed(1),
      deleteSmall: [],
      deleteBig: [],
      deleteDense: [],
    };
    // the record after the writes, made in copies: a limit error leaves it as it was
    const kinds = this.#kinds.slice();
    const dense = new Map(this.#dense);
    let bigAdded = 0;
    let bigFreed = 0;
    // 2. Each /16's representation, and what must go from the one it had.
    for (let ri = 0; ri < runs.length; ri++) {
      const { r, first, cuts } = runs[ri];
      const { starts, masks } = r;
      for (let k = 0; k < cuts.length / 2; k++) {
        const block = first + k;
        const base = block * BLOCKS;
        const j = cuts[2 * k];
        const to = cuts[2 * k + 1];
        const n = to - j;
        const before = this.#kinds[block];
        const old = this.#dense.get(block);
        let kind: number;
        if (n === 1 && masks[j] === 0) kind = SET4_NONE;
        else if (n <= SMALL_N) {
          kind = SET4_SMALL;
          w.small.add(block, ri, j, to, base);
        } else if (n <= BIG_N) {
          kind = SET4_BIG;
          w.big.add(block, ri, j, to, base);
          if (before !== SET4_BIG) bigAdded++;
        } else {
          if (n > SET4_RANGES_PER_BLOCK) {
            throw new LimitExceededError(
              `IPv4 sets: ${blockName(block)} would hold ${n} ranges of distinct membership; at most ${SET4_RANGES_PER_BLOCK} fit in one /16`,
              { resource: 'set-ranges', limit: SET4_RANGES_PER_BLOCK, count: n },
            );
          }
          kind = SET4_DENSE;
          const bank = old ? 1 - old.bank : 0;
          const firsts: number[] = [];
          for (let p = 0, from = j; from < to; p++, from += BIG_N) {
            firsts.push(p === 0 ? 0 : starts[from] - base);
            w.big.add(pageKey(block, bank, p), ri, from, Math.min(to, from + BIG_N), base);
            bigAdded++;
          }
          const at = w.dense.add(block);
          encodeDense(w.dense.values, at, firsts, bank);
          dense.set(block, { pages: firsts.length, bank });
        }
        if (kind !== before) {
          const at = w.dir.add(block);
          w.dir.values[at] = kind;
        }
        if (before === SET4_SMALL && kind !== SET4_SMALL) w.deleteSmall.push(block);
        if (before === SET4_BIG && kind !== SET4_BIG) {
          w.deleteBig.push(block);
          bigFreed++;
        }
        if (old) {
          for (let p = 0; p < old.pages; p++) w.deleteBig.push(pageKey(block, old.bank, p));
          bigFreed += old.pages;
          if (kind !== SET4_DENSE) w.deleteDense.push(block);
        }
        kinds[block] = kind;
        if (old && kind !== SET4_DENSE) dense.delete(block);
      }
    }
    // Old pages stay until the new ones are published: both count against the map's size.
    if (this.#bigUsed + bigAdded > SET4_BIG_CAPACITY) {
      throw new LimitExceededError(
        `IPv4 sets: ${this.#bigUsed + bigAdded} blocks of ranges would be needed; at most ${SET4_BIG_CAPACITY} fit`,
        { resource: 'set-ranges', limit: SET4_BIG_CAPACITY, count: this.#bigUsed + bigAdded },
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
  async write(w: Set4Writes): Promise<number> {
    try {
      await settled([
        this.#writeBlocks(this.small, w, w.small, SMALL_N),
        this.#writeBlocks(this.big, w, w.big, BIG_N),
      ]);
      await batchUpdate(this.denseMap, w.dense);
      await batchUpdate(this.dir, w.dir);
      await settled([
        batchDelete(this.small, w.deleteSmall),
        batchDelete(this.big, w.deleteBig),
        batchDelete(this.denseMap, w.deleteDense),
      ]);
    } catch (error) {
      // The record planned what failed to happen: take it back from the kernel (the caller
      // rewrites every /16 next time).
      await this.#readBack().catch(() => undefined);
      throw error;
    }
    return (
      w.small.count +
      w.big.count +
      w.dense.count +
      w.dir.count +
      w.deleteSmall.length +
      w.deleteBig.length +
      w.deleteDense.length
    );
  }

  /** Chunk buffers of #writeBlocks, by block size, kept across flushes. */
  readonly #chunks = new Map<number, Uint32Array>();

  /**
   * Encodes `list` a chunk at a time into a buffer kept for the next flush, and writes each chunk
   * (updateBatch copies its input before it returns, so the buffer is free again at once).
   */
  async #writeBlocks(map: BpfMap, w: Set4Writes, list: BlockList, slots: number): Promise<void> {
    let buffer = this.#chunks.get(slots);
    if (!buffer) {
      buffer = new Uint32Array(BATCH * 2 * slots);
      this.#chunks.set(slots, buffer);
    }
    const keys = new Uint32Array(BATCH);
    const writes: Promise<unknown>[] = [];
    for (let at = 0; at < list.count; at += BATCH) {
      const n = Math.min(BATCH, list.count - at);
      for (let k = 0; k < n; k++) {
        const e = at + k;
        keys[k] = list.keys[e];
        encodeRanges(
          buffer,
          2 * slots * k,
          w.ranges[list.runs[e]],
          list.from[e],
          list.to[e],
          list.base[e],
          slots,
        );
      }
      writes.push(
        map.updateBatch(
          Buffer.from(keys.buffer, 0, 4 * n),
          Buffer.from(buffer.buffer, buffer.byteOffset, 8 * slots * n),
          { count: n },
        ),
      );
    }
    await settled(writes);
  }

  /** Every mask the blocks hold, read from the kernel (for a store that adopted them). */
  async heldMasks(): Promise<Set<number>> {
    const masks = new Set<number>();
    for (const map of [this.small, this.big]) {
      const { values, count } = await map.lookupBatch();
      for (let i = 0; i < count * (map.valueSize / 8); i++) masks.add(values.readUInt32LE(8 * i));
    }
    masks.delete(0);
    return masks;
  }

  /** Closes the map handles (the pins stay). */
  close(): void {
    for (const map of [this.dir, this.small, this.big, this.denseMap]) map.close();
  }

  async #readBack(): Promise<void> {
    this.#kinds = new Uint8Array(BLOCKS);
    this.#dense = new Map();
    const dir = await this.dir.lookupBatch();
    for (let i = 0; i < dir.count; i++) {
      const block = dir.keys.readUInt32LE(4 * i);
      const kind = dir.values.readUInt32LE(4 * i);
      if (block < BLOCKS && kind <= SET4_DENSE) this.#kinds[block] = kind;
    }
    const nodes = await this.denseMap.lookupBatch();
    for (let i = 0; i < nodes.count; i++) {
      const block = nodes.keys.readUInt32LE(4 * i);
      const v = nodes.values.subarray(i * DENSE_BYTES, (i + 1) * DENSE_BYTES);
      this.#dense.set(block, { pages: v.readUInt16LE(0), bank: v.readUInt16LE(2) & 1 });
    }
    // What names sl_set4_bg entries: BIG /16s and dense pages (reading the map itself would copy
    // 512 bytes a block to count them). Pages a crash left in a node's other bank are not
    // counted; the block's next rewrite writes over them.
    this.#bigUsed = 0;
    for (const kind of this.#kinds) if (kind === SET4_BIG) this.#bigUsed++;
    for (const d of this.#dense.values()) this.#bigUsed += d.pages;
  }
}

const NO_PREALLOC = 1; // BPF_F_NO_PREALLOC

function blockName(block: number): string {
  return `${block >>> 8}.${block & 255}.0.0/16`;
}

async function batchUpdate(map: BpfMap, packed: Packed): Promise<void> {
  const keys = Buffer.from(packed.keys.buffer, packed.keys.byteOffset, 4 * packed.count);
  const size = 4 * packed.words;
  const values = Buffer.from(packed.values.buffer, packed.values.byteOffset, size * packed.count);
  for (let at = 0; at < packed.count; at += BATCH) {
    const n = Math.min(BATCH, packed.count - at);
    await map.updateBatch(
      keys.subarray(4 * at, 4 * (at + n)),
      values.subarray(size * at, size * (at + n)),
      {
        count: n,
      },
    );
  }
}

async function batchDelete(map: BpfMap, keys: number[]): Promise<void> {
  for (let at = 0; at < keys.length; at += BATCH) {
    const chunk = keys.slice(at, at + BATCH);
    const b = Buffer.alloc(4 * chunk.length);
    chunk.forEach((k, i) => b.writeUInt32LE(k >>> 0, 4 * i));
    await map.deleteBatch(b, { count: chunk.length });
  }
}

/** The range maps, as set4MaskOf reads them. */
export interface Set4Maps {
  dir: BpfMap;
  small: BpfMap;
  big: BpfMap;
  dense: BpfMap;
}

/** The range maps pinned under an instance directory; close() releases them. */
export function openPinnedSet4(dir: string): Set4Maps & { close(): void } {
  const opened: BpfMap[] = [];
  try {
    for (const name of SET4_PINS) {
      const pinned = openPinned(join(dir, name));
      if (pinned.kind !== 'map')
        throw new Error(`"${join(dir, name)}" pins a ${pinned.kind}, not a map`);
      opened.push(pinned.map);
    }
  } catch (error) {
    for (const map of opened) map.close();
    throw error;
  }
  const [dirMap, small, big, dense] = opened;
  return { dir: dirMap, small, big, dense, close: () => opened.forEach((m) => m.close()) };
}

/**
 * The mask of the sets holding `addr` (4 bytes, network order), read from the maps as the
 * pipeline reads them: for tests and tools that check what the kernel holds.
 */
export function set4MaskOf(maps: Set4Maps, addr: Uint8Array): number {
  const a = ((addr[0] << 24) | (addr[1] << 16) | (addr[2] << 8) | addr[3]) >>> 0;
  const block = a >>> 16;
  const off = a & 0xffff;
  const kind = maps.dir.lookup(u32(block))?.readUInt32LE(0) ?? SET4_NONE;
  const search = (v: Buffer | null, slots: number): number => {
    if (!v) return 0;
    let pos = 0;
    for (let step = slots / 2; step >= 1; step /= 2) {
      if (v.readUInt32LE(8 * (pos + step) + 4) <= off) pos += step;
    }
    return v.readUInt32LE(8 * pos);
  };
  if (kind === SET4_SMALL) return search(maps.small.lookup(u32(block)), SMALL_N);
  if (kind === SET4_BIG) return search(maps.big.lookup(u32(block)), BIG_N);
  if (kind !== SET4_DENSE) return 0;
  const node = maps.dense.lookup(u32(block));
  if (!node) return 0;
  const pages = node.readUInt16LE(0);
  let pos = 0;
  for (let step = PAGES / 2; step >= 1; step /= 2) {
    if (node.readUInt16LE(4 + 2 * (pos + step)) <= off) pos += step;
  }
  const page = Math.min(pos, pages - 1);
  return search(maps.big.lookup(u32(pageKey(block, node.readUInt16LE(2) & 1, page))), BIG_N);
}
