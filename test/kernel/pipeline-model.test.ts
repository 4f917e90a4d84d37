// Property: the pipeline program (XDP and TC, under BPF_PROG_TEST_RUN) decides every random frame as the rule-by-rule model does, and counts what it says.
//
// Each round applies one random scenario (test/helpers/pipeline-rules.ts: four prefix sets
// nested within and across each other, a rule set using every match field, tcpdump filters,
// count/pass/drop and never-limiting ratelimit rules, random default and malformed actions) to
// one attachment — a generation flip — then runs 250 random frames
// (test/helpers/pipeline-packets.ts) through the attachment's program in one testRunEach and
// through decide(). Demanded per frame: the same verdict. Demanded per round: each rule's
// packet and byte counters moved by exactly the frames whose decision lists its position in
// `matched`, and the per-verdict and per-event counters by what the decisions add up to.
// 100 rounds at XDP, then 40 at TC ingress on the same device (about a minute on a loaded
// two-core machine; SLUICE_PIPELINE_ROUNDS multiplies both for a soak).
//
// Test runs refuse frames shorter than an Ethernet header, and the skb test run also refuses an
// untagged IPv4 or IPv6 frame cut inside its IP header: those frames are left out (the refusal
// itself is checked).
//
// Seeds: round i uses scenario seed BASE + i (TC: BASE + 1000000 + i) and packet seed
// seed ^ 0xa5a5a5a5, with BASE from SLUICE_PIPELINE_SEED (default below). A failure names the
// round's seed, the sets, the rule set, the frames that differ and the command that reruns it.
import { afterAll, beforeAll, expect, it } from 'vitest';

import type { AttachmentCounters } from '../../controller/dataplane/counters.js';
import { Dataplane } from '../../controller/dataplane/dataplane.js';
import type { Hook } from '../../controller/dataplane/attachment.js';
import { decide, type Decision } from '../../controller/dataplane/model-decide.js';
import { ruleSetActions, validateRuleSet } from '../../controller/dataplane/model.js';
import { Lab, type PairTopology } from '../../netns-lab/lab.js';
import { openPairDataplane } from '../helpers/pair-dataplane.js';
import { EINVAL, ETH_HLEN, refusedAtTc } from '../helpers/pipeline-frames.js';
import { generatePipelinePackets, hexOf } from '../helpers/pipeline-packets.js';
import {
  SCENARIO_SETS,
  generateRuleScenario,
  setMembership,
  type RuleScenario,
} from '../helpers/pipeline-rules.js';
import { describeKernel } from '../helpers/privileges.js';

const BASE_SEED = Number(process.env.SLUICE_PIPELINE_SEED ?? 0x5eed_0c1a) >>> 0;
const FRAMES_PER_ROUND = 250;
/** Rounds per hook: XDP is the main path; TC shares the parse and the walk. */
const ROUNDS: Record<'xdp' | 'tc-ingress', number> = { xdp: 100, 'tc-ingress': 40 };
/** SLUICE_PIPELINE_ROUNDS multiplies the rounds (a soak: `SLUICE_PIPELINE_ROUNDS=20`). */
const SCALE = Number(process.env.SLUICE_PIPELINE_ROUNDS ?? 1);
/** Every LONG_RUN-th round has a long run of rules that reaches the step limit. */
const LONG_RUN = 6;
/** Round seeds of the TC rounds start past the XDP ones: other scenarios. */
const TC_SEED_OFFSET = 1_000_000;

const RETVAL = {
  xdp: { pass: 2, drop: 1 },
  'tc-ingress': { pass: 0, drop: 2 },
} as const;

/** What the kernel's counters should have moved by in one round. */
interface Expected {
  rules: Map<string, { packets: number; bytes: number }>;
  pass: { packets: number; bytes: number };
  drop: { packets: number; bytes: number };
  events: Record<'malformed' | 'truncated' | 'default' | 'stepLimit', number>;
}

/** Coverage of the paths, summed over rounds: a property that only ever hit the default is no test. */
interface Stats {
  frames: number;
  byRule: number;
  counted: number;
  stepLimit: number;
  malformed: number;
  filterRules: number;
}

function emptyStats(): Stats {
  return { frames: 0, byRule: 0, counted: 0, stepLimit: 0, malformed: 0, filterRules: 0 };
}

function rerun(hook: string, seed: number): string {
  return `round seed ${seed} at ${hook}; rerun: SLUICE_PIPELINE_SEED=${BASE_SEED} CI=true npx vitest run --project kernel test/kernel/pipeline-model.test.ts`;
}

