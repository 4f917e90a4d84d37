// Errors of the REST API and the one table that turns every error code into an HTTP status and an
// RFC 9457 problem (`application/problem+json`).
import { STATUS_CODES } from 'node:http';

import type { FastifyRequest } from 'fastify';
import { Type, type Static } from 'typebox';

/*
 * Codes the API itself throws:
 * - API_VALIDATION: the request does not match the route's schema (400, with `errors`)
 * - API_BAD_JSON: the body is not JSON, or is empty where JSON is required (400)
 * - API_BAD_REQUEST: another malformed request fastify refused (400: bad URL, bad Content-Length)
 * - API_BAD_IF_MATCH: If-Match is not one quoted generation number (400)
 * - API_SET_LINE: a line of a streamed set body is not a prefix in the body's format (400, `line`)
 * - API_UNAUTHORIZED: no or the wrong bearer token (401)
 * - API_NOT_FOUND: no such route (404)
 * - API_BODY_TOO_LARGE: the body exceeds the route's limit (413)
 * - API_UNSUPPORTED_MEDIA: the route takes no body of that Content-Type (415)
 * - API_RATE_LIMITED: too many requests from this client (429, with Retry-After)
 * - API_NOT_READY: the controller has not finished starting (503)
 * - API_INTERNAL: anything not in the table (500; the detail is generic, the error is logged)
 *
 * Codes of other areas mapped here: controller/errors.ts (CONFIG_*, STATE_*, DEVICE_NOT_FOUND,
 * NETLINK_REQUEST), controller/dataplane/errors.ts (RULE_INVALID, PREFIX_INVALID, ...) and
 * bpf/filter/errors.ts (FILTER_SYNTAX, FILTER_UNSUPPORTED, FILTER_LIMIT).
 */

/** How one code answers: status and a short, stable title. */
export interface ProblemKind {
  status: number;
  title: string;
}

/**
 * The table. Choices worth knowing: a request that parses and matches the schema but describes a
 * state the controller refuses is 422 (CONFIG_INVALID and every data-plane code); a filter
 * expression that does not compile is 400, with the position; a device that does not exist where
 * one must is 422 (the request names it; the URL's resource exists).
 */
export const PROBLEMS: Readonly<Record<string, ProblemKind>> = {
  API_VALIDATION: { status: 400, title: 'Request does not match the schema' },
  API_BAD_JSON: { status: 400, title: 'Body is not valid JSON' },
  API_BAD_REQUEST: { status: 400, title: 'Bad request' },
  API_BAD_IF_MATCH: { status: 400, title: 'Malformed If-Match' },
  API_SET_LINE: { status: 400, title: 'Malformed line in set body' },
  API_UNAUTHORIZED: { status: 401, title: 'Missing or wrong bearer token' },
  API_NOT_FOUND: { status: 404, title: 'No such route' },
  API_BODY_TOO_LARGE: { status: 413, title: 'Body too large' },
  API_UNSUPPORTED_MEDIA: { status: 415, title: 'Unsupported media type' },
  API_RATE_LIMITED: { status: 429, title: 'Too many requests' },
  API_NOT_READY: { status: 503, title: 'Controller not ready' },
  API_INTERNAL: { status: 500, title: 'Internal error' },

  FILTER_SYNTAX: { status: 400, title: 'Filter expression does not parse' },
  FILTER_UNSUPPORTED: { status: 400, title: 'Filter expression not supported' },
  FILTER_LIMIT: { status: 400, title: 'Filter expression too complex' },

  CONFIG_INVALID: { status: 422, title: 'Invalid desired state' },
  CONFIG_NOT_FOUND: { status: 404, title: 'Not found' },
  CONFIG_CONFLICT: { status: 409, title: 'Conflict' },
  CONFIG_PRECONDITION: { status: 412, title: 'Generation is not current' },
  DEVICE_NOT_FOUND: { status: 422, title: 'No such device' },

  RULE_INVALID: { status: 422, title: 'Invalid rule' },
  RULESET_INVALID: { status: 422, title: 'Invalid rule set' },
  PREFIX_INVALID: { status: 422, title: 'Invalid prefix' },
  LIMIT_INVALID: { status: 422, title: 'Invalid rate limit' },
  SET_INVALID: { status: 422, title: 'Invalid prefix set' },
  SET_NOT_FOUND: { status: 422, title: 'Rule names a set that does not exist' },
  FILTER_INVALID: { status: 422, title: 'Rule filter does not compile' },
  LIMIT_EXCEEDED: { status: 422, title: 'Pipeline capacity exceeded' },

  LB_FLOW_INVALID: { status: 422, title: 'Invalid flow' },
  LB_TABLE_SIZE: { status: 422, title: 'Invalid Maglev table size' },
  LB_BACKEND_INVALID: { status: 422, title: 'Invalid backend' },
  LB_MAP_INVALID: { status: 422, title: 'Invalid load-balancer entry' },
  LB_HEALTH_CHECK_INVALID: { status: 422, title: 'Invalid health check' },
  LB_HEALTH_TARGET_INVALID: { status: 422, title: 'Invalid health-check target' },
  // The kernel refused a load-balancer map write (a full map): the state could not be applied.
  LB_MAP_ACCESS: { status: 500, title: 'Load-balancer map write failed' },

  STATE_CORRUPT: { status: 500, title: 'State file unreadable' },
  STATE_LOCKED: { status: 503, title: 'State directory locked' },
  STATE_WRITE: { status: 503, title: 'Persisting the change failed' },
  NETLINK_REQUEST: { status: 500, title: 'Netlink request failed' },
  TABLES_INVALID: { status: 500, title: 'Classifier tables inconsistent' },
};

