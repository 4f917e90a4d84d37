// One health probe of one target (tcp connect, http(s) GET, udp request/reply, icmp echo through
// the `ping` binary), bounded by its timeout and cancellable. A probe never rejects: it resolves
// with { ok, reason }, and only once everything it opened is closed (socket closed, ping exited),
// so a caller that awaits its probes leaves no handle behind.
//
// - tcp: success on connect; the socket is destroyed at once.
// - http/https: GET over a fresh connection (no agent, no keep-alive), Host set to the target's
//   address ("10.1.0.11:8080", "[2001:db8::1]:8080", the port left out when it is the scheme's
//   own); success when the status is in range; the body is not read. https does not verify
//   the certificate (self-signed backends) and sends no SNI (the name is an IP address).
// - udp: one datagram from a connected socket; the first reply decides. The socket is connected
//   so that only the backend's replies count and its ICMP port unreachable fails the probe at
//   once ("udp recvmsg ECONNREFUSED 10.1.0.11:53") instead of waiting for the timeout.
// - icmp: `ping -4|-6 -c 1 -W <s> -n ADDR`, spawned without a shell, LC_ALL=C for stable
//   messages; -W is whole seconds (older iputils take no fraction), so the probe's own timer
//   kills ping at the timeout.
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';

import { escapeBytes, formatStatus, payloadBytes, type CheckSpec } from './health-spec.js';

/** A probe's outcome: `reason` says what happened ("connect ECONNREFUSED 10.1.0.11:80"). */
export interface ProbeResult {
  ok: boolean;
  reason: string;
}

/** What to probe: the address, the port to use (the spec's or the target's), the check. */
export interface ProbeTarget {
  address: string;
  port: number;
  spec: CheckSpec;
}

export interface ProbeOptions {
  /** The ping binary; default "ping" (looked up in PATH). */
  ping?: string;
}

/** How long a reply shown in a reason may be, in bytes. */
const SHOWN_REPLY = 32;
/** How much of ping's output is kept to find its message. */
const PING_OUTPUT = 4096;

/**
 * Runs one probe. Resolves when the probe is over and its socket or process is gone; a probe
 * cut short by `signal` resolves with reason "aborted". Never rejects.
 */
export function runProbe(
  target: ProbeTarget,
  signal: AbortSignal,
  options: ProbeOptions = {},
): Promise<ProbeResult> {
  const { spec } = target;
  switch (spec.type) {
    case 'tcp':
      return bounded(spec.timeout, signal, (finish, closed) => probeTcp(target, finish, closed));
    case 'http':
    case 'https':
      return bounded(spec.timeout, signal, (finish, closed) => probeHttp(target, finish, closed));
    case 'udp':
      return bounded(spec.timeout, signal, (finish, closed) => probeUdp(target, finish, closed));
    case 'icmp':
      return bounded(spec.timeout, signal, (finish, closed) =>
        probeIcmp(target, options.ping ?? 'ping', finish, closed),
      );
  }
}

/** The Host header for a target: brackets around IPv6, the port unless it is the scheme's own. */
export function hostHeader(address: string, port: number, defaultPort: number): string {
  const host = net.isIPv6(address) ? `[${address}]` : address;
  return port === defaultPort ? host : `${host}:${port}`;
}

type Finish = (result: ProbeResult) => void;
/** Starts a probe; returns what tears it down (idempotent). Calls `closed` once all is closed. */
type Start = (finish: Finish, closed: () => void) => () => void;

/**
 * Runs `start` under a timeout and an abort signal. The first of the probe's own outcome, the
 * timeout and the abort wins and tears the probe down; the promise settles on `closed`.
 */
function bounded(timeout: number, signal: AbortSignal, start: Start): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let result: ProbeResult | undefined;
    let teardown: (() => void) | undefined;
    let settled = false;
    const onAbort = (): void => finish({ ok: false, reason: 'aborted' });
    const timer = setTimeout(
      () => finish({ ok: false, reason: `timeout after ${timeout} ms` }),
      timeout,
    );
    timer.unref();

    function finish(r: ProbeResult): void {
      if (result) return;
      result = r;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      teardown?.();
    }
    function closed(): void {
      if (settled) return;
      settled = true;
      finish({ ok: false, reason: 'closed before an answer' });
      // Node emits 'close' of dgram sockets and child processes before libuv has closed their
      // handles (close callbacks run after the check phase): settle a turn of the loop later,
      // so that a settled probe holds nothing.
      setImmediate(() => setImmediate(() => resolve(result as ProbeResult)));
    }

    signal.addEventListener('abort', onAbort, { once: true });
    try {
      teardown = start(finish, closed);
    } catch (error: unknown) {
      finish({ ok: false, reason: (error as Error).message });
      closed();
      return;
    }
    // The probe may have finished (or been aborted) while it was starting.
    if (result) teardown();
    if (signal.aborted) onAbort();
  });
}

