// Replay before deploy: a 100,000-packet capture through a realistic candidate and running configuration, against tcpdump counting the same capture through one expression.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';

import type { DataplaneSpec } from '../controller/dataplane/dataplane.js';
import type { RuleSpec } from '../controller/dataplane/model.js';
import { replayPcap } from '../controller/replay.js';
import { writePcap } from '../test/helpers/packets/index.js';
import { Prng } from '../test/helpers/packets/prng.js';
import { frame } from '../test/helpers/pipeline-frames.js';
import type { BenchTable } from './table.js';

const PACKETS = 100_000;
const ROUNDS = Number(process.env.ROUNDS ?? 3);
/** The expression rule of the configuration, and what tcpdump counts. */
const EXPRESSION =
  'tcp and dst portrange 8000-8999 and tcp[tcpflags] & (tcp-syn|tcp-ack) = tcp-syn';
/** A device no machine has: replay needs none. */
const DEVICE = 'slbench0';

/** Mixed traffic: IPv4 and IPv6 (2:1), TCP and UDP, random sources, ports and sizes. */
function capture(rng: Prng): Uint8Array {
  const records: { data: Uint8Array }[] = [];
  for (let i = 0; i < PACKETS; i++) {
    const v6 = rng.int(3) === 0;
    const src = v6
      ? `2001:db8:${rng.int(65536).toString(16)}::${rng.int(65536).toString(16)}`
      : `${rng.pick([10, 172, 192, 198])}.${rng.int(256)}.${rng.int(256)}.${rng.int(256)}`;
    const dst = v6 ? `2001:db8:ffff::${rng.int(256).toString(16)}` : `203.0.113.${rng.int(256)}`;
    const proto = rng.chance(0.6) ? 6 : 17;
    const dport = rng.pick([22, 53, 80, 443, 8000 + rng.int(2000), rng.int(65536)]);
    records.push({
      data: frame({ src, dst, proto, sport: 1024 + rng.int(64000), dport, payload: rng.int(1200) }),
    });
  }
  return writePcap(records);
}

/** 10,000 IPv4 /24s and /32s under 10/8 and 172.16/12. */
function blocklist(rng: Prng): string[] {
  return Array.from({ length: 10_000 }, (_, i) =>
    i % 2
      ? `10.${rng.int(256)}.${rng.int(256)}.0/24`
      : `172.${16 + rng.int(16)}.${rng.int(256)}.${rng.int(256)}`,
  );
}

/** 100 rules: the blocklist, 97 port and prefix rules, a rate limit and the expression. */
function rules(): RuleSpec[] {
  const out: RuleSpec[] = [{ id: 'blocklist', srcSet: 'blocklist', action: 'drop' }];
  for (let i = 0; i < 97; i++) {
    out.push({
      id: `r${i}`,
      ...(i % 3 === 0 ? { dst: `203.0.113.${i}/32` } : {}),
      proto: i % 2 ? 'tcp' : 'udp',
      dport: i % 4 === 0 ? `${1000 + i * 10}-${1009 + i * 10}` : 2000 + i,
      action: i % 5 === 0 ? 'count' : 'drop',
    });
  }
  out.push({ id: 'dns', proto: 'udp', dport: 53, action: 'ratelimit', rate: '1000pps' });
  // First, so that its counter is every packet the expression matches: tcpdump's count.
  out.push({ id: 'syn-8k', priority: 10, filter: EXPRESSION, action: 'drop' });
  return out;
}

function spec(sets: string[], list: RuleSpec[]): DataplaneSpec {
  return {
    sets: [{ name: 'blocklist', prefixes: sets }],
    attachments: [{ device: DEVICE, hook: 'xdp', rules: { rules: list } }],
  };
}

