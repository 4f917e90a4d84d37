// Benchmark: compiled filter expressions as XDP eBPF vs the same match hand-written in C (bench/c/filter_*.bpf.c),
// per-packet cost from BPF_PROG_TEST_RUN (repeat 1,000,000) in the same run, as a ratio table.
import { execFileSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';

import { loadObject, loadProgram, type BpfProgram } from '../bpf/index.js';
import type { CbpfInsn } from '../bpf/filter/cbpf.js';
import { cbpfToEbpf, compileFilterToEbpf, type EbpfProgramSpec } from '../bpf/filter/ebpf.js';
import {
  concat,
  ether,
  ipv4,
  ipv4Frame,
  ipv6,
  ipv6FragmentHeader,
  ipv6Header,
  mac,
  tcpHeader,
  u16,
  udpHeader,
  vlanTag,
} from '../test/helpers/packets/build.js';
import { buildC } from './build-c.js';
import { formatTable, type BenchTable } from './table.js';

/** One workload: an expression, its hand-written C twin, and a packet that walks the filter's longest path. */
export interface FilterBenchCase {
  expression: string;
  /** bench/c/<file>.bpf.c */
  file: string;
  /** The SEC("xdp") function in it. */
  program: string;
  packet: Uint8Array;
  /** 1 if the packet matches. */
  expected: 0 | 1;
}

const M1 = mac('00:00:5e:00:53:01');
const M2 = mac('00:00:5e:00:53:02');

function ip4(
  proto: number,
  l4: Uint8Array,
  o: { src?: string; dst?: string; fragOffset?: number } = {},
): Uint8Array {
  return ipv4Frame(proto, l4, {
    src: o.src ?? '198.51.100.7',
    dst: o.dst ?? '203.0.113.9',
    fragOffset: o.fragOffset,
    dstMac: M1,
    srcMac: M2,
  });
}

/** The workloads, each with the packet that takes the longest path through libpcap's program. */
export function filterBenchCases(): FilterBenchCase[] {
  const tcp80 = tcpHeader({ sport: 40000, dport: 80, flags: 0x10 });
  const syn = tcpHeader({ sport: 40000, dport: 443, flags: 0x02 });
  const tcp6 = tcpHeader({ sport: 40000, dport: 443, flags: 0x10 });
  const arp = concat(
    ether(mac('ff:ff:ff:ff:ff:ff'), M1, 0x0806),
    u16(1),
    u16(0x0800),
    Uint8Array.of(6, 4),
    u16(1),
    M1,
    ipv4('192.0.2.1'),
    new Uint8Array(6),
    ipv4('192.0.2.2'),
  );
  const icmp = Uint8Array.of(8, 0, 0, 0, 0, 1, 0, 1);
  return [
    { expression: 'arp', file: 'filter_arp', program: 'filter_arp', packet: arp, expected: 1 },
    {
      expression: 'ip',
      file: 'filter_ip',
      program: 'filter_ip',
      packet: ip4(6, tcp80),
      expected: 1,
    },
    {
      expression: 'icmp',
      file: 'filter_icmp',
      program: 'filter_icmp',
      packet: ip4(1, icmp),
      expected: 1,
    },
    {
      expression: 'tcp port 80',
      file: 'filter_tcp_port_80',
      program: 'filter_tcp80',
      packet: ip4(6, tcp80),
      expected: 1,
    },
    {
      expression: 'udp dst port 53',
      file: 'filter_udp_dst_53',
      program: 'filter_udp53',
      packet: ip4(17, concat(udpHeader(40000, 53, 4), new Uint8Array(4))),
      expected: 1,
    },
    {
      expression: 'ip host 192.0.2.1',
      file: 'filter_ip_host',
      program: 'filter_iphost',
      packet: ip4(6, tcp80, { dst: '192.0.2.1' }),
      expected: 1,
    },
    {
      expression: 'ip src net 10.0.0.0/8',
      file: 'filter_ip_src_net',
      program: 'filter_srcnet',
      packet: ip4(6, tcp80, { src: '10.1.2.3' }),
      expected: 1,
    },
    {
      expression: 'ip6 and tcp',
      file: 'filter_ip6_tcp',
      program: 'filter_ip6tcp',
      packet: concat(
        ether(M1, M2, 0x86dd),
        ipv6Header(
          { next: 44, src: ipv6('2001:db8::1'), dst: ipv6('2001:db8::2') },
          8 + tcp6.length,
        ),
        ipv6FragmentHeader(6, 0, false, 1),
        tcp6,
      ),
      expected: 1,
    },
    {
      expression: 'vlan 100',
      file: 'filter_vlan_100',
      program: 'filter_vlan100',
      packet: concat(ether(M1, M2, 0x9100), vlanTag(100, 0x0800), ip4(6, tcp80).subarray(14)),
      expected: 1,
    },
    {
      expression: 'tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn',
      file: 'filter_tcp_syn',
      program: 'filter_tcpsyn',
      packet: ip4(6, syn),
      expected: 1,
    },
    {
      expression: 'udp and ip[6:2] & 0x1fff != 0',
      file: 'filter_udp_frag',
      program: 'filter_udpfrag',
      packet: ip4(17, new Uint8Array(16), { fragOffset: 185 }),
      expected: 1,
    },
    {
      expression: 'greater 1000',
      file: 'filter_greater_1000',
      program: 'filter_greater',
      packet: ip4(17, concat(udpHeader(1, 2, 1172), new Uint8Array(1172))),
      expected: 1,
    },
  ];
}

/** libpcap's program for `expression` (tcpdump -ddd), used only when sluice's front end cannot compile it. */
function libpcapProgram(expression: string): CbpfInsn[] {
  const text = execFileSync('tcpdump', ['-ddd', '-y', 'EN10MB', expression], { encoding: 'utf8' });
  return text
    .trim()
    .split('\n')
    .slice(1)
    .map((line) => {
      const [code, jt, jf, k] = line.trim().split(/\s+/).map(Number);
      return { code, jt, jf, k };
    });
}

/** sluice's eBPF for the expression; falls back to libpcap's classic program if the front end fails. */
function compileOurs(expression: string, notes: string[]): EbpfProgramSpec {
  const options = { context: 'xdp', verdict: { kind: 'return' } } as const;
  try {
    return compileFilterToEbpf(expression, options);
  } catch (error: unknown) {
    notes.push(
      `\`${expression}\`: sluice's front end failed (${(error as Error).message}); translated libpcap's program instead`,
    );
    return cbpfToEbpf(libpcapProgram(expression), options);
  }
}

/**
 * ns per run of `prog` over `data`: wall time of one test run of `repeat` iterations, divided.
 * The kernel's own figure is truncated to whole ns, too coarse where a filter costs 5 ns; the
 * fixed cost of the call (some µs) is a thousandth of a ns per packet at repeat 1,000,000.
 */
async function timeRun(prog: BpfProgram, data: Uint8Array, repeat: number): Promise<number> {
  const started = process.hrtime.bigint();
  await prog.testRun({ data, repeat });
  return Number(process.hrtime.bigint() - started) / repeat;
}

export interface FilterBenchResult {
  table: BenchTable;
  /** Instruction counts after the verifier (ours and C's) and our bounds checks, per expression. */
  sizes: { expression: string; insns: number; cInsns: number; boundsChecks: number }[];
  /** Cost of an empty XDP program (`r0 = 1; exit`) on the same packets: the test-run harness itself. */
  baselineNs: number;
  notes: string[];
}

/**
 * Runs every workload: our program and the C one alternate, best of `rounds` runs of `repeat` iterations each.
 * Throws if the two disagree on a packet's verdict (the comparison would be meaningless).
 */
export async function runFilterEbpfBench(
  options: { repeat?: number; rounds?: number } = {},
): Promise<FilterBenchResult> {
  const repeat = options.repeat ?? 1_000_000;
  const rounds = options.rounds ?? 10;
  const notes: string[] = [];
  const rows: BenchTable['rows'] = [];
  const sizes: FilterBenchResult['sizes'] = [];
  // r0 = 1; exit
  const empty = loadProgram({
    type: 'xdp',
    insns: Uint8Array.of(0xb7, 0, 0, 0, 1, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0),
    name: 'bench_empty',
  });
  let baselineNs = Infinity;
  for (let r = 0; r < rounds; r++)
    baselineNs = Math.min(baselineNs, await timeRun(empty, filterBenchCases()[3].packet, repeat));
  empty.close();
  for (const c of filterBenchCases()) {
    const spec = compileOurs(c.expression, notes);
    const ours = loadProgram({ type: 'xdp', insns: spec.insns, name: 'bench_filter' });
    const object = loadObject(buildC(c.file, ['filter_common.h']));
    const theirs = object.program(c.program);
    object.close();
    sizes.push({
      expression: c.expression,
      insns: ours.info().xlatedLen / 8,
      cInsns: theirs.info().xlatedLen / 8,
      boundsChecks: spec.boundsChecks,
    });
    try {
      for (const [who, prog] of [
        ['sluice', ours],
        ['C', theirs],
      ] as const) {
        const { retval } = await prog.testRun({ data: c.packet });
        if (retval !== c.expected)
          throw new Error(
            `bench \`${c.expression}\`: ${who} returned ${retval}, expected ${c.expected}`,
          );
      }
      let best = [Infinity, Infinity];
      for (let r = 0; r < rounds; r++) {
        best = [
          Math.min(best[0], await timeRun(ours, c.packet, repeat)),
          Math.min(best[1], await timeRun(theirs, c.packet, repeat)),
        ];
      }
      rows.push({ workload: c.expression, sluice: best[0], peer: best[1], target: '≤ 1.10' });
    } finally {
      ours.close();
      theirs.close();
    }
  }
  return {
    table: {
      title: 'filter expressions as XDP eBPF (BPF_PROG_TEST_RUN)',
      unit: 'ns/pkt',
      peer: 'hand-written C',
      rows,
    },
    sizes,
    baselineNs,
    notes,
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const repeat = Number(process.argv[2] ?? 1_000_000);
  const result = await runFilterEbpfBench({ repeat });
  console.log(formatTable(result.table));
  const sum = (f: (r: BenchTable['rows'][number]) => number): number =>
    result.table.rows.reduce((s, r) => s + f(r), 0);
  console.log(
    `total: sluice ${sum((r) => r.sluice).toFixed(1)} ns, C ${sum((r) => r.peer).toFixed(1)} ns, ratio ${(sum((r) => r.sluice) / sum((r) => r.peer)).toFixed(2)}×`,
  );
  console.log(
    `empty XDP program (harness cost, included above): ${result.baselineNs} ns/pkt; the kernel reports whole ns`,
  );
  console.log('');
  for (const s of result.sizes) {
    console.log(
      `${s.expression}: ${s.insns} instructions after the verifier (C: ${s.cInsns}), ${s.boundsChecks} bounds checks`,
    );
  }
  for (const note of result.notes) console.log(`note: ${note}`);
}
