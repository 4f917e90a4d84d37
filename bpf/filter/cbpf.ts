// Classic BPF instruction shape and opcode constants (linux/filter.h, pcap/bpf.h).

/** One classic BPF instruction, as in `struct sock_filter`. */
export interface CbpfInsn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

// Instruction classes.
export const BPF_LD = 0x00;
export const BPF_LDX = 0x01;
export const BPF_ST = 0x02;
export const BPF_STX = 0x03;
export const BPF_ALU = 0x04;
export const BPF_JMP = 0x05;
export const BPF_RET = 0x06;
export const BPF_MISC = 0x07;

// Load sizes.
export const BPF_W = 0x00;
export const BPF_H = 0x08;
export const BPF_B = 0x10;

// Load modes.
export const BPF_IMM = 0x00;
export const BPF_ABS = 0x20;
export const BPF_IND = 0x40;
export const BPF_MEM = 0x60;
export const BPF_LEN = 0x80;
export const BPF_MSH = 0xa0;

// ALU and jump operations.
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

export const BPF_JA = 0x00;
export const BPF_JEQ = 0x10;
export const BPF_JGT = 0x20;
export const BPF_JGE = 0x30;
export const BPF_JSET = 0x40;

// Operand sources.
export const BPF_K = 0x00;
export const BPF_X = 0x08;
export const BPF_A = 0x10;

// Misc operations.
export const BPF_TAX = 0x00;
export const BPF_TXA = 0x80;

/** The kernel's limit on a classic BPF program (BPF_MAXINSNS). */
export const BPF_MAXINSNS = 4096;
/** Scratch memory words (BPF_MEMWORDS). */
export const BPF_MEMWORDS = 16;

export const bpfClass = (code: number): number => code & 0x07;
export const bpfSize = (code: number): number => code & 0x18;
export const bpfMode = (code: number): number => code & 0xe0;
export const bpfOp = (code: number): number => code & 0xf0;
export const bpfSrc = (code: number): number => code & 0x08;
export const bpfRval = (code: number): number => code & 0x18;
export const bpfMiscOp = (code: number): number => code & 0xf8;

const VALID_CODES: ReadonlySet<number> = new Set([
  BPF_RET | BPF_K,
  BPF_RET | BPF_A,
  BPF_RET | BPF_X,
  BPF_LD | BPF_W | BPF_ABS,
  BPF_LD | BPF_H | BPF_ABS,
  BPF_LD | BPF_B | BPF_ABS,
  BPF_LD | BPF_W | BPF_LEN,
  BPF_LD | BPF_W | BPF_IND,
  BPF_LD | BPF_H | BPF_IND,
  BPF_LD | BPF_B | BPF_IND,
  BPF_LD | BPF_IMM,
  BPF_LDX | BPF_IMM,
  BPF_LDX | BPF_W | BPF_LEN,
  BPF_LDX | BPF_MSH | BPF_B,
  BPF_LD | BPF_MEM,
  BPF_LDX | BPF_MEM,
  BPF_ST,
  BPF_STX,
  BPF_JMP | BPF_JA,
  ...[BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET].flatMap((op) => [
    BPF_JMP | op | BPF_K,
    BPF_JMP | op | BPF_X,
  ]),
  ...[
    BPF_ADD,
    BPF_SUB,
    BPF_MUL,
    BPF_DIV,
    BPF_MOD,
    BPF_AND,
    BPF_OR,
    BPF_XOR,
    BPF_LSH,
    BPF_RSH,
  ].flatMap((op) => [BPF_ALU | op | BPF_K, BPF_ALU | op | BPF_X]),
  BPF_ALU | BPF_NEG,
  BPF_MISC | BPF_TAX,
  BPF_MISC | BPF_TXA,
]);

/** Says whether `code` is an opcode the classic BPF interpreter knows. */
export function isKnownOpcode(code: number): boolean {
  return VALID_CODES.has(code);
}

/**
 * The 32-bit result of the binary ALU operation `op` (BPF_ADD … BPF_XOR) on `a` and `b`, as
 * libpcap's bpf_filter computes it: shifts by 32 or more give 0. Returns null for a division or
 * modulus by zero, which the interpreter turns into "no match" and the optimizer into an error;
 * undefined for an operation that is not binary (BPF_NEG) or not known.
 */
export function evalAlu(op: number, a: number, b: number): number | null | undefined {
  a >>>= 0;
  b >>>= 0;
  switch (op) {
    case BPF_ADD:
      return (a + b) >>> 0;
    case BPF_SUB:
      return (a - b) >>> 0;
    case BPF_MUL:
      return Math.imul(a, b) >>> 0;
    case BPF_DIV:
      return b === 0 ? null : Math.floor(a / b) >>> 0;
    case BPF_MOD:
      return b === 0 ? null : (a % b) >>> 0;
    case BPF_AND:
      return (a & b) >>> 0;
    case BPF_OR:
      return (a | b) >>> 0;
    case BPF_XOR:
      return (a ^ b) >>> 0;
    case BPF_LSH:
      return b < 32 ? (a << b) >>> 0 : 0;
    case BPF_RSH:
      return b < 32 ? a >>> b : 0;
    default:
      return undefined;
  }
}
