// Bearer-token authentication: every route but /healthz, compared in constant time.
import { createHash, timingSafeEqual } from 'node:crypto';

import type { FastifyRequest, onRequestHookHandler } from 'fastify';

import type { Api } from '../context.js';
import { ApiError } from '../problems.js';

/** Routes reachable without a token. */
export const PUBLIC_ROUTES: ReadonlySet<string> = new Set(['/healthz']);

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/**
 * True when `presented` is `token`. Both are hashed first, so timingSafeEqual compares equal
 * lengths and the time taken says nothing about the token's length or its matching prefix.
 */
export function tokenMatches(presented: string, expected: Buffer): boolean {
  return timingSafeEqual(digest(presented), expected);
}

function check(request: FastifyRequest, expected: Buffer): void {
  const header = request.headers.authorization;
  if (header === undefined || header === '')
    throw new ApiError('API_UNAUTHORIZED', 'this route needs "Authorization: Bearer <token>"', {
      headers: { 'www-authenticate': 'Bearer realm="sluice"' },
    });
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  if (match === null || !tokenMatches(match[1], expected))
    throw new ApiError('API_UNAUTHORIZED', 'the bearer token is malformed or not the right one', {
      headers: { 'www-authenticate': 'Bearer realm="sluice", error="invalid_token"' },
    });
}

/**
 * Adds the check to every route registered after this call, as a route-level onRequest hook so
 * that it runs after the rate limit's (failed guesses count against the client too).
 */
export function installAuth(app: Api, token: string): void {
  const expected = digest(token);
  const hook: onRequestHookHandler = async (request) => check(request, expected);
  app.addHook('onRoute', (route) => {
    if (PUBLIC_ROUTES.has(route.url)) return;
    const existing = route.onRequest;
    route.onRequest =
      existing === undefined
        ? [hook]
        : [...(Array.isArray(existing) ? existing : [existing]), hook];
  });
}
