// Error responses: the problem table, auth, rate limits, body limits, media types, unexpected errors.
import { Writable } from 'node:stream';

import pino from 'pino';
import { afterEach, describe, expect, test } from 'vitest';

import { PROBLEMS, toProblem } from '../../../api/problems.js';
import { tokenMatches } from '../../../api/plugins/auth.js';
import { createHash } from 'node:crypto';
import { ConfigInvalidError, StateWriteError } from '../../../controller/errors.js';
import {
  expectProblem,
  seededServer,
  stable,
  testServer,
  type TestServer,
} from '../../helpers/api-server.js';

let server: TestServer;
afterEach(async () => {
  await server?.app.close();
});

describe('the problem table', () => {
  test('maps every code to a 4xx or 5xx status and a title', () => {
    for (const [code, kind] of Object.entries(PROBLEMS)) {
      expect(code).toMatch(/^[A-Z]+(_[A-Z]+)*$/);
      expect(kind.status).toBeGreaterThanOrEqual(400);
      expect(kind.status).toBeLessThan(600);
      expect(kind.title.length).toBeGreaterThan(0);
    }
  });

  test('gives ConfigInvalidError its pointer and hides unknown errors', () => {
    const request = { url: '/v1/config', id: 'req-1' };
    expect(
      toProblem(
        new ConfigInvalidError('rule "a": dport 70000 is out of range', {
          pointer: '/rules/0/dport',
        }),
        request,
      ),
    ).toMatchInlineSnapshot(`
      {
        "headers": {},
        "problem": {
          "code": "CONFIG_INVALID",
          "detail": "rule "a": dport 70000 is out of range",
          "instance": "/v1/config",
          "pointer": "/rules/0/dport",
          "requestId": "req-1",
          "status": 422,
          "title": "Invalid desired state",
          "type": "urn:sluice:problem:config-invalid",
        },
        "unexpected": false,
      }
    `);
    const hidden = toProblem(new Error('secret internals'), request);
    expect(hidden.unexpected).toBe(true);
    expect(hidden.problem).toMatchInlineSnapshot(`
      {
        "code": "API_INTERNAL",
        "detail": "the request failed unexpectedly; the server logged it with request id "req-1"",
        "instance": "/v1/config",
        "requestId": "req-1",
        "status": 500,
        "title": "Internal error",
        "type": "urn:sluice:problem:api-internal",
      }
    `);
  });
});

