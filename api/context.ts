// What every route plugin gets: the typed fastify instance and the controller.
import type { FastifyBaseLogger, FastifyInstance, RawServerDefault } from 'fastify';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';

import type { Controller } from '../controller/contract.js';
import type { Metrics } from './metrics.js';

/** The server with TypeBox type inference on route schemas. */
export type Api = FastifyInstance<
  RawServerDefault,
  IncomingMessage,
  ServerResponse,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

/** Options every route plugin is registered with. */
export interface RouteOptions {
  controller: Controller;
  metrics: Metrics;
  /** Limit of JSON bodies in bytes. */
  bodyLimit: number;
  /** Limit of streamed set bodies in bytes. */
  setBodyLimit: number;
}
