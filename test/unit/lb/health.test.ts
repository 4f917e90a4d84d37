// The load balancer's health checker (controller/lb/health.ts) against real servers on 127.0.0.1 and ::1: rise and fall, probes of every type, timing, set() and close().
import { execFileSync, spawnSync } from 'node:child_process';
import { generateKeyPairSync, sign } from 'node:crypto';
import dgram from 'node:dgram';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, beforeAll, describe, expect, it } from 'vitest';

import { HealthTargetInvalidError } from '../../../controller/lb/health-errors.js';
import {
  HealthChecker,
  type HealthCheckerOptions,
  type HealthProbe,
  type HealthState,
  type HealthTarget,
  type HealthTransition,
} from '../../../controller/lb/health.js';
import { parseCheckSpec } from '../../../controller/lb/health-spec.js';

const checkers: HealthChecker[] = [];
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  await Promise.all(checkers.splice(0).map((c) => c.close()));
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A checker closed after the test, with every event it emits recorded. */
function newChecker(options?: HealthCheckerOptions): {
  checker: HealthChecker;
  transitions: HealthTransition[];
  probes: HealthProbe[];
} {
  const checker = new HealthChecker(options);
  checkers.push(checker);
  const transitions: HealthTransition[] = [];
  const probes: HealthProbe[] = [];
  checker.on('transition', (t) => transitions.push(t));
  checker.on('probe', (p) => probes.push(p));
  return { checker, transitions, probes };
}

function target(key: string, address: string, port: number, check: string): HealthTarget {
  return { key, address, port, spec: parseCheckSpec(check) };
}

/** The next transition of `key` to `to`. */
function transitionTo(
  checker: HealthChecker,
  key: string,
  to: HealthState,
  within = 5000,
): Promise<HealthTransition> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      checker.off('transition', on);
      reject(new Error(`"${key}" is ${checker.state(key)}, not ${to}, after ${within} ms`));
    }, within);
    const on = (t: HealthTransition): void => {
      if (t.key !== key || t.to !== to) return;
      clearTimeout(timer);
      checker.off('transition', on);
      resolve(t);
    };
    checker.on('transition', on);
  });
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function listening(server: net.Server | http.Server, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve((server.address() as net.AddressInfo).port));
  });
}

/** A TCP server that accepts and holds connections; `stop()` closes it and its connections. */
async function tcpServer(
  host = '127.0.0.1',
): Promise<{ port: number; stop: () => Promise<void>; open: () => number }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  const port = await listening(server, host);
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  };
  cleanups.push(stop);
  return { port, stop, open: () => sockets.size };
}

interface HttpBehaviour {
  /** The status to answer; undefined: never answer. */
  status?: number;
}

/** An HTTP(S) server answering `behaviour.status` (changeable), recording requests and connections. */
async function httpServer(
  host = '127.0.0.1',
  tls?: { key: string; cert: string },
): Promise<{
  port: number;
  behaviour: HttpBehaviour;
  requests: { method?: string; url?: string; host?: string }[];
  connections: () => number;
  open: () => number;
  server: http.Server;
}> {
  const behaviour: HttpBehaviour = { status: 200 };
  const requests: { method?: string; url?: string; host?: string }[] = [];
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    requests.push({ method: req.method, url: req.url, host: req.headers.host });
    if (behaviour.status !== undefined) res.writeHead(behaviour.status).end('body');
  };
  const server = tls ? https.createServer(tls, handler) : http.createServer(handler);
  let connections = 0;
  let open = 0;
  server.on(tls ? 'secureConnection' : 'connection', (s: net.Socket) => {
    connections += 1;
    open += 1;
    s.on('close', () => (open -= 1));
  });
  const port = await listening(server, host);
  cleanups.push(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return {
    port,
    behaviour,
    requests,
    connections: () => connections,
    open: () => open,
    server,
  };
}

