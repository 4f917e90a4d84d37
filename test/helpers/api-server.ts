// Builds the REST API over an in-memory controller for API-layer tests, and checks problem replies.
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { expect } from 'vitest';

import { buildServer, type ServerOptions } from '../../api/server.js';
import { MemoryController } from './memory-controller.js';

export interface TestServer {
  app: FastifyInstance;
  controller: MemoryController;
}

/** A server over a fresh MemoryController (or the one given). */
export async function testServer(
  options: Partial<ServerOptions> & { controller?: MemoryController } = {},
): Promise<TestServer> {
  const controller = options.controller ?? new MemoryController();
  const app = await buildServer({ ...options, controller });
  return { app, controller };
}

/** A server with veth0 attached at xdp, a set "blk" and a drop rule "r1" using it. */
export async function seededServer(
  options: Partial<ServerOptions> & { controller?: MemoryController } = {},
): Promise<TestServer> {
  const server = await testServer(options);
  await server.controller.replaceConfig({
    attachments: [{ device: 'veth0', hook: 'xdp' }],
    sets: [{ name: 'blk', prefixes: ['192.0.2.0/24', '2001:db8::/32'] }],
    rules: [
      { id: 'r1', device: 'veth0', hook: 'xdp', srcSet: 'blk', action: 'drop' },
      {
        id: 'lim',
        device: 'veth0',
        hook: 'xdp',
        proto: 'udp',
        action: 'ratelimit',
        rate: '1000pps',
      },
      { id: 'flt', device: 'veth0', hook: 'xdp', filter: 'udp and dst port 53', action: 'drop' },
    ],
  });
  return server;
}

/** The reply is an RFC 9457 problem with this status and code; returns its body. */
export function expectProblem(
  res: LightMyRequestResponse,
  status: number,
  code?: string,
): Record<string, unknown> {
  expect(res.statusCode, res.body).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  const body = res.json() as Record<string, unknown>;
  expect(body).toMatchObject({ status, type: expect.stringMatching(/^urn:sluice:problem:/) });
  expect(typeof body.title).toBe('string');
  expect(typeof body.detail).toBe('string');
  expect(typeof body.instance).toBe('string');
  expect(typeof body.code).toBe('string');
  if (code !== undefined) expect(body.code).toBe(code);
  return body;
}

/** A problem without the members that vary per request, for snapshots. */
export function stable(problem: Record<string, unknown>): Record<string, unknown> {
  const rest = { ...problem };
  delete rest.requestId;
  return rest;
}
