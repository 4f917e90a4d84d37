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
    decap: Type.Optional(
      Type.Array(Type.String({ maxLength: 64 }), {
        maxItems: 256,
        description:
          "XDP only, on a backend: decapsulate what a sluice balancer sent in ipip or gue mode to these addresses (this host's) after the rules; [] decapsulates to any address. The balancer does not run on such a device.",
      }),
    ),
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

// ---------------------------------------------------------------------------------------------
// Load balancer

export const LbProtoSchema = Type.Union(
  [Type.Literal('tcp'), Type.Literal('udp'), Type.Literal('sctp')],
  { default: 'tcp' },
);
export const LbModeSchema = Type.Union(
  [Type.Literal('dsr'), Type.Literal('ipip'), Type.Literal('gue'), Type.Literal('nat')],
  {
    description:
      'dsr: rewrite the MAC (backends hold the VIP on lo); ipip, gue: encapsulate (IP-in-IP, or in UDP port 6080 with a GUE header; backends decapsulate with sluice); nat: rewrite address and port, replies come back through sluice',
    default: 'dsr',
  },
);
export const LbHashSchema = Type.Union(
  [Type.Literal('5tuple'), Type.Literal('src'), Type.Literal('src-port')],
  { description: 'what the flow hash covers', default: '5tuple' },
);

/** One backend of a service: identified within it by address (and port, in NAT mode). */
export const BackendSchema = Type.Object(
  {
    address: Type.String({ maxLength: 64, description: 'an IPv4 or IPv6 address' }),
    port: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 65535,
        description: 'NAT mode: the port the backend listens on; default the service port',
      }),
    ),
    weight: Type.Optional(
      Type.Integer({ minimum: 0, maximum: 65535, description: 'share of new flows; default 1' }),
    ),
    drain: Type.Optional(
      Type.Boolean({ description: 'takes no new flows; its established flows stay' }),
    ),
    check: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 512,
        description:
          'health check: "tcp", "http:/healthz", "https::8443/ready#200", "udp::ping:pong", "icmp", options "interval=2s timeout=1s rise=2 fall=3"',
      }),
    ),
  },
  { additionalProperties: false },
);
export type BackendDoc = Static<typeof BackendSchema>;

/** A load-balanced service: VIP, port (0: every port) and protocol, over weighted backends. */
export const ServiceSchema = Type.Object(
  {
    vip: Type.String({ maxLength: 64, description: 'an IPv4 or IPv6 address' }),
    port: Type.Integer({ minimum: 0, maximum: 65535, description: '0: every port' }),
    proto: Type.Optional(LbProtoSchema),
    mode: Type.Optional(LbModeSchema),
    hash: Type.Optional(LbHashSchema),
    tableSize: Type.Optional(
      Type.Integer({ description: 'Maglev table size, a prime of MAGLEV_SIZES; default 65537' }),
    ),
    udpTimeout: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 86400,
        description: 'seconds a non-TCP flow lives idle; default 30; 0: until evicted',
      }),
    ),
    tcpTimeout: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 86400,
        description: 'seconds a TCP flow lives idle; default 0: until FIN/RST or eviction',
      }),
    ),
    drainTimeout: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 86400,
        description: 'seconds a removed backend keeps its established flows; default 30',
      }),
    ),
    devices: Type.Optional(
      Type.Array(DeviceNameSchema, {
        maxItems: 64,
        description:
          'the devices whose XDP attachment runs it; absent: every XDP attachment (a device that does not exist takes nothing)',
      }),
    ),
    backends: Type.Optional(Type.Array(BackendSchema)),
  },
  { additionalProperties: false },
);
export type ServiceDoc = Static<typeof ServiceSchema>;

/** Balancer-wide settings. */
export const LbSettingsSchema = Type.Object(
  {
    flowTable: Type.Optional(
      Type.Union([Type.Literal('shared'), Type.Literal('per-cpu')], {
        description:
          'shared (default): one LRU for all CPUs; per-cpu: peak rate, no cross-CPU stickiness',
      }),
    ),
    flowEntries: Type.Optional(Type.Integer({ minimum: 1024, maximum: 1 << 26 })),
    insertCap: Type.Optional(
      Type.Object(
        {
          rate: Type.Integer({
            minimum: 0,
            description: 'new flow-table entries per second per CPU',
          }),
          burst: Type.Integer({ minimum: 0 }),
        },
        { additionalProperties: false },
      ),
    ),
    closingTimeout: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 86400,
        description: 'seconds a TCP entry lives after FIN/RST',
      }),
    ),
    ipipSource4: Type.Optional(
      Type.String({ maxLength: 64, description: 'IPIP outer IPv4 source prefix' }),
    ),
    ipipSource6: Type.Optional(
      Type.String({ maxLength: 64, description: 'IPIP outer IPv6 source prefix' }),
    ),
  },
  { additionalProperties: false },
);
export type LbSettingsDoc = Static<typeof LbSettingsSchema>;

/** The whole desired state. */
export const ConfigSchema = Type.Object(
  {
    version: Type.Optional(Type.Literal(DOCUMENT_VERSION)),
    attachments: Type.Optional(Type.Array(AttachmentSchema)),
    sets: Type.Optional(Type.Array(SetSchema)),
    rules: Type.Optional(Type.Array(RuleSchema)),
    services: Type.Optional(Type.Array(ServiceSchema)),
    lb: Type.Optional(LbSettingsSchema),
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
  /** Load-balanced services; absent when there are none. */
  services?: ServiceDoc[];
  lb?: LbSettingsDoc;
}
