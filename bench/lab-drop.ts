// Benchmark: dropping a real trafgen flood on a veth in a lab namespace, six ways (sluice, a bare XDP
// program, xdp-filter, nftables, iptables, a bare TC program): receive-side CPU per packet and rate.
//
// Method. One veth pair (Lab.pair()); trafgen floods 64-byte UDP frames to port 9 from the left
// namespace into the right one, where the method under test drops them. Every method gets REPS
// floods of FLOOD_MS, the methods interleaved (the order rotating each repetition), each set up
// before and removed after its own flood. The figures come from a steady window inside each
// flood (WARMUP_MS after its start, WINDOW_MS long): packets received on the device (rx_packets)
// and the softirq time of all CPUs from /proc/stat. On veth the receive path (the peer's NAPI
// poll with XDP, or the backlog with TC and netfilter) runs as NET_RX softirq, mostly inline in
// the sender's syscall on its CPU, and /proc/stat books it there. Hardware counters are not
// available here (`perf stat -e instructions` says <not supported>), and this kernel has no
// IRQ_TIME_ACCOUNTING, so softirq time is tick-sampled (HZ 250, shown in 10 ms units).
// Each method's own drop counter over the whole flood is checked against rx_packets.
import { readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { pathToFileURL } from 'node:url';

import { attachTc, attachXdp, loadProgram, type BpfLink, type BpfProgram } from '../bpf/index.js';
import { Dataplane } from '../controller/dataplane/dataplane.js';
import { Lab, type Endpoint } from '../netns-lab/lab.js';
import { flood, readDeviceStats, type FloodResult } from '../netns-lab/traffic.js';
import { PrivateShell } from './private-shell.js';
import { alignColumns, formatTable, type BenchTable } from './table.js';
import { median } from './stats.js';

// 11, not fewer: a flood's softirq figure is tick-sampled (some 150-200 ticks of 4 ms in a
// window), so sampling alone puts one flood's figure some ±7 % off; three runs of 5 floods each
// read sluice at 1.34×, 1.12× and 1.12× the bare program, two of 11 at 1.07× and 1.09×.
const REPS = 11;
const FLOOD_MS = 2_000;
const WARMUP_MS = 300;
const WINDOW_MS = 1_500;
/** trafgen's UDP payload: 14 + 20 + 8 + 22 = a 64-byte frame, as in pipeline-cost. */
const PAYLOAD = 22;
const PORT = 9;
/** /proc/stat counts in USER_HZ units (getconf CLK_TCK). */
const USER_HZ = 100;

const XDP_DROP = 1;
const TC_ACT_SHOT = 2;

// ---------------------------------------------------------------------------------------------
// Measurements

/** Per-CPU /proc/stat times in USER_HZ units: [user, nice, system, idle, iowait, irq, softirq]. */
function cpuTimes(): number[][] {
  return readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .filter((line) => /^cpu\d/.test(line))
    .map((line) => line.trim().split(/\s+/).slice(1, 8).map(Number));
}

/** Nanoseconds of column `col` of /proc/stat between two readings, all CPUs. */
function nsBetween(before: number[][], after: number[][], col: number): number {
  return after.reduce((sum, cpu, i) => sum + cpu[col] - before[i][col], 0) * (1e9 / USER_HZ);
}

const SOFTIRQ = 6;

/** One flood under one method. */
interface Sample {
  /** Softirq ns of all CPUs per packet received, in the window. */
  softirqNs: number;
  /** Packets received per second, in the window. */
  rxPps: number;
  /** trafgen's count over the flood's duration. */
  sentPps: number;
  /** Whole flood: rx_packets and the method's own counter. */
  rx: number;
  counted: number;
  sent: number;
}

/** A way of dropping the flood, set up before and torn down after each of its floods. */
interface Method {
  name: string;
  /** Short name for the comparison table. */
  short: string;
  setup(): Promise<void>;
  /** The method's own drop counter, cumulative while set up. */
  count(): Promise<number>;
  teardown(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Floods `to` from `from` once and measures the steady window and the whole flood. */
async function sample(from: Endpoint, to: Endpoint, method: Method): Promise<Sample> {
  const rxOf = async (): Promise<number> => (await readDeviceStats(to.netns, to.device)).rx_packets;
  const rxStart = await rxOf();
  const countStart = await method.count();
  const flooding = flood({
    from,
    nextHop: to,
    to: to.ipv4,
    port: PORT,
    size: PAYLOAD,
    durationMs: FLOOD_MS,
  });
  // handled here so that a flood failing during the window is not an unhandled rejection; the
  // await below throws it
  flooding.catch(() => undefined);
  await sleep(WARMUP_MS);
  const cpu0 = cpuTimes();
  const t0 = process.hrtime.bigint();
  const rx0 = await rxOf();
  await sleep(WINDOW_MS);
  const cpu1 = cpuTimes();
  const t1 = process.hrtime.bigint();
  const rx1 = await rxOf();
  const result: FloodResult = await flooding;
  const rxEnd = await rxOf();
  const counted = (await method.count()) - countStart;
  const packets = rx1 - rx0;
  return {
    softirqNs: nsBetween(cpu0, cpu1, SOFTIRQ) / packets,
    rxPps: packets / (Number(t1 - t0) / 1e9),
    sentPps: result.sent / (FLOOD_MS / 1000),
    rx: rxEnd - rxStart,
    counted,
    sent: result.sent,
  };
}

// ---------------------------------------------------------------------------------------------
// The methods

/** `r0 = imm; exit`. */
function returning(imm: number): Uint8Array {
  return Uint8Array.of(0xb7, 0, 0, 0, imm, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0);
}

function numberAfter(text: string, pattern: RegExp, what: string): number {
  const m = pattern.exec(text);
  if (!m) throw new Error(`bench lab-drop: no ${what} in:\n${text}`);
  return Number(m[1]);
}

interface MethodContext {
  lab: Lab;
  /** The receiving end. */
  at: Endpoint;
  dp: Dataplane;
  /** Where xdp-filter runs: its state stays private to this shell. */
  shell: PrivateShell;
  iptables: string;
  /** Notes the methods add once (what xdp-filter attached). */
  notes: Set<string>;
}

function methods(ctx: MethodContext): Method[] {
  const { lab, at, dp } = ctx;
  const inNs = (argv: string[]): Promise<string> => lab.exec(at.netns, argv);
  const xdpFilter = (...args: string[]): Promise<string> => ctx.shell.run(['xdp-filter', ...args]);
  let xdpProg: BpfProgram | undefined;
  let xdpLink: BpfLink | undefined;
  let tcProg: BpfProgram | undefined;
  let tcLink: BpfLink | undefined;
  const rule = ['udp', 'dport', String(PORT), 'counter', 'drop'];
  const ruleSpec = [
    '-t',
    'raw',
    'PREROUTING',
    '-i',
    at.device,
    '-p',
    'udp',
    '--dport',
    String(PORT),
    '-j',
    'DROP',
  ];
  return [
    {
      name: 'sluice: rule `proto udp, dport 9 → drop` (Dataplane, native XDP)',
      short: 'sluice',
      async setup() {
        await dp.apply({
          attachments: [
            {
              device: at.device,
              hook: 'xdp',
              mode: 'native',
              rules: { rules: [{ id: 'flood', proto: 'udp', dport: PORT, action: 'drop' }] },
            },
          ],
        });
      },
      async count() {
        return dp.counters()[0]?.rules.find((r) => r.id === 'flood')?.packets ?? 0;
      },
      async teardown() {
        await dp.apply({});
      },
    },
    {
      name: 'bare XDP program `return XDP_DROP` (native)',
      short: 'bare XDP_DROP',
      async setup() {
        xdpProg = loadProgram({ type: 'xdp', insns: returning(XDP_DROP), name: 'bench_xdp_drop' });
        xdpLink = attachXdp(xdpProg, at.device, { netns: at.netns, mode: 'native' });
      },
      async count() {
        // veth's own XDP statistics
        const stats = await inNs(['ethtool', '-S', at.device]);
        return [...stats.matchAll(/rx_queue_\d+_xdp_drops:\s*(\d+)/g)].reduce(
          (n, m) => n + Number(m[1]),
          0,
        );
      },
      async teardown() {
        xdpLink?.close();
        xdpProg?.close();
        xdpLink = xdpProg = undefined;
      },
    },
    {
      name: `xdp-filter (load -m native, port ${PORT})`,
      short: 'xdp-filter',
      async setup() {
        await xdpFilter('load', at.device, '-m', 'native');
        await xdpFilter('port', String(PORT));
        const link = await inNs(['ip', 'link', 'show', at.device]);
        const prog = /prog\/xdp id \d+ name (\S+)/.exec(link)?.[1] ?? 'nothing';
        ctx.notes.add(`xdp-filter attached "${prog}" to the device (libxdp's choice)`);
      },
      async count() {
        const status = await xdpFilter('status');
        const ports = status.slice(status.indexOf('Filtered ports'));
        return numberAfter(ports, new RegExp(`^\\s*${PORT}\\s+\\S+\\s+(\\d+)`, 'm'), 'port hits');
      },
      async teardown() {
        await xdpFilter('unload', at.device);
      },
    },
    {
      name: `nftables: netdev ingress chain, \`udp dport ${PORT} counter drop\``,
      short: 'nftables netdev ingress',
      async setup() {
        await inNs(['nft', 'add', 'table', 'netdev', 'slbench']);
        await inNs([
          'nft',
          'add',
          'chain',
          'netdev',
          'slbench',
          'ingress',
          `{ type filter hook ingress device "${at.device}" priority 0 ; policy accept ; }`,
        ]);
        await inNs(['nft', 'add', 'rule', 'netdev', 'slbench', 'ingress'].concat(rule));
      },
      async count() {
        const out = await inNs(['nft', '-j', 'list', 'chain', 'netdev', 'slbench', 'ingress']);
        return numberAfter(out, /"counter":\s*\{"packets":\s*(\d+)/, 'nft counter');
      },
      async teardown() {
        await inNs(['nft', 'delete', 'table', 'netdev', 'slbench']);
      },
    },
    {
      name: `iptables (${ctx.iptables}): raw PREROUTING \`-p udp --dport ${PORT} -j DROP\``,
      short: 'iptables raw PREROUTING',
      async setup() {
        await inNs([ctx.iptables, ...ruleSpec.slice(0, 2), '-A', ...ruleSpec.slice(2)]);
      },
      async count() {
        const out = await inNs([ctx.iptables, '-t', 'raw', '-L', 'PREROUTING', '-v', '-x', '-n']);
        return numberAfter(out, /^\s*(\d+)\s+\d+\s+DROP/m, 'iptables counter');
      },
      async teardown() {
        await inNs([ctx.iptables, ...ruleSpec.slice(0, 2), '-D', ...ruleSpec.slice(2)]);
      },
    },
    {
      name: 'bare TC program `return TC_ACT_SHOT` (clsact ingress, cls_bpf direct-action)',
      short: 'bare TC drop',
      async setup() {
        tcProg = loadProgram({
          type: 'sched_cls',
          insns: returning(TC_ACT_SHOT),
          name: 'bench_tc_drop',
        });
        // legacy rather than tcx: clsact counts what its filter drops; a tcx link counts nothing
        tcLink = attachTc(tcProg, at.device, { netns: at.netns, mode: 'legacy' });
      },
      async count() {
        const out = await inNs(['tc', '-s', 'qdisc', 'show', 'dev', at.device]);
        const clsact = out.slice(out.indexOf('qdisc clsact'));
        return numberAfter(clsact, /dropped (\d+)/, 'clsact drop count');
      },
      async teardown() {
        tcLink?.close();
        tcProg?.close();
        tcLink = tcProg = undefined;
      },
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// The bench

export interface MethodResult {
  name: string;
  short: string;
  samples: Sample[];
}

export interface LabDropResult {
  methods: MethodResult[];
  /** Softirq ns per second of all CPUs with no flood, measured before the first flood. */
  idleSoftirqNsPerS: number;
  notes: string[];
}

/** `iptables-legacy` where it works in a namespace, else `iptables` (nf_tables backend). */
async function pickIptables(lab: Lab, netns: string): Promise<string> {
  try {
    await lab.exec(netns, ['iptables-legacy', '-t', 'raw', '-L', 'PREROUTING', '-n']);
    return 'iptables-legacy';
  } catch {
    return 'iptables';
  }
}

/**
 * Runs every method REPS times, interleaved, on one veth pair, and removes everything again (the
 * lab, the data plane's pins, xdp-filter's state). Throws `LabCommandError` when a tool fails.
 */
export async function runLabDropBench(options: { reps?: number } = {}): Promise<LabDropResult> {
  const reps = options.reps ?? REPS;
  const lab = new Lab();
  const dir = `/sys/fs/bpf/${lab.id}-drop`;
  // on an interrupted run the lab's exit hook removes the pins too (Dataplane.destroy() cannot run there)
  lab.addCleanup(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  let dp: Dataplane | undefined;
  let shell: PrivateShell | undefined;
  let current: Method | undefined;
  const notes: string[] = [];
  try {
    const net = await lab.pair();
    shell = await PrivateShell.start(net.right.netns);
    dp = await Dataplane.open({ dir, netns: net.right.netns });
    const iptables = await pickIptables(lab, net.right.netns);
    const once = new Set<string>();
    const all = methods({ lab, at: net.right, dp, shell, iptables, notes: once });
    const results: MethodResult[] = all.map((m) => ({ name: m.name, short: m.short, samples: [] }));

    const load0 = loadavg()[0].toFixed(1);
    const idle0 = cpuTimes();
    await sleep(1_000);
    const idleSoftirqNsPerS = nsBetween(idle0, cpuTimes(), SOFTIRQ);

    for (let rep = 0; rep < reps; rep++) {
      for (let k = 0; k < all.length; k++) {
        const i = (rep + k) % all.length;
        current = all[i];
        await current.setup();
        try {
          results[i].samples.push(await sample(net.left, net.right, current));
        } finally {
          await current.teardown();
          current = undefined;
        }
      }
    }
    const loaded = await lab.exec(net.right.netns, ['ip', 'link', 'show', net.right.device]);
    if (/prog\/xdp/.test(loaded)) notes.push(`left attached after the runs: ${loaded.trim()}`);
    notes.push(...once);
    notes.push(
      `load average ${load0} before the first flood and ${loadavg()[0].toFixed(1)} after the last, on ${cpus().length} CPUs: other work shares the machine`,
    );
    return { methods: results, idleSoftirqNsPerS, notes };
  } finally {
    await current?.teardown().catch(() => undefined);
    await dp?.destroy().catch(() => undefined);
    shell?.close();
    await lab.destroy();
  }
}

function range(values: number[], digits: number): string {
  return `${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)}`;
}

/** The per-method table: medians with min–max, ratios to the bare XDP program, counter checks. */
export function formatMethodTable(result: LabDropResult): string {
  const bare = result.methods.find((m) => m.short === 'bare XDP_DROP')!;
  const bareCpu = median(bare.samples.map((s) => s.softirqNs));
  const barePps = median(bare.samples.map((s) => s.rxPps));
  const header = [
    'method',
    'softirq ns/pkt',
    'min–max',
    '× bare XDP',
    'rx Mpps',
    'min–max',
    '× bare XDP',
    'sent Mpps',
    'counter = rx_packets',
  ];
  const body = result.methods.map((m) => {
    const cpu = m.samples.map((s) => s.softirqNs);
    const pps = m.samples.map((s) => s.rxPps / 1e6);
    const bad = m.samples.filter((s) => s.counted !== s.rx);
    return [
      m.name,
      median(cpu).toFixed(0),
      range(cpu, 0),
      `${(median(cpu) / bareCpu).toFixed(2)}×`,
      median(pps).toFixed(3),
      range(pps, 3),
      `${((median(pps) * 1e6) / barePps).toFixed(2)}×`,
      median(m.samples.map((s) => s.sentPps / 1e6)).toFixed(3),
      bad.length === 0
        ? `yes (${m.samples.length}/${m.samples.length})`
        : `NO: ${bad.map((s) => `${s.counted} vs ${s.rx}`).join(', ')}`,
    ];
  });
  return [
    `## dropping a trafgen flood on veth, per method (median of ${bare.samples.length} interleaved floods)`,
    '',
    ...alignColumns(header, body, [0, 8]).map((line) => line.trimEnd()),
    '',
  ].join('\n');
}

/** sluice against each other method, as the house's ratio tables. */
export function comparisonTables(result: LabDropResult): BenchTable[] {
  const sluice = result.methods.find((m) => m.short === 'sluice')!;
  const others = result.methods.filter((m) => m !== sluice);
  const target = (short: string): string | undefined =>
    short === 'bare XDP_DROP' ? '≤ 1.10' : short === 'xdp-filter' ? '≤ 1.00' : undefined;
  const cpu = (m: MethodResult): number => median(m.samples.map((s) => s.softirqNs));
  const pps = (m: MethodResult): number => median(m.samples.map((s) => s.rxPps));
  return [
    {
      title: 'receive-side CPU per dropped packet on veth (softirq time of all CPUs, median)',
      unit: 'ns/pkt',
      peer: 'peer',
      rows: others.map((m) => ({
        workload: `sluice vs ${m.short}`,
        sluice: cpu(sluice),
        peer: cpu(m),
        target: target(m.short),
      })),
    },
    {
      title: 'packets received and dropped per second on veth (median; higher is better)',
      unit: 'kpps',
      peer: 'peer',
      rows: others.map((m) => ({
        workload: `sluice vs ${m.short}`,
        sluice: pps(sluice) / 1e3,
        peer: pps(m) / 1e3,
        target: m.short === 'bare XDP_DROP' ? '≥ 0.90' : m.short === 'xdp-filter' ? '≥ 1.00' : '',
      })),
    },
  ];
}

/** Notes stating the method and what the reader should keep in mind. */
export function labDropNotes(result: LabDropResult): string[] {
  const sluice = result.methods.find((m) => m.short === 'sluice')!;
  const pps = median(sluice.samples.map((s) => s.rxPps));
  return [
    `method: one veth pair in two lab namespaces; trafgen (netns-lab flood(), one CPU) sends 64-byte UDP frames to port ${PORT} for ${FLOOD_MS / 1000} s per flood; ${sluice.samples.length} floods per method, interleaved, order rotating; each method set up before and removed after its own flood`,
    `figures from a ${WINDOW_MS / 1000} s window starting ${WARMUP_MS} ms into each flood: rx_packets of the receiving veth, and the softirq time of all CPUs from /proc/stat (tick-sampled: no IRQ_TIME_ACCOUNTING, HZ 250; 10 ms units, about 1-2% of a window), divided; perf has no hardware counters on this machine`,
    "on veth the receive path runs as NET_RX softirq, inline in the sender's sendmsg on its CPU or in ksoftirqd: the peer veth's NAPI poll with its XDP program, or the backlog with TC, nftables and iptables. XDP here is not the driver hook of a NIC: the sender built an skb first, and veth turns it into an xdp_buff (veth_convert_skb_to_xdp_buff copies a frame whose headroom is short of XDP's 256 bytes into a new page), so nftables and TC are context, not rivals",
    `background softirq with no flood: ${(result.idleSoftirqNsPerS / 1e6).toFixed(0)} ms per second of all CPUs (${(result.idleSoftirqNsPerS / pps).toFixed(1)} ns per packet at sluice's rate)`,
    "counters: sluice its rule's packet count, the bare XDP program veth's rx_queue_*_xdp_drops (ethtool -S), xdp-filter its port hit count (`xdp-filter status`), nftables its rule counter, iptables its rule counter, the bare TC program clsact's drop count; each over the whole flood, against rx_packets",
    'xdp-filter runs in one long-lived `ip netns exec` shell with a private bpffs on /sys/fs/bpf and a private /run (bench/private-shell.ts): it keeps its maps under /sys/fs/bpf/xdp-filter and its lock in /run, shared by every xdp-filter on the host otherwise',
    ...result.notes,
  ];
}

/** The `npm run bench` section: prints the per-method table itself, returns the ratio tables. */
export async function benchLabDrop(): Promise<{ tables: BenchTable[]; notes: string[] }> {
  const result = await runLabDropBench();
  process.stdout.write(formatMethodTable(result) + '\n');
  return { tables: comparisonTables(result), notes: labDropNotes(result) };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  // node --import tsx bench/lab-drop.ts [reps]
  const reps = Number(process.argv[2]) || REPS;
  const result = await runLabDropBench({ reps });
  console.log(formatMethodTable(result));
  for (const table of comparisonTables(result)) console.log(formatTable(table));
  for (const note of labDropNotes(result)) console.log(`- ${note}`);
}
