// Restart without loss: a real `sluice serve` on the router is SIGKILLed in the middle of a 200k-prefix set load and SIGTERMed in the middle of a whole-config change, and restarted each time, while two UDP streams cross the router; the allowed one loses nothing, the blocked one gets nothing through, counters never start over, and the state after each restart is the last acknowledged one (the interrupted change wholly there or wholly absent, in the API and in the kernel's set maps).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, expect, it } from 'vitest';

import { LabDaemon, type ApiResponse } from '../../netns-lab/daemon.js';
import { Lab } from '../../netns-lab/lab.js';
import type { RouterTopology } from '../../netns-lab/router.js';
import { udpStream, type UdpStreamResult } from '../../netns-lab/traffic.js';
import { describeKernel } from '../helpers/privileges.js';
import { addClientAddresses } from './dataplane-lab.js';
import {
  PinnedSetProbe,
  guard,
  pinnedSetHas,
  readPinnedCounters,
  waitFor,
  type PacketCount,
  type PinnedCounters,
} from './daemon-lab.js';

const RATE = 300;
const ALLOWED_PORT = 9600;
const BLOCKED_PORT = 9601;
const BLOCKED_SOURCE = '192.0.2.3';
const BIG = 200_000;

/** Prefix i of the big set load: 10.0.0.0/32 upwards, nowhere near the lab's addresses. */
const bigPrefix = (i: number): string => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32`;
/** Addresses the big load covers, spread over it, looked up in the kernel's set maps. */
const BIG_SAMPLE = Array.from({ length: 200 }, (_, k) =>
  bigPrefix(Math.floor((k * (BIG - 1)) / 199)).replace('/32', ''),
);

interface NormalConfig {
  version: 1;
  attachments: Record<string, unknown>[];
  sets: { name: string; prefixes: string[] }[];
  rules: (Record<string, unknown> & { id: string })[];
}

/** What the daemon last acknowledged with a 2xx: the document and its generation. */
interface Acked {
  config: NormalConfig;
  generation: number;
}

/** One reading of the counters that matter here, through the API or from the pins. */
interface Reading {
  pass: number;
  drop: number;
  rules: Record<string, number>;
}

const RULE_IDS = ['seen', 'block', 'allow'];

function fromPinned(c: PinnedCounters): Reading {
  const rules: Record<string, number> = {};
  for (const id of RULE_IDS) rules[id] = c.rules[id]?.packets ?? 0;
  return { pass: c.actions.pass.packets, drop: c.actions.drop.packets, rules };
}

function fromApi(res: ApiResponse, device: string): Reading {
  const stats = res.body as {
    devices: {
      name: string;
      actions: Record<string, PacketCount>;
      rules: (PacketCount & { id: string })[];
    }[];
  };
  const d = stats.devices.find((x) => x.name === device);
  if (!d) throw new Error(`GET /v1/stats: no "${device}" in ${res.text}`);
  const rules: Record<string, number> = {};
  for (const id of RULE_IDS) rules[id] = d.rules.find((r) => r.id === id)?.packets ?? 0;
  return { pass: d.actions.pass.packets, drop: d.actions.drop.packets, rules };
}

/** Every counter of `later` is at least its value in `earlier`: nothing started over. */
function expectNotBelow(later: Reading, earlier: Reading, what: string): void {
  const flat = (r: Reading) => ({ pass: r.pass, drop: r.drop, ...r.rules });
  const l = flat(later);
  const e = flat(earlier);
  for (const key of Object.keys(e)) {
    expect(l[key as keyof typeof l], `${what}: counter "${key}"`).toBeGreaterThanOrEqual(
      e[key as keyof typeof e],
    );
  }
}

await describeKernel('daemon restart without loss', () => {
  let lab: Lab;
  let net: RouterTopology;
  let daemon: LabDaemon;
  let device: string;
  const startups: { kind: string; ms: number; startupMs: number | null }[] = [];

  /** The generation committed on disk: state.json's, or the journal's last whole line's. */
  const stateGeneration = (): number => {
    const read = (file: string): string => {
      try {
        return readFileSync(join(daemon.stateDir, file), 'utf8');
      } catch {
        return '';
      }
    };
    const generationOf = (text: string): number => {
      try {
        return (JSON.parse(text) as { generation: number }).generation;
      } catch {
        return 0;
      }
    };
    const lines = read('journal.ndjson').split('\n').slice(0, -1);
    return Math.max(generationOf(read('state.json')), generationOf(lines.at(-1) ?? ''));
  };

  /** Starts (or restarts) the daemon; records LabDaemon's ms and the daemon's own startupMs. */
  const start = async (kind: string): Promise<void> => {
    const ms = await daemon.start();
    const ready = daemon.logs.filter((l) => l.includes('"sluice ready"')).at(-1) ?? '{}';
    const startupMs = (JSON.parse(ready) as { startupMs?: number }).startupMs ?? null;
    startups.push({ kind, ms: Math.round(ms), startupMs });
  };

  /** GET, with one retry: the client's first request after a restart may meet the dead socket. */
  const get = async (path: string): Promise<ApiResponse> => {
    try {
      return await daemon.api('GET', path);
    } catch {
      return daemon.api('GET', path);
    }
  };

  const readApi = async (): Promise<Reading> => fromApi(await get('/v1/stats'), device);
  const readPins = (): Reading => fromPinned(readPinnedCounters(daemon.pinDir, device));

  const readConfig = async (): Promise<Acked> => {
    const res = await get('/v1/config');
    expect(res.status).toBe(200);
    return {
      config: res.body as NormalConfig,
      generation: Number(JSON.parse(String(res.headers.etag))),
    };
  };

  beforeAll(async () => {
    lab = new Lab();
    net = await lab.router();
    await addClientAddresses(net, lab, BLOCKED_SOURCE, '2001:db8:1::3');
    device = net.router.client.device;
    daemon = guard(lab, new LabDaemon({ netns: net.router.netns }));
    await start('first start');
  });

  afterAll(async () => {
    await daemon?.destroy();
    await lab?.destroy();
  });

  it('loses nothing, resets no counter and keeps the acknowledged state across SIGKILL and SIGTERM mid-apply', async () => {
    const initial: NormalConfig = {
      version: 1,
      attachments: [{ device, hook: 'xdp', mode: 'native' }],
      sets: [{ name: 'blocklist', prefixes: [`${BLOCKED_SOURCE}/32`, '198.18.0.0/15'] }],
      rules: [
        {
          id: 'seen',
          device,
          hook: 'xdp',
          proto: 'udp',
          dport: `${ALLOWED_PORT}-${BLOCKED_PORT}`,
          action: 'count',
          priority: 5,
        },
        { id: 'block', device, hook: 'xdp', srcSet: 'blocklist', action: 'drop', priority: 10 },
        {
          id: 'allow',
          device,
          hook: 'xdp',
          proto: 'udp',
          dport: ALLOWED_PORT,
          action: 'pass',
          priority: 20,
        },
      ],
    };
    const put = await daemon.api('PUT', '/v1/config', initial);
    expect(put.status, put.text).toBe(200);
    let acked: Acked = {
      config: initial,
      generation: (put.body as { generation: number }).generation,
    };
    expect(await readConfig()).toEqual(acked);

    const baseApi = await readApi();
    const basePins = readPins();

    // Both streams run until the restarts are done, then stop exactly.
    const stop = new AbortController();
    let ready = 0;
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    const stream = (port: number, sourceAddress?: string): Promise<UdpStreamResult> =>
      udpStream({
        from: net.client,
        to: net.server1,
        port,
        sourcePort: port + 30_000,
        ...(sourceAddress ? { sourceAddress } : {}),
        rate: RATE,
        count: RATE * 170,
        signal: stop.signal,
        onStart: () => {
          if (++ready === 2) started();
        },
      });
    const streams = Promise.all([stream(ALLOWED_PORT), stream(BLOCKED_PORT, BLOCKED_SOURCE)]);

    /** Both streams crossed the router again: 50 more passed and 50 more dropped, in the pins. */
    const flowing = async (): Promise<void> => {
      const from = readPins();
      await waitFor(
        'both streams crossing the router',
        () => {
          const now = readPins();
          return now.pass >= from.pass + 50 && now.drop >= from.drop + 50 ? true : undefined;
        },
        15_000,
        50,
      );
    };

    /**
     * Sends a change, waits until the daemon commits it (the generation on disk moves), then
     * sends `signal`. Returns the response if one came (a 2xx acknowledges the change).
     */
    const interrupt = async (
      signal: NodeJS.Signals,
      send: () => Promise<ApiResponse>,
      until?: () => boolean,
    ): Promise<{ response: ApiResponse | null; error: unknown }> => {
      let settled: { response: ApiResponse | null; error: unknown } | undefined;
      const reply = send().then(
        (response) => (settled = { response, error: null }),
        (error: unknown) => (settled = { response: null, error }),
      );
      await waitFor(
        'the change committed',
        () => {
          if (stateGeneration() > acked.generation) return true;
          if (settled)
            throw new Error(
              `the change ended before committing: ${settled.response?.text ?? String(settled.error)}`,
            );
          return undefined;
        },
        60_000,
        2,
      );
      // Then, if asked, until the kernel shows the change under way (or it was answered).
      if (until)
        await waitFor(
          'the change under way',
          () => (until() || settled ? true : undefined),
          30_000,
          1,
        );
      await daemon.stop(signal);
      await reply;
      return settled!;
    };

    /**
     * After a restart: the document is the last acknowledged one, generation included, or — when
     * an `interrupted` change was not acknowledged — possibly that change, whole, at the next
     * generation. Returns what it is now.
     */
    const expectAckedOr = async (
      interrupted: NormalConfig | null,
    ): Promise<{ now: Acked; applied: boolean }> => {
      const now = await readConfig();
      const candidates: Acked[] = [acked];
      if (interrupted) candidates.push({ config: interrupted, generation: acked.generation + 1 });
      expect(candidates).toContainEqual(now);
      const status = (await get('/v1/status')).body as {
        desiredGeneration: number;
        appliedGeneration: number;
        attachments: { state: string }[];
      };
      expect(status).toMatchObject({
        desiredGeneration: now.generation,
        appliedGeneration: now.generation,
        attachments: [{ state: 'attached' }],
      });
      return { now, applied: now.generation !== acked.generation };
    };

    let failure: unknown;
    const report: string[] = [];
    try {
      await running;
      await flowing();

      // 1. SIGKILL in the middle of a 200k-prefix load of the set the drop rule uses.
      const lines = [`${BLOCKED_SOURCE}/32`];
      for (let i = 0; i < BIG; i++) lines.push(bigPrefix(i));
      const big: NormalConfig = {
        ...acked.config,
        sets: [{ name: 'blocklist', prefixes: lines }],
      };
      const before1Api = await readApi();
      const before1Pins = readPins();
      const t0 = performance.now();
      // The kill comes as soon as the change is committed, while the data plane works on it:
      // 200,000 consecutive /32s are one range per /16 there, so its kernel writes are a handful
      // of blocks: waiting for the first of them would lose the race with the answer.
      const probe = new PinnedSetProbe(daemon.pinDir, 'blocklist');
      let killed;
      let inTrie: number;
      try {
        killed = await interrupt('SIGKILL', () =>
          daemon.api('PUT', '/v1/sets/blocklist', lines.join('\n') + '\n'),
        );
        inTrie = probe.count(BIG_SAMPLE);
      } finally {
        probe.close();
      }
      report.push(
        `SIGKILL ${Math.round(performance.now() - t0)} ms into the 200k load (${killed.response ? `answered ${killed.response.status}` : 'unanswered'}); ` +
          `the kernel held ${inTrie}/${BIG_SAMPLE.length} sampled prefixes then`,
      );
      // The kill came in the middle of the load: nothing answered it.
      expect(killed.response).toBeNull();
      // No daemon runs: the pipeline goes on, its counters too.
      await flowing();
      const down1 = readPins();
      expectNotBelow(down1, before1Pins, 'pins while the daemon is down');
      expectNotBelow(down1, before1Api, 'pins while down vs the API before the kill');

      await start('restart after SIGKILL mid-apply');
      const after1 = await expectAckedOr(big);
      acked = after1.now;
      report.push(
        `after the SIGKILL the interrupted load is ${after1.applied ? 'wholly there' : 'wholly absent'}`,
      );
      // The kernel agrees with the document: every sampled prefix of the load, or none.
      const bigThere = acked.config.sets[0].prefixes.length === lines.length;
      const has = BIG_SAMPLE.filter((a) => pinnedSetHas(daemon.pinDir, 'blocklist', a)).length;
      expect(has).toBe(bigThere ? BIG_SAMPLE.length : 0);
      expect(pinnedSetHas(daemon.pinDir, 'blocklist', BLOCKED_SOURCE)).toBe(true);
      expect(pinnedSetHas(daemon.pinDir, 'blocklist', net.client.ipv4)).toBe(false);
      expectNotBelow(await readApi(), down1, 'API after the restart');
      expectNotBelow(readPins(), down1, 'pins after the restart');

      // 2. An ordinary acknowledged change to the restarted daemon.
      const extra = { id: 'ssh', device, hook: 'xdp', proto: 'tcp', dport: 22, action: 'drop' };
      const added = await daemon.api('POST', '/v1/rules', extra);
      expect(added.status, added.text).toBe(201);
      acked = {
        config: { ...acked.config, rules: [...acked.config.rules, extra] },
        generation: (added.body as { generation: number }).generation,
      };
      expect(await readConfig()).toEqual(acked);
      await flowing();

      // 3. SIGTERM in the middle of a whole-document change: another 40k-prefix set, a rule
      //    more and one less, at once.
      const other: NormalConfig = {
        ...acked.config,
        sets: [
          {
            name: 'blocklist',
            prefixes: [
              `${BLOCKED_SOURCE}/32`,
              ...Array.from(
                { length: 40_000 },
                (_, i) => `11.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32`,
              ),
            ],
          },
        ],
        rules: [
          ...acked.config.rules.filter((r) => r.id !== 'ssh'),
          { id: 'telnet', device, hook: 'xdp', proto: 'tcp', dport: 23, action: 'drop' },
        ],
      };
      const before2Api = await readApi();
      const before2Pins = readPins();
      const termed = await interrupt('SIGTERM', () => daemon.api('PUT', '/v1/config', other));
      report.push(
        `SIGTERM during the whole-config change: ${termed.response ? `answered ${termed.response.status}` : `unanswered (${String(termed.error)})`}`,
      );
      // A graceful stop lets the change in flight finish and answers it.
      expect(termed.response?.status, termed.response?.text ?? String(termed.error)).toBe(200);
      acked = {
        config: other,
        generation: (termed.response!.body as { generation: number }).generation,
      };
      await flowing();
      const down2 = readPins();
      expectNotBelow(down2, before2Pins, 'pins after SIGTERM');
      expectNotBelow(down2, before2Api, 'pins after SIGTERM vs the API before');

      await start('restart after SIGTERM');
      const after2 = await expectAckedOr(null);
      acked = after2.now;
      const otherThere = acked.config.sets[0].prefixes.includes('11.0.156.63/32');
      for (const address of ['11.0.0.0', '11.0.78.32', '11.0.156.63'])
        expect(pinnedSetHas(daemon.pinDir, 'blocklist', address)).toBe(otherThere);
      for (const address of BIG_SAMPLE.slice(0, 20))
        expect(pinnedSetHas(daemon.pinDir, 'blocklist', address)).toBe(bigThere && !otherThere);
      expect(pinnedSetHas(daemon.pinDir, 'blocklist', BLOCKED_SOURCE)).toBe(true);
      expectNotBelow(await readApi(), down2, 'API after the second restart');
      expectNotBelow(readPins(), down2, 'pins after the second restart');
      await flowing();

      // 4. SIGKILL again, in the middle of swapping that set for another 200k prefixes: ranges
      //    removed and added; after the restart all of one set or all of the other.
      const oldSample = ['11.0.0.0', '11.0.39.16', '11.0.78.32', '11.0.117.48', '11.0.156.63'];
      const swapLines = [`${BLOCKED_SOURCE}/32`];
      for (let i = 0; i < BIG; i++) swapLines.push(bigPrefix(i).replace(/^10\./, '12.'));
      const swapSample = BIG_SAMPLE.map((a) => a.replace(/^10\./, '12.'));
      const swapped: NormalConfig = {
        ...acked.config,
        sets: [{ name: 'blocklist', prefixes: swapLines }],
      };
      const before3Pins = readPins();
      const swapProbe = new PinnedSetProbe(daemon.pinDir, 'blocklist');
      let killed3;
      let midSwap: string;
      try {
        // The kill comes once the swap is committed, while the data plane writes it (as above).
        killed3 = await interrupt('SIGKILL', () =>
          daemon.api('PUT', '/v1/sets/blocklist', swapLines.join('\n') + '\n'),
        );
        midSwap = `${swapProbe.count(oldSample)}/${oldSample.length} old and ${swapProbe.count(swapSample)}/${swapSample.length} new sampled prefixes`;
      } finally {
        swapProbe.close();
      }
      report.push(`SIGKILL in the middle of the swap: the kernel held ${midSwap} then`);
      expect(killed3.response).toBeNull();
      await flowing();
      const down3 = readPins();
      expectNotBelow(down3, before3Pins, 'pins while down after the third kill');

      await start('restart after SIGKILL mid-swap');
      const after3 = await expectAckedOr(swapped);
      acked = after3.now;
      report.push(
        `after the SIGKILL the interrupted swap is ${after3.applied ? 'wholly there' : 'wholly absent'}`,
      );
      const swapThere = after3.applied;
      const probe3 = new PinnedSetProbe(daemon.pinDir, 'blocklist');
      try {
        expect(probe3.count(swapSample)).toBe(swapThere ? swapSample.length : 0);
        expect(probe3.count(oldSample)).toBe(swapThere ? 0 : oldSample.length);
        expect(probe3.has(BLOCKED_SOURCE)).toBe(true);
        expect(probe3.has(net.client.ipv4)).toBe(false);
      } finally {
        probe3.close();
      }
      expectNotBelow(readPins(), down3, 'pins after the third restart');
      await flowing();
    } catch (error: unknown) {
      failure = error;
    } finally {
      stop.abort();
    }
    const settled = await streams.catch((error: unknown) => {
      throw failure ?? error;
    });
    if (failure !== undefined) throw failure;
    const [allowed, blocked] = settled;

    const endApi = await readApi();
    const endPins = readPins();
    console.info(
      [
        ...startups.map(
          (s) => `${s.kind}: ready in ${s.ms} ms (the daemon's startupMs ${s.startupMs})`,
        ),
        ...report,
        `allowed ${allowed.received} of ${allowed.sent}, blocked ${blocked.received} of ${blocked.sent}`,
        `pass ${basePins.pass} -> ${endPins.pass}, drop ${basePins.drop} -> ${endPins.drop}`,
      ].join('\n'),
    );
    expect(allowed).toMatchObject({ received: allowed.sent, lost: 0 });
    expect(blocked).toMatchObject({ received: 0, lost: blocked.sent });
    // Counted once each, across three processes and none: exact, in the pins and through the API.
    for (const [end, base] of [
      [endPins, basePins],
      [endApi, baseApi],
    ] as const) {
      expect({
        drop: end.drop - base.drop,
        block: end.rules.block - base.rules.block,
        allow: end.rules.allow - base.rules.allow,
        seen: end.rules.seen - base.rules.seen,
      }).toEqual({
        drop: blocked.sent,
        block: blocked.sent,
        allow: allowed.sent,
        seen: allowed.sent + blocked.sent,
      });
      expect(end.pass - base.pass).toBeGreaterThanOrEqual(allowed.sent);
    }
  });
});
