// Random rule sets for property tests of the classifier: raw choices repaired into valid
// RuleSpecs over the pipeline packet corpus's pools (so frames often hit their fields).
import fc from 'fast-check';

import type { RuleSpec } from '../../controller/dataplane/model.js';
import { PIPELINE_POOLS } from './pipeline-packets.js';
import { SCENARIO_FILTERS, SCENARIO_SETS } from './pipeline-rules.js';

const SET_NAMES = SCENARIO_SETS;
/** The scenario filters but the two that match on addresses and lengths. */
export const RULE_FILTERS = SCENARIO_FILTERS.slice(0, 8);
const FILTERS = RULE_FILTERS;

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
export const rawRule = fc.record({
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

export type RawRule = typeof rawRule extends fc.Arbitrary<infer T> ? T : never;

export function repair(r: RawRule): RuleSpec {
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
export const ruleList = fc.oneof(
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
