// Benchmark: the load balancer as users run it (a `sluice serve`, NAT and DSR) against nftables DNAT load balancing, with real TCP through the same lab topology in the same run.
//
// Topology: test/lab/lb-traffic-lab.ts with `balancer: 'daemon'`: a client namespace whose
// sources are 198.51.100.1-254, a balancer namespace, four backend namespaces whose servers
// (node, one process each) answer every TCP line with their name. Nothing of the lab's own runs
// on the balancer's devices; each contender is set up there in turn and removed after its runs:
//  - sluice NAT: a LabDaemon in the balancer namespace, `PUT /v1/config` attaching the pipeline
//    natively on the client-facing device and at tc ingress (tcx) on the four backend-facing
//    ones, then `POST /v1/lb/services` VIP:80 → the four backends' :8080, mode nat.
//  - sluice DSR: the same, VIP:80 → the four backends (port 80, where they hold the VIP on lo).
//  - nftables DNAT: `table ip slbench`, a nat prerouting chain with one rule, VIP:80 →
//    `dnat ip to jhash ip saddr . tcp sport mod 4 map { 0 : b1 . 8080, … }`; conntrack does the
//    reply direction. Removed with `delete table`. nftables has no DSR: the DSR rows set sluice
//    DSR against the same nftables DNAT figures.
// Before each contender's runs the balancer namespace is checked: an XDP program on the
// client-facing device (`ip -j link show`) and sluice's attachments (`GET /v1/config`) exactly
// when sluice runs, an nftables ruleset exactly when nftables runs.
//
// Load: one node process in the client namespace (this file, `load`), two workloads of
// DURATION_MS each:
//  - new connections/s: CONCURRENCY workers, each in turn connects (from the next source,
//    rotating over the 254; the kernel picks the port), sends one line, reads the reply, closes
//    and waits for the close; a connection counts once its close completed;
//  - requests/s: CONCURRENCY persistent connections (opened, and answered once, before the
//    window), each sending the next line as soon as the previous reply arrived.
// Every reply names its server, so each run says which backends took part; connection errors
// and missing replies are counted by message and reported.
//
// CPU per request: the system and softirq jiffies of all CPUs (/proc/stat, USER_HZ 100, so 10 ms
// units; tick-sampled at HZ 250, no IRQ_TIME_ACCOUNTING) between the start and the end of each
// run, divided by the requests (a new connection is one request). On this one VM the client, the
// four servers and the balancer share both CPUs, so the figure includes the client's and the
// servers' TCP stacks and syscalls, and in the new-connection rows their connection set-up and
// teardown; the balancer's softirq work (XDP, tc, forwarding, netfilter and conntrack) is the
// part that differs between contenders, so the difference of two figures is theirs. It also
// includes whatever else the machine runs meanwhile: hence a quiet machine. User time (node) is
// left out. The same time per packet divides by the packets through the balancer's
// client-facing device (rx + tx, `ip -s -j link show`) over the same window. A cross-check less
// exposed to other work sums the system time (/proc/PID/stat, which books softirq run in a
// process's context to it) of every process in the lab's namespaces and of ksoftirqd.
// The node processes keep both CPUs busy, so rates are bounded by the machine's CPU: a cheaper
// balancer shows as a higher rate only by the CPU it leaves to the rest.
//
// Rounds: ROUNDS, the contenders' order rotating each round; in the first, each contender's runs
// follow an unmeasured WARMUP_MS run of each workload. Every figure is the median of its rounds.
// A quiet machine is assumed; the load average before and after is printed.
import { readdirSync, readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { cpus, loadavg } from 'node:os';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import type { LabDaemon } from '../netns-lab/daemon.js';
import { run } from '../netns-lab/exec.js';
import type { LbTrafficLab } from '../test/lab/lb-traffic-lab.js';
import { NetnsScript, writeAnswer } from '../test/helpers/netns-script.js';
import { formatTable, type BenchTable } from './table.js';
import { median } from './stats.js';

const SCRIPT = fileURLToPath(import.meta.url);

const ROUNDS = 3;
const DURATION_MS = 4_000;
const WARMUP_MS = 1_000;
const CONCURRENCY = 64;
/** The client's IPv4 sources used: source4(1) … source4(SOURCES). */
const SOURCES = 254;
/** /proc/stat counts in USER_HZ units (getconf CLK_TCK). */
const USER_HZ = 100;
const NFT_TABLE = 'slbench';

// ---------------------------------------------------------------------------------------------
// The load generator (runs in the client namespace)

type LoadRequest =
  | { op: 'open'; vip: string; port: number; count: number }
  | { op: 'pingpong'; durationMs: number }
  | { op: 'close' }
  | { op: 'connects'; vip: string; port: number; concurrency: number; durationMs: number };

/** One run of the load generator. */
interface LoadResult {
  /** Requests answered (for new connections: connections that got their reply and closed). */
  requests: number;
  /** From the first request to the last answer. */
  ms: number;
  /** Failures by error code or message. */
  errors: Record<string, number>;
  /** Replies by the server that gave them ("b1" …). */
  backends: Record<string, number>;
}

/** The client's n-th source, as the lab's source4() (not imported: the generator stays light). */
function sourceAddress(n: number): string {
  return `198.51.100.${1 + (n % SOURCES)}`;
}

function errorKey(error: unknown): string {
  return (error as NodeJS.ErrnoException).code ?? (error as Error).message ?? String(error);
}

function count(into: Record<string, number>, key: string, by = 1): void {
  into[key] = (into[key] ?? 0) + by;
}

/** A persistent connection: its socket and the reply text not yet split into lines. */
interface PingConn {
  socket: Socket;
  text: string;
  onLine?: (line: string) => void;
  onFail?: (error: unknown) => void;
}

/** Opens `count` connections to vip:port from rotating sources and asks each once. */
async function openConns(
  r: Extract<LoadRequest, { op: 'open' }>,
): Promise<{ conns: PingConn[]; result: LoadResult }> {
  const result: LoadResult = { requests: 0, ms: 0, errors: {}, backends: {} };
  const t0 = performance.now();
  const opened = await Promise.all(
    Array.from(
      { length: r.count },
      (_, i) =>
        new Promise<PingConn | undefined>((done) => {
          const socket = connect({
            host: r.vip,
            port: r.port,
            localAddress: sourceAddress(i),
            noDelay: true,
          });
          const conn: PingConn = { socket, text: '' };
          socket.setEncoding('utf8');
          socket.on('data', (chunk: string) => {
            conn.text += chunk;
            for (let at = conn.text.indexOf('\n'); at >= 0; at = conn.text.indexOf('\n')) {
              const line = conn.text.slice(0, at);
              conn.text = conn.text.slice(at + 1);
              conn.onLine?.(line);
            }
          });
          socket.on('error', (error) => conn.onFail?.(error));
          socket.on('close', () => conn.onFail?.(new Error('closed')));
          const timer = setTimeout(() => conn.onFail?.(new Error('no reply in 5 s')), 5_000);
          conn.onLine = (line) => {
            clearTimeout(timer);
            conn.onLine = conn.onFail = undefined;
            result.requests++;
            count(result.backends, line.split(' ', 1)[0]);
            done(conn);
          };
          conn.onFail = (error) => {
            clearTimeout(timer);
            conn.onLine = conn.onFail = undefined;
            count(result.errors, `open: ${errorKey(error)}`);
            socket.destroy();
            done(undefined);
          };
          socket.once('connect', () => socket.write('hello\n'));
        }),
    ),
  );
  result.ms = performance.now() - t0;
  return { conns: opened.filter((c): c is PingConn => c !== undefined), result };
}

/** Every connection sends a line as soon as its previous one was answered, for `durationMs`. */
function pingPong(conns: PingConn[], durationMs: number): Promise<LoadResult> {
  const result: LoadResult = { requests: 0, ms: 0, errors: {}, backends: {} };
  return new Promise((done) => {
    const t0 = performance.now();
    const deadline = t0 + durationMs;
    let active = conns.length;
    const finish = (): void => {
      clearTimeout(stall);
      result.ms = performance.now() - t0;
      for (const c of conns) c.onLine = c.onFail = undefined;
      done(result);
    };
    const retire = (): void => {
      if (--active === 0) finish();
    };
    // A connection still waiting long after the window is counted as an error, not waited for.
    const stall = setTimeout(() => {
      count(result.errors, 'no reply in 5 s', active);
      finish();
    }, durationMs + 5_000);
    if (active === 0) return finish();
    for (const c of conns) {
      c.onLine = (line) => {
        result.requests++;
        count(result.backends, line.split(' ', 1)[0]);
        if (performance.now() < deadline) c.socket.write('ping\n');
        else {
          c.onLine = c.onFail = undefined;
          retire();
        }
      };
      c.onFail = (error) => {
        c.onLine = c.onFail = undefined;
        count(result.errors, errorKey(error));
        retire();
      };
      c.socket.write('ping\n');
    }
  });
}

/** Connect, one line, its reply, close: `concurrency` at a time, for `durationMs`. */
async function connects(r: Extract<LoadRequest, { op: 'connects' }>): Promise<LoadResult> {
  const result: LoadResult = { requests: 0, ms: 0, errors: {}, backends: {} };
  let next = 0;
  const one = (source: string): Promise<string> =>
    new Promise((done, fail) => {
      const socket = connect({ host: r.vip, port: r.port, localAddress: source, noDelay: true });
      let text = '';
      let backend: string | undefined;
      const timer = setTimeout(() => {
        socket.destroy();
        fail(new Error('no reply in 5 s'));
      }, 5_000);
      socket.setEncoding('utf8');
      socket.once('connect', () => socket.write('ping\n'));
      socket.on('data', (chunk: string) => {
        text += chunk;
        if (backend === undefined && text.includes('\n')) {
          backend = text.split(' ', 1)[0];
          socket.end();
        }
      });
      socket.once('error', (error) => {
        clearTimeout(timer);
        fail(error);
      });
      socket.once('close', () => {
        clearTimeout(timer);
        if (backend === undefined) fail(new Error('closed before a reply'));
        else done(backend);
      });
    });
  const t0 = performance.now();
  const deadline = t0 + r.durationMs;
  await Promise.all(
    Array.from({ length: r.concurrency }, async () => {
      while (performance.now() < deadline) {
        try {
          count(result.backends, await one(sourceAddress(next++)));
          result.requests++;
        } catch (error: unknown) {
          count(result.errors, errorKey(error));
          // a failing path must not spin: back off a little
          await new Promise((w) => setTimeout(w, 10));
        }
      }
    }),
  );
  result.ms = performance.now() - t0;
  return result;
}

async function runLoadScript(): Promise<void> {
  let conns: PingConn[] = [];
  writeAnswer(-1, 'ready');
  for await (const line of createInterface({ input: process.stdin })) {
    const r = JSON.parse(line) as LoadRequest & { id: number };
    try {
      if (r.op === 'open') {
        const opened = await openConns(r);
        conns = opened.conns;
        writeAnswer(r.id, opened.result);
      } else if (r.op === 'pingpong') {
        writeAnswer(r.id, await pingPong(conns, r.durationMs));
      } else if (r.op === 'close') {
        await Promise.all(
          conns.map(
            (c) =>
              new Promise<void>((done) => {
                if (c.socket.destroyed) return done();
                c.socket.once('close', () => done());
                c.socket.end();
                setTimeout(() => {
                  c.socket.destroy();
                  done();
                }, 3_000).unref();
              }),
          ),
        );
        writeAnswer(r.id, conns.length);
        conns = [];
      } else if (r.op === 'connects') {
        writeAnswer(r.id, await connects(r));
      }
    } catch (error: unknown) {
      writeAnswer(r.id, undefined, errorKey(error));
    }
  }
  process.exit(0);
}

/** The load generator in the client namespace: this file, `load`. */
type LoadClient = NetnsScript<LoadRequest>;

/** How long the bench waits for the generator's answer to a request. */
const ANSWER_MS = 60_000;

// ---------------------------------------------------------------------------------------------
// Measurements

/** All CPUs' /proc/stat times, USER_HZ units. */
interface CpuTimes {
  user: number;
  system: number;
  softirq: number;
  busy: number;
  total: number;
}

function cpuTimes(): CpuTimes {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line
    .trim()
    .split(/\s+/)
    .slice(1, 9)
    .map(Number);
  const total = user + nice + system + idle + iowait + irq + softirq + steal;
  return { user: user + nice, system, softirq, busy: total - idle - iowait, total };
}

/** A process's user and system time in USER_HZ units (/proc/PID/stat); zeros when it is gone. */
function processTicks(pid: number): { user: number; system: number } {
  try {
    // the fields after the command's closing parenthesis: utime and stime are the 12th and 13th
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: Number(fields[11]), system: Number(fields[12]) };
  } catch {
    return { user: 0, system: 0 };
  }
}

