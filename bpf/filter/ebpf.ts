// eBPF backend of the filter compiler: classic BPF (compiled or given as -ddd text) → XDP, TC or socket-filter eBPF.

import type { CbpfInsn } from './cbpf.js';
import { encodeEbpf, decodeEbpf } from './ebpf-insn.js';
import { formatEbpfInsns } from './ebpf-listing.js';
import { FilterLimitError, FilterSyntaxError } from './errors.js';
import { compileFilter } from './index.js';
import { CbpfProgramError, translateCbpf, type EbpfContext, type EbpfVerdict } from './to-ebpf.js';

export type { EbpfContext, EbpfVerdict } from './to-ebpf.js';

/** The most instructions a privileged eBPF program may have (BPF_COMPLEXITY_LIMIT_INSNS). */
export const EBPF_MAX_INSNS = 1_000_000;

/** Most pending branches the verifier keeps on one path (BPF_COMPLEXITY_LIMIT_JMP_SEQ). */
export const EBPF_MAX_BRANCH_DEPTH = 8192;

/** A compiled eBPF filter: plain data, ready for the addon to load as the program type of `context`. */
export interface EbpfProgramSpec {
  context: EbpfContext;
  /** Raw instructions, 8 bytes each, little-endian `struct bpf_insn`. */
  insns: Uint8Array;
  insnCount: number;
  /** Direct-packet-access bounds checks (comparisons with data_end) in the program; 0 for socket filters. */
  boundsChecks: number;
}

/** Options of `cbpfToEbpf` and `compileFilterToEbpf`. */
export interface EbpfOptions {
  context: EbpfContext;
  verdict: EbpfVerdict;
}

/**
 * Translate a classic BPF program into eBPF with the same verdicts (libpcap's bpf_filter semantics).
 * `xdp` and `tc` read the packet directly (tc falls back to bpf_skb_load_bytes for nonlinear skbs),
 * `socket` through bpf_skb_load_bytes. Kernel needs: Linux >= 5.1 (32-bit jumps); >= 6.6 when the
 * program exceeds 32767 instructions (`gotol`); >= 6.9 for libpcap's `protochain` loops (`may_goto`).
 * XDP programs that read `len` subtract packet pointers, which the verifier allows with CAP_PERFMON.
 * Throws `FilterSyntaxError` for a malformed classic program, `FilterLimitError` when the eBPF program
 * would exceed 1,000,000 instructions or have a path with 8192 or more conditional jumps (the verifier
 * gives up on those), `RangeError` for verdict values outside 32 bits.
 */
export function cbpfToEbpf(cbpf: CbpfInsn[], options: EbpfOptions): EbpfProgramSpec {
  let translation;
  try {
    translation = translateCbpf(cbpf, options);
  } catch (error: unknown) {
    if (error instanceof CbpfProgramError) {
      throw new FilterSyntaxError(
        `translate classic BPF to eBPF: ${error.message}`,
        { expression: '', offset: 0, length: 0 },
        { cause: error },
      );
    }
    throw error;
  }
  if (translation.insns.length > EBPF_MAX_INSNS) {
    throw new FilterLimitError(
      `translate classic BPF to eBPF: ${translation.insns.length} instructions, more than the kernel's ${EBPF_MAX_INSNS}`,
      { expression: '', offset: 0, length: 0 },
    );
  }
  if (translation.branchDepth >= EBPF_MAX_BRANCH_DEPTH) {
    throw new FilterLimitError(
      `translate classic BPF to eBPF: a path through the program has ${translation.branchDepth} conditional jumps, ` +
        `more than the verifier's ${EBPF_MAX_BRANCH_DEPTH - 1}`,
      { expression: '', offset: 0, length: 0 },
    );
  }
  return {
    context: options.context,
    insns: encodeEbpf(translation.insns),
    insnCount: translation.insns.length,
    boundsChecks: translation.boundsChecks,
  };
}

/**
 * Compile a pcap-filter(7) expression (Ethernet link type) to eBPF: `compileFilter`, then `cbpfToEbpf`.
 * Throws what `compileFilter` throws (`FilterSyntaxError`, `FilterUnsupportedError`, `FilterLimitError`).
 */
export function compileFilterToEbpf(expression: string, options: EbpfOptions): EbpfProgramSpec {
  return cbpfToEbpf(compileFilter(expression), options);
}

/** The program as a bpftool-style listing (`   0: (61) r2 = *(u32 *)(r1 +0)`), one instruction a line. */
export function formatEbpfListing(spec: EbpfProgramSpec): string {
  return formatEbpfInsns(decodeEbpf(spec.insns));
}
