// Kernel tests of the eBPF filter backend: load as XDP, SCHED_CLS and SOCKET_FILTER, run crafted packets through
// BPF_PROG_TEST_RUN, and compare with libpcap (tcpdump's engine) and the classic interpreter.
// libpcap is the reference; the interpreter is compared on a hand-written program using every opcode (it
// takes shift counts modulo 32 where libpcap gives 0 for a shift by X >= 32, so expressions go to libpcap).
//
// What BPF_PROG_TEST_RUN accepts (Linux 6.18), and how this file copes:
// - XDP refuses data shorter than 14 bytes (ETH_HLEN) with EINVAL: runts run as socket filters only.
// - SCHED_CLS refuses IPv4 frames with under 20 bytes of IP header and IPv6 frames with under 40 (EINVAL):
//   those packets run as XDP and socket filters only; the test asserts that nothing else is refused.
// - SOCKET_FILTER test runs strip an Ethernet header (eth_type_trans) before the program sees the data, as a
//   socket would; each packet gets a 14-byte dummy header in front, so the filter sees exactly the packet,
//   runts included.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, expect, it } from 'vitest';

import { loadProgram, type BpfProgram, type RawProgramType } from '../../bpf/index.js';
import type { CbpfInsn } from '../../bpf/filter/cbpf.js';
import { cbpfToEbpf, type EbpfContext, type EbpfVerdict } from '../../bpf/filter/ebpf.js';
import { runCbpf } from '../../bpf/filter/interpret.js';
import { runOracle, type OracleResult } from '../helpers/oracle.js';
import {
  authHeader,
  concat,
  ether,
  ipv4,
  ipv4Header,
  ipv6,
  ipv6FragmentHeader,
  ipv6Header,
  ipv6OptionsHeader,
  mac,
  tcpHeader,
  u16,
  udpHeader,
  vlanTag,
} from '../helpers/packets/build.js';
import { writePcapFile } from '../helpers/packets/index.js';
import { describeKernel } from '../helpers/privileges.js';

const programTypes: Record<EbpfContext, RawProgramType> = {
  xdp: 'xdp',
  tc: 'sched_cls',
  socket: 'socket_filter',
};
const CONTEXTS: EbpfContext[] = ['xdp', 'tc', 'socket'];
const RETURN: EbpfVerdict = { kind: 'return' };

interface Crafted {
  name: string;
  data: Uint8Array;
}

const M1 = mac('00:00:5e:00:53:01');
const M2 = mac('00:00:5e:00:53:02');
const A1 = ipv4('192.0.2.1');
const A2 = ipv4('198.51.100.7');
const S1 = ipv6('2001:db8::1');
const S2 = ipv6('2001:db8::2');

function tcp4(
  sport: number,
  dport: number,
  extra: { tos?: number; options?: Uint8Array; fragOffset?: number; mf?: boolean } = {},
): Uint8Array {
  const l4 = tcpHeader({ sport, dport, flags: 0x12 });
  return concat(
    ether(M1, M2, 0x0800),
    ipv4Header({ proto: 6, src: A1, dst: A2, ...extra }, l4.length),
    l4,
  );
}

function udp4(sport: number, dport: number, payload = new Uint8Array(4)): Uint8Array {
  const l4 = concat(udpHeader(sport, dport, payload.length), payload);
  return concat(ether(M1, M2, 0x0800), ipv4Header({ proto: 17, src: A1, dst: A2 }, l4.length), l4);
}

