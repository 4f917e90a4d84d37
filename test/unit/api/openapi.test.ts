// /openapi.json: a well-formed OpenAPI 3 document that lists every route with its schemas.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { testServer, type TestServer } from '../../helpers/api-server.js';

let server: TestServer;

beforeAll(async () => {
  server = await testServer();
});
afterAll(async () => {
  await server.app.close();
});

interface Operation {
  summary?: string;
  parameters?: { in: string; name: string; required?: boolean; schema: unknown }[];
  requestBody?: { content: Record<string, { schema: unknown }> };
  responses: Record<string, { description: string; content?: Record<string, { schema: unknown }> }>;
}

describe('/openapi.json', () => {
  test('is OpenAPI 3 with every route, each with a summary and responses', async () => {
    const res = await server.app.inject({ url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    const doc = res.json() as {
      openapi: string;
      info: { title: string; version: string };
      paths: Record<string, Record<string, Operation>>;
      components: { securitySchemes: Record<string, unknown> };
    };
    expect(doc.openapi).toMatch(/^3\.\d+\.\d+$/);
    expect(doc.info).toMatchObject({ title: 'sluice', version: '1' });
    const listed = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.keys(item).map((method) => `${method.toUpperCase()} ${path}`),
    );
    expect(listed.sort()).toMatchInlineSnapshot(`
      [
        "DELETE /v1/attachments/{device}",
        "DELETE /v1/filters/{id}",
        "DELETE /v1/lb/services/{service}",
        "DELETE /v1/lb/services/{service}/backends/{backend}",
        "DELETE /v1/limits/{id}",
        "DELETE /v1/rules/{id}",
        "DELETE /v1/sets/{name}",
        "DELETE /v1/sets/{name}/prefixes",
        "GET /healthz",
        "GET /metrics",
        "GET /openapi.json",
        "GET /readyz",
        "GET /v1/attachments",
        "GET /v1/config",
        "GET /v1/devices",
        "GET /v1/events",
        "GET /v1/filters",
        "GET /v1/lb/services",
        "GET /v1/lb/services/{service}",
        "GET /v1/limits",
        "GET /v1/rules",
        "GET /v1/rules/{id}",
        "GET /v1/sets",
        "GET /v1/sets/{name}",
        "GET /v1/stats",
        "GET /v1/status",
        "PATCH /v1/lb/services/{service}/backends/{backend}",
        "POST /v1/attachments",
        "POST /v1/compile",
        "POST /v1/filters",
        "POST /v1/lb/services",
        "POST /v1/lb/services/{service}/backends",
        "POST /v1/limits",
        "POST /v1/replay",
        "POST /v1/rules",
        "POST /v1/sets",
        "POST /v1/sets/{name}/prefixes",
        "PUT /v1/config",
        "PUT /v1/sets/{name}",
      ]
    `);
    const methods = new Set(['get', 'put', 'post', 'delete', 'patch', 'head', 'options']);
    for (const [path, item] of Object.entries(doc.paths)) {
      expect(path).toMatch(/^\/[a-z0-9/{}.]*$/);
      for (const name of path.match(/\{[^}]+\}/g) ?? [])
        for (const op of Object.values(item))
          expect(op.parameters).toContainEqual(
            expect.objectContaining({ in: 'path', name: name.slice(1, -1), required: true }),
          );
      for (const [method, op] of Object.entries(item)) {
        expect(methods.has(method)).toBe(true);
        expect(op.summary, `${method} ${path}`).toBeTruthy();
        for (const [status, response] of Object.entries(op.responses)) {
          expect(status).toMatch(/^([1-5]\d\d|[1-5]XX|default)$/);
          expect(typeof response.description).toBe('string');
        }
        if (path !== '/healthz')
          expect(op.responses['4XX'].content).toHaveProperty(['application/problem+json']);
        if (['post', 'put'].includes(method) && path !== '/v1/sets/{name}')
          expect(Object.keys(op.requestBody?.content ?? {})).toEqual(['application/json']);
      }
    }
    // No $ref points nowhere; no TypeBox internals leak.
    const text = res.body;
    expect(text).not.toContain('$ref');
    expect(text).not.toContain('~kind');
  });

  test('documents the streamed set body in three media types', async () => {
    const doc = (await server.app.inject({ url: '/openapi.json' })).json();
    expect(Object.keys(doc.paths['/v1/sets/{name}'].put.requestBody.content)).toEqual([
      'text/plain',
      'application/x-ndjson',
      'application/json',
    ]);
  });

  test('every documented operation is served', async () => {
    const doc = (await server.app.inject({ url: '/openapi.json' })).json();
    for (const [path, item] of Object.entries<Record<string, unknown>>(doc.paths))
      for (const method of Object.keys(item)) {
        const url = path.replace(/\{([^}]+)\}/g, ':$1');
        expect(server.app.hasRoute({ method: method.toUpperCase() as 'GET', url }), url).toBe(true);
      }
  });
});
