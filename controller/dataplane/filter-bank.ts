// The filter bank: one eBPF program, generated at run time, that runs every tcpdump expression of a rule set.
//
// Layout (no clang, no BTF: raw instructions the addon loads with map relocations):
//
//   r6 = ctx; r9 = 0
//   for each filter i:  r1 = r6; <expression i inline, each `exit` turned into a jump past it>;
//                       if r0 == 0 skip; r9 |= 1 << i
//   r0 = &sl_scratch[0]  (bpf_map_lookup_elem; a per-CPU array always has it, and the verifier
//                         inlines the lookup)
//   scratch.fmask = r9; scratch.gen = GEN; scratch.done = 1
//   bpf_tail_call(ctx, sl_progs, SL_PROG_RESUME)
//   return the fallback verdict (the tail call failed: resume_* is missing)
//
// Each expression is bpf/filter's eBPF with the `return` verdict (r0 = 1 match, 0 no match). It is
// inlined rather than called as a bpf-to-bpf subprogram: on CPUs with return-thunk mitigations
// (SRSO, retbleed) every call and return costs 6-9 ns, more than a typical expression. Inlining is
// exact because an expression reads only what it wrote first: its registers (r0, r2-r5, r7, r8; r1
// and, on TC's slow path, r6 hold ctx, which is what the bank keeps there) and its stack (r10 - 72 ..
// r10 - 4; M[] words read before written are zeroed by the expression's own prologue). r9 is never
// touched by an expression.
import type { EbpfContext } from '../../bpf/filter/to-ebpf.js';
import { cbpfToEbpf } from '../../bpf/filter/ebpf.js';
import { compileFilter } from '../../bpf/filter/index.js';
import {
  BPF_ADD,
  BPF_EXIT,
  BPF_JEQ,
  BPF_JMP,
  BPF_LSH,
  BPF_OR,
  R0,
  R1,
  R10,
  R2,
  R3,
  R6,
  R9,
  alu64Imm,
  alu64Reg,
  call,
  decodeEbpf,
  encodeEbpf,
  exit,
  gotol,
  ja,
  jmpImm,
  ldImm64,
  mov64Imm,
  mov64Reg,
  storeImm,
  storeReg,
  type EbpfInsn,
} from '../../bpf/filter/ebpf-insn.js';
import type { BpfMap } from '../../bpf/map.js';
import { loadProgram, type BpfProgram } from '../../bpf/program.js';
import {
  SL_MAX_FILTERS,
  SL_PROG_RESUME,
  SL_SCRATCH_DONE_OFF,
  SL_SCRATCH_FMASK_OFF,
  SL_SCRATCH_GEN_OFF,
  type Gen,
} from './abi.js';

const BPF_FUNC_map_lookup_elem = 1;
const BPF_FUNC_tail_call = 12;
const BPF_PSEUDO_MAP_FD = 1;

/** What the bank needs to be loaded next to a pipeline object. */
export interface FilterBankSpec {
  context: Exclude<EbpfContext, 'socket'>;
  gen: Gen;
  /** Expression per filter bit, in bit order. */
  expressions: readonly string[];
  /** Returned when the tail call into resume_* fails: XDP_PASS (2) or TC_ACT_OK (0). */
  fallback: number;
}

/** The bank's instructions and where the two map references go. */
export interface FilterBankCode {
  insns: Uint8Array;
  scratchAt: number;
  progsAt: number;
}

/**
 * Builds the bank's instructions. Throws what compileFilter throws for an expression that does
 * not compile, and RangeError past SL_MAX_FILTERS expressions.
 */
export function buildFilterBank(spec: FilterBankSpec): FilterBankCode {
  if (spec.expressions.length > SL_MAX_FILTERS) {
    throw new RangeError(`a filter bank holds at most ${SL_MAX_FILTERS} expressions`);
  }
  const expressions = spec.expressions.map((expression) =>
    decodeEbpf(
      cbpfToEbpf(compileFilter(expression), { context: spec.context, verdict: { kind: 'return' } })
        .insns,
    ),
  );

  const main: EbpfInsn[] = [mov64Reg(R6, R1), mov64Imm(R9, 0)];
  expressions.forEach((insns, i) => {
    main.push(mov64Reg(R1, R6));
    const base = main.length;
    const after = base + insns.length;
    insns.forEach((insn, at) => {
      if (insn.code !== (BPF_JMP | BPF_EXIT)) {
        main.push(insn);
        return;
      }
      const off = after - (base + at + 1);
      main.push(off <= 0x7fff ? ja(off) : gotol(off));
    });
    // if r0 == 0 skip the three instructions that set bit i
    main.push(jmpImm(BPF_JEQ, R0, 0, 3));
    main.push(mov64Imm(R2, 1), alu64Imm(BPF_LSH, R2, i), alu64Reg(BPF_OR, R9, R2));
  });
  main.push(storeImm(4, R10, -8, 0), mov64Reg(R2, R10), alu64Imm(BPF_ADD, R2, -8));
  const scratchAt = main.length;
  main.push(...ldImm64(R1, 0n, BPF_PSEUDO_MAP_FD));
  main.push(call(BPF_FUNC_map_lookup_elem));
  main.push(jmpImm(BPF_JEQ, R0, 0, 4));
  main.push(storeReg(8, R0, SL_SCRATCH_FMASK_OFF, R9));
  main.push(storeImm(4, R0, SL_SCRATCH_GEN_OFF, spec.gen));
  main.push(storeImm(4, R0, SL_SCRATCH_DONE_OFF, 1));
  main.push(mov64Reg(R1, R6));
  const progsAt = main.length;
  main.push(...ldImm64(R2, 0n, BPF_PSEUDO_MAP_FD));
  main.push(mov64Imm(R3, SL_PROG_RESUME));
  main.push(call(BPF_FUNC_tail_call));
  main.push(mov64Imm(R0, spec.fallback), exit());
  return { insns: encodeEbpf(main), scratchAt, progsAt };
}

/**
 * Loads the bank for one generation of one pipeline object. Throws VerifierError when the kernel
 * refuses it (with the log), SyscallError otherwise.
 */
export function loadFilterBank(
  spec: FilterBankSpec,
  maps: { scratch: BpfMap; progs: BpfMap },
  expectedAttachType?: number,
): BpfProgram {
  const code = buildFilterBank(spec);
  return loadProgram({
    type: spec.context === 'xdp' ? 'xdp' : 'sched_cls',
    insns: code.insns,
    name: `sl_bank${spec.gen}`,
    expectedAttachType,
    relocations: [
      { insnIndex: code.scratchAt, map: maps.scratch },
      { insnIndex: code.progsAt, map: maps.progs },
    ],
  });
}