function craftPackets(): Crafted[] {
  const tcp6 = tcpHeader({ sport: 443, dport: 80, flags: 0x02 });
  const udp6 = concat(udpHeader(5353, 53, 0), new Uint8Array(0));
  const hop = ipv6OptionsHeader(44, new Uint8Array(6));
  const frag = ipv6FragmentHeader(51, 0, true, 7);
  const ah = authHeader(6, 1, 1, new Uint8Array(12));
  const arp = concat(
    ether(mac('ff:ff:ff:ff:ff:ff'), M1, 0x0806),
    u16(1),
    u16(0x0800),
    Uint8Array.of(6, 4),
    u16(1),
    M1,
    A1,
    new Uint8Array(6),
    A2,
  );
  const vlanTcp = concat(ether(M1, M2, 0x8100), vlanTag(100, 0x0800), tcp4(1234, 80).subarray(14));
  const qinq = concat(
    ether(M1, M2, 0x88a8),
    vlanTag(10, 0x8100),
    vlanTag(20, 0x86dd),
    ipv6Header({ next: 17, src: S1, dst: S2 }, 8),
    udp6,
  );
  const full = tcp4(40000, 80);
  return [
    { name: 'ipv4 tcp 40000>80', data: full },
    { name: 'ipv4 tcp 80>22', data: tcp4(80, 22) },
    {
      name: 'ipv4 tcp with options, tos 0x28',
      data: tcp4(5000, 8080, { tos: 0x28, options: Uint8Array.of(1, 1, 1, 0) }),
    },
    { name: 'ipv4 tcp later fragment', data: tcp4(1, 80, { fragOffset: 100 }) },
    { name: 'ipv4 tcp first fragment', data: tcp4(1, 80, { mf: true }) },
    { name: 'ipv4 udp 53', data: udp4(40000, 53) },
    {
      name: 'ipv4 udp 4789 with 1200-byte payload',
      data: udp4(1000, 4789, new Uint8Array(1200).fill(0xa5)),
    },
    {
      name: 'ipv6 tcp 443>80',
      data: concat(
        ether(M1, M2, 0x86dd),
        ipv6Header({ next: 6, src: S1, dst: S2 }, tcp6.length),
        tcp6,
      ),
    },
    {
      name: 'ipv6 udp 53',
      data: concat(ether(M1, M2, 0x86dd), ipv6Header({ next: 17, src: S2, dst: S1 }, 8), udp6),
    },
    {
      name: 'ipv6 hop-by-hop, fragment, AH, tcp',
      data: concat(
        ether(M1, M2, 0x86dd),
        ipv6Header({ next: 0, src: S1, dst: S2 }, 8 + 8 + 24 + 20),
        hop,
        frag,
        ah,
        tcp6,
      ),
    },
    { name: 'vlan 100 ipv4 tcp 80', data: vlanTcp },
    { name: 'qinq ipv6 udp', data: qinq },
    { name: 'arp request', data: arp },
    { name: 'runt, 0 bytes', data: new Uint8Array(0) },
    { name: 'runt, 6 bytes', data: full.subarray(0, 6) },
    { name: 'runt, 13 bytes', data: full.subarray(0, 13) },
    { name: 'ethernet header only, ipv4', data: full.subarray(0, 14) },
    { name: 'ipv4 truncated in the IP header (20 bytes)', data: full.subarray(0, 20) },
    { name: 'ipv4 truncated after the IP header (34 bytes)', data: full.subarray(0, 34) },
    { name: 'ipv4 tcp truncated in the ports (36 bytes)', data: full.subarray(0, 36) },
    {
      name: 'ipv6 truncated in the header (30 bytes)',
      data: concat(ether(M1, M2, 0x86dd), ipv6Header({ next: 6, src: S1, dst: S2 }, 20)).subarray(
        0,
        30,
      ),
    },
    { name: 'vlan truncated (16 bytes)', data: vlanTcp.subarray(0, 16) },
  ];
}

/** Kernel refusals this file expects (see the top comment). */
function kernelRefuses(context: EbpfContext, data: Uint8Array): boolean {
  if (data.length < 14) return context !== 'socket';
  if (context !== 'tc') return false;
  const type = (data[12] << 8) | data[13];
  return (type === 0x0800 && data.length < 34) || (type === 0x86dd && data.length < 54);
}