/** The summed user and system ticks of `pids`. */
function ticksOf(pids: number[]): { user: number; system: number } {
  const sum = { user: 0, system: 0 };
  for (const pid of pids) {
    const t = processTicks(pid);
    sum.user += t.user;
    sum.system += t.system;
  }
  return sum;
}

/** The kernel's softirq threads (ksoftirqd/N). */
function ksoftirqdPids(): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('ksoftirqd/');
      } catch {
        return false;
      }
    })
    .map(Number);
}

type Workload = 'connects' | 'requests';

/** One measured run of one workload under one contender. */
interface Sample {
  perSecond: number;
  requests: number;
  /** System + softirq µs of all CPUs per request. */
  cpuUsPerRequest: number;
  /** User µs of the lab's processes (the node client and servers, the daemon) per request. */
  userUsPerRequest: number;
  /** The sluice daemon's own CPU µs per request (user + system; idle under nftables). */
  daemonUsPerRequest: number;
  /**
   * Cross-check less exposed to other work on the machine: the system time (softirq run in a
   * process's context included) of every process in the lab's namespaces and of ksoftirqd, µs
   * per request.
   */
  labSystemUsPerRequest: number;
  /** System + softirq ns per packet through the client-facing device (rx + tx). */
  cpuNsPerPacket: number;
  packetsPerRequest: number;
  /** Busy share of all CPUs over the run. */
  busy: number;
  errors: Record<string, number>;
  backends: Record<string, number>;
}

