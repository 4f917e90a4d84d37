// The load balancer's routes over the in-memory controller: services and backends added, changed and
// removed, dry runs, URL-encoded keys, problems for bad input and missing objects, the LB part of
// /v1/stats and /metrics, and what /openapi.json says about them.
import { afterEach, describe, expect, test } from 'vitest';

import { expectProblem, stable, testServer, type TestServer } from '../../helpers/api-server.js';
import { lbBackendId } from '../../helpers/memory-controller.js';

let server: TestServer;
afterEach(async () => {
  await server?.app.close();
});

const WEB = '10.0.0.100:80/tcp';
const WEB_PATH = `/v1/lb/services/${encodeURIComponent(WEB)}`;

/** A server with veth0 attached at xdp and the service 10.0.0.100:80/tcp over two backends. */
async function lbServer(): Promise<TestServer> {
  const s = await testServer();
  await s.controller.attach({ device: 'veth0' });
  await s.controller.addService({
    vip: '10.0.0.100',
    port: 80,
    backends: [{ address: '10.1.0.11', weight: 2 }, { address: '10.1.0.12' }],
  });
  return s;
}

const emptyNames = { added: [], removed: [], changed: [] };

describe('services', () => {
  test('lists no services before any is added', async () => {
    server = await testServer();
    const res = await server.app.inject({ url: '/v1/lb/services' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ services: [] });
  });

  test('adds a service (201) and lists it with its defaults and backends', async () => {
    server = await testServer();
    await server.controller.attach({ device: 'veth1' });
    const res = await server.app.inject({
      method: 'POST',
      url: '/v1/lb/services',
      payload: {
        vip: '10.0.0.100',
        port: 80,
        mode: 'nat',
        backends: [{ address: '10.1.0.11', port: 8080, weight: 3, check: 'http:/healthz' }],
      },
    });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toEqual({
      generation: 2,
      applied: true,
      diff: {
        attachments: emptyNames,
        sets: emptyNames,
        rules: emptyNames,
        services: { added: [WEB], removed: [], changed: [] },
      },
    });
    const list = await server.app.inject({ url: '/v1/lb/services' });
    expect(list.json()).toEqual({
      services: [
        {
          key: WEB,
          vip: '10.0.0.100',
          port: 80,
          proto: 'tcp',
          mode: 'nat',
          hash: '5tuple',
          tableSize: 65537,
          devices: ['veth1@xdp'],
          packets: 0,
          bytes: 0,
          newFlows: 0,
          activeFlows: 0,
          backends: [
            {
              address: '10.1.0.11',
              port: 8080,
              weight: 3,
              drain: false,
              check: 'http:/healthz',
              health: 'unknown',
              state: 'active',
              tableShare: 1,
              trafficShare: 0,
              packets: 0,
              bytes: 0,
              newFlows: 0,
              activeFlows: 0,
            },
          ],
        },
      ],
    });
  });

  test('a dry run answers 200 with the diff and adds nothing', async () => {
    server = await testServer();
    const res = await server.app.inject({
      method: 'POST',
      url: '/v1/lb/services?dryRun=true',
      payload: { vip: '2001:db8::1', port: 443 },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({
      generation: 0,
      applied: false,
      diff: { services: { added: ['[2001:db8::1]:443/tcp'] } },
    });
    expect(server.controller.applied).toBe(0);
    expect((await server.app.inject({ url: '/v1/lb/services' })).json()).toEqual({ services: [] });
  });

  test('refuses a service that exists with 409', async () => {
    server = await lbServer();
    const res = await server.app.inject({
      method: 'POST',
      url: '/v1/lb/services',
      payload: { vip: '10.0.0.100', port: 80, proto: 'tcp' },
    });
    expect(stable(expectProblem(res, 409, 'CONFIG_CONFLICT'))).toMatchInlineSnapshot(`
      {
        "code": "CONFIG_CONFLICT",
        "detail": "add service "10.0.0.100:80/tcp": the service exists",
        "instance": "/v1/lb/services",
        "status": 409,
        "title": "Conflict",
        "type": "urn:sluice:problem:config-conflict",
      }
    `);
  });

  test('the same VIP and port with another protocol is another service', async () => {
    server = await lbServer();
    const res = await server.app.inject({
      method: 'POST',
      url: '/v1/lb/services',
      payload: { vip: '10.0.0.100', port: 80, proto: 'udp' },
    });
    expect(res.statusCode).toBe(201);
    const list = (await server.app.inject({ url: '/v1/lb/services' })).json();
    expect(list.services.map((s: { key: string }) => s.key)).toEqual([WEB, '10.0.0.100:80/udp']);
  });

  test.each([
    [{ vip: '10.0.0.100' }, ''],
    [{ vip: '10.0.0.100', port: 70000 }, '/port'],
    [{ vip: '10.0.0.100', port: 80, mode: 'dnat' }, '/mode'],
    [{ vip: '10.0.0.100', port: 80, weight: 2 }, '/weight'],
    [
      { vip: '10.0.0.100', port: 80, backends: [{ address: '10.1.0.11', weight: -1 }] },
      '/backends/0/weight',
    ],
  ])('answers %j with a 400 schema problem at %j', async (payload: object, pointer: string) => {
    server = await testServer();
    const res = await server.app.inject({ method: 'POST', url: '/v1/lb/services', payload });
    const problem = expectProblem(res, 400, 'API_VALIDATION');
    expect(problem.errors).toContainEqual(expect.objectContaining({ pointer, in: 'body' }));
    expect(server.controller.applied).toBe(0);
  });

  test('answers a VIP that is not an address with a 422 pointing at it', async () => {
    server = await testServer();
    const res = await server.app.inject({
      method: 'POST',
      url: '/v1/lb/services',
      payload: { vip: 'www.example.com', port: 80 },
    });
    expect(stable(expectProblem(res, 422, 'CONFIG_INVALID'))).toMatchInlineSnapshot(`
      {
        "code": "CONFIG_INVALID",
        "detail": "/services/0/vip: "www.example.com" is not an IPv4 or IPv6 address",
        "instance": "/v1/lb/services",
        "pointer": "/services/0/vip",
        "status": 422,
        "title": "Invalid desired state",
        "type": "urn:sluice:problem:config-invalid",
      }
    `);
  });

  test("answers a backend's bad health check with a 422 pointing into the body", async () => {
    server = await testServer();
    const res = await server.app.inject({
      method: 'POST',
      url: '/v1/lb/services',
      payload: {
        vip: '10.0.0.100',
        port: 80,
        backends: [{ address: '10.1.0.11' }, { address: '10.1.0.12', check: 'http:healthz' }],
      },
    });
    expect(stable(expectProblem(res, 422, 'CONFIG_INVALID'))).toMatchInlineSnapshot(`
      {
        "code": "CONFIG_INVALID",
        "detail": "/backends/1/check: check "http:healthz": the path must start with "/"",
        "instance": "/v1/lb/services",
        "pointer": "/backends/1/check",
        "status": 422,
        "title": "Invalid desired state",
        "type": "urn:sluice:problem:config-invalid",
      }
    `);
  });

  test('reads one service by its URL-encoded key, "VIP:PORT" meaning tcp', async () => {
    server = await lbServer();
    for (const key of [WEB, '10.0.0.100:80']) {
      const res = await server.app.inject({
        url: `/v1/lb/services/${encodeURIComponent(key)}`,
      });
      expect(res.statusCode, key).toBe(200);
      expect(res.json()).toMatchObject({ key: WEB, devices: ['veth0@xdp'] });
      expect(
        res
          .json()
          .backends.map((b: { address: string; tableShare: number }) => [b.address, b.tableShare]),
      ).toEqual([
        ['10.1.0.11', 2 / 3],
        ['10.1.0.12', 1 / 3],
      ]);
    }
  });

  test('finds an IPv6 service by any spelling of its address', async () => {
    server = await testServer();
    await server.controller.addService({ vip: '2001:db8::1', port: 443 });
    const res = await server.app.inject({
      url: `/v1/lb/services/${encodeURIComponent('[2001:DB8:0::1]:443/tcp')}`,
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ key: '[2001:db8::1]:443/tcp', vip: '2001:db8::1' });
  });

  test('answers a service that does not exist with 404', async () => {
    server = await lbServer();
    const res = await server.app.inject({
      url: `/v1/lb/services/${encodeURIComponent('10.0.0.100:80/udp')}`,
    });
    expect(stable(expectProblem(res, 404, 'CONFIG_NOT_FOUND'))).toMatchInlineSnapshot(`
      {
        "code": "CONFIG_NOT_FOUND",
        "detail": "service "10.0.0.100:80/udp" does not exist",
        "instance": "/v1/lb/services/10.0.0.100%3A80%2Fudp",
        "status": 404,
        "title": "Not found",
        "type": "urn:sluice:problem:config-not-found",
      }
    `);
  });

  test.each([
    ['10.0.0.100', 'no port'],
    ['10.0.0.100:80/icmp', 'a protocol the balancer does not take'],
    ['10.0.0.300:80', 'no address'],
    ['10.0.0.100:99999', 'a port out of range'],
  ])('answers the key %j (%s) with a 400 naming the parameter', async (key, _what) => {
    server = await lbServer();
    for (const [method, url] of [
      ['GET', `/v1/lb/services/${encodeURIComponent(key)}`],
      ['DELETE', `/v1/lb/services/${encodeURIComponent(key)}`],
      ['DELETE', `/v1/lb/services/${encodeURIComponent(key)}/backends/10.1.0.11`],
    ] as const) {
      const res = await server.app.inject({ method, url });
      const problem = expectProblem(res, 400, 'API_VALIDATION');
      expect(problem.errors).toEqual([
        { pointer: '/service', in: 'params', detail: expect.any(String) },
      ]);
    }
  });

  test('says what is wrong with a key', async () => {
    server = await lbServer();
    const res = await server.app.inject({ url: '/v1/lb/services/10.0.0.100' });
    expect(stable(expectProblem(res, 400, 'API_VALIDATION'))).toMatchInlineSnapshot(`
      {
        "code": "API_VALIDATION",
        "detail": "params /service: service "10.0.0.100": expected VIP:PORT[/PROTO], e.g. 10.0.0.100:80/tcp or [2001:db8::1]:443",
        "errors": [
          {
            "detail": "service "10.0.0.100": expected VIP:PORT[/PROTO], e.g. 10.0.0.100:80/tcp or [2001:db8::1]:443",
            "in": "params",
            "pointer": "/service",
          },
        ],
        "instance": "/v1/lb/services/10.0.0.100",
        "status": 400,
        "title": "Request does not match the schema",
        "type": "urn:sluice:problem:api-validation",
      }
    `);
  });

  test('removes a service: a dry run first, then for real, then 404', async () => {
    server = await lbServer();
    const dry = await server.app.inject({ method: 'DELETE', url: `${WEB_PATH}?dryRun=true` });
    expect(dry.statusCode).toBe(200);
    expect(dry.json()).toMatchObject({
      applied: false,
      diff: { services: { added: [], removed: [WEB], changed: [] } },
    });
    expect((await server.app.inject({ url: WEB_PATH })).statusCode).toBe(200);
    const res = await server.app.inject({ method: 'DELETE', url: WEB_PATH });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ applied: true, diff: { services: { removed: [WEB] } } });
    expect(server.controller.config().config.services).toBeUndefined();
    expectProblem(
      await server.app.inject({ method: 'DELETE', url: WEB_PATH }),
      404,
      'CONFIG_NOT_FOUND',
    );
  });

  test('GET /v1/config carries the services, with the defaults filled in', async () => {
    server = await lbServer();
    const res = await server.app.inject({ url: '/v1/config' });
    expect(res.json().services).toEqual([
      {
        vip: '10.0.0.100',
        port: 80,
        proto: 'tcp',
        mode: 'dsr',
        hash: '5tuple',
        backends: [{ address: '10.1.0.11', weight: 2 }, { address: '10.1.0.12' }],
      },
    ]);
  });
});

