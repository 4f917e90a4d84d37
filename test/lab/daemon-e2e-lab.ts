// Helpers of daemon-{api,cli,bad-input}.test.ts: one real `sluice serve` in a lab namespace with
// four devices to attach to, and what the kernel holds read back without sluice's help (pinned
// maps through the addon, iproute2 and bpftool inside the namespace), plus the CLI run as a
// process inside that namespace (to reach the daemon's TCP listener there).
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { openPinned } from '../../bpf/index.js';
import {
  SL_MAX_SETS,
  SL_VERDICTS,
  encodeSetKey,
  sumU64,
  u32,
} from '../../controller/dataplane/abi.js';
import { parsePrefix } from '../../controller/dataplane/model.js';
import { openPinnedSet4, set4MaskOf } from '../../controller/dataplane/set4-blocks.js';
import { decodeName } from '../../controller/dataplane/name-table.js';
import { LabDaemon, type ApiResponse } from '../../netns-lab/daemon.js';
import { run } from '../../netns-lab/exec.js';
import { Lab, type PairTopology } from '../../netns-lab/lab.js';
import { withPinnedMap } from './daemon-lab.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** A lab with a daemon in the pair's left namespace, and two more devices there (a veth pair). */
export interface DaemonLab {
  lab: Lab;
  net: PairTopology;
  /** The namespace the daemon runs in and manages. */
  netns: string;
  daemon: LabDaemon;
  /** net.left.device: native XDP and real traffic from net.right. */
  wire: string;
  /** Second veth pair in the daemon's namespace, both ends up: generic XDP, tc hooks. */
  spare: [string, string];
  destroy(): Promise<void>;
}

/**
 * Builds the lab and starts the daemon (TCP too when `tcp`). Whatever was built is removed by
 * destroy(), and by the lab's exit hook when the run is interrupted.
 */
export async function openDaemonLab(options: { tcp?: boolean } = {}): Promise<DaemonLab> {
  const lab = new Lab();
  let daemon: LabDaemon | undefined;
  const destroy = async (): Promise<void> => {
    await daemon?.destroy().catch(() => undefined);
    await lab.destroy();
  };
  try {
    const net = await lab.pair();
    const netns = net.left.netns;
    const spare: [string, string] = [`${lab.id}c`, `${lab.id}d`];
    await run(['ip', 'link', 'add', spare[0], 'type', 'veth', 'peer', 'name', spare[1]], { netns });
    for (const dev of spare) await run(['ip', 'link', 'set', dev, 'up'], { netns });
    const d = new LabDaemon({ netns, tcp: options.tcp ?? false });
    daemon = d;
    // Also on an interrupted run (the lab's exit hook): what d.destroy() does, synchronously.
    lab.addCleanup(() => d.destroySync());
    await d.start();
    return { lab, net, netns, daemon: d, wire: net.left.device, spare, destroy };
  } catch (error: unknown) {
    await destroy();
    throw error;
  }
}

function countKeys(path: string): number {
  return withPinnedMap(path, (map) => {
    let n = 0;
    for (let key = map.nextKey(null); key !== null; key = map.nextKey(key)) n++;
    return n;
  });
}

/** Set names by bit, from the pinned sl_set_names ('' for a free bit). */
export function pinnedSetNames(pinDir: string): string[] {
  return withPinnedMap(join(pinDir, 'sl_set_names'), (names) =>
    Array.from({ length: SL_MAX_SETS }, (_, bit) => decodeName(names.lookup(u32(bit)))),
  );
}

/**
 * Whether the pinned set maps put `prefix` in set `name`: for IPv6 a longest-prefix lookup of the
 * prefix itself in sl_set6, for IPv4 the ranges at the prefix's first address (sl_set4_*); then
 * the set's bit in the mask found.
 */
export function pinnedSetHas(pinDir: string, name: string, prefix: string): boolean {
  const bit = pinnedSetNames(pinDir).indexOf(name);
  if (bit < 0) return false;
  const p = parsePrefix(prefix);
  if (p.family === 4) {
    const maps = openPinnedSet4(pinDir);
    try {
      return ((set4MaskOf(maps, p.addr) >>> bit) & 1) === 1;
    } finally {
      maps.close();
    }
  }
  const value = withPinnedMap(join(pinDir, 'sl_set6'), (trie) =>
    trie.lookup(encodeSetKey(p.addr, p.len)),
  );
  return value !== null && ((value.readBigUInt64LE(0) >> BigInt(bit)) & 1n) === 1n;
}

