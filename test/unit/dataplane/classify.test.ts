// Classifier tables (controller/dataplane/classify.ts) on small hand-made rule sets, the class limit, and the 4096-rule compile time.
import { describe, expect, it } from 'vitest';
import {
  SL_DIM,
  SL_DIMS,
  SL_FLAGS_NOT_TCP,
  SL_MAX_CLASSES,
  SL_PROTO_NOT_IP,
  SL_VLAN_UNTAGGED,
} from '../../../controller/dataplane/abi.js';
import {
  SL_VEC_BYTES,
  compileClassifier,
  type ClassifierTables,
} from '../../../controller/dataplane/classify.js';
import { LimitExceededError } from '../../../controller/dataplane/errors.js';
import {
  formatPrefix,
  validateRuleSet,
  type RuleSpec,
} from '../../../controller/dataplane/model.js';
import { readVector } from '../../../controller/dataplane/tables-eval.js';
import { Prng } from '../../helpers/packets/prng.js';

const SETS = new Map([
  ['a', 0],
  ['b', 1],
  ['c', 5],
]);

function compile(rules: RuleSpec[], masks: bigint[] = []): ClassifierTables {
  return compileClassifier(validateRuleSet({ rules }, { sets: SETS }), {
    setBits: SETS,
    masks,
    defaultAction: 'pass',
    malformed: 'drop',
  });
}

/** The rule positions of a class, lowest first. */
function positions(t: ClassifierTables, cls: number): number[] {
  const words = readVector(t.vectors[cls]);
  const out: number[] = [];
  for (let p = 0; p < 4096; p++) if (words[p >>> 5] & (1 << (p & 31))) out.push(p);
  return out;
}

function prefixTable(t: ClassifierTables, family: 4 | 6, dim: 0 | 1): Record<string, number[]> {
  const entries = family === 4 ? t.pfx4 : t.pfx6;
  return Object.fromEntries(
    entries
      .filter((e) => e.dim === dim)
      .map((e) => [formatPrefix({ family, addr: e.addr, len: e.len }), positions(t, e.cls)]),
  );
}

