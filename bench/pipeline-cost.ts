// Benchmark: the pipeline's per-packet cost from BPF_PROG_TEST_RUN against xdp-filter, against itself
// at other rule-set and prefix-set sizes, per action, and against a standalone compiled filter; each
// figure also net of an empty XDP program measured in the same alternation.
//
// Method: the kernel's own per-iteration figure (BPF_PROG_TEST_RUN's duration, whole ns) of one
// test run of `repeat` iterations over one 64-byte frame; the programs of a row and the empty
// program alternate, the first rotating each round; best of `rounds` per load, median over fresh
// loads. Wall time around the same runs is kept as a cross-check only: an XDP test run of more
// than one iteration puts the program into the kernel's XDP dispatcher and takes it out again,
// each waiting for an RCU grace period (bpf_prog_change_xdp), so every call pays 16-40 ms of
// waiting in whole scheduler ticks (measured: a run of 1 iteration returns in 2 µs, one of 2 in
// 16-40 ms), 16-80 ns a packet at these repeats, and not the same from one call to the next.
// The redirect row is timed in chunks, see timeChunked().
//
// The parent process builds the lab (one namespace, ten veth pairs) and runs measure() in a
// child inside that namespace: a test run's frame comes in on the caller's loopback, so the
// redirect row's FIB lookup consults the lab's tables, not the host's. The child's `ip netns exec`
// gives it a mount namespace of its own, so the bpffs Dataplane.open mounts there, with both data
// planes' and xdp-filter's pins, is private and goes with the child; finally blocks remove them
// anyway, and Lab.destroy() the namespace.
import { rmSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { pathToFileURL } from 'node:url';

import {
  loadObject,
  loadProgram,
  mkdirBpffs,
  openPinned,
  possibleCpus,
  type BpfMap,
  type BpfObject,
  type BpfProgram,
} from '../bpf/index.js';
import { compileFilterToEbpf } from '../bpf/filter/ebpf.js';
import { Dataplane, type AttachmentSpec } from '../controller/dataplane/dataplane.js';
import type { RuleSpec } from '../controller/dataplane/model.js';
import { Lab } from '../netns-lab/lab.js';
import {
  concat,
  ether,
  ipv4Frame,
  ipv6,
  ipv6Header,
  mac,
  udpHeader,
} from '../test/helpers/packets/build.js';
import { Prng } from '../test/helpers/packets/prng.js';
import { buildC } from './build-c.js';
import { formatTable, type BenchTable } from './table.js';
import { medianOverLoads, type Figure } from './stats.js';
import { INSIDE, runInside } from './inside.js';

const XDP_DROP = 1;
const XDP_PASS = 2;
const XDP_REDIRECT = 4;

const FRAME_BYTES = 64;
const SET_SIZE = 1_000_000;
/** The frame's source is here, in both the big and the small set. */
const BLOCKED_PREFIX = '192.0.2.64/26';
const BLOCKED_PREFIX6 = '2001:db8:0:1::/64';
/** IPv6 prefixes in the big set beside the IPv4 ones. */
const SET6_SIZE = 100_000;
const NEXT_HOP = '02:00:00:00:00:99';
const EXPRESSION = 'udp and dst port 53';
const XDP_FILTER_DIR = '/usr/lib/x86_64-linux-gnu/bpf';

// ---------------------------------------------------------------------------------------------
// Frames

/** A 64-byte Ethernet + IPv4 + UDP frame (FCS not counted, as XDP sees it). */
function udpFrame(o: { src: string; dport: number; ttl?: number }): Uint8Array {
  const payload = FRAME_BYTES - 14 - 20 - 8;
  const l4 = concat(udpHeader(40000, o.dport, payload), new Uint8Array(payload).fill(0x41));
  return ipv4Frame(17, l4, { src: o.src, dst: '198.51.100.1', ttl: o.ttl });
}

/** A 64-byte Ethernet + IPv6 + UDP frame. */
function udp6Frame(o: { src: string; dport: number }): Uint8Array {
  const payload = FRAME_BYTES - 14 - 40 - 8;
  const l4 = concat(udpHeader(40000, o.dport, payload), new Uint8Array(payload).fill(0x41));
  return concat(
    ether(mac('02:00:00:00:00:02'), mac('02:00:00:00:00:01'), 0x86dd),
    ipv6Header({ next: 17, src: ipv6(o.src), dst: ipv6('2001:db8:ffff::1') }, l4.length),
    l4,
  );
}

/** Source in the blocklist, UDP to port 80: the drop-by-set frame (and xdp-filter's port). */
const DROP_FRAME = udpFrame({ src: '192.0.2.77', dport: 80 });
/** The same from an IPv6 source in the blocklist. */
const DROP6_FRAME = udp6Frame({ src: '2001:db8:0:1::77', dport: 80 });
/** Source in no set, matching no rule: the pass-through frame. */
const PASS_FRAME = udpFrame({ src: '198.51.100.7', dport: 80 });
/** DROP_FRAME with the largest TTL: 254 forwards before the TTL reaches 1. */
const REDIRECT_FRAME = udpFrame({ src: '192.0.2.77', dport: 80, ttl: 255 });
/** Matches EXPRESSION. */
const DNS_FRAME = udpFrame({ src: '198.51.100.7', dport: 53 });

// ---------------------------------------------------------------------------------------------
// Sets and rules

/** Ranges no random prefix may touch: the frames' addresses and the other rules' prefixes. */
const RESERVED: [number, number][] = [
  ['192.0.2.0', 24],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['10.0.0.0', 8],
  ['172.16.0.0', 12],
].map(([a, len]) => [ipv4Number(a as string), len as number]);

function ipv4Number(text: string): number {
  return text.split('.').reduce((n, part) => n * 256 + Number(part), 0);
}

function maskOf(len: number): number {
  return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
}

function overlapsReserved(addr: number, len: number): boolean {
  return RESERVED.some(([r, rlen]) => {
    const m = maskOf(Math.min(len, rlen));
    return (addr & m) >>> 0 === (r & m) >>> 0;
  });
}

/**
 * `count` distinct random IPv4 prefixes (seeded): half /32, a quarter /24, the rest /16 to /31,
 * none touching RESERVED, so only BLOCKED_PREFIX (added by the caller) holds a frame's source.
 */
export function randomPrefixes(count: number, seed = 1): string[] {
  const prng = new Prng(seed);
  const seen = new Set<string>();
  while (seen.size < count) {
    const pick = prng.int(4);
    const len = pick < 2 ? 32 : pick === 2 ? 24 : prng.range(16, 31);
    const addr = (prng.next() & maskOf(len)) >>> 0;
    if (overlapsReserved(addr, len)) continue;
    seen.add(`${addr >>> 24}.${(addr >>> 16) & 255}.${(addr >>> 8) & 255}.${addr & 255}/${len}`);
  }
  return [...seen];
}

/**
 * `count` distinct random IPv6 prefixes (seeded) in 2000::/3 outside 2001:db8::/32 (where the
 * frames' addresses are): half /128, a quarter /64, the rest /32 to /127.
 */
export function randomPrefixes6(count: number, seed = 1): string[] {
  const prng = new Prng(seed);
  const seen = new Set<string>();
  while (seen.size < count) {
    const pick = prng.int(4);
    const len = pick < 2 ? 128 : pick === 2 ? 64 : prng.range(32, 127);
    const words = Array.from({ length: 8 }, () => prng.next() & 0xffff);
    words[0] = 0x2000 | (words[0] & 0x1fff);
    if (words[0] === 0x2001 && words[1] === 0x0db8) continue;
    for (let w = 0; w < 8; w++) {
      const keep = Math.max(0, Math.min(16, len - 16 * w));
      words[w] &= keep === 0 ? 0 : (0xffff << (16 - keep)) & 0xffff;
    }
    seen.add(`${words.map((w) => w.toString(16)).join(':')}/${len}`);
  }
  return [...seen];
}

/** Rule i of the filler: six kinds over addresses, ports, flags, VLAN and ICMP; no frame here matches one. */
function fillerRule(i: number): RuleSpec {
  const hi = (i >> 8) & 255;
  const lo = i & 255;
  const id = `r${i}`;
  switch (i % 6) {
    case 0:
      return { id, dst: `10.${hi}.${lo}.0/24`, proto: 'udp', dport: 1000 + i, action: 'drop' };
    case 1:
      return { id, src: `172.16.${hi}.${lo}/32`, action: 'drop' };
    case 2:
      return { id, proto: 'tcp', dport: 1000 + i, tcpFlags: 'syn,!ack', action: 'drop' };
    case 3:
      return { id, vlan: 1 + (i % 4000), action: 'drop' };
    case 4:
      return {
        id,
        dst: `10.${128 + hi}.${lo}.0/24`,
        proto: 'icmp',
        icmp: { type: 8 },
        action: 'drop',
      };
    default:
      return { id, proto: 'udp', sport: 1000 + i, action: 'drop' };
  }
}

/**
 * `n` rules: n - 1 fillers, then `last` (tried last: equal priorities keep the order given). The
 * fillers' kinds take turns, so every 64-rule word of the classifier's bit vectors holds rules
 * that leave each dimension open; `grouped` puts the fillers of one kind together instead.
 */
function ruleSet(n: number, last: RuleSpec, grouped = false): RuleSpec[] {
  const fillers = Array.from({ length: n - 1 }, (_, i) => i);
  if (grouped) fillers.sort((a, b) => (a % 6) - (b % 6) || a - b);
  return [...fillers.map(fillerRule), last];
}

const SET_DROP: RuleSpec = { id: 'blocklist', srcSet: 'blocklist', action: 'drop' };

// ---------------------------------------------------------------------------------------------
// Timing

/** A program under test with the frame it runs on and the verdict it must return. */
interface Subject {
  label: string;
  prog: BpfProgram;
  frame: Uint8Array;
  expected: number;
}

/**
 * ns per run of one test run of `repeat` iterations (as bench/filter-ebpf.ts: wall time divided;
 * the call itself, some µs, is a few thousandths of a ns per run at 1,000,000).
 */
async function timeRun(prog: BpfProgram, data: Uint8Array, repeat: number): Promise<Figure> {
  const started = process.hrtime.bigint();
  const { durationNs } = await prog.testRun({ data, repeat });
  return { wall: Number(process.hrtime.bigint() - started) / repeat, kernel: durationNs };
}

/**
 * ns per run over test runs of `chunk` iterations adding up to at least `total`: for a program
 * that changes the frame (the TTL) so that a longer run would leave the path measured. Each call
 * copies the frame afresh. Here the wall figure carries the calls (some µs each: 10 ns or more
 * per iteration at this chunk size), so the kernel's is the one to read.
 */
async function timeChunked(
  prog: BpfProgram,
  data: Uint8Array,
  total: number,
  chunk: number,
): Promise<Figure> {
  let kernel = 0;
  let runs = 0;
  const started = process.hrtime.bigint();
  while (runs < total) {
    const { durationNs } = await prog.testRun({ data, repeat: chunk });
    kernel += durationNs * chunk;
    runs += chunk;
  }
  return { wall: Number(process.hrtime.bigint() - started) / runs, kernel: kernel / runs };
}

type Timer = (prog: BpfProgram, data: Uint8Array) => Promise<Figure>;

/** Slots per CPU of a pipeline object's sl_memo, and the bytes of one (pipeline.bpf.c). */
const MEMO_SLOTS = 4096;
const MEMO_SLOT_BYTES = 48;

/** The sl_memo slot a frame's class tuple takes: the one slot its run fills in an emptied memo. */
async function memoSlotOf(prog: BpfProgram, data: Uint8Array, memo: BpfMap): Promise<number> {
  const keys = Buffer.alloc(4 * MEMO_SLOTS);
  for (let i = 0; i < MEMO_SLOTS; i++) keys.writeUInt32LE(i, 4 * i);
  const empty = Buffer.alloc(MEMO_SLOTS * MEMO_SLOT_BYTES * possibleCpus());
  memo.updateBatchSync(keys, empty, { count: MEMO_SLOTS });
  await prog.testRun({ data, repeat: 1 });
  const filled = [];
  for (let i = 0; i < MEMO_SLOTS; i++) {
    const slot = memo.lookupPerCpu(keys.subarray(4 * i, 4 * i + 4));
    if (slot?.some((v) => v.readUInt32LE(24) !== 0)) filled.push(i);
  }
  if (filled.length !== 1)
    throw new Error(`bench pipeline-cost: one run filled memo slots ${filled.join(', ')}`);
  return filled[0];
}

/**
 * ns per run of a packet whose class tuple the memo does not hold: `runs` test runs of one
 * iteration each, each after `slot` of `memo` is emptied on every CPU (one map write, made before
 * every subject's runs alike, so that all pay the same syscall). The kernel's figure of a
 * one-iteration run is that run alone (whole ns, the test loop's own few ns included, as in the
 * empty program's figure taken the same way); the median of the runs is given for both clocks,
 * wall time being mostly the call.
 */
async function timeMissed(
  prog: BpfProgram,
  data: Uint8Array,
  runs: number,
  memo: BpfMap,
  slot: number,
): Promise<Figure> {
  const key = Buffer.from(Uint32Array.of(slot).buffer);
  const empty = Array.from({ length: possibleCpus() }, () => Buffer.alloc(MEMO_SLOT_BYTES));
  const kernel: number[] = [];
  const wall: number[] = [];
  for (let r = 0; r < runs; r++) {
    memo.update(key, empty);
    const started = process.hrtime.bigint();
    const { durationNs } = await prog.testRun({ data, repeat: 1 });
    wall.push(Number(process.hrtime.bigint() - started));
    kernel.push(durationNs);
  }
  const median = (xs: number[]): number => xs.sort((a, b) => a - b)[xs.length >> 1];
  return { wall: median(wall), kernel: median(kernel) };
}

/**
 * Best of `rounds` per subject and clock, the subjects alternating (the first one rotating each
 * round). Throws first if a subject's verdict on its frame is not the expected one.
 */
async function bestOf(subjects: Subject[], rounds: number, time: Timer): Promise<Figure[]> {
  for (const s of subjects) {
    const { retval } = await s.prog.testRun({ data: s.frame });
    if (retval !== s.expected)
      throw new Error(`bench pipeline-cost: ${s.label} returned ${retval}, expected ${s.expected}`);
  }
  const best = subjects.map(() => ({ wall: Infinity, kernel: Infinity }));
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < subjects.length; k++) {
      const i = (r + k) % subjects.length;
      const f = await time(subjects[i].prog, subjects[i].frame);
      best[i] = {
        wall: Math.min(best[i].wall, f.wall),
        kernel: Math.min(best[i].kernel, f.kernel),
      };
    }
  }
  return best;
}

