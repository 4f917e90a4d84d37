// A deliberately plain classic-BPF interpreter, written from libpcap's bpf_filter.c semantics, to cross-check the harness and the compiler's own interpreter.

/** A classic BPF instruction. */
export interface RefInsn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

/** Thrown for programs libpcap's interpreter would refuse to run (jump out of range, unknown opcode). */
export class ReferenceBpfError extends Error {
  override readonly name = 'ReferenceBpfError';
}

/**
 * Runs a classic BPF program over one packet the way libpcap's bpf_filter() does and returns the accept length
 * (0 = reject). `packet` holds the captured bytes; `wireLength` (default packet.length) is what `len` loads.
 * A load outside the captured bytes, or a division or modulo by zero, rejects the packet (returns 0).
 * Shifts by X of 32 or more give 0, like libpcap 1.10's guarded shifts.
 */
export function runReferenceBpf(
  program: readonly RefInsn[],
  packet: Uint8Array,
  wireLength = packet.length,
): number {
  let A = 0;
  let X = 0;
  const mem = new Uint32Array(16);
  const buflen = packet.length;
  const load = (k: number, size: number): number | undefined => {
    if (k < 0 || k + size > buflen) return undefined;
    if (size === 1) return packet[k]!;
    if (size === 2) return (packet[k]! << 8) | packet[k + 1]!;
    return (
      ((packet[k]! << 24) | (packet[k + 1]! << 16) | (packet[k + 2]! << 8) | packet[k + 3]!) >>> 0
    );
  };
  let pc = 0;
  for (let steps = 0; steps < 1_000_000; steps++) {
    const insn = program[pc];
    if (!insn)
      throw new ReferenceBpfError(
        `pc ${pc} is outside the program (${program.length} instructions)`,
      );
    const { code, k } = insn;
    pc++;
    const cls = code & 0x07;
    switch (cls) {
      case 0x00: // LD
      case 0x01: {
        // LDX
        const mode = code & 0xe0;
        const size = code & 0x18;
        let v: number | undefined;
        if (cls === 0x01) {
          if (mode === 0x00) v = k >>> 0;
          else if (mode === 0x60) v = mem[k & 15]!;
          else if (mode === 0x80) v = wireLength >>> 0;
          else if (mode === 0xa0) {
            const b = load(k >>> 0, 1);
            if (b === undefined) return 0;
            v = (b & 0x0f) << 2;
          } else
            throw new ReferenceBpfError(`unknown LDX opcode 0x${code.toString(16)} at ${pc - 1}`);
          X = v >>> 0;
          continue;
        }
        const bytes = size === 0x00 ? 4 : size === 0x08 ? 2 : size === 0x10 ? 1 : 0;
        if (mode === 0x00) v = k >>> 0;
        else if (mode === 0x20) v = load(k >>> 0, bytes);
        else if (mode === 0x40) v = load(X + (k >>> 0), bytes);
        else if (mode === 0x60) v = mem[k & 15]!;
        else if (mode === 0x80) v = wireLength >>> 0;
        else throw new ReferenceBpfError(`unknown LD opcode 0x${code.toString(16)} at ${pc - 1}`);
        if (v === undefined) return 0;
        A = v >>> 0;
        continue;
      }
      case 0x02: // ST
        mem[k & 15] = A;
        continue;
      case 0x03: // STX
        mem[k & 15] = X;
        continue;
      case 0x04: {
        // ALU
        const op = code & 0xf0;
        const src = op === 0x80 ? 0 : code & 0x08 ? X : k >>> 0;
        switch (op) {
          case 0x00:
            A = (A + src) >>> 0;
            break;
          case 0x10:
            A = (A - src) >>> 0;
            break;
          case 0x20:
            A = Math.imul(A, src) >>> 0;
            break;
          case 0x30:
            if (src === 0) return 0;
            A = Math.floor(A / src) >>> 0;
            break;
          case 0x90:
            if (src === 0) return 0;
            A = (A % src) >>> 0;
            break;
          case 0x40:
            A = (A | src) >>> 0;
            break;
          case 0x50:
            A = (A & src) >>> 0;
            break;
          case 0xa0:
            A = (A ^ src) >>> 0;
            break;
          case 0x60:
            A = src >= 32 ? 0 : (A << src) >>> 0;
            break;
          case 0x70:
            A = src >= 32 ? 0 : A >>> src;
            break;
          case 0x80:
            A = -A >>> 0;
            break;
          default:
            throw new ReferenceBpfError(`unknown ALU opcode 0x${code.toString(16)} at ${pc - 1}`);
        }
        continue;
      }
      case 0x05: {
        // JMP
        const op = code & 0xf0;
        if (op === 0x00) {
          // libpcap adds k to a pointer with 32-bit wrap-around: protochain's loop jumps back this way
          pc += k | 0;
          continue;
        }
        const src = code & 0x08 ? X : k >>> 0;
        let taken: boolean;
        if (op === 0x10) taken = A === src;
        else if (op === 0x20) taken = A > src;
        else if (op === 0x30) taken = A >= src;
        else if (op === 0x40) taken = (A & src) !== 0;
        else throw new ReferenceBpfError(`unknown JMP opcode 0x${code.toString(16)} at ${pc - 1}`);
        pc += taken ? insn.jt : insn.jf;
        continue;
      }
      case 0x06: {
        // RET
        const rval = code & 0x18;
        return rval === 0x10 ? A : rval === 0x08 ? X : k >>> 0;
      }
      case 0x07: // MISC
        if ((code & 0xf8) === 0x00) X = A;
        else if ((code & 0xf8) === 0x80) A = X;
        else throw new ReferenceBpfError(`unknown MISC opcode 0x${code.toString(16)} at ${pc - 1}`);
        continue;
    }
  }
  throw new ReferenceBpfError('program did not return within 1,000,000 steps');
}
