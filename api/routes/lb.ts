// The L4 load balancer: services (VIP:PORT/PROTO) and their weighted backends, with live figures.
// Keys in paths are URL-encoded ("10.0.0.100%3A80%2Ftcp"); "10.0.0.100:80" means tcp.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';

import { BackendSchema, ServiceSchema, type ServiceDoc } from '../../controller/document.js';
import { ConfigInvalidError, NotFoundError } from '../../controller/errors.js';
import { CheckSpecInvalidError } from '../../controller/lb/health-errors.js';
import { parseCheckSpec } from '../../controller/lb/health-spec.js';
import {
  backendKey,
  parseBackendRef,
  parseServiceKey,
  serviceKey,
} from '../../controller/lb/service-key.js';
import type { RouteOptions } from '../context.js';
import { ApiError } from '../problems.js';
import { ChangeResultSchema, DryRunQuerySchema, withProblems } from '../schemas/common.js';
import {
  BackendParamsSchema,
  BackendPatchSchema,
  LbServiceViewSchema,
  ServiceParamsSchema,
} from '../schemas/lb.js';

/**
 * A path parameter that is not a key, as the 400 a schema failure of the same parameter gets
 * (the controller's parsers say what is wrong; its ConfigInvalidError would be a 422).
 */
function badParam(name: string, err: unknown): never {
  if (!(err instanceof ConfigInvalidError)) throw err;
  throw new ApiError('API_VALIDATION', `params /${name}: ${err.message}`, {
    cause: err,
    members: { errors: [{ pointer: `/${name}`, in: 'params', detail: err.message }] },
  });
}

/**
 * The canonical key of the service a path names: "10.0.0.100:80" → "10.0.0.100:80/tcp". Throws
 * ApiError API_VALIDATION (400) when the text is not a key.
 */
export function servicePathKey(text: string): string {
  try {
    return serviceKey(parseServiceKey(text));
  } catch (err: unknown) {
    return badParam('service', err);
  }
}

/**
 * The canonical name of the backend a path names: "10.1.0.11", "[2001:db8::b]:8080". Throws
 * ApiError API_VALIDATION (400) when the text is not one.
 */
export function backendPathKey(text: string): string {
  try {
    return backendKey(parseBackendRef(text));
  } catch (err: unknown) {
    return badParam('backend', err);
  }
}

/**
 * Parses a health-check spec of a body before the controller sees it, so that a bad one is
 * answered as the controller's invalid-state problem (422) pointing into the body, whatever the
 * controller would make of the checker's own error.
 */
function checkSpecAt(check: string | null | undefined, pointer: string): void {
  if (check === undefined || check === null) return;
  try {
    parseCheckSpec(check);
  } catch (err: unknown) {
    if (!(err instanceof CheckSpecInvalidError)) throw err;
    throw new ConfigInvalidError(`${pointer}: ${err.message}`, { pointer, cause: err });
  }
}

function checkBackends(service: ServiceDoc): void {
  service.backends?.forEach((b, i) => checkSpecAt(b.check, `/backends/${i}/check`));
}

export const lbRoutes: FastifyPluginAsyncTypebox<RouteOptions> = async (app, { controller }) => {
  app.get(
    '/v1/lb/services',
    {
      schema: {
        summary: 'load-balanced services with their backends and live figures',
        tags: ['lb'],
        response: withProblems({
          200: Type.Object({ services: Type.Array(LbServiceViewSchema) }),
        }),
      },
    },
    async () => ({ services: await controller.lbServices() }),
  );

  app.get(
    '/v1/lb/services/:service',
    {
      schema: {
        summary: 'one service with its backends and live figures',
        tags: ['lb'],
        params: ServiceParamsSchema,
        response: withProblems({ 200: LbServiceViewSchema }),
      },
    },
    async (request) => {
      const key = servicePathKey(request.params.service);
      const [service] = await controller.lbServices(key);
      if (service === undefined) throw new NotFoundError(`service "${key}" does not exist`);
      return service;
    },
  );

  app.post(
    '/v1/lb/services',
    {
      schema: {
        summary: 'add a service, with any backends it lists (201; 200 for a dry run)',
        tags: ['lb'],
        querystring: DryRunQuerySchema,
        body: ServiceSchema,
        response: withProblems({ 200: ChangeResultSchema, 201: ChangeResultSchema }),
      },
    },
    async (request, reply) => {
      checkBackends(request.body);
      const dryRun = request.query.dryRun === true;
      const result = await controller.addService(request.body, { dryRun });
      return reply.code(dryRun ? 200 : 201).send(result);
    },
  );

  app.delete(
    '/v1/lb/services/:service',
    {
      schema: {
        summary: 'remove a service and its backends',
        tags: ['lb'],
        params: ServiceParamsSchema,
        querystring: DryRunQuerySchema,
        response: withProblems({ 200: ChangeResultSchema }),
      },
    },
    async (request) =>
      controller.removeService(servicePathKey(request.params.service), {
        dryRun: request.query.dryRun === true,
      }),
  );

  app.post(
    '/v1/lb/services/:service/backends',
    {
      schema: {
        summary: 'add a backend to a service (201; 200 for a dry run)',
        tags: ['lb'],
        params: ServiceParamsSchema,
        querystring: DryRunQuerySchema,
        body: BackendSchema,
        response: withProblems({ 200: ChangeResultSchema, 201: ChangeResultSchema }),
      },
    },
    async (request, reply) => {
      const key = servicePathKey(request.params.service);
      checkSpecAt(request.body.check, '/check');
      const dryRun = request.query.dryRun === true;
      const result = await controller.addBackend(key, request.body, { dryRun });
      return reply.code(dryRun ? 200 : 201).send(result);
    },
  );

  app.patch(
    '/v1/lb/services/:service/backends/:backend',
    {
      schema: {
        summary: "change a backend's weight, drain or health check",
        tags: ['lb'],
        params: BackendParamsSchema,
        querystring: DryRunQuerySchema,
        body: BackendPatchSchema,
        response: withProblems({ 200: ChangeResultSchema }),
      },
    },
    async (request) => {
      const key = servicePathKey(request.params.service);
      const backend = backendPathKey(request.params.backend);
      checkSpecAt(request.body.check, '/check');
      return controller.setBackend(key, backend, request.body, {
        dryRun: request.query.dryRun === true,
      });
    },
  );

  app.delete(
    '/v1/lb/services/:service/backends/:backend',
    {
      schema: {
        summary:
          'remove a backend: new flows leave it now, established ones after the drain timeout',
        tags: ['lb'],
        params: BackendParamsSchema,
        querystring: DryRunQuerySchema,
        response: withProblems({ 200: ChangeResultSchema }),
      },
    },
    async (request) =>
      controller.removeBackend(
        servicePathKey(request.params.service),
        backendPathKey(request.params.backend),
        { dryRun: request.query.dryRun === true },
      ),
  );
};
