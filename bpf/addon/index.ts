// Typed facade over sluice_bpf.node, the only importer of the native module.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  ClosedError,
  InvalidArgumentError,
  InvalidStateError,
  NotSupportedError,
  SyscallError,
  VerifierError,
} from '../errors.js';

/** Map shape as the kernel reports it. */
export interface NativeMapInfo {
  id: number;
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
}

export interface NativeBatchResult {
  count: number;
  /** True when the kernel had no batch operation for the map and the worker looped per element. */
  fallback: boolean;
}

export interface NativeLookupBatchResult extends NativeBatchResult {
  keys: Buffer;
  values: Buffer;
}

export interface NativeMap {
  readonly fd: number;
  readonly name: string;
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags: number;
  readonly id: number;
  readonly closed: boolean;
  readonly perCpu: boolean;
  lookup(key: Uint8Array): Buffer | Buffer[] | null;
  lookupInto(key: Uint8Array, out: Uint8Array): boolean;
  update(key: Uint8Array, value: Uint8Array | Uint8Array[], flags?: number): void;
  updateFd(key: Uint8Array, target: NativeMap | NativeProgram, flags?: number): void;
  delete(key: Uint8Array): boolean;
  nextKey(key: Uint8Array | null): Buffer | null;
  updateBatch(
    keys: Uint8Array,
    values: Uint8Array,
    count?: number,
    flags?: number,
  ): Promise<NativeBatchResult>;
  updateBatchSync(
    keys: Uint8Array,
    values: Uint8Array,
    count?: number,
    flags?: number,
  ): NativeBatchResult;
  lookupBatch(): Promise<NativeLookupBatchResult>;
  deleteBatch(keys: Uint8Array, count?: number): Promise<NativeBatchResult>;
  info(): NativeMapInfo;
  pin(path: string): void;
  close(): void;
}

export interface NativeProgramInfo {
  id: number;
  name: string;
  type: number;
  tag: string;
  runCnt: number;
  runTimeNs: number;
  xlatedLen: number;
  jitedLen: number;
  btfId: number;
  loadTime: number;
  mapIds: number[];
}

export interface NativeTestRunOptions {
  data?: Uint8Array;
  ctx?: Uint8Array;
  repeat?: number;
  dataOut?: boolean | number;
}

export interface NativeTestRunResult {
  retval: number;
  durationNs: number;
  dataOut?: Buffer;
}

export interface NativeProgram {
  readonly fd: number;
  readonly name: string;
  readonly type: number;
  readonly id: number;
  readonly tag: string;
  readonly closed: boolean;
  testRun(options: NativeTestRunOptions): Promise<NativeTestRunResult>;
  testRunEach(packets: Uint8Array[]): Promise<{ retvals: Uint32Array; errnos: Int32Array }>;
  testRunBatch(
    data: Uint8Array,
    starts: Uint32Array,
    lengths: Uint32Array,
  ): Promise<{ retvals: Uint32Array; errnos: Int32Array }>;
  info(): NativeProgramInfo;
  pin(path: string): void;
  close(): void;
}

export interface NativeLinkInfo {
  id: number;
  type: number;
  kind: 'xdp' | 'tcx' | 'tc' | 'link';
  progId: number;
  ifindex?: number;
  attachType?: 'ingress' | 'egress' | 'unknown';
  handle?: number;
  priority?: number;
}

export interface NativeLink {
  readonly fd: number;
  readonly kind: 'xdp' | 'tcx' | 'tc' | 'link';
  readonly name: string;
  readonly id: number;
  readonly closed: boolean;
  update(next: NativeProgram, expectedOld?: NativeProgram | null): void;
  detach(): void;
  info(): NativeLinkInfo;
  pin(path: string): void;
  close(): void;
}

export interface NativeObjectProgram {
  name: string;
  section: string;
  type: number;
  expectedAttachType: number;
  autoload: boolean;
  insnCount: number;
}

export interface NativeObjectMap {
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  internal: boolean;
  pinPath: string | null;
}

export interface NativeBpfObject {
  readonly name: string;
  readonly loaded: boolean;
  readonly closed: boolean;
  programs(): NativeObjectProgram[];
  maps(): NativeObjectMap[];
  setMaxEntries(map: string, maxEntries: number): void;
  setPinPath(map: string, path: string | null): void;
  setAutoload(program: string, autoload: boolean): void;
  load(): void;
  map(name: string): NativeMap;
  program(name: string): NativeProgram;
  close(): void;
}

export interface NativeStats {
  readonly closed: boolean;
  close(): void;
}

export interface NativeCreateMapOptions {
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags?: number;
  name?: string;
  innerMap?: NativeMap;
}

export interface NativeRelocation {
  insnIndex: number;
  map?: NativeMap;
  mapFd?: number;
}

export interface NativeLoadProgramOptions {
  type: number;
  insns: Uint8Array;
  name?: string;
  license?: string;
  expectedAttachType?: number;
  relocations?: NativeRelocation[];
}

export type NativePinned =
  | { kind: 'map'; handle: NativeMap }
  | { kind: 'program'; handle: NativeProgram }
  | { kind: 'link'; handle: NativeLink };

export interface NativeAddon {
  createMap(options: NativeCreateMapOptions): NativeMap;
  loadProgram(options: NativeLoadProgramOptions): NativeProgram;
  openObject(source: string | Uint8Array, name?: string): NativeBpfObject;
  attachXdp(
    program: NativeProgram,
    ifindex: number,
    mode?: 'auto' | 'native' | 'generic',
  ): NativeLink;
  attachTc(
    program: NativeProgram,
    ifindex: number,
    direction: 'ingress' | 'egress',
    mode?: 'auto' | 'tcx' | 'legacy',
    /** cls_bpf priority, legacy mode only; libbpf refuses more than 65535. */
    priority?: number,
  ): NativeLink;
  openPinned(path: string): NativePinned;
  unpin(path: string): void;
  getById(kind: 'map', id: number): NativeMap;
  getById(kind: 'program', id: number): NativeProgram;
  getById(kind: 'link', id: number): NativeLink;
  enableStats(): NativeStats;
  mountBpffs(path: string): boolean;
  isBpffs(path: string): boolean;
  runInNetns<T>(name: string, fn: () => T): T;
  ifNameToIndex(name: string): number;
  /** The device's name, or null where no device has that ifindex. */
  ifIndexToName(index: number): string | null;
  possibleCpus(): number;
  libbpfLog(lines?: number): string[];
  setErrorClasses(classes: Record<string, unknown>): void;
  Map: unknown;
  Program: unknown;
  Link: unknown;
  BpfObject: unknown;
  Stats: unknown;
}

/** The directory holding package.json, found by walking up from this file (works from source and dist/). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const parent = dirname(dir);
    if (parent === dir)
      throw new Error(`cannot find package.json above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

/** Path of the built addon. */
export const addonPath = join(packageRoot(), 'bpf', 'addon', 'build', 'Release', 'sluice_bpf.node');

function loadAddon(): NativeAddon {
  const require = createRequire(import.meta.url);
  let addon: NativeAddon;
  try {
    addon = require(addonPath) as NativeAddon;
  } catch (error: unknown) {
    throw new Error(
      `load the sluice BPF addon from "${addonPath}": run "npm run build:addon" first`,
      {
        cause: error,
      },
    );
  }
  addon.setErrorClasses({
    SyscallError,
    VerifierError,
    InvalidArgumentError,
    InvalidStateError,
    ClosedError,
    NotSupportedError,
  });
  return addon;
}

/** The native binding; every call validates its arguments and throws only bpf/errors.ts classes. */
export const native: NativeAddon = loadAddon();
