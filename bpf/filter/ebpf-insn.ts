// eBPF instruction encoding: opcode fields, registers, instruction builders and the 8-byte wire format.

/** One eBPF instruction, as the kernel's `struct bpf_insn` holds it (a `lddw` takes two). */
export interface EbpfInsn {
  /** Opcode byte: class | size/op | mode/source. */
  code: number;
  /** Destination register, 0–10. */
  dst: number;
  /** Source register, 0–10 (or a pseudo value for `lddw`/`call`). */
  src: number;
  /** Signed 16-bit offset: memory displacement or jump distance. */
  off: number;
  /** Signed 32-bit immediate. */
  imm: number;
}

/** Instruction classes (`BPF_CLASS`). */
export const BPF_LD = 0x00;
export const BPF_LDX = 0x01;
export const BPF_ST = 0x02;
export const BPF_STX = 0x03;
export const BPF_ALU = 0x04;
export const BPF_JMP = 0x05;
export const BPF_JMP32 = 0x06;
export const BPF_ALU64 = 0x07;

/** Memory access sizes (`BPF_SIZE`). */
export const BPF_W = 0x00;
export const BPF_H = 0x08;
export const BPF_B = 0x10;
export const BPF_DW = 0x18;

/** Memory access modes (`BPF_MODE`). */
export const BPF_IMM = 0x00;
export const BPF_ABS = 0x20;
export const BPF_IND = 0x40;
export const BPF_MEM = 0x60;
export const BPF_MEMSX = 0x80;
export const BPF_ATOMIC = 0xc0;

/** Operand source (`BPF_SRC`). */
export const BPF_K = 0x00;
export const BPF_X = 0x08;

/** ALU operations (`BPF_OP` for ALU/ALU64). */
export const BPF_ADD = 0x00;
export const BPF_SUB = 0x10;
export const BPF_MUL = 0x20;
export const BPF_DIV = 0x30;
export const BPF_OR = 0x40;
export const BPF_AND = 0x50;
export const BPF_LSH = 0x60;
export const BPF_RSH = 0x70;
export const BPF_NEG = 0x80;
export const BPF_MOD = 0x90;
export const BPF_XOR = 0xa0;
export const BPF_MOV = 0xb0;
export const BPF_ARSH = 0xc0;
export const BPF_END = 0xd0;

/** Byte-swap direction for `BPF_END` (shares the `BPF_SRC` bit). */
export const BPF_TO_LE = 0x00;
export const BPF_TO_BE = 0x08;

/** Jump operations (`BPF_OP` for JMP/JMP32). */
export const BPF_JA = 0x00;
export const BPF_JEQ = 0x10;
export const BPF_JGT = 0x20;
export const BPF_JGE = 0x30;
export const BPF_JSET = 0x40;
export const BPF_JNE = 0x50;
export const BPF_JSGT = 0x60;
export const BPF_JSGE = 0x70;
export const BPF_CALL = 0x80;
export const BPF_EXIT = 0x90;
export const BPF_JLT = 0xa0;
export const BPF_JLE = 0xb0;
export const BPF_JSLT = 0xc0;
export const BPF_JSLE = 0xd0;
/** Pseudo-conditional jump (`BPF_JMP | BPF_JCOND`); with src `BPF_MAY_GOTO` it is `may_goto` (Linux ≥ 6.9). */
export const BPF_JCOND = 0xe0;
export const BPF_MAY_GOTO = 0;

/** Registers: r0 return value, r1–r5 arguments (clobbered by calls), r6–r9 callee-saved, r10 frame pointer. */
export const R0 = 0;
export const R1 = 1;
export const R2 = 2;
export const R3 = 3;
export const R4 = 4;
export const R5 = 5;
export const R6 = 6;
export const R7 = 7;
export const R8 = 8;
export const R9 = 9;
export const R10 = 10;

/** `src` value of a `lddw` that loads a map by file descriptor. */
export const BPF_PSEUDO_MAP_FD = 1;

/** Helper function ids used by the filter backend (`enum bpf_func_id`). */
export const BPF_FUNC_skb_load_bytes = 26;
export const BPF_FUNC_skb_pull_data = 39;

/** Helper names by id, for listings (bpftool prints `call bpf_skb_load_bytes#26`). */
export const HELPER_NAMES: Readonly<Record<number, string>> = {
  1: 'bpf_map_lookup_elem',
  2: 'bpf_map_update_elem',
  3: 'bpf_map_delete_elem',
  5: 'bpf_ktime_get_ns',
  6: 'bpf_trace_printk',
  12: 'bpf_tail_call',
  26: 'bpf_skb_load_bytes',
  39: 'bpf_skb_pull_data',
  68: 'bpf_skb_load_bytes_relative',
  188: 'bpf_xdp_get_buff_len',
};

