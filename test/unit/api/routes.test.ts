// Every route's happy path over the in-memory controller.
import { afterEach, describe, expect, test } from 'vitest';

import {
  expectProblem,
  seededServer,
  stable,
  testServer,
  type TestServer,
} from '../../helpers/api-server.js';
import { actionCounters } from '../../helpers/memory-controller.js';

let server: TestServer;
afterEach(async () => {
  await server?.app.close();
});

/** A pcap of `n` 60-byte Ethernet frames. */
export function pcap(n: number): string {
  const header = Buffer.alloc(24);
  header.writeUInt32LE(0xa1b2c3d4, 0);
  header.writeUInt16LE(2, 4);
  header.writeUInt16LE(4, 6);
  header.writeUInt32LE(65535, 16);
  header.writeUInt32LE(1, 20);
  const records = Array.from({ length: n }, () => {
    const r = Buffer.alloc(16 + 60);
    r.writeUInt32LE(60, 8);
    r.writeUInt32LE(60, 12);
    return r;
  });
  return Buffer.concat([header, ...records]).toString('base64');
}

describe('health', () => {
  test('answers /healthz and /readyz', async () => {
    server = await testServer();
    const health = await server.app.inject({ url: '/healthz' });
    expect(health.statusCode).toBe(200);
    expect(health.json()).toEqual({ status: 'ok' });
    expect((await server.app.inject({ url: '/readyz' })).json()).toEqual({ ready: true });
  });

  test('reports 503 from /readyz while the controller starts', async () => {
    server = await testServer();
    server.controller.ready = false;
    const res = await server.app.inject({ url: '/readyz' });
    const body = expectProblem(res, 503, 'API_NOT_READY');
    expect(res.headers['retry-after']).toBe('1');
    expect(body.detail).toMatchInlineSnapshot(`"the controller is still starting"`);
  });
});

describe('devices, status, stats', () => {
  test('lists devices', async () => {
    server = await testServer();
    const res = await server.app.inject({ url: '/v1/devices' });
    expect(res.statusCode).toBe(200);
    expect(res.json().devices.map((d: { name: string }) => d.name)).toEqual([
      'lo',
      'veth0',
      'veth1',
    ]);
  });

  test('reports status and stats, stats filtered by device with dates as ISO text', async () => {
    server = await seededServer();
    const lastHit = new Date('2026-01-02T03:04:05.000Z');
    server.controller.counters.set('veth0@xdp', {
      actions: actionCounters({
        pass: { packets: 5, bytes: 300 },
        drop: { packets: 7, bytes: 420 },
      }),
      rules: [{ id: 'r1', position: 0, packets: 7, bytes: 420, lastHit }],
      limiters: [{ id: 'lim', passed: 10, dropped: 3 }],
    });
    const status = await server.app.inject({ url: '/v1/status' });
    expect(status.json()).toMatchObject({
      desiredGeneration: 1,
      ready: true,
      attachments: [{ device: 'veth0', hook: 'xdp', state: 'attached', ifindex: 2 }],
    });
    const stats = await server.app.inject({ url: '/v1/stats?device=veth0' });
    expect(stats.statusCode).toBe(200);
    const [dev] = stats.json().devices;
    expect(dev.actions.drop).toEqual({ packets: 7, bytes: 420 });
    expect(dev.rules[0].lastHit).toBe('2026-01-02T03:04:05.000Z');
    expect((await server.app.inject({ url: '/v1/stats?device=veth1' })).json()).toEqual({
      devices: [],
    });
  });
});