describe('compileClassifier', () => {
  it('gives an empty rule set one empty class, valid tables and a non-empty dims', () => {
    const t = compile([]);
    expect(t.nrules).toBe(0);
    expect(t.vectors).toHaveLength(1);
    expect(t.absent).toEqual(new Array(SL_DIMS).fill(0));
    expect(t.dims).toBe(1 << SL_DIM.PROTO);
    expect(t.pfx4.map((e) => [e.dim, e.len])).toEqual([
      [0, 0],
      [1, 0],
    ]);
    expect(t.pfx6.map((e) => [e.dim, e.len])).toEqual([
      [0, 0],
      [1, 0],
    ]);
    expect(t.proto.every((c) => c === 0)).toBe(true);
    expect(t.ports[0].every((c) => c === 0)).toBe(true);
    expect(t).toMatchObject({ filterCls: 0, hasFilters: false, filters: [], setcls: [] });
  });

  it('uses the proto dimension when no rule constrains anything, with every rule in it', () => {
    const t = compile([{ action: 'count' }, { action: 'drop' }]);
    expect(t.dims).toBe(1 << SL_DIM.PROTO);
    expect(positions(t, t.proto[6])).toEqual([0, 1]);
    expect(positions(t, t.proto[SL_PROTO_NOT_IP])).toEqual([0, 1]);
  });

  it('sets a dims bit per constrained dimension only', () => {
    const t = compile([
      { dport: 80, action: 'drop' },
      { vlan: 5, srcSet: 'a', action: 'drop' },
    ]);
    expect(t.dims).toBe((1 << SL_DIM.DPORT) | (1 << SL_DIM.VLAN) | (1 << SL_DIM.SSET));
    expect(positions(t, t.absent[SL_DIM.DPORT])).toEqual([1]);
    expect(positions(t, t.absent[SL_DIM.VLAN])).toEqual([0]);
    expect(positions(t, t.absent[SL_DIM.SRC])).toEqual([0, 1]);
  });

  it('writes 520-byte vectors: summary, then little-endian words', () => {
    const rules: RuleSpec[] = Array.from({ length: 130 }, (_, i) =>
      i === 0 || i === 64 || i === 129
        ? { dport: 7, action: 'drop' }
        : { dport: 8, action: 'drop' },
    );
    const t = compile(rules);
    const image = t.vectors[t.ports[1][7]];
    expect(image).toHaveLength(SL_VEC_BYTES);
    const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
    expect(view.getBigUint64(0, true)).toBe(0b111n);
    expect(view.getBigUint64(8, true)).toBe(1n);
    expect(view.getBigUint64(16, true)).toBe(1n);
    expect(view.getBigUint64(24, true)).toBe(2n);
    expect(view.getBigUint64(32, true)).toBe(0n);
    expect(positions(t, t.ports[1][7])).toEqual([0, 64, 129]);
  });

  it('gives each prefix its rules and those of every prefix containing it, plus the unconstrained', () => {
    const t = compile([
      { src: '10.0.0.0/8', action: 'drop' },
      { src: '10.1.0.0/16', action: 'drop' },
      { src: '10.1.2.0/24', dst: '192.0.2.0/24', action: 'drop' },
      { action: 'count' },
      { src: '2001:db8::/32', action: 'drop' },
      { src: '10.2.0.0/16', action: 'drop' },
      { src: '0.0.0.0/0', action: 'drop' },
    ]);
    expect(prefixTable(t, 4, 0)).toEqual({
      '0.0.0.0/0': [3, 6],
      '10.0.0.0/8': [0, 3, 6],
      '10.1.0.0/16': [0, 1, 3, 6],
      '10.1.2.0/24': [0, 1, 2, 3, 6],
      '10.2.0.0/16': [0, 3, 5, 6],
    });
    expect(prefixTable(t, 6, 0)).toEqual({ '::/0': [3], '2001:db8::/32': [3, 4] });
    expect(prefixTable(t, 4, 1)).toEqual({
      '0.0.0.0/0': [0, 1, 3, 4, 5, 6],
      '192.0.2.0/24': [0, 1, 2, 3, 4, 5, 6],
    });
    expect(prefixTable(t, 6, 1)).toEqual({ '::/0': [0, 1, 3, 4, 5, 6] });
    expect(positions(t, t.absent[SL_DIM.SRC])).toEqual([3]);
  });

  it('cuts port ranges into elementary intervals', () => {
    const t = compile([
      { dport: '80-90', action: 'drop' },
      { dport: '85-100', action: 'drop' },
      { sport: 53, action: 'pass' },
      { dport: 65535, action: 'pass' },
    ]);
    const at = (port: number) => positions(t, t.ports[1][port]);
    expect([79, 80, 84, 85, 90, 91, 100, 101, 65534, 65535].map(at)).toEqual([
      [2],
      [0, 2],
      [0, 2],
      [0, 1, 2],
      [0, 1, 2],
      [1, 2],
      [1, 2],
      [2],
      [2],
      [2, 3],
    ]);
    expect(positions(t, t.ports[0][53])).toEqual([0, 1, 2, 3]);
    expect(positions(t, t.ports[0][54])).toEqual([0, 1, 3]);
    expect(positions(t, t.absent[SL_DIM.DPORT])).toEqual([2]);
  });

  it('indexes ICMP by family, type * 256 + code', () => {
    const t = compile([
      { proto: 'icmp', icmp: { type: 8 }, action: 'drop' },
      { proto: 'icmp', icmp: { type: 3, code: 4 }, action: 'drop' },
      { proto: 'icmpv6', icmp: { type: 128 }, action: 'drop' },
      { action: 'count' },
    ]);
    const v4 = (type: number, code: number) => positions(t, t.icmp[0][type * 256 + code]);
    const v6 = (type: number, code: number) => positions(t, t.icmp[1][type * 256 + code]);
    expect([v4(8, 0), v4(8, 255), v4(3, 4), v4(3, 3), v4(128, 0)]).toEqual([
      [0, 3],
      [0, 3],
      [1, 3],
      [3],
      [3],
    ]);
    expect([v6(128, 0), v6(128, 9), v6(8, 0)]).toEqual([[2, 3], [2, 3], [3]]);
    expect(positions(t, t.proto[1])).toEqual([0, 1, 3]);
    expect(positions(t, t.proto[58])).toEqual([2, 3]);
    expect(positions(t, t.proto[SL_PROTO_NOT_IP])).toEqual([3]);
  });

  it('matches TCP flags as (flags & set) == set and (flags & unset) == 0', () => {
    const t = compile([
      { tcpFlags: 'syn,!ack', action: 'drop' },
      { tcpFlags: 'rst', action: 'drop' },
      { action: 'count' },
    ]);
    expect(positions(t, t.flags[0x02])).toEqual([0, 2]);
    expect(positions(t, t.flags[0x12])).toEqual([2]);
    expect(positions(t, t.flags[0x06])).toEqual([0, 1, 2]);
    expect(positions(t, t.flags[0x14])).toEqual([1, 2]);
    expect(positions(t, t.flags[SL_FLAGS_NOT_TCP])).toEqual([2]);
  });

  it('gives VLAN ids their rules and untagged frames only the unconstrained', () => {
    const t = compile([
      { vlan: 0, action: 'drop' },
      { vlan: 4095, action: 'drop' },
      { action: 'count' },
    ]);
    expect(positions(t, t.vlan[0])).toEqual([0, 2]);
    expect(positions(t, t.vlan[4095])).toEqual([1, 2]);
    expect(positions(t, t.vlan[7])).toEqual([2]);
    expect(positions(t, t.vlan[SL_VLAN_UNTAGGED])).toEqual([2]);
  });

  it('gives set masks a class per dimension, leaving out masks no rule there names', () => {
    const t = compile(
      [
        { srcSet: 'a', action: 'drop' },
        { dstSet: 'b', action: 'drop' },
        { srcSet: 'c', action: 'drop' },
      ],
      [1n, 2n, 3n, 1n << 5n, 1n << 9n],
    );
    const table = t.setcls.map((e) => [e.dim, e.mask, positions(t, e.cls)]);
    expect(table).toEqual([
      [SL_DIM.SSET, 1n, [0, 1]],
      [SL_DIM.SSET, 3n, [0, 1]],
      [SL_DIM.SSET, 32n, [1, 2]],
      [SL_DIM.DSET, 2n, [0, 1, 2]],
      [SL_DIM.DSET, 3n, [0, 1, 2]],
    ]);
  });

  it('gives each distinct filter a bit and one class all filter rules', () => {
    const t = compile([
      { filter: 'udp', action: 'drop' },
      { action: 'count' },
      { filter: 'tcp', action: 'drop' },
      { filter: 'udp', dport: 5, action: 'pass' },
    ]);
    expect(t.filters).toEqual(['udp', 'tcp']);
    expect(t.positions.map((p) => p.filterBit)).toEqual([0, undefined, 1, 0]);
    expect(t.hasFilters).toBe(true);
    expect(positions(t, t.filterCls)).toEqual([0, 2, 3]);
  });

  it('shares one class between equal vectors of different dimensions', () => {
    const t = compile([{ dport: 80, vlan: 3, action: 'drop' }, { action: 'count' }]);
    expect(t.ports[1][80]).toBe(t.vlan[3]);
    expect(t.absent[SL_DIM.DPORT]).toBe(t.absent[SL_DIM.VLAN]);
    expect(new Set(t.vectors.map((v) => Buffer.from(v).toString('hex'))).size).toBe(
      t.vectors.length,
    );
  });

  it('refuses more classes than a generation holds', () => {
    // dport ranges [i, i+1] give 4097 distinct pairs, sport singles 4096 distinct singles
    const rules: RuleSpec[] = Array.from({ length: 4096 }, (_, i) => ({
      sport: 10000 + i,
      dport: [i, i + 1] as const,
      action: 'drop',
    }));
    let error: unknown;
    try {
      compile(rules);
    } catch (err: unknown) {
      error = err;
    }
    expect(error).toBeInstanceOf(LimitExceededError);
    expect(error).toMatchObject({ resource: 'classes', limit: SL_MAX_CLASSES });
    expect((error as Error).message).toMatchInlineSnapshot(
      `"rule set needs more than 8192 classes (distinct sets of rules allowed by one field value): use fewer distinct prefixes, port ranges or ICMP types, or move prefixes into sets"`,
    );
  });
});

