// Unit tests of the classic → eBPF translator: structure, bounds checks, verdicts, limits (no kernel needed).
import { describe, expect, it } from 'vitest';

import type { CbpfInsn } from '../../../bpf/filter/cbpf.js';
import { decodeEbpf } from '../../../bpf/filter/ebpf-insn.js';
import { cbpfToEbpf, formatEbpfListing, type EbpfContext } from '../../../bpf/filter/ebpf.js';

/** Parse `tcpdump -ddd` text: a count line, then "code jt jf k" per instruction. */
function ddd(text: string): CbpfInsn[] {
  return text
    .trim()
    .split(/[\n;]/)
    .slice(1)
    .map((line) => {
      const [code, jt, jf, k] = line.trim().split(/\s+/).map(Number);
      return { code, jt, jf, k };
    });
}

// tcpdump -ddd -y EN10MB 'tcp port 80' (libpcap 1.10): 9 packet loads, two of them [x + k].
const TCP_PORT_80 = ddd(
  '20;40 0 0 12;21 0 6 34525;48 0 0 20;21 0 15 6;40 0 0 54;21 12 0 80;40 0 0 56;21 10 11 80;21 0 10 2048;' +
    '48 0 0 23;21 0 8 6;40 0 0 20;69 6 0 8191;177 0 0 14;72 0 0 14;21 2 0 80;72 0 0 16;21 0 1 80;6 0 0 262144;6 0 0 0',
);
// tcpdump -ddd -y EN10MB 'arp'
const ARP = ddd('4;40 0 0 12;21 0 1 2054;6 0 0 262144;6 0 0 0');

const ret = { kind: 'return' } as const;

/**
 * 3000 × (ldh [2i % 1000]; add #1 × 12; jeq #0x1235 jt 0 jf 1; ret #0), then ret #1: over 40000 eBPF
 * instructions, with 3000 conditional jumps on the longest path (the verifier allows 8191).
 */
function bigProgram(): CbpfInsn[] {
  const prog: CbpfInsn[] = [];
  for (let i = 0; i < 3000; i++) {
    prog.push({ code: 0x28, jt: 0, jf: 0, k: (2 * i) % 1000 });
    for (let j = 0; j < 12; j++) prog.push({ code: 0x04, jt: 0, jf: 0, k: 1 });
    prog.push({ code: 0x15, jt: 0, jf: 1, k: 0x1234 + 12 }, { code: 0x06, jt: 0, jf: 0, k: 0 });
  }
  prog.push({ code: 0x06, jt: 0, jf: 0, k: 1 });
  return prog;
}

function listing(cbpf: CbpfInsn[], context: EbpfContext): string {
  return formatEbpfListing(cbpfToEbpf(cbpf, { context, verdict: ret }));
}