// ---------------------------------------------------------------------------------------------
// xdp-filter

/** The maps of xdpfilt_*.o (xdp-tools xdp-filter/common_kern_user.h): flag bits of a rule. */
const MAP_FLAG_DST = 1 << 1;
const MAP_FLAG_TCP = 1 << 2;
const MAP_FLAG_UDP = 1 << 3;
const COUNTER_SHIFT = 6;

/**
 * Loads xdp-tools' `xdpfilt_<variant>.o` with its maps pinned under `pinDir` (they carry
 * LIBBPF_PIN_BY_NAME, which would otherwise pin them at /sys/fs/bpf/<name>, shared with a running
 * xdp-filter), and writes what `xdp-filter port <port>` writes: filter_ports[htons(port)] = dst,
 * tcp, udp on every CPU.
 */
function loadXdpFilter(
  variant: string,
  pinDir: string,
  port: number,
): { object: BpfObject; prog: BpfProgram; hits: () => number } {
  const path = `${XDP_FILTER_DIR}/xdpfilt_${variant}.o`;
  const maps = ['xdp_stats_map', 'filter_ports', 'filter_ipv4', 'filter_ipv6', 'filter_ethernet'];
  const object = loadObject(path, {
    pinPaths: Object.fromEntries(maps.map((m) => [m, `${pinDir}/${variant}_${m}`])),
  });
  const ports = object.map('filter_ports');
  // key: the __u32 the program builds from udphdr->dest, a network-order port in host-order memory
  const key = new Uint8Array(4);
  key[0] = port >> 8;
  key[1] = port & 0xff;
  const value = Buffer.alloc(8);
  value.writeBigUInt64LE(BigInt(MAP_FLAG_DST | MAP_FLAG_TCP | MAP_FLAG_UDP));
  const cpus = ports.lookupPerCpu(key)!.length;
  ports.update(
    key,
    Array.from({ length: cpus }, () => value),
  );
  const prog = object.program(`xdpfilt_${variant}`);
  const hits = (): number =>
    ports
      .lookupPerCpu(key)!
      .reduce((n, v) => n + Number(v.readBigUInt64LE() >> BigInt(COUNTER_SHIFT)), 0);
  return { object, prog, hits };
}