/** A UDP server answering every datagram with `reply(datagram)`; null: no answer. */
async function udpServer(
  host: string,
  reply: (msg: Buffer) => Buffer | null = (msg) => msg,
): Promise<{ port: number; received: () => number }> {
  const socket = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  let received = 0;
  socket.on('message', (msg, from) => {
    received += 1;
    const answer = reply(msg);
    if (answer) socket.send(answer, from.port, from.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, host, resolve));
  cleanups.push(() => new Promise<void>((resolve) => socket.close(() => resolve())));
  return { port: socket.address().port, received: () => received };
}

/** A self-signed certificate: openssl when there is one, else built here with node:crypto. */
function selfSigned(): { key: string; cert: string } {
  if (spawnSync('openssl', ['version']).status === 0) {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-health-'));
    const keyFile = join(dir, 'key.pem');
    const certFile = join(dir, 'cert.pem');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        keyFile,
        '-out',
        certFile,
        '-days',
        '1',
        '-subj',
        '/CN=sluice-health-test',
      ],
      { stdio: 'ignore' },
    );
    const pair = { key: readFileSync(keyFile, 'utf8'), cert: readFileSync(certFile, 'utf8') };
    rmSync(dir, { recursive: true, force: true });
    return pair;
  }
  return selfSignedWithCrypto();
}

/** An X.509 v3 certificate for a P-256 key, DER written by hand (node:crypto cannot make one). */
function selfSignedWithCrypto(): { key: string; cert: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const der = (tag: number, ...parts: Buffer[]): Buffer => {
    const body = Buffer.concat(parts);
    const n = body.length;
    const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
    return Buffer.concat([Buffer.from([tag, ...len]), body]);
  };
  const seq = (...parts: Buffer[]): Buffer => der(0x30, ...parts);
  const ecdsaWithSha256 = seq(der(0x06, Buffer.from('2a8648ce3d040302', 'hex')));
  const name = seq(
    der(0x31, seq(der(0x06, Buffer.from('550403', 'hex')), der(0x0c, Buffer.from('sluice')))),
  );
  const utc = (d: Date): Buffer =>
    der(0x17, Buffer.from(`${d.toISOString().slice(2, 19).replace(/[-:T]/g, '')}Z`));
  const now = Date.now();
  const tbs = seq(
    der(0xa0, der(0x02, Buffer.from([2]))),
    der(0x02, Buffer.from([1])),
    ecdsaWithSha256,
    name,
    seq(utc(new Date(now - 3_600_000)), utc(new Date(now + 86_400_000))),
    name,
    publicKey.export({ type: 'spki', format: 'der' }),
  );
  const signature = sign('sha256', tbs, privateKey);
  const cert = seq(tbs, ecdsaWithSha256, der(0x03, Buffer.from([0]), signature));
  const lines = cert.toString('base64').match(/.{1,64}/g) ?? [];
  return {
    key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    cert: `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`,
  };
}

/** True when a socket can listen on ::1 here. */
async function hasIpv6Loopback(): Promise<boolean> {
  const server = net.createServer();
  try {
    await listening(server, '::1');
    await new Promise((resolve) => server.close(resolve));
    return true;
  } catch {
    return false;
  }
}

/** Why ping cannot run here, or undefined when `ping -c 1 127.0.0.1` works. */
function pingProblem(): string | undefined {
  const run = spawnSync('ping', ['-4', '-c', '1', '-W', '1', '-n', '127.0.0.1'], {
    encoding: 'utf8',
  });
  if (run.status === 0) return undefined;
  const why = run.error?.message ?? (run.stderr.trim() || `exit ${run.status}`);
  return `skipped: ping 127.0.0.1 failed: ${why} (needs iputils-ping and CAP_NET_RAW or net.ipv4.ping_group_range)`;
}

/** A "ping" that never answers (it sleeps), for probes that must be killed. */
function hangingPing(): string {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-health-'));
  const file = join(dir, 'ping');
  writeFileSync(file, '#!/bin/sh\nexec sleep 30\n');
  chmodSync(file, 0o755);
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return file;
}

const CI = process.env.CI === 'true';
let tls: { key: string; cert: string };
let ipv6 = false;

beforeAll(async () => {
  tls = selfSigned();
  ipv6 = await hasIpv6Loopback();
});

