// Traffic drivers for lab namespaces (ping, counted UDP, TCP via iperf3 or a byte count, a trafgen flood), each bounded.
//
// Every driver has a packet count or byte count and a time bound, and returns exact numbers
// measured by the tools themselves. Children run as `ip netns exec NS …` (iproute2 execs the
// tool, so the child's pid is the tool's); each is killed when its driver returns or throws, on
// process exit, and, since they run in the lab's namespaces, by `Lab.destroy()`.
import { spawn, type ChildProcess } from 'node:child_process';
import { isIPv6 } from 'node:net';
import { join } from 'node:path';
import { packageRoot } from '../bpf/progs.js';
import { LabCommandError, run } from './exec.js';

/** Where a driver runs: a lab namespace. */
export interface Host {
  netns: string;
}

/** A namespace with addresses: the far end of a stream. */
export interface Target extends Host {
  ipv4: string;
  ipv6?: string;
}

export type Family = 'ipv4' | 'ipv6';

/** A driver asked for something its arguments cannot give (an IPv6 stream to a host without IPv6). */
export class LabArgumentError extends Error {
  override name = 'LabArgumentError';
  readonly code = 'LAB_ARGUMENT';
}

// ---------------------------------------------------------------------------------------------
// Children

const children = new Set<ChildProcess>();
let exitHookInstalled = false;

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A tool running in a namespace, its output collected, killed after `timeoutMs` whatever happens. */
class Job {
  stdout = '';
  stderr = '';
  readonly exited: Promise<Exit>;
  private readonly child: ChildProcess;
  private readonly waiters: (() => void)[] = [];
  /** True once the tool has exited and its output is all read. */
  private closed = false;