describe('error responses', () => {
  test('schema failures list each error with a pointer', async () => {
    server = await seededServer();
    const res = await server.app.inject({
      method: 'POST',
      url: '/v1/rules',
      payload: { device: 'veth0', action: 'explode', vlan: 5000, extra: true },
    });
    expect(stable(expectProblem(res, 400, 'API_VALIDATION'))).toMatchInlineSnapshot(`
      {
        "code": "API_VALIDATION",
        "detail": "body /extra: unknown property (and 2 more)",
        "errors": [
          {
            "detail": "unknown property",
            "in": "body",
            "pointer": "/extra",
          },
          {
            "detail": "must be <= 4095",
            "in": "body",
            "pointer": "/vlan",
          },
          {
            "detail": "must be one of "drop", "pass", "count", "ratelimit", "redirect"",
            "in": "body",
            "pointer": "/action",
          },
        ],
        "instance": "/v1/rules",
        "status": 400,
        "title": "Request does not match the schema",
        "type": "urn:sluice:problem:api-validation",
      }
    `);
  });

  test('querystring values are converted but checked', async () => {
    server = await seededServer();
    const res = await server.app.inject({
      method: 'POST',
      url: '/v1/attachments?dryRun=maybe',
      payload: { device: 'veth1' },
    });
    expect(expectProblem(res, 400, 'API_VALIDATION').errors).toMatchInlineSnapshot(`
      [
        {
          "detail": "must be boolean",
          "in": "querystring",
          "pointer": "/dryRun",
        },
      ]
    `);
  });

  test('a controller failure that is expected keeps its code; an unexpected one is logged', async () => {
    const lines: string[] = [];
    const logger = pino(
      { level: 'info' },
      new Writable({
        write(chunk, _enc, done) {
          lines.push(String(chunk));
          done();
        },
      }),
    );
    server = await seededServer({ logger });
    server.controller.failNext = new StateWriteError('write state file: no space left on device');
    const write = await server.app.inject({
      method: 'POST',
      url: '/v1/attachments',
      payload: { device: 'veth1' },
    });
    expect(expectProblem(write, 503, 'STATE_WRITE').detail).toMatchInlineSnapshot(
      `"write state file: no space left on device"`,
    );
    server.controller.failNext = new TypeError(
      "Cannot read properties of undefined (reading 'fd')",
    );
    const crash = await server.app.inject({
      method: 'POST',
      url: '/v1/attachments',
      payload: { device: 'veth1' },
    });
    const body = expectProblem(crash, 500, 'API_INTERNAL');
    expect(body.detail).not.toContain('fd');
    const logged = lines.map((l) => JSON.parse(l)).find((l) => l.level === 50);
    expect(logged).toMatchObject({
      reqId: body.requestId,
      err: { type: 'TypeError', message: "Cannot read properties of undefined (reading 'fd')" },
    });
    expect(logged.err.stack).toContain('TypeError');
  });

  test('unknown routes are 404 problems', async () => {
    server = await testServer();
    const res = await server.app.inject({ method: 'PATCH', url: '/v1/rules/x' });
    expect(stable(expectProblem(res, 404, 'API_NOT_FOUND'))).toMatchInlineSnapshot(`
      {
        "code": "API_NOT_FOUND",
        "detail": "no route PATCH /v1/rules/x",
        "instance": "/v1/rules/x",
        "status": 404,
        "title": "No such route",
        "type": "urn:sluice:problem:api-not-found",
      }
    `);
  });

  test('bad JSON, an empty JSON body and an unsupported media type are problems', async () => {
    server = await testServer();
    const bad = await server.app.inject({
      method: 'POST',
      url: '/v1/attachments',
      headers: { 'content-type': 'application/json' },
      payload: '{"device": ',
    });
    expectProblem(bad, 400, 'API_BAD_JSON');
    const empty = await server.app.inject({
      method: 'POST',
      url: '/v1/attachments',
      headers: { 'content-type': 'application/json' },
      payload: '',
    });
    expectProblem(empty, 400, 'API_BAD_JSON');
    const xml = await server.app.inject({
      method: 'POST',
      url: '/v1/attachments',
      headers: { 'content-type': 'application/xml' },
      payload: '<device/>',
    });
    expect(stable(expectProblem(xml, 415, 'API_UNSUPPORTED_MEDIA'))).toMatchInlineSnapshot(`
      {
        "code": "API_UNSUPPORTED_MEDIA",
        "detail": "POST /v1/attachments takes no "application/xml" body",
        "instance": "/v1/attachments",
        "status": 415,
        "title": "Unsupported media type",
        "type": "urn:sluice:problem:api-unsupported-media",
      }
    `);
  });

  test('bodies past the limit are 413', async () => {
    server = await testServer({ bodyLimit: 1024, setBodyLimit: 4096 });
    const json = await server.app.inject({
      method: 'POST',
      url: '/v1/sets',
      payload: { name: 'big', prefixes: Array.from({ length: 200 }, (_, i) => `10.0.${i}.0/24`) },
    });
    expect(stable(expectProblem(json, 413, 'API_BODY_TOO_LARGE'))).toMatchInlineSnapshot(`
      {
        "code": "API_BODY_TOO_LARGE",
        "detail": "Request body is too large",
        "instance": "/v1/sets",
        "status": 413,
        "title": "Body too large",
        "type": "urn:sluice:problem:api-body-too-large",
      }
    `);
    const streamed = await server.app.inject({
      method: 'PUT',
      url: '/v1/sets/big',
      headers: { 'content-type': 'text/plain' },
      payload: Array.from({ length: 1000 }, (_, i) => `10.${i >> 8}.${i & 255}.0/24`).join('\n'),
    });
    expect(expectProblem(streamed, 413, 'API_BODY_TOO_LARGE').detail).toMatchInlineSnapshot(
      `"set body exceeds 4096 bytes"`,
    );
    expect(server.controller.config().config.sets).toEqual([]);
  });
});