describe('cbpfToEbpf', () => {
  it('translates `arp` for XDP into one bounds check, a load and a compare', () => {
    expect(listing(ARP, 'xdp')).toMatchInlineSnapshot(`
      "   0: (61) r2 = *(u32 *)(r1 +0)
         1: (61) r3 = *(u32 *)(r1 +4)
         2: (bf) r4 = r2
         3: (07) r4 += 14
         4: (2d) if r4 > r3 goto pc+4
         5: (69) r7 = *(u16 *)(r2 +12)
         6: (56) if w7 != 0x608 goto pc+2
         7: (b4) w0 = 1
         8: (95) exit
         9: (b4) w0 = 0
        10: (95) exit
      "
    `);
  });

  it('checks bounds fewer times than `tcp port 80` loads', () => {
    const spec = cbpfToEbpf(TCP_PORT_80, { context: 'xdp', verdict: ret });
    const loads = TCP_PORT_80.filter((i) =>
      [0x20, 0x28, 0x30, 0x40, 0x48, 0x50, 0xb1].includes(i.code),
    ).length;
    expect(loads).toBe(9);
    // One per block for [12], [20], [54], [56], [23] ([20:2] and [14] ride on [23]'s), plus the two [x + k].
    expect(spec.boundsChecks).toBe(7);
    expect(spec.insnCount).toBe(spec.insns.length / 8);
  });

  it('skips the X bound for [x + k] after `ldxb 4*([k]&0xf)`, where the verifier knows X <= 60', () => {
    const text = listing(TCP_PORT_80, 'xdp');
    expect(text).not.toMatch(/if r8 >/);
    expect(text).toMatch(/r4 \+= r8/);
  });

  it('compares network-order loads with swapped constants instead of swapping the loaded value', () => {
    const text = listing(TCP_PORT_80, 'xdp');
    expect(text).not.toMatch(/be16|be32/);
    expect(text).toMatch(/if w7 != 0xdd86 goto/); // ethertype 0x86dd
    expect(text).toMatch(/if w7 == 0x5000 goto/); // port 80
    expect(text).toMatch(/if w7 & 0xff1f goto/); // fragment offset mask 0x1fff
  });

  it('keeps the byte swap when A is computed with, or reaches a compare in two byte orders', () => {
    // ldh [16]; div #3; jgt #10 ...: arithmetic needs host order.
    expect(listing(ddd('5;40 0 0 16;52 0 0 3;37 0 1 10;6 0 0 1;6 0 0 0'), 'xdp')).toMatch(/be16/);
    // ldb [0]; jeq #1 → ldh [12] | ld #0x800; then both reach jeq #0x800.
    const mixed = listing(
      ddd('8;48 0 0 0;21 0 2 1;40 0 0 12;5 0 0 1;0 0 0 2048;21 0 1 2048;6 0 0 1;6 0 0 0'),
      'xdp',
    );
    expect(mixed).toMatch(/be16/);
    expect(mixed).toMatch(/if w7 != 0x800 goto/);
  });

  it('reads the packet through bpf_skb_load_bytes for socket filters, with no direct bounds checks', () => {
    const spec = cbpfToEbpf(TCP_PORT_80, { context: 'socket', verdict: ret });
    expect(spec.boundsChecks).toBe(0);
    const text = formatEbpfListing(spec);
    expect(text.match(/call bpf_skb_load_bytes#26/g)).toHaveLength(9);
    expect(text).not.toMatch(/r1 \+76/);
  });

  it('gives TC a direct-access fast path and a bpf_skb_load_bytes slow path', () => {
    const spec = cbpfToEbpf(TCP_PORT_80, { context: 'tc', verdict: ret });
    const text = formatEbpfListing(spec);
    expect(text).toMatch(/r2 = \*\(u32 \*\)\(r1 \+76\)/);
    expect(text).toMatch(/r3 = \*\(u32 \*\)\(r1 \+80\)/);
    expect(text.match(/call bpf_skb_load_bytes#26/g)).toHaveLength(9);
    expect(spec.boundsChecks).toBe(7);
  });

  it('returns the action values it is given, once each', () => {
    const spec = cbpfToEbpf(ARP, {
      context: 'xdp',
      verdict: { kind: 'action', match: 1, noMatch: 2 },
    });
    const insns = decodeEbpf(spec.insns);
    const moves = insns.filter((i) => i.code === 0xb4 && i.dst === 0).map((i) => i.imm);
    expect(moves.sort()).toEqual([1, 2]);
    expect(insns.filter((i) => i.code === 0x95)).toHaveLength(2);
  });

  it('reads `len` as data_end - data for XDP and skb->len for TC and socket filters', () => {
    const len = ddd('4;128 0 0 0;37 0 1 100;6 0 0 1;6 0 0 0');
    expect(listing(len, 'xdp')).toMatch(/r7 = r3\n.*r7 -= r2/);
    expect(listing(len, 'tc')).toMatch(/r7 = \*\(u32 \*\)\(r1 \+0\)/);
    expect(listing(len, 'socket')).toMatch(/r7 = \*\(u32 \*\)\(r6 \+0\)/);
  });

  it('zeroes only the scratch words a path may read before writing them', () => {
    // ld M[3]; st M[4]; ld M[4]; ret a
    const text = listing(ddd('4;96 0 0 3;2 0 0 4;96 0 0 4;22 0 0 0'), 'xdp');
    expect(text.match(/= 0$/gm)).toEqual(['= 0', '= 0']); // *(u32 *)(r10 -52) = 0, and w0 = 0
    expect(text).toMatch(/\*\(u32 \*\)\(r10 -52\) = 0/);
  });

  it('turns a division by X into "no match" when X is 0, and a constant division by 0 into "no match"', () => {
    expect(listing(ddd('4;0 0 0 7;60 0 0 0;22 0 0 0;6 0 0 0'), 'xdp')).toMatch(/if w8 == 0x0 goto/);
    const byZero = listing(ddd('3;0 0 0 7;52 0 0 0;22 0 0 0'), 'xdp');
    expect(byZero).not.toMatch(/\/=/);
    expect(byZero).toMatch(/w0 = 0\n.*exit/);
  });

  it('follows libpcap for shifts: by X >= 32 gives 0, by a constant takes it modulo 32', () => {
    const known = listing(ddd('4;0 0 0 1;7 0 0 0;108 0 0 0;22 0 0 0'), 'xdp'); // X = 1, known
    expect(known).toMatch(/w7 <<= w8/);
    expect(known).not.toMatch(/if w8 > 0x1f/);
    const byX = listing(ddd('4;48 0 0 14;7 0 0 0;108 0 0 0;22 0 0 0'), 'xdp');
    expect(byX).toMatch(/if w8 > 0x1f goto/);
    expect(listing(ddd('3;0 0 0 1;100 0 0 33;22 0 0 0'), 'xdp')).toMatch(/w7 <<= 1$/m);
  });

  it('turns loads past 0xffff into "no match" for XDP without a bounds check', () => {
    const spec = cbpfToEbpf(ddd('3;48 0 0 70000;22 0 0 0;6 0 0 0'), {
      context: 'xdp',
      verdict: ret,
    });
    expect(spec.boundsChecks).toBe(0);
    expect(formatEbpfListing(spec)).toMatchInlineSnapshot(`
      "   0: (61) r2 = *(u32 *)(r1 +0)
         1: (61) r3 = *(u32 *)(r1 +4)
         2: (b4) w0 = 0
         3: (95) exit
      "
    `);
  });

  it('translates a backward `ja` (libpcap protochain) into may_goto and a back edge', () => {
    // ldb [23]; jeq #6 jt 3 jf 0; ldxb 4*([14]&0xf); ldb [x + 14]; ja -4 (to jeq); ret #1; ret #0 - shape only
    const loop = ddd('7;48 0 0 23;21 3 0 6;177 0 0 14;80 0 0 14;5 0 0 4294967292;6 0 0 1;6 0 0 0');
    const text = listing(loop, 'xdp');
    expect(text).toMatch(/may_goto pc\+\d+/);
    expect(text).toMatch(/goto pc-\d+/);
  });

  it('uses gotol for jumps farther than 32767 instructions', () => {
    // Every early "ret #0" is over 32767 eBPF instructions away from its jump.
    const prog: CbpfInsn[] = [];
    for (const insn of bigProgram()) prog.push(insn);
    const spec = cbpfToEbpf(prog, { context: 'xdp', verdict: ret });
    const insns = decodeEbpf(spec.insns);
    expect(spec.insnCount).toBeGreaterThan(32767);
    expect(insns.some((i) => i.code === 0x06)).toBe(true);
    // Every jump lands inside the program.
    insns.forEach((i, n) => {
      const cls = i.code & 7;
      if ((cls === 5 || cls === 6) && (i.code & 0xf0) !== 0x80 && (i.code & 0xf0) !== 0x90) {
        const to = n + 1 + (i.code === 0x06 ? i.imm : i.off);
        expect(to).toBeGreaterThan(n);
        expect(to).toBeLessThan(insns.length);
      }
    });
  });

  it('refuses a program with a path of 8192 or more conditional jumps, which the verifier cannot explore', () => {
    const prog: CbpfInsn[] = [];
    for (let i = 0; i < 9000; i++)
      prog.push({ code: 0x15, jt: 0, jf: 1, k: i }, { code: 0x06, jt: 0, jf: 0, k: 0 });
    prog.push({ code: 0x06, jt: 0, jf: 0, k: 1 });
    expect(() =>
      cbpfToEbpf(prog, { context: 'xdp', verdict: ret }),
    ).toThrowErrorMatchingInlineSnapshot(
      `[FilterLimitError: translate classic BPF to eBPF: a path through the program has 9000 conditional jumps, more than the verifier's 8191]`,
    );
  });

  it('rejects a classic program with a jump outside it', () => {
    expect(() =>
      cbpfToEbpf(ddd('2;21 5 0 1;6 0 0 0'), { context: 'xdp', verdict: ret }),
    ).toThrowErrorMatchingInlineSnapshot(
      `[FilterSyntaxError: translate classic BPF to eBPF: classic instruction 0 (code 0x15): jump target is outside the program]`,
    );
  });

  it('rejects a classic program that does not end with a return', () => {
    expect(() =>
      cbpfToEbpf(ddd('1;0 0 0 1'), { context: 'xdp', verdict: ret }),
    ).toThrowErrorMatchingInlineSnapshot(
      `[FilterSyntaxError: translate classic BPF to eBPF: the classic program does not end with a return]`,
    );
  });

  it('rejects an unknown classic opcode', () => {
    expect(() =>
      cbpfToEbpf(ddd('2;255 0 0 0;6 0 0 0'), { context: 'socket', verdict: ret }),
    ).toThrowErrorMatchingInlineSnapshot(
      `[FilterSyntaxError: translate classic BPF to eBPF: classic instruction 0 (code 0xff): unknown miscellaneous operation]`,
    );
  });

  it('produces the same bytes for the same input', () => {
    const a = cbpfToEbpf(TCP_PORT_80, { context: 'tc', verdict: ret });
    const b = cbpfToEbpf(TCP_PORT_80, { context: 'tc', verdict: ret });
    expect(Buffer.from(a.insns).equals(Buffer.from(b.insns))).toBe(true);
  });
});
