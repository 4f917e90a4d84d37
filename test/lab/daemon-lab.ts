// Helpers of the daemon-*.test.ts lab tests: a real `sluice serve` (netns-lab/daemon.ts) read back
// through its API and, independently of it, through its pins (counters, rule ids, set tries) and
// iproute2 (which program a device runs).
import { join } from 'node:path';

import { Agent, request } from 'undici';

import { openPinned, type BpfMap } from '../../bpf/index.js';
import { SL_MAX_SETS, SL_VERDICTS, sumU64, u32 } from '../../controller/dataplane/abi.js';
import { decodeName } from '../../controller/dataplane/name-table.js';
import { openPinnedSet4, set4MaskOf } from '../../controller/dataplane/set4-blocks.js';
import type { LabDaemon } from '../../netns-lab/daemon.js';
import { run } from '../../netns-lab/exec.js';
import type { Lab } from '../../netns-lab/lab.js';

export const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Calls `probe` every `everyMs` until it returns something other than undefined (resolved with
 * it) or `timeoutMs` passed (throws, naming `what`).
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
  everyMs = 20,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

/**
 * Makes `lab`'s teardown (its exit hook too, when a run is interrupted) also kill `daemon` and
 * remove its pins and files: what `daemon.destroy()` does, synchronously. Returns `daemon`.
 */
export function guard(lab: Lab, daemon: LabDaemon): LabDaemon {
  lab.addCleanup(() => daemon.destroySync());
  return daemon;
}

/** Opens the map pinned at `path`, runs `fn`, closes it. */
export function withPinnedMap<T>(path: string, fn: (map: BpfMap) => T): T {
  const pinned = openPinned(path);
  if (pinned.kind !== 'map') throw new Error(`"${path}" pins a ${pinned.kind}, not a map`);
  try {
    return fn(pinned.map);
  } finally {
    pinned.map.close();
  }
}

export interface PacketCount {
  packets: number;
  bytes: number;
}

/** Counters of one attachment as its pinned maps hold them: not sluice's view of them. */
export interface PinnedCounters {
  actions: Record<(typeof SL_VERDICTS)[number], PacketCount>;
  /** By rule id, from the pinned rule-id table (sl_rule_ids) and per-rule counters. */
  rules: Record<string, PacketCount>;
}

/** The pin directory of attachment `device@hook` of the daemon pinning under `pinDir`. */
export function attachmentDir(pinDir: string, device: string, hook = 'xdp'): string {
  return join(pinDir, 'att', `${device}@${hook}`);
}

/** Reads the per-CPU verdict and rule counters of `device@hook` straight from bpffs. */
export function readPinnedCounters(pinDir: string, device: string, hook = 'xdp'): PinnedCounters {
  const dir = attachmentDir(pinDir, device, hook);
  const actions = {} as PinnedCounters['actions'];
  withPinnedMap(join(dir, 'sl_dev_stats'), (stats) => {
    SL_VERDICTS.forEach((verdict, i) => {
      const values = stats.lookupPerCpu(u32(i));
      actions[verdict] = { packets: sumU64(values, 0), bytes: sumU64(values, 8) };
    });
  });
  const rules: Record<string, PacketCount> = {};
  const slots = pinnedRuleSlots(pinDir, device, hook);
  withPinnedMap(join(dir, 'sl_rule_stats'), (stats) => {
    for (const [id, slot] of slots) {
      const values = stats.lookupPerCpu(u32(slot));
      rules[id] = { packets: sumU64(values, 0), bytes: sumU64(values, 8) };
    }
  });
  return { actions, rules };
}

/** Rule id → counter slot, from the pinned name table of `device@hook` (the rules the kernel runs). */
export function pinnedRuleSlots(pinDir: string, device: string, hook = 'xdp'): Map<string, number> {
  const slots = new Map<string, number>();
  withPinnedMap(join(attachmentDir(pinDir, device, hook), 'sl_rule_ids'), (ids) => {
    for (const [key, value] of ids.entries()) {
      const id = decodeName(value as Buffer);
      if (id) slots.set(id, key.readUInt32LE(0));
    }
  });
  return slots;
}

/**
 * Membership in the pinned IPv4 set ranges (sl_set4_*) of one set: the mask at an address, read
 * as the pipeline reads it, and the set's bit (from sl_set_names). Holds the maps open, for
 * polling while the daemon writes; close() when done.
 */