/** Byte offsets of `struct xdp_md` fields read by the backend. */
export const XDP_MD_DATA = 0;
export const XDP_MD_DATA_END = 4;

/** Byte offsets of `struct __sk_buff` fields read by the backend. */
export const SK_BUFF_LEN = 0;
export const SK_BUFF_DATA = 76;
export const SK_BUFF_DATA_END = 80;

/** Size in bytes of one encoded instruction. */
export const EBPF_INSN_SIZE = 8;

const sizeCodes: Readonly<Record<1 | 2 | 4 | 8, number>> = {
  1: BPF_B,
  2: BPF_H,
  4: BPF_W,
  8: BPF_DW,
};

function insn(code: number, dst: number, src: number, off: number, imm: number): EbpfInsn {
  return { code, dst, src, off, imm: imm | 0 };
}

/** `dst = src` on 64 bits. */
export function mov64Reg(dst: number, src: number): EbpfInsn {
  return insn(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0);
}

/** `dst = imm` on 64 bits (the immediate is sign-extended). */
export function mov64Imm(dst: number, imm: number): EbpfInsn {
  return insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm);
}

/** `wdst = wsrc` (32 bits, upper half zeroed). */
export function mov32Reg(dst: number, src: number): EbpfInsn {
  return insn(BPF_ALU | BPF_MOV | BPF_X, dst, src, 0, 0);
}

/** `wdst = imm` (32 bits, upper half zeroed); any u32 or s32 value. */
export function mov32Imm(dst: number, imm: number): EbpfInsn {
  return insn(BPF_ALU | BPF_MOV | BPF_K, dst, 0, 0, imm);
}

/** 64-bit ALU operation with a register source (`op` is `BPF_ADD`, `BPF_SUB`, ...). */
export function alu64Reg(op: number, dst: number, src: number): EbpfInsn {
  return insn(BPF_ALU64 | op | BPF_X, dst, src, 0, 0);
}

/** 64-bit ALU operation with an immediate (sign-extended). */
export function alu64Imm(op: number, dst: number, imm: number): EbpfInsn {
  return insn(BPF_ALU64 | op | BPF_K, dst, 0, 0, imm);
}

/** 32-bit ALU operation with a register source. */
export function alu32Reg(op: number, dst: number, src: number): EbpfInsn {
  return insn(BPF_ALU | op | BPF_X, dst, src, 0, 0);
}

/** 32-bit ALU operation with an immediate. */
export function alu32Imm(op: number, dst: number, imm: number): EbpfInsn {
  return insn(BPF_ALU | op | BPF_K, dst, 0, 0, imm);
}

/** `wdst = -wdst`. */
export function neg32(dst: number): EbpfInsn {
  return insn(BPF_ALU | BPF_NEG | BPF_K, dst, 0, 0, 0);
}

/** `dst = be16/be32 dst`: convert from network order (a byte swap on little-endian hosts), zero-extending. */
export function toBe(dst: number, bits: 16 | 32 | 64): EbpfInsn {
  return insn(BPF_ALU | BPF_END | BPF_TO_BE, dst, 0, 0, bits);
}

/** `dst = *(size *)(src + off)`, zero-extended. */
export function loadMem(size: 1 | 2 | 4 | 8, dst: number, src: number, off: number): EbpfInsn {
  return insn(BPF_LDX | BPF_MEM | sizeCodes[size], dst, src, off, 0);
}

/** `*(size *)(dst + off) = src`. */
export function storeReg(size: 1 | 2 | 4 | 8, dst: number, off: number, src: number): EbpfInsn {
  return insn(BPF_STX | BPF_MEM | sizeCodes[size], dst, src, off, 0);
}

/** `*(size *)(dst + off) = imm`. */
export function storeImm(size: 1 | 2 | 4 | 8, dst: number, off: number, imm: number): EbpfInsn {
  return insn(BPF_ST | BPF_MEM | sizeCodes[size], dst, 0, off, imm);
}

/** Conditional jump on 64 bits against an immediate (sign-extended); `off` counts instructions after this one. */
export function jmpImm(op: number, dst: number, imm: number, off: number): EbpfInsn {
  return insn(BPF_JMP | op | BPF_K, dst, 0, off, imm);
}

/** Conditional jump on 64 bits against a register. */
export function jmpReg(op: number, dst: number, src: number, off: number): EbpfInsn {
  return insn(BPF_JMP | op | BPF_X, dst, src, off, 0);
}

/** Conditional jump on the low 32 bits against an immediate (compared as 32 bits, no sign extension). */
export function jmp32Imm(op: number, dst: number, imm: number, off: number): EbpfInsn {
  return insn(BPF_JMP32 | op | BPF_K, dst, 0, off, imm);
}