function probeTcp(target: ProbeTarget, finish: Finish, closed: () => void): () => void {
  const socket = net.connect({ host: target.address, port: target.port });
  socket.once('connect', () => finish({ ok: true, reason: 'tcp connect succeeded' }));
  socket.once('error', (error) => finish({ ok: false, reason: error.message }));
  socket.once('close', closed);
  return () => socket.destroy();
}

function probeHttp(target: ProbeTarget, finish: Finish, closed: () => void): () => void {
  const spec = target.spec as Extract<CheckSpec, { type: 'http' | 'https' }>;
  const secure = spec.type === 'https';
  const headers = {
    host: hostHeader(target.address, target.port, secure ? 443 : 80),
    'user-agent': 'sluice-health-check',
    accept: '*/*',
    connection: 'close',
  };
  const options: https.RequestOptions = {
    host: target.address,
    port: target.port,
    method: 'GET',
    path: spec.path,
    headers,
    agent: false,
  };
  // Backends mostly have self-signed certificates: the check asks whether the server answers.
  if (secure) options.rejectUnauthorized = false;
  const req = (secure ? https : http).request(options);
  req.once('response', (res) => {
    // The body is not needed; tearing the request down discards it.
    res.on('error', () => undefined);
    const status = res.statusCode ?? 0;
    if (status >= spec.status.min && status <= spec.status.max) {
      finish({ ok: true, reason: `http status ${status}` });
    } else {
      finish({
        ok: false,
        reason: `http status ${status}, expected ${formatStatus(spec.status)}`,
      });
    }
  });
  req.on('error', (error) => finish({ ok: false, reason: error.message }));
  req.once('close', closed);
  req.end();
  return () => req.destroy();
}

function probeUdp(target: ProbeTarget, finish: Finish, closed: () => void): () => void {
  const spec = target.spec as Extract<CheckSpec, { type: 'udp' }>;
  const payload = payloadBytes(spec.payload);
  const expect = spec.expect === undefined ? undefined : payloadBytes(spec.expect);
  const socket = dgram.createSocket(net.isIPv6(target.address) ? 'udp6' : 'udp4');
  let open = true;
  const peer = `${target.address}:${target.port}`;
  // Node's message names no peer ("recvmsg ECONNREFUSED"): say it like a tcp connect error.
  socket.on('error', (error) => finish({ ok: false, reason: `udp ${error.message} ${peer}` }));
  socket.on('message', (reply) => {
    if (expect === undefined || reply.subarray(0, expect.length).equals(expect)) {
      finish({ ok: true, reason: `udp reply of ${reply.length} bytes` });
      return;
    }
    const shown =
      escapeBytes(reply.subarray(0, SHOWN_REPLY)) + (reply.length > SHOWN_REPLY ? '…' : '');
    finish({
      ok: false,
      reason: `udp reply "${shown}" does not start with "${spec.expect}"`,
    });
  });
  socket.once('close', closed);
  socket.connect(target.port, target.address, () => {
    if (!open) return;
    socket.send(payload, (error) => {
      if (error) finish({ ok: false, reason: `udp ${error.message} ${peer}` });
    });
  });
  return () => {
    if (!open) return;
    open = false;
    socket.close();
  };
}

function probeIcmp(
  target: ProbeTarget,
  ping: string,
  finish: Finish,
  closed: () => void,
): () => void {
  const { address, spec } = target;
  const seconds = Math.max(1, Math.ceil(spec.timeout / 1000));
  const family = net.isIPv6(address) ? '-6' : '-4';
  const child = spawn(ping, [family, '-c', '1', '-W', String(seconds), '-n', address], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LC_ALL: 'C' },
  });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => {
    if (out.length < PING_OUTPUT) out += s;
  });
  child.stderr.setEncoding('utf8').on('data', (s: string) => {
    if (err.length < PING_OUTPUT) err += s;
  });
  child.once('error', (error) => {
    finish({ ok: false, reason: error.message });
    // A process that never started emits no 'close' on some Node versions.
    if (child.pid === undefined) closed();
  });
  child.once('close', (code) => {
    if (code === 0) finish({ ok: true, reason: 'icmp echo reply' });
    else finish({ ok: false, reason: pingFailure(out, err, code, spec.timeout) });
    closed();
  });
  return () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
}

/** Why ping failed: an ICMP error it received, its own complaint, or no reply in time. */
function pingFailure(stdout: string, stderr: string, code: number | null, timeout: number): string {
  // "From 192.0.2.1 icmp_seq=1 Destination Host Unreachable"
  const from = /^From (\S+) icmp_seq=\d+ (.+)$/m.exec(stdout);
  if (from) return `icmp ${from[2].trim()} from ${from[1]}`;
  const complaint = stderr
    .split('\n')
    .map((line) => line.trim())
    .find((line) => line !== '');
  if (complaint !== undefined) return complaint;
  // Exit 1 with nothing said: no reply within -W, which is at least the timeout.
  if (code === 1) return `timeout after ${timeout} ms`;
  return `ping exited with code ${code}`;
}