/** The `type` URI of a code: `urn:sluice:problem:config-invalid`. */
export function problemType(code: string): string {
  return `urn:sluice:problem:${code.toLowerCase().replace(/_/g, '-')}`;
}

/** One schema failure: where (JSON Pointer into the request part) and what. */
export const ProblemErrorSchema = Type.Object({
  pointer: Type.String(),
  in: Type.Optional(Type.String({ description: 'body, querystring, params or headers' })),
  detail: Type.String(),
});

/** What every error response carries; members beyond these depend on the code. */
export const ProblemSchema = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    instance: Type.String(),
    code: Type.String(),
    requestId: Type.Optional(Type.String()),
    pointer: Type.Optional(Type.String()),
    errors: Type.Optional(Type.Array(ProblemErrorSchema)),
    expression: Type.Optional(Type.String()),
    offset: Type.Optional(Type.Integer()),
    length: Type.Optional(Type.Integer()),
    line: Type.Optional(Type.Integer()),
  },
  { additionalProperties: true, description: 'RFC 9457 problem details' },
);
export type Problem = Static<typeof ProblemSchema> & Record<string, unknown>;

/** An error the API raises itself, with one of the API_* codes and extra problem members. */
export class ApiError extends Error {
  readonly code: string;
  readonly members: Record<string, unknown>;
  readonly headers: Record<string, string>;
  constructor(
    code: string,
    message: string,
    options?: ErrorOptions & {
      members?: Record<string, unknown>;
      headers?: Record<string, string>;
    },
  ) {
    super(message, options);
    this.code = code;
    this.members = options?.members ?? {};
    this.headers = options?.headers ?? {};
  }
}
ApiError.prototype.name = 'ApiError';

/**
 * Another area's error, located in the request: the problem is the cause's, with `members` added
 * (`line` of a streamed set, `pointer` into the body) and `prefix` opening the detail.
 */