describe('HealthChecker: rise and fall', () => {
  it('starts a new target as unknown and makes it up after rise consecutive successes', async () => {
    const server = await tcpServer();
    const { checker, transitions, probes } = newChecker();
    checker.set([target('b1', '127.0.0.1', server.port, 'tcp interval=200ms rise=3')]);
    expect(checker.state('b1')).toBe('unknown');
    const up = await transitionTo(checker, 'b1', 'up');
    expect(up).toMatchObject({ key: 'b1', from: 'unknown', to: 'up' });
    expect(up.reason).toBe('tcp connect succeeded');
    expect(probes.map((p) => p.ok)).toEqual([true, true, true]);
    expect(transitions).toEqual([up]);
    expect(checker.state('b1')).toBe('up');
    expect(checker.states()).toEqual(new Map([['b1', 'up']]));
  });

  it('makes an up target down after fall consecutive failures once its server closes', async () => {
    const server = await tcpServer();
    const { checker, probes } = newChecker();
    checker.set([target('b1', '127.0.0.1', server.port, 'tcp interval=200ms rise=1 fall=3')]);
    await transitionTo(checker, 'b1', 'up');
    await server.stop();
    const before = probes.length;
    const down = await transitionTo(checker, 'b1', 'down');
    const failures = probes.slice(before).filter((p) => !p.ok);
    expect(failures).toHaveLength(3);
    expect(down).toMatchObject({
      from: 'up',
      to: 'down',
      reason: `connect ECONNREFUSED 127.0.0.1:${server.port}`,
    });
    expect(checker.status()).toEqual([
      {
        key: 'b1',
        address: '127.0.0.1',
        port: server.port,
        check: 'tcp interval=200ms rise=1',
        state: 'down',
        since: down.at,
        last: failures[2],
      },
    ]);
  });

  it('makes an unknown target down after fall failures, without passing through up', async () => {
    const server = await tcpServer();
    await server.stop();
    const { checker, transitions, probes } = newChecker();
    checker.set([target('b1', '127.0.0.1', server.port, 'tcp interval=200ms fall=2')]);
    const down = await transitionTo(checker, 'b1', 'down');
    expect(down.from).toBe('unknown');
    expect(probes.map((p) => p.ok)).toEqual([false, false]);
    expect(transitions).toEqual([down]);
  });

  it('restarts the count when a run is broken: rise needs consecutive successes', async () => {
    const http1 = await httpServer();
    const { checker, probes } = newChecker();
    checker.set([target('b1', '127.0.0.1', http1.port, 'http:/ interval=100ms rise=3 fall=3')]);
    // Alternate answers: never three successes, nor three failures, in a row.
    let n = 0;
    checker.on('probe', () => {
      n += 1;
      http1.behaviour.status = n % 2 === 0 ? 200 : 500;
    });
    http1.behaviour.status = 500;
    await sleep(900);
    expect(probes.length).toBeGreaterThanOrEqual(6);
    expect(checker.state('b1')).toBe('unknown');
  });
});

describe('HealthChecker: the load balancer timing contract', () => {
  const interval = 50;
  const timeout = 50;
  const fall = 3;
  // fall × interval + timeout, plus room for a loaded machine's timers.
  const bound = fall * interval + timeout + 100;

  it(`marks a backend whose server stops refusing down within fall × interval + timeout (${bound} ms)`, async () => {
    const server = await tcpServer();
    const { checker } = newChecker();
    checker.set([target('b1', '127.0.0.1', server.port, `tcp interval=${interval}ms rise=1`)]);
    await transitionTo(checker, 'b1', 'up');
    await sleep(Math.random() * interval);
    const stopped = performance.now();
    const down = transitionTo(checker, 'b1', 'down');
    await server.stop();
    await down;
    expect(performance.now() - stopped).toBeLessThanOrEqual(bound);
  });

  it(`marks a backend whose server stops answering down within fall × interval + timeout (${bound} ms)`, async () => {
    const server = await httpServer();
    const { checker } = newChecker();
    checker.set([
      target(
        'b1',
        '127.0.0.1',
        server.port,
        `http:/ interval=${interval}ms timeout=${timeout}ms rise=1`,
      ),
    ]);
    await transitionTo(checker, 'b1', 'up');
    await sleep(Math.random() * interval);
    const down = transitionTo(checker, 'b1', 'down');
    const stopped = performance.now();
    server.behaviour.status = undefined;
    const t = await down;
    expect(performance.now() - stopped).toBeLessThanOrEqual(bound);
    expect(t.reason).toBe(`timeout after ${timeout} ms`);
  });
});

