// Concurrency: 50 clients send 2,000 mixed requests at once over the daemon's Unix socket (rule adds with and without ids, removes of acknowledged rules, set prefix adds and removes, attachments of spare veths coming and going, config reads); every acknowledged change is there exactly once, their generations are unique and gapless, the final document is the acknowledged changes applied in generation order, and the kernel agrees.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Agent, request } from 'undici';

import { LabDaemon } from '../../netns-lab/daemon.js';
import { Lab } from '../../netns-lab/lab.js';
import { describeKernel } from '../helpers/privileges.js';
import { PinnedSetProbe, guard, pinnedRuleSlots, xdpProgramOf } from './daemon-lab.js';

const CLIENTS = 50;
const REQUESTS = 2000;
const PER_CLIENT = REQUESTS / CLIENTS;
const SPARES = 4;
/** Clients below this attach a spare veth at their op ATTACH_AT and detach it at DETACH_AT. */
const ATTACHING_CLIENTS = 16;
const ATTACH_AT = 8;
const DETACH_AT = 28;

interface Rule {
  id: string;
  device: string;
  hook: string;
  [field: string]: unknown;
}

interface Attachment {
  device: string;
  hook?: string;
  mode?: string;
}

interface NormalConfig {
  version: 1;
  attachments: Attachment[];
  sets: { name: string; prefixes: string[] }[];
  rules: Rule[];
}

/** One acknowledged (2xx) change, as the client saw it. */
type Change =
  | { kind: 'rule-add'; rule: Rule }
  | { kind: 'rule-remove'; id: string }
  | { kind: 'prefix-add'; prefix: string }
  | { kind: 'prefix-remove'; prefix: string }
  | { kind: 'attach'; attachment: Attachment }
  | { kind: 'detach'; device: string }
  | { kind: 'replace'; config: NormalConfig; ifMatch: number };

interface Ack {
  client: number;
  generation: number;
  change: Change;
}

/** xorshift32: the same op mix on every run. */
function prng(seed: number): () => number {
  let state = (seed * 2654435761) >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 2 ** 32;
  };
}

/** `config` with `change` applied, as the controller documents each call. */
function applyChange(config: NormalConfig, change: Change): NormalConfig {
  const next = structuredClone(config);
  const pool = next.sets.find((s) => s.name === 'pool')!;
  switch (change.kind) {
    case 'rule-add':
      next.rules.push(change.rule);
      break;
    case 'rule-remove':
      next.rules = next.rules.filter((r) => r.id !== change.id);
      break;
    case 'prefix-add':
      if (!pool.prefixes.includes(change.prefix)) pool.prefixes.push(change.prefix);
      break;
    case 'prefix-remove':
      pool.prefixes = pool.prefixes.filter((p) => p !== change.prefix);
      break;
    case 'attach': {
      const at = next.attachments.findIndex((a) => a.device === change.attachment.device);
      if (at >= 0) next.attachments[at] = change.attachment;
      else next.attachments.push(change.attachment);
      break;
    }
    case 'detach':
      next.attachments = next.attachments.filter((a) => a.device !== change.device);
      break;
    case 'replace':
      return structuredClone(change.config);
  }
  return next;
}