describe('attachments', () => {
  test('attaches, lists with status, detaches', async () => {
    server = await testServer();
    const add = await server.app.inject({
      method: 'POST',
      url: '/v1/attachments',
      payload: { device: 'veth1', hook: 'tc-ingress', defaultAction: 'drop' },
    });
    expect(add.statusCode).toBe(201);
    expect(add.json()).toMatchObject({
      generation: 1,
      applied: true,
      diff: { attachments: { added: ['veth1@tc-ingress'] } },
    });
    await server.app.inject({
      method: 'POST',
      url: '/v1/attachments',
      payload: { device: 'eth9' },
    });
    const list = await server.app.inject({ url: '/v1/attachments' });
    expect(list.json().attachments).toEqual([
      {
        device: 'veth1',
        hook: 'tc-ingress',
        defaultAction: 'drop',
        status: {
          device: 'veth1',
          hook: 'tc-ingress',
          state: 'attached',
          ifindex: 3,
          error: null,
          appliedGeneration: 2,
        },
      },
      {
        device: 'eth9',
        hook: 'xdp',
        status: {
          device: 'eth9',
          hook: 'xdp',
          state: 'pending',
          ifindex: null,
          error: null,
          appliedGeneration: null,
        },
      },
    ]);
    const del = await server.app.inject({
      method: 'DELETE',
      url: '/v1/attachments/veth1?hook=tc-ingress',
    });
    expect(del.statusCode).toBe(200);
    expect(del.json().diff.attachments.removed).toEqual(['veth1@tc-ingress']);
  });

  test('a dry run answers 200 with applied false and changes nothing', async () => {
    server = await testServer();
    const res = await server.app.inject({
      method: 'POST',
      url: '/v1/attachments?dryRun=true',
      payload: { device: 'veth1' },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ generation: 0, applied: false });
    expect(server.controller.config().config.attachments).toEqual([]);
  });

  test('detaching what is not attached is 404', async () => {
    server = await testServer();
    const res = await server.app.inject({ method: 'DELETE', url: '/v1/attachments/veth1' });
    expect(expectProblem(res, 404, 'CONFIG_NOT_FOUND').detail).toMatchInlineSnapshot(
      `"detach "veth1": nothing is attached"`,
    );
  });
});