async function runIn(
  prog: BpfProgram,
  context: EbpfContext,
  data: Uint8Array,
): Promise<number | 'refused'> {
  const input = context === 'socket' ? concat(new Uint8Array(14), data) : data;
  try {
    return (await prog.testRun({ data: input })).retval;
  } catch (error: unknown) {
    if ((error as { code?: string }).code === 'EINVAL') return 'refused';
    throw error;
  }
}

function load(cbpf: CbpfInsn[], context: EbpfContext, verdict: EbpfVerdict = RETURN): BpfProgram {
  const spec = cbpfToEbpf(cbpf, { context, verdict });
  return loadProgram({ type: programTypes[context], insns: spec.insns, name: `flt_${context}` });
}

/** Parse `tcpdump -ddd` text. */
function ddd(text: string): CbpfInsn[] {
  return text
    .trim()
    .split('\n')
    .slice(1)
    .map((line) => {
      const [code, jt, jf, k] = line.trim().split(/\s+/).map(Number);
      return { code, jt, jf, k };
    });
}

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

const EXPRESSIONS = [
  'tcp port 80',
  'udp dst port 53',
  'ip6 and tcp',
  'vlan and tcp port 80',
  'arp',
  'ip[6:2] & 0x1fff != 0',
  'tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)',
  'ip host 192.0.2.1 and not udp',
  'net 2001:db8::/32',
  'len > 100',
  'greater 1000',
  'ether[len - 1] = 0xa5',
  'ip[0] << ip[1] > 5',
  'ip[2:2] % ip[9] = 0',
  'ip[2:2] / (ip[1] & 3) > 2',
  'ip6 protochain 6',
  'ip protochain 17',
  'udp[8:4] = 0xa5a5a5a5',
  'ether[1000] = 0xa5',
];

// Every classic opcode once or more (see the comments); the verdict is a parity bit of a packet hash.
const ALL_OPCODES = `65
40 0 0 12
2 0 0 0
1 0 0 3
0 0 0 5
4 0 0 1
12 0 0 0
20 0 0 2
28 0 0 0
36 0 0 3
44 0 0 0
52 0 0 2
60 0 0 0
148 0 0 7
156 0 0 0
68 0 0 256
76 0 0 0
164 0 0 85
172 0 0 0
100 0 0 3
108 0 0 0
116 0 0 1
124 0 0 0
132 0 0 0
84 0 0 65535
97 0 0 0
92 0 0 0
12 0 0 0
2 0 0 2
128 0 0 0
37 0 2 60
129 0 0 0
5 0 0 1
1 0 0 60
3 0 0 1
48 0 0 14
84 0 0 240
21 0 10 64
177 0 0 14
64 0 0 14
72 0 0 16
80 0 0 13
12 0 0 0
7 0 0 0
96 0 0 2
45 0 1 0
4 0 0 7
5 0 0 1
32 0 0 26
53 0 1 32768
164 0 0 4660
97 0 0 1
61 0 1 0
28 0 0 0
69 0 4 16
1 0 0 33
77 0 1 0
22 0 0 0
14 0 0 0
97 0 0 2
135 0 0 0
29 0 3 0
84 0 0 1
21 1 0 0
6 0 0 262144
6 0 0 0`;

// ldb [15]; tax; ld #100; div x; ret a: no match when byte 15 is 0 (division by X = 0).
const DIV_BY_X = `5
48 0 0 15
7 0 0 0
0 0 0 100
60 0 0 0
22 0 0 0`;

