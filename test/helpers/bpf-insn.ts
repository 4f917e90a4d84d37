// Raw eBPF instructions for kernel tests that load hand-written programs through the addon.

/** One struct bpf_insn: opcode, dst and src registers, offset, immediate (8 bytes, little-endian). */
export function insn(code: number, dst: number, src: number, off: number, imm: number): Buffer {
  const b = Buffer.alloc(8);
  b[0] = code;
  b[1] = (src << 4) | dst;
  b.writeInt16LE(off, 2);
  b.writeInt32LE(imm, 4);
  return b;
}
