// Read-only views: devices, controller status, counters (the load balancer's with the devices').
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type, type Static } from 'typebox';

import type { Stats } from '../../controller/contract.js';
import { DeviceNameSchema } from '../../controller/document.js';
import type { RouteOptions } from '../context.js';
import { withProblems } from '../schemas/common.js';
import { ControllerStatusSchema, DeviceInfoSchema, StatsSchema } from '../schemas/resources.js';

/** Stats with dates as ISO text, as JSON carries them (also for /v1/events). */
export function statsJson(stats: Stats): Static<typeof StatsSchema> {
  return {
    devices: stats.devices.map((d) => ({
      ...d,
      rules: d.rules.map((r) => ({
        ...r,
        lastHit: r.lastHit === null ? null : new Date(r.lastHit).toISOString(),
      })),
    })),
    ...(stats.lb !== undefined ? { lb: stats.lb } : {}),
  };
}

export const statusRoutes: FastifyPluginAsyncTypebox<RouteOptions> = async (
  app,
  { controller },
) => {
  app.get(
    '/v1/devices',
    {
      schema: {
        summary: 'network devices of the namespace',
        tags: ['status'],
        response: withProblems({ 200: Type.Object({ devices: Type.Array(DeviceInfoSchema) }) }),
      },
    },
    async () => ({ devices: await controller.devices() }),
  );

  app.get(
    '/v1/status',
    {
      schema: {
        summary: 'desired and applied generations, attachment states',
        tags: ['status'],
        response: withProblems({ 200: ControllerStatusSchema }),
      },
    },
    async () => controller.status(),
  );

  app.get(
    '/v1/stats',
    {
      schema: {
        summary:
          'counters per attachment: verdicts, events, rules, rate limits, frame sizes; and the load balancer',
        description:
          "`lb` (the balancer's events and its services with their backends) is present when services are configured; `device` narrows the attachments only.",
        tags: ['status'],
        querystring: Type.Object(
          { device: Type.Optional(DeviceNameSchema) },
          { additionalProperties: false },
        ),
        response: withProblems({ 200: StatsSchema }),
      },
    },
    async (request) => {
      const stats = statsJson(controller.stats(request.query.device));
      const lb = await controller.lbStats();
      return lb === null ? stats : { ...stats, lb };
    },
  );
};
