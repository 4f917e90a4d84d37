// Tables extended by appended rules hold, slot by slot and entry by entry, the vectors a full
// compile of the whole rule set gives, and decide frames as the rule-by-rule model does.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import {
  compileClassifier,
  type ClassifierTables,
} from '../../../controller/dataplane/classify.js';
import { extendClassifier } from '../../../controller/dataplane/classify-extend.js';
import { SL_VEC_BYTES } from '../../../controller/dataplane/classify.js';
import { decide, defaultFilterMatch } from '../../../controller/dataplane/model-decide.js';
import {
  addressInPrefix,
  assignSetBits,
  compileSetEntries,
  validateRuleSet,
  validateSets,
  type Rule,
  type RuleSpec,
} from '../../../controller/dataplane/model.js';
import { evaluateTables, lpmLookup } from '../../../controller/dataplane/tables-eval.js';
import { Prng } from '../../helpers/packets/prng.js';
import { PIPELINE_POOLS, generatePipelinePackets } from '../../helpers/pipeline-packets.js';
import { SCENARIO_SETS } from '../../helpers/pipeline-rules.js';
import { ruleList } from '../../helpers/rule-arbitraries.js';

const SETS = validateSets(
  SCENARIO_SETS.map((name, i) => ({
    name,
    prefixes: [...PIPELINE_POOLS.v4Prefixes, ...PIPELINE_POOLS.v6Prefixes].filter(
      (_, j) => j % (i + 2) === 0,
    ),
  })),
);
const SET_BITS = assignSetBits(SCENARIO_SETS, new Map([[SCENARIO_SETS[0], 7]]));
const ENTRIES = compileSetEntries(SETS, SET_BITS);
const OPTIONS = {
  setBits: SET_BITS,
  masks: ENTRIES.masks,
  defaultAction: 'pass',
  malformed: 'drop',
} as const;
const CORPUS = generatePipelinePackets({ seed: 0x5eed_0003, count: 2000 });

const compile = (rules: readonly Rule[]): ClassifierTables => compileClassifier(rules, OPTIONS);
const validate = (specs: RuleSpec[]): Rule[] =>
  validateRuleSet({ rules: specs }, { sets: SET_BITS });

/**
 * Fails unless `ext` and `full` give every slot, entry, absent and filter class the same vector:
 * ext's class ids may differ from full's (and several may hold one vector), but each maps to the
 * one full class with a byte-identical image.
 */
function expectSameVectors(ext: ClassifierTables, full: ClassifierTables): void {
  expect(ext.nrules).toBe(full.nrules);
  expect(ext.dims).toBe(full.dims);
  expect(ext.positions.map((p) => [p.rule.id, p.filterBit])).toEqual(
    full.positions.map((p) => [p.rule.id, p.filterBit]),
  );
  const map = new Int32Array(ext.vectorImages.length / SL_VEC_BYTES).fill(-1);
  const link = (e: number, f: number, where: string): void => {
    if (map[e] === f) return;
    if (map[e] !== -1)
      throw new Error(`${where}: class ${e} stands for full classes ${map[e]} and ${f}`);
    const a = ext.vectorImages.subarray(e * SL_VEC_BYTES, (e + 1) * SL_VEC_BYTES);
    const b = full.vectorImages.subarray(f * SL_VEC_BYTES, (f + 1) * SL_VEC_BYTES);
    if (Buffer.compare(a, b) !== 0) throw new Error(`${where}: class ${e} is not full class ${f}`);
    map[e] = f;
  };
  const tables = (t: ClassifierTables): [string, Uint32Array][] => [
    ['proto', t.proto],
    ['sport', t.ports[0]],
    ['dport', t.ports[1]],
    ['icmp4', t.icmp[0]],
    ['icmp6', t.icmp[1]],
    ['vlan', t.vlan],
    ['flags', t.flags],
  ];
  const fullTables = tables(full);
  tables(ext).forEach(([name, e], i) => {
    const f = fullTables[i][1];
    for (let s = 0; s < e.length; s++) if (map[e[s]] !== f[s]) link(e[s], f[s], `${name}[${s}]`);
  });
  const entries = <T extends { cls: number }>(
    list: T[],
    key: (e: T) => string,
  ): Map<string, number> => new Map(list.map((e) => [key(e), e.cls]));
  const pfxKey = (e: { dim: number; addr: Uint8Array; len: number }): string =>
    `${e.dim} ${e.addr.join('.')}/${e.len}`;
  const setKey = (e: { dim: number; mask: bigint }): string => `${e.dim} ${e.mask}`;
  for (const [what, e, f] of [
    [
      'pfx',
      entries([...ext.pfx4, ...ext.pfx6], pfxKey),
      entries([...full.pfx4, ...full.pfx6], pfxKey),
    ],
    ['setcls', entries(ext.setcls, setKey), entries(full.setcls, setKey)],
  ] as const) {
    expect([...e.keys()].sort(), what).toEqual([...f.keys()].sort());
    for (const [key, cls] of e) link(cls, f.get(key)!, `${what} ${key}`);
  }
  ext.absent.forEach((cls, d) => link(cls, full.absent[d], `absent[${d}]`));
  link(ext.filterCls, full.filterCls, 'filter class');
}

