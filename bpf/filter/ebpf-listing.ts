// Human-readable eBPF listings in the layout of `bpftool prog dump xlated` (the kernel's disasm.c).

import {
  BPF_ABS,
  BPF_ALU,
  BPF_ALU64,
  BPF_CALL,
  BPF_DW,
  BPF_END,
  BPF_EXIT,
  BPF_IMM,
  BPF_IND,
  BPF_JCOND,
  BPF_JA,
  BPF_JMP,
  BPF_JMP32,
  BPF_LD,
  BPF_LDX,
  BPF_MEM,
  BPF_NEG,
  BPF_ST,
  BPF_STX,
  BPF_TO_BE,
  BPF_X,
  HELPER_NAMES,
  type EbpfInsn,
  insnClass,
  isWideInsn,
} from './ebpf-insn.js';

const aluOps = [
  '+=',
  '-=',
  '*=',
  '/=',
  '|=',
  '&=',
  '<<=',
  '>>=',
  'neg',
  '%=',
  '^=',
  '=',
  's>>=',
  'endian',
];
const jmpOps = [
  'jmp',
  '==',
  '>',
  '>=',
  '&',
  '!=',
  's>',
  's>=',
  'call',
  'exit',
  '<',
  '<=',
  's<',
  's<=',
];
const sizes = ['u32', 'u16', 'u8', 'u64'];

function hex(code: number): string {
  return code.toString(16).padStart(2, '0');
}

function signed(n: number): string {
  return n < 0 ? `${n}` : `+${n}`;
}

/**
 * Format one instruction the way the kernel's `print_bpf_insn` does, without the index:
 * `(61) r2 = *(u32 *)(r1 +4)`. `next` is the following slot, needed for a two-slot `lddw`.
 */
export function formatEbpfInsn(i: EbpfInsn, next?: EbpfInsn): string {
  const code = `(${hex(i.code)})`;
  const cls = insnClass(i.code);
  const op = i.code & 0xf0;
  if (cls === BPF_ALU || cls === BPF_ALU64) {
    const r = cls === BPF_ALU ? 'w' : 'r';
    if (op === BPF_END) {
      if (cls === BPF_ALU64) return `${code} r${i.dst} = bswap${i.imm} r${i.dst}`;
      return `${code} r${i.dst} = ${(i.code & BPF_TO_BE) !== 0 ? 'be' : 'le'}${i.imm} r${i.dst}`;
    }
    if (op === BPF_NEG) return `${code} ${r}${i.dst} = -${r}${i.dst}`;
    const name = aluOps[op >> 4] ?? `BUG_alu_${hex(i.code)}`;
    if ((i.code & BPF_X) !== 0) return `${code} ${r}${i.dst} ${name} ${r}${i.src}`;
    return `${code} ${r}${i.dst} ${name} ${i.imm}`;
  }
  const size = sizes[(i.code & 0x18) >> 3];
  const mode = i.code & 0xe0;
  if (cls === BPF_STX) {
    if (mode !== BPF_MEM) return `BUG_stx_${hex(i.code)}`;
    return `${code} *(${size} *)(r${i.dst} ${signed(i.off)}) = r${i.src}`;
  }
  if (cls === BPF_ST) {
    if (mode !== BPF_MEM) return `BUG_st_${hex(i.code)}`;
    return `${code} *(${size} *)(r${i.dst} ${signed(i.off)}) = ${i.imm}`;
  }
  if (cls === BPF_LDX) {
    if (mode !== BPF_MEM) return `BUG_ldx_${hex(i.code)}`;
    return `${code} r${i.dst} = *(${size} *)(r${i.src} ${signed(i.off)})`;
  }
  if (cls === BPF_LD) {
    if (mode === BPF_ABS) return `${code} r0 = *(${size} *)skb[${i.imm}]`;
    if (mode === BPF_IND) return `${code} r0 = *(${size} *)skb[r${i.src} + ${i.imm}]`;
    if (mode === BPF_IMM && (i.code & 0x18) === BPF_DW) {
      const value = (BigInt(next?.imm ?? 0) << 32n) | BigInt(i.imm >>> 0);
      return `${code} r${i.dst} = 0x${BigInt.asUintN(64, value).toString(16)}`;
    }
    return `BUG_ld_${hex(i.code)}`;
  }
  // BPF_JMP / BPF_JMP32
  const r = cls === BPF_JMP32 ? 'w' : 'r';
  if (op === BPF_CALL) return `${code} call ${HELPER_NAMES[i.imm] ?? 'unknown'}#${i.imm}`;
  if (i.code === (BPF_JMP | BPF_JA)) return `${code} goto pc${signed(i.off)}`;
  if (i.code === (BPF_JMP32 | BPF_JA)) return `${code} gotol pc${signed(i.imm)}`;
  if (i.code === (BPF_JMP | BPF_EXIT)) return `${code} exit`;
  if (i.code === (BPF_JMP | BPF_JCOND))
    return i.src === 0 ? `${code} may_goto pc${signed(i.off)}` : `BUG_jcond_${hex(i.code)}`;
  const name = jmpOps[op >> 4] ?? `BUG_jmp_${hex(i.code)}`;
  if ((i.code & BPF_X) !== 0)
    return `${code} if ${r}${i.dst} ${name} ${r}${i.src} goto pc${signed(i.off)}`;
  return `${code} if ${r}${i.dst} ${name} 0x${(i.imm >>> 0).toString(16)} goto pc${signed(i.off)}`;
}

/**
 * Format a whole program, one instruction a line, numbered like bpftool (`   0: (bf) r6 = r1`).
 * The second slot of a `lddw` gets no line of its own but keeps its index.
 */
export function formatEbpfInsns(insns: readonly EbpfInsn[]): string {
  const lines: string[] = [];
  for (let n = 0; n < insns.length; n++) {
    const i = insns[n];
    lines.push(`${String(n).padStart(4)}: ${formatEbpfInsn(i, insns[n + 1])}`);
    if (isWideInsn(i)) n++;
  }
  return lines.join('\n') + (lines.length > 0 ? '\n' : '');
}