describe('HealthChecker: http and https', () => {
  it('sends GET for the path with the Host header set to the backend address', async () => {
    const server = await httpServer();
    const { checker } = newChecker();
    checker.set([
      target('b1', '127.0.0.1', server.port, 'http:/healthz?x=1 interval=200ms rise=1'),
    ]);
    await transitionTo(checker, 'b1', 'up');
    expect(server.requests[0]).toEqual({
      method: 'GET',
      url: '/healthz?x=1',
      host: `127.0.0.1:${server.port}`,
    });
  });

  it('counts a status outside the expected range as a failure, with the status as reason', async () => {
    const server = await httpServer();
    server.behaviour.status = 503;
    const { checker } = newChecker();
    checker.set([
      target('default', '127.0.0.1', server.port, 'http:/ interval=200ms fall=1'),
      target('exact', '127.0.0.1', server.port, 'http:/#200 interval=200ms fall=1'),
      target('wanted', '127.0.0.1', server.port, 'http:/#500-503 interval=200ms rise=1'),
    ]);
    const [a, b] = await Promise.all([
      transitionTo(checker, 'default', 'down'),
      transitionTo(checker, 'exact', 'down'),
      transitionTo(checker, 'wanted', 'up'),
    ]);
    expect(a.reason).toBe('http status 503, expected 200-399');
    expect(b.reason).toBe('http status 503, expected 200');
  });

  it('takes the port of the check over the target port', async () => {
    const server = await httpServer();
    const { checker } = newChecker();
    checker.set([target('b1', '127.0.0.1', 1, `http:${server.port}/ interval=200ms rise=1`)]);
    await transitionTo(checker, 'b1', 'up');
  });

  it('checks https without verifying the self-signed certificate', async () => {
    const server = await httpServer('127.0.0.1', tls);
    const { checker } = newChecker();
    checker.set([
      // A second for the TLS handshake: on a loaded machine 200 ms was not always enough.
      target('ok', '127.0.0.1', server.port, 'https:/ready interval=1s rise=1'),
      target('bad', '127.0.0.1', server.port, 'https:/ready#204 interval=1s fall=1'),
    ]);
    const [, bad] = await Promise.all([
      transitionTo(checker, 'ok', 'up'),
      transitionTo(checker, 'bad', 'down'),
    ]);
    expect(bad.reason).toBe('http status 200, expected 204');
    expect(server.requests[0]).toMatchObject({ url: '/ready', host: `127.0.0.1:${server.port}` });
  });

  it('fails a plain http check of a TLS server and an https check of a plain server', async () => {
    const secure = await httpServer('127.0.0.1', tls);
    const plain = await httpServer();
    const { checker } = newChecker();
    checker.set([
      target('http', '127.0.0.1', secure.port, 'http:/ interval=50ms fall=1'),
      target('https', '127.0.0.1', plain.port, 'https:/ interval=50ms fall=1'),
    ]);
    await Promise.all([
      transitionTo(checker, 'http', 'down'),
      transitionTo(checker, 'https', 'down'),
    ]);
  });

  it('times out on a server that accepts but never answers', async () => {
    const server = await httpServer();
    server.behaviour.status = undefined;
    const { checker } = newChecker();
    checker.set([target('b1', '127.0.0.1', server.port, 'http:/ interval=40ms fall=1')]);
    const down = await transitionTo(checker, 'b1', 'down');
    expect(down.reason).toBe('timeout after 40 ms');
    expect(server.requests.length).toBeGreaterThanOrEqual(1);
  });

  it('never has two probes of one target in flight, even with the timeout as long as the interval', async () => {
    const server = await httpServer();
    server.behaviour.status = undefined;
    const { checker, probes } = newChecker();
    // At every accepted connection: the probes started (connections) minus the probes over.
    const inFlight: number[] = [];
    server.server.on('connection', () => inFlight.push(server.connections() - probes.length));
    checker.set([target('slow', '127.0.0.1', server.port, 'http:/ interval=30ms timeout=30ms')]);
    await sleep(600);
    await checker.close();
    // About 19 ticks on a quiet machine: a tick that finds the probe still closing is deferred,
    // not lost (losing it would halve the count). Timers run late on a loaded one: 8 is well
    // above the halved count there too.
    expect(probes.length).toBeGreaterThanOrEqual(8);
    expect(probes.every((p) => p.reason === 'timeout after 30 ms')).toBe(true);
    expect(Math.max(...inFlight)).toBeLessThanOrEqual(1);
    expect(server.connections() - probes.length).toBeLessThanOrEqual(1);
  });
});

