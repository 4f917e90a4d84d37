// BpfMap: typed access to a kernel BPF map (element CRUD, iteration, per-CPU values, fd values, async batches).
import { native, type NativeMap } from './addon/index.js';
import { KernelHandle } from './handle.js';
import { InvalidArgumentError, SyscallError } from './errors.js';
import { MAP_FLAGS, MAP_TYPES, mapTypeName, type MapType } from './kinds.js';

/** How an update treats an existing key: BPF_ANY, BPF_NOEXIST, BPF_EXIST. */
export type UpdateFlag = 'any' | 'noexist' | 'exist';

const UPDATE_FLAGS: Record<UpdateFlag, number> = { any: 0, noexist: 1, exist: 2 };

function updateFlag(flag: UpdateFlag | undefined, what: string): number {
  if (flag === undefined) return 0;
  const value = UPDATE_FLAGS[flag];
  if (value === undefined) {
    throw new InvalidArgumentError(
      `${what}: flag must be "any", "noexist" or "exist", got ${JSON.stringify(flag)}`,
    );
  }
  return value;
}

/** What a new map looks like. */
export interface MapSpec {
  type: MapType;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  /** BPF_F_* creation flags (see MAP_FLAGS); BPF_F_NO_PREALLOC is required for lpm_trie. */
  flags?: number;
  /** At most 15 characters of [A-Za-z0-9_.]. */
  name?: string;
  /** The template of the inner maps, for array_of_maps and hash_of_maps. */
  innerMap?: BpfMap;
}

export interface MapInfo {
  id: number;
  name: string;
  type: MapType | `type_${number}`;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
}

export interface BatchResult {
  /** Elements done. */
  count: number;
  /** True when the kernel has no batch operation for this map type and a per-element loop ran instead (still off the event loop). */
  fallback: boolean;
}

export interface LookupBatchResult extends BatchResult {
  /** `count` keys, each keySize bytes. */
  keys: Buffer;
  /** `count` values, each valueSize bytes (per-CPU maps: round8(valueSize) × possible CPUs). */
  values: Buffer;
}

/** Something whose kernel fd can be stored in a prog array or map-in-map. */
export interface FdHolder {
  /** @internal */
  readonly native: unknown;
}

/**
 * A kernel BPF map, owning one file descriptor. Created by createMap(), BpfObject.map(),
 * openPinned() or getMapById(); close() releases it (the finalizer does too, later).
 */
export class BpfMap extends KernelHandle<NativeMap> implements FdHolder {
  get name(): string {
    return this.native.name;
  }
  get type(): MapType | `type_${number}` {
    return mapTypeName(this.native.type);
  }
  get keySize(): number {
    return this.native.keySize;
  }
  get valueSize(): number {
    return this.native.valueSize;
  }
  get maxEntries(): number {
    return this.native.maxEntries;
  }
  get flags(): number {
    return this.native.flags;
  }
  /** True for per-CPU maps: values are one Buffer per possible CPU. */
  get perCpu(): boolean {
    return this.native.perCpu;
  }

  /**
   * The value under `key`, or null. Throws InvalidArgumentError for a per-CPU map (use lookupPerCpu),
   * a key of the wrong size, ClosedError after close(), SyscallError when the kernel refuses.
   */
  lookup(key: Uint8Array): Buffer | null {
    if (this.native.perCpu) {
      throw new InvalidArgumentError(
        `look up in map "${this.name}": per-CPU map, use lookupPerCpu()`,
      );
    }
    return this.native.lookup(key) as Buffer | null;
  }

  /** One value per possible CPU under `key`, or null. Throws InvalidArgumentError for a map that is not per-CPU. */
  lookupPerCpu(key: Uint8Array): Buffer[] | null {
    if (!this.native.perCpu) {
      throw new InvalidArgumentError(
        `look up in map "${this.name}": not a per-CPU map, use lookup()`,
      );
    }
    return this.native.lookup(key) as Buffer[] | null;
  }

  /** Copies the value under `key` into `out` without allocating; false if there is none. */
  lookupInto(key: Uint8Array, out: Uint8Array): boolean {
    return this.native.lookupInto(key, out);
  }

  /**
   * Sets `key` to `value`. Per-CPU maps take one Buffer per possible CPU, or one Buffer for all CPUs.
   * Throws InvalidArgumentError on wrong sizes, SyscallError (EEXIST for 'noexist', ENOENT for 'exist', E2BIG when full).
   */
  update(key: Uint8Array, value: Uint8Array | Uint8Array[], flag?: UpdateFlag): void {
    this.native.update(
      key,
      value,
      flag === undefined ? 0 : updateFlag(flag, `update map "${this.name}"`),
    );
  }

  /** Stores a program (prog_array) or a map (array_of_maps, hash_of_maps) under `key`. */
  setFd(key: Uint8Array, target: FdHolder, flag?: UpdateFlag): void {
    this.native.updateFd(
      key,
      target.native as NativeMap,
      updateFlag(flag, `update map "${this.name}"`),
    );
  }

