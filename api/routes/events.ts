// Server-sent events: controller events as they happen, and the counters every `interval` seconds.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';

import type { ControllerEvent } from '../../controller/contract.js';
import type { RouteOptions } from '../context.js';
import { withProblems } from '../schemas/common.js';
import { statsJson } from './status.js';

export const eventRoutes: FastifyPluginAsyncTypebox<RouteOptions> = async (app, { controller }) => {
  app.get(
    '/v1/events',
    {
      schema: {
        summary: 'text/event-stream: hello, then controller events and periodic stats',
        description:
          'Each event is `event: <type>` and `data: <json>`: hello (generation, ready) first, then ' +
          "reconcile, device, attachment, config and health (a backend's check verdict changed) " +
          'events as they happen, and stats every ' +
          '`interval` seconds.',
        tags: ['status'],
        produces: ['text/event-stream'],
        querystring: Type.Object(
          {
            interval: Type.Optional(
              Type.Number({ minimum: 0.1, maximum: 3600, default: 1, description: 'seconds' }),
            ),
          },
          { additionalProperties: false },
        ),
        response: withProblems({ 200: Type.String({ description: 'an event stream' }) }),
      },
    },
    async (request, reply) => {
      const interval = request.query.interval ?? 1;
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      const send = (type: string, data: unknown): void => {
        if (!res.writableEnded) res.write(`event: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
      };
      const onEvent = (event: ControllerEvent): void => send(event.type, event);
      const tick = (): void => {
        try {
          send('stats', statsJson(controller.stats()));
        } catch (err: unknown) {
          request.log.warn({ err }, 'reading counters for /v1/events failed');
        }
      };
      const timer = setInterval(tick, interval * 1000);
      controller.events.on('event', onEvent);
      let closed = false;
      const close = (): void => {
        if (closed) return;
        closed = true;
        clearInterval(timer);
        controller.events.off('event', onEvent);
      };
      res.on('close', close);
      request.raw.on('close', close);
      send('hello', { generation: controller.config().generation, ready: controller.ready });
    },
  );
};