await describeKernel('daemon under concurrent clients', () => {
  let lab: Lab;
  let netns: string;
  let daemon: LabDaemon;
  let agent: Agent;
  let main: string;
  const spares: string[] = [];

  beforeAll(async () => {
    lab = new Lab();
    netns = await lab.addNamespace('d');
    main = `${lab.id}m0`;
    const pairs: [string, string][] = [[main, `${lab.id}m1`]];
    for (let i = 0; i < SPARES; i++) {
      spares.push(`${lab.id}v${i}`);
      pairs.push([`${lab.id}v${i}`, `${lab.id}w${i}`]);
    }
    for (const [a, b] of pairs) {
      await lab.exec(netns, ['ip', 'link', 'add', a, 'type', 'veth', 'peer', 'name', b]);
      await lab.exec(netns, ['ip', 'link', 'set', a, 'up']);
      await lab.exec(netns, ['ip', 'link', 'set', b, 'up']);
    }
    daemon = guard(lab, new LabDaemon({ netns, logLevel: 'warn' }));
    await daemon.start();
    agent = new Agent({ connect: { socketPath: daemon.socket }, connections: CLIENTS });
  });

  afterAll(async () => {
    await agent?.close();
    await daemon?.destroy();
    await lab?.destroy();
  });

  it('keeps every acknowledged change of 50 concurrent clients, in one serial order, in the API and the kernel', async () => {
    let calls = 0;
    const call = async (
      method: string,
      path: string,
      body?: unknown,
      headers: Record<string, string> = {},
    ): Promise<{ status: number; body: unknown; etag?: string }> => {
      calls++;
      const res = await request(`http://localhost${path}`, {
        method: method as 'GET',
        dispatcher: agent,
        headers: {
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...headers,
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.body.text();
      return {
        status: res.statusCode,
        body: text ? JSON.parse(text) : null,
        etag: res.headers.etag as string | undefined,
      };
    };

    const put = await call('PUT', '/v1/config', {
      attachments: [{ device: main, hook: 'xdp', mode: 'native' }],
      sets: [{ name: 'pool', prefixes: ['192.0.2.0/24'] }],
      rules: [{ id: 'base', device: main, hook: 'xdp', proto: 'udp', dport: 1, action: 'drop' }],
    });
    expect(put.status).toBe(200);
    const first = await call('GET', '/v1/config');
    const start = {
      config: first.body as NormalConfig,
      generation: Number(JSON.parse(first.etag!)),
    };

    const acks: Ack[] = [];
    const statuses = new Map<string, number>();
    const unexpected: string[] = [];
    const readProblems: string[] = [];
    let reads = 0;

    const client = async (c: number): Promise<void> => {
      const random = prng(c + 1);
      const myRules: string[] = [];
      const myPrefixes: string[] = [];
      let lastGeneration = 0;
      const tally = (kind: string, status: number): void => {
        const key = `${kind} ${status}`;
        statuses.set(key, (statuses.get(key) ?? 0) + 1);
      };
      /** Sends one change; on a 2xx records it with the generation it was given. */
      const change = async (
        kind: Change['kind'],
        method: string,
        path: string,
        body: unknown,
        made: (res: { body: unknown }) => Change,
        allowed: number[] = [],
      ): Promise<boolean> => {
        const res = await call(method, path, body);
        tally(kind, res.status);
        if (res.status >= 200 && res.status < 300) {
          const generation = (res.body as { generation: number }).generation;
          if (generation <= lastGeneration)
            unexpected.push(
              `client ${c}: ${kind} acknowledged as ${generation} after ${lastGeneration}`,
            );
          lastGeneration = generation;
          acks.push({ client: c, generation, change: made(res) });
          return true;
        }
        if (!allowed.includes(res.status))
          unexpected.push(
            `client ${c}: ${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`,
          );
        return false;
      };

      for (let n = 0; n < PER_CLIENT; n++) {
        const r = random();
        const spare = spares[c % SPARES];
        if (c < ATTACHING_CLIENTS && n === ATTACH_AT) {
          const attachment = { device: spare, hook: 'xdp', mode: 'native' };
          await change('attach', 'POST', '/v1/attachments', attachment, () => ({
            kind: 'attach',
            attachment,
          }));
        } else if (c < ATTACHING_CLIENTS && n === DETACH_AT) {
          // Another client may have detached it first: 404, not a change.
          await change(
            'detach',
            'DELETE',
            `/v1/attachments/${spare}`,
            undefined,
            () => ({ kind: 'detach', device: spare }),
            [404],
          );
        } else if (r < 0.03) {
          // Read, modify, write back with If-Match: applied on exactly the generation read,
          // or refused with 412 when another change came in between (then read again, a few
          // times).
          for (let attempt = 0; attempt < 5; attempt++) {
            const read = await call('GET', '/v1/config');
            const generation = Number(JSON.parse(read.etag!));
            const doc = read.body as NormalConfig;
            const rule = {
              id: `c${c}-${n}-put`,
              device: main,
              hook: 'xdp',
              proto: 'udp',
              dport: 9 + n,
              action: 'drop',
            };
            const replaced = { ...doc, rules: [...doc.rules, rule] };
            const res = await call('PUT', '/v1/config', replaced, {
              'if-match': `"${generation}"`,
            });
            tally('replace', res.status);
            if (res.status === 200) {
              const given = (res.body as { generation: number }).generation;
              if (given !== generation + 1)
                unexpected.push(`client ${c}: If-Match "${generation}" applied as ${given}`);
              lastGeneration = given;
              acks.push({
                client: c,
                generation: given,
                change: { kind: 'replace', config: replaced, ifMatch: generation },
              });
              myRules.push(rule.id);
              break;
            }
            if (res.status !== 412) {
              unexpected.push(
                `client ${c}: PUT /v1/config: ${res.status} ${JSON.stringify(res.body)}`,
              );
              break;
            }
          }
        } else if (r < 0.15 && myRules.length > 0) {
          const id = myRules.splice(Math.floor(random() * myRules.length), 1)[0];
          await change('rule-remove', 'DELETE', `/v1/rules/${id}`, undefined, () => ({
            kind: 'rule-remove',
            id,
          }));
        } else if (r < 0.45) {
          const withId = r >= 0.3;
          const rule = {
            ...(withId ? { id: `c${c}-${n}` } : {}),
            device: main,
            hook: 'xdp',
            proto: n % 2 ? 'udp' : 'tcp',
            dport: 10_000 + c * PER_CLIENT + n,
            action: n % 3 ? 'drop' : 'count',
          };
          await change('rule-add', 'POST', '/v1/rules', rule, (res) => {
            const stored = (res.body as { rule: Rule }).rule;
            myRules.push(stored.id);
            return { kind: 'rule-add', rule: stored };
          });
        } else if (r < 0.53 && myPrefixes.length > 0) {
          const prefix = myPrefixes.splice(Math.floor(random() * myPrefixes.length), 1)[0];
          await change(
            'prefix-remove',
            'DELETE',
            '/v1/sets/pool/prefixes',
            { prefixes: [prefix] },
            () => ({ kind: 'prefix-remove', prefix }),
          );
        } else if (r < 0.85) {
          const prefix = `10.${c}.${n}.0/24`;
          await change(
            'prefix-add',
            'POST',
            '/v1/sets/pool/prefixes',
            { prefixes: [prefix] },
            () => {
              myPrefixes.push(prefix);
              return { kind: 'prefix-add', prefix };
            },
          );
        } else {
          // A read sees at least this client's own acknowledged changes.
          const res = await call('GET', '/v1/config');
          tally('read', res.status);
          reads++;
          const generation = Number(JSON.parse(res.etag ?? '0'));
          const doc = res.body as NormalConfig;
          if (generation < lastGeneration)
            readProblems.push(`client ${c}: read ${generation} after ack ${lastGeneration}`);
          const ids = new Set(doc.rules.map((x) => x.id));
          const missing = myRules.filter((id) => !ids.has(id));
          if (missing.length > 0)
            readProblems.push(`client ${c}: read misses its rules ${missing.join(', ')}`);
        }
      }
    };

    calls = 0;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c)));
    const seconds = (performance.now() - t0) / 1000;

    const burst = calls;
    const final = await call('GET', '/v1/config');
    const finalGeneration = Number(JSON.parse(final.etag!));
    const config = final.body as NormalConfig;
    const changesPerSecond = acks.length / seconds;
    console.info(
      `${CLIENTS} clients, ${REQUESTS} requests (${acks.length} acknowledged changes, ${reads} reads) ` +
        `in ${seconds.toFixed(1)} s: ${changesPerSecond.toFixed(1)} changes/s, ` +
        `${burst} HTTP requests in all, ${(burst / seconds).toFixed(1)}/s\n` +
        [...statuses].map(([k, v]) => `${k}: ${v}`).join(', '),
    );
    expect(unexpected).toEqual([]);
    expect(readProblems).toEqual([]);

    // Generations: one per acknowledged change, none shared, none skipped.
    const ordered = [...acks].sort((a, b) => a.generation - b.generation);
    expect(ordered.map((a) => a.generation)).toEqual(
      Array.from({ length: acks.length }, (_, i) => start.generation + 1 + i),
    );
    expect(finalGeneration).toBe(start.generation + acks.length);

    // Rule ids, generated or given, are unique; every rule added and not removed is there once.
    const added = acks.flatMap((a) =>
      a.change.kind === 'rule-add'
        ? [a.change.rule.id]
        : a.change.kind === 'replace'
          ? [a.change.config.rules.at(-1)!.id]
          : [],
    );
    expect(new Set(added).size).toBe(added.length);
    const removed = acks.filter((a) => a.change.kind === 'rule-remove').length;
    expect(config.rules.length).toBe(1 + added.length - removed);
    expect(new Set(config.rules.map((r) => r.id)).size).toBe(config.rules.length);

    // The final document is the acknowledged changes applied in generation order.
    const expected = ordered.reduce((doc, ack) => applyChange(doc, ack.change), start.config);
    expect(config).toEqual(expected);

    // The daemon applied it all.
    const status = (await call('GET', '/v1/status')).body as {
      desiredGeneration: number;
      appliedGeneration: number;
      attachments: { device: string; state: string }[];
    };
    expect(status.desiredGeneration).toBe(finalGeneration);
    expect(status.appliedGeneration).toBe(finalGeneration);
    expect(status.attachments.map((a) => [a.device, a.state]).sort()).toEqual(
      config.attachments.map((a) => [a.device, 'attached']).sort(),
    );

    // The kernel agrees: the rule ids the main attachment's pinned table holds are the
    // document's, ...
    expect([...pinnedRuleSlots(daemon.pinDir, main).keys()].sort()).toEqual(
      config.rules.map((r) => r.id).sort(),
    );
    // ... the pinned set trie holds exactly the acknowledged prefixes still in the set, ...
    const pool = config.sets.find((s) => s.name === 'pool')!.prefixes;
    const everAdded = acks.flatMap((a) =>
      a.change.kind === 'prefix-add' ? [a.change.prefix] : [],
    );
    const probe = new PinnedSetProbe(daemon.pinDir, 'pool');
    try {
      const wrong = everAdded.filter(
        (p) => probe.has(p.replace(/0\/24$/, '1')) !== pool.includes(p),
      );
      expect(wrong).toEqual([]);
      expect(probe.has('192.0.2.1')).toBe(true);
    } finally {
      probe.close();
    }
    // ... and exactly the configured spare veths run an XDP program.
    for (const spare of spares) {
      const configured = config.attachments.some((a) => a.device === spare);
      expect((await xdpProgramOf(netns, spare)) !== null, spare).toBe(configured);
    }
  });

  it('creates a set once when twenty clients create the same name at the same moment', async () => {
    const results = await Promise.all(
      Array.from({ length: 20 }, async (_, c) => {
        const res = await request('http://localhost/v1/sets', {
          method: 'POST',
          dispatcher: agent,
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ name: 'race', prefixes: [`198.18.${c}.0/24`] }),
        });
        return { client: c, status: res.statusCode, body: (await res.body.json()) as unknown };
      }),
    );
    const created = results.filter((r) => r.status === 201);
    expect(created).toHaveLength(1);
    expect(results.filter((r) => r.status === 409)).toHaveLength(19);
    const set = await daemon.api('GET', '/v1/sets/race');
    expect((set.body as { prefixes: string[] }).prefixes).toEqual([
      `198.18.${created[0].client}.0/24`,
    ]);
    expect((await daemon.api('DELETE', '/v1/sets/race')).status).toBe(200);
  });
});
