// Benchmark: the load balancer's per-packet cost (lb_xdp) in DSR, IPIP and NAT mode, on a flow-table hit, a miss and an insert, against a minimal hand-written C XDP balancer (bench/c/lb_min.bpf.c), from BPF_PROG_TEST_RUN in the same run; and, as context, against the same C with the bookkeeping the issue requires (lb_req_*).
//
// Method (as bench/pipeline-cost.ts): the kernel's own per-iteration figure (whole ns) of one test
// run of `repeat` iterations over one 64-byte TCP frame; sluice, the C program, a program that
// only returns XDP_TX (the floor) and C with the required bookkeeping alternate, the first
// rotating each round; best of `rounds`. Not wall time: an XDP test run of more than one
// iteration enters and leaves the kernel's XDP dispatcher, each after an RCU grace period, so
// every call returns 16-40 ms late in whole scheduler ticks, 30-80 ns a packet here, changing
// from call to call (pipeline-cost's header); wall time is a cross-check table.
// A test run does not restore the frame between iterations, so the frame must
// come out of one iteration as a frame the next one balances alike:
//  - DSR rewrites only the MACs: the frame is the same every iteration.
//  - NAT rewrites the destination: the three NAT services' VIPs are 192.0.2.11-13 and each
//    one's backends are the other two, so every iteration NATs the previous one's output to
//    the next VIP (the checksums stay valid, so the chain never breaks).
//  - IPIP puts an outer header in front: the next iteration would see IPIP and pass it. Each
//    of these rows' programs is entered through bench/c/reframe.bpf.c, which strips what the
//    frame grew by, writes the original 64 bytes back and tail-calls it; the row's floor is
//    entered the same way, so the restorer and its tail call drop out of the net figures.
//  The cross-checks: every row timed one iteration per test run, by the kernel's own figure
//  averaged over `singles` runs (whole ns, truncated, and it includes one ktime read and the
//  run's cold start); and the wall time of the repeated runs, divided.
// Flow-table rows: "hit" (established: ACK, the entry exists); "miss" (a SYN of a flow never
// inserted, through an lb_xdp loaded with an insert cap of 0 and C's lb_min_*_ni, which never
// insert: the lookup misses, Maglev selects, nothing is written; sluice's also asks its insert
// bucket, which refuses); "insert" (a SYN every iteration that re-selects and writes the entry:
// sluice's entry names a backend that is down, so the SYN leaves it, Maglev picks again and
// the entry is replaced; C's lb_min_*_re ignores its hit and does the same). Every run is
// checked: sluice's event counters against the runs made, C's flow table for entries it must
// not hold, every subject's output frame once
// (checksums, MACs, addresses).
//
// Loads: the same code reads up to ±15 % apart from one load of the objects to the next (the
// JIT places each image anew; both sides move, not together), more than best-of-rounds within a
// load removes. So the child runs `loads` times, each loading both balancers and the floor
// afresh, and every figure shown is the median over the loads of that load's best of `rounds`.
//
// The parent builds the lab (one namespace `sl<hex>n`: a veth pair, 192.0.2.1/24 with
// permanent neighbours 192.0.2.11-13, forwarding on) and runs measure() in a child inside it:
// a test run's ingress device is looked up in the caller's namespace and bpf_fib_lookup
// answers from that device's. Lab.destroy() removes the namespace, failures included.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { pathToFileURL } from 'node:url';

import {
  createMap,
  ifindexOf,
  loadObject,
  loadProgram,
  type BpfMap,
  type BpfObject,
  type BpfProgram,
} from '../bpf/index.js';
import { bpfObjectPath } from '../bpf/progs.js';
import { LbMaps, loadLbObject, type LbForwardMode } from '../controller/lb/lb-maps.js';
import { buildMaglevTable } from '../controller/lb/maglev.js';
import { Lab } from '../netns-lab/lab.js';
import { ipv4 } from '../test/helpers/packets/build.js';
import { ACK, SYN, XDP_TX, checkChecksums, frame } from '../test/helpers/lb-frames.js';
import { buildC } from './build-c.js';
import { formatTable, type BenchTable } from './table.js';
import { medianOverLoads, type Figure } from './stats.js';
import { INSIDE, runInside } from './inside.js';

const FRAME_BYTES = 64;
/** The kernel's BPF_XDP attach type. */
const BPF_XDP = 37;
const TABLE_SIZE = 65537;
const CLIENT = '203.0.113.7';
const IPIP_SOURCE = '192.0.2.64/26';
/** The lab's backends: permanent neighbours of the arm. */
const NEIGHBOURS: Readonly<Record<string, string>> = {
  '192.0.2.11': '02:00:5e:00:53:11',
  '192.0.2.12': '02:00:5e:00:53:12',
  '192.0.2.13': '02:00:5e:00:53:13',
};
/** Backend ids: 1-3 up, 21-23 the same addresses marked down (sluice; C has no states). */
const BACKENDS: readonly { id: number; address: string; down: boolean }[] = [
  { id: 1, address: '192.0.2.11', down: false },
  { id: 2, address: '192.0.2.12', down: false },
  { id: 3, address: '192.0.2.13', down: false },
  { id: 21, address: '192.0.2.11', down: true },
  { id: 22, address: '192.0.2.12', down: true },
  { id: 23, address: '192.0.2.13', down: true },
];

