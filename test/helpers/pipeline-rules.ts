// Seeded random rule sets and prefix sets for the pipeline's property tests, drawn from the same pools as the generated frames.
//
// A scenario is what one Dataplane.apply() takes for one attachment: prefix sets (nested within
// and across sets) and a rule set using every match field. Values come from PIPELINE_POOLS, so
// rules match a real fraction of generatePipelinePackets' frames. Equal seeds give equal
// scenarios. The model side (validateRuleSet, decide) and the kernel side run the same specs.
import type { RuleSetSpec, RuleSpec, SetAction } from '../../controller/dataplane/model.js';
import { addressInPrefix, parsePrefix, type Prefix } from '../../controller/dataplane/model.js';
import { Prng } from './packets/prng.js';
import { PIPELINE_POOLS } from './pipeline-packets.js';

/** Names of the prefix sets every scenario defines (some may be empty). */
export const SCENARIO_SETS = ['s0', 's1', 's2', 's3'] as const;

/** tcpdump expressions a scenario's rules may carry; each compiles with bpf/filter. */
export const SCENARIO_FILTERS = [
  'udp',
  'tcp dst port 80',
  'vlan',
  'ip[8] > 64',
  'icmp6',
  'ip6 and tcp',
  'tcp[tcpflags] & tcp-syn != 0',
  'not arp',
  'net 10.0.0.0/8',
  'len > 90',
] as const;

/** One prefix set as Dataplane.apply() takes it. */
export interface ScenarioSet {
  name: string;
  prefixes: string[];
}

/** What one attachment runs: its sets and its rule set. */
export interface RuleScenario {
  /** The seed this scenario was generated from (for failure messages). */
  seed: number;
  sets: ScenarioSet[];
  ruleSet: RuleSetSpec;
}

/** Options of generateRuleScenario. */
export interface RuleScenarioOptions {
  /**
   * Include "ratelimit" rules. Their rate and burst are huge, so every packet is within the limit
   * and the kernel passes it: the model's 'ratelimit' verdict means pass. Default true.
   */
  ratelimit?: boolean;
  /** Rule ids drawn from this many names ("r0", "r1", …), so that ids recur across scenarios. */
  idPool?: number;
  /**
   * Include a run of 55 to 80 filler rules that match many frames (to reach SL_MAX_STEPS):
   * true always, false never; default: one scenario in seven.
   */
  longRun?: boolean;
}

type Family = 4 | 6 | undefined;

const PORT_PROTOS: readonly (RuleSpec['proto'] | undefined)[] = [
  undefined,
  'tcp',
  'udp',
  'sctp',
  6,
  17,
  132,
];
const PROTOS: readonly NonNullable<RuleSpec['proto']>[] = [
  'tcp',
  'udp',
  'icmp',
  'icmpv6',
  'sctp',
  47,
  0,
  255,
  6,
  17,
  59,
  1,
  58,
];
const TCP_FLAG_TEXTS = ['syn,!ack', 'syn', 'ack', '!syn', 'rst', 'fin,ack', 'syn,ack,!rst'];

function portSpec(rng: Prng): NonNullable<RuleSpec['dport']> {
  const pick = (): number => rng.pick(PIPELINE_POOLS.ports);
  switch (rng.int(4)) {
    case 0:
      return pick();
    case 1: {
      const a = pick();
      const b = pick();
      return `${Math.min(a, b)}-${Math.max(a, b)}`;
    }
    case 2: {
      const a = pick();
      const b = pick();
      return [Math.min(a, b), Math.max(a, b)];
    }
    default: {
      const lo = rng.int(65536);
      return [lo, Math.min(65535, lo + rng.int(2000))];
    }
  }
}