// ---------------------------------------------------------------------------------------------
// The bench: the parent builds the lab; a child process inside its namespace loads and times

export interface PipelineCostOptions {
  repeat?: number;
  rounds?: number;
  setSize?: number;
  /** Fresh child processes, each loading everything anew and timing `rounds` times; figures
   * are medians over them. */
  loads?: number;
}

export interface PipelineCostResult {
  /** Gross figures (ns/pkt) and the same net of the empty program. */
  tables: BenchTable[];
  notes: string[];
  config: { repeat: number; rounds: number; loads: number };
}

interface Row {
  workload: string;
  sluice: Figure;
  peer: Figure;
  /** The empty program, measured in the same alternation. */
  floor: Figure;
  target?: string;
  /** Timed so that only the kernel's figure means anything (timeChunked, timeMissed). */
  byKernel?: boolean;
}

/** What the child is given: its devices (the last one is the redirect target) and the sizes. */
interface InsideConfig {
  id: string;
  devices: string[];
  repeat: number;
  rounds: number;
  setSize: number;
}

interface InsideResult {
  rows: Row[];
  notes: string[];
}

const REDIRECT_CHUNK = 254;

/**
 * The child's part, run inside the lab namespace (`ip netns exec`: its own mount namespace, so
 * the bpffs Dataplane.open mounts is private and goes with the process): two data planes, the
 * peers, every row timed. Throws if a program returns an unexpected verdict or a counter
 * disagrees with the runs made.
 */