describe('sets', () => {
  test('creates, lists, reads, adds and removes prefixes, deletes', async () => {
    server = await testServer();
    const create = await server.app.inject({
      method: 'POST',
      url: '/v1/sets',
      payload: { name: 'allow', prefixes: ['10.0.0.0/8', '2001:db8::/32'] },
    });
    expect(create.statusCode).toBe(201);
    expect(create.json()).toMatchObject({ count: 2, diff: { sets: { added: ['allow'] } } });
    expect((await server.app.inject({ url: '/v1/sets' })).json()).toEqual({
      sets: [{ name: 'allow', count: 2 }],
    });
    const add = await server.app.inject({
      method: 'POST',
      url: '/v1/sets/allow/prefixes',
      payload: { prefixes: ['192.0.2.0/24'] },
    });
    expect(add.json().diff.sets.changed).toEqual([{ name: 'allow', added: 1, removed: 0 }]);
    const remove = await server.app.inject({
      method: 'DELETE',
      url: '/v1/sets/allow/prefixes',
      payload: { prefixes: ['10.0.0.0/8'] },
    });
    expect(remove.json().diff.sets.changed).toEqual([{ name: 'allow', added: 0, removed: 1 }]);
    expect((await server.app.inject({ url: '/v1/sets/allow' })).json()).toEqual({
      name: 'allow',
      prefixes: ['2001:db8::/32', '192.0.2.0/24'],
    });
    const del = await server.app.inject({ method: 'DELETE', url: '/v1/sets/allow' });
    expect(del.json().diff.sets.removed).toEqual(['allow']);
    expectProblem(await server.app.inject({ url: '/v1/sets/allow' }), 404, 'CONFIG_NOT_FOUND');
  });

  test('creating a set that exists is 409; deleting a referenced set is 409', async () => {
    server = await seededServer();
    const again = await server.app.inject({
      method: 'POST',
      url: '/v1/sets',
      payload: { name: 'blk', prefixes: [] },
    });
    expect(expectProblem(again, 409, 'CONFIG_CONFLICT').detail).toMatchInlineSnapshot(
      `"set "blk" already exists"`,
    );
    const del = await server.app.inject({ method: 'DELETE', url: '/v1/sets/blk' });
    expect(expectProblem(del, 409, 'CONFIG_CONFLICT').detail).toMatchInlineSnapshot(
      `"remove set "blk": rule "r1" references it"`,
    );
  });

  test('replaces a set from text, NDJSON and JSON bodies', async () => {
    server = await testServer();
    const text = await server.app.inject({
      method: 'PUT',
      url: '/v1/sets/t',
      headers: { 'content-type': 'text/plain; charset=utf-8' },
      payload: '# blocklist\n10.0.0.0/8\n\n  192.0.2.0/24  # docs\r\n2001:db8::/32',
    });
    expect(text.statusCode).toBe(200);
    expect(text.json()).toMatchObject({ count: 3, applied: true });
    expect(server.controller.config().config.sets[0].prefixes).toEqual([
      '10.0.0.0/8',
      '192.0.2.0/24',
      '2001:db8::/32',
    ]);
    const ndjson = await server.app.inject({
      method: 'PUT',
      url: '/v1/sets/t',
      headers: { 'content-type': 'application/x-ndjson' },
      payload: '"10.0.0.0/8"\n{"prefix":"198.51.100.0/24"}\n\n',
    });
    expect(ndjson.json()).toMatchObject({
      count: 2,
      diff: { sets: { changed: [{ name: 't', added: 1, removed: 2 }] } },
    });
    const json = await server.app.inject({
      method: 'PUT',
      url: '/v1/sets/j',
      payload: { prefixes: ['203.0.113.0/24'] },
    });
    expect(json.json()).toMatchObject({ count: 1, diff: { sets: { added: ['j'] } } });
  });

  test('names the line of a bad prefix in a streamed body', async () => {
    server = await testServer();
    const res = await server.app.inject({
      method: 'PUT',
      url: '/v1/sets/t',
      headers: { 'content-type': 'text/plain' },
      payload: '# header\n10.0.0.0/8\n\n10.0.0.1/8\n',
    });
    const body = expectProblem(res, 422, 'PREFIX_INVALID');
    expect(body.line).toBe(4);
    expect(body.detail).toMatchInlineSnapshot(
      `"line 4: set "t": prefixes[1]: prefix "10.0.0.1/8" has host bits set: did you mean "10.0.0.0/8"?"`,
    );
    const nd = await server.app.inject({
      method: 'PUT',
      url: '/v1/sets/t',
      headers: { 'content-type': 'application/x-ndjson' },
      payload: '"10.0.0.0/8"\n[1]\n',
    });
    expect(expectProblem(nd, 400, 'API_SET_LINE').detail).toMatchInlineSnapshot(
      `"line 2: expected a JSON string or {"prefix": "..."}"`,
    );
    expect(server.controller.config().config.sets).toEqual([]);
  });

  test('a dry-run replace reports the count and changes nothing', async () => {
    server = await testServer();
    const res = await server.app.inject({
      method: 'PUT',
      url: '/v1/sets/t?dryRun=true',
      headers: { 'content-type': 'text/plain' },
      payload: '10.0.0.0/8\n10.0.0.0/8\n',
    });
    expect(res.json()).toMatchObject({ count: 1, applied: false, generation: 0 });
    expect(server.controller.applied).toBe(0);
  });
});