function counterDelta(after: AttachmentCounters, before: AttachmentCounters) {
  const beforeRules = new Map(before.rules.map((r) => [r.id, r]));
  return {
    rules: new Map(
      after.rules.map((r) => {
        const b = beforeRules.get(r.id);
        return [
          r.id,
          { packets: r.packets - (b?.packets ?? 0), bytes: r.bytes - (b?.bytes ?? 0) },
        ] as const;
      }),
    ),
    pass: {
      packets: after.actions.pass.packets - before.actions.pass.packets,
      bytes: after.actions.pass.bytes - before.actions.pass.bytes,
    },
    drop: {
      packets: after.actions.drop.packets - before.actions.drop.packets,
      bytes: after.actions.drop.bytes - before.actions.drop.bytes,
    },
    redirect: after.actions.redirect.packets - before.actions.redirect.packets,
    events: Object.fromEntries(
      Object.entries(after.events).map(([k, v]) => [
        k,
        v - before.events[k as keyof typeof before.events],
      ]),
    ),
  };
}

await describeKernel('the pipeline program against the rule-by-rule model', () => {
  let lab: Lab;
  let net: PairTopology;
  let dp: Dataplane;

  beforeAll(async () => {
    ({ lab, net, dp } = await openPairDataplane());
  });

  afterAll(async () => {
    await dp?.destroy().catch(() => undefined);
    await lab?.destroy();
  });

  const countersOf = (hook: Hook): AttachmentCounters => {
    const c = dp.counters().find((x) => x.hook === hook && x.device === net.right.device);
    if (!c) throw new Error(`no counters for ${net.right.device}@${hook}`);
    return c;
  };

  /** Applies one scenario, runs its frames, and compares; returns the failure text, if any. */
  async function round(
    hook: Hook & keyof typeof RETVAL,
    sc: RuleScenario,
    packetSeed: number,
    stats: Stats,
  ): Promise<string | undefined> {
    const rules = validateRuleSet(sc.ruleSet, { sets: new Set(SCENARIO_SETS) });
    const actions = ruleSetActions(sc.ruleSet);
    const sets = setMembership(sc.sets);
    await dp.apply({
      sets: sc.sets,
      attachments: [{ device: net.right.device, hook, rules: sc.ruleSet }],
    });
    const att = dp.attachments.get(`${net.right.device}@${hook}`);
    if (!att) return 'no attachment after apply';
    // The kernel's positions are the model's.
    const kernelIds = att.rules.map((r) => r.id);
    const modelIds = rules.map((r) => r.id);
    if (JSON.stringify(kernelIds) !== JSON.stringify(modelIds))
      return `rule positions differ: kernel ${JSON.stringify(kernelIds)}, model ${JSON.stringify(modelIds)}`;

    const all = generatePipelinePackets({ seed: packetSeed, count: FRAMES_PER_ROUND });
    const runnable = all.filter((p) => p.data.length >= ETH_HLEN);
    const before = countersOf(hook);
    const run = await att.program.testRunEach(runnable.map((p) => p.data));
    const after = countersOf(hook);
    // At TC the test run also refuses an untagged IPv4 or IPv6 frame cut inside its IP header
    // (the skb it builds must hold one): those are left out, and must be exactly those.
    const frames: typeof runnable = [];
    const retvals: number[] = [];
    const errnos: number[] = [];
    for (const [i, p] of runnable.entries()) {
      if (hook !== 'xdp' && refusedAtTc(p.data)) {
        if (run.errnos[i] !== EINVAL)
          return `frame ${hexOf(p.data)} (${p.description}): the TC test run ran a frame cut inside its IP header (errno ${run.errnos[i]}, retval ${run.retvals[i]})`;
        continue;
      }
      frames.push(p);
      retvals.push(run.retvals[i]);
      errnos.push(run.errnos[i]);
    }

    const expected: Expected = {
      rules: new Map(rules.map((r) => [r.id, { packets: 0, bytes: 0 }])),
      pass: { packets: 0, bytes: 0 },
      drop: { packets: 0, bytes: 0 },
      events: { malformed: 0, truncated: 0, default: 0, stepLimit: 0 },
    };
    const wrong: string[] = [];
    frames.forEach((p, i) => {
      const d: Decision = decide(rules, actions, sets, p.data);
      const verdict = d.verdict === 'drop' ? 'drop' : 'pass';
      const want = RETVAL[hook][verdict];
      if (errnos[i] !== 0 || retvals[i] !== want)
        wrong.push(
          `frame ${i} (${p.description}; ${p.data.length} bytes) ${hexOf(p.data)}: kernel ${errnos[i] ? `errno ${errnos[i]}` : `retval ${retvals[i]}`}, model ${JSON.stringify(d)} (retval ${want})`,
        );
      for (const pos of d.matched) {
        const c = expected.rules.get(rules[pos].id)!;
        c.packets++;
        c.bytes += p.data.length;
      }
      expected[verdict].packets++;
      expected[verdict].bytes += p.data.length;
      if (d.event === 'step_limit') expected.events.stepLimit++;
      else if (d.event) expected.events[d.event]++;
      stats.frames++;
      if (!d.event) stats.byRule++;
      if (d.matched.length > (d.event ? 0 : 1)) stats.counted++;
      if (d.event === 'step_limit') stats.stepLimit++;
      if (d.event === 'malformed' || d.event === 'truncated') stats.malformed++;
    });
    stats.filterRules += rules.filter((r) => r.filter !== undefined).length;
    if (wrong.length > 0)
      return `${wrong.length} of ${frames.length} frames differ:\n  ${wrong.slice(0, 5).join('\n  ')}`;

    const got = counterDelta(after, before);
    const want = {
      rules: expected.rules,
      pass: expected.pass,
      drop: expected.drop,
      redirect: 0,
      events: {
        ...expected.events,
        ratelimited: 0,
        fwdToStack: 0,
        fwdFailed: 0,
        filterMissing: 0,
      },
    };
    const show = (x: typeof want | typeof got): string =>
      JSON.stringify({ ...x, rules: Object.fromEntries(x.rules) });
    const sortEvents = <T extends { events: Record<string, number> }>(x: T): T => ({
      ...x,
      events: Object.fromEntries(Object.entries(x.events).sort(([a], [b]) => a.localeCompare(b))),
    });
    if (show(sortEvents(got)) !== show(sortEvents(want)))
      return `counters differ:\n  kernel ${show(sortEvents(got))}\n  model  ${show(sortEvents(want))}`;
    return undefined;
  }

  for (const hook of ['xdp', 'tc-ingress'] as const) {
    const rounds = Math.round(ROUNDS[hook] * SCALE);
    it(
      `decides ${rounds} random rule sets × ${FRAMES_PER_ROUND} random frames as the model does at ${hook}, and counts each rule's matches`,
      { timeout: 240_000 * SCALE },
      async () => {
        const stats = emptyStats();
        const offset = hook === 'xdp' ? 0 : TC_SEED_OFFSET;
        for (let i = 0; i < rounds; i++) {
          const seed = (BASE_SEED + offset + i) >>> 0;
          const sc = generateRuleScenario(seed, { longRun: i % LONG_RUN === 1 });
          let failure: string | undefined;
          try {
            failure = await round(hook, sc, (seed ^ 0xa5a5a5a5) >>> 0, stats);
          } catch (error: unknown) {
            failure = `threw ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`;
          }
          if (failure !== undefined)
            expect.fail(
              `${rerun(hook, seed)}\nsets ${JSON.stringify(sc.sets)}\nrule set ${JSON.stringify(sc.ruleSet)}\n${failure}`,
            );
        }
        if (process.env.SLUICE_PIPELINE_STATS) console.log(hook, stats);
        // The generators must reach the interesting paths, not only the default action.
        expect(stats.byRule / stats.frames).toBeGreaterThan(0.2);
        expect(stats.counted).toBeGreaterThan(rounds);
        expect(stats.stepLimit).toBeGreaterThan(0);
        expect(stats.malformed / stats.frames).toBeGreaterThan(0.05);
        expect(stats.filterRules).toBeGreaterThan(rounds / 2);
      },
    );
  }

  // Rule adds extend the last tables in place (classify-extend) and each generation is written
  // from a diff against its own copy of what it holds: a rule set grown a few rules at a time
  // must decide and count as the model after every step, in both generations.
  it(
    'decides and counts as the model after each of 48 appends of 1 to 5 rules to 8 rule sets at xdp',
    { timeout: 240_000 },
    async () => {
      const stats = emptyStats();
      for (let i = 0; i < 8; i++) {
        const seed = (BASE_SEED + 2 * TC_SEED_OFFSET + i) >>> 0;
        const sc = generateRuleScenario(seed, { longRun: i % 4 === 1 });
        // Without priorities every rule goes behind the last: an append, not an insertion.
        const all = sc.ruleSet.rules.map(({ priority: _, ...rule }) => rule);
        let at = Math.floor(all.length / 3);
        for (let step = 0; step < 6 && at < all.length; step++) {
          at = Math.min(all.length, at + 1 + ((seed >>> step) % 5));
          const grown = { ...sc, ruleSet: { ...sc.ruleSet, rules: all.slice(0, at) } };
          let failure: string | undefined;
          try {
            failure = await round('xdp', grown, (seed ^ (0x5a5a0000 + step)) >>> 0, stats);
          } catch (error: unknown) {
            failure = `threw ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`;
          }
          if (failure !== undefined)
            expect.fail(
              `append step ${step} of ${rerun('xdp', seed)}\nsets ${JSON.stringify(sc.sets)}\nrule set ${JSON.stringify(grown.ruleSet)}\n${failure}`,
            );
        }
      }
      expect(stats.byRule / stats.frames).toBeGreaterThan(0.2);
    },
  );
});
