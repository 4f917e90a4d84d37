// The desired-state document: one schema for `PUT /v1/config`, apply files, the state file and
// every REST body that carries a part of it. Types are derived from the schemas, never restated.
import { Type, type Static } from 'typebox';

/** Schema version of the document and of the state file; bump with a migration in store.ts. */
export const DOCUMENT_VERSION = 1;

const NAME_PATTERN = '^[A-Za-z0-9_.-]{1,64}$';
/** Rule ids users give: the dataplane reserves a leading "~" for generated ones. */
const RULE_ID_PATTERN = '^[A-Za-z0-9_.-][A-Za-z0-9_.~-]{0,63}$';
/** Linux device names: 1..15 bytes, no "/", no whitespace, not "." or "..". */
const DEVICE_PATTERN = '^(?!\\.{1,2}$)[^/\\s:]{1,15}$';

export const HookSchema = Type.Union(
  [Type.Literal('xdp'), Type.Literal('tc-ingress'), Type.Literal('tc-egress')],
  { description: 'where the pipeline runs on the device', default: 'xdp' },
);
export type HookName = Static<typeof HookSchema>;

export const SetActionSchema = Type.Union([Type.Literal('pass'), Type.Literal('drop')]);

export const DeviceNameSchema = Type.String({
  pattern: DEVICE_PATTERN,
  description: 'network device name (at most 15 bytes)',
});

/** One attachment: the pipeline on one device and hook, with its per-device defaults. */
export const AttachmentSchema = Type.Object(
  {
    device: DeviceNameSchema,
    hook: Type.Optional(HookSchema),
    mode: Type.Optional(
      Type.Union([Type.Literal('native'), Type.Literal('generic')], {
        description: 'XDP only: native (driver) or generic (skb) mode; default native',
      }),
    ),
    defaultAction: Type.Optional(SetActionSchema),
    malformed: Type.Optional(SetActionSchema),
  },
  { additionalProperties: false },
);
export type AttachmentDoc = Static<typeof AttachmentSchema>;

export const SetNameSchema = Type.String({ pattern: NAME_PATTERN });

/** A named prefix set, shared by every attachment. */
export const SetSchema = Type.Object(
  {
    name: SetNameSchema,
    prefixes: Type.Array(Type.String({ maxLength: 64 }), {
      description: 'IPv4 and IPv6 prefixes or bare addresses, any mix',
    }),
  },
  { additionalProperties: false },
);
export type SetDoc = Static<typeof SetSchema>;

const PortSchema = Type.Union([
  Type.Integer({ minimum: 0, maximum: 65535 }),
  Type.String({ pattern: '^\\d{1,5}(-\\d{1,5})?$', description: '"80" or "1024-65535"' }),
]);

/**
 * One rule of one attachment. Match fields and actions are controller/dataplane's RuleSpec;
 * `device` and `hook` say which attachment's ordered list it belongs to.
 */
export const RuleSchema = Type.Object(
  {
    id: Type.Optional(Type.String({ pattern: RULE_ID_PATTERN })),
    device: DeviceNameSchema,
    hook: Type.Optional(HookSchema),
    priority: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
    src: Type.Optional(Type.String({ maxLength: 64 })),
    dst: Type.Optional(Type.String({ maxLength: 64 })),
    srcSet: Type.Optional(SetNameSchema),
    dstSet: Type.Optional(SetNameSchema),
    proto: Type.Optional(
      Type.Union([
        Type.Union([
          Type.Literal('tcp'),
          Type.Literal('udp'),
          Type.Literal('icmp'),
          Type.Literal('icmpv6'),
          Type.Literal('sctp'),
        ]),
        Type.Integer({ minimum: 0, maximum: 255 }),
      ]),
    ),
    sport: Type.Optional(PortSchema),
    dport: Type.Optional(PortSchema),
    icmp: Type.Optional(
      Type.Object(
        {
          type: Type.Integer({ minimum: 0, maximum: 255 }),
          code: Type.Optional(Type.Integer({ minimum: 0, maximum: 255 })),
        },
        { additionalProperties: false },
      ),
    ),
    vlan: Type.Optional(Type.Integer({ minimum: 0, maximum: 4095 })),
    tcpFlags: Type.Optional(Type.String({ maxLength: 64, description: '"syn,!ack"' })),
    filter: Type.Optional(
      Type.String({ minLength: 1, maxLength: 4096, description: 'a tcpdump expression' }),
    ),
    action: Type.Union([
      Type.Literal('drop'),
      Type.Literal('pass'),
      Type.Literal('count'),
      Type.Literal('ratelimit'),
      Type.Literal('redirect'),
    ]),
    rate: Type.Optional(
      Type.Union([
        Type.String({ maxLength: 32, description: '"1000pps", "10mbit", "64kbps"' }),
        Type.Integer({ minimum: 1 }),
      ]),
    ),
    burst: Type.Optional(Type.Integer({ minimum: 1 })),
    perSource: Type.Optional(Type.Boolean()),
    to: Type.Optional(DeviceNameSchema),
    via: Type.Optional(
      Type.String({ pattern: '^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$', description: 'next-hop MAC' }),
    ),
  },
  { additionalProperties: false },
);
export type RuleDoc = Static<typeof RuleSchema>;

/** A rule as the controller keeps it (state file, journal): with its id. */
export const StoredRuleSchema = Type.Intersect([RuleSchema, Type.Object({ id: Type.String() })]);

/** A set file's name under the state directory's sets/: `<set>.<generation>.txt`. */
export const SetFileNameSchema = Type.String({ pattern: '^[A-Za-z0-9_.-]+\\.[0-9]+\\.txt$' });

/** The whole desired state. */
export const ConfigSchema = Type.Object(
  {
    version: Type.Optional(Type.Literal(DOCUMENT_VERSION)),
    attachments: Type.Optional(Type.Array(AttachmentSchema)),
    sets: Type.Optional(Type.Array(SetSchema)),
    rules: Type.Optional(Type.Array(RuleSchema)),
  },
  { additionalProperties: false },
);
export type ConfigDoc = Static<typeof ConfigSchema>;

/** A document with every list present and every rule carrying its id, as the controller keeps it. */
export interface NormalConfig {
  version: typeof DOCUMENT_VERSION;
  attachments: AttachmentDoc[];
  sets: SetDoc[];
  rules: (RuleDoc & { id: string })[];
}
