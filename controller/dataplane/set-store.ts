// The shared prefix-set maps (IPv4 ranges; IPv6 ranges beside the tries): created once per instance, pinned,
// adopted on restart.
import { join } from 'node:path';

import { isPinned, unpin, type BpfMap } from '../../bpf/index.js';
import { SL_MAX_CLASSES, SL_MAX_SETS, u32 } from './abi.js';
import { LimitExceededError } from './errors.js';
import { decodeName, encodeName, openNameTable, openOrCreateMap } from './name-table.js';
import { FamilyIndex, formatKey, type TrieBatch } from './prefix-index.js';
import type { PrefixKeys } from './prefix-keys.js';
import { Set4Blocks, SET4_PINS, type Set4Writes } from './set4-blocks.js';
import { Set6Blocks, SET6_PINS, type Set6Writes } from './set6-blocks.js';
import { settled } from './settled.js';

/** Capacity of the IPv6 trie (max_entries; LPM tries allocate per entry, so this is only a cap). */
export const SET6_CAPACITY = 1_048_576;
/** The IPv4 trie of earlier builds, which the range maps replace: unpinned when found. */
const LEGACY_SET4 = 'sl_set4';
const LPM_NO_PREALLOC = 1; // BPF_F_NO_PREALLOC
const BATCH = 65536;
/** sl_set_masks holds one value: a count, then that many u32 masks. */
const MASKS_VALUE_SIZE = 4 * (SL_MAX_CLASSES + 1);

