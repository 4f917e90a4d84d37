// Property: for random rule sets and random frames, the compiled classifier tables (evaluated as the C program does) decide exactly as the rule-by-rule model.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileClassifier } from '../../../controller/dataplane/classify.js';
import {
  decide,
  defaultFilterMatch,
  type Decision,
} from '../../../controller/dataplane/model-decide.js';
import {
  addressInPrefix,
  assignSetBits,
  compileSetEntries,
  ruleSetActions,
  validateRuleSet,
  validateSets,
  type PrefixSet,
  type RuleSetSpec,
  type RuleSpec,
  type SetAction,
} from '../../../controller/dataplane/model.js';
import { evaluateTables, lpmLookup } from '../../../controller/dataplane/tables-eval.js';
import { Prng } from '../../helpers/packets/prng.js';
import {
  PIPELINE_POOLS,
  generatePipelinePackets,
  hexOf,
  type PipelinePacket,
} from '../../helpers/pipeline-packets.js';
import { SCENARIO_FILTERS, SCENARIO_SETS } from '../../helpers/pipeline-rules.js';

const SET_NAMES = SCENARIO_SETS;
/** The scenario filters but the two that match on addresses and lengths. */
const FILTERS = SCENARIO_FILTERS.slice(0, 8);
const CORPUS: readonly PipelinePacket[] = generatePipelinePackets({
  seed: 0x5eed_0001,
  count: 4000,
});
const PACKETS_PER_RUN = 120;

type Family = 4 | 6 | undefined;

/** `arb` with probability `presence`, else null. */
function maybe<T>(arb: fc.Arbitrary<T>, presence: number): fc.Arbitrary<T | null> {
  return fc.oneof(
    { weight: Math.round((1 - presence) * 100), arbitrary: fc.constant(null) },
    { weight: Math.round(presence * 100), arbitrary: arb },
  );
}

const family = fc.constantFrom<Family>(4, 6, undefined, undefined);
const portSpec = fc.oneof(
  fc.constantFrom(...PIPELINE_POOLS.ports),
  fc
    .tuple(fc.constantFrom(...PIPELINE_POOLS.ports), fc.constantFrom(...PIPELINE_POOLS.ports))
    .map(([a, b]) => `${Math.min(a, b)}-${Math.max(a, b)}`),
  fc.integer({ min: 0, max: 65535 }).map((p) => [p, Math.min(65535, p + 1000)] as const),
);

/** Raw choices, repaired into a valid RuleSpec (ports only with a port protocol, and so on). */
const rawRule = fc.record({
  family,
  src: maybe(fc.nat(100), 0.4),
  dst: maybe(fc.nat(100), 0.3),
  srcSet: maybe(fc.constantFrom(...SET_NAMES), 0.15),
  dstSet: maybe(fc.constantFrom(...SET_NAMES), 0.1),
  proto: maybe(
    fc.constantFrom<RuleSpec['proto']>('tcp', 'udp', 'icmp', 'icmpv6', 'sctp', 47, 0, 255, 6, 17),
    0.4,
  ),
  sport: maybe(portSpec, 0.15),
  dport: maybe(portSpec, 0.35),
  icmpType: maybe(
    fc.constantFrom(...PIPELINE_POOLS.icmpTypes, ...PIPELINE_POOLS.icmpv6Types, 200),
    0.6,
  ),
  icmpCode: maybe(fc.constantFrom(...PIPELINE_POOLS.icmpCodes), 0.3),
  vlan: maybe(fc.constantFrom(...PIPELINE_POOLS.vlans), 0.12),
  tcpFlags: maybe(
    fc.oneof(
      fc.constantFrom('syn,!ack', 'syn', 'ack', '!syn', 'rst', 'fin,ack', 'syn,ack,!rst'),
      fc
        .tuple(fc.nat(255), fc.nat(255))
        .map(([set, unset]) => ({ set: set & ~unset, unset }))
        .filter((f) => f.set !== 0 || f.unset !== 0),
    ),
    0.15,
  ),
  filter: maybe(fc.constantFrom(...FILTERS), 0.1),
  action: fc.constantFrom<RuleSpec['action']>(
    'count',
    'count',
    'drop',
    'pass',
    'ratelimit',
    'redirect',
  ),
  priority: maybe(fc.nat(3), 0.3),
});

type RawRule = typeof rawRule extends fc.Arbitrary<infer T> ? T : never;

function repair(r: RawRule): RuleSpec {
  const spec: RuleSpec = { action: r.action };
  const pool = r.family === 6 ? PIPELINE_POOLS.v6Prefixes : PIPELINE_POOLS.v4Prefixes;
  if (r.family !== undefined && r.src !== null) spec.src = pool[r.src % pool.length];
  if (r.family !== undefined && r.dst !== null) spec.dst = pool[r.dst % pool.length];
  if (r.srcSet !== null) spec.srcSet = r.srcSet;
  if (r.dstSet !== null) spec.dstSet = r.dstSet;
  let proto = r.proto ?? undefined;
  if (r.family === 6 && (proto === 'icmp' || proto === 1)) proto = 'icmpv6';
  if (r.family === 4 && (proto === 'icmpv6' || proto === 58)) proto = 'icmp';
  if (proto !== undefined) spec.proto = proto;
  const portProto = proto === undefined || ['tcp', 'udp', 'sctp', 6, 17, 132].includes(proto);
  if (portProto && r.sport !== null) spec.sport = r.sport;
  if (portProto && r.dport !== null) spec.dport = r.dport;
  if ((proto === 'icmp' || proto === 'icmpv6') && r.icmpType !== null)
    spec.icmp = r.icmpCode === null ? { type: r.icmpType } : { type: r.icmpType, code: r.icmpCode };
  if (r.vlan !== null) spec.vlan = r.vlan;
  if ((proto === undefined || proto === 'tcp' || proto === 6) && r.tcpFlags !== null)
    spec.tcpFlags = r.tcpFlags;
  if (r.filter !== null) spec.filter = r.filter;
  if (r.priority !== null) spec.priority = r.priority;
  if (r.action === 'ratelimit') spec.rate = '100pps';
  if (r.action === 'redirect') spec.to = 'veth1';
  return spec;
}