const membership = (family: 4 | 6, addr: Uint8Array): ReadonlySet<string> =>
  new Set(
    SETS.filter((s) => s.prefixes.some((p) => addressInPrefix(p, family, addr))).map((s) => s.name),
  );
const setMask = (family: 4 | 6, addr: Uint8Array): bigint =>
  lpmLookup(family === 4 ? ENTRIES.v4 : ENTRIES.v6, family, addr)?.mask ?? 0n;

describe('extending classifier tables by appended rules', () => {
  it(
    'gives every slot and entry the vectors of a full compile, step after step, for 400 random rule sets',
    { timeout: 120_000 },
    () => {
      let extended = 0;
      let steps = 0;
      fc.assert(
        fc.property(
          ruleList,
          fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 6 }),
          fc.nat(),
          (specs, cuts, seed) => {
            const rules = validate(specs);
            let at = Math.min(cuts[0] - 1, rules.length);
            let tables = compile(rules.slice(0, at));
            for (const cut of [...cuts.slice(1), rules.length]) {
              const next = Math.min(rules.length, at + cut);
              if (next === at) continue;
              const ext = extendClassifier(tables, rules.slice(0, next), OPTIONS);
              steps++;
              const full = compile(rules.slice(0, next));
              if (ext) {
                extended++;
                expectSameVectors(ext, full);
                tables = ext;
              } else tables = full;
              at = next;
            }
            // The last tables decide frames as the model does.
            const rng = new Prng(seed);
            for (let i = 0; i < 20; i++) {
              const frame = CORPUS[rng.int(CORPUS.length)].data;
              const want = decide(rules, OPTIONS, membership, frame, defaultFilterMatch);
              const got = evaluateTables(tables, frame, setMask, defaultFilterMatch);
              expect([got.verdict, got.matched]).toEqual([want.verdict, want.matched]);
            }
          },
        ),
        { numRuns: 400, seed: Number(process.env.SLUICE_PROPERTY_SEED ?? 0xe7e4d) },
      );
      // Filters among new rules and empty steps aside, most steps must take the quick path.
      expect(extended / steps).toBeGreaterThan(0.5);
    },
  );

  it('changes only the new rule’s port slot and the vectors that gain its bit, on 1,000 port rules', () => {
    const specs: RuleSpec[] = Array.from({ length: 1001 }, (_, i) => ({
      id: `r${i}`,
      proto: 'udp',
      dport: 1024 + i,
      action: 'drop',
    }));
    const rules = validate(specs);
    const prev = compile(rules.slice(0, 1000));
    // prev is used up by the extension: what it held is kept here to compare.
    const before = {
      sport: prev.ports[0].slice(),
      dport: prev.ports[1].slice(),
      images: prev.vectorImages.slice(),
    };
    const ext = extendClassifier(prev, rules, OPTIONS)!;
    expect(ext).not.toBeNull();
    expectSameVectors(ext, compile(rules));
    const changedSlots = ext.ports[1].filter((cls, port) => before.dport[port] !== cls).length;
    expect(changedSlots).toBe(1);
    expect(ext.ports[0]).toEqual(before.sport);
    const classes = before.images.length / SL_VEC_BYTES;
    let changedClasses = 0;
    for (let cls = 0; cls < classes; cls++) {
      const at = cls * SL_VEC_BYTES;
      if (
        Buffer.compare(
          before.images.subarray(at, at + SL_VEC_BYTES),
          ext.vectorImages.subarray(at, at + SL_VEC_BYTES),
        ) !== 0
      )
        changedClasses++;
    }
    // The class of every rule (its bit added in place) and the port's new class.
    expect(changedClasses).toBe(1);
    expect(ext.vectorImages.length / SL_VEC_BYTES).toBe(classes + 1);
  });

  it('keeps the tables of dimensions no rule constrains at class 0 (every rule), as a full compile does, from the first rule on', () => {
    const rules = validate(
      Array.from({ length: 3 }, (_, i) => ({
        id: `r${i}`,
        proto: 'udp',
        dport: 1024 + i,
        action: 'drop',
      })),
    );
    let tables = compile([]);
    let dport = tables.ports[1].slice();
    const changedPorts: number[] = [];
    for (let n = 1; n <= rules.length; n++) {
      const ext = extendClassifier(tables, rules.slice(0, n), OPTIONS)!;
      expect(ext).not.toBeNull();
      expectSameVectors(ext, compile(rules.slice(0, n)));
      // A generation written before holds zeros there: nothing to write again.
      for (const table of [ext.ports[0], ext.icmp[0], ext.icmp[1], ext.vlan, ext.flags])
        expect(table.every((cls) => cls === 0)).toBe(true);
      changedPorts.push(ext.ports[1].filter((cls, port) => dport[port] !== cls).length);
      dport = ext.ports[1].slice();
      tables = ext;
    }
    // The first rule moves the other 65,535 ports to a class of their own; the second, its own
    // port and the first rule's (which held every rule until then); the third, its own port.
    expect(changedPorts).toEqual([65535, 2, 1]);
  });

  it('declines what only a full compile does: changed earlier rules, filters, other set bits', () => {
    const rules = validate([
      { id: 'a', dport: 80, action: 'drop' },
      { id: 'b', src: '10.0.0.0/8', action: 'count' },
      { id: 'c', dport: 81, action: 'drop', filter: 'tcp' },
      { id: 'd', srcSet: SCENARIO_SETS[0], action: 'drop' },
    ]);
    const prev = (): ClassifierTables => compile(rules.slice(0, 2));
    const changed = validate([
      { id: 'a', dport: 8080, action: 'drop' },
      { id: 'b', src: '10.0.0.0/8', action: 'count' },
      { id: 'x', action: 'pass' },
    ]);
    expect(extendClassifier(prev(), changed, OPTIONS)).toBeNull();
    expect(extendClassifier(prev(), rules.slice(0, 3), OPTIONS)).toBeNull();
    expect(extendClassifier(prev(), rules.slice(0, 2), OPTIONS)).toBeNull();
    const otherBits = new Map([...SET_BITS].map(([name, bit]) => [name, (bit + 1) % 32]));
    expect(
      extendClassifier(prev(), [...rules.slice(0, 2), rules[3]], {
        ...OPTIONS,
        setBits: otherBits,
      }),
    ).toBeNull();
    // An action changed on an earlier rule is not a match changed: the quick path still holds.
    const relabelled = validate([
      { id: 'a', dport: 80, action: 'pass' },
      { id: 'b', src: '10.0.0.0/8', action: 'count' },
      { id: 'd', srcSet: SCENARIO_SETS[0], action: 'drop' },
    ]);
    const ext = extendClassifier(prev(), relabelled, OPTIONS);
    expect(ext?.positions.map((p) => p.rule.action)).toEqual(['pass', 'count', 'drop']);
  });

  it('uses up the tables it extends: extending them again is refused', () => {
    const rules = validate([
      { id: 'a', dport: 80, action: 'drop' },
      { id: 'b', dport: 81, action: 'drop' },
    ]);
    const prev = compile(rules.slice(0, 1));
    expect(extendClassifier(prev, rules, OPTIONS)).not.toBeNull();
    expect(() => extendClassifier(prev, rules, OPTIONS)).toThrow(/extended already/);
  });
});
