// The shared prefix-set maps (sl_set4, sl_set6): created once per instance, pinned, adopted on restart.
import { join } from 'node:path';

import type { BpfMap } from '../../bpf/index.js';
import { SL_MAX_SETS, u32 } from './abi.js';
import { LimitExceededError } from './errors.js';
import { decodeName, encodeName, openNameTable, openOrCreateMap } from './name-table.js';
import { FamilyIndex, formatKey, type TrieBatch } from './prefix-index.js';
import type { PrefixKeys } from './prefix-keys.js';

/** Capacity of the shared tries (max_entries; LPM tries allocate per entry, so this is only a cap). */
export const SET4_CAPACITY = 4_194_304;
export const SET6_CAPACITY = 1_048_576;
const LPM_NO_PREALLOC = 1; // BPF_F_NO_PREALLOC
const BATCH = 65536;

/** Trie writes computed but not yet sent (flush). */
export interface PendingWrites {
  v4: TrieBatch[];
  v6: TrieBatch[];
}

/**
 * Set names, the bit each set owns, and both families' membership. The name of bit i is kept in
 * the pinned map sl_set_names so a restarted process reads the same assignment back.
 * Changes are planned in memory (plan*), then written (flush): in between, masks() already lists
 * every mask the writes introduce, so classifiers learn them before any packet meets them.
 */
export class SetStore {
  readonly v4 = new FamilyIndex(4);
  readonly v6 = new FamilyIndex(6);
  readonly #bits = new Map<string, number>();
  #adopted = false;

  private constructor(
    readonly set4: BpfMap,
    readonly set6: BpfMap,
    readonly names: BpfMap,
  ) {}

  /** Paths of the pins this store owns, relative to the instance directory. */
  static readonly pins = ['sl_set4', 'sl_set6', 'sl_set_names'];

  /** Opens the pinned maps under `dir`, or creates and pins them; reads back what they hold. */
  static async open(dir: string): Promise<SetStore> {
    const set4 = openOrCreateMap(join(dir, 'sl_set4'), {
      type: 'lpm_trie',
      keySize: 8,
      valueSize: 8,
      maxEntries: SET4_CAPACITY,
      flags: LPM_NO_PREALLOC,
      name: 'sl_set4',
    });
    const set6 = openOrCreateMap(join(dir, 'sl_set6'), {
      type: 'lpm_trie',
      keySize: 20,
      valueSize: 8,
      maxEntries: SET6_CAPACITY,
      flags: LPM_NO_PREALLOC,
      name: 'sl_set6',
    });
    const names = openNameTable(join(dir, 'sl_set_names'), SL_MAX_SETS, 'sl_set_names');
    const store = new SetStore(set4, set6, names);
    await store.#readBack();
    return store;
  }

  /** The bit of each set, for the classifiers. */
  get bits(): ReadonlyMap<string, number> {
    return this.#bits;
  }

  /** Distinct membership masks the tries hold: the classifiers need a class for each. */
  masks(): number[] {
    return [...new Set([...this.v4.masks(), ...this.v6.masks()])];
  }

