// Unit tests of the eBPF instruction encoding: builders, the 8-byte layout, and decoding back.
import { describe, expect, it } from 'vitest';

import {
  BPF_ADD,
  BPF_JGT,
  R0,
  R1,
  R10,
  R2,
  R7,
  alu64Imm,
  call,
  decodeEbpf,
  encodeEbpf,
  exit,
  gotol,
  jmp32Imm,
  ldImm64,
  loadMem,
  mayGoto,
  mov64Imm,
  storeImm,
  toBe,
} from '../../../bpf/filter/ebpf-insn.js';

describe('eBPF instruction encoding', () => {
  it('encodes `r0 = 2; exit` as the kernel lays out struct bpf_insn', () => {
    const bytes = encodeEbpf([mov64Imm(R0, 2), exit()]);
    expect(Buffer.from(bytes).toString('hex')).toBe('b700000002000000' + '9500000000000000');
  });

  it('puts dst in the low nibble and src in the high nibble, offsets and immediates little-endian', () => {
    const bytes = encodeEbpf([loadMem(4, R2, R1, 76), storeImm(4, R10, -4, -1)]);
    expect(Buffer.from(bytes).toString('hex')).toBe('61124c0000000000' + '620afcffffffffff');
  });

  it('round-trips every builder through encode and decode', () => {
    const insns = [
      mov64Imm(R7, -5),
      alu64Imm(BPF_ADD, R2, 0x7fffffff),
      jmp32Imm(BPF_JGT, R7, 0xffffffff, -3),
      toBe(R7, 16),
      call(26),
      gotol(-70000),
      mayGoto(12),
      ...ldImm64(R1, 0x1122334455667788n),
      exit(),
    ];
    const decoded = decodeEbpf(encodeEbpf(insns));
    expect(decoded).toEqual(insns.map((i) => ({ ...i, imm: i.imm | 0 })));
  });

  it('keeps unsigned 32-bit immediates as their signed bit pattern', () => {
    const [decoded] = decodeEbpf(encodeEbpf([jmp32Imm(BPF_JGT, R7, 0x86dd0000 + 0xffff, 0)]));
    expect(decoded.imm >>> 0).toBe(0x86ddffff);
  });

  it('rejects offsets that do not fit in 16 bits', () => {
    expect(() => encodeEbpf([{ ...exit(), off: 40000 }])).toThrowErrorMatchingInlineSnapshot(
      `[RangeError: encode eBPF instruction 0: offset 40000 does not fit in 16 bits]`,
    );
  });

  it('rejects a byte string that is not whole instructions', () => {
    expect(() => decodeEbpf(new Uint8Array(12))).toThrowErrorMatchingInlineSnapshot(
      `[RangeError: decode eBPF: 12 bytes is not a multiple of 8]`,
    );
  });
});