/** The /16s the IPv4 range maps use (dir entries not NONE) plus their blocks, nodes and pages. */
async function set4Entries(pinDir: string): Promise<number> {
  const maps = openPinnedSet4(pinDir);
  try {
    const dir = await maps.dir.lookupBatch();
    let n = 0;
    for (let i = 0; i < dir.count; i++) if (dir.values.readUInt32LE(4 * i) !== 0) n++;
    for (const map of [maps.small, maps.big, maps.dense]) n += (await map.lookupBatch()).count;
    return n;
  } finally {
    maps.close();
  }
}

/** The ids in a pinned name table (rule or limiter ids of an attachment), sorted. */
async function pinnedNamesBatch(path: string): Promise<string[]> {
  const pinned = openPinned(path);
  if (pinned.kind !== 'map') throw new Error(`"${path}" pins a ${pinned.kind}, not a map`);
  try {
    const { count, values } = await pinned.map.lookupBatch();
    const size = values.length / Math.max(count, 1);
    const out: string[] = [];
    for (let i = 0; i < count; i++) {
      const id = decodeName(values.subarray(i * size, (i + 1) * size));
      if (id) out.push(id);
    }
    return out.sort();
  } finally {
    pinned.map.close();
  }
}

/** The same, one lookup per slot. */
function pinnedNames(path: string): string[] {
  return withPinnedMap(path, (ids) => {
    const out: string[] = [];
    for (const [, value] of ids.entries()) {
      const id = decodeName(value as Buffer);
      if (id) out.push(id);
    }
    return out.sort();
  });
}

/** The rule ids the kernel runs on `device@hook` (its pinned sl_rule_ids), sorted. */
export function pinnedRuleIds(pinDir: string, device: string, hook = 'xdp'): string[] {
  return pinnedNames(join(pinDir, 'att', `${device}@${hook}`, 'sl_rule_ids'));
}

export interface PacketCount {
  packets: number;
  bytes: number;
}

/** Verdict and per-rule counters of `device@hook` as its pinned per-CPU maps hold them. */
export function pinnedCounters(
  pinDir: string,
  device: string,
  hook = 'xdp',
): { actions: Record<string, PacketCount>; rules: Record<string, PacketCount> } {
  const dir = join(pinDir, 'att', `${device}@${hook}`);
  const actions: Record<string, PacketCount> = {};
  withPinnedMap(join(dir, 'sl_dev_stats'), (stats) => {
    SL_VERDICTS.forEach((verdict, i) => {
      const values = stats.lookupPerCpu(u32(i));
      actions[verdict] = { packets: sumU64(values, 0), bytes: sumU64(values, 8) };
    });
  });
  const slots = withPinnedMap(join(dir, 'sl_rule_ids'), (ids) => {
    const out = new Map<string, number>();
    for (const [key, value] of ids.entries()) {
      const id = decodeName(value as Buffer);
      if (id) out.set(id, key.readUInt32LE(0));
    }
    return out;
  });
  const rules: Record<string, PacketCount> = {};
  withPinnedMap(join(dir, 'sl_rule_stats'), (stats) => {
    for (const [id, slot] of slots) {
      const values = stats.lookupPerCpu(u32(slot));
      rules[id] = { packets: sumU64(values, 0), bytes: sumU64(values, 8) };
    }
  });
  return { actions, rules };
}

/** What the pinned link of an attachment says: kind, device, program; null when none. */
export interface PinnedLink {
  kind: string;
  ifindex: number | null;
  progId: number;
  attachType: string | null;
}

export function pinnedLink(pinDir: string, device: string, hook: string): PinnedLink | null {
  let pinned;
  try {
    pinned = openPinned(join(pinDir, 'att', `${device}@${hook}`, 'link'));
  } catch {
    return null;
  }
  if (pinned.kind !== 'link') throw new Error(`${device}@${hook}/link pins a ${pinned.kind}`);
  try {
    const info = pinned.link.info();
    return {
      kind: info.kind,
      ifindex: info.ifindex ?? null,
      progId: info.progId,
      attachType: info.attachType ?? null,
    };
  } finally {
    pinned.link.close();
  }
}