interface Contender {
  name: 'sluice nat' | 'sluice dsr' | 'nftables dnat';
  setup(): Promise<void>;
  teardown(): Promise<void>;
  samples: Record<Workload, Sample[]>;
}

// ---------------------------------------------------------------------------------------------
// The bench

export interface LbLabResult {
  contenders: Contender[];
  durationMs: number;
  notes: string[];
}

/**
 * Builds the lab, runs every contender ROUNDS times in rotating order and removes everything
 * again (the daemon, the nftables table, the namespaces), failures included. Throws
 * `LabCommandError` when a tool fails, or when a contender's state is not what it should be.
 */
export async function runLbLabBench(
  options: { rounds?: number; durationMs?: number } = {},
): Promise<LbLabResult> {
  const rounds = options.rounds ?? ROUNDS;
  const durationMs = options.durationMs ?? DURATION_MS;
  // Loaded here, not at the top: the load generator runs this file too and needs none of it.
  const { LbTrafficLab, BASE_CONFIG, VIP4 } = await import('../test/lab/lb-traffic-lab.js');
  const { LabDaemon } = await import('../netns-lab/daemon.js');

  const x: LbTrafficLab = await LbTrafficLab.create({ balancer: 'daemon' });
  let daemon: LabDaemon | undefined;
  let load: LoadClient | undefined;
  let current: Contender | undefined;
  const notes: string[] = [];
  try {
    const id = x.lab.id;
    const clientNs = `${id}c`;
    const front = `${id}lc`;
    const inBalancer = (argv: string[]): Promise<string> => x.lab.exec(x.balancer, argv);

    const d: LabDaemon = new LabDaemon({ netns: x.balancer, logLevel: 'warn' });
    daemon = d;
    x.lab.addCleanup(() => d.destroySync());
    await d.start();
    const api = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
      const res = await d.api(method, path, body);
      if (res.status >= 300)
        throw new Error(`bench lb-lab: ${method} ${path}: ${res.status} ${res.text}`);
      return res.body as T;
    };

    load = new NetnsScript<LoadRequest>(
      x.lab,
      clientNs,
      SCRIPT,
      ['load'],
      'bench lb-lab: load generator',
    );
    await load.ready(30_000);

    const backends = x.servers.map((s) => s.host);
    const sluice = (mode: 'nat' | 'dsr'): Contender => ({
      name: `sluice ${mode}`,
      samples: { connects: [], requests: [] },
      async setup() {
        await api('PUT', '/v1/config', {
          attachments: [
            { device: front, mode: 'native' },
            ...backends.map((_, k) => ({ device: `${id}l${k + 1}`, hook: 'tc-ingress' })),
          ],
          lb: { ipipSource4: BASE_CONFIG.ipipSource4, ipipSource6: BASE_CONFIG.ipipSource6 },
        });
        await api('POST', '/v1/lb/services', {
          vip: VIP4,
          port: 80,
          mode,
          backends: backends.map((b) =>
            mode === 'nat' ? { address: b.ipv4, port: 8080 } : { address: b.ipv4 },
          ),
        });
      },
      async teardown() {
        await api('PUT', '/v1/config', {});
      },
    });
    const nft: Contender = {
      name: 'nftables dnat',
      samples: { connects: [], requests: [] },
      async setup() {
        const map = backends.map((b, k) => `${k} : ${b.ipv4} . 8080`).join(', ');
        // one argument, one transaction
        await inBalancer([
          'nft',
          `add table ip ${NFT_TABLE}; ` +
            `add chain ip ${NFT_TABLE} prerouting { type nat hook prerouting priority dstnat; policy accept; }; ` +
            `add rule ip ${NFT_TABLE} prerouting ip daddr ${VIP4} tcp dport 80 ` +
            `dnat ip to jhash ip saddr . tcp sport mod ${backends.length} map { ${map} }`,
        ]);
      },
      async teardown() {
        await inBalancer(['nft', 'delete', 'table', 'ip', NFT_TABLE]);
      },
    };
    const contenders = [sluice('nat'), sluice('dsr'), nft];

    /** Throws unless exactly `who`'s data path is in place in the balancer namespace. */
    const checkState = async (who: Contender): Promise<void> => {
      const links = JSON.parse(await inBalancer(['ip', '-j', 'link', 'show'])) as {
        ifname: string;
        xdp?: unknown;
      }[];
      const xdp = links.filter((l) => l.xdp !== undefined).map((l) => l.ifname);
      const ruleset = (await inBalancer(['nft', 'list', 'ruleset'])).trim();
      const config = await api<{ attachments?: unknown[]; services?: unknown[] }>(
        'GET',
        '/v1/config',
      );
      const sluiceOn = who !== nft;
      const state = {
        xdp,
        attachments: config.attachments?.length ?? 0,
        services: config.services?.length ?? 0,
        nft: ruleset !== '',
      };
      const want = {
        xdp: sluiceOn ? [front] : [],
        attachments: sluiceOn ? 1 + backends.length : 0,
        services: sluiceOn ? 1 : 0,
        nft: !sluiceOn,
      };
      if (JSON.stringify(state) !== JSON.stringify(want))
        throw new Error(
          `bench lb-lab: the balancer namespace for "${who.name}" is ${JSON.stringify(state)}, not ${JSON.stringify(want)}`,
        );
    };

    const softirqThreads = ksoftirqdPids();
    /** Every process in the lab's namespaces: the generator, the servers, the daemon. */
    const labPids = async (): Promise<number[]> => {
      const lists = await Promise.all(
        ['c', 'l', 'b1', 'b2', 'b3', 'b4'].map((suffix) =>
          run(['ip', 'netns', 'pids', `${id}${suffix}`]),
        ),
      );
      return lists.flatMap((list) => list.split(/\s+/).filter(Boolean).map(Number));
    };

    const frontPackets = async (): Promise<number> => {
      const [link] = JSON.parse(
        await inBalancer(['ip', '-s', '-j', 'link', 'show', 'dev', front]),
      ) as {
        stats64: { rx: { packets: number }; tx: { packets: number } };
      }[];
      return link.stats64.rx.packets + link.stats64.tx.packets;
    };

    /** One run of `workload`: the counters read just outside the generator's window. */
    const measure = async (workload: Workload, ms: number): Promise<Sample> => {
      const port = 80;
      let opened: LoadResult | undefined;
      if (workload === 'requests')
        opened = await load!.request<LoadResult>(
          { op: 'open', vip: VIP4, port, count: CONCURRENCY },
          ANSWER_MS,
        );
      const packets0 = await frontPackets();
      const pids = [...(await labPids()), ...softirqThreads];
      const daemonPid = d.proc?.pid ?? 0;
      const daemon0 = processTicks(daemonPid);
      const lab0 = ticksOf(pids);
      const cpu0 = cpuTimes();
      const result =
        workload === 'requests'
          ? await load!.request<LoadResult>({ op: 'pingpong', durationMs: ms }, ANSWER_MS)
          : await load!.request<LoadResult>(
              { op: 'connects', vip: VIP4, port, concurrency: CONCURRENCY, durationMs: ms },
              ANSWER_MS,
            );
      const cpu1 = cpuTimes();
      const daemon1 = processTicks(daemonPid);
      const lab1 = ticksOf(pids);
      const packets = (await frontPackets()) - packets0;
      if (workload === 'requests') await load!.request<number>({ op: 'close' }, ANSWER_MS);
      for (const [k, n] of Object.entries(opened?.errors ?? {})) count(result.errors, k, n);
      const tick = 1e6 / USER_HZ; // µs
      const sysSoft = (cpu1.system - cpu0.system + cpu1.softirq - cpu0.softirq) * tick;
      const requests = Math.max(result.requests, 1);
      return {
        perSecond: (result.requests / result.ms) * 1000,
        requests: result.requests,
        cpuUsPerRequest: sysSoft / requests,
        userUsPerRequest: ((lab1.user - lab0.user) * tick) / requests,
        daemonUsPerRequest:
          ((daemon1.user - daemon0.user + daemon1.system - daemon0.system) * tick) / requests,
        labSystemUsPerRequest: ((lab1.system - lab0.system) * tick) / requests,
        cpuNsPerPacket: (sysSoft * 1000) / Math.max(packets, 1),
        packetsPerRequest: packets / requests,
        busy: (cpu1.busy - cpu0.busy) / Math.max(cpu1.total - cpu0.total, 1),
        errors: result.errors,
        backends: result.backends,
      };
    };

    const load0 = loadavg()[0].toFixed(1);
    const t0 = performance.now();
    const phases = { setup: 0, check: 0, runs: 0, teardown: 0 };
    const timed = async <T>(phase: keyof typeof phases, fn: () => Promise<T>): Promise<T> => {
      const t = performance.now();
      try {
        return await fn();
      } finally {
        phases[phase] += performance.now() - t;
      }
    };
    for (let round = 0; round < rounds; round++) {
      for (let k = 0; k < contenders.length; k++) {
        const c = contenders[(round + k) % contenders.length];
        current = c;
        await timed('setup', () => c.setup());
        await timed('check', () => checkState(c));
        for (const workload of ['connects', 'requests'] as const) {
          // a contender's first runs follow a short unmeasured one: JIT, caches, first-use
          // allocations, conntrack's and the flow table's first entries
          if (round === 0) await timed('runs', () => measure(workload, WARMUP_MS));
          c.samples[workload].push(await timed('runs', () => measure(workload, durationMs)));
        }
        await timed('teardown', () => c.teardown());
        current = undefined;
      }
    }
    notes.push(
      `time spent: ${Object.entries(phases)
        .map(([k, ms]) => `${k} ${(ms / 1000).toFixed(1)} s`)
        .join(', ')}`,
    );
    const conntrack = await inBalancer(['cat', '/proc/sys/net/netfilter/nf_conntrack_count']).catch(
      () => '?',
    );
    notes.push(
      `${Math.round((performance.now() - t0) / 1000)} s of runs; load average ${load0} before and ${loadavg()[0].toFixed(1)} after, on ${cpus().length} CPUs; conntrack entries left in the balancer namespace after the last nftables run: ${conntrack.trim()} (not flushed between runs: TIME_WAIT entries expire after 120 s)`,
    );
    return { contenders, durationMs, notes };
  } finally {
    await current?.teardown().catch(() => undefined);
    load?.stop();
    await daemon?.destroy().catch(() => undefined);
    await x.destroy();
  }
}

