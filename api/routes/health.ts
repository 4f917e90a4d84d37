// Liveness, readiness, Prometheus metrics and the OpenAPI document.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';

import type { RouteOptions } from '../context.js';
import { ApiError } from '../problems.js';
import { withProblems } from '../schemas/common.js';

export const healthRoutes: FastifyPluginAsyncTypebox<RouteOptions> = async (app, opts) => {
  const { controller, metrics } = opts;

  app.get(
    '/healthz',
    {
      config: { rateLimit: false },
      schema: {
        summary: 'the process answers (no token needed)',
        tags: ['health'],
        response: { 200: Type.Object({ status: Type.Literal('ok') }) },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      config: { rateLimit: false },
      schema: {
        summary: 'the controller has adopted the kernel state and reconciled once',
        tags: ['health'],
        response: withProblems({ 200: Type.Object({ ready: Type.Literal(true) }) }),
      },
    },
    async () => {
      if (!controller.ready)
        throw new ApiError('API_NOT_READY', 'the controller is still starting', {
          headers: { 'retry-after': '1' },
        });
      return { ready: true as const };
    },
  );

  app.get(
    '/metrics',
    {
      schema: {
        summary: 'Prometheus metrics: kernel counters at scrape time, API request durations',
        tags: ['health'],
        produces: ['text/plain'],
        response: withProblems({
          200: Type.String({ description: 'Prometheus text exposition format 0.0.4' }),
        }),
      },
    },
    async (_request, reply) => {
      const text = await metrics.registry.metrics();
      return reply.type(metrics.registry.contentType).send(text);
    },
  );

  app.get(
    '/openapi.json',
    {
      schema: {
        summary: 'this API as OpenAPI 3',
        tags: ['health'],
        response: withProblems({ 200: Type.Object({}, { additionalProperties: true }) }),
      },
    },
    async () => app.swagger() as unknown as Record<string, unknown>,
  );
};