type Mode = 'dsr' | 'ipip' | 'nat';
type Kind = 'hit' | 'miss' | 'insert';

const MODE_NAMES: Record<Mode, string> = { dsr: 'DSR', ipip: 'IPIP', nat: 'NAT' };
const KIND_NAMES: Record<Kind, string> = {
  hit: 'flow-table hit',
  miss: 'new flow: miss, Maglev, no insert (cap 0)',
  insert: 'new flow: Maglev and insert ‡',
};

interface ServiceDef {
  id: number;
  vip: string;
  port: number;
  mode: Mode;
  backends: number[];
}

/**
 * Services 1, 3, 5-7 for the hit and miss rows, 2, 4, 8-10 for the insert rows (backends
 * down). The NAT ones form the chain of the header: each VIP's backends are the other two.
 */
const SERVICES: readonly ServiceDef[] = [
  { id: 1, vip: '203.0.113.10', port: 80, mode: 'dsr', backends: [1, 2, 3] },
  { id: 2, vip: '203.0.113.11', port: 80, mode: 'dsr', backends: [21, 22, 23] },
  { id: 3, vip: '203.0.113.20', port: 80, mode: 'ipip', backends: [1, 2, 3] },
  { id: 4, vip: '203.0.113.21', port: 80, mode: 'ipip', backends: [21, 22, 23] },
  { id: 5, vip: '192.0.2.11', port: 80, mode: 'nat', backends: [2, 3] },
  { id: 6, vip: '192.0.2.12', port: 80, mode: 'nat', backends: [1, 3] },
  { id: 7, vip: '192.0.2.13', port: 80, mode: 'nat', backends: [1, 2] },
  { id: 8, vip: '192.0.2.11', port: 81, mode: 'nat', backends: [22, 23] },
  { id: 9, vip: '192.0.2.12', port: 81, mode: 'nat', backends: [21, 23] },
  { id: 10, vip: '192.0.2.13', port: 81, mode: 'nat', backends: [21, 22] },
];

const FORWARD: Record<Mode, LbForwardMode> = { dsr: 'dsr', ipip: 'ipip', nat: 'nat' };

/** The frame of a row: where it goes, from which client port, with which TCP flags. */
const ROW_FRAMES: Record<Kind, { sport: number; flags: number; insertService: boolean }> = {
  hit: { sport: 40001, flags: ACK, insertService: false },
  miss: { sport: 40002, flags: SYN, insertService: false },
  insert: { sport: 40003, flags: SYN, insertService: true },
};

function rowFrame(mode: Mode, kind: Kind): Uint8Array {
  const { sport, flags, insertService } = ROW_FRAMES[kind];
  const svc = SERVICES.find((s) => s.mode === mode && s.backends[0] > 20 === insertService)!;
  const payload = FRAME_BYTES - 14 - 20 - 20;
  return frame({
    src: CLIENT,
    dst: svc.vip,
    proto: 'tcp',
    sport,
    dport: svc.port,
    flags,
    payload: new Uint8Array(payload).fill(0x41),
  });
}

/** struct xdp_md for a test run: data_end = the frame's length, the ingress device. */
function xdpCtx(length: number, ifindex: number): Buffer {
  const ctx = Buffer.alloc(24);
  ctx.writeUInt32LE(length, 4);
  ctx.writeUInt32LE(ifindex, 12);
  return ctx;
}

function u32Key(n: number): Buffer {
  const k = Buffer.alloc(4);
  k.writeUInt32LE(n);
  return k;
}

// ---------------------------------------------------------------------------------------------
// Setting both balancers up with the same services, backends and tables

function maglevTableOf(backends: number[]): Uint32Array {
  return buildMaglevTable(
    backends.map((id) => ({ id: `backend-${id}`, weight: 1, key: id })),
    TABLE_SIZE,
  );
}

/** lb.o loaded and filled; `capped`: an insert cap of 0 (no flow-table entry is ever written). */
async function setUpSluice(
  path: string,
  capped: boolean,
): Promise<{ object: BpfObject; maps: LbMaps }> {
  const object = loadLbObject({ path });
  const maps = LbMaps.open(object);
  try {
    maps.setConfig({
      ipipSource4: IPIP_SOURCE,
      insertCap: capped ? { rate: 0, burst: 0 } : null,
    });
    for (const b of BACKENDS)
      maps.setBackend(b.id, { address: b.address, state: b.down ? 'down' : 'active' });
    for (const s of SERVICES) {
      maps.setService(
        { vip: s.vip, port: s.port, proto: 'tcp' },
        { id: s.id, hashMode: '5tuple', forwardMode: FORWARD[s.mode], seed: 1000 + s.id },
      );
      await maps.setMaglevTable(s.id, maglevTableOf(s.backends));
    }
    return { object, maps };
  } catch (error: unknown) {
    maps.close();
    object.close();
    throw error;
  }
}

