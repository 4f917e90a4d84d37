// The REST API: buildServer() assembles fastify with schemas, problems, auth, rate limits, metrics
// and the /v1 routes. It never listens by itself: the daemon (or a test) calls listen or inject.
import Fastify, { type FastifyInstance, type FastifySchemaCompiler } from 'fastify';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import { TypeBoxValidatorCompiler, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from 'pino';
import type { TSchema } from 'typebox';

import type { Controller } from '../controller/contract.js';
import type { Api, RouteOptions } from './context.js';
import { createMetrics, type Metrics } from './metrics.js';
import { installAuth } from './plugins/auth.js';
import { installProblems } from './plugins/problems.js';
import { ApiError } from './problems.js';
import { attachmentRoutes } from './routes/attachments.js';
import { compileRoutes } from './routes/compile.js';
import { configRoutes } from './routes/config.js';
import { eventRoutes } from './routes/events.js';
import { filterRoutes } from './routes/filters.js';
import { healthRoutes } from './routes/health.js';
import { lbRoutes } from './routes/lb.js';
import { limitRoutes } from './routes/limits.js';
import { replayRoutes } from './routes/replay.js';
import { ruleRoutes } from './routes/rules.js';
import { setRoutes } from './routes/sets.js';
import { statusRoutes } from './routes/status.js';

export { createMetrics, type Metrics } from './metrics.js';

export interface ServerOptions {
  controller: Controller;
  /** A pino logger, or true for fastify's own, false (the default) for none. */
  logger?: Logger | boolean;
  /** When set, every route but /healthz requires "Authorization: Bearer <token>". */
  token?: string;
  /** Limit of JSON bodies in bytes; default 1 MiB. */
  bodyLimit?: number;
  /** Limit of streamed set bodies (PUT /v1/sets/:name) in bytes; default 256 MiB. */
  setBodyLimit?: number;
  /** Requests per client (address) and window in ms; false for none (the default). */
  rateLimit?: { max: number; timeWindow: number } | false;
  /** Metrics to record into, shared between servers; default: new ones for this controller. */
  metrics?: Metrics;
}

const MiB = 1024 * 1024;

/**
 * Request parts are validated by TypeBox's compiler: bodies exactly as sent (unknown properties
 * are errors, nothing is stripped, defaulted or coerced); querystrings, params and headers
 * converted from text first ("true" → true). Fastify's default Ajv would remove unknown
 * properties and coerce body types instead.
 */
const validatorCompiler: FastifySchemaCompiler<TSchema> = (def) => TypeBoxValidatorCompiler(def);

/**
 * Builds the server for `controller`. Throws what fastify throws for a broken route table (a
 * programming error). Status codes: see api/problems.ts.
 */
export async function buildServer(opts: ServerOptions): Promise<FastifyInstance> {
  const bodyLimit = opts.bodyLimit ?? MiB;
  const setBodyLimit = opts.setBodyLimit ?? 256 * MiB;
  const metrics = opts.metrics ?? createMetrics(opts.controller);
  const ownMetrics = opts.metrics === undefined;

  const app: Api = Fastify({
    ...(typeof opts.logger === 'object'
      ? { loggerInstance: opts.logger }
      : { logger: opts.logger ?? false }),
    bodyLimit,
    exposeHeadRoutes: false,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false } },
  }).withTypeProvider<TypeBoxTypeProvider>() as unknown as Api;
  app.setValidatorCompiler(validatorCompiler);
  installProblems(app);

  app.addHook('onResponse', async (request, reply) => {
    metrics.requestDuration.observe(
      {
        method: request.method,
        route: request.routeOptions.url ?? 'unmatched',
        status: String(reply.statusCode),
      },
      reply.elapsedTime / 1000,
    );
  });
  if (ownMetrics) app.addHook('onClose', async () => metrics.close());

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'sluice',
        description:
          'XDP/TC data-plane controller. Errors are RFC 9457 application/problem+json with a stable `code`.',
        version: '1',
      },
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      },
      ...(opts.token !== undefined ? { security: [{ bearer: [] }] } : {}),
    },
  });

  if (opts.rateLimit) {
    await app.register(rateLimit, {
      max: opts.rateLimit.max,
      timeWindow: opts.rateLimit.timeWindow,
      errorResponseBuilder: (_request, context) =>
        new ApiError('API_RATE_LIMITED', `rate limit exceeded: retry in ${context.after}`, {
          members: { limit: context.max },
        }),
    });
  }
  if (opts.token !== undefined) installAuth(app, opts.token);

  const routeOptions: RouteOptions = {
    controller: opts.controller,
    metrics,
    bodyLimit,
    setBodyLimit,
  };
  for (const plugin of [
    healthRoutes,
    statusRoutes,
    attachmentRoutes,
    setRoutes,
    ruleRoutes,
    limitRoutes,
    filterRoutes,
    lbRoutes,
    configRoutes,
    replayRoutes,
    eventRoutes,
    compileRoutes,
  ]) {
    await app.register(plugin, routeOptions);
  }
  await app.ready();
  return app;
}