describe('HealthChecker: udp', () => {
  it('is up on any reply, or on a reply starting with the expected text', async () => {
    const echo = await udpServer('127.0.0.1');
    const { checker } = newChecker();
    checker.set([
      target('any', '127.0.0.1', echo.port, 'udp::PING\\x00 interval=200ms rise=1'),
      target('prefix', '127.0.0.1', echo.port, 'udp::PING\\x00:PI interval=200ms rise=1'),
    ]);
    await Promise.all([transitionTo(checker, 'any', 'up'), transitionTo(checker, 'prefix', 'up')]);
  });

  it('is down on a reply that does not start with the expected text, showing the reply', async () => {
    const echo = await udpServer('127.0.0.1');
    const { checker } = newChecker();
    checker.set([target('b1', '127.0.0.1', echo.port, 'udp::PING\\n:PONG interval=200ms fall=1')]);
    const down = await transitionTo(checker, 'b1', 'down');
    expect(down.reason).toBe('udp reply "PING\\n" does not start with "PONG"');
  });

  it('fails on an empty reply, on a closed port (port unreachable) and on silence', async () => {
    const empty = await udpServer('127.0.0.1', () => Buffer.alloc(0));
    const silent = await udpServer('127.0.0.1', () => null);
    const tcp = await tcpServer(); // its port has no UDP socket
    const { checker } = newChecker();
    checker.set([
      target('empty', '127.0.0.1', empty.port, 'udp::PING:PONG interval=30ms fall=1'),
      target('closed', '127.0.0.1', tcp.port, 'udp::PING interval=30ms fall=1'),
      target('silent', '127.0.0.1', silent.port, 'udp::PING interval=30ms fall=1'),
    ]);
    const reasons = await Promise.all(
      ['empty', 'closed', 'silent'].map(
        async (key) => (await transitionTo(checker, key, 'down')).reason,
      ),
    );
    expect(reasons).toEqual([
      'udp reply "" does not start with "PONG"',
      `udp recvmsg ECONNREFUSED 127.0.0.1:${tcp.port}`,
      'timeout after 30 ms',
    ]);
    expect(silent.received()).toBeGreaterThanOrEqual(1);
  });
});

describe('HealthChecker: IPv6', () => {
  it('checks tcp, http (Host in brackets) and udp on ::1', async (ctx) => {
    if (!ipv6 && !CI) ctx.skip('skipped: cannot listen on ::1 (no IPv6 loopback)');
    const tcp = await tcpServer('::1');
    const web = await httpServer('::1');
    const echo = await udpServer('::1');
    const { checker } = newChecker();
    checker.set([
      target('tcp', '::1', tcp.port, 'tcp interval=200ms rise=1'),
      target('http', '::1', web.port, 'http:/ interval=200ms rise=1'),
      target('udp', '::1', echo.port, 'udp::hello:hel interval=200ms rise=1'),
    ]);
    await Promise.all(['tcp', 'http', 'udp'].map((key) => transitionTo(checker, key, 'up')));
    expect(web.requests[0].host).toBe(`[::1]:${web.port}`);
  });
});

