// Every error response as application/problem+json: the error handler, the 404 handler, and an
// onSend pass that rewrites what plugins reply by themselves.
import { STATUS_CODES } from 'node:http';

import type { FastifyReply, FastifyRequest } from 'fastify';

import type { Api } from '../context.js';
import { ApiError, PROBLEMS, problemType, toProblem, type Problem } from '../problems.js';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json; charset=utf-8';

/** Sends `err` as a problem; unexpected errors are logged in full with the request id. */
export function sendProblem(err: unknown, request: FastifyRequest, reply: FastifyReply): void {
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    const type = request.headers['content-type'];
    err = new ApiError(
      'API_UNSUPPORTED_MEDIA',
      type === undefined
        ? `${request.method} ${request.url.split('?')[0]} needs a Content-Type`
        : `${request.method} ${request.url.split('?')[0]} takes no ${JSON.stringify(type)} body`,
      { cause: err },
    );
  }
  const { problem, headers, unexpected } = toProblem(err, request);
  if (unexpected) request.log.error({ err, reqId: request.id }, 'request failed unexpectedly');
  else request.log.info({ code: problem.code, status: problem.status }, problem.detail);
  reply
    .headers(headers)
    .code(problem.status)
    .type(PROBLEM_CONTENT_TYPE)
    .send(JSON.stringify(problem));
}

const CODE_BY_STATUS: Readonly<Record<number, string>> = {
  400: 'API_BAD_REQUEST',
  401: 'API_UNAUTHORIZED',
  404: 'API_NOT_FOUND',
  413: 'API_BODY_TOO_LARGE',
  415: 'API_UNSUPPORTED_MEDIA',
  429: 'API_RATE_LIMITED',
  503: 'API_NOT_READY',
};

/** A reply some plugin made by itself, as a problem (its `message` becomes the detail). */
function normalise(request: FastifyRequest, status: number, payload: unknown): Problem {
  let detail = STATUS_CODES[status] ?? 'error';
  let code = CODE_BY_STATUS[status] ?? (status >= 500 ? 'API_INTERNAL' : 'API_BAD_REQUEST');
  if (typeof payload === 'string' && status < 500) {
    try {
      const parsed = JSON.parse(payload) as { message?: unknown; code?: unknown };
      if (typeof parsed.message === 'string') detail = parsed.message;
    } catch {
      if (payload.length > 0 && payload.length < 500) detail = payload;
    }
  }
  if (!(code in PROBLEMS)) code = 'API_INTERNAL';
  const kind = PROBLEMS[code];
  return {
    type: problemType(code),
    title: kind.status === status ? kind.title : (STATUS_CODES[status] ?? 'Error'),
    status,
    detail,
    instance: request.url,
    code,
    requestId: String(request.id),
  };
}

/** Installs the handlers on the root instance (they reach every route). */
export function installProblems(app: Api): void {
  app.setErrorHandler((err, request, reply) => sendProblem(err, request, reply));
  app.setNotFoundHandler((request, reply) =>
    sendProblem(
      new ApiError('API_NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`),
      request,
      reply,
    ),
  );
  app.addHook('onSend', async (request, reply, payload) => {
    if (reply.statusCode < 400) return payload;
    const type = String(reply.getHeader('content-type') ?? '');
    if (type.startsWith('application/problem+json')) return payload;
    if (typeof payload !== 'string' && payload !== null && payload !== undefined) return payload;
    reply.type(PROBLEM_CONTENT_TYPE);
    return JSON.stringify(normalise(request, reply.statusCode, payload));
  });
}