/** XDP as `ip -j link show` reports it in `netns`: device → {mode, program id}. */
export async function xdpByDevice(
  netns: string,
): Promise<Record<string, { mode: number; progId: number }>> {
  const links = JSON.parse(await run(['ip', '-j', 'link', 'show'], { netns })) as {
    ifname: string;
    xdp?: { mode: number; prog?: { id: number } };
  }[];
  const out: Record<string, { mode: number; progId: number }> = {};
  for (const l of links)
    if (l.xdp?.prog) out[l.ifname] = { mode: l.xdp.mode, progId: l.xdp.prog.id };
  return out;
}

/** `bpftool net show -j` in `netns`: the XDP programs by device with bpftool's mode name. */
export async function bpftoolXdp(netns: string): Promise<Record<string, string>> {
  const [net] = JSON.parse(await run(['bpftool', 'net', 'show', '-j'], { netns })) as {
    xdp: { devname: string; mode: string }[];
  }[];
  return Object.fromEntries(net.xdp.map((x) => [x.devname, x.mode]));
}

/** The name of BPF program `id` (`bpftool prog show id`), or null when there is none. */
export async function programName(id: number): Promise<string | null> {
  try {
    return (
      JSON.parse(await run(['bpftool', 'prog', 'show', 'id', String(id), '-j'])) as {
        name: string;
      }
    ).name;
  } catch {
    return null;
  }
}

/** Everything of the data plane a refused request must leave as it was. */
export interface KernelSnapshot {
  /** Entries of the IPv4 range maps: /16s in use, and their blocks and pages. */
  set4: number;
  set6: number;
  setNames: string[];
  attachments: Record<string, { rules: string[]; limits: string[]; link: PinnedLink | null }>;
  xdp: Record<string, { mode: number; progId: number }>;
}

/** Reads the snapshot: trie entry counts, name tables, links, XDP programs of the namespace. */
export async function kernelSnapshot(pinDir: string, netns: string): Promise<KernelSnapshot> {
  const attachments: KernelSnapshot['attachments'] = {};
  let dirs: string[] = [];
  try {
    dirs = readdirSync(join(pinDir, 'att')).sort();
  } catch {
    // nothing attached yet
  }
  for (const key of dirs) {
    const [device, hook] = key.split('@');
    attachments[key] = {
      rules: await pinnedNamesBatch(join(pinDir, 'att', key, 'sl_rule_ids')),
      limits: await pinnedNamesBatch(join(pinDir, 'att', key, 'sl_limit_ids')),
      link: pinnedLink(pinDir, device, hook),
    };
  }
  return {
    set4: await set4Entries(pinDir),
    set6: countKeys(join(pinDir, 'sl_set6')),
    setNames: pinnedSetNames(pinDir),
    attachments,
    xdp: await xdpByDevice(netns),
  };
}

export interface CliProcessRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `sluice ...args` as a process inside `netns` (from the sources), for the daemon's TCP
 * listener there; `stdin` is written to its standard input.
 */
export function runCliInNetns(
  netns: string,
  args: string[],
  stdin?: string,
): Promise<CliProcessRun> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      'nsenter',
      [
        `--net=/run/netns/${netns}`,
        '--',
        process.execPath,
        '--import',
        'tsx',
        join(ROOT, 'cli', 'main.ts'),
        ...args,
      ],
      { cwd: ROOT, timeout: 60_000 },
      (error, stdout, stderr) => {
        const code = error ? (error as { code?: unknown }).code : 0;
        if (typeof code !== 'number') return reject(error ?? new Error('no exit code'));
        resolve({ code, stdout, stderr });
      },
    );
    child.stdin?.end(stdin ?? '');
  });
}

export interface CurlResponse {
  status: number;
  contentType: string;
  text: string;
  body: unknown;
}

/**
 * An HTTP request with curl from inside `netns` (the daemon's TCP listener is on its loopback).
 * `body` objects go as JSON; `token` as a bearer token, unless `headers` has authorization.
 */
export async function curlInNetns(
  netns: string,
  port: number,
  method: string,
  path: string,
  options: CurlOptions = {},
): Promise<CurlResponse> {
  return curl({ netns }, `http://127.0.0.1:${port}${path}`, method, options);
}

