// BpfProgram: load from raw eBPF instructions, BPF_PROG_TEST_RUN, info, and BPF run-time statistics.
import { native, type NativeProgram, type NativeStats } from './addon/index.js';
import { KernelHandle } from './handle.js';
import { InvalidArgumentError } from './errors.js';
import { PROGRAM_TYPES, programTypeName, type ProgramType } from './kinds.js';
import type { BpfMap } from './map.js';

/** Program types loadable from raw instructions. */
export type RawProgramType = 'xdp' | 'sched_cls' | 'socket_filter';

/** Patch the BPF_LD_IMM64 at `insnIndex` to load a map (src_reg = BPF_PSEUDO_MAP_FD). */
export interface MapRelocation {
  insnIndex: number;
  /** The map to reference; or give `mapFd`. */
  map?: BpfMap;
  mapFd?: number;
}

export interface ProgramSpec {
  type: RawProgramType;
  /** 8-byte struct bpf_insn, back to back. */
  insns: Uint8Array;
  /** At most 15 characters of [A-Za-z0-9_.]. */
  name?: string;
  /** Default "GPL". */
  license?: string;
  /** BPF_* attach type number, where the program type needs one. */
  expectedAttachType?: number;
  relocations?: MapRelocation[];
}

export interface TestRunOptions {
  /** The packet (XDP: from the Ethernet header; at least 14 bytes). */
  data?: Uint8Array;
  /** struct xdp_md / struct __sk_buff to start with. */
  ctx?: Uint8Array;
  /** Runs; durationNs is the average. Default 1. */
  repeat?: number;
  /** true: return the packet after the run; a number: the most bytes to return. */
  dataOut?: boolean | number;
}

export interface TestRunResult {
  /** The program's return value (XDP_PASS = 2, TC_ACT_SHOT = 2, …). */
  retval: number;
  /** Average run time in ns. */
  durationNs: number;
  /** The packet after the run, when asked for. */
  dataOut?: Buffer;
}

export interface ProgramInfo {
  id: number;
  name: string;
  type: ProgramType | `type_${number}`;
  /** 16 hex digits. */
  tag: string;
  /** Filled while statistics are on (enableStats()). */
  runCnt: number;
  runTimeNs: number;
  xlatedLen: number;
  jitedLen: number;
  btfId: number;
  loadTime: number;
  mapIds: number[];
}

/**
 * A loaded BPF program, owning one file descriptor. Created by loadProgram(), BpfObject.program(),
 * openPinned() or getProgramById(); close() releases it (the finalizer does too, later).
 */
export class BpfProgram extends KernelHandle<NativeProgram> {
  get name(): string {
    return this.native.name;
  }
  get type(): ProgramType | `type_${number}` {
    return programTypeName(this.native.type);
  }
  get tag(): string {
    return this.native.tag;
  }
  /**
   * Runs the program once or `repeat` times over `data` in the kernel (BPF_PROG_TEST_RUN), on a
   * worker thread. Rejects with SyscallError (EINVAL for a packet the hook does not accept).
   */
  async testRun(options: TestRunOptions): Promise<TestRunResult> {
    return await this.native.testRun(options);
  }

  /**
   * Runs the program once over each packet, in one worker thread, and returns each run's return
   * value; `errnos[i]` is non-zero (and `retvals[i]` 0) where the kernel refused packet i, e.g.
   * EINVAL for one shorter than an Ethernet header. Throws InvalidArgumentError for a non-array.
   */
  async testRunEach(packets: Uint8Array[]): Promise<{ retvals: Uint32Array; errnos: Int32Array }> {
    return await this.native.testRunEach(packets);
  }

  /**
   * testRunEach() over packets given as ranges of one buffer: packet i is
   * `data[starts[i], starts[i] + lengths[i])` (a capture file held in memory, unsliced). The
   * buffer is copied once. Throws InvalidArgumentError for mismatched arrays or a range past the
   * end of `data`.
   */
  async testRunBatch(
    data: Uint8Array,
    starts: Uint32Array,
    lengths: Uint32Array,
  ): Promise<{ retvals: Uint32Array; errnos: Int32Array }> {
    return await this.native.testRunBatch(data, starts, lengths);
  }

  /** The program as the kernel describes it now (run counters need enableStats()). */
  info(): ProgramInfo {
    const info = this.native.info();
    return { ...info, type: programTypeName(info.type) };
  }
}

/**
 * Loads a program from raw instructions. Throws VerifierError with the verifier's log when the
 * kernel rejects it, InvalidArgumentError for a bad instruction buffer or relocation, SyscallError
 * otherwise (EPERM without CAP_BPF).
 */
export function loadProgram(spec: ProgramSpec): BpfProgram {
  const type = (PROGRAM_TYPES as Record<string, number>)[spec.type];
  if (spec.type !== 'xdp' && spec.type !== 'sched_cls' && spec.type !== 'socket_filter') {
    throw new InvalidArgumentError(
      `load program${spec.name ? ` "${spec.name}"` : ''}: type must be "xdp", "sched_cls" or "socket_filter", got ${JSON.stringify(spec.type)}`,
    );
  }
  return new BpfProgram(
    native.loadProgram({
      type,
      insns: spec.insns,
      name: spec.name,
      license: spec.license,
      expectedAttachType: spec.expectedAttachType,
      relocations: spec.relocations?.map((r) =>
        r.map
          ? { insnIndex: r.insnIndex, map: r.map.native }
          : { insnIndex: r.insnIndex, mapFd: r.mapFd },
      ),
    }),
  );
}

/** Opens the program with kernel id `id`. Throws SyscallError ENOENT if there is none. */
export function getProgramById(id: number): BpfProgram {
  return new BpfProgram(native.getById('program', id));
}

/** Keeps BPF run-time statistics (run_cnt, run_time_ns) on while open. */
export class StatsHandle {
  readonly #native: NativeStats;

  /** @internal Use enableStats(). */
  constructor(handle: NativeStats) {
    this.#native = handle;
  }
  get closed(): boolean {
    return this.#native.closed;
  }
  /** Turns this holder off; statistics stop when no holder is left. Idempotent. */
  close(): void {
    this.#native.close();
  }
}

/**
 * Turns on run-time statistics for all programs until the handle is closed (bpf_enable_stats).
 * Throws NotSupportedError before Linux 5.8.
 */
export function enableStats(): StatsHandle {
  return new StatsHandle(native.enableStats());
}