const WORKLOADS: Record<Workload, string> = {
  connects: `new connections/s (connect, 1 request, close; ${CONCURRENCY} at a time)`,
  requests: `requests/s (${CONCURRENCY} persistent connections, ping-pong)`,
};

/** The rate, CPU-per-request and CPU-per-packet tables: sluice NAT and DSR against nftables DNAT. */
export function lbLabTables(result: LbLabResult): BenchTable[] {
  const [nat, dsr, nft] = result.contenders;
  const rows = (figure: (s: Sample) => number) =>
    [nat, dsr].flatMap((c) =>
      (['connects', 'requests'] as const).map((w) => ({
        workload: `${c === nat ? 'nat' : 'dsr (vs DNAT)'}: ${WORKLOADS[w]}`,
        sluice: median(c.samples[w].map(figure)),
        peer: median(nft.samples[w].map(figure)),
      })),
    );
  const rounds = nft.samples.connects.length;
  return [
    {
      title: `L4 load balancing, real TCP through the balancer namespace, ${result.durationMs / 1000} s a run (median of ${rounds} rounds; higher is better)`,
      unit: '/s',
      peer: 'nftables DNAT',
      rows: rows((s) => s.perSecond),
    },
    {
      title: `CPU per request: system + softirq time of all CPUs (client, servers and balancer alike) / requests (median of ${rounds}; lower is better)`,
      unit: 'µs/req',
      peer: 'nftables DNAT',
      rows: rows((s) => s.cpuUsPerRequest),
    },
    {
      title: `the same time per packet through the balancer's client-facing device, rx + tx (median of ${rounds}; lower is better)`,
      unit: 'ns/pkt',
      peer: 'nftables DNAT',
      rows: rows((s) => s.cpuNsPerPacket),
    },
    {
      title: `cross-check: system time (softirq in their context included) of the lab's processes (client, servers, daemon) and ksoftirqd / requests (median of ${rounds}; lower is better)`,
      unit: 'µs/req',
      peer: 'nftables DNAT',
      rows: rows((s) => s.labSystemUsPerRequest),
    },
  ];
}