export interface CurlOptions {
  token?: string;
  body?: unknown;
  /** Send this file as the body instead (curl reads the answer even when the server cuts it). */
  bodyFile?: string;
  headers?: Record<string, string>;
}

/** The same over the daemon's Unix socket, from this namespace. */
export async function curlUnix(
  socket: string,
  method: string,
  path: string,
  options: CurlOptions = {},
): Promise<CurlResponse> {
  return curl({ socket }, `http://localhost${path}`, method, options);
}

async function curl(
  where: { netns?: string; socket?: string },
  url: string,
  method: string,
  options: CurlOptions,
): Promise<CurlResponse> {
  const args = ['curl', '-sS', '-X', method, '-w', '\n%{http_code} %{content_type}'];
  if (where.socket !== undefined) args.push('--unix-socket', where.socket);
  if (options.token !== undefined) args.push('-H', `authorization: Bearer ${options.token}`);
  const headers = { ...options.headers };
  if (options.body !== undefined || options.bodyFile !== undefined)
    headers['content-type'] ??= 'application/json';
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
  if (options.body !== undefined) args.push('--data-raw', JSON.stringify(options.body));
  if (options.bodyFile !== undefined) args.push('--data-binary', `@${options.bodyFile}`);
  args.push(url);
  const out = await run(args, where.netns === undefined ? {} : { netns: where.netns });
  const cut = out.lastIndexOf('\n');
  const text = out.slice(0, cut);
  const [code, contentType = ''] = out.slice(cut + 1).split(' ');
  return {
    status: Number(code),
    contentType,
    text,
    body: contentType.includes('json') && text ? JSON.parse(text) : text,
  };
}

/**
 * A request over the Unix socket whose header announces `declaredLength` body bytes of which only
 * the first `sent` bytes are sent: a server that judges the length up front answers at once, and
 * nothing races an answer against a body still being written. Resolves with the answer (or
 * rejects after `timeoutMs`).
 */
export function declaredBodyRequest(
  socket: string,
  method: string,
  path: string,
  declaredLength: number,
  sent = 1024,
  timeoutMs = 10_000,
): Promise<CurlResponse> {
  return new Promise((resolve, reject) => {
    const conn = createConnection({ path: socket });
    let data = '';
    const timer = setTimeout(() => {
      conn.destroy();
      reject(new Error(`${method} ${path}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const finish = (): void => {
      clearTimeout(timer);
      const end = data.indexOf('\r\n\r\n');
      if (end < 0) return reject(new Error(`${method} ${path}: no complete answer: ${data}`));
      const head = data.slice(0, end).split('\r\n');
      const status = Number(head[0].split(' ')[1]);
      const header = (name: string): string =>
        head
          .find((l) => l.toLowerCase().startsWith(`${name}:`))
          ?.slice(name.length + 1)
          .trim() ?? '';
      const length = Number(header('content-length'));
      const text = data.slice(end + 4, end + 4 + length);
      const contentType = header('content-type');
      resolve({
        status,
        contentType,
        text,
        body: contentType.includes('json') && text ? JSON.parse(text) : text,
      });
    };
    conn.on('data', (chunk: Buffer) => {
      data += chunk.toString('utf8');
      const end = data.indexOf('\r\n\r\n');
      const length = /content-length: *(\d+)/i.exec(data.slice(0, end))?.[1];
      if (end >= 0 && length !== undefined && data.length >= end + 4 + Number(length)) {
        conn.destroy();
        finish();
      }
    });
    conn.on('error', () => undefined);
    conn.on('close', () => {
      if (data !== '') finish();
    });
    conn.write(
      `${method} ${path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n` +
        `content-length: ${declaredLength}\r\n\r\n` +
        '['.repeat(Math.min(sent, declaredLength)),
    );
  });
}

/** A problem+json answer: asserts the shape every error response has and returns the body. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance: string;
  code: string;
  [key: string]: unknown;
}

export function problemOf(res: ApiResponse | CurlResponse): Problem {
  const type = 'contentType' in res ? res.contentType : String(res.headers['content-type'] ?? '');
  if (!type.startsWith('application/problem+json'))
    throw new Error(`expected application/problem+json, got "${type}": ${res.status} ${res.text}`);
  return res.body as Problem;
}

export const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, ms));
