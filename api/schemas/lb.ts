// Schemas of the load balancer's routes: service and backend path parameters, the backend patch,
// and the views and counters of controller/contract.ts (LbServiceView, LbBackendView, LbStats).
import { Type } from 'typebox';

import { BackendSchema, LbHashSchema, LbModeSchema } from '../../controller/document.js';

/** A service in a path: "VIP:PORT[/PROTO]", URL-encoded. */
export const ServiceKeySchema = Type.String({
  minLength: 1,
  maxLength: 80,
  description:
    'the service key "VIP:PORT[/PROTO]" ("[v6]:PORT" for IPv6; protocol default tcp), URL-encoded: 10.0.0.100%3A80%2Ftcp',
});

/** A backend in a path: "ADDR" or "ADDR:PORT", URL-encoded. */
export const BackendRefSchema = Type.String({
  minLength: 1,
  maxLength: 80,
  description:
    'the backend "ADDR", or "ADDR:PORT" ("[v6]:PORT") for one with its own port, URL-encoded',
});

export const ServiceParamsSchema = Type.Object({ service: ServiceKeySchema });
export const BackendParamsSchema = Type.Object({
  service: ServiceKeySchema,
  backend: BackendRefSchema,
});

/** `PATCH /v1/lb/services/:service/backends/:backend`: what to change; null removes the check. */
export const BackendPatchSchema = Type.Object(
  {
    weight: BackendSchema.properties.weight,
    drain: BackendSchema.properties.drain,
    check: Type.Optional(
      Type.Union([Type.String({ minLength: 1, maxLength: 512 }), Type.Null()], {
        description: 'a health-check spec ("http:/healthz"), or null to remove the check',
      }),
    ),
  },
  { additionalProperties: false, minProperties: 1 },
);

const HealthSchema = Type.Union(
  [Type.Literal('up'), Type.Literal('down'), Type.Literal('unknown'), Type.Literal('unchecked')],
  { description: 'unchecked: no check configured; unknown: checked, no verdict yet' },
);

export const LbBackendViewSchema = Type.Object({
  address: Type.String(),
  port: Type.Integer({ description: "the port traffic goes to (NAT mode), else the service's" }),
  weight: Type.Integer(),
  drain: Type.Boolean(),
  check: Type.Union([Type.String(), Type.Null()]),
  health: HealthSchema,
  state: Type.Union([Type.Literal('active'), Type.Literal('draining'), Type.Literal('down')], {
    description:
      'active: takes new flows; draining: keeps its flows only (drain, or removed and waiting); down: failed its check',
  }),
  tableShare: Type.Number({ description: "0..1: the share of the service's Maglev table" }),
  trafficShare: Type.Number({ description: "0..1: the share of the service's packets so far" }),
  packets: Type.Number(),
  bytes: Type.Number(),
  newFlows: Type.Number(),
  activeFlows: Type.Number({ description: 'flow-table entries pinned to this backend now' }),
});

export const LbServiceViewSchema = Type.Object({
  key: Type.String({ description: '"10.0.0.100:80/tcp"' }),
  vip: Type.String(),
  port: Type.Integer({ description: '0: every port' }),
  proto: Type.Union([Type.Literal('tcp'), Type.Literal('udp'), Type.Literal('sctp')]),
  mode: LbModeSchema,
  hash: LbHashSchema,
  tableSize: Type.Integer(),
  devices: Type.Array(Type.String(), {
    description: 'the XDP attachments that run it ("veth1@xdp"); empty: running nowhere',
  }),
  packets: Type.Number(),
  bytes: Type.Number(),
  newFlows: Type.Number(),
  activeFlows: Type.Number(),
  backends: Type.Array(LbBackendViewSchema),
});

/** `lb` of `GET /v1/stats`: the balancer's own counters and its services. */
export const LbStatsSchema = Type.Object({
  events: Type.Record(Type.String(), Type.Number(), {
    description: 'flowHit, flowMiss, nonSynMiss, insertCap, noBackend, fibFail, tx, redirect, ...',
  }),
  fibFailures: Type.Record(Type.String(), Type.Number(), {
    description: 'bpf_fib_lookup failures by reason',
  }),
  services: Type.Array(LbServiceViewSchema),
  decap: Type.Optional(
    Type.Record(Type.String(), Type.Number(), {
      description: 'the decapsulation program of `decap` attachments: decapped, notLocal, …',
    }),
  ),
});