/** Best wall time of ROUNDS runs, and the CPU time (every thread: user + system) of that run. */
async function best(fn: () => Promise<unknown>): Promise<{ wall: number; cpu: number }> {
  let out = { wall: Infinity, cpu: Infinity };
  for (let r = 0; r < ROUNDS; r++) {
    const cpu = process.cpuUsage();
    const t = performance.now();
    await fn();
    const wall = performance.now() - t;
    const used = process.cpuUsage(cpu);
    if (wall < out.wall) out = { wall, cpu: (used.user + used.system) / 1000 };
  }
  return out;
}

/** Times replayPcap and tcpdump over the same capture; everything is removed at the end. */
export async function benchReplay(): Promise<{ tables: BenchTable[]; notes: string[] }> {
  const load = loadavg();
  const rng = new Prng(0x5e1a7);
  const pcap = capture(rng);
  const prefixes = blocklist(rng);
  const candidate = spec(prefixes, rules());
  // The running configuration: the same, less one port rule and without the expression.
  const running = spec(
    prefixes,
    rules().filter((r) => r.id !== 'r1' && r.id !== 'syn-8k'),
  );
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-replay-'));
  try {
    const file = join(dir, 'capture.pcap');
    writeFileSync(file, pcap);

    const t0 = performance.now();
    const report = await replayPcap(candidate, running, pcap);
    const first = performance.now() - t0;
    const both = await best(() => replayPcap(candidate, running, pcap));
    const alone = await best(() => replayPcap(candidate, undefined, pcap));
    const empty = writePcap([]);
    const loadOnly = await best(() => replayPcap(candidate, running, empty));
    let matched = '';
    const tcpdump = await best(async () => {
      const out = execFileSync('tcpdump', ['-n', '-r', file, '--count', EXPRESSION], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      matched = out.trim();
    });

    const att = report.attachments[0];
    const rate = (t: { wall: number }): string =>
      `${((PACKETS / t.wall) * 1000).toFixed(0)} packets/s`;
    const cpu = (t: { cpu: number }): string => `${t.cpu.toFixed(0)} ms`;
    return {
      tables: [
        {
          title: `replay before deploy: ${PACKETS.toLocaleString('en')} packets, 100 rules, a 10,000-prefix set, one expression (best of ${ROUNDS})`,
          unit: 'ms',
          peer: 'target',
          rows: [
            {
              workload: 'replay candidate + running (both pipelines, every packet)',
              sluice: both.wall,
              peer: 2000,
              target: '≤ 1.00',
            },
          ],
        },
        {
          title: `the same capture through a filter: replay against tcpdump -r FILE --count EXPR (best of ${ROUNDS})`,
          unit: 'ms',
          peer: 'tcpdump',
          rows: [
            { workload: 'replay candidate + running', sluice: both.wall, peer: tcpdump.wall },
            { workload: 'replay candidate only', sluice: alone.wall, peer: tcpdump.wall },
            {
              workload: 'replay an empty capture (build both instances only)',
              sluice: loadOnly.wall,
              peer: tcpdump.wall,
            },
          ],
        },
      ],
      notes: [
        `candidate + running: ${rate(both)}; candidate only: ${rate(alone)}; first replay of the process (cold code): ${first.toFixed(0)} ms`,
        `CPU time of those runs, every thread (the test runs go on worker threads): ${cpu(both)}, ${cpu(alone)}, ${cpu(loadOnly)}; load average at the start ${load.map((l) => l.toFixed(1)).join(' ')} on ${availableParallelism()} CPUs`,
        `building the two throwaway instances (pipeline objects through the verifier, filter bank, set tries, tables): ${loadOnly.wall.toFixed(0)} ms of the total`,
        `candidate verdicts ${JSON.stringify(att.verdicts)}, ${att.changed} changed from running; the expression rule (tried first) matched ${att.rules.find((r) => r.id === 'syn-8k')?.packets} packets, tcpdump counted ${matched}`,
        'verdict totals and changed move a little from run to run: the 1000 pps DNS limit refills in real time, and a replay takes a varying time',
        'tcpdump evaluates one expression per packet in user space (process start included); replay runs the whole pipeline per packet in the kernel with one BPF_PROG_TEST_RUN each, twice',
      ],
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
