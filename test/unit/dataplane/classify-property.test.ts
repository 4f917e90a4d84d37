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
import { SCENARIO_SETS } from '../../helpers/pipeline-rules.js';
import { ruleList } from '../../helpers/rule-arbitraries.js';

const SET_NAMES = SCENARIO_SETS;
const CORPUS: readonly PipelinePacket[] = generatePipelinePackets({
  seed: 0x5eed_0001,
  count: 4000,
});
const PACKETS_PER_RUN = 120;

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