describe('rules, limits, filters', () => {
  test('adds, lists, reads and removes rules', async () => {
    server = await seededServer();
    const add = await server.app.inject({
      method: 'POST',
      url: '/v1/rules',
      payload: {
        id: 'web',
        device: 'veth0',
        priority: 10,
        dst: '192.0.2.0/24',
        proto: 'tcp',
        tcpFlags: 'syn,!ack',
        action: 'drop',
      },
    });
    expect(add.statusCode).toBe(201);
    expect(add.json()).toMatchObject({ rule: { id: 'web' }, diff: { rules: { added: ['web'] } } });
    const generated = await server.app.inject({
      method: 'POST',
      url: '/v1/rules',
      payload: { device: 'veth0', proto: 'udp', dport: '1024-65535', action: 'pass' },
    });
    expect(generated.json().rule.id).toMatch(/^~[0-9a-f]{14}$/);
    const list = await server.app.inject({ url: '/v1/rules?device=veth0&hook=xdp' });
    expect(list.json().rules.map((r: { id: string }) => r.id)).toEqual([
      'r1',
      'lim',
      'flt',
      'web',
      generated.json().rule.id,
    ]);
    expect((await server.app.inject({ url: '/v1/rules?device=veth1' })).json()).toEqual({
      rules: [],
    });
    expect((await server.app.inject({ url: '/v1/rules/web' })).json()).toMatchObject({
      id: 'web',
      tcpFlags: 'syn,!ack',
    });
    const del = await server.app.inject({ method: 'DELETE', url: '/v1/rules/web' });
    expect(del.json().diff.rules.removed).toEqual(['web']);
    expectProblem(await server.app.inject({ url: '/v1/rules/web' }), 404, 'CONFIG_NOT_FOUND');
  });

  test('a taken rule id is 409', async () => {
    server = await seededServer();
    const res = await server.app.inject({
      method: 'POST',
      url: '/v1/rules',
      payload: { id: 'r1', device: 'veth0', action: 'pass' },
    });
    expect(expectProblem(res, 409, 'CONFIG_CONFLICT').detail).toMatchInlineSnapshot(
      `"add rule "r1": the id is taken"`,
    );
  });

  test('lists rate limits with their counters, adds and removes one', async () => {
    server = await seededServer();
    server.controller.counters.set('veth0@xdp', {
      limiters: [{ id: 'lim', passed: 10, dropped: 3 }],
    });
    const list = await server.app.inject({ url: '/v1/limits' });
    expect(list.json().limits).toEqual([
      {
        id: 'lim',
        device: 'veth0',
        hook: 'xdp',
        proto: 'udp',
        action: 'ratelimit',
        rate: '1000pps',
        passed: 10,
        dropped: 3,
      },
    ]);
    const add = await server.app.inject({
      method: 'POST',
      url: '/v1/limits',
      payload: {
        id: 'dns',
        device: 'veth0',
        proto: 'udp',
        dport: 53,
        rate: '10kpps',
        perSource: true,
      },
    });
    expect(add.statusCode).toBe(201);
    expect(add.json().rule).toMatchObject({ id: 'dns', action: 'ratelimit', rate: '10kpps' });
    expectProblem(
      await server.app.inject({ method: 'DELETE', url: '/v1/limits/r1' }),
      404,
      'CONFIG_NOT_FOUND',
    );
    const del = await server.app.inject({ method: 'DELETE', url: '/v1/limits/dns' });
    expect(del.json().diff.rules.removed).toEqual(['dns']);
  });

  test('lists filter rules, adds one from an expression, removes it', async () => {
    server = await seededServer();
    expect((await server.app.inject({ url: '/v1/filters' })).json().filters).toEqual([
      { id: 'flt', device: 'veth0', hook: 'xdp', filter: 'udp and dst port 53', action: 'drop' },
    ]);
    const add = await server.app.inject({
      method: 'POST',
      url: '/v1/filters',
      payload: {
        id: 'frag',
        device: 'veth0',
        expression: 'udp and ip[6:2] & 0x1fff != 0',
        action: 'drop',
      },
    });
    expect(add.statusCode).toBe(201);
    expect(add.json().rule).toMatchObject({ id: 'frag', filter: 'udp and ip[6:2] & 0x1fff != 0' });
    expectProblem(
      await server.app.inject({ method: 'DELETE', url: '/v1/filters/r1' }),
      404,
      'CONFIG_NOT_FOUND',
    );
    const del = await server.app.inject({ method: 'DELETE', url: '/v1/filters/frag' });
    expect(del.json().diff.rules.removed).toEqual(['frag']);
  });
});