  /** Names of the sets that exist. */
  setNames(): string[] {
    return [...this.#bits.keys()];
  }

  /** The prefixes of set `name`, as text, sorted by family then address. */
  members(name: string): string[] {
    const bit = this.#bits.get(name);
    if (bit === undefined) return [];
    return [...this.v4.keysWithBit(bit), ...this.v6.keysWithBit(bit)].map(formatKey);
  }

  /** True until replaceAll() ran after adopting maps another process filled: members are unknown. */
  get needsFullLoad(): boolean {
    return this.#adopted;
  }

  /** Gives `name` a bit (kept until the set is dropped). Throws LimitExceededError past SL_MAX_SETS. */
  ensureSet(name: string): number {
    const known = this.#bits.get(name);
    if (known !== undefined) return known;
    const used = new Set(this.#bits.values());
    let bit = 0;
    while (used.has(bit)) bit++;
    if (bit >= SL_MAX_SETS) {
      throw new LimitExceededError(
        `create set "${name}": at most ${SL_MAX_SETS} prefix sets can exist at once`,
        { resource: 'sets', limit: SL_MAX_SETS, count: this.#bits.size + 1 },
      );
    }
    this.names.update(u32(bit), encodeName(name));
    this.#bits.set(name, bit);
    return bit;
  }

  /** Adds (on) or removes prefixes of one set, in memory; flush() writes the result. */
  planChange(name: string, keys: PrefixKeys, on: boolean): PendingWrites {
    const bit = this.ensureSet(name);
    return {
      v4: [this.v4.changeKeys(keys.v4, bit, on)],
      v6: [this.v6.changeKeys(keys.v6, bit, on)],
    };
  }

  /** Makes set `name` hold exactly `keys`, in memory; flush() writes the result. */
  planSet(name: string, keys: PrefixKeys): PendingWrites {
    const bit = this.ensureSet(name);
    const out: PendingWrites = { v4: [], v6: [] };
    for (const [family, wanted, list] of [
      [this.v4, keys.v4, out.v4],
      [this.v6, keys.v6, out.v6],
    ] as const) {
      const { add, remove } = family.diffKeys(wanted, bit);
      if (remove.length > 0) list.push(family.changeKeys(remove, bit, false));
      if (add.length > 0) list.push(family.changeKeys(add, bit, true));
    }
    return out;
  }

  /**
   * Replaces every set's contents at once (the first apply after a restart): plans writes for only
   * the entries whose value differs from what the kernel holds, and deletes for the rest. Sets not
   * in `sets` are dropped.
   */
  planReplaceAll(sets: ReadonlyMap<string, PrefixKeys>): PendingWrites {
    for (const name of [...this.#bits.keys()]) if (!sets.has(name)) this.dropSet(name);
    const groups4: { keys: Float64Array; mask: number }[] = [];
    const groups6: { keys: string[]; mask: number }[] = [];
    for (const [name, keys] of sets) {
      const mask = (1 << this.ensureSet(name)) >>> 0;
      groups4.push({ keys: keys.v4, mask });
      groups6.push({ keys: keys.v6, mask });
    }
    const v4 = this.v4.replaceOwn(groups4);
    const v6 = this.v6.replaceOwn(groups6);
    this.#adopted = false;
    return { v4: [v4], v6: [v6] };
  }

  /** Forgets set `name` and frees its bit; its prefixes must be removed (and flushed) first. */
  dropSet(name: string): void {
    const bit = this.#bits.get(name);
    if (bit === undefined) return;
    this.names.update(u32(bit), encodeName(''));
    this.#bits.delete(name);
  }

  /** Writes planned changes to the kernel tries. Returns how many entries changed. */
  async flush(pending: PendingWrites): Promise<number> {
    let n = 0;
    for (const batch of pending.v4) n += await writeTrie(this.set4, batch);
    for (const batch of pending.v6) n += await writeTrie(this.set6, batch);
    return n;
  }

  /** Closes the map handles (the pins stay). */
  close(): void {
    this.set4.close();
    this.set6.close();
    this.names.close();
  }

  async #readBack(): Promise<void> {
    for (let bit = 0; bit < SL_MAX_SETS; bit++) {
      const name = decodeName(this.names.lookup(u32(bit)));
      if (name) this.#bits.set(name, bit);
    }
    // Values are what the kernel holds; own masks come with the next planReplaceAll().
    for (const [family, map] of [
      [this.v4, this.set4],
      [this.v6, this.set6],
    ] as const) {
      const batch = await map.lookupBatch();
      family.seedValues(batch);
      if (batch.count > 0) this.#adopted = true;
    }
    if (this.#bits.size > 0) this.#adopted = true;
  }
}

/** Writes one batch of trie changes: updates, then deletes. Returns the entries changed. */
async function writeTrie(map: BpfMap, batch: TrieBatch): Promise<number> {
  const keySize = map.keySize;
  for (let at = 0; at < batch.updates; at += BATCH) {
    const n = Math.min(BATCH, batch.updates - at);
    await map.updateBatch(
      batch.updateKeys.subarray(at * keySize, (at + n) * keySize),
      batch.updateValues.subarray(at * 8, (at + n) * 8),
      { count: n },
    );
  }
  for (let at = 0; at < batch.deletes; at += BATCH) {
    const n = Math.min(BATCH, batch.deletes - at);
    await map.deleteBatch(batch.deleteKeys.subarray(at * keySize, (at + n) * keySize), {
      count: n,
    });
  }
  return batch.updates + batch.deletes;
}