async function measure(config: InsideConfig): Promise<InsideResult> {
  const { repeat, rounds, setSize } = config;
  const notes: string[] = [];
  const rows: Row[] = [];
  const dirs = [`/sys/fs/bpf/${config.id}-big`, `/sys/fs/bpf/${config.id}-small`];
  const xfDir = `/sys/fs/bpf/${config.id}-xf`;
  const [d8, d1k, d4k, dRate, dRedirect, dExpr, dSmall, d1kGrouped, d4kGrouped, target] =
    config.devices;
  const closers: (() => void)[] = [];
  let big: Dataplane | undefined;
  let small: Dataplane | undefined;
  try {
    // The sets: BLOCKED_PREFIX plus random ones, `setSize` in all, and a 10-prefix one.
    let started = performance.now();
    const randoms = randomPrefixes(setSize - 1);
    const randoms6 = randomPrefixes6(SET6_SIZE - 1);
    const bigSet = [BLOCKED_PREFIX, ...randoms, BLOCKED_PREFIX6, ...randoms6];
    const smallSet = [
      BLOCKED_PREFIX,
      ...randoms.slice(0, 9),
      BLOCKED_PREFIX6,
      ...randoms6.slice(0, 9),
    ];
    const rules1k = ruleSet(1024, SET_DROP);
    const xdp = (device: string, rules: RuleSpec[]): AttachmentSpec => ({
      device,
      hook: 'xdp',
      mode: 'native',
      rules: { rules },
    });
    big = await Dataplane.open({ dir: dirs[0] });
    await big.apply({
      sets: [{ name: 'blocklist', prefixes: bigSet }],
      attachments: [
        xdp(d8, ruleSet(8, SET_DROP)),
        xdp(d1k, rules1k),
        xdp(d4k, ruleSet(4096, SET_DROP)),
        xdp(d1kGrouped, ruleSet(1024, SET_DROP, true)),
        xdp(d4kGrouped, ruleSet(4096, SET_DROP, true)),
        xdp(dRate, ruleSet(1024, { ...SET_DROP, action: 'ratelimit', rate: 10_000_000_000 })),
        xdp(
          dRedirect,
          ruleSet(1024, { ...SET_DROP, action: 'redirect', to: target, via: NEXT_HOP }),
        ),
        xdp(dExpr, [{ id: 'dns', filter: EXPRESSION, action: 'drop' }]),
      ],
    });
    small = await Dataplane.open({ dir: dirs[1] });
    await small.apply({
      sets: [{ name: 'blocklist', prefixes: smallSet }],
      attachments: [xdp(dSmall, rules1k)],
    });
    notes.push(
      `setup: the ${setSize.toLocaleString('en')}-prefix set generated and applied with six rule sets in ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
    const prog = (dp: Dataplane, device: string): BpfProgram =>
      dp.attachments.get(`${device}@xdp`)!.program;

    // Peers: the empty program, xdp-filter (both policies), the expression on its own.
    const empty = loadProgram({
      type: 'xdp',
      // r0 = XDP_DROP; exit
      insns: Uint8Array.of(0xb7, 0, 0, 0, XDP_DROP, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0),
      name: 'bench_empty',
    });
    closers.push(() => empty.close());
    mkdirBpffs(xfDir);
    const allow = loadXdpFilter('alw_all', xfDir, 80);
    closers.push(() => (allow.prog.close(), allow.object.close()));
    const deny = loadXdpFilter('dny_all', xfDir, 443);
    closers.push(() => (deny.prog.close(), deny.object.close()));
    const standalone = loadProgram({
      type: 'xdp',
      insns: compileFilterToEbpf(EXPRESSION, {
        context: 'xdp',
        verdict: { kind: 'action', match: XDP_DROP, noMatch: XDP_PASS },
      }).insns,
      name: 'bench_expr',
    });
    closers.push(() => standalone.close());
    // The required work of an expression rule written by hand (bench/c/expr_floor.bpf.c).
    const floorObject = loadObject(
      buildC('expr_floor', [
        '../../bpf/progs/include/parse.h',
        '../../bpf/progs/include/pipeline.h',
        '../../bpf/progs/include/log2.h',
      ]),
    );
    closers.push(() => floorObject.close());
    floorObject.map('ef_ctl').update(Buffer.alloc(4), Buffer.alloc(8));
    const exprFloor = floorObject.program('expr_floor');
    closers.push(() => exprFloor.close());

    const floorOn = (frame: Uint8Array): Subject => ({
      label: 'empty program',
      prog: empty,
      frame,
      expected: XDP_DROP,
    });
    const wall: Timer = (p, data) => timeRun(p, data, repeat);
    const subject = (label: string, p: BpfProgram, frame: Uint8Array, expected: number) => ({
      label,
      prog: p,
      frame,
      expected,
    });
    started = performance.now();

    // 1. Drop by set: sluice (big set, 1,024 rules), the 10-prefix set, xdp-filter both ways.
    const hitsBefore = allow.hits();
    const setHits = (dp: Dataplane, device: string): number =>
      dp
        .counters()
        .find((c) => c.device === device)!
        .rules.find((r) => r.id === 'blocklist')!.packets;
    const setHitsBefore = [setHits(big, d1k), setHits(small, dSmall)];
    const [sBig, sSmall, xAllow, xDeny, floor1] = await bestOf(
      [
        subject('sluice drop-by-set', prog(big, d1k), DROP_FRAME, XDP_DROP),
        subject('sluice 10-prefix set', prog(small, dSmall), DROP_FRAME, XDP_DROP),
        subject('xdp-filter alw_all', allow.prog, DROP_FRAME, XDP_DROP),
        subject('xdp-filter dny_all', deny.prog, DROP_FRAME, XDP_DROP),
        floorOn(DROP_FRAME),
      ],
      rounds,
      wall,
    );
    const runs = rounds * repeat + 1;
    const hits = [
      allow.hits() - hitsBefore,
      setHits(big, d1k) - setHitsBefore[0],
      setHits(small, dSmall) - setHitsBefore[1],
    ];
    if (hits.some((n) => n !== runs))
      throw new Error(
        `bench pipeline-cost: xdp-filter's port, the big and the small set's rule counted ${hits.join(', ')} hits in ${runs} runs each`,
      );
    const setLabel = `${setSize >= 1e6 ? `${setSize / 1e6}M` : setSize.toLocaleString('en')}`;
    rows.push(
      {
        workload: `drop-by-set (${setLabel} set, 1,024 rules) vs xdp-filter alw_all, port hit`,
        sluice: sBig,
        peer: xAllow,
        floor: floor1,
        target: '≤ 1.00',
      },
      {
        workload: `drop-by-set (${setLabel} set, 1,024 rules) vs xdp-filter dny_all, all missed`,
        sluice: sBig,
        peer: xDeny,
        floor: floor1,
        target: '≤ 1.00',
      },
      {
        workload: `drop-by-set: ${setLabel}-prefix set vs 10-prefix set`,
        sluice: sBig,
        peer: sSmall,
        floor: floor1,
        target: '0.90–1.10',
      },
    );

    // 1a. IPv6: the set's 100,000 IPv6 prefixes against the small set's 10.
    const [s6Big, s6Small, floor6] = await bestOf(
      [
        subject('sluice drop-by-set IPv6', prog(big, d1k), DROP6_FRAME, XDP_DROP),
        subject('sluice 10-prefix set IPv6', prog(small, dSmall), DROP6_FRAME, XDP_DROP),
        floorOn(DROP6_FRAME),
      ],
      rounds,
      wall,
    );
    rows.push({
      workload: `drop-by-set IPv6: ${SET6_SIZE.toLocaleString('en')} IPv6 prefixes in the set vs 10`,
      sluice: s6Big,
      peer: s6Small,
      floor: floor6,
      target: '0.90–1.10',
    });

    // 1b. The same with the memo emptied before each packet: what a packet of a new class tuple
    // costs (a flood of spoofed sources still falls in few tuples; this is the worst case).
    const pinnedMemo = openPinned(`${dirs[0]}/att/${d1k}@xdp/sl_memo`);
    if (pinnedMemo.kind !== 'map') throw new Error(`bench pipeline-cost: no sl_memo for ${d1k}`);
    const bigMemo = pinnedMemo.map;
    closers.push(() => bigMemo.close());
    const missRuns = Math.max(200, Math.round(repeat / 100));
    const missSlot = await memoSlotOf(prog(big, d1k), DROP_FRAME, bigMemo);
    const missSubjects = [prog(big, d1k), allow.prog, empty];
    const missed: Figure[] = missSubjects.map(() => ({ wall: Infinity, kernel: Infinity }));
    // rounds alternate the subjects; each keeps its lowest median
    for (let r = 0; r < 3; r++) {
      for (const [i, p] of missSubjects.entries()) {
        const f = await timeMissed(p, DROP_FRAME, missRuns, bigMemo, missSlot);
        missed[i] = {
          wall: Math.min(missed[i].wall, f.wall),
          kernel: Math.min(missed[i].kernel, f.kernel),
        };
      }
    }
    rows.push({
      workload: `drop-by-set (${setLabel} set, 1,024 rules), its memo slot emptied before each packet ¶ vs xdp-filter alw_all`,
      sluice: missed[0],
      peer: missed[1],
      floor: missed[2],
      byKernel: true,
    });

    // 2. Pass-through: the frame matches none of 8, 1,024, 4,096 rules.
    const [p8, p1k, p4k, p1kGrouped, p4kGrouped, floor2] = await bestOf(
      [
        subject('pass 8 rules', prog(big, d8), PASS_FRAME, XDP_PASS),
        subject('pass 1,024 rules', prog(big, d1k), PASS_FRAME, XDP_PASS),
        subject('pass 4,096 rules', prog(big, d4k), PASS_FRAME, XDP_PASS),
        subject('pass 1,024 rules grouped', prog(big, d1kGrouped), PASS_FRAME, XDP_PASS),
        subject('pass 4,096 rules grouped', prog(big, d4kGrouped), PASS_FRAME, XDP_PASS),
        floorOn(PASS_FRAME),
      ],
      rounds,
      wall,
    );
    rows.push(
      {
        workload: 'pass-through: 1,024 rules vs 8 rules',
        sluice: p1k,
        peer: p8,
        floor: floor2,
        target: '≤ 1.50',
      },
      { workload: 'pass-through: 4,096 rules vs 8 rules', sluice: p4k, peer: p8, floor: floor2 },
      {
        workload: 'pass-through: 1,024 rules grouped by kind ‡ vs 8 rules',
        sluice: p1kGrouped,
        peer: p8,
        floor: floor2,
        target: '≤ 1.50',
      },
      {
        workload: 'pass-through: 4,096 rules grouped by kind ‡ vs 8 rules',
        sluice: p4kGrouped,
        peer: p8,
        floor: floor2,
      },
    );

    // 3. Rate limit (a rate no test run reaches: every packet passes) against the rule as drop.
    const limitedBefore = big.counters().find((c) => c.device === dRate)!.limiters[0];
    const [rate, drop3, floor3] = await bestOf(
      [
        subject('ratelimit', prog(big, dRate), DROP_FRAME, XDP_PASS),
        subject('drop', prog(big, d1k), DROP_FRAME, XDP_DROP),
        floorOn(DROP_FRAME),
      ],
      rounds,
      wall,
    );
    const limited = big.counters().find((c) => c.device === dRate)!.limiters[0];
    const passed = limited.passed - limitedBefore.passed;
    if (passed !== runs || limited.dropped !== limitedBefore.dropped)
      throw new Error(
        `bench pipeline-cost: the limiter passed ${passed} and dropped ${limited.dropped - limitedBefore.dropped} of ${runs} runs`,
      );
    rows.push({
      workload: 'ratelimit (passes) vs the same rule as drop',
      sluice: rate,
      peer: drop3,
      floor: floor3,
    });

    // 4. Redirect with a static next hop against the rule as drop, timed in chunks (see timeChunked).
    const actionsOf = (): Record<string, { packets: number }> =>
      big!.counters().find((c) => c.device === dRedirect)!.actions;
    const before = actionsOf();
    const [redirect, drop4, floor4] = await bestOf(
      [
        subject('redirect', prog(big, dRedirect), REDIRECT_FRAME, XDP_REDIRECT),
        subject('drop', prog(big, d1k), REDIRECT_FRAME, XDP_DROP),
        floorOn(REDIRECT_FRAME),
      ],
      rounds,
      (p, data) => timeChunked(p, data, repeat, REDIRECT_CHUNK),
    );
    const after = actionsOf();
    const redirected = after.redirect.packets - before.redirect.packets;
    const chunkedRuns = rounds * Math.ceil(repeat / REDIRECT_CHUNK) * REDIRECT_CHUNK + 1;
    if (redirected !== chunkedRuns)
      throw new Error(`bench pipeline-cost: ${redirected} of ${chunkedRuns} runs redirected`);
    rows.push({
      workload: 'redirect (static via) vs the same rule as drop †',
      sluice: redirect,
      peer: drop4,
      floor: floor4,
      byKernel: true,
    });

    // 5. A tcpdump expression as a rule against the same expression as its own program, and
    // the least any pipeline could do for that rule: parse, the required counters, the
    // expression answered from the parse, by hand in one program.
    const [rule, alone, handFloor, floor5] = await bestOf(
      [
        subject('expression rule', prog(big, dExpr), DNS_FRAME, XDP_DROP),
        subject('standalone filter', standalone, DNS_FRAME, XDP_DROP),
        subject('required work by hand', exprFloor, DNS_FRAME, XDP_DROP),
        floorOn(DNS_FRAME),
      ],
      rounds,
      wall,
    );
    rows.push(
      {
        workload: `expression rule \`${EXPRESSION}\` vs standalone`,
        sluice: rule,
        peer: alone,
        floor: floor5,
        target: '≤ 1.20',
      },
      {
        workload: 'its required work by hand § vs standalone',
        sluice: handFloor,
        peer: alone,
        floor: floor5,
      },
      {
        workload: `expression rule \`${EXPRESSION}\` vs its required work by hand §`,
        sluice: rule,
        peer: handFloor,
        floor: floor5,
      },
    );
    notes.push(
      `timing: ${((performance.now() - started) / 1000).toFixed(1)} s; load average ${loadavg()[0].toFixed(1)} at the end, on ${cpus().length} CPUs: other work shares the machine, and wall time counts the time a run yields the CPU to it`,
    );
    return { rows, notes };
  } finally {
    for (const close of closers.reverse()) close();
    await small?.destroy().catch(() => undefined);
    await big?.destroy().catch(() => undefined);
    rmSync(xfDir, { recursive: true, force: true });
  }
}

