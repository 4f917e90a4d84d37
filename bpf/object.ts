// BpfObject: an ELF BPF object opened through libbpf, adjusted before load, then a source of maps and programs.
import { native, type NativeBpfObject } from './addon/index.js';
import { mapTypeName, programTypeName, type MapType, type ProgramType } from './kinds.js';
import { BpfMap } from './map.js';
import { BpfProgram } from './program.js';

export interface ObjectProgram {
  name: string;
  /** ELF section, e.g. "xdp", "tc". */
  section: string;
  type: ProgramType | `type_${number}`;
  expectedAttachType: number;
  autoload: boolean;
  insnCount: number;
}

export interface ObjectMap {
  name: string;
  type: MapType | `type_${number}`;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  /** .data, .rodata, .bss and the like. */
  internal: boolean;
  pinPath: string | null;
}

/**
 * An opened ELF BPF object. Before load(): list and adjust maps and programs. After: map(name) and
 * program(name) give handles with their own fds, which stay valid after the object is closed.
 */
export class BpfObject {
  readonly #native: NativeBpfObject;

  /** @internal Use openObject(). */
  constructor(handle: NativeBpfObject) {
    this.#native = handle;
  }

  get name(): string {
    return this.#native.name;
  }
  get loaded(): boolean {
    return this.#native.loaded;
  }
  get closed(): boolean {
    return this.#native.closed;
  }

  programs(): ObjectProgram[] {
    return this.#native.programs().map((p) => ({ ...p, type: programTypeName(p.type) }));
  }

  maps(): ObjectMap[] {
    return this.#native.maps().map((m) => ({ ...m, type: mapTypeName(m.type) }));
  }

  /** Sets max_entries of `map` before load. Throws InvalidStateError after load. */
  setMaxEntries(map: string, maxEntries: number): void {
    this.#native.setMaxEntries(map, maxEntries);
  }

  /** Sets (or clears with null) where libbpf pins `map` at load, reusing a compatible pinned map. */
  setPinPath(map: string, path: string | null): void {
    this.#native.setPinPath(map, path);
  }

  /** Whether load() loads `program`. */
  setAutoload(program: string, autoload: boolean): void {
    this.#native.setAutoload(program, autoload);
  }

  /**
   * Creates the maps and loads the programs. Throws VerifierError (with the verifier's log) when a
   * program is rejected, SyscallError with `libbpfLog` otherwise.
   */
  load(): void {
    this.#native.load();
  }

  map(name: string): BpfMap {
    return new BpfMap(this.#native.map(name));
  }

  program(name: string): BpfProgram {
    return new BpfProgram(this.#native.program(name));
  }

  /** Frees libbpf's object and its fds; handles from map()/program() stay open. Idempotent. */
  close(): void {
    this.#native.close();
  }
}

/** Opens an ELF BPF object from a file path or an in-memory image. Throws SyscallError with `libbpfLog`. */
export function openObject(
  source: string | Uint8Array,
  options: { name?: string } = {},
): BpfObject {
  return new BpfObject(native.openObject(source, options.name));
}

export interface LoadObjectOptions {
  name?: string;
  /** max_entries per map name. */
  maxEntries?: Record<string, number>;
  /** pin path per map name. */
  pinPaths?: Record<string, string>;
}

/** openObject + adjustments + load; closes the object if anything fails. */
export function loadObject(
  source: string | Uint8Array,
  options: LoadObjectOptions = {},
): BpfObject {
  const object = openObject(source, { name: options.name });
  try {
    for (const [map, n] of Object.entries(options.maxEntries ?? {})) object.setMaxEntries(map, n);
    for (const [map, path] of Object.entries(options.pinPaths ?? {})) object.setPinPath(map, path);
    object.load();
    return object;
  } catch (error: unknown) {
    object.close();
    throw error;
  }
}