describe('auth', () => {
  const token = 's3cret-token-0123456789';

  test('every route but /healthz needs the bearer token', async () => {
    server = await seededServer({ token });
    expect((await server.app.inject({ url: '/healthz' })).statusCode).toBe(200);
    for (const url of ['/readyz', '/metrics', '/openapi.json', '/v1/config', '/v1/events']) {
      const res = await server.app.inject({ url });
      expectProblem(res, 401, 'API_UNAUTHORIZED');
      expect(res.headers['www-authenticate']).toBe('Bearer realm="sluice"');
    }
    const missing = await server.app.inject({ url: '/v1/config' });
    expect(stable(expectProblem(missing, 401))).toMatchInlineSnapshot(`
      {
        "code": "API_UNAUTHORIZED",
        "detail": "this route needs "Authorization: Bearer <token>"",
        "instance": "/v1/config",
        "status": 401,
        "title": "Missing or wrong bearer token",
        "type": "urn:sluice:problem:api-unauthorized",
      }
    `);
  });

  test('a wrong or malformed token is 401, the right one passes', async () => {
    server = await seededServer({ token });
    for (const authorization of [
      'Bearer wrong',
      `Bearer ${token}x`,
      `Bearer ${token.slice(0, -1)}`,
      `Basic ${token}`,
      `Bearer`,
      `bearer  ${token} extra`,
      token,
    ]) {
      const res = await server.app.inject({ url: '/v1/config', headers: { authorization } });
      expect(expectProblem(res, 401, 'API_UNAUTHORIZED').detail).toBe(
        authorization === '' ? '' : 'the bearer token is malformed or not the right one',
      );
      expect(res.headers['www-authenticate']).toContain('error="invalid_token"');
    }
    const ok = await server.app.inject({
      url: '/v1/config',
      headers: { authorization: `bearer ${token}` },
    });
    expect(ok.statusCode).toBe(200);
    const write = await server.app.inject({
      method: 'POST',
      url: '/v1/attachments',
      headers: { authorization: `Bearer ${token}` },
      payload: { device: 'veth1' },
    });
    expect(write.statusCode).toBe(201);
  });

  test('compares digests of equal length whatever the token length', () => {
    const expected = createHash('sha256').update(token).digest();
    expect(tokenMatches(token, expected)).toBe(true);
    expect(tokenMatches('', expected)).toBe(false);
    expect(tokenMatches('x'.repeat(10_000), expected)).toBe(false);
  });

  test('an unauthorized write changes nothing', async () => {
    server = await seededServer({ token });
    const before = server.controller.config();
    const res = await server.app.inject({
      method: 'PUT',
      url: '/v1/config',
      headers: { authorization: 'Bearer nope' },
      payload: {},
    });
    expectProblem(res, 401);
    expect(server.controller.config()).toEqual(before);
  });
});

describe('rate limit', () => {
  test('over the limit is 429 with Retry-After; /healthz is not limited', async () => {
    server = await testServer({ rateLimit: { max: 3, timeWindow: 60_000 } });
    for (let i = 0; i < 3; i++)
      expect((await server.app.inject({ url: '/v1/status' })).statusCode).toBe(200);
    const res = await server.app.inject({ url: '/v1/status' });
    const body = expectProblem(res, 429, 'API_RATE_LIMITED');
    expect(res.headers['retry-after']).toBe('60');
    expect(body.detail).toMatchInlineSnapshot(`"rate limit exceeded: retry in 1 minute"`);
    for (let i = 0; i < 5; i++)
      expect((await server.app.inject({ url: '/healthz' })).statusCode).toBe(200);
  });

  test('failed token guesses count against the client', async () => {
    server = await testServer({ token: 't', rateLimit: { max: 2, timeWindow: 60_000 } });
    for (let i = 0; i < 2; i++)
      expectProblem(
        await server.app.inject({ url: '/v1/status', headers: { authorization: 'Bearer x' } }),
        401,
      );
    expectProblem(
      await server.app.inject({ url: '/v1/status', headers: { authorization: 'Bearer t' } }),
      429,
    );
  });
});