await describeKernel('filter eBPF backend in the kernel', () => {
  const packets = craftPackets();
  let dir: string;
  let oracle: OracleResult[];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-filter-ebpf-'));
    const pcap = join(dir, 'crafted.pcap');
    await writePcapFile(
      pcap,
      packets.map((p) => ({ data: p.data, wireLength: p.data.length })),
    );
    oracle = await runOracle(pcap, EXPRESSIONS, { program: true });
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  const programOf = (n: number): CbpfInsn[] => {
    const result = oracle[n];
    if (!result.ok || !result.program)
      throw new Error(
        `libpcap rejects ${JSON.stringify(EXPRESSIONS[n])}: ${result.ok ? 'no program' : result.error}`,
      );
    return result.program;
  };

  for (const [n, expression] of EXPRESSIONS.entries()) {
    it(`gives libpcap's verdicts for \`${expression}\` as XDP, TC and socket filter`, async () => {
      const result = oracle[n];
      const cbpf = programOf(n);
      const mismatches: string[] = [];
      for (const context of CONTEXTS) {
        const prog = load(cbpf, context);
        try {
          for (const [i, packet] of packets.entries()) {
            const got = await runIn(prog, context, packet.data);
            if (got === 'refused') {
              if (!kernelRefuses(context, packet.data))
                mismatches.push(`${context}: the kernel refused "${packet.name}"`);
              continue;
            }
            const want = result.ok ? result.verdicts[i] : '?';
            if (String(got) !== want)
              mismatches.push(`${context}: "${packet.name}": eBPF ${got}, libpcap ${want}`);
          }
        } finally {
          prog.close();
        }
      }
      expect(mismatches).toEqual([]);
    });
  }

  it('runs a program using every classic opcode like the classic interpreter', async () => {
    const cbpf = ddd(ALL_OPCODES);
    const mismatches: string[] = [];
    const seen = new Set<string>();
    for (const context of CONTEXTS) {
      const prog = load(cbpf, context);
      try {
        for (const packet of packets) {
          const got = await runIn(prog, context, packet.data);
          if (got === 'refused') continue;
          const want = runCbpf(cbpf, packet.data) !== 0 ? 1 : 0;
          seen.add(String(want));
          if (got !== want)
            mismatches.push(`${context}: "${packet.name}": eBPF ${got}, interpreter ${want}`);
        }
      } finally {
        prog.close();
      }
    }
    expect(mismatches).toEqual([]);
    expect([...seen].sort()).toEqual(['0', '1']);
  });

  it('answers "no match" for a division by X = 0', async () => {
    const cbpf = ddd(DIV_BY_X);
    const zero = concat(new Uint8Array(15), Uint8Array.of(0), new Uint8Array(10));
    const seven = concat(new Uint8Array(15), Uint8Array.of(7), new Uint8Array(10));
    for (const context of CONTEXTS) {
      const prog = load(cbpf, context);
      try {
        expect([await runIn(prog, context, zero), await runIn(prog, context, seven)]).toEqual([
          0, 1,
        ]);
      } finally {
        prog.close();
      }
    }
  });

  it('returns the action values of an `action` verdict', async () => {
    const cbpf = programOf(EXPRESSIONS.indexOf('tcp port 80'));
    const actions: [EbpfContext, number, number][] = [
      ['xdp', 1, 2], // XDP_DROP on a match, XDP_PASS otherwise
      ['tc', 2, 0], // TC_ACT_SHOT / TC_ACT_OK
      ['socket', 0xffffffff, 0], // keep the whole packet / drop it
    ];
    for (const [context, match, noMatch] of actions) {
      const prog = load(cbpf, context, { kind: 'action', match, noMatch });
      try {
        // A match, a UDP packet, and a TCP packet cut in its ports (no match through the out-of-bounds path).
        const runs = [packets[0].data, packets[5].data, packets[19].data];
        const got = [];
        for (const data of runs) got.push(await runIn(prog, context, data));
        expect(got).toEqual([match, noMatch, noMatch]);
      } finally {
        prog.close();
      }
    }
  });

  it('loads a program whose jumps span more than 32767 instructions (gotol)', async () => {
    const cbpf = bigProgram();
    const prog = load(cbpf, 'xdp');
    try {
      const zeros = new Uint8Array(1200);
      expect(await runIn(prog, 'xdp', zeros)).toBe(1);
      const hit = zeros.slice();
      hit.set(u16(0x1234), 0);
      expect(await runIn(prog, 'xdp', hit)).toBe(0);
      expect(await runIn(prog, 'xdp', zeros.subarray(0, 500))).toBe(0);
    } finally {
      prog.close();
    }
  });
});