/** min_backend.flags of a down backend (bench/c/lb_min.bpf.c, REQ_BE_DOWN). */
const REQ_BE_DOWN = 2;

/**
 * lb_min.o loaded and filled with the same services, backends and tables (lb_min_* ignore the
 * backends' states, lb_req_* read them).
 */
async function setUpC(path: string): Promise<BpfObject> {
  const object = loadObject(path);
  const opened: BpfMap[] = [];
  const open = (name: string): BpfMap => {
    const m = object.map(name);
    opened.push(m);
    return m;
  };
  try {
    const services = open('min_services');
    const maglev = open('min_maglev');
    const backends = open('min_backends');
    const reqServices = open('req_services');
    for (const b of BACKENDS) {
      const v = Buffer.alloc(8);
      v.set(ipv4(b.address), 0);
      v.writeUInt16LE(b.down ? REQ_BE_DOWN : 0, 6); // read by lb_req_* only
      backends.update(u32Key(b.id), v);
    }
    for (const s of SERVICES) {
      const k = Buffer.alloc(8);
      k.set(ipv4(s.vip), 0);
      k.writeUInt16BE(s.port, 4);
      k[6] = 6;
      const v = Buffer.alloc(8);
      v.writeUInt32LE(s.id, 0);
      v.writeUInt32LE(1000 + s.id, 4);
      services.update(k, v);
      // lb_req_*'s: the same id and seed; no device list, timeouts 0 (as sluice's services here)
      const rv = Buffer.alloc(20);
      rv.set(v, 0);
      reqServices.update(k, rv);
      const inner = createMap({
        type: 'array',
        keySize: 4,
        valueSize: 4,
        maxEntries: TABLE_SIZE,
        name: `min_tbl_${s.id}`,
      });
      try {
        const keys = Uint32Array.from({ length: TABLE_SIZE }, (_, i) => i);
        const values = maglevTableOf(s.backends);
        await inner.updateBatch(
          new Uint8Array(keys.buffer),
          new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
        );
        maglev.setFd(u32Key(s.id), inner);
      } finally {
        inner.close();
      }
    }
    return object;
  } catch (error: unknown) {
    object.close();
    throw error;
  } finally {
    for (const m of opened) m.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Output checks

function macText(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

function ipText(bytes: Uint8Array): string {
  return [...bytes].join('.');
}

/**
 * Throws unless `out` is what `mode` makes of `input`: the FIB's MACs (a backend's, the arm's),
 * every checksum valid, and DSR: the IP packet unchanged; NAT: the destination another chain
 * VIP, the rest unchanged; IPIP: an outer IPv4 header (proto 4) to a backend from the
 * source prefix, the frame inside unchanged.
 */
function checkOutput(label: string, mode: Mode, input: Uint8Array, out: Buffer, armMac: string) {
  const fail = (what: string): never => {
    throw new Error(`bench lb-cost: ${label}: ${what} (frame out ${out.toString('hex')})`);
  };
  const dmac = macText(out.subarray(0, 6));
  if (!Object.values(NEIGHBOURS).includes(dmac)) fail(`destination MAC ${dmac} is no backend's`);
  if (macText(out.subarray(6, 12)) !== armMac) fail(`source MAC is not the arm's ${armMac}`);
  const bad = checkChecksums(out).checks.filter((c) => !c.ok);
  if (bad.length) fail(`bad checksum(s): ${bad.map((c) => c.what).join(', ')}`);
  const inner = input.subarray(14);
  if (mode === 'dsr') {
    if (!out.subarray(14).equals(inner)) fail('the IP packet changed');
  } else if (mode === 'ipip') {
    const outer = out.subarray(14, 34);
    const dst = ipText(outer.subarray(16, 20));
    if (outer[0] !== 0x45 || outer[9] !== 4) fail('no outer IPv4 header with protocol 4');
    if (NEIGHBOURS[dst] !== dmac) fail(`outer destination ${dst} is not the next hop's`);
    if ((outer[15] & 0xc0) !== 0x40 || ipText(outer.subarray(12, 15)) !== '192.0.2')
      fail(`outer source ${ipText(outer.subarray(12, 16))} is outside ${IPIP_SOURCE}`);
    if (!out.subarray(34).equals(inner)) fail('the inner packet changed');
  } else {
    const dst = ipText(out.subarray(30, 34));
    if (NEIGHBOURS[dst] !== dmac || dst === ipText(inner.subarray(16, 20)))
      fail(`destination ${dst}: not another chain VIP behind the next hop`);
  }
}

// ---------------------------------------------------------------------------------------------
// Timing

interface Subject {
  label: string;
  prog: BpfProgram;
}

type Timer = (prog: BpfProgram, data: Uint8Array, ctx: Uint8Array) => Promise<Figure>;

/** One test run of `repeat` iterations: wall time divided, and the kernel's figure. */
function repeatTimer(repeat: number): Timer {
  return async (prog, data, ctx) => {
    const started = process.hrtime.bigint();
    const { durationNs, retval } = await prog.testRun({ data, ctx, repeat });
    if (retval !== XDP_TX)
      throw new Error(`bench lb-cost: ${prog.name} returned ${retval}, expected XDP_TX`);
    return { wall: Number(process.hrtime.bigint() - started) / repeat, kernel: durationNs };
  };
}

/** `calls` test runs of one iteration each: the kernel's figures averaged (wall is mostly the call). */
function singleTimer(calls: number): Timer {
  return async (prog, data, ctx) => {
    let kernel = 0;
    const started = process.hrtime.bigint();
    for (let i = 0; i < calls; i++) kernel += (await prog.testRun({ data, ctx })).durationNs;
    return { wall: Number(process.hrtime.bigint() - started) / calls, kernel: kernel / calls };
  };
}

/** Best of `rounds` per subject and clock, the subjects alternating (the first rotating). */
async function bestOf(
  subjects: Subject[],
  data: Uint8Array,
  ctx: Uint8Array,
  rounds: number,
  time: Timer,
): Promise<Figure[]> {
  const best = subjects.map(() => ({ wall: Infinity, kernel: Infinity }));
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < subjects.length; k++) {
      const i = (r + k) % subjects.length;
      const f = await time(subjects[i].prog, data, ctx);
      best[i] = {
        wall: Math.min(best[i].wall, f.wall),
        kernel: Math.min(best[i].kernel, f.kernel),
      };
    }
  }
  return best;
}

// ---------------------------------------------------------------------------------------------
// The child: inside the lab namespace, load, set up, check and time

interface InsideConfig {
  device: string;
  lbObject: string;
  cObject: string;
  /** bench/c/reframe.bpf.c's object: the IPIP rows' frame restorer. */
  reframeObject: string;
  repeat: number;
  rounds: number;
  singles: number;
}

interface Row {
  mode: Mode;
  kind: Kind;
  /**
   * One test run of `repeat` iterations (wall); the same through the frame restorer; or one
   * iteration per run (kernel figure).
   */
  method: 'repeat' | 'reframed' | 'single';
  sluice: Figure;
  peer: Figure;
  floor: Figure;
  /** C's lb_req_*: lb_min with the bookkeeping the issue requires. */
  req: Figure;
}

interface InsideResult {
  rows: Row[];
  /** The same rows timed one iteration per test run, every mode. */
  singles: Row[];
  /** Instructions after the verifier: lb_xdp, and each C program. */
  sizes: { label: string; sluice: number; peer: number }[];
  notes: string[];
}

/** sluice's lb_events names each row's runs must add to. */
const EXPECTED_EVENTS: Record<Kind, string[]> = {
  hit: ['flowHit', 'tx'],
  miss: ['flowMiss', 'insertCap', 'tx'],
  insert: ['flowStale', 'tx'],
};

/**
 * The child's part, inside the lab namespace: both balancers loaded and filled, every subject's
 * verdict and output checked, every row timed. Throws on a verdict, frame or counter that
 * disagrees with the runs made.
 */
async function measure(config: InsideConfig): Promise<InsideResult> {
  const { repeat, rounds, singles } = config;
  const notes: string[] = [];
  const ifindex = ifindexOf(config.device);
  const armMac = execFileSync('cat', [`/sys/class/net/${config.device}/address`], {
    encoding: 'utf8',
  }).trim();
  const closers: (() => void)[] = [];
  try {
    const open = await setUpSluice(config.lbObject, false);
    closers.push(
      () => open.object.close(),
      () => open.maps.close(),
    );
    const capped = await setUpSluice(config.lbObject, true);
    closers.push(
      () => capped.object.close(),
      () => capped.maps.close(),
    );
    const cObject = await setUpC(config.cObject);
    closers.push(() => cObject.close());
    const programs = new Map<string, BpfProgram>();
    const program = (object: BpfObject, name: string, key = name): BpfProgram => {
      let p = programs.get(key);
      if (!p) {
        p = object.program(name);
        programs.set(key, p);
        closers.push(() => p!.close());
      }
      return p;
    };
    // r0 = XDP_TX; exit. Loaded as libbpf loads SEC("xdp") (expected attach type BPF_XDP), or
    // the frame restorer's program array, owned by such a program, refuses it.
    const floor = loadProgram({
      type: 'xdp',
      insns: Uint8Array.of(0xb7, 0, 0, 0, XDP_TX, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0),
      name: 'bench_tx',
      expectedAttachType: BPF_XDP,
    });
    closers.push(() => floor.close());
    const cFlows = cObject.map('min_flows');
    closers.push(() => cFlows.close());
    const reqFlows = cObject.map('req_flows');
    closers.push(() => reqFlows.close());

    const subjectsOf = (mode: Mode, kind: Kind): Subject[] => {
      const suffix = kind === 'hit' ? '' : kind === 'miss' ? '_ni' : '_re';
      return [
        {
          label: `sluice ${mode} ${kind}`,
          prog:
            kind === 'miss'
              ? program(capped.object, 'lb_xdp', 'lb_xdp capped')
              : program(open.object, 'lb_xdp', 'lb_xdp'),
        },
        { label: `C ${mode} ${kind}`, prog: program(cObject, `lb_min_${mode}${suffix}`) },
        { label: `floor ${mode} ${kind}`, prog: floor },
        { label: `C req ${mode} ${kind}`, prog: program(cObject, `lb_req_${mode}${suffix}`) },
      ];
    };
    const mapsOf = (kind: Kind): LbMaps => (kind === 'miss' ? capped.maps : open.maps);

    // A subject entered through the frame restorer, one restorer per subject and row (each
    // holds its row's frame and its subject).
    const reframers = new Map<string, BpfProgram>();
    const reframed = (s: Subject, data: Uint8Array): Subject => {
      let prog = reframers.get(s.label);
      if (!prog) {
        const object = loadObject(config.reframeObject);
        closers.push(() => object.close());
        const frameMap = object.map('reframe_frame');
        const next = object.map('reframe_next');
        closers.push(
          () => frameMap.close(),
          () => next.close(),
        );
        frameMap.update(u32Key(0), data);
        next.setFd(u32Key(0), s.prog);
        prog = object.program('reframe');
        closers.push(() => prog!.close());
        reframers.set(s.label, prog);
      }
      return { label: `${s.label} (reframed)`, prog };
    };

    // Every subject once on a fresh frame: the verdict and the frame it sends; then a warm-up
    // run of 1,000 iterations (the NAT chain's entries are written then).
    const modes: Mode[] = ['dsr', 'ipip', 'nat'];
    const kinds: Kind[] = ['hit', 'miss', 'insert'];
    for (const mode of modes) {
      for (const kind of kinds) {
        const data = rowFrame(mode, kind);
        const ctx = xdpCtx(data.length, ifindex);
        for (const s of subjectsOf(mode, kind)) {
          const run = await s.prog.testRun({ data, ctx, dataOut: true });
          if (run.retval !== XDP_TX)
            throw new Error(`bench lb-cost: ${s.label} returned ${run.retval}, expected XDP_TX`);
          if (s.prog !== floor) checkOutput(s.label, mode, data, run.dataOut!, armMac);
          await s.prog.testRun({ data, ctx, repeat: mode === 'ipip' ? 1 : 1000 });
          if (mode !== 'ipip') continue;
          // Through the restorer: the same verdict and frame after the 1,000th iteration.
          const r = reframed(s, data);
          const warm = await r.prog.testRun({ data, ctx, repeat: 1000, dataOut: true });
          if (warm.retval !== XDP_TX)
            throw new Error(`bench lb-cost: ${r.label} returned ${warm.retval}, expected XDP_TX`);
          if (s.prog !== floor) checkOutput(r.label, mode, data, warm.dataOut!, armMac);
        }
      }
    }

    const started = performance.now();
    const timeRow = async (mode: Mode, kind: Kind, method: Row['method']): Promise<Row> => {
      const data = rowFrame(mode, kind);
      const ctx = xdpCtx(data.length, ifindex);
      const subjects =
        method === 'reframed'
          ? subjectsOf(mode, kind).map((s) => reframed(s, data))
          : subjectsOf(mode, kind);
      const maps = mapsOf(kind);
      const before = maps.events() as Record<string, number>;
      const timer = method === 'single' ? singleTimer(singles) : repeatTimer(repeat);
      const [sluice, peer, floorFigure, req] = await bestOf(subjects, data, ctx, rounds, timer);
      const after = maps.events() as Record<string, number>;
      const runs = rounds * (method === 'single' ? singles : repeat);
      for (const name of EXPECTED_EVENTS[kind]) {
        if (after[name] - before[name] !== runs)
          throw new Error(
            `bench lb-cost: sluice ${mode} ${kind}: lb_events ${name} counted ${after[name] - before[name]} in ${runs} runs`,
          );
      }
      for (const [name, n] of Object.entries(after)) {
        if (!EXPECTED_EVENTS[kind].includes(name) && n !== before[name])
          throw new Error(
            `bench lb-cost: sluice ${mode} ${kind}: lb_events ${name} counted ${n - before[name]}, expected none`,
          );
      }
      return { mode, kind, method, sluice, peer, floor: floorFigure, req };
    };

    const rows: Row[] = [];
    for (const mode of modes)
      for (const kind of kinds)
        rows.push(await timeRow(mode, kind, mode === 'ipip' ? 'reframed' : 'repeat'));
    const singleRows: Row[] = [];
    for (const mode of modes)
      for (const kind of kinds) singleRows.push(await timeRow(mode, kind, 'single'));

    // C's miss programs never insert: no entry may carry the miss rows' client port; the hit and
    // insert rows' flows must have entries.
    for (const [name, flows] of [
      ['lb_min', cFlows],
      ['lb_req', reqFlows],
    ] as const) {
      const ports = new Set([...flows.keys()].map((key) => key.readUInt16BE(8)));
      if (ports.has(ROW_FRAMES.miss.sport) || !ports.has(ROW_FRAMES.hit.sport))
        throw new Error(
          `bench lb-cost: ${name}'s flow table holds entries of client ports ${[...ports].join(', ')}: expected ${ROW_FRAMES.hit.sport} and ${ROW_FRAMES.insert.sport}, not ${ROW_FRAMES.miss.sport}`,
        );
      if (!ports.has(ROW_FRAMES.insert.sport))
        throw new Error(
          `bench lb-cost: ${name}'s flow table holds no entry of the insert rows' flow`,
        );
    }

    const sluiceInsns = program(open.object, 'lb_xdp').info().xlatedLen / 8;
    const sizes = modes.flatMap((mode) =>
      kinds.map((kind) => ({
        label: `${MODE_NAMES[mode]} ${kind}: lb_xdp vs ${subjectsOf(mode, kind)[1].prog.name}`,
        sluice: sluiceInsns,
        peer: subjectsOf(mode, kind)[1].prog.info().xlatedLen / 8,
      })),
    );
    notes.push(
      `timing: ${((performance.now() - started) / 1000).toFixed(1)} s; load average ${loadavg()[0].toFixed(1)} at the end, on ${cpus().length} CPUs: other work shares the machine, and wall time counts the time a run yields the CPU to it`,
    );
    return { rows, singles: singleRows, sizes, notes };
  } finally {
    for (const close of closers.reverse()) close();
  }
}

// ---------------------------------------------------------------------------------------------
// The parent: the lab, the child, the tables

export interface LbCostOptions {
  /** The load balancer's object; default bpf/progs/lb.o (`npm run build:bpf`). */
  lbObject?: string;
  repeat?: number;
  rounds?: number;
  /** Test runs of one iteration per trial, for the IPIP rows and the cross-check. */
  singles?: number;
  /** Fresh loads of both balancers, each timed `rounds` times; figures are medians over them. */
  loads?: number;
}

/**
 * Builds the lab namespace, runs the measurement in a child process inside it, removes the lab.
 * Throws `LabCommandError` with the child's stderr when it fails (a verdict, an output frame or
 * a counter that disagrees with the runs made).
 */
export async function runLbCostBench(
  options: LbCostOptions = {},
): Promise<{ result: InsideResult; perLoad: InsideResult[]; config: InsideConfig }> {
  const lbObject = options.lbObject ?? bpfObjectPath('lb');
  if (!existsSync(lbObject))
    throw new Error(
      `bench lb-cost: no load balancer object at "${lbObject}"${options.lbObject ? '' : ': run `npm run build:bpf` first'}`,
    );
  const cObject = buildC('lb_min');
  const reframeObject = buildC('reframe');
  const lab = new Lab();
  const config: InsideConfig = {
    device: `${lab.id}a`,
    lbObject,
    cObject,
    reframeObject,
    // 500,000 iterations, not 1,000,000: five loads of them keep the whole run to minutes
    repeat: options.repeat || 500_000,
    rounds: options.rounds || 5,
    singles: options.singles || 2_000,
  };
  const loads = options.loads || 5;
  try {
    const ns = await lab.addNamespace('n');
    const sh = (argv: string[]): Promise<string> => lab.exec(ns, argv);
    await sh(['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    await sh(['ip', 'link', 'add', config.device, 'type', 'veth', 'peer', 'name', `${lab.id}p`]);
    await sh(['ip', 'addr', 'add', '192.0.2.1/24', 'dev', config.device]);
    await sh(['ip', 'link', 'set', `${lab.id}p`, 'up']);
    await sh(['ip', 'link', 'set', config.device, 'up']);
    for (const [address, lladdr] of Object.entries(NEIGHBOURS)) {
      const dev = config.device;
      await sh([
        'ip',
        'neigh',
        'replace',
        address,
        'lladdr',
        lladdr,
        'dev',
        dev,
        'nud',
        'permanent',
      ]);
    }
    const perLoad: InsideResult[] = [];
    for (let load = 0; load < loads; load++) {
      perLoad.push(await runInside<InsideResult>(lab, ns, import.meta.url, config, 1_200_000));
    }
    return { result: medianOfLoads(perLoad), perLoad, config };
  } finally {
    await lab.destroy();
  }
}

/** Every figure of every row the median over the loads; sizes from the first, notes of all. */
function medianOfLoads(loads: InsideResult[]): InsideResult {
  return {
    rows: medianOverLoads(loads.map((r) => r.rows)),
    singles: medianOverLoads(loads.map((r) => r.singles)),
    sizes: loads[0].sizes,
    notes: loads.flatMap((r, i) => r.notes.map((note) => `load ${i + 1}, ${note}`)),
  };
}

/** The `npm run bench` section. */
export async function benchLbCost(
  options: LbCostOptions = {},
): Promise<{ tables: BenchTable[]; notes: string[] }> {
  const { result, perLoad, config } = await runLbCostBench(options);
  const { repeat, rounds, singles } = config;
  const loads = perLoad.length;
  const name = (row: Row): string =>
    `${MODE_NAMES[row.mode]}, ${KIND_NAMES[row.kind]}${row.method === 'reframed' ? ' †' : ''}`;
  /** The figure the tables and targets go by: the kernel's (file header); wall time is a cross-check. */
  const kernel = (f: Figure): number => f.kernel;
  const netRatio = ({ rows }: InsideResult, i: number): number => {
    const net = (f: Figure): number => f.kernel - rows[i].floor.kernel;
    return net(rows[i].sluice) / net(rows[i].peer);
  };
  const table = (
    title: string,
    rows: Row[],
    pick: (f: Figure) => number,
    net: boolean,
  ): BenchTable => ({
    title,
    unit: 'ns/pkt',
    peer: 'C lb_min',
    rows: rows.map((row) => {
      const floor = pick(row.floor);
      const minus = net ? floor : 0;
      return {
        workload: `${name(row)} [floor ${floor.toFixed(1)}]`,
        sluice: pick(row.sluice) - minus,
        peer: pick(row.peer) - minus,
        target: '≤ 1.10',
      };
    }),
  });
  /** Two programs of each repeat row, by the kernel's figure net of the row's floor. */
  const netKernelTable = (
    title: string,
    [subject, a]: [string, (row: Row) => Figure],
    [peer, b]: [string, (row: Row) => Figure],
  ): BenchTable => ({
    title,
    unit: 'ns/pkt',
    subject,
    peer,
    rows: result.rows.map((row) => ({
      workload: name(row),
      sluice: a(row).kernel - row.floor.kernel,
      peer: b(row).kernel - row.floor.kernel,
    })),
  });
  return {
    tables: [
      table(
        `load balancer per-packet cost, IPv4 TCP, BPF_PROG_TEST_RUN (${FRAME_BYTES}-byte frame, repeat ${repeat.toLocaleString('en')}, the kernel's per-run figure in whole ns, best of ${rounds} alternating in each of ${loads} loads, median over the loads; † through the frame restorer)`,
        result.rows,
        kernel,
        false,
      ),
      table(
        'the same, net of the floor (a program that only returns XDP_TX; † entered through the frame restorer too) timed in the same alternation',
        result.rows,
        kernel,
        true,
      ),
      table(
        "cross-check: wall time around the same runs, divided, best of each load, median over the loads; it includes the XDP dispatcher's two RCU grace periods per call (file header), so it is coarse and high",
        result.rows,
        (f) => f.wall,
        false,
      ),
      table(
        `cross-check: every row one iteration per test run, the kernel's figure averaged over ${singles.toLocaleString('en')} runs, best of ${rounds}, median over the loads (whole ns, truncated; includes a ktime read and the run's cold start)`,
        result.singles,
        kernel,
        false,
      ),
      netKernelTable(
        'context, not the target: against C that also does the bookkeeping issue 9 requires of sluice (lb_req_*, §), net of the floor, kernel figure',
        ['sluice', (row) => row.sluice],
        ['C lb_req', (row) => row.req],
      ),
      netKernelTable(
        "what that bookkeeping costs by itself: C lb_req_* against C lb_min_* (the target's peer), net of the floor, kernel figure; the target leaves sluice 10 %",
        ['C lb_req', (row) => row.req],
        ['C lb_min', (row) => row.peer],
      ),
      {
        title:
          'instructions after the verifier (xlated): lb_xdp, the fast path every row takes (plain IPv4 TCP/UDP, every mode); IPv6, VLAN tags, IPv4 options, fragments and SCTP are in lb_xdp_general, which it tail-calls and no row reaches',
        unit: 'insns',
        peer: 'C lb_min',
        rows: result.sizes.map((s) => ({ workload: s.label, sluice: s.sluice, peer: s.peer })),
      },
    ],
    notes: [
      `loads: the child ran ${loads} times, each loading lb.o, the C programs and the floor afresh; each figure above is the median over the loads of that load's best of ${rounds}. The net-of-floor ratio of each load, row by row: ${result.rows
        .map(
          (row, i) =>
            `${MODE_NAMES[row.mode]} ${row.kind} ${perLoad.map((r) => netRatio(r, i).toFixed(2)).join('/')}`,
        )
        .join('; ')}`,
      `ns/pkt: the kernel's own per-iteration figure of one BPF_PROG_TEST_RUN of ${repeat.toLocaleString('en')} iterations over one ${FRAME_BYTES}-byte IPv4 TCP frame (client ${CLIENT}), whole ns, truncated (wall time, inflated by the XDP dispatcher's two RCU grace periods per call, is a cross-check table); lb_xdp, the C program, the floor (\`r0 = XDP_TX; exit\`) and C lb_req (§) alternate, the first rotating each round, best of ${rounds}. Every test run has the lab's veth as its ingress device, inside a throw-away namespace with forwarding on and permanent neighbours for the backends 192.0.2.11-13, so bpf_fib_lookup succeeds and every packet leaves by XDP_TX`,
      `† IPIP: the outer header added by one iteration would make the next one pass the packet, so each program of these rows (the floor too) is entered through bench/c/reframe.bpf.c, which strips the 20 bytes the frame grew by, writes the original ${FRAME_BYTES} bytes back and tail-calls it (about a nanosecond and a half of the gross figures; none of the net). Checked: every run's last verdict XDP_TX, and the frame after 1,000 reframed iterations is the one a single run sends. The one-iteration cross-check table times every row, IPIP included, without the restorer`,
      'DSR: the frame is balanced alike every iteration (only the MACs change). NAT: three services at VIPs 192.0.2.11-13, each balancing over the other two, so each iteration NATs the previous output to the next VIP (the checksums stay valid); the hit row then hits one of at most three flow entries and an existing reverse-NAT entry every time',
      `flow-table rows. hit: an ACK of a flow whose entry exists. miss: a SYN of a flow never inserted, through a second lb_xdp whose lb_config has an insert cap of 0 (rate 0, burst 0: every packet misses, Maglev selects, the bucket refuses, nothing is written; counted insertCap) and through C's lb_min_*_ni, which looks up and never inserts. ‡ insert: a SYN every iteration on a service whose backends are marked down: lb_xdp's entry exists but a SYN leaves a down backend, so Maglev selects again and the entry is rewritten (an LRU update: a node popped from the free list, linked, the old one freed; a first insert does the same without the free); C's lb_min_*_re ignores its hit and does the same update`,
      `both balancers: the same services, backends and Maglev tables (buildMaglevTable, M = ${TABLE_SIZE}, 1-3 backends each); lb_xdp from bpf/progs/lb.o through loadLbObject/LbMaps (shared LRU flow table of 65,536 entries, IPIP outer source ${IPIP_SOURCE}), 5-tuple hash mode`,
      "C lb_min (bench/c/lb_min.bpf.c): parses Ethernet/IPv4 (no options, no fragments)/TCP or UDP; VIP in a HASH map; a 16-byte 5-tuple key in an LRU_HASH; on a miss jhash_3words(src, dst, ports) and the Maglev table through an ARRAY_OF_MAPS like sluice's, but with the table size a compile-time constant (inner maps without BPF_F_INNER_MAP: the verifier inlines the inner lookup, and the modulo is by a constant); backend in an ARRAY; bpf_fib_lookup and the MAC rewrite; XDP_TX. No counters, no VLAN, no IPv6, no timeouts or backend states, no insert cap",
      "§ C lb_req (bench/c/lb_min.bpf.c, lb_req_*): lb_min's work plus, done the cheapest way a hand-written program can, what issue 9 requires of sluice on every packet: the events sluice counts (flow hit, miss, stale, non-SYN miss, insert refused or failed, closing, XDP_TX, redirect) and the coarse clock cached per jiffy, in one per-CPU value; per-service and per-backend packets, bytes and new flows; the service's device list (a flag test here, none set); backend states (removed, down: no new SYN); entry timeouts per service (TCP, UDP; 0 here, as sluice's) and after FIN/RST, the entry refreshed at most once a second; the per-CPU insert cap (off, as for sluice's hit and insert rows; the miss rows' programs never insert and count the refusal). Timed in the same alternation as the other three programs, its first output frame checked like theirs. Its ratio to lb_min is what the required work costs before any design of sluice's: where it nears or passes 1.10, so must sluice",
      "checked against the runs made: lb_xdp's lb_events (flowHit, or flowMiss and insertCap, or flowStale, and tx: each equal to the runs, no other event), C's flow tables (entries for the hit and insert rows' flows, none for the miss rows'), every subject's first output frame (MACs from the FIB, valid checksums, addresses)",
      ...result.notes,
    ],
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv[2] === INSIDE) {
    const result = await measure(JSON.parse(process.argv[3]) as InsideConfig);
    process.stdout.write(JSON.stringify(result) + '\n');
  } else {
    // node --import tsx bench/lb-cost.ts [repeat] [rounds] [singles] [loads]: smaller runs while developing
    const [repeat, rounds, singles, loads] = process.argv.slice(2).map(Number);
    const { tables, notes } = await benchLbCost({ repeat, rounds, singles, loads });
    for (const t of tables) console.log(formatTable(t));
    for (const note of notes) console.log(`- ${note}`);
  }
}