export class PinnedSetProbe {
  readonly #maps: ReturnType<typeof openPinnedSet4>;
  readonly #bit: number;

  constructor(pinDir: string, name: string) {
    this.#bit = withPinnedMap(join(pinDir, 'sl_set_names'), (names) => {
      for (let b = 0; b < SL_MAX_SETS; b++) if (decodeName(names.lookup(u32(b))) === name) return b;
      return -1;
    });
    this.#maps = openPinnedSet4(pinDir);
  }

  has(address: string): boolean {
    if (this.#bit < 0) return false;
    const mask = set4MaskOf(this.#maps, Uint8Array.from(address.split('.').map(Number)));
    return ((mask >>> this.#bit) & 1) === 1;
  }

  /** How many of `addresses` the set holds. */
  count(addresses: readonly string[]): number {
    return addresses.filter((a) => this.has(a)).length;
  }

  close(): void {
    this.#maps.close();
  }
}

/** Whether the pinned IPv4 set trie puts `address` in set `name` (see PinnedSetProbe). */
export function pinnedSetHas(pinDir: string, name: string, address: string): boolean {
  const probe = new PinnedSetProbe(pinDir, name);
  try {
    return probe.has(address);
  } finally {
    probe.close();
  }
}

/** The id of the XDP program `device` in `netns` runs (`ip -j link show`), or null. */
export async function xdpProgramOf(netns: string, device: string): Promise<number | null> {
  let out: string;
  try {
    out = await run(['ip', '-j', 'link', 'show', 'dev', device], { netns });
  } catch {
    return null; // no such device
  }
  const [link] = JSON.parse(out) as { xdp?: { prog?: { id: number }; attached?: unknown[] } }[];
  const xdp = link?.xdp;
  if (!xdp) return null;
  if (xdp.prog) return xdp.prog.id;
  const first = (xdp.attached as { prog?: { id: number } }[] | undefined)?.[0];
  return first?.prog?.id ?? null;
}

/** One server-sent event of GET /v1/events. */
export interface DaemonEvent {
  type: string;
  data: Record<string, unknown>;
  /** performance.now() when it arrived. */
  at: number;
}

/** A subscription to GET /v1/events over the daemon's Unix socket; `events` fills as they come. */
export class EventLog {
  readonly events: DaemonEvent[] = [];
  readonly #agent: Agent;
  readonly #abort = new AbortController();
  #done: Promise<void> = Promise.resolve();

  private constructor(socket: string) {
    this.#agent = new Agent({ connect: { socketPath: socket } });
  }

  /** Subscribes and resolves once the `hello` event arrived. */
  static async open(socket: string, intervalSeconds = 3600): Promise<EventLog> {
    const log = new EventLog(socket);
    const res = await request(`http://localhost/v1/events?interval=${intervalSeconds}`, {
      dispatcher: log.#agent,
      signal: log.#abort.signal,
    });
    if (res.statusCode !== 200) throw new Error(`GET /v1/events: ${res.statusCode}`);
    log.#done = (async () => {
      let buffered = '';
      try {
        for await (const chunk of res.body) {
          buffered += (chunk as Buffer).toString('utf8');
          let end: number;
          while ((end = buffered.indexOf('\n\n')) >= 0) {
            const block = buffered.slice(0, end);
            buffered = buffered.slice(end + 2);
            const type = /^event: (.*)$/m.exec(block)?.[1];
            const data = /^data: (.*)$/m.exec(block)?.[1];
            if (type && data)
              log.events.push({ type, data: JSON.parse(data), at: performance.now() });
          }
        }
      } catch {
        // aborted by close(), or the daemon went away
      }
    })();
    await waitFor('the hello event', () => (log.events.length > 0 ? true : undefined), 10_000);
    return log;
  }

  /** Waits for an event from index `from` on that satisfies `match`. */
  next(match: (event: DaemonEvent) => boolean, timeoutMs: number, from = 0): Promise<DaemonEvent> {
    return waitFor('an event', () => this.events.slice(from).find(match), timeoutMs);
  }

  async close(): Promise<void> {
    this.#abort.abort();
    await this.#done;
    await this.#agent.close().catch(() => undefined);
  }
}
