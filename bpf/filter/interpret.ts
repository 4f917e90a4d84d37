// Classic BPF interpreter with the semantics of libpcap's bpf_filter and the Linux socket filter.
import {
  BPF_ABS,
  BPF_ALU,
  BPF_B,
  BPF_H,
  BPF_IMM,
  BPF_IND,
  BPF_JA,
  BPF_JEQ,
  BPF_JGE,
  BPF_JGT,
  BPF_JMP,
  BPF_JSET,
  BPF_K,
  BPF_LD,
  BPF_LDX,
  BPF_LEN,
  BPF_MEM,
  BPF_MISC,
  BPF_MSH,
  BPF_NEG,
  BPF_RET,
  BPF_ST,
  BPF_STX,
  BPF_TAX,
  BPF_TXA,
  BPF_W,
  BPF_X,
  type CbpfInsn,
  evalAlu,
} from './cbpf.js';

/** Bound on executed instructions; only backward jumps (libpcap's protochain loop) can reach it. */
const MAX_STEPS = 1 << 20;

/**
 * Runs a classic BPF program over one packet and returns what the filter
 * returns: the number of bytes to accept, 0 to drop. A load outside the
 * captured bytes drops the packet, as do division by zero and running off
 * the end of the program. `wireLength` (default: the captured length) is
 * what `len` sees. Never throws.
 */
export function runCbpf(
  insns: CbpfInsn[],
  packet: Uint8Array,
  wireLength: number = packet.length,
): number {
  const buflen = packet.length;
  const mem = new Uint32Array(16);
  let a = 0;
  let x = 0;
  let pc = 0;
  const n = insns.length;
  const load = (offset: number, size: number): number | undefined => {
    if (offset < 0 || offset + size > buflen) return undefined;
    if (size === 4)
      return (
        ((packet[offset] << 24) |
          (packet[offset + 1] << 16) |
          (packet[offset + 2] << 8) |
          packet[offset + 3]) >>>
        0
      );
    if (size === 2) return (packet[offset] << 8) | packet[offset + 1];
    return packet[offset];
  };
  const sizeOf = (code: number): number =>
    (code & 0x18) === BPF_W ? 4 : (code & 0x18) === BPF_H ? 2 : 1;
  for (let steps = 0; steps < MAX_STEPS; steps++) {
    if (pc < 0 || pc >= n) return 0;
    const ins = insns[pc];
    const k = ins.k >>> 0;
    const code = ins.code;
    pc++;
    switch (code) {
      case BPF_RET | BPF_K:
        return k;
      case BPF_RET | 0x10:
        return a >>> 0;
      case BPF_RET | BPF_X:
        return x >>> 0;
      case BPF_LD | BPF_W | BPF_ABS:
      case BPF_LD | BPF_H | BPF_ABS:
      case BPF_LD | BPF_B | BPF_ABS: {
        const v = load(k, sizeOf(code));
        if (v === undefined) return 0;
        a = v;
        break;
      }
      case BPF_LD | BPF_W | BPF_IND:
      case BPF_LD | BPF_H | BPF_IND:
      case BPF_LD | BPF_B | BPF_IND: {
        const v = load(x + k, sizeOf(code));
        if (v === undefined) return 0;
        a = v;
        break;
      }
      case BPF_LD | BPF_W | BPF_LEN:
        a = wireLength >>> 0;
        break;
      case BPF_LDX | BPF_W | BPF_LEN:
        x = wireLength >>> 0;
        break;
      case BPF_LDX | BPF_MSH | BPF_B: {
        if (k >= buflen) return 0;
        x = (packet[k] & 0xf) << 2;
        break;
      }
      case BPF_LD | BPF_IMM:
        a = k;
        break;
      case BPF_LDX | BPF_IMM:
        x = k;
        break;
      case BPF_LD | BPF_MEM:
        a = mem[k & 15];
        break;
      case BPF_LDX | BPF_MEM:
        x = mem[k & 15];
        break;
      case BPF_ST:
        mem[k & 15] = a;
        break;
      case BPF_STX:
        mem[k & 15] = x;
        break;
      case BPF_JMP | BPF_JA:
        pc = (pc + k) >>> 0;
        break;
      case BPF_MISC | BPF_TAX:
        x = a;
        break;
      case BPF_MISC | BPF_TXA:
        a = x;
        break;
      case BPF_ALU | BPF_NEG:
        a = (0 - a) >>> 0;
        break;
      default: {
        const cls = code & 0x07;
        const op = code & 0xf0;
        const src = (code & BPF_X) !== 0 ? x >>> 0 : k;
        if (cls === BPF_JMP) {
          let taken: boolean;
          switch (op) {
            case BPF_JEQ:
              taken = a >>> 0 === src;
              break;
            case BPF_JGT:
              taken = a >>> 0 > src;
              break;
            case BPF_JGE:
              taken = a >>> 0 >= src;
              break;
            case BPF_JSET:
              taken = (a & src) >>> 0 !== 0;
              break;
            default:
              return 0;
          }
          pc += taken ? ins.jt : ins.jf;
          break;
        }
        if (cls === BPF_ALU) {
          // Division or modulus by zero (null) and unknown operations reject, as in bpf_filter.
          const result = evalAlu(op, a, src);
          if (result === null || result === undefined) return 0;
          a = result;
          break;
        }
        return 0;
      }
    }
  }
  return 0;
}