/** What each contender's runs did beyond the tables: errors, backends, packets, CPU share. */
export function lbLabNotes(result: LbLabResult): string[] {
  const notes: string[] = [
    `method: test/lab/lb-traffic-lab.ts (client → balancer namespace → 4 node servers); one node load generator in the client namespace, sources ${SOURCES} addresses of 198.51.100.0/24, the kernel's source ports; contenders set up in turn in the balancer namespace (sluice: a \`sluice serve\` with lb_xdp native on the client side and lb_nat_tc at tcx ingress towards the backends; nftables: a nat prerouting \`dnat ip to jhash ip saddr . tcp sport mod 4 map {…}\` with conntrack), their order rotating each round, each one's first runs preceded by an unmeasured ${WARMUP_MS / 1000} s run of the workload; medians of the rounds`,
    "CPU: /proc/stat system + softirq of all CPUs over each run (10 ms units, tick-sampled at HZ 250) / requests or packets; it includes the client's and servers' kernel work (and anything else the machine runs), so the difference between two columns is the balancer's; the cross-check counts only the lab's processes and ksoftirqd; nftables has no DSR, so DSR rows set sluice DSR against the NAT figures of nftables",
  ];
  for (const c of result.contenders) {
    for (const w of ['connects', 'requests'] as const) {
      const samples = c.samples[w];
      const errors: Record<string, number> = {};
      const backends: Record<string, number> = {};
      for (const s of samples) {
        for (const [k, n] of Object.entries(s.errors)) count(errors, k, n);
        for (const [k, n] of Object.entries(s.backends)) count(backends, k, n);
      }
      const total = Object.values(backends).reduce((a, b) => a + b, 0);
      const shares = Object.keys(backends)
        .sort()
        .map((b) => `${b} ${((backends[b] / total) * 100).toFixed(0)}%`)
        .join(', ');
      const errorText = Object.entries(errors).length
        ? Object.entries(errors)
            .map(([k, n]) => `${n} × ${k}`)
            .join(', ')
        : 'none';
      const rates = samples.map((s) => Math.round(s.perSecond)).join(', ');
      notes.push(
        `${c.name}, ${w}: ${rates} /s over the rounds; answered by ${Object.keys(backends).length} backends (${shares})${Object.keys(backends).length < 4 ? ' — NOT ALL FOUR' : ''}; errors ${errorText}; ${median(samples.map((s) => s.packetsPerRequest)).toFixed(1)} packets through the client-facing device per request; CPUs ${(median(samples.map((s) => s.busy)) * 100).toFixed(0)}% busy; user time of the lab's processes ${median(samples.map((s) => s.userUsPerRequest)).toFixed(1)} µs/req; the daemon's own CPU ${median(samples.map((s) => s.daemonUsPerRequest)).toFixed(1)} µs/req`,
      );
    }
  }
  return [...notes, ...result.notes];
}

/** The `npm run bench` section. */
export async function benchLbLab(): Promise<{ tables: BenchTable[]; notes: string[] }> {
  const result = await runLbLabBench();
  return { tables: lbLabTables(result), notes: lbLabNotes(result) };
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === SCRIPT) {
  if (process.argv[2] === 'load') {
    // in the client namespace, for runLbLabBench()
    await runLoadScript();
  } else {
    // node --import tsx bench/lb-lab.ts [rounds] [seconds a run]
    const result = await runLbLabBench({
      rounds: Number(process.argv[2]) || ROUNDS,
      durationMs: (Number(process.argv[3]) || DURATION_MS / 1000) * 1000,
    });
    for (const table of lbLabTables(result)) console.log(formatTable(table));
    for (const note of lbLabNotes(result)) console.log(`- ${note}`);
  }
}