export class LocatedError extends Error {
  declare readonly cause: unknown;
  readonly members: Record<string, unknown>;
  constructor(cause: unknown, members: Record<string, unknown>, prefix: string) {
    super(`${prefix}${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.members = members;
  }
}
LocatedError.prototype.name = 'LocatedError';

interface ValidationIssue {
  instancePath?: string;
  schemaPath?: string;
  keyword?: string;
  message?: string;
  params?: Record<string, unknown>;
}

const UNION_BRANCH = /\/anyOf\/\d+(\/|$)/;

/**
 * Ajv-shaped validation issues as `{pointer, detail}`: "unknown property" instead of Ajv's
 * "schema is false", one line for a failed union ("must be one of ...") instead of one per
 * branch.
 */
export function validationErrors(
  issues: readonly ValidationIssue[],
  where: string | undefined,
): { pointer: string; in?: string; detail: string }[] {
  const out: { pointer: string; in?: string; detail: string }[] = [];
  const seen = new Set<string>();
  const push = (pointer: string, detail: string): void => {
    const key = `${pointer}\0${detail}`;
    if (seen.has(key)) return;
    seen.add(key);
    out.push(where === undefined ? { pointer, detail } : { pointer, in: where, detail });
  };
  const byPointer = new Map<string, ValidationIssue[]>();
  for (const issue of issues) {
    const pointer = issue.instancePath ?? '';
    byPointer.set(pointer, [...(byPointer.get(pointer) ?? []), issue]);
  }
  for (const [pointer, group] of byPointer) {
    const branches = group.filter((i) => i.keyword !== 'anyOf');
    const union =
      branches.length > 0 && branches.every((i) => UNION_BRANCH.test(i.schemaPath ?? ''));
    if (union) {
      const consts = branches.filter((b) => b.keyword === 'const');
      push(
        pointer,
        consts.length === branches.length
          ? `must be one of ${consts.map((b) => JSON.stringify(b.params?.allowedValue)).join(', ')}`
          : `must match one of: ${[...new Set(branches.map((b) => b.message ?? b.keyword))].join('; ')}`,
      );
      continue;
    }
    for (const issue of group) {
      if (issue.keyword === 'additionalProperties') {
        const names = issue.params?.additionalProperties;
        const list = Array.isArray(names) ? names : [names];
        for (const name of list) push(`${pointer}/${String(name)}`, 'unknown property');
      } else if (issue.keyword === 'boolean' && issue.message === 'schema is false') {
        push(pointer, 'unknown property');
      } else if (issue.keyword !== 'anyOf' || branches.length === 0) {
        push(pointer, issue.message ?? String(issue.keyword));
      }
    }
  }
  return out;
}

/** Fastify's own error codes, as the table's. */
const FASTIFY_CODES: Readonly<Record<string, string>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'API_BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'API_UNSUPPORTED_MEDIA',
  FST_ERR_CTP_INVALID_JSON_BODY: 'API_BAD_JSON',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'API_BAD_JSON',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'API_BAD_REQUEST',
  FST_ERR_CTP_INVALID_TYPE: 'API_UNSUPPORTED_MEDIA',
  FST_ERR_BAD_URL: 'API_BAD_REQUEST',
  FST_ERR_ASYNC_CONSTRAINT: 'API_BAD_REQUEST',
};

/** Members copied from an error onto its problem, when present. */
const COPIED = [
  'pointer',
  'field',
  'ruleId',
  'set',
  'entry',
  'prefix',
  'canonical',
  'expression',
  'offset',
  'length',
  'expected',
  'filterCode',
  'resource',
  'limit',
  'count',
  'current',
] as const;

/** A problem and whether the error behind it is unexpected (to be logged in full). */
export interface ProblemResult {
  problem: Problem;
  headers: Record<string, string>;
  unexpected: boolean;
}

function codeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Turns any thrown value into the problem the client gets. */
export function toProblem(
  err: unknown,
  request: Pick<FastifyRequest, 'url' | 'id'>,
): ProblemResult {
  let members: Record<string, unknown> = {};
  let headers: Record<string, string> = {};
  let detailPrefix = '';
  let source = err;
  if (err instanceof LocatedError) {
    members = { ...err.members };
    detailPrefix = err.message.slice(0, err.message.length - messageOf(err.cause).length);
    source = err.cause;
  }
  const base = (code: string, detail: string, status?: number): Problem => {
    const kind = PROBLEMS[code];
    const s = status ?? kind?.status ?? 500;
    const title = kind !== undefined && kind.status === s ? kind.title : STATUS_CODES[s];
    return {
      type: problemType(code),
      title: title ?? 'Error',
      status: s,
      detail,
      instance: request.url,
      code,
      requestId: String(request.id),
    };
  };

  const validation = (source as { validation?: unknown } | null)?.validation;
  if (Array.isArray(validation)) {
    const where = (source as { validationContext?: string }).validationContext;
    const errors = validationErrors(validation as ValidationIssue[], where);
    const first = errors[0];
    const detail =
      first === undefined
        ? 'the request does not match the schema'
        : `${where ?? 'request'}${first.pointer === '' ? '' : ` ${first.pointer}`}: ${first.detail}` +
          (errors.length > 1 ? ` (and ${errors.length - 1} more)` : '');
    return {
      problem: { ...base('API_VALIDATION', detail), errors },
      headers,
      unexpected: false,
    };
  }

  let code = codeOf(source);
  if (source instanceof ApiError) {
    members = { ...source.members, ...members };
    headers = source.headers;
  }
  if (code !== undefined && code in FASTIFY_CODES) code = FASTIFY_CODES[code];
  if (code !== undefined && code in PROBLEMS && PROBLEMS[code].status < 500) {
    const problem = base(code, detailPrefix + messageOf(source));
    for (const key of COPIED) {
      const value = (source as Record<string, unknown>)[key];
      if (value !== undefined && !(key in members))
        (problem as Record<string, unknown>)[key] = value;
    }
    return { problem: { ...problem, ...members }, headers, unexpected: false };
  }
  if (code !== undefined && code in PROBLEMS && code !== 'API_INTERNAL') {
    // Server-side conditions the client can act on (retry, call the operator): say which.
    return {
      problem: { ...base(code, detailPrefix + messageOf(source)), ...members },
      headers,
      unexpected: PROBLEMS[code].status === 500,
    };
  }
  // Other 4xx errors of fastify and its plugins: keep their status, say what they said.
  const statusCode = (source as { statusCode?: unknown } | null)?.statusCode;
  if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) {
    if (source instanceof SyntaxError && statusCode === 400) {
      return {
        problem: base('API_BAD_JSON', messageOf(source)),
        headers,
        unexpected: false,
      };
    }
    return {
      problem: base('API_BAD_REQUEST', messageOf(source), statusCode),
      headers,
      unexpected: false,
    };
  }
  return {
    problem: base(
      'API_INTERNAL',
      `the request failed unexpectedly; the server logged it with request id "${String(request.id)}"`,
    ),
    headers,
    unexpected: true,
  };
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