  constructor(
    readonly argv: string[],
    netns: string,
    timeoutMs: number,
    stdin?: string,
  ) {
    installExitHook();
    const full = ['ip', 'netns', 'exec', netns, ...argv];
    // Its own process group, so a signal reaches what the tool forks too (trafgen's workers).
    this.child = spawn(full[0], full.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    children.add(this.child);
    const timer = setTimeout(() => this.signal('SIGKILL'), timeoutMs);
    this.child.stdout?.setEncoding('utf8').on('data', (text: string) => {
      this.stdout += text;
      for (const wake of this.waiters.splice(0)) wake();
    });
    this.child.stderr?.setEncoding('utf8').on('data', (text: string) => {
      this.stderr += text;
    });
    // A tool that exits before reading its stdin makes the pipe fail with EPIPE; its exit says enough.
    this.child.stdin?.on('error', () => undefined);
    if (stdin !== undefined) this.child.stdin?.end(stdin);
    this.exited = new Promise((resolve) => {
      const done = (code: number | null, signal: NodeJS.Signals | null): void => {
        clearTimeout(timer);
        this.closed = true;
        children.delete(this.child);
        for (const wake of this.waiters.splice(0)) wake();
        resolve({ code, signal, stdout: this.stdout, stderr: this.stderr });
      };
      this.child.once('close', done);
      this.child.once('error', (error) => {
        this.stderr += String(error);
        done(null, null);
      });
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves with the first stdout JSON line that has `event` = `name`; rejects if the tool exits first. */
  async waitForEvent(name: string, timeoutMs: number): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = jsonLines(this.stdout).find((line) => line.event === name);
      if (found) return found;
      if (this.closed || Date.now() > deadline) {
        throw this.failure(
          `no "${name}" line ${this.closed ? 'before exit' : `in ${timeoutMs} ms`}`,
        );
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(0, deadline - Date.now()) + 1);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Resolves once stderr matches `pattern`; rejects if the tool exits first or time runs out. */
  async waitForStderr(pattern: RegExp, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(this.stderr)) {
      if (this.closed || Date.now() > deadline) {
        throw this.failure(
          `no ${String(pattern)} ${this.closed ? 'before exit' : `in ${timeoutMs} ms`}`,
        );
      }
      await sleep(10);
    }
  }

  /** Closes the tool's stdin: the receivers' "stop" signal. */
  endInput(): void {
    this.child.stdin?.end();
  }

  /** Signals the tool's process group (the tool and whatever it forked). */
  signal(signal: NodeJS.Signals): void {
    if (this.running) killGroup(this.child, signal);
  }

  /** Kills the tool (if it still runs) and waits for it. */
  async stop(): Promise<Exit> {
    this.signal('SIGKILL');
    return this.exited;
  }

  failure(why: string): LabCommandError {
    return new LabCommandError(this.argv, `${why}${this.stderr ? `: ${this.stderr.trim()}` : ''}`);
  }
}

function jsonLines(text: string): Record<string, unknown>[] {
  const lines: Record<string, unknown>[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a partial line, still being written
    }
  }
  return lines;
}

/** Kills every child still running when the process exits; labs remove their namespaces after. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of children) killGroup(child, 'SIGKILL');
  });
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, signal);
  } catch {
    // the group is gone already
  }
}

/** Path of netns-lab/tools/<name>, from the source tree and from dist/ alike. */
function tool(name: string): string {
  return join(packageRoot(), 'netns-lab', 'tools', name);
}

function addressOf(target: Target, family: Family, address?: string): string {
  if (address !== undefined) return address;
  if (family === 'ipv4') return target.ipv4;
  if (target.ipv6 === undefined) {
    throw new LabArgumentError(`send IPv6 to "${target.netns}": it has no IPv6 address`);
  }
  return target.ipv6;
}

function familyOf(address: string): Family {
  return isIPv6(address) ? 'ipv6' : 'ipv4';
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// ping

export interface PingOptions {
  /** Echo requests to send; default 5. */
  count?: number;
  /** Seconds between requests; default 0.01 (below 0.2 needs root, which the lab is). */
  intervalSeconds?: number;
  /** Seconds to wait for the last reply; default 1. */
  waitSeconds?: number;
}

export interface PingResult {
  sent: number;
  received: number;
}

/**
 * Pings `address` (IPv4 or IPv6) from `from` and returns ping's own counts of requests sent
 * and replies received. Missing replies are a result, not an error; throws `LabCommandError`
 * when ping cannot run at all.
 */
export async function ping(
  from: Host,
  address: string,
  options: PingOptions = {},
): Promise<PingResult> {
  const count = options.count ?? 5;
  const interval = options.intervalSeconds ?? 0.01;
  const wait = options.waitSeconds ?? 1;
  const deadline = Math.ceil(count * interval + wait + 1);
  const argv = [
    'ping',
    ...(isIPv6(address) ? ['-6'] : ['-4']),
    '-n',
    '-q',
    '-c',
    String(count),
    '-i',
    String(interval),
    '-W',
    String(wait),
    '-w',
    String(deadline),
    address,
  ];
  let output: string;
  try {
    output = await run(argv, { netns: from.netns, timeoutMs: (deadline + 5) * 1000 });
  } catch (error: unknown) {
    // ping exits 1 when replies are missing; its summary still holds the counts.
    output = String((error as { cause?: { stdout?: string } }).cause?.stdout ?? '');
    if (!/packets transmitted/.test(output)) throw error;
  }
  const summary = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(output);
  if (!summary) throw new LabCommandError(argv, `unexpected ping summary: ${output.trim()}`);
  return { sent: Number(summary[1]), received: Number(summary[2]) };
}

// ---------------------------------------------------------------------------------------------
// UDP

export interface UdpReceiverOptions {
  port: number;
  family?: Family;
  /** Address to bind; the family's wildcard by default, so a VIP or a rewritten address counts too. */
  address?: string;
  /** Hard bound on the receiver's life; default 60 s. */
  maxMs?: number;
  /** After `stop()`, wait until no datagram has come for this long; default 200 ms. */
  drainMs?: number;
}

export interface UdpReceived {
  received: number;
  /** UDP payload bytes. */
  bytes: number;
}

/** A receiver counting datagrams in a namespace; `stop()` returns the count. */
export interface UdpReceiver {
  /** Lets in-flight datagrams land (`drainMs` of quiet), then returns the totals. Idempotent. */
  stop(): Promise<UdpReceived>;
}

/**
 * Starts a UDP receiver (netns-lab/tools/udp-receiver.mjs) in `at` and resolves once its socket
 * is bound. Throws `LabCommandError` if it does not come up within 5 s.
 */
export async function startUdpReceiver(
  at: Host,
  options: UdpReceiverOptions,
): Promise<UdpReceiver> {
  const maxMs = options.maxMs ?? 60_000;
  const job = new Job(
    [
      process.execPath,
      tool('udp-receiver.mjs'),
      `--port=${options.port}`,
      `--family=${options.family === 'ipv6' ? 6 : 4}`,
      ...(options.address ? [`--address=${options.address}`] : []),
      `--max-ms=${maxMs}`,
      `--drain-ms=${options.drainMs ?? 200}`,
    ],
    at.netns,
    maxMs + 5_000,
  );
  try {
    await job.waitForEvent('ready', 5_000);
  } catch (error: unknown) {
    await job.stop();
    throw error;
  }
  let result: Promise<UdpReceived> | undefined;
  return {
    stop() {
      result ??= (async () => {
        job.endInput();
        const exit = await job.exited;
        const done = jsonLines(exit.stdout).find((line) => line.event === 'done');
        if (!done)
          throw job.failure(`receiver ended without a count (exit ${exit.code ?? exit.signal})`);
        return { received: Number(done.received), bytes: Number(done.bytes) };
      })();
      return result;
    },
  };
}

export interface UdpSendOptions {
  /** Destination address, IPv4 or IPv6. */
  to: string;
  port: number;
  /** Datagrams to send, exactly. */
  count: number;
  /** UDP payload bytes per datagram; default 64. */
  size?: number;
  /** Datagrams per second; 0 or absent: as fast as the socket takes them. */
  rate?: number;
  sourcePort?: number;
  /** Source address to bind (one of `from`'s addresses); default: the kernel's choice. */
  sourceAddress?: string;
  /**
   * 'fill' (default): every payload `size` bytes of "a". 'random': each datagram's bytes from a
   * PRNG seeded with `seed`, its size drawn from [`size`, `sizeMax`]; the same seed gives the
   * same stream.
   */
  payload?: 'fill' | 'random';
  /** PRNG seed for `payload` 'random'; default 1. */
  seed?: number;
  /** Largest payload for `payload` 'random'; default `size`. */
  sizeMax?: number;
  /**
   * Ends the stream early when aborted: the sender stops, lets the sends in flight complete and
   * reports what it sent, so `sent` stays exact.
   */
  signal?: AbortSignal;
  /** Hard bound; default the paced duration plus 10 s. */
  timeoutMs?: number;
}

export interface UdpSent {
  /** Datagrams the kernel accepted. */
  sent: number;
  /** Sends that failed. */
  errors: number;
  elapsedMs: number;
}

/**
 * Sends exactly `count` datagrams from `from` (netns-lab/tools/udp-sender.mjs) and returns
 * how many the kernel took. Throws `LabCommandError` if the sender fails or reports nothing.
 */
export async function sendUdp(from: Host, options: UdpSendOptions): Promise<UdpSent> {
  const rate = options.rate ?? 0;
  const timeoutMs = options.timeoutMs ?? pacedMs(options.count, rate) + 10_000;
  const job = new Job(
    [
      process.execPath,
      tool('udp-sender.mjs'),
      `--to=${options.to}`,
      `--port=${options.port}`,
      `--count=${options.count}`,
      `--size=${options.size ?? 64}`,
      `--rate=${rate}`,
      ...(options.sourcePort === undefined ? [] : [`--source-port=${options.sourcePort}`]),
      ...(options.sourceAddress === undefined ? [] : [`--source-address=${options.sourceAddress}`]),
      ...(options.payload === undefined ? [] : [`--payload=${options.payload}`]),
      ...(options.seed === undefined ? [] : [`--seed=${options.seed}`]),
      ...(options.sizeMax === undefined ? [] : [`--size-max=${options.sizeMax}`]),
      `--max-ms=${timeoutMs}`,
    ],
    from.netns,
    timeoutMs + 5_000,
  );
  const abort = (): void => job.signal('SIGTERM');
  if (options.signal?.aborted) abort();
  options.signal?.addEventListener('abort', abort);
  const exit = await job.exited.finally(() => options.signal?.removeEventListener('abort', abort));
  const report = jsonLines(exit.stdout).find((line) => 'sent' in line);
  if (exit.code !== 0 || !report) {
    throw job.failure(`sender failed (exit ${exit.code ?? exit.signal})`);
  }
  return {
    sent: Number(report.sent),
    errors: Number(report.errors),
    elapsedMs: Number(report.elapsedMs),
  };
}

function pacedMs(count: number, rate: number): number {
  return rate > 0 ? Math.ceil((count / rate) * 1000) : Math.ceil(count / 10);
}

export interface UdpStreamOptions {
  from: Host;
  /** Where the receiver runs; the datagrams go to its `family` address unless `address` is given. */
  to: Target;
  count: number;
  /** Datagrams per second; 0 or absent: as fast as possible. */
  rate?: number;
  /** UDP payload bytes; default 64. */
  size?: number;
  /** Destination port; default 9000. */
  port?: number;
  sourcePort?: number;
  /** Source address the sender binds; see `UdpSendOptions`. */
  sourceAddress?: string;
  /** Payload pattern, its seed and largest size; see `UdpSendOptions`. */
  payload?: 'fill' | 'random';
  seed?: number;
  sizeMax?: number;
  /** Ends the stream early, exactly; see `UdpSendOptions`. */
  signal?: AbortSignal;
  /** Default 'ipv4'; taken from `address` when that is given. */
  family?: Family;
  /** Destination address overriding `to`'s (a VIP, say); the receiver still runs in `to.netns`. */
  address?: string;
  /** Called once the receiver is listening, just before the sender starts. */
  onStart?: () => void;
}

export interface UdpStreamResult {
  sent: number;
  received: number;
  /** UDP payload bytes received. */
  bytes: number;
  /** `sent - received`; negative if datagrams were duplicated. */
  lost: number;
  /** The sender's time from first to last datagram. */
  elapsedMs: number;
}

/**
 * Runs a receiver in `to` and a sender in `from` together: `count` datagrams at `rate`, then
 * waits for the receiver to go quiet and returns both counts. Throws `LabCommandError` when
 * either tool fails; both are stopped either way.
 */
export async function udpStream(options: UdpStreamOptions): Promise<UdpStreamResult> {
  const address = options.address;
  const family = options.family ?? (address ? familyOf(address) : 'ipv4');
  const destination = addressOf(options.to, family, address);
  const port = options.port ?? 9000;
  const rate = options.rate ?? 0;
  const sendMs = pacedMs(options.count, rate) + 10_000;
  const receiver = await startUdpReceiver(options.to, {
    port,
    family,
    maxMs: sendMs + 10_000,
  });
  let sent: UdpSent;
  try {
    options.onStart?.();
    sent = await sendUdp(options.from, {
      to: destination,
      port,
      count: options.count,
      size: options.size,
      rate,
      sourcePort: options.sourcePort,
      sourceAddress: options.sourceAddress,
      payload: options.payload,
      seed: options.seed,
      sizeMax: options.sizeMax,
      signal: options.signal,
      timeoutMs: sendMs,
    });
  } catch (error: unknown) {
    await receiver.stop().catch(() => undefined);
    throw error;
  }
  const { received, bytes } = await receiver.stop();
  return {
    sent: sent.sent,
    received,
    bytes,
    lost: sent.sent - received,
    elapsedMs: sent.elapsedMs,
  };
}

export interface SteadyStreamOptions extends Omit<UdpStreamOptions, 'count' | 'rate'> {
  /** Datagrams per second. */
  rate: number;
  durationMs: number;
}

/**
 * UDP at a fixed `rate` for `durationMs` (rate × duration datagrams), for hitless-change tests:
 * start it, make the change (after `onStart`), await the result and expect `lost` to be 0.
 * Throws like `udpStream`.
 */
export function steadyStream(options: SteadyStreamOptions): Promise<UdpStreamResult> {
  const { durationMs, ...rest } = options;
  return udpStream({ ...rest, count: Math.max(1, Math.round((options.rate * durationMs) / 1000)) });
}

// ---------------------------------------------------------------------------------------------
// TCP

export interface IperfOptions {
  client: Host;
  server: Target;
  /** Seconds of transfer (iperf3 -t); default 1. */
  seconds?: number;
  family?: Family;
  /** Destination address overriding `server`'s. */
  address?: string;
  /** Default 5201. */
  port?: number;
}

export interface IperfResult {
  /** The test ran to its end without an iperf3 error. */
  ok: boolean;
  /** Bytes the server received (iperf3's end.sum_received.bytes). */
  bytes: number;
  /** Bytes the client sent (end.sum_sent.bytes). */
  sentBytes: number;
  bitsPerSecond: number;
  /** iperf3's error, when `ok` is false. */
  error?: string;
}

/**
 * Runs an iperf3 TCP test from `client` to `server` for `seconds`: a one-off server (`-s -1`)
 * killed at the end anyway, and a client with `-J`. A failed test is a result with `ok` false;
 * throws `LabCommandError` only when the server does not start listening within 5 s.
 */
export async function runIperf(options: IperfOptions): Promise<IperfResult> {
  const seconds = options.seconds ?? 1;
  const port = options.port ?? 5201;
  const family = options.family ?? (options.address ? familyOf(options.address) : 'ipv4');
  const destination = addressOf(options.server, family, options.address);
  const server = new Job(
    ['iperf3', '-s', '-1', '-p', String(port)],
    options.server.netns,
    (seconds + 20) * 1000,
  );
  try {
    await waitForListener(options.server.netns, port, server);
    const client = new Job(
      [
        'iperf3',
        '-c',
        destination,
        '-p',
        String(port),
        '-t',
        String(seconds),
        '-J',
        '--connect-timeout',
        '3000',
      ],
      options.client.netns,
      (seconds + 15) * 1000,
    );
    const exit = await client.exited;
    let report: {
      error?: string;
      end?: {
        sum_sent?: { bytes?: number };
        sum_received?: { bytes?: number; bits_per_second?: number };
      };
    };
    try {
      report = JSON.parse(exit.stdout) as typeof report;
    } catch {
      const why = exit.stderr.trim() || `exit ${exit.code ?? exit.signal}`;
      return { ok: false, bytes: 0, sentBytes: 0, bitsPerSecond: 0, error: why };
    }
    const bytes = report.end?.sum_received?.bytes ?? 0;
    return {
      ok: exit.code === 0 && report.error === undefined,
      bytes,
      sentBytes: report.end?.sum_sent?.bytes ?? 0,
      bitsPerSecond: report.end?.sum_received?.bits_per_second ?? 0,
      ...(report.error === undefined ? {} : { error: report.error }),
    };
  } finally {
    await server.stop();
  }
}

/** Polls `ss` in `netns` until something listens on TCP `port`, or `job` dies, or 5 s pass. */
async function waitForListener(netns: string, port: number, job: Job): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline && job.running) {
    const out = await run(['ss', '-Hltn', `sport = :${port}`], { netns, timeoutMs: 5_000 });
    if (out.trim()) return;
    await sleep(20);
  }
  throw job.failure(`nothing listens on TCP port ${port} in "${netns}"`);
}

export interface TcpTransferOptions {
  from: Host;
  to: Target;
  /** Bytes to write, exactly. */
  bytes: number;
  /** Default 9001. */
  port?: number;
  family?: Family;
  address?: string;
  /** Default 30 s. */
  timeoutMs?: number;
}

export interface TcpTransferResult {
  /** Connected, wrote everything and closed without an error. */
  ok: boolean;
  sent: number;
  received: number;
  error?: string;
}

/**
 * Connects from `from` to a one-connection sink in `to`, writes exactly `bytes` bytes and closes;
 * returns what each side counted (netns-lab/tools/tcp-source.mjs and tcp-sink.mjs). Throws
 * `LabCommandError` when either tool fails to report.
 */
export async function transferTcp(options: TcpTransferOptions): Promise<TcpTransferResult> {
  const port = options.port ?? 9001;
  const family = options.family ?? (options.address ? familyOf(options.address) : 'ipv4');
  const timeoutMs = options.timeoutMs ?? 30_000;
  const sink = new Job(
    [
      process.execPath,
      tool('tcp-sink.mjs'),
      `--port=${port}`,
      `--family=${family === 'ipv6' ? 6 : 4}`,
      `--max-ms=${timeoutMs}`,
    ],
    options.to.netns,
    timeoutMs + 5_000,
  );
  try {
    await sink.waitForEvent('ready', 5_000);
    const source = new Job(
      [
        process.execPath,
        tool('tcp-source.mjs'),
        `--to=${addressOf(options.to, family, options.address)}`,
        `--port=${port}`,
        `--bytes=${options.bytes}`,
        `--max-ms=${timeoutMs}`,
      ],
      options.from.netns,
      timeoutMs + 5_000,
    );
    const sourceExit = await source.exited;
    const report = jsonLines(sourceExit.stdout).find((line) => 'sent' in line);
    if (!report)
      throw source.failure(`source failed (exit ${sourceExit.code ?? sourceExit.signal})`);
    if (!report.ok) sink.signal('SIGTERM');
    const done = await sink.waitForEvent('done', timeoutMs);
    return {
      ok: report.ok === true && done.reason === 'end',
      sent: Number(report.sent),
      received: Number(done.received),
      ...(typeof report.error === 'string' ? { error: report.error } : {}),
    };
  } finally {
    await sink.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// Capture

export interface CaptureOptions {
  device: string;
  /** The pcap file tcpdump writes (namespaces share the file system). */
  file: string;
  /** Packets after which tcpdump stops by itself (tcpdump -c). */
  count: number;
  /** Which way the packets go through `device` (tcpdump -Q); default both. */
  direction?: 'in' | 'out' | 'inout';
  /** A pcap-filter expression of what to keep; default everything. */
  filter?: string;
  /**
   * Bytes kept of each packet (tcpdump -s); default 2048. In immediate mode every packet takes a
   * ring slot of this size, so a small one is what keeps a busy capture from dropping.
   */
  snapLength?: number;
  /** Kernel ring size in KiB (tcpdump -B); default 16384. */
  bufferKiB?: number;
  /** Hard bound on tcpdump's life; default 30 s. */
  maxMs?: number;
}

/** tcpdump's own counts at exit. */
export interface CaptureStats {
  /** Packets written to the file. */
  captured: number;
  /** Packets the kernel's filter let through ("received by filter"). */
  matched: number;
  /** Packets lost because the ring was full ("dropped by kernel"). */
  dropped: number;
}

/** A tcpdump writing a file; `stop()` returns its counts. */
export interface Capture {
  /**
   * Waits up to `graceMs` (default 2000) for tcpdump to reach its count, interrupts it if not, and
   * returns its own counts. Idempotent.
   */
  stop(graceMs?: number): Promise<CaptureStats>;
}

/**
 * Starts tcpdump on `options.device` in `at`, unbuffered (-U, --immediate-mode) and without
 * name resolution, and resolves once it is listening. Throws `LabCommandError` when it does not
 * start within 5 s.
 */
export async function startCapture(at: Host, options: CaptureOptions): Promise<Capture> {
  const maxMs = options.maxMs ?? 30_000;
  const job = new Job(
    [
      'tcpdump',
      '-i',
      options.device,
      '-n',
      '-U',
      '--immediate-mode',
      '-s',
      String(options.snapLength ?? 2048),
      '-B',
      String(options.bufferKiB ?? 16384),
      '-Q',
      options.direction ?? 'inout',
      '-c',
      String(options.count),
      '-w',
      options.file,
      ...(options.filter === undefined ? [] : ['--', options.filter]),
    ],
    at.netns,
    maxMs,
  );
  try {
    await job.waitForStderr(/listening on/, 5_000);
  } catch (error: unknown) {
    await job.stop();
    throw error;
  }
  let result: Promise<CaptureStats> | undefined;
  return {
    stop(graceMs = 2_000) {
      result ??= (async () => {
        const interrupt = setTimeout(() => job.signal('SIGINT'), graceMs);
        const exit = await job.exited.finally(() => clearTimeout(interrupt));
        const count = (what: string): number | undefined => {
          const found = new RegExp(`(\\d+) packets? ${what}`).exec(exit.stderr);
          return found ? Number(found[1]) : undefined;
        };
        const captured = count('captured');
        if (captured === undefined)
          throw job.failure(`tcpdump ended without a count (exit ${exit.code ?? exit.signal})`);
        return {
          captured,
          matched: count('received by filter') ?? captured,
          dropped: count('dropped by kernel') ?? 0,
        };
      })();
      return result;
    },
  };
}

/**
 * Counts the packets of pcap `file` that `expression` matches, by `tcpdump -r` (one line per
 * packet); every packet without an expression. Throws `LabCommandError` when tcpdump fails.
 */
export async function countInCapture(file: string, expression?: string): Promise<number> {
  const out = await run([
    'tcpdump',
    '-r',
    file,
    '-n',
    ...(expression === undefined ? [] : ['--', expression]),
  ]);
  return out.split('\n').filter((line) => line.trim() !== '').length;
}

// ---------------------------------------------------------------------------------------------
// Flood and device counters

export interface FloodOptions {
  /** The sending end: trafgen writes frames straight onto `from.device`. */
  from: Host & { device: string; mac: string; ipv4: string; ipv6?: string };
  /** The next hop, whose MAC the frames are addressed to (trafgen bypasses the stack and its neighbours). */
  nextHop: { mac: string };
  /** Destination IP address, IPv4 or IPv6. */
  to: string;
  /** Source IP address; default `from`'s address of `to`'s family. */
  source?: string;
  /** Frames to send (trafgen -n); default 10 000 000, so `durationMs` is what ends a long flood. */
  count?: number;
  /** Milliseconds after which trafgen is interrupted; default 5000. */
  durationMs?: number;
  /** UDP payload bytes; default 18 (a 60-byte IPv4 frame, the Ethernet minimum without FCS). */
  size?: number;
  /** UDP destination port; default 9. */
  port?: number;
  /** UDP source port; default 40000. */
  sourcePort?: number;
}

export interface FloodResult {
  /** Frames trafgen reports as sent ("packets outgoing"). */
  sent: number;
  /** Bytes trafgen reports as sent. */
  bytes: number;
}

/**
 * Floods UDP from `from` with trafgen (netsniff-ng) on one CPU, until `count` frames are out or
 * `durationMs` passes, and returns trafgen's own count. trafgen runs with --no-sock-mem and
 * --notouch-irq, so it changes no system settings. Throws `LabCommandError` when trafgen fails
 * or prints no count.
 */
export async function flood(options: FloodOptions): Promise<FloodResult> {
  const count = options.count ?? 10_000_000;
  const durationMs = options.durationMs ?? 5_000;
  const config = trafgenConfig(options);
  const argv = [
    'trafgen',
    '--dev',
    options.from.device,
    '--in',
    '-',
    '--num',
    String(count),
    '--cpus',
    '1',
    '--no-sock-mem',
    '--notouch-irq',
  ];
  const job = new Job(argv, options.from.netns, durationMs + 10_000, config);
  // trafgen stops on SIGINT and still prints its totals.
  const interrupt = setTimeout(() => job.signal('SIGINT'), durationMs);
  const exit = await job.exited.finally(() => clearTimeout(interrupt));
  const output = exit.stdout + exit.stderr;
  const packets = /(\d+) packets outgoing/.exec(output);
  const bytes = /(\d+) bytes outgoing/.exec(output);
  if (exit.code !== 0 || !packets) {
    throw job.failure(`trafgen failed (exit ${exit.code ?? exit.signal}): ${output.trim()}`);
  }
  return { sent: Number(packets[1]), bytes: bytes ? Number(bytes[1]) : 0 };
}

/** One trafgen packet: Ethernet to the next hop, IPv4 or IPv6, UDP with its checksum, a payload. */
export function trafgenConfig(options: FloodOptions): string {
  const ipv6 = isIPv6(options.to);
  const source =
    options.source ?? (ipv6 ? options.from.ipv6 : options.from.ipv4) ?? options.from.ipv4;
  const ip = ipv6
    ? `ipv6(sa=${source}, da=${options.to}, hl=64)`
    : `ipv4(sa=${source}, da=${options.to}, ttl=64, df)`;
  const udp = `udp(sp=${options.sourcePort ?? 40000}, dp=${options.port ?? 9})`;
  const payload = `fill(0x41, ${options.size ?? 18})`;
  return `{ eth(sa=${options.from.mac}, da=${options.nextHop.mac}), ${ip}, ${udp}, ${payload} }\n`;
}

/** A device's counters from /sys/class/net/DEV/statistics, kernel spelling (`rx_packets`…). */
export interface DeviceStats {
  rx_packets: number;
  tx_packets: number;
  rx_bytes: number;
  tx_bytes: number;
  rx_dropped: number;
  tx_dropped: number;
  [counter: string]: number;
}

/**
 * Reads every counter of `device` in `netns` from sysfs (`ip netns exec` mounts the namespace's
 * own). Throws `LabCommandError` for an unknown device.
 */
export async function readDeviceStats(netns: string, device: string): Promise<DeviceStats> {
  const dir = `/sys/class/net/${device}/statistics/`;
  const out = await run(['grep', '-r', '.', dir], { netns });
  const stats: Record<string, number> = {};
  for (const line of out.split('\n')) {
    const at = line.lastIndexOf(':');
    if (at > 0) stats[line.slice(dir.length, at)] = Number(line.slice(at + 1));
  }
  return stats as DeviceStats;
}
