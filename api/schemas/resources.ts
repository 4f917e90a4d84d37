// Response schemas of the read routes: devices, attachments with status, sets, rules, status,
// stats (with the load balancer's), replay reports. Shapes restate controller/contract.ts's interfaces as TypeBox.
import { Type, type TSchema } from 'typebox';

import {
  AttachmentSchema,
  HookSchema,
  RuleSchema,
  SetNameSchema,
  type RuleDoc,
} from '../../controller/document.js';
import { ChangeResultProperties, DryRunQuerySchema, withProblems } from './common.js';
import { LbStatsSchema } from './lb.js';

export const DeviceInfoSchema = Type.Object({
  name: Type.String(),
  ifindex: Type.Integer(),
  up: Type.Boolean(),
  mac: Type.Union([Type.String(), Type.Null()]),
  mtu: Type.Union([Type.Integer(), Type.Null()]),
});

export const AttachmentStatusSchema = Type.Object({
  device: Type.String(),
  hook: HookSchema,
  state: Type.Union([Type.Literal('attached'), Type.Literal('pending'), Type.Literal('error')]),
  ifindex: Type.Union([Type.Integer(), Type.Null()]),
  error: Type.Union([Type.String(), Type.Null()]),
  appliedGeneration: Type.Union([Type.Integer(), Type.Null()]),
});

export const AttachmentWithStatusSchema = Type.Object({
  ...AttachmentSchema.properties,
  status: AttachmentStatusSchema,
});

/** A rule as the controller keeps it: always with its id. */
export const StoredRuleSchema = Type.Object({
  ...RuleSchema.properties,
  id: Type.String(),
});

export const RuleChangeSchema = Type.Object({ ...ChangeResultProperties, rule: StoredRuleSchema });

/**
 * The schema of `POST /v1/<tag>`: add a rule posted as `body`; 201 (200 for a dry run) with the
 * change and the stored rule.
 */
export function addRuleSchema<B extends TSchema>(summary: string, tag: string, body: B) {
  return {
    summary,
    tags: [tag],
    querystring: DryRunQuerySchema,
    body,
    response: withProblems({ 200: RuleChangeSchema, 201: RuleChangeSchema }),
  };
}

/** addRule's result with the rule's id as the contract promises it (always set after adding). */
export function withRuleId<T extends { rule: RuleDoc }>(result: T): T & { rule: { id: string } } {
  return { ...result, rule: { ...result.rule, id: result.rule.id ?? '' } };
}

export const SetSummarySchema = Type.Object({ name: Type.String(), count: Type.Integer() });

export const SetChangeSchema = Type.Object({ ...ChangeResultProperties, count: Type.Integer() });

export const SetNameParamsSchema = Type.Object({ name: SetNameSchema });

export const ControllerStatusSchema = Type.Object({
  desiredGeneration: Type.Integer(),
  appliedGeneration: Type.Integer(),
  ready: Type.Boolean(),
  stateDir: Type.String(),
  pinDir: Type.String(),
  attachments: Type.Array(AttachmentStatusSchema),
});

const PacketCountSchema = Type.Object({ packets: Type.Number(), bytes: Type.Number() });

export const LimiterCountersSchema = Type.Object({
  id: Type.String(),
  passed: Type.Number(),
  dropped: Type.Number(),
});

export const DeviceStatsSchema = Type.Object({
  name: Type.String(),
  device: Type.String(),
  hook: HookSchema,
  ifindex: Type.Integer(),
  generation: Type.Integer(),
  actions: Type.Record(Type.String(), PacketCountSchema),
  events: Type.Record(Type.String(), Type.Number()),
  histogram: Type.Array(Type.Number()),
  rules: Type.Array(
    Type.Object({
      id: Type.String(),
      position: Type.Integer(),
      packets: Type.Number(),
      bytes: Type.Number(),
      lastHit: Type.Union([Type.String({ description: 'ISO 8601 time' }), Type.Null()]),
    }),
  ),
  limiters: Type.Array(LimiterCountersSchema),
});

export const StatsSchema = Type.Object({
  devices: Type.Array(DeviceStatsSchema),
  lb: Type.Optional(LbStatsSchema),
});

export const ReplayReportSchema = Type.Object({
  packets: Type.Integer(),
  attachments: Type.Array(
    Type.Object({
      attachment: Type.String(),
      rules: Type.Array(Type.Object({ id: Type.String(), packets: Type.Integer() })),
      verdicts: Type.Record(Type.String(), Type.Integer()),
      changed: Type.Integer(),
    }),
  ),
});
