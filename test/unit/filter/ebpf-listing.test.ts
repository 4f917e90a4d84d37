// Unit tests of the bpftool-style eBPF listing.
import { describe, expect, it } from 'vitest';

import {
  BPF_ADD,
  BPF_AND,
  BPF_JEQ,
  BPF_JGT,
  BPF_JNE,
  BPF_JSET,
  BPF_LSH,
  BPF_SUB,
  R0,
  R1,
  R10,
  R2,
  R3,
  R4,
  R7,
  R8,
  alu32Imm,
  alu32Reg,
  alu64Imm,
  alu64Reg,
  call,
  exit,
  gotol,
  ja,
  jmp32Imm,
  jmp32Reg,
  jmpImm,
  jmpReg,
  ldImm64,
  loadMem,
  mayGoto,
  mov32Imm,
  mov32Reg,
  mov64Reg,
  neg32,
  storeImm,
  storeReg,
  toBe,
} from '../../../bpf/filter/ebpf-insn.js';
import { formatEbpfInsn, formatEbpfInsns } from '../../../bpf/filter/ebpf-listing.js';

describe('eBPF listing', () => {
  it('prints each instruction form the way bpftool prog dump xlated does', () => {
    const lines = [
      loadMem(4, R2, R1, 4),
      loadMem(2, R7, R2, 12),
      toBe(R7, 16),
      mov64Reg(R4, R2),
      alu64Imm(BPF_ADD, R4, 14),
      alu64Reg(BPF_SUB, R7, R2),
      jmpReg(BPF_JGT, R4, R3, 51),
      jmpImm(BPF_JNE, R0, 0, 3),
      jmp32Imm(BPF_JEQ, R7, 0x86dd, -2),
      jmp32Imm(BPF_JSET, R7, 0xffffffff, 1),
      jmp32Reg(BPF_JGT, R7, R8, 7),
      alu32Imm(BPF_AND, R8, 15),
      alu32Imm(BPF_LSH, R8, 2),
      alu32Reg(BPF_ADD, R7, R8),
      mov32Imm(R0, -1),
      mov32Reg(R8, R7),
      neg32(R7),
      storeImm(4, R10, -64, 0),
      storeReg(4, R10, -4, R7),
      call(26),
      ja(-4),
      gotol(40000),
      mayGoto(9),
      exit(),
    ].map((i) => formatEbpfInsn(i));
    expect(lines).toMatchInlineSnapshot(`
      [
        "(61) r2 = *(u32 *)(r1 +4)",
        "(69) r7 = *(u16 *)(r2 +12)",
        "(dc) r7 = be16 r7",
        "(bf) r4 = r2",
        "(07) r4 += 14",
        "(1f) r7 -= r2",
        "(2d) if r4 > r3 goto pc+51",
        "(55) if r0 != 0x0 goto pc+3",
        "(16) if w7 == 0x86dd goto pc-2",
        "(46) if w7 & 0xffffffff goto pc+1",
        "(2e) if w7 > w8 goto pc+7",
        "(54) w8 &= 15",
        "(64) w8 <<= 2",
        "(0c) w7 += w8",
        "(b4) w0 = -1",
        "(bc) w8 = w7",
        "(84) w7 = -w7",
        "(62) *(u32 *)(r10 -64) = 0",
        "(63) *(u32 *)(r10 -4) = r7",
        "(85) call bpf_skb_load_bytes#26",
        "(05) goto pc-4",
        "(06) gotol pc+40000",
        "(e5) may_goto pc+9",
        "(95) exit",
      ]
    `);
  });

  it('numbers lines like bpftool and gives a two-slot lddw one line', () => {
    expect(formatEbpfInsns([...ldImm64(R1, 0xdeadbeefn), mov32Imm(R0, 2), exit()]))
      .toMatchInlineSnapshot(`
      "   0: (18) r1 = 0xdeadbeef
         2: (b4) w0 = 2
         3: (95) exit
      "
    `);
  });
});