/**
 * Builds the lab (one namespace, ten veth pairs), runs the measurement in a child process inside
 * it, and removes the lab. The child runs there so that the test runs' FIB lookups see the lab's
 * tables, not the host's, and its pins live in a bpffs of its own. Throws `LabCommandError` with
 * the child's stderr when it fails.
 */
export async function runPipelineCostBench(
  options: PipelineCostOptions = {},
): Promise<PipelineCostResult> {
  const config: InsideConfig = {
    id: '',
    devices: [],
    repeat: options.repeat || 1_000_000,
    rounds: options.rounds || 3,
    setSize: options.setSize || SET_SIZE,
  };
  const loads = options.loads || 3;
  const lab = new Lab();
  const perLoad: InsideResult[] = [];
  try {
    const ns = await lab.addNamespace('p');
    config.id = lab.id;
    for (let i = 0; i < 10; i++) {
      const [a, b] = [`${lab.id}p${i}`, `${lab.id}q${i}`];
      await lab.exec(ns, ['ip', 'link', 'add', a, 'type', 'veth', 'peer', 'name', b]);
      await lab.exec(ns, ['ip', 'link', 'set', a, 'up']);
      await lab.exec(ns, ['ip', 'link', 'set', b, 'up']);
      config.devices.push(a);
    }
    for (let load = 0; load < loads; load++)
      perLoad.push(await runInside<InsideResult>(lab, ns, import.meta.url, config, 600_000));
  } finally {
    await lab.destroy();
  }
  const { repeat, rounds } = config;
  const result: InsideResult = {
    rows: medianOverLoads(perLoad.map((r) => r.rows)),
    notes: perLoad.flatMap((r, i) => r.notes.map((note) => `load ${i + 1}, ${note}`)),
  };
  const kernel = (_: Row, f: Figure): number => f.kernel;
  const wallUnlessByKernel = (row: Row, f: Figure): number => (row.byKernel ? f.kernel : f.wall);
  const ratio = (row: Row): string => (row.sluice.kernel / row.peer.kernel).toFixed(2);
  const perLoadRatios = result.rows
    .map((row, i) => `${row.workload}: ${perLoad.map((r) => ratio(r.rows[i])).join('/')}`)
    .join('; ');
  /** `net`: minus the row's empty-program figure; `floor`: that figure shown in the row's name. */
  const table = (
    title: string,
    pick: (row: Row, f: Figure) => number,
    o: { net?: boolean; floor?: boolean },
  ): BenchTable => ({
    title,
    unit: 'ns/pkt',
    peer: 'peer',
    rows: result.rows.map((row) => {
      const floor = pick(row, row.floor);
      const minus = o.net ? floor : 0;
      return {
        workload: o.net || o.floor ? `${row.workload} [floor ${floor.toFixed(1)}]` : row.workload,
        sluice: pick(row, row.sluice) - minus,
        peer: pick(row, row.peer) - minus,
        target: row.target,
      };
    }),
  });
  return {
    tables: [
      table(
        `per-packet cost, BPF_PROG_TEST_RUN (${FRAME_BYTES}-byte frame, repeat ${repeat.toLocaleString('en')}, the kernel's per-run figure in whole ns, best of ${rounds} alternating in each of ${loads} loads, median over the loads)`,
        kernel,
        {},
      ),
      table('the same, net of the empty program (XDP_DROP) timed in the same alternation', kernel, {
        net: true,
      }),
      table(
        "cross-check: wall time around the same runs, divided (¶ and † rows: their kernel figure); it includes the XDP dispatcher's two RCU grace periods per call (file header), so it is coarse and high",
        wallUnlessByKernel,
        { floor: true },
      ),
    ],
    notes: [
      `loads: the child ran ${loads} times, each building both data planes and loading every program afresh (a load's code placement alone moves a figure by up to ±15 % here); each figure above is the median over the loads of that load's best of ${rounds}. The gross ratio of each load by the kernel's figure, row by row: ${perLoadRatios}`,
      ...result.notes,
    ],
    config: { repeat, rounds, loads },
  };
}