/** Mostly small rule sets; some long runs of count rules to reach the step limit. */
const ruleList = fc.oneof(
  { weight: 6, arbitrary: fc.array(rawRule.map(repair), { maxLength: 14 }) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(
        fc.array(rawRule.map(repair), { maxLength: 6 }),
        fc.integer({ min: 55, max: 80 }),
        fc.array(rawRule.map(repair), { maxLength: 6 }),
        fc.nat(3),
      )
      .map(([head, n, tail, kind]) => {
        const filler: RuleSpec[] = Array.from({ length: n }, (_, i) =>
          kind === 0
            ? { action: 'count' }
            : kind === 1
              ? { action: 'count', vlan: i % 2 === 0 ? 0 : 100 }
              : kind === 2
                ? { action: 'drop', filter: 'arp' }
                : { action: i % 3 === 0 ? 'drop' : 'count', dport: [0, 1000 + i] as const },
        );
        return [...head, ...filler, ...tail];
      }),
  },
);

const setSpecs = fc.array(
  fc.subarray([...PIPELINE_POOLS.v4Prefixes, ...PIPELINE_POOLS.v6Prefixes], { maxLength: 8 }),
  { minLength: SET_NAMES.length, maxLength: SET_NAMES.length },
);

const scenario = fc.record({
  rules: ruleList,
  sets: setSpecs,
  defaultAction: fc.constantFrom<SetAction>('pass', 'drop'),
  malformed: fc.constantFrom<SetAction>('pass', 'drop'),
  /** Earlier bits for some sets, so that set bits are not always 0..3. */
  previousBits: fc.array(fc.nat(31), { minLength: SET_NAMES.length, maxLength: SET_NAMES.length }),
  packetSeed: fc.nat(),
});

/** The fields both sides decide, in one key order. */
function decisionOf(d: Decision) {
  return { verdict: d.verdict, matched: d.matched, event: d.event ?? null, steps: d.steps };
}

function membership(sets: readonly PrefixSet[]) {
  return (family: 4 | 6, addr: Uint8Array): ReadonlySet<string> =>
    new Set(
      sets
        .filter((s) => s.prefixes.some((p) => addressInPrefix(p, family, addr)))
        .map((s) => s.name),
    );
}

describe('classifier tables agree with the rule-by-rule model', () => {
  it(
    'decide the same for 2000 random rule sets, each over 120 random frames',
    { timeout: 180_000 },
    () => {
      let compared = 0;
      let decidedByRule = 0;
      let stepLimits = 0;
      let banked = 0;
      fc.assert(
        fc.property(scenario, (sc) => {
          const spec: RuleSetSpec = {
            rules: sc.rules,
            defaultAction: sc.defaultAction,
            malformed: sc.malformed,
          };
          const sets = validateSets(
            sc.sets.map((prefixes, i) => ({ name: SET_NAMES[i], prefixes })),
          );
          const previous = new Map<string, number>();
          SET_NAMES.forEach((name, i) => {
            if (![...previous.values()].includes(sc.previousBits[i]))
              previous.set(name, sc.previousBits[i]);
          });
          const bits = assignSetBits(SET_NAMES, previous);
          const entries = compileSetEntries(sets, bits);
          const rules = validateRuleSet(spec, { sets: bits });
          const actions = ruleSetActions(spec);
          const tables = compileClassifier(rules, {
            setBits: bits,
            masks: entries.masks,
            ...actions,
          });
          const setMask = (family: 4 | 6, addr: Uint8Array): bigint =>
            lpmLookup(family === 4 ? entries.v4 : entries.v6, family, addr)?.mask ?? 0n;
          const sets_ = membership(sets);
          const rng = new Prng(sc.packetSeed);
          for (let i = 0; i < PACKETS_PER_RUN; i++) {
            const packet = CORPUS[rng.int(CORPUS.length)];
            const want = decide(rules, actions, sets_, packet.data, defaultFilterMatch);
            const got = evaluateTables(tables, packet.data, setMask, defaultFilterMatch);
            const gotDecision = decisionOf(got);
            if (JSON.stringify(gotDecision) !== JSON.stringify(decisionOf(want))) {
              throw new Error(
                `tables and model disagree on ${packet.description} (${hexOf(packet.data)}):\n` +
                  `model ${JSON.stringify(want)}\ntables ${JSON.stringify(gotDecision)}\n` +
                  `classes ${JSON.stringify(got.classes)} candidates ${JSON.stringify(got.candidates)}`,
              );
            }
            compared++;
            if (want.event === undefined) decidedByRule++;
            if (want.event === 'step_limit') stepLimits++;
            if (got.filterBank) banked++;
          }
        }),
        { numRuns: 2000, seed: Number(process.env.SLUICE_PROPERTY_SEED ?? 0x51c3) },
      );
      if (process.env.SLUICE_PROPERTY_STATS)
        console.log({ compared, decidedByRule, stepLimits, banked });
      // The corpus and generators must reach the interesting paths, not only the default.
      expect(compared).toBe(2000 * PACKETS_PER_RUN);
      expect(decidedByRule / compared).toBeGreaterThan(0.2);
      expect(stepLimits).toBeGreaterThan(100);
      expect(banked).toBeGreaterThan(1000);
    },
  );
});