/** One random rule, consistent by construction (ports only with a port protocol, …). */
function randomRule(rng: Prng, options: { ratelimit: boolean }): RuleSpec {
  const family: Family = rng.pick([4, 6, undefined, undefined] as const);
  const action = rng.weighted(
    options.ratelimit
      ? { count: 3, drop: 3, pass: 2, ratelimit: 1 }
      : { count: 3, drop: 3, pass: 2, ratelimit: 0 },
  );
  const spec: RuleSpec = { action };
  const pool = family === 6 ? PIPELINE_POOLS.v6Prefixes : PIPELINE_POOLS.v4Prefixes;
  if (family !== undefined && rng.chance(0.4)) spec.src = rng.pick(pool);
  if (family !== undefined && rng.chance(0.3)) spec.dst = rng.pick(pool);
  if (rng.chance(0.15)) spec.srcSet = rng.pick(SCENARIO_SETS);
  if (rng.chance(0.12)) spec.dstSet = rng.pick(SCENARIO_SETS);
  let proto: RuleSpec['proto'] = rng.chance(0.45) ? rng.pick(PROTOS) : undefined;
  if (family === 6 && (proto === 'icmp' || proto === 1)) proto = 'icmpv6';
  if (family === 4 && (proto === 'icmpv6' || proto === 58)) proto = 'icmp';
  if (proto !== undefined) spec.proto = proto;
  if (PORT_PROTOS.includes(proto)) {
    if (rng.chance(0.15)) spec.sport = portSpec(rng);
    if (rng.chance(0.35)) spec.dport = portSpec(rng);
  }
  if ((proto === 'icmp' || proto === 'icmpv6') && rng.chance(0.6)) {
    const types: readonly number[] =
      proto === 'icmp' ? PIPELINE_POOLS.icmpTypes : PIPELINE_POOLS.icmpv6Types;
    const type = rng.chance(0.9) ? rng.pick(types) : rng.int(256);
    spec.icmp = rng.chance(0.3) ? { type, code: rng.pick(PIPELINE_POOLS.icmpCodes) } : { type };
  }
  if (rng.chance(0.12)) spec.vlan = rng.pick(PIPELINE_POOLS.vlans);
  if ((proto === undefined || proto === 'tcp' || proto === 6) && rng.chance(0.15)) {
    if (rng.chance(0.6)) spec.tcpFlags = rng.pick(TCP_FLAG_TEXTS);
    else {
      const unset = rng.int(256) & rng.int(256);
      const set = rng.int(256) & ~unset & rng.int(256);
      spec.tcpFlags = set === 0 && unset === 0 ? { set: 0x02, unset: 0 } : { set, unset };
    }
  }
  if (rng.chance(0.1)) spec.filter = rng.pick(SCENARIO_FILTERS);
  if (rng.chance(0.3)) spec.priority = rng.int(4);
  if (action === 'ratelimit') {
    // Far above anything a test sends: every packet is within the limit.
    spec.rate = '10mpps';
    spec.burst = 1_000_000_000;
    if (rng.chance(0.3)) spec.perSource = true;
  }
  return spec;
}

/** A long run of rules that all match many frames, to reach SL_MAX_STEPS. */
function filler(rng: Prng): RuleSpec[] {
  const n = rng.range(55, 80);
  // mostly count rules that match every frame: every parsed frame meets the step limit
  const kind = Number(rng.weighted({ 0: 3, 1: 1, 2: 1, 3: 1 }));
  return Array.from({ length: n }, (_, i): RuleSpec => {
    switch (kind) {
      case 0:
        return { action: 'count' };
      case 1:
        return { action: 'count', vlan: i % 2 === 0 ? 0 : 100 };
      case 2:
        return { action: 'drop', filter: 'arp' };
      default:
        return { action: i % 3 === 0 ? 'drop' : 'count', dport: [0, 1000 + i] };
    }
  });
}

/**
 * One random scenario from `seed`: four prefix sets (each a random subset of the pools, so
 * prefixes nest within and across sets; some empty) and a rule set of 0 to 14 random rules, or
 * (see `longRun`) up to 12 around a run of 55 to 80 filler rules, with random default and
 * malformed actions. Every rule field appears; "redirect" never does.
 */
export function generateRuleScenario(
  seed: number,
  options: RuleScenarioOptions = {},
): RuleScenario {
  const opts = {
    ratelimit: options.ratelimit ?? true,
    idPool: options.idPool ?? 40,
  };
  const rng = new Prng(seed);
  const all = [...PIPELINE_POOLS.v4Prefixes, ...PIPELINE_POOLS.v6Prefixes];
  const sets = SCENARIO_SETS.map((name) => ({
    name,
    prefixes: all.filter(() => rng.chance(0.25)),
  }));
  const some = (n: number): RuleSpec[] => Array.from({ length: n }, () => randomRule(rng, opts));
  let rules: RuleSpec[];
  const longRun = rng.chance(1 / 7);
  if (options.longRun ?? longRun)
    rules = [...some(rng.int(7)), ...filler(rng), ...some(rng.int(7))];
  else rules = some(rng.int(15));
  // Some rules get ids from a small pool (unique within the set), so a rule id recurs across
  // scenarios and its kernel counter carries over the generation flip.
  const used = new Set<string>();
  for (const rule of rules) {
    if (!rng.chance(0.3)) continue;
    const id = `r${rng.int(opts.idPool)}`;
    if (used.has(id)) continue;
    used.add(id);
    rule.id = id;
  }
  const ruleSet: RuleSetSpec = {
    rules,
    defaultAction: rng.pick<SetAction>(['pass', 'drop']),
    malformed: rng.pick<SetAction>(['pass', 'drop']),
  };
  return { seed, sets, ruleSet };
}

/**
 * The membership function decide() takes, for `sets` given as text: which sets hold an
 * address (a set holds it when any of its prefixes does, however they nest).
 */
export function setMembership(
  sets: readonly ScenarioSet[],
): (family: 4 | 6, addr: Uint8Array) => ReadonlySet<string> {
  const parsed: { name: string; prefixes: Prefix[] }[] = sets.map((s) => ({
    name: s.name,
    prefixes: s.prefixes.map((p) => parsePrefix(p)),
  }));
  return (family, addr) =>
    new Set(
      parsed
        .filter((s) => s.prefixes.some((p) => addressInPrefix(p, family, addr)))
        .map((s) => s.name),
    );
}