describe('HealthChecker: icmp', () => {
  const problem = pingProblem();

  it('is up when 127.0.0.1 answers ping', async (ctx) => {
    if (problem !== undefined && !CI) ctx.skip(problem);
    const { checker } = newChecker();
    checker.set([target('lo', '127.0.0.1', 0, 'icmp interval=200ms timeout=200ms rise=1')]);
    const up = await transitionTo(checker, 'lo', 'up');
    expect(up.reason).toBe('icmp echo reply');
  });

  it('is up when ::1 answers ping -6', async (ctx) => {
    if (problem !== undefined && !CI) ctx.skip(problem);
    if (!ipv6 && !CI) ctx.skip('skipped: no IPv6 loopback');
    const { checker } = newChecker();
    checker.set([target('lo6', '::1', 0, 'icmp interval=200ms timeout=200ms rise=1')]);
    await transitionTo(checker, 'lo6', 'up');
  });

  it('kills a ping that outlives the timeout', async () => {
    const { checker, probes } = newChecker({ ping: hangingPing() });
    checker.set([target('b1', '127.0.0.1', 0, 'icmp interval=100ms timeout=60ms fall=1')]);
    const down = await transitionTo(checker, 'b1', 'down');
    expect(down.reason).toBe('timeout after 60 ms');
    expect(probes[0].ms).toBeLessThan(60 + 100);
  });

  it('is down when ping cannot be run', async () => {
    const { checker } = newChecker({ ping: '/nonexistent/ping' });
    checker.set([target('b1', '127.0.0.1', 0, 'icmp interval=100ms fall=1')]);
    const down = await transitionTo(checker, 'b1', 'down');
    expect(down.reason).toBe('spawn /nonexistent/ping ENOENT');
  });
  // An address that does not answer is tested in a namespace: test/lab/lb-health.test.ts.
});

describe('HealthChecker: set()', () => {
  it('keeps state and schedule of unchanged targets, drops removed ones, starts new ones unknown', async () => {
    const server = await tcpServer();
    const { checker, transitions } = newChecker();
    const a = target('a', '127.0.0.1', server.port, 'tcp interval=200ms rise=1');
    const b = target('b', '127.0.0.1', server.port, 'tcp interval=200ms rise=1');
    checker.set([a, b]);
    await Promise.all([transitionTo(checker, 'a', 'up'), transitionTo(checker, 'b', 'up')]);
    const c = target('c', '127.0.0.1', server.port, 'tcp interval=200ms rise=1');
    checker.set([{ ...a, spec: parseCheckSpec('tcp interval=200ms rise=1') }, c]);
    expect(checker.states()).toEqual(
      new Map([
        ['a', 'up'],
        ['c', 'unknown'],
      ]),
    );
    expect(checker.state('b')).toBeUndefined();
    const count = transitions.length;
    await transitionTo(checker, 'c', 'up');
    await sleep(60);
    // Nothing about a (unchanged) or b (removed) since.
    expect(transitions.slice(count).map((t) => t.key)).toEqual(['c']);
  });

  it('keeps the state of a target whose check changes and counts afresh with the new check', async () => {
    const server = await httpServer();
    const { checker, probes } = newChecker();
    checker.set([target('b1', '127.0.0.1', server.port, 'http:/ interval=200ms rise=1')]);
    await transitionTo(checker, 'b1', 'up');
    checker.set([target('b1', '127.0.0.1', server.port, 'http:/#204 interval=200ms fall=2')]);
    expect(checker.state('b1')).toBe('up');
    const before = probes.length;
    const down = await transitionTo(checker, 'b1', 'down');
    expect(down).toMatchObject({ from: 'up', reason: 'http status 200, expected 204' });
    expect(probes.slice(before).map((p) => p.ok)).toEqual([false, false]);
  });

  it('starts a target whose address or port changes over as unknown, saying so', async () => {
    const one = await tcpServer();
    const two = await tcpServer();
    const { checker } = newChecker();
    checker.set([target('b1', '127.0.0.1', one.port, 'tcp interval=200ms rise=1')]);
    await transitionTo(checker, 'b1', 'up');
    const reset = transitionTo(checker, 'b1', 'unknown');
    checker.set([target('b1', '127.0.0.1', two.port, 'tcp interval=200ms rise=2')]);
    expect(await reset).toMatchObject({ from: 'up', to: 'unknown', reason: 'address changed' });
    expect(checker.state('b1')).toBe('unknown');
    await transitionTo(checker, 'b1', 'up');
  });

  it('rejects duplicate keys, addresses that are not IP addresses and bad ports, changing nothing', async () => {
    const server = await tcpServer();
    const { checker } = newChecker();
    const good = target('ok', '127.0.0.1', server.port, 'tcp interval=200ms');
    checker.set([good]);
    const bad: HealthTarget[][] = [
      [good, good],
      [good, target('name', 'backend.local', 80, 'tcp')],
      [good, target('zero', '127.0.0.1', 0, 'http:/')],
      [good, target('big', '::1', 70000, 'udp::x')],
    ];
    const messages = bad.map((targets) => {
      try {
        checker.set(targets);
      } catch (error: unknown) {
        expect(error).toBeInstanceOf(HealthTargetInvalidError);
        return `${(error as HealthTargetInvalidError).code}: ${(error as Error).message}`;
      }
      return 'accepted';
    });
    expect(messages).toMatchInlineSnapshot(`
      [
        "LB_HEALTH_TARGET_INVALID: health check target "ok": the key is given twice",
        "LB_HEALTH_TARGET_INVALID: health check target "name": the address must be an IP address, not "backend.local"",
        "LB_HEALTH_TARGET_INVALID: health check target "zero": the port must be a number from 1 to 65535, not 0",
        "LB_HEALTH_TARGET_INVALID: health check target "big": the port must be a number from 1 to 65535, not 70000",
      ]
    `);
    expect([...checker.states().keys()]).toEqual(['ok']);
    // A port of 0 is fine when the check names its own port, or for icmp.
    checker.set([
      target('own', '127.0.0.1', 0, `tcp:${server.port}`),
      target('ping', '127.0.0.1', 0, 'icmp'),
    ]);
  });

  it('spreads the first probes of many targets over the interval', async () => {
    const server = await tcpServer();
    const { checker, probes } = newChecker();
    const start = Date.now();
    checker.set(
      Array.from({ length: 50 }, (_, i) =>
        target(`b${i}`, '127.0.0.1', server.port, 'tcp interval=300ms'),
      ),
    );
    await sleep(350);
    const first = new Map<string, number>();
    for (const p of probes) if (!first.has(p.key)) first.set(p.key, p.at - start);
    const times = [...first.values()];
    expect(times).toHaveLength(50);
    expect(Math.min(...times)).toBeLessThan(100);
    expect(Math.max(...times)).toBeGreaterThan(200);
  });
});