describe('backends', () => {
  test('adds a backend (201) and predicts what moves', async () => {
    server = await lbServer();
    server.controller.lbFlows.set(WEB, 48);
    const res = await server.app.inject({
      method: 'POST',
      url: `${WEB_PATH}/backends`,
      payload: { address: '10.1.0.13', weight: 1, check: 'tcp' },
    });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toEqual({
      generation: 3,
      applied: true,
      diff: {
        attachments: emptyNames,
        sets: emptyNames,
        rules: emptyNames,
        services: { added: [], removed: [], changed: [WEB] },
      },
      lb: [{ service: WEB, movedShare: 0.25, flows: 48, flowsMoved: 12 }],
    });
    const view = (await server.app.inject({ url: WEB_PATH })).json();
    expect(view.backends.map((b: { address: string }) => b.address)).toEqual([
      '10.1.0.11',
      '10.1.0.12',
      '10.1.0.13',
    ]);
    expect(view.backends[2]).toMatchObject({ check: 'tcp', health: 'unknown', tableShare: 0.25 });
  });

  test('a dry run of a backend answers 200 with the prediction and adds nothing', async () => {
    server = await lbServer();
    const res = await server.app.inject({
      method: 'POST',
      url: `${WEB_PATH}/backends?dryRun=true`,
      payload: { address: '10.1.0.13', weight: 3 },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({
      applied: false,
      generation: 2,
      lb: [{ service: WEB, movedShare: 0.5, flows: 0, flowsMoved: 0 }],
    });
    const view = (await server.app.inject({ url: WEB_PATH })).json();
    expect(view.backends).toHaveLength(2);
  });

  test('refuses a backend that exists (409) and one of a missing service (404)', async () => {
    server = await lbServer();
    const taken = await server.app.inject({
      method: 'POST',
      url: `${WEB_PATH}/backends`,
      payload: { address: '10.1.0.12', weight: 5 },
    });
    expect(stable(expectProblem(taken, 409, 'CONFIG_CONFLICT'))).toMatchInlineSnapshot(`
      {
        "code": "CONFIG_CONFLICT",
        "detail": "add backend "10.1.0.12" to service "10.0.0.100:80/tcp": the backend exists",
        "instance": "/v1/lb/services/10.0.0.100%3A80%2Ftcp/backends",
        "status": 409,
        "title": "Conflict",
        "type": "urn:sluice:problem:config-conflict",
      }
    `);
    const missing = await server.app.inject({
      method: 'POST',
      url: `/v1/lb/services/${encodeURIComponent('10.0.0.200:80')}/backends`,
      payload: { address: '10.1.0.12' },
    });
    expect(stable(expectProblem(missing, 404, 'CONFIG_NOT_FOUND'))).toMatchInlineSnapshot(`
      {
        "code": "CONFIG_NOT_FOUND",
        "detail": "add backend: service "10.0.0.200:80/tcp" does not exist",
        "instance": "/v1/lb/services/10.0.0.200%3A80/backends",
        "status": 404,
        "title": "Not found",
        "type": "urn:sluice:problem:config-not-found",
      }
    `);
  });

  test("refuses a backend's bad check with a 422 at /check, and a bad body with a 400", async () => {
    server = await lbServer();
    const check = await server.app.inject({
      method: 'POST',
      url: `${WEB_PATH}/backends`,
      payload: { address: '10.1.0.13', check: 'ftp' },
    });
    expect(stable(expectProblem(check, 422, 'CONFIG_INVALID'))).toMatchInlineSnapshot(`
      {
        "code": "CONFIG_INVALID",
        "detail": "/check: check "ftp": unknown check type "ftp"; expected tcp, http, https, udp or icmp",
        "instance": "/v1/lb/services/10.0.0.100%3A80%2Ftcp/backends",
        "pointer": "/check",
        "status": 422,
        "title": "Invalid desired state",
        "type": "urn:sluice:problem:config-invalid",
      }
    `);
    const body = await server.app.inject({
      method: 'POST',
      url: `${WEB_PATH}/backends`,
      payload: { address: '10.1.0.13', weight: 70000 },
    });
    expect(expectProblem(body, 400, 'API_VALIDATION').errors).toEqual([
      { pointer: '/weight', in: 'body', detail: expect.any(String) },
    ]);
  });

  test('changes weight, drain and check with PATCH; null removes the check', async () => {
    server = await lbServer();
    const url = `${WEB_PATH}/backends/10.1.0.12`;
    const weight = await server.app.inject({ method: 'PATCH', url, payload: { weight: 2 } });
    expect(weight.statusCode).toBe(200);
    expect(weight.json()).toMatchObject({
      applied: true,
      diff: { services: { changed: [WEB] } },
      lb: [{ service: WEB, movedShare: expect.closeTo(1 / 6, 5) }],
    });
    await server.app.inject({ method: 'PATCH', url, payload: { check: 'http:/healthz' } });
    let view = (await server.app.inject({ url: WEB_PATH })).json();
    expect(view.backends[1]).toMatchObject({ weight: 2, check: 'http:/healthz', tableShare: 0.5 });

    const drain = await server.app.inject({
      method: 'PATCH',
      url,
      payload: { drain: true, check: null },
    });
    expect(drain.json().lb).toEqual([{ service: WEB, movedShare: 0.5, flows: 0, flowsMoved: 0 }]);
    view = (await server.app.inject({ url: WEB_PATH })).json();
    expect(view.backends[1]).toMatchObject({
      drain: true,
      state: 'draining',
      check: null,
      health: 'unchecked',
      tableShare: 0,
    });
    expect(server.controller.config().config.services?.[0].backends?.[1]).toEqual({
      address: '10.1.0.12',
      weight: 2,
      drain: true,
    });
  });

  test('a PATCH that changes no slot carries no prediction', async () => {
    server = await lbServer();
    const res = await server.app.inject({
      method: 'PATCH',
      url: `${WEB_PATH}/backends/10.1.0.11`,
      payload: { check: 'icmp' },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).not.toHaveProperty('lb');
    expect(res.json().diff.services).toEqual({ added: [], removed: [], changed: [WEB] });
  });

  test('refuses an empty or unknown PATCH with a 400 and a missing backend with 404', async () => {
    server = await lbServer();
    const url = `${WEB_PATH}/backends/10.1.0.12`;
    expectProblem(
      await server.app.inject({ method: 'PATCH', url, payload: {} }),
      400,
      'API_VALIDATION',
    );
    const unknown = await server.app.inject({
      method: 'PATCH',
      url,
      payload: { address: '10.1.0.13' },
    });
    expect(expectProblem(unknown, 400, 'API_VALIDATION').errors).toEqual([
      { pointer: '/address', in: 'body', detail: 'unknown property' },
    ]);
    const missing = await server.app.inject({
      method: 'PATCH',
      url: `${WEB_PATH}/backends/10.1.0.99`,
      payload: { weight: 1 },
    });
    expect(stable(expectProblem(missing, 404, 'CONFIG_NOT_FOUND'))).toMatchInlineSnapshot(`
      {
        "code": "CONFIG_NOT_FOUND",
        "detail": "set backend: backend "10.1.0.99" of service "10.0.0.100:80/tcp" does not exist",
        "instance": "/v1/lb/services/10.0.0.100%3A80%2Ftcp/backends/10.1.0.99",
        "status": 404,
        "title": "Not found",
        "type": "urn:sluice:problem:config-not-found",
      }
    `);
    const bad = await server.app.inject({
      method: 'PATCH',
      url: `${WEB_PATH}/backends/${encodeURIComponent('10.1.0.x')}`,
      payload: { weight: 1 },
    });
    expect(expectProblem(bad, 400, 'API_VALIDATION').errors).toEqual([
      { pointer: '/backend', in: 'params', detail: expect.any(String) },
    ]);
  });

  test('names an IPv6 backend with its own port by "[v6]:PORT", URL-encoded', async () => {
    server = await testServer();
    await server.controller.addService({
      vip: '2001:db8::100',
      port: 80,
      mode: 'nat',
      backends: [{ address: '2001:db8::b', port: 8080 }, { address: '2001:db8::c' }],
    });
    const service = `/v1/lb/services/${encodeURIComponent('[2001:db8::100]:80')}`;
    const res = await server.app.inject({
      method: 'PATCH',
      url: `${service}/backends/${encodeURIComponent('[2001:DB8::B]:8080')}`,
      payload: { weight: 3 },
    });
    expect(res.statusCode, res.body).toBe(200);
    const removed = await server.app.inject({
      method: 'DELETE',
      url: `${service}/backends/${encodeURIComponent('2001:db8::c')}`,
    });
    expect(removed.statusCode).toBe(200);
    const view = (await server.app.inject({ url: service })).json();
    expect(view.backends).toMatchObject([
      { address: '2001:db8::b', port: 8080, weight: 3, tableShare: 1 },
    ]);
  });

  test('removes a backend: a dry run changes nothing, then it is gone', async () => {
    server = await lbServer();
    const url = `${WEB_PATH}/backends/10.1.0.11`;
    const dry = await server.app.inject({ method: 'DELETE', url: `${url}?dryRun=true` });
    expect(dry.json()).toMatchObject({
      applied: false,
      lb: [{ service: WEB, movedShare: expect.closeTo(2 / 3, 5) }],
    });
    expect((await server.app.inject({ url: WEB_PATH })).json().backends).toHaveLength(2);
    const res = await server.app.inject({ method: 'DELETE', url });
    expect(res.statusCode).toBe(200);
    expect((await server.app.inject({ url: WEB_PATH })).json().backends).toMatchObject([
      { address: '10.1.0.12', tableShare: 1 },
    ]);
    expectProblem(await server.app.inject({ method: 'DELETE', url }), 404, 'CONFIG_NOT_FOUND');
  });
});

describe('live figures', () => {
  test('GET /v1/stats carries lb only while services are configured', async () => {
    server = await testServer();
    await server.controller.attach({ device: 'veth0' });
    expect((await server.app.inject({ url: '/v1/stats' })).json()).not.toHaveProperty('lb');

    await server.controller.addService({
      vip: '10.0.0.100',
      port: 80,
      backends: [{ address: '10.1.0.11', check: 'tcp' }, { address: '10.1.0.12' }],
    });
    server.controller.lbCounters.set(lbBackendId(WEB, '10.1.0.11'), {
      packets: 300,
      bytes: 30000,
      newFlows: 3,
      activeFlows: 2,
    });
    server.controller.lbCounters.set(lbBackendId(WEB, '10.1.0.12'), { packets: 100, bytes: 9000 });
    server.controller.lbHealth.set(lbBackendId(WEB, '10.1.0.11'), 'up');
    server.controller.lbEvents.flowHit = 396;
    server.controller.lbEvents.flowMiss = 4;
    server.controller.lbFibFailures.no_neigh = 1;
    const res = await server.app.inject({ url: '/v1/stats' });
    expect(res.statusCode).toBe(200);
    const { lb } = res.json();
    expect(lb.events).toMatchObject({ flowHit: 396, flowMiss: 4, nonSynMiss: 0 });
    expect(lb.fibFailures).toEqual({ no_neigh: 1 });
    expect(lb.services).toMatchObject([
      {
        key: WEB,
        packets: 400,
        bytes: 39000,
        newFlows: 3,
        activeFlows: 2,
        backends: [
          { address: '10.1.0.11', health: 'up', trafficShare: 0.75, packets: 300 },
          { address: '10.1.0.12', health: 'unchecked', trafficShare: 0.25, packets: 100 },
        ],
      },
    ]);
  });

  test('a backend failing its check is down and leaves the table to the others', async () => {
    server = await lbServer();
    server.controller.lbHealth.set(lbBackendId(WEB, '10.1.0.11'), 'down');
    const view = (await server.app.inject({ url: WEB_PATH })).json();
    expect(view.backends).toMatchObject([
      { address: '10.1.0.11', health: 'down', state: 'down', tableShare: 0 },
      { address: '10.1.0.12', state: 'active', tableShare: 1 },
    ]);
  });

  test('/metrics mirrors services, backends, health and the balancer events', async () => {
    server = await testServer();
    await server.controller.addService({
      vip: '10.0.0.100',
      port: 80,
      mode: 'nat',
      backends: [
        { address: '10.1.0.11', weight: 2, check: 'tcp' },
        { address: '10.1.0.12', port: 8080, check: 'tcp' },
        { address: '10.1.0.13' },
      ],
    });
    server.controller.lbCounters.set(lbBackendId(WEB, '10.1.0.11'), {
      packets: 7,
      bytes: 700,
      newFlows: 2,
      activeFlows: 1,
    });
    server.controller.lbHealth.set(lbBackendId(WEB, '10.1.0.11'), 'up');
    server.controller.lbHealth.set(lbBackendId(WEB, '10.1.0.12:8080'), 'down');
    server.controller.lbEvents.nonSynMiss = 5;
    const res = await server.app.inject({ url: '/metrics' });
    const lines = res.body.split('\n').filter((l) => l.startsWith('sluice_lb_'));
    expect(lines).toMatchInlineSnapshot(`
      [
        "sluice_lb_service_packets_total{service="10.0.0.100:80/tcp"} 7",
        "sluice_lb_service_bytes_total{service="10.0.0.100:80/tcp"} 700",
        "sluice_lb_service_new_flows_total{service="10.0.0.100:80/tcp"} 2",
        "sluice_lb_service_active_flows{service="10.0.0.100:80/tcp"} 1",
        "sluice_lb_backend_packets_total{service="10.0.0.100:80/tcp",backend="10.1.0.11"} 7",
        "sluice_lb_backend_packets_total{service="10.0.0.100:80/tcp",backend="10.1.0.12:8080"} 0",
        "sluice_lb_backend_packets_total{service="10.0.0.100:80/tcp",backend="10.1.0.13"} 0",
        "sluice_lb_backend_bytes_total{service="10.0.0.100:80/tcp",backend="10.1.0.11"} 700",
        "sluice_lb_backend_bytes_total{service="10.0.0.100:80/tcp",backend="10.1.0.12:8080"} 0",
        "sluice_lb_backend_bytes_total{service="10.0.0.100:80/tcp",backend="10.1.0.13"} 0",
        "sluice_lb_backend_new_flows_total{service="10.0.0.100:80/tcp",backend="10.1.0.11"} 2",
        "sluice_lb_backend_new_flows_total{service="10.0.0.100:80/tcp",backend="10.1.0.12:8080"} 0",
        "sluice_lb_backend_new_flows_total{service="10.0.0.100:80/tcp",backend="10.1.0.13"} 0",
        "sluice_lb_backend_active_flows{service="10.0.0.100:80/tcp",backend="10.1.0.11"} 1",
        "sluice_lb_backend_active_flows{service="10.0.0.100:80/tcp",backend="10.1.0.12:8080"} 0",
        "sluice_lb_backend_active_flows{service="10.0.0.100:80/tcp",backend="10.1.0.13"} 0",
        "sluice_lb_backend_up{service="10.0.0.100:80/tcp",backend="10.1.0.11"} 1",
        "sluice_lb_backend_up{service="10.0.0.100:80/tcp",backend="10.1.0.12:8080"} 0",
        "sluice_lb_backend_weight{service="10.0.0.100:80/tcp",backend="10.1.0.11"} 2",
        "sluice_lb_backend_weight{service="10.0.0.100:80/tcp",backend="10.1.0.12:8080"} 1",
        "sluice_lb_backend_weight{service="10.0.0.100:80/tcp",backend="10.1.0.13"} 1",
        "sluice_lb_events_total{event="flowHit"} 0",
        "sluice_lb_events_total{event="flowMiss"} 0",
        "sluice_lb_events_total{event="nonSynMiss"} 5",
        "sluice_lb_events_total{event="insertCap"} 0",
        "sluice_lb_events_total{event="noBackend"} 0",
        "sluice_lb_events_total{event="fibFail"} 0",
      ]
    `);
    expect(res.body).not.toMatch(/cpu=|addr|src=|dst=/);

    // A later scrape sees the new totals, not sums of scrapes.
    server.controller.lbCounters.set(lbBackendId(WEB, '10.1.0.11'), { packets: 9 });
    await new Promise((r) => setTimeout(r, 300));
    const again = await server.app.inject({ url: '/metrics' });
    expect(again.body).toContain(
      'sluice_lb_backend_packets_total{service="10.0.0.100:80/tcp",backend="10.1.0.11"} 9\n',
    );
  });

  test('/metrics has no LB series without services', async () => {
    server = await testServer();
    const res = await server.app.inject({ url: '/metrics' });
    expect(res.body.split('\n').filter((l) => l.startsWith('sluice_lb_'))).toEqual([]);
  });

  test('/metrics leaves the LB families empty when lbStats() fails', async () => {
    server = await lbServer();
    server.controller.lbStats = () => Promise.reject(new Error('map read failed'));
    const res = await server.app.inject({ url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.body).toContain('# TYPE sluice_lb_events_total counter');
    expect(res.body.split('\n').filter((l) => l.startsWith('sluice_lb_'))).toEqual([]);
  });
});

describe('/openapi.json', () => {
  interface Schema {
    type?: string;
    properties?: Record<string, Schema>;
    required?: string[];
    items?: Schema;
  }

  test('documents diff.services and the lb predictions of every LB change', async () => {
    server = await testServer();
    const doc = (await server.app.inject({ url: '/openapi.json' })).json() as {
      paths: Record<
        string,
        Record<
          string,
          { responses: Record<string, { content?: Record<string, { schema: Schema }> }> }
        >
      >;
    };
    const changes = [
      ['post', '/v1/lb/services', '201'],
      ['delete', '/v1/lb/services/{service}', '200'],
      ['post', '/v1/lb/services/{service}/backends', '201'],
      ['patch', '/v1/lb/services/{service}/backends/{backend}', '200'],
      ['delete', '/v1/lb/services/{service}/backends/{backend}', '200'],
      ['put', '/v1/config', '200'],
    ];
    for (const [method, path, status] of changes) {
      const schema = doc.paths[path][method].responses[status].content!['application/json'].schema;
      expect(Object.keys(schema.properties!.diff.properties!), path).toContain('services');
      expect(schema.properties!.lb.items!.properties).toHaveProperty('movedShare');
      expect(schema.required).not.toContain('lb');
    }
    const stats = doc.paths['/v1/stats'].get.responses['200'].content!['application/json'].schema;
    expect(Object.keys(stats.properties!.lb.properties!)).toEqual([
      'events',
      'fibFailures',
      'services',
      'decap',
    ]);
  });

  test('documents the backend patch with a nullable check', async () => {
    server = await testServer();
    const doc = (await server.app.inject({ url: '/openapi.json' })).json();
    const patch = doc.paths['/v1/lb/services/{service}/backends/{backend}'].patch;
    const body = patch.requestBody.content['application/json'].schema;
    expect(Object.keys(body.properties)).toEqual(['weight', 'drain', 'check']);
    expect(body.properties.check).toMatchObject({ type: 'string', nullable: true });
    expect(body.minProperties).toBe(1);
  });
});