  /** Removes `key`; false if it was not there. */
  delete(key: Uint8Array): boolean {
    return this.native.delete(key);
  }

  /** The key after `key` (or the first key for null); null at the end. */
  nextKey(key: Uint8Array | null): Buffer | null {
    return this.native.nextKey(key);
  }

  /** Every key, by bpf_map_get_next_key. Concurrent deletes may restart the walk (kernel behaviour). */
  *keys(): Generator<Buffer> {
    let key = this.native.nextKey(null);
    while (key) {
      yield key;
      key = this.native.nextKey(key);
    }
  }

  /** Every key and value (per-CPU maps: an array of Buffers); keys deleted during the walk are skipped. */
  *entries(): Generator<[Buffer, Buffer | Buffer[]]> {
    for (const key of this.keys()) {
      const value = this.native.lookup(key);
      if (value !== null) yield [key, value];
    }
  }

  /**
   * Writes `count` (default: all) keys and values packed back to back, on a worker thread
   * (bpf_map_update_batch, or a per-element loop where the kernel lacks it). The call copies them
   * first: the buffers may change, or their ArrayBuffer be transferred, as soon as it returns.
   * Rejects with SyscallError carrying `processed`.
   */
  async updateBatch(
    keys: Uint8Array,
    values: Uint8Array,
    options: { count?: number; flag?: UpdateFlag } = {},
  ): Promise<BatchResult> {
    return await this.native.updateBatch(
      keys,
      values,
      options.count,
      updateFlag(options.flag, `batch update map "${this.name}"`),
    );
  }

  /**
   * updateBatch on this thread: one syscall for a few dozen entries, where a worker thread's round
   * trip would cost more than the write. Throws SyscallError.
   */
  updateBatchSync(
    keys: Uint8Array,
    values: Uint8Array,
    options: { count?: number; flag?: UpdateFlag } = {},
  ): BatchResult {
    return this.native.updateBatchSync(
      keys,
      values,
      options.count,
      updateFlag(options.flag, `batch update map "${this.name}"`),
    );
  }

  /**
   * Reads the whole map on a worker thread (bpf_map_lookup_batch, or get_next_key + lookup). Memory
   * grows with the elements found, in chunks, not with `maxEntries`.
   */
  async lookupBatch(): Promise<LookupBatchResult> {
    return await this.native.lookupBatch();
  }

  /**
   * Deletes `count` (default: all) packed keys on a worker thread, from a copy made by the call;
   * stops at the first missing key (ENOENT).
   */
  async deleteBatch(keys: Uint8Array, options: { count?: number } = {}): Promise<BatchResult> {
    return await this.native.deleteBatch(keys, options.count);
  }

  /** The map as the kernel describes it now. */
  info(): MapInfo {
    const info = this.native.info();
    return { ...info, type: mapTypeName(info.type) };
  }
}

/**
 * Creates a map. Throws InvalidArgumentError for bad options, SyscallError from bpf_map_create
 * (EINVAL for sizes the type does not accept, EPERM without CAP_BPF).
 */
export function createMap(spec: MapSpec): BpfMap {
  const type = (MAP_TYPES as Record<string, number>)[spec.type];
  if (type === undefined) {
    throw new InvalidArgumentError(
      `create map${spec.name ? ` "${spec.name}"` : ''}: unknown map type ${JSON.stringify(spec.type)}`,
    );
  }
  try {
    return new BpfMap(
      native.createMap({
        type,
        keySize: spec.keySize,
        valueSize: spec.valueSize,
        maxEntries: spec.maxEntries,
        flags: spec.flags,
        name: spec.name,
        innerMap: spec.innerMap?.native,
      }),
    );
  } catch (error: unknown) {
    if (!(error instanceof SyscallError) || error.code !== 'EINVAL') throw error;
    const flags = spec.flags ?? 0;
    const hint =
      spec.type === 'lpm_trie' && (flags & MAP_FLAGS.NO_PREALLOC) === 0
        ? 'lpm_trie needs flags NO_PREALLOC'
        : 'the kernel refused this combination of type, sizes and flags';
    throw new SyscallError(
      `create ${spec.type} map${spec.name ? ` "${spec.name}"` : ''} (key ${spec.keySize} bytes, value ${spec.valueSize} bytes, ${spec.maxEntries} entries, flags 0x${flags.toString(16)}): ${hint}`,
      { errno: error.errno, syscall: error.syscall, cause: error },
    );
  }
}

/** Opens the map with kernel id `id`. Throws SyscallError ENOENT if there is none. */
export function getMapById(id: number): BpfMap {
  return new BpfMap(native.getById('map', id));
}

/** Number of possible CPUs: the length of per-CPU values. */
export function possibleCpus(): number {
  return native.possibleCpus();
}