/** Conditional jump on the low 32 bits against a register. */
export function jmp32Reg(op: number, dst: number, src: number, off: number): EbpfInsn {
  return insn(BPF_JMP32 | op | BPF_X, dst, src, off, 0);
}

/** `goto pc+off` with a 16-bit offset. */
export function ja(off: number): EbpfInsn {
  return insn(BPF_JMP | BPF_JA, 0, 0, off, 0);
}

/** `gotol pc+imm` with a 32-bit offset (BPF ISA v4; Linux ≥ 6.6). */
export function gotol(imm: number): EbpfInsn {
  return insn(BPF_JMP32 | BPF_JA, 0, 0, 0, imm);
}

/**
 * `may_goto pc+off`: falls through while the kernel's hidden loop budget lasts, jumps once it is spent.
 * Lets the verifier prove a loop terminates without unrolling it (Linux ≥ 6.9).
 */
export function mayGoto(off: number): EbpfInsn {
  return insn(BPF_JMP | BPF_JCOND | BPF_K, 0, BPF_MAY_GOTO, off, 0);
}

/** `call helper#id`. */
export function call(helper: number): EbpfInsn {
  return insn(BPF_JMP | BPF_CALL, 0, 0, 0, helper);
}

/** `exit`: return r0. */
export function exit(): EbpfInsn {
  return insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
}

/** `dst = imm64` (`lddw`, two instruction slots). */
export function ldImm64(dst: number, value: bigint, src = 0): [EbpfInsn, EbpfInsn] {
  const v = BigInt.asUintN(64, value);
  const lo = Number(v & 0xffffffffn) | 0;
  const hi = Number(v >> 32n) | 0;
  return [insn(BPF_LD | BPF_DW | BPF_IMM, dst, src, 0, lo), insn(0, 0, 0, 0, hi)];
}

/** True for the first slot of a two-slot `lddw`. */
export function isWideInsn(i: EbpfInsn): boolean {
  return i.code === (BPF_LD | BPF_DW | BPF_IMM);
}

/** Instruction class of an opcode. */
export function insnClass(code: number): number {
  return code & 0x07;
}

/** True for a jump-class instruction that may transfer control (`ja`, `gotol`, conditionals; not call/exit). */
export function isJump(i: EbpfInsn): boolean {
  const cls = insnClass(i.code);
  if (cls !== BPF_JMP && cls !== BPF_JMP32) return false;
  const op = i.code & 0xf0;
  return op !== BPF_CALL && op !== BPF_EXIT;
}

/**
 * Encode instructions into the kernel's 8-byte `struct bpf_insn` layout, little-endian (x86-64, arm64):
 * code u8, dst_reg:4 (low nibble) src_reg:4 (high nibble), off s16, imm s32.
 * Throws `RangeError` when a field does not fit.
 */
export function encodeEbpf(insns: readonly EbpfInsn[]): Uint8Array {
  const out = new Uint8Array(insns.length * EBPF_INSN_SIZE);
  const view = new DataView(out.buffer);
  insns.forEach((i, n) => {
    if (i.code < 0 || i.code > 0xff || i.dst < 0 || i.dst > 15 || i.src < 0 || i.src > 15) {
      throw new RangeError(`encode eBPF instruction ${n}: opcode or register out of range`);
    }
    if (i.off < -0x8000 || i.off > 0x7fff) {
      throw new RangeError(`encode eBPF instruction ${n}: offset ${i.off} does not fit in 16 bits`);
    }
    if (i.imm < -0x80000000 || i.imm > 0xffffffff) {
      throw new RangeError(
        `encode eBPF instruction ${n}: immediate ${i.imm} does not fit in 32 bits`,
      );
    }
    const base = n * EBPF_INSN_SIZE;
    view.setUint8(base, i.code);
    view.setUint8(base + 1, (i.src << 4) | i.dst);
    view.setInt16(base + 2, i.off, true);
    view.setInt32(base + 4, i.imm | 0, true);
  });
  return out;
}

/** Decode the 8-byte layout written by `encodeEbpf`. Throws `RangeError` if the length is not a multiple of 8. */
export function decodeEbpf(bytes: Uint8Array): EbpfInsn[] {
  if (bytes.length % EBPF_INSN_SIZE !== 0) {
    throw new RangeError(
      `decode eBPF: ${bytes.length} bytes is not a multiple of ${EBPF_INSN_SIZE}`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: EbpfInsn[] = [];
  for (let base = 0; base < bytes.length; base += EBPF_INSN_SIZE) {
    const regs = view.getUint8(base + 1);
    out.push({
      code: view.getUint8(base),
      dst: regs & 0x0f,
      src: regs >> 4,
      off: view.getInt16(base + 2, true),
      imm: view.getInt32(base + 4, true),
    });
  }
  return out;
}