/** What an earlier process recorded after its last complete set load: see SetStore.pinnedState. */
export interface PinnedSetState {
  /** Per set name, the fingerprint of the prefix text that load wrote. */
  fingerprints: Map<string, string>;
  /** The membership masks the tries held after it. */
  masks: number[];
}

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
  readonly v4 = new FamilyIndex(4, { ranges: true });
  readonly v6 = new FamilyIndex(6);
  readonly #bits = new Map<string, number>();
  /** What recordFingerprints last wrote (masks, fingerprints, bits); undefined: not known. */
  #recorded: string | undefined;
  #adopted = false;
  /** False until the tries were read back (adoption defers it: a million keys take a second). */
  #loaded = false;
  /** The masks the tries hold while they are not read back, from sl_set_masks. */
  #pinnedMasks: number[] = [];
  /**
   * False while the IPv4 ranges hold what an earlier process wrote and the index does not know:
   * the next flush rewrites every /16. Until then, the masks they hold (once read back).
   */
  #v4Synced = true;
  #v4KernelMasks = new Set<number>();
  #v4Unknown = false;
  /**
   * True while the IPv6 blocks and short trie may not hold what the whole trie does (read back,
   * or a write failed): the next flush rewrites every /32 from the index.
   */
  #v6All = false;
  /** IPv6 blocks created here for sets an earlier build named: only the whole trie holds them. */
  #v6Unknown = false;

  private constructor(
    readonly set4: Set4Blocks,
    readonly set6Blocks: Set6Blocks,
    readonly set6: BpfMap,
    readonly names: BpfMap,
    /** Per set bit, the fingerprint of the text last loaded whole; '' while unknown. */
    readonly fingerprints: BpfMap,
    readonly maskTable: BpfMap,
  ) {}

  /** Paths of the pins this store owns, relative to the instance directory. */
  static readonly pins = [
    ...SET4_PINS,
    ...SET6_PINS,
    'sl_set6',
    'sl_set_names',
    'sl_set_fp',
    'sl_set_masks',
  ];

  /** Opens the pinned maps under `dir`, or creates and pins them; reads back what they hold. */
  static async open(dir: string): Promise<SetStore> {
    const set4 = await Set4Blocks.open(dir);
    const set6Blocks = Set6Blocks.open(dir);
    // An earlier build's IPv4 trie: its pipelines keep it while they run; nothing writes it now.
    if (isPinned(join(dir, LEGACY_SET4))) unpin(join(dir, LEGACY_SET4));
    const set6 = openOrCreateMap(join(dir, 'sl_set6'), {
      type: 'lpm_trie',
      keySize: 20,
      valueSize: 8,
      maxEntries: SET6_CAPACITY,
      flags: LPM_NO_PREALLOC,
      name: 'sl_set6',
    });
    const names = openNameTable(join(dir, 'sl_set_names'), SL_MAX_SETS, 'sl_set_names');
    const fingerprints = openNameTable(join(dir, 'sl_set_fp'), SL_MAX_SETS, 'sl_set_fp');
    const maskTable = openOrCreateMap(join(dir, 'sl_set_masks'), {
      type: 'array',
      keySize: 4,
      valueSize: MASKS_VALUE_SIZE,
      maxEntries: 1,
      name: 'sl_set_masks',
    });
    const store = new SetStore(set4, set6Blocks, set6, names, fingerprints, maskTable);
    for (let bit = 0; bit < SL_MAX_SETS; bit++) {
      const name = decodeName(names.lookup(u32(bit)));
      if (name) store.#bits.set(name, bit);
    }
    store.#adopted = store.#bits.size > 0;
    store.#v4Synced = !set4.occupied;
    // Ranges created here for sets an earlier build named: what they hold is unknown, so no
    // recorded state may stand for it (the first apply loads every set).
    store.#v4Unknown = set4.created && store.#bits.size > 0;
    store.#v6Unknown = set6Blocks.created && store.#bits.size > 0;
    // With no sets named there is nothing worth deferring: read back now (the tries are empty,
    // or hold leftovers of a crash that the next load must sweep).
    if (!store.#adopted) await store.load();
    return store;
  }

  /** True once the tries' contents are known in memory. */
  get loaded(): boolean {
    return this.#loaded;
  }

  /**
   * What the last complete load recorded, when every named set has a fingerprint: the tries
   * then hold exactly those texts, and an apply of the same texts needs no read-back at all.
   * Null when anything is unknown (a load was interrupted, or a set was changed incrementally).
   */
  pinnedState(): PinnedSetState | null {
    if (this.#v4Unknown || this.#v6Unknown) return null;
    const fingerprints = new Map<string, string>();
    for (const [name, bit] of this.#bits) {
      const fp = decodeName(this.fingerprints.lookup(u32(bit)));
      if (!fp) return null;
      fingerprints.set(name, fp);
    }
    const value = this.maskTable.lookup(u32(0));
    if (!value) return null;
    const count = value.readUInt32LE(0);
    if (count > SL_MAX_CLASSES) return null;
    const masks: number[] = [];
    for (let i = 0; i < count; i++) masks.push(value.readUInt32LE(4 + i * 4));
    return { fingerprints, masks };
  }

  /** Trusts `state` (see pinnedState) for masks() until load() reads the tries back. */
  adoptPinned(state: PinnedSetState): void {
    this.#pinnedMasks = state.masks;
  }

  /** Reads the tries back into memory, once; changes need it. */
  async load(): Promise<void> {
    if (this.#loaded) return;
    await this.#readBack();
    this.#loaded = true;
  }

  /** Forgets every recorded fingerprint: call before writes whose outcome they would not describe. */
  clearFingerprints(): void {
    for (const bit of this.#bits.values()) this.fingerprints.update(u32(bit), encodeName(''));
    this.#recorded = undefined;
  }

  /** Records, after a complete load, the text fingerprint of each set and the masks now held. */
  recordFingerprints(fingerprints: ReadonlyMap<string, string>): void {
    const masks = this.masks();
    // A rule change leaves both as this process last recorded them: nothing to write.
    const recorded = `${masks.join(',')} ${[...fingerprints].join(';')} ${[...this.#bits].join(';')}`;
    if (recorded === this.#recorded) return;
    const value = Buffer.alloc(MASKS_VALUE_SIZE);
    value.writeUInt32LE(masks.length, 0);
    masks.forEach((mask, i) => value.writeUInt32LE(mask >>> 0, 4 + i * 4));
    this.maskTable.update(u32(0), value);
    for (const [name, fp] of fingerprints) {
      const bit = this.#bits.get(name);
      if (bit !== undefined) this.fingerprints.update(u32(bit), encodeName(fp));
    }
    this.#recorded = recorded;
  }

  /** The bit of each set, for the classifiers. */
  get bits(): ReadonlyMap<string, number> {
    return this.#bits;
  }

  /** Distinct membership masks the tries hold: the classifiers need a class for each. */
  masks(): number[] {
    if (!this.#loaded) return [...this.#pinnedMasks];
    return [...new Set([...this.v4.masks(), ...this.v6.masks(), ...this.#v4KernelMasks])];
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
    this.fingerprints.update(u32(bit), encodeName(''));
    this.#bits.delete(name);
  }

  /**
   * Writes planned changes to the kernel: the IPv4 ranges of every /16 the changes touched (all of
   * them after an adoption), and the IPv6 tries and the ranges of every /32 they touched, side by
   * side. Returns how many prefix entries changed.
   */
  async flush(pending: PendingWrites): Promise<number> {
    // The tries' inserts run on a worker while this thread works out the ranges of both
    // families; the /32s are written once both tries hold what their blocks may send a lookup to.
    const all6 = this.#v6All && this.#loaded;
    const tries6 = (async (): Promise<number> => {
      let n = 0;
      for (const batch of pending.v6) {
        n += await writeTrie(this.set6, batch);
        if (!all6) await this.set6Blocks.writeShort(batch);
      }
      if (all6) await this.set6Blocks.rewriteShort(this.v6);
      return n;
    })();
    let blocks6: Set6Writes;
    try {
      blocks6 = this.set6Blocks.plan(this.v6, all6 ? 'all' : this.set6Blocks.dirtyOf(pending.v6));
    } catch (error) {
      this.#v6All = true;
      await settled([tries6]).catch(() => undefined);
      throw error;
    }
    if (all6) this.#v6All = false;
    const v6 = tries6
      .then(async (n) => {
        await this.set6Blocks.write(blocks6);
        return n;
      })
      .catch((error: unknown) => {
        // what the kernel holds is no longer what the index planned: every /32 next time
        this.#v6All = true;
        throw error;
      });
    let ranges: Set4Writes | undefined;
    try {
      if (this.#v4Synced) {
        // marks are cleared only once planned: after a limit error the next flush retries them
        ranges = this.set4.plan(this.v4, this.v4.touched());
        this.v4.clearTouched();
      } else if (this.#loaded) {
        // the index holds the whole desired state (planReplaceAll ran): every /16 from it
        ranges = this.set4.plan(this.v4, 'all');
        this.v4.clearTouched();
        this.#v4Synced = true;
        this.#v4KernelMasks.clear();
      }
      // else the ranges hold what the pins recorded, and the index knows nothing yet: left alone
    } catch (error) {
      await settled([v6]).catch(() => undefined);
      throw error;
    }
    if (ranges) this.#v4Unknown = false;
    if (all6) this.#v6Unknown = false;
    const v4Write = ranges
      ? this.set4.write(ranges).catch((error: unknown) => {
          // what the kernel holds is no longer what the index planned: every /16 next time
          this.#v4Synced = false;
          throw error;
        })
      : Promise.resolve(0);
    const [, n6] = await settled([v4Write, v6]);
    // IPv4 counts prefixes, as IPv6 does: how many /16s that rewrote is the ranges' business
    let v4 = 0;
    for (const batch of pending.v4) v4 += batch.updates + batch.deletes;
    return v4 + n6;
  }

  /** Closes the map handles (the pins stay). */
  close(): void {
    this.set4.close();
    this.set6Blocks.close();
    this.set6.close();
    this.names.close();
    this.fingerprints.close();
    this.maskTable.close();
  }

  async #readBack(): Promise<void> {
    // Values are what the kernel holds; own masks come with the next planReplaceAll(). The IPv4
    // ranges cannot give their prefixes back: the next flush rewrites them from the index.
    // The IPv6 blocks follow from the whole trie: read back beside it only for what to replace,
    // and rewritten with the short trie from it at the next flush.
    let batch!: Awaited<ReturnType<BpfMap['lookupBatch']>>;
    await settled([
      this.set6.lookupBatch().then((b) => void (batch = b)),
      this.set6Blocks.readBack(),
    ]);
    this.v6.seedValues(batch);
    this.#v6All = true;
    if (batch.count > 0) this.#adopted = true;
    if (!this.#v4Synced) {
      this.#v4KernelMasks = await this.set4.heldMasks();
      this.#adopted = true;
    }
    if (this.#bits.size > 0) this.#adopted = true;
  }
}

/**
 * Writes one batch of trie changes: updates, then deletes. Returns the entries changed. Updates
 * past two chunks go as two halves side by side: the kernel's trie inserts are most of a large
 * load, and two threads get through a million of them about a fifth sooner than one.
 */
async function writeTrie(map: BpfMap, batch: TrieBatch): Promise<number> {
  const keySize = map.keySize;
  const update = async (from: number, to: number): Promise<void> => {
    for (let at = from; at < to; at += BATCH) {
      const n = Math.min(BATCH, to - at);
      await map.updateBatch(
        batch.updateKeys.subarray(at * keySize, (at + n) * keySize),
        batch.updateValues.subarray(at * 8, (at + n) * 8),
        { count: n },
      );
    }
  };
  const half = batch.updates > 2 * BATCH ? Math.ceil(batch.updates / 2) : batch.updates;
  await settled([update(0, half), update(half, batch.updates)]);
  for (let at = 0; at < batch.deletes; at += BATCH) {
    const n = Math.min(BATCH, batch.deletes - at);
    await map.deleteBatch(batch.deleteKeys.subarray(at * keySize, (at + n) * keySize), {
      count: n,
    });
  }
  return batch.updates + batch.deletes;
}