/** The `npm run bench` section. */
export async function benchPipelineCost(
  options: PipelineCostOptions = {},
): Promise<{ tables: BenchTable[]; notes: string[] }> {
  const { tables, notes, config } = await runPipelineCostBench(options);
  return {
    tables,
    notes: [
      `ns/pkt: the kernel's own per-iteration figure of one BPF_PROG_TEST_RUN of ${config.repeat.toLocaleString('en')} iterations over one 64-byte UDP frame (whole ns, truncated); each row's programs and an empty XDP program (\`r0 = XDP_DROP; exit\`) alternate, the first rotating each round, best of ${config.rounds}, median of that over ${config.loads} loads; net = minus that row's empty-program figure. Not wall time: an XDP test run of more than one iteration installs the program in the kernel's XDP dispatcher and removes it, each after an RCU grace period, so a call returns 16-40 ms late in whole scheduler ticks (measured here: 2 µs for 1 iteration, 16-40 ms for 2), which at this repeat is 16-40 ns a packet that changes from call to call; the wall figures are in the cross-check table`,
      `sluice: two Dataplane instances in a lab namespace, one with a ${SET_SIZE.toLocaleString('en')}-prefix random IPv4 set (half /32, a quarter /24, the rest /16-/31) that also holds ${SET6_SIZE.toLocaleString('en')} random IPv6 prefixes (half /128, a quarter /64, the rest /32-/127, in 2000::/3 outside 2001:db8::/32), one with 10 prefixes of each family; rule sets of 8, 1,024 and 4,096 rules, all but the last on other prefixes, ports, TCP flags, VLAN and ICMP (no frame matches them), the last \`srcSet: blocklist\` with the row's action (drop; ratelimit at 1e10 pps; redirect to a lab veth with a static \`via\` MAC)`,
      "xdp-filter: xdp-tools 1.3 xdpfilt_alw_all.o and xdpfilt_dny_all.o through loadObject, their maps pinned in a private directory; filter_ports[htons(port)] = dst|tcp|udp on every CPU, as `xdp-filter port` writes it. alw_all (policy allow, what `xdp-filter load` picks) has port 80, the frame's: dropped on the port hit after the Ethernet and IPv4 lookups. dny_all (policy deny: rules allow) has port 443: the frame misses all six lookups and takes the default drop; a port hit there would pass",
      `† redirect: ${Math.ceil(1_000_000 / REDIRECT_CHUNK).toLocaleString('en')} test runs of ${REDIRECT_CHUNK} iterations per trial (≥ 1,000,000 in all) and the kernel's own per-run figure (whole ns, truncated) averaged, for all three programs of the row, on a TTL-255 frame: the pipeline decrements the TTL in place and a test run does not restore the frame between iterations, so one long run forwards 254 times and hands the rest to the stack; every run is checked to have redirected`,
      "‡ the same fillers with each kind's rules together (the set rule still last). The fillers' six kinds take turns in the plain rows, so every 64-rule word of the classifier's bit vectors holds rules that leave each dimension open, and a frame matching none still has every word to AND: the walk grows with the rules / 64; grouped, most words drop out at the summaries",
      "checked against the runs made: xdp-filter's port hit counter, the blocklist rule's counter in both data planes, the limiter's passes, the redirect verdict count",
      "the memo: a test run repeats one frame, so after its first iteration every sluice row but the expression's takes its outcome from the per-CPU memo of classification outcomes by class tuple (pipeline.bpf.c, item 2), as steady traffic does; the memo's own cost is in every row. A packet of a tuple not in the memo walks the vectors as it did before there was a memo, then fills its slot: one hash and one 48-byte store more",
      "¶ memo slot emptied: the drop-by-set frame in single-iteration test runs (repeat / 100 of them, at least 200, three alternating rounds, lowest median), the one sl_memo slot the frame takes emptied on every CPU before each run, the same write made before xdp-filter's and the empty program's runs; median of the kernel's per-run figure (whole ns). The walk then ANDs all 16 words of the interleaved rules' vectors, as every packet did before the memo. A run of one iteration after a syscall starts with colder caches than the repeat rows, so these figures compare with each other, not with those rows",
      "set membership as the pipeline looks it up: IPv4 in the range blocks of the address's /16 (the drop frame's /16 holds the blocklist's /24 and random prefixes), IPv6 in those of its /32 (the IPv6 frame's 2001:db8::/32 holds the blocklist's /64 alone: a block of a few ranges in the /32's node, as most of the random prefixes' /32s do; the sets hold no IPv6 prefix of /31 or shorter, so the short-prefix trie is empty)",
      "expression: a rule set of that one rule (the pipeline parses and classifies, stashes its parse and tail-calls the filter bank, which runs the expression inline and tail-calls the resume program; there the bank's bit of the first candidate decides, with no second classification, and the rule, the device and the histogram are counted) against bpf/filter's eBPF of the same expression loaded alone (drop on match)",
      "§ bench/c/expr_floor.bpf.c: one hand-written C program doing only what issue 7 requires of every packet an expression rule decides: read the active generation, parse once (the pipeline's own parse.h, which malformed and truncated frames need), the expression answered from that parse (cheaper than any compiled expression, which reads the frame again), and the counters: the rule's packets, bytes and last hit, the device's packets and bytes by verdict, the size histogram, in two per-CPU lookups (the device's counters and the clock cache in one value). No classification, no tail call. Its ratio to the standalone filter is the least any pipeline can reach on this machine: where it is above 1.20, so is every implementation of the required work.",
      ...notes,
    ],
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv[2] === INSIDE) {
    const result = await measure(JSON.parse(process.argv[3]) as InsideConfig);
    process.stdout.write(JSON.stringify(result) + '\n');
  } else {
    // node --import tsx bench/pipeline-cost.ts [repeat] [set size] [rounds] [loads]: smaller runs
    const [repeat, setSize, rounds, loads] = process.argv.slice(2).map(Number);
    const { tables, notes } = await benchPipelineCost({ repeat, setSize, rounds, loads });
    for (const table of tables) console.log(formatTable(table));
    for (const note of notes) console.log(`- ${note}`);
  }
}