describe('HealthChecker: close()', () => {
  /** Active handles by type, timers left out (the checker's are unref'd, so never listed). */
  function handles(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const type of process.getActiveResourcesInfo()) {
      if (type === 'Timeout' || type === 'Immediate') continue;
      counts[type] = (counts[type] ?? 0) + 1;
    }
    return counts;
  }

  it('cancels probes in flight and leaves no socket, process or timer behind', async () => {
    const hanging = await httpServer();
    hanging.behaviour.status = undefined;
    const secure = await httpServer('127.0.0.1', tls);
    const tcp = await tcpServer();
    const echo = await udpServer('127.0.0.1', () => Buffer.alloc(0));
    // Servers closed by earlier tests leave the list a turn of the loop after their callback.
    await sleep(10);
    const baseline = handles();
    const { checker, probes, transitions } = newChecker({ ping: hangingPing() });
    const every = 'interval=400ms timeout=400ms';
    checker.set([
      target('hang', '127.0.0.1', hanging.port, `http:/ ${every}`),
      target('tls', '127.0.0.1', secure.port, `https:/ ${every}`),
      target('tcp', '127.0.0.1', tcp.port, `tcp ${every}`),
      target('udp', '127.0.0.1', echo.port, `udp::PING:PONG ${every}`),
      target('udp-silent', '127.0.0.1', tcp.port, `udp::PING ${every}`),
      target('ping', '127.0.0.1', 0, `icmp ${every}`),
    ]);
    // Every first probe has started; the hanging ones are in flight.
    await sleep(420);
    expect(hanging.open()).toBeGreaterThanOrEqual(1);
    expect(handles()).toMatchObject({ ProcessWrap: 1 });
    await checker.close();
    // The servers' ends of the connections close when the checker's FIN arrives.
    for (let i = 0; i < 100 && hanging.open() + secure.open() + tcp.open() > 0; i++)
      await sleep(10);
    expect(handles()).toEqual(baseline);
    const seen = { probes: probes.length, transitions: transitions.length };
    const connections = hanging.connections() + secure.connections();
    const datagrams = echo.received();
    await sleep(900);
    expect({ probes: probes.length, transitions: transitions.length }).toEqual(seen);
    expect(hanging.connections() + secure.connections()).toBe(connections);
    expect(echo.received()).toBe(datagrams);
    expect(() => checker.set([])).toThrow('the health checker is closed');
    await checker.close();
  });
});
