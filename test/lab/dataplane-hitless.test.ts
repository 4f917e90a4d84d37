// Hitless changes under traffic: 1000 rule-set changes and a program replacement by a restarted controller while two UDP streams cross the router; the allowed one loses nothing, the blocked one gets nothing through, and no counter starts over.
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { DataplaneSpec } from '../../controller/dataplane/dataplane.js';
import type { RuleSpec } from '../../controller/dataplane/model.js';
import { udpStream } from '../../netns-lab/traffic.js';
import { describeKernel } from '../helpers/privileges.js';
import {
  counterDelta,
  countersOf,
  openDataplaneLab,
  sleep,
  udpFrameBytes,
  type DataplaneLab,
} from './dataplane-lab.js';

const CHANGES = 1000;
const PAIR_CHANGES = 250;
const RATE = 1000;
const ALLOWED_PORT = 9500;
const BLOCKED_PORT = 9501;

/** xorshift32, so that change i is the same rule set on every run. */
function prng(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state;
  };
}

/**
 * Change number `i`: rule sets come in pairs applied in turn, a new pair every PAIR_CHANGES
 * changes. Each holds a drop of the blocked port and nothing that decides the allowed stream but
 * the default pass or a pass rule; around them unrelated rules come and go (other ports, a
 * prefix, a set whose members change, ICMP, TCP flags), a count rule that sees both streams
 * appears and leaves, and priorities and the order given change. Consecutive rule sets always
 * differ; the writer keeps a copy of each generation's tables and sends only differences, so
 * within a pair a change is cheap and a new pair rewrites both generations' tables.
 */
function ruleSet(device: string, i: number): DataplaneSpec {
  const variant = Math.floor(i / PAIR_CHANGES) * 2 + (i % 2);
  const next = prng(variant + 1);
  const rules: RuleSpec[] = [
    { id: 'block', proto: 'udp', dport: BLOCKED_PORT, action: 'drop', priority: next() % 2000 },
  ];
  if (variant % 2 === 0) {
    rules.push({ id: 'allow', proto: 'udp', dport: ALLOWED_PORT, action: 'pass' });
  }
  if (variant % 4 < 2) {
    rules.push({ id: 'seen', proto: 'udp', dport: [9500, 9501], action: 'count', priority: 1 });
  }
  for (let k = 0; k < 8; k++) {
    if (next() % 2) {
      rules.push({
        id: `other-port-${k}`,
        proto: k % 2 ? 'udp' : 'tcp',
        dport: 10_000 + k * 100 + (next() % 100),
        action: 'drop',
        priority: next() % 2000,
      });
    }
  }
  if (next() % 2)
    rules.push({ id: 'far-src', src: `203.0.113.${(next() % 64) * 4}/30`, action: 'drop' });
  if (next() % 2)
    rules.push({ id: 'noise', srcSet: 'noise', action: 'drop', priority: next() % 2000 });
  if (next() % 2) rules.push({ id: 'echo', proto: 'icmp', icmp: { type: 8 }, action: 'pass' });
  if (next() % 2) rules.push({ id: 'syn', tcpFlags: 'syn,!ack', dport: 22, action: 'drop' });
  // The order given changes too: equal priorities keep it.
  if (next() % 2) rules.reverse();
  return {
    sets: [
      {
        name: 'noise',
        prefixes: Array.from(
          { length: 1 + (next() % 4) },
          (_, k) => `203.0.113.${64 + k * 16 + (next() % 4) * 4}/30`,
        ),
      },
    ],
    attachments: [{ device, hook: 'xdp', mode: 'native', rules: { rules, defaultAction: 'pass' } }],
  };
}

await describeKernel('hitless changes under traffic', () => {
  let x: DataplaneLab;

  beforeAll(async () => {
    x = await openDataplaneLab();
    await x.dp.apply(ruleSet(x.net.router.client.device, 0));
  });

  afterAll(async () => {
    await x?.destroy();
  });

  it('keeps both streams exact through 1000 rule-set changes and a program replacement', async () => {
    const { net } = x;
    const device = net.router.client.device;
    const name = `${device}@xdp`;
    const before = countersOf(x.dp, device);
    const programBefore = x.dp.attachments.get(name)!.program.id;

    // Both streams run until the changes are done (at most a minute), then stop exactly.
    const stop = new AbortController();
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    let ready = 0;
    const stream = (port: number) =>
      udpStream({
        from: net.client,
        to: net.server1,
        port,
        sourcePort: port + 30_000,
        rate: RATE,
        count: RATE * 60,
        signal: stop.signal,
        onStart: () => {
          if (++ready === 2) started();
        },
      });
    const streams = Promise.all([stream(ALLOWED_PORT), stream(BLOCKED_PORT)]);

    let programAfter = programBefore;
    let flips = 0;
    let changesMs = 0;
    let failure: unknown;
    /** Waits until both streams have crossed the router again: 50 more passed and dropped. */
    const flowing = async (): Promise<void> => {
      const from = countersOf(x.dp, device).actions;
      const deadline = Date.now() + 10_000;
      for (;;) {
        const now = countersOf(x.dp, device).actions;
        if (
          now.pass.packets >= from.pass.packets + 50 &&
          now.drop.packets >= from.drop.packets + 50
        )
          return;
        if (Date.now() > deadline) throw new Error('the streams do not cross the router');
        await sleep(20);
      }
    };
    try {
      await running;
      await flowing();
      const t0 = Date.now();
      for (let i = 1; i <= CHANGES; i++) {
        if (i === CHANGES / 2) {
          // A restarted controller of another build: a new program behind the pinned link (the
          // same build would run on the pinned one), then the whole state.
          await x.reopen({ reloadPrograms: true });
          programAfter = x.dp.attachments.get(name)!.program.id;
        }
        const report = await x.dp.apply(ruleSet(device, i));
        flips += report.updated.length;
      }
      changesMs = Date.now() - t0;
      // Both streams ran before the first change and go on after the last.
      await flowing();
    } catch (error: unknown) {
      failure = error;
    } finally {
      stop.abort();
    }
    // The streams end either way; a failed change is the error to report.
    const settled = await streams.catch((error: unknown) => {
      throw failure ?? error;
    });
    if (failure !== undefined) throw failure;
    const [allowed, blocked] = settled;
    const after = countersOf(x.dp, device);
    const delta = counterDelta(after, before);

    console.info(
      `${CHANGES} changes and a replacement in ${changesMs} ms; ` +
        `allowed ${allowed.received} of ${allowed.sent}, blocked ${blocked.received} of ${blocked.sent}; ` +
        `drop ${before.actions.drop.packets} -> ${after.actions.drop.packets}, ` +
        `pass ${before.actions.pass.packets} -> ${after.actions.pass.packets}`,
    );
    expect(programAfter).not.toBe(programBefore);
    // Every change was a new generation: the rule sets differ from one to the next.
    expect(flips).toBe(CHANGES);
    expect(after.generation).toBe((before.generation + flips) % 2);

    expect(allowed).toMatchObject({ received: allowed.sent, lost: 0 });
    expect(blocked).toMatchObject({ received: 0, lost: blocked.sent });
    // Counters carried on from their values before, across 1000 generations and two processes:
    // the link crossed only by the two streams, each frame counted once.
    const frame = udpFrameBytes('ipv4', 64);
    expect(delta.rules.block).toEqual({ packets: blocked.sent, bytes: blocked.sent * frame });
    expect(delta.drop).toEqual({ packets: blocked.sent, bytes: blocked.sent * frame });
    expect(delta.pass).toEqual({ packets: allowed.sent, bytes: allowed.sent * frame });
  });
});