/** A mixed 4096-rule set: prefixes of both families, ports and ranges, protocols, ICMP, flags, sets, VLANs. */
function bigRuleSet(seed: number): RuleSpec[] {
  const rng = new Prng(seed);
  const rules: RuleSpec[] = [];
  for (let i = 0; i < 4096; i++) {
    const kind = rng.weighted({
      web4: 35,
      dns6: 20,
      icmp: 10,
      flags: 10,
      set: 10,
      vlan: 5,
      any: 10,
    });
    const port = () =>
      rng.chance(0.7) ? rng.range(1, 65535) : `${rng.range(1, 30000)}-${rng.range(30001, 65535)}`;
    const action = rng.pick(['drop', 'pass', 'count'] as const);
    switch (kind) {
      case 'web4':
        rules.push({
          src: `10.${rng.int(256)}.${rng.int(256)}.0/${rng.pick([16, 24])}`.replace(
            /\.\d+\.0\/16$/,
            '.0.0/16',
          ),
          proto: 'tcp',
          dport: port(),
          action,
        });
        break;
      case 'dns6':
        rules.push({
          dst: `2001:db8:${rng.int(65536).toString(16)}::/48`,
          proto: 'udp',
          dport: port(),
          action,
        });
        break;
      case 'icmp':
        rules.push({ proto: 'icmp', icmp: { type: rng.int(256), code: rng.int(16) }, action });
        break;
      case 'flags':
        rules.push({
          tcpFlags: rng.pick(['syn,!ack', 'rst', 'fin', 'syn,ack']),
          dport: port(),
          action,
        });
        break;
      case 'set':
        rules.push({ srcSet: rng.pick(['a', 'b', 'c']), dport: port(), action });
        break;
      case 'vlan':
        rules.push({ vlan: rng.int(4096), action });
        break;
      default:
        rules.push({ sport: port(), action });
    }
  }
  return rules;
}

