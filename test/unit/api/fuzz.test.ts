// Random bodies at every write route that /openapi.json lists: never a 5xx, always a problem on 4xx.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { seededServer, type TestServer } from '../../helpers/api-server.js';

let server: TestServer;
let operations: { method: string; path: string; properties: string[]; types: string[] }[] = [];

beforeAll(async () => {
  server = await seededServer();
  const doc = (await server.app.inject({ url: '/openapi.json' })).json();
  operations = [];
  for (const [path, item] of Object.entries<
    Record<
      string,
      {
        requestBody?: {
          content: Record<string, { schema: { properties?: Record<string, unknown> } }>;
        };
      }
    >
  >(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (!['post', 'put', 'delete', 'patch'].includes(method)) continue;
      const content = op.requestBody?.content ?? {};
      operations.push({
        method: method.toUpperCase(),
        path,
        properties: Object.keys(content['application/json']?.schema?.properties ?? {}),
        types: Object.keys(content),
      });
    }
  }
});
afterAll(async () => {
  await server.app.close();
});

/** Values that look like what the schemas take, and what they don't. */
const value = fc.oneof(
  fc.constantFrom(
    'veth0',
    'veth1',
    'blk',
    'r1',
    'lim',
    'drop',
    'ratelimit',
    'tcp',
    'udp',
    '10.0.0.0/8',
    '2001:db8::/32',
    '1000pps',
    'udp and port 53',
    'syn,!ack',
    'xdp',
    '',
    '~x',
    'a/b',
    '10.0.0.100',
    '2001:db8::1',
    'http:/healthz',
    'nat',
  ),
  fc.string(),
  fc.integer({ min: -70000, max: 70000 }),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.oneof(fc.string(), fc.constantFrom('10.0.0.0/8', '192.0.2.1')), { maxLength: 5 }),
  fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }),
);

function bodyFor(properties: string[]) {
  const known =
    properties.length === 0
      ? fc.constant({})
      : fc.record(Object.fromEntries(properties.map((p) => [p, value])), { requiredKeys: [] });
  return fc.oneof(
    known,
    fc
      .tuple(known, fc.string({ minLength: 1, maxLength: 8 }), value)
      .map(([o, k, v]) => ({ ...o, [k]: v })),
    fc.jsonValue({ maxDepth: 3 }),
  );
}

const segment = fc.oneof(
  fc.constantFrom(
    'veth0',
    'blk',
    'r1',
    'lim',
    'flt',
    'nosuch',
    '..',
    '%2F',
    '~x',
    '10.0.0.100%3A80%2Ftcp',
    '%5B2001%3Adb8%3A%3A1%5D%3A443',
    '10.1.0.11',
  ),
  fc.string({ minLength: 1, maxLength: 70 }).map(encodeURIComponent),
);
const query = fc.oneof(
  fc.constant(''),
  fc.constantFrom(
    '?dryRun=true',
    '?dryRun=false',
    '?dryRun=1',
    '?hook=tc-ingress',
    '?hook=zz',
    '?x=1',
  ),
);

describe('fuzzing the write routes', () => {
  test('finds the write routes in /openapi.json', () => {
    expect(operations.map((o) => `${o.method} ${o.path}`).sort()).toMatchInlineSnapshot(`
      [
        "DELETE /v1/attachments/{device}",
        "DELETE /v1/filters/{id}",
        "DELETE /v1/lb/services/{service}",
        "DELETE /v1/lb/services/{service}/backends/{backend}",
        "DELETE /v1/limits/{id}",
        "DELETE /v1/rules/{id}",
        "DELETE /v1/sets/{name}",
        "DELETE /v1/sets/{name}/prefixes",
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
  });

  test('random JSON bodies are answered without a 5xx, 4xx as problems', async () => {
    for (const op of operations) {
      await fc.assert(
        fc.asyncProperty(bodyFor(op.properties), segment, query, async (body, seg, q) => {
          const url = op.path.replace(/\{[^}]+\}/g, seg) + q;
          const res = await server.app.inject({
            method: op.method as 'POST',
            url,
            payload: JSON.stringify(body),
            headers: { 'content-type': 'application/json' },
          });
          expect(
            res.statusCode,
            `${op.method} ${url} ${JSON.stringify(body)}: ${res.body}`,
          ).toBeLessThan(500);
          if (res.statusCode >= 400) {
            expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
            expect(res.json()).toMatchObject({ status: res.statusCode, code: expect.any(String) });
          }
        }),
        { numRuns: 150 },
      );
    }
  });

  test('random text and NDJSON set bodies are answered without a 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.string(),
            fc.constantFrom(
              '10.0.0.0/8',
              '# c',
              '',
              '"1.2.3.4"',
              '{"prefix":"::/0"}',
              '2001:db8::1/32',
            ),
          ),
          { maxLength: 20 },
        ),
        fc.constantFrom('text/plain', 'application/x-ndjson', 'application/json', 'text/csv'),
        async (lines, type) => {
          const res = await server.app.inject({
            method: 'PUT',
            url: '/v1/sets/fz',
            payload: lines.join('\n'),
            headers: { 'content-type': type },
          });
          expect(res.statusCode, res.body).toBeLessThan(500);
          if (res.statusCode >= 400)
            expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
        },
      ),
      { numRuns: 300 },
    );
  });
});
