// The filter bank: every expression of a rule set in one generated program, results handed on by tail call.
import { afterAll, beforeAll, expect, it } from 'vitest';

import { createMap, loadProgram, type BpfMap, type BpfProgram } from '../../bpf/index.js';
import { compileFilter, runCbpf } from '../../bpf/filter/index.js';
import {
  encodeEbpf,
  ldImm64,
  call,
  exit,
  jmpImm,
  loadMem,
  mov64Imm,
  mov64Reg,
  storeImm,
  alu64Imm,
  BPF_JEQ,
  BPF_ADD,
  BPF_CALL,
  BPF_EXIT,
  BPF_JMP,
  decodeEbpf,
  R0,
  R1,
  R2,
  R6,
  R10,
} from '../../bpf/filter/ebpf-insn.js';
import { buildFilterBank, loadFilterBank } from '../../controller/dataplane/filter-bank.js';
import { SL_PROG_RESUME, u32 } from '../../controller/dataplane/abi.js';
import {
  concat,
  ether,
  ipv4Frame,
  mac,
  tcpHeader,
  udpHeader,
  vlanTag,
} from '../helpers/packets/build.js';
import { describeKernel } from '../helpers/privileges.js';

const EXPRESSIONS = [
  'udp',
  'tcp port 80',
  'icmp',
  'vlan and udp',
  'ip[8] = 7',
  'udp and dst port 53',
];

const A = mac('02:00:00:00:00:01');
const B = mac('02:00:00:00:00:02');
/** The frames' addresses. */
const IP = { src: '192.0.2.1', dst: '198.51.100.2' };

function udp(dport: number, ttl = 64): Uint8Array {
  const l4 = concat(udpHeader(1000, dport, 4), new Uint8Array(4));
  return ipv4Frame(17, l4, { ...IP, ttl });
}
function tcp(dport: number): Uint8Array {
  return ipv4Frame(6, tcpHeader({ sport: 4000, dport, flags: 0x02 }), IP);
}
function icmp(): Uint8Array {
  return ipv4Frame(1, Uint8Array.of(8, 0, 0, 0, 0, 1, 0, 1), { ...IP, ttl: 7 });
}
function vlanUdp(): Uint8Array {
  const inner = udp(53).subarray(14);
  return concat(ether(B, A, 0x8100), vlanTag(100, 0x0800), inner);
}

/** What libpcap says, as a mask: bit i for expression i. */
function expected(frame: Uint8Array): number {
  let mask = 0;
  EXPRESSIONS.forEach((e, i) => {
    if (runCbpf(compileFilter(e), frame, frame.length) !== 0) mask |= 1 << i;
  });
  return mask;
}

await describeKernel('the filter bank', () => {
  let scratch: BpfMap;
  let progs: BpfMap;
  let resume: BpfProgram;
  const banks: BpfProgram[] = [];

  beforeAll(() => {
    scratch = createMap({
      type: 'percpu_array',
      keySize: 4,
      valueSize: 16,
      maxEntries: 1,
      name: 'bank_scratch',
    });
    progs = createMap({
      type: 'prog_array',
      keySize: 4,
      valueSize: 4,
      maxEntries: 4,
      name: 'bank_progs',
    });
    // resume stand-in: returns scratch.fmask | done << 16 | gen << 20, so the test sees all three.
    const insns = [
      mov64Reg(R6, R1),
      storeImm(4, R10, -4, 0),
      mov64Reg(R2, R10),
      alu64Imm(BPF_ADD, R2, -4),
      ...ldImm64(R1, 0n, 1),
      call(1),
      jmpImm(BPF_JEQ, R0, 0, 8),
      loadMem(4, R1, R0, 12),
      alu64Imm(0x60, R1, 16),
      loadMem(4, R2, R0, 8),
      alu64Imm(0x60, R2, 20),
      loadMem(8, R0, R0, 0),
      { code: 0x07 | 0x40 | 0x08, dst: R0, src: R1, off: 0, imm: 0 },
      { code: 0x07 | 0x40 | 0x08, dst: R0, src: R2, off: 0, imm: 0 },
      exit(),
      mov64Imm(R0, 0xdead),
      exit(),
    ];
    resume = loadProgram({
      type: 'xdp',
      insns: encodeEbpf(insns),
      name: 'bank_resume',
      relocations: [{ insnIndex: 4, map: scratch }],
    });
    progs.setFd(u32(SL_PROG_RESUME), resume);
  });

  afterAll(() => {
    for (const b of banks) b.close();
    resume?.close();
    progs?.close();
    scratch?.close();
  });

  it('runs every expression inline, one after another, before the hand-off', () => {
    const code = buildFilterBank({ context: 'xdp', gen: 1, expressions: EXPRESSIONS, fallback: 2 });
    expect(code.insns.length % 8).toBe(0);
    const insns = decodeEbpf(code.insns);
    // No bpf-to-bpf call (a call and its return cost 6-9 ns each with return-thunk mitigations),
    // and one exit: the fallback after the tail call.
    expect(insns.filter((i) => i.code === (BPF_JMP | BPF_CALL) && i.src === 1)).toEqual([]);
    expect(insns.filter((i) => i.code === (BPF_JMP | BPF_EXIT))).toHaveLength(1);
    expect(code.scratchAt).toBeGreaterThan(EXPRESSIONS.length * 5);
    expect(code.progsAt).toBeGreaterThan(code.scratchAt);
  });

  it('hands libpcap’s verdict of every expression to the resume program', async () => {
    const bank = loadFilterBank(
      { context: 'xdp', gen: 1, expressions: EXPRESSIONS, fallback: 2 },
      { scratch, progs },
    );
    banks.push(bank);
    for (const frame of [udp(53), udp(54), tcp(80), tcp(81), icmp(), vlanUdp()]) {
      const { retval } = await bank.testRun({ data: frame });
      expect(retval).toBe(expected(frame) | (1 << 16) | (1 << 20));
    }
  });

  it('returns its fallback verdict when the resume program is missing', async () => {
    const bank = loadFilterBank(
      { context: 'xdp', gen: 0, expressions: ['udp'], fallback: 2 },
      { scratch, progs },
    );
    banks.push(bank);
    progs.delete(u32(SL_PROG_RESUME));
    try {
      expect((await bank.testRun({ data: udp(53) })).retval).toBe(2);
    } finally {
      progs.setFd(u32(SL_PROG_RESUME), resume);
    }
  });

  it('loads as a tc program too', async () => {
    const tcScratch = createMap({
      type: 'percpu_array',
      keySize: 4,
      valueSize: 16,
      maxEntries: 1,
      name: 'tc_scratch',
    });
    const tcProgs = createMap({
      type: 'prog_array',
      keySize: 4,
      valueSize: 4,
      maxEntries: 4,
      name: 'tc_progs',
    });
    try {
      const bank = loadFilterBank(
        { context: 'tc', gen: 0, expressions: EXPRESSIONS, fallback: 0 },
        { scratch: tcScratch, progs: tcProgs },
      );
      banks.push(bank);
      // No resume program: the fallback (TC_ACT_OK) comes back after the filters ran.
      expect((await bank.testRun({ data: udp(53) })).retval).toBe(0);
      const perCpu = tcScratch.lookupPerCpu(u32(0))!;
      const masks = perCpu.map((b) => Number(b.readBigUInt64LE(0)));
      expect(masks).toContain(expected(udp(53)));
    } finally {
      tcScratch.close();
      tcProgs.close();
    }
  });
});