describe('config', () => {
  test('reads the document with its generation as ETag and replaces it with If-Match', async () => {
    server = await seededServer();
    const get = await server.app.inject({ url: '/v1/config' });
    expect(get.headers.etag).toBe('"1"');
    const doc = get.json();
    expect(doc.version).toBe(1);
    doc.rules = doc.rules.filter((r: { id: string }) => r.id !== 'flt');
    const dry = await server.app.inject({
      method: 'PUT',
      url: '/v1/config?dryRun=true',
      headers: { 'if-match': '"1"' },
      payload: doc,
    });
    expect(dry.statusCode).toBe(200);
    expect(dry.json()).toMatchObject({
      generation: 1,
      applied: false,
      diff: { rules: { removed: ['flt'] } },
    });
    expect(dry.headers.etag).toBeUndefined();
    const put = await server.app.inject({
      method: 'PUT',
      url: '/v1/config',
      headers: { 'if-match': '"1"' },
      payload: doc,
    });
    expect(put.json()).toMatchObject({ generation: 2, applied: true });
    expect(put.headers.etag).toBe('"2"');
    const stale = await server.app.inject({
      method: 'PUT',
      url: '/v1/config',
      headers: { 'if-match': '"1"' },
      payload: doc,
    });
    expect(stale.statusCode).toBe(412);
    const any = await server.app.inject({
      method: 'PUT',
      url: '/v1/config',
      headers: { 'if-match': '*' },
      payload: {},
    });
    expect(any.json().generation).toBe(3);
  });

  test('replays a pcap through the running or a candidate configuration', async () => {
    server = await seededServer();
    const res = await server.app.inject({
      method: 'POST',
      url: '/v1/replay',
      payload: { pcap: pcap(3) },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({
      packets: 3,
      attachments: [{ attachment: 'veth0@xdp', verdicts: { pass: 3 }, changed: 0 }],
    });
    const candidate = await server.app.inject({
      method: 'POST',
      url: '/v1/replay',
      payload: {
        pcap: pcap(2),
        config: { attachments: [{ device: 'veth1', defaultAction: 'drop' }] },
      },
    });
    expect(candidate.json()).toMatchObject({
      packets: 2,
      attachments: [{ attachment: 'veth1@xdp', verdicts: { drop: 2 } }],
    });
  });
});

describe('compile', () => {
  test("prints tcpdump's listings and eBPF", async () => {
    server = await testServer();
    const d = await server.app.inject({
      method: 'POST',
      url: '/v1/compile',
      payload: { expression: 'ip and udp' },
    });
    expect(d.json()).toMatchInlineSnapshot(`
      {
        "instructions": 6,
        "listing": "(000) ldh      [12]
      (001) jeq      #0x800           jt 2	jf 5
      (002) ldb      [23]
      (003) jeq      #0x11            jt 4	jf 5
      (004) ret      #262144
      (005) ret      #0
      ",
      }
    `);
    const dd = await server.app.inject({
      method: 'POST',
      url: '/v1/compile',
      payload: { expression: 'ip', format: 'dd', linkType: 'EN10MB' },
    });
    expect(dd.json().listing).toMatchInlineSnapshot(`
      "{ 0x28, 0, 0, 0x0000000c },
      { 0x15, 0, 1, 0x00000800 },
      { 0x6, 0, 0, 0x00040000 },
      { 0x6, 0, 0, 0x00000000 },
      "
    `);
    const ebpf = await server.app.inject({
      method: 'POST',
      url: '/v1/compile',
      payload: { expression: 'ip', format: 'ebpf' },
    });
    expect(ebpf.json().instructions).toBeGreaterThan(4);
    expect(ebpf.json().listing).toMatch(/^ {3}0: /);
  });

  test('reports a syntax error with its position', async () => {
    server = await testServer();
    const res = await server.app.inject({
      method: 'POST',
      url: '/v1/compile',
      payload: { expression: 'udp and dst port and host 192.0.2.1' },
    });
    const body = stable(expectProblem(res, 400, 'FILTER_SYNTAX'));
    expect(body).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "detail": "unexpected "and" at column 18: expected a port number or name",
        "expected": "a port number or name",
        "expression": "udp and dst port and host 192.0.2.1",
        "instance": "/v1/compile",
        "length": 3,
        "offset": 17,
        "status": 400,
        "title": "Filter expression does not parse",
        "type": "urn:sluice:problem:filter-syntax",
      }
    `);
  });
});