describe('compileClassifier performance', () => {
  // CPU time, not wall time: the figure must not depend on what else the machine runs.
  const cpuMs = (fn: () => void): number => {
    const start = process.cpuUsage();
    fn();
    const used = process.cpuUsage(start);
    return (used.user + used.system) / 1000;
  };

  it('validates and compiles 4096 mixed rules well under 300 ms', () => {
    const specs = bigRuleSet(42);
    const options = {
      setBits: SETS,
      masks: [1n, 2n, 3n, 32n, 33n, 35n],
      defaultAction: 'pass',
      malformed: 'drop',
    } as const;
    let rules = validateRuleSet({ rules: specs }, { sets: SETS });
    let tables = compileClassifier(rules, options);
    const cold = { validate: 0, compile: 0 };
    const validate: number[] = [];
    const compile: number[] = [];
    for (let i = 0; i < 5; i++) {
      validate.push(cpuMs(() => (rules = validateRuleSet({ rules: specs }, { sets: SETS }))));
      compile.push(cpuMs(() => (tables = compileClassifier(rules, options))));
      if (i === 0) Object.assign(cold, { validate: validate[0], compile: compile[0] });
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[2];
    if (process.env.SLUICE_PERF)
      console.log(
        `4096 rules, ${tables.vectors.length} classes: validate ${median(validate).toFixed(1)} ms, ` +
          `compile ${median(compile).toFixed(1)} ms CPU (medians of 5 after one warm-up; ` +
          `second runs ${cold.validate.toFixed(1)} / ${cold.compile.toFixed(1)} ms)`,
      );
    expect(tables.nrules).toBe(4096);
    expect(tables.vectors.length).toBeLessThanOrEqual(SL_MAX_CLASSES);
    expect(median(compile)).toBeLessThan(300);
    expect(median(validate) + median(compile)).toBeLessThan(300);
  });
});
