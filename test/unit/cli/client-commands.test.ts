// The daemon-client commands against a stub API on a Unix socket: the request each one builds,
// what it prints for people and with --json.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { emptyDiff, startApiStub, type ApiStub } from '../../helpers/api-stub.js';
import { runCliWith } from '../../helpers/cli.js';
import { actionCounters } from '../../helpers/memory-controller.js';

const change = { generation: 7, applied: true, diff: emptyDiff() };

let stub: ApiStub;
const run = (...args: string[]) => runCliWith({ env: {} }, '--socket', stub.socket, ...args);
const last = () => stub.requests.at(-1)!;

beforeAll(async () => {
  stub = await startApiStub({
    'POST /v1/attachments': { status: 201, json: change },
    'DELETE /v1/attachments/veth1': { json: change },
    'POST /v1/sets': { status: 201, json: change },
    'POST /v1/sets/blocklist/prefixes': { json: change },
    'DELETE /v1/sets/blocklist/prefixes': { json: change },
    'DELETE /v1/sets/blocklist': { json: change },
    'GET /v1/sets': {
      json: {
        sets: [
          { name: 'blocklist', count: 120000 },
          { name: 'allow', count: 2 },
        ],
      },
    },
    'GET /v1/sets/allow': { json: { name: 'allow', prefixes: ['192.0.2.0/24', '2001:db8::/32'] } },
    'POST /v1/rules': (req) => ({
      status: 201,
      json: { ...change, rule: { id: 'r1', ...(req.json as object) } },
    }),
    'DELETE /v1/rules/r1': (req) => ({
      json: { ...change, applied: req.query.dryRun !== 'true' },
    }),
    'GET /v1/rules': {
      json: {
        rules: [
          { id: 'r1', device: 'veth1', srcSet: 'blocklist', action: 'drop' },
          {
            id: 'dns',
            device: 'veth1',
            priority: 10,
            proto: 'udp',
            dport: 53,
            action: 'ratelimit',
            rate: '1000pps',
          },
        ],
      },
    },
    'GET /v1/stats': {
      json: {
        devices: [
          {
            name: 'veth1',
            device: 'veth1',
            hook: 'xdp',
            ifindex: 7,
            generation: 7,
            actions: actionCounters(),
            events: {},
            histogram: [],
            rules: [{ id: 'r1', position: 0, packets: 1500, bytes: 96000, lastHit: null }],
            limiters: [],
          },
        ],
      },
    },
    'POST /v1/limits': (req) => ({
      status: 201,
      json: { ...change, rule: { id: 'l1', ...(req.json as object) } },
    }),
    'DELETE /v1/limits/l1': { json: change },
    'GET /v1/limits': {
      json: {
        limits: [
          {
            id: 'l1',
            device: 'veth1',
            proto: 'udp',
            dport: 53,
            action: 'ratelimit',
            rate: '1000pps',
            perSource: true,
            passed: 900,
            dropped: 100,
          },
        ],
      },
    },
    'POST /v1/filters': { status: 201, json: { ...change, rule: { id: 'f1' } } },
    'DELETE /v1/filters/f1': { json: change },
    'GET /v1/filters': {
      json: {
        filters: [
          { id: 'f1', device: 'veth1', filter: 'udp and ip[6:2] & 0x1fff != 0', action: 'drop' },
        ],
      },
    },
    'GET /v1/status': {
      json: {
        desiredGeneration: 8,
        appliedGeneration: 7,
        ready: true,
        stateDir: '/var/lib/sluice',
        pinDir: '/sys/fs/bpf/sluice',
        attachments: [
          {
            device: 'veth1',
            hook: 'xdp',
            state: 'attached',
            ifindex: 7,
            error: null,
            appliedGeneration: 7,
          },
          {
            device: 'veth9',
            hook: 'tc-ingress',
            state: 'pending',
            ifindex: null,
            error: null,
            appliedGeneration: null,
          },
        ],
      },
    },
    'GET /v1/devices': {
      json: {
        devices: [
          { name: 'lo', ifindex: 1, up: true, mac: '00:00:00:00:00:00', mtu: 65536 },
          { name: 'veth1', ifindex: 7, up: true, mac: '02:00:00:00:00:01', mtu: 1500 },
          { name: 'veth2', ifindex: 8, up: false, mac: null, mtu: null },
        ],
      },
    },
    'GET /v1/events': {
      events: [
        { event: 'reconcile', data: { type: 'reconcile', generation: 8, ok: true } },
        {
          event: 'device',
          data: { type: 'device', action: 'added', name: 'veth9', ifindex: 12 },
        },
        {
          event: 'attachment',
          data: { type: 'attachment', device: 'veth9', hook: 'tc-ingress', state: 'attached' },
        },
      ],
    },
  });
});
afterAll(async () => {
  await stub.close();
});
beforeEach(() => {
  stub.requests.length = 0;
});

describe('attach and detach', () => {
  it('posts the attachment and reports the generation', async () => {
    const r = await run('attach', 'veth1', '--hook', 'xdp', '--mode', 'generic');
    expect(r).toEqual({ code: 0, stdout: 'attached veth1 (xdp) (generation 7)\n', stderr: '' });
    expect(last()).toMatchObject({
      method: 'POST',
      path: '/v1/attachments',
      query: {},
      json: { device: 'veth1', hook: 'xdp', mode: 'generic' },
    });
  });

  it('sends dryRun=true with --dry-run and prints the ChangeResult with --json', async () => {
    const r = await run('attach', 'veth1', '--dry-run', '--json');
    expect(last().query).toEqual({ dryRun: 'true' });
    expect(JSON.parse(r.stdout)).toEqual(change);
  });

  it('detaches one hook with ?hook=', async () => {
    const r = await run('detach', 'veth1', '--hook', 'tc-egress');
    expect(r.code).toBe(0);
    expect(last()).toMatchObject({
      method: 'DELETE',
      path: '/v1/attachments/veth1',
      query: { hook: 'tc-egress' },
    });
  });

  it('rejects a hook that does not exist as a usage error', async () => {
    const r = await run('attach', 'veth1', '--hook', 'xdp-offload');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatchInlineSnapshot(`
      "sluice: option '--hook <hook>' argument 'xdp-offload' is invalid. Allowed choices are xdp, tc-ingress, tc-egress.
      "
    `);
  });
});

describe('set', () => {
  it('adds prefixes to an existing set', async () => {
    const r = await run('set', 'add', 'blocklist', '10.0.0.0/8', '2001:db8::/32');
    expect(r.stdout).toBe('set blocklist: added 2 prefixes (generation 7)\n');
    expect(stub.requests).toMatchObject([
      {
        method: 'POST',
        path: '/v1/sets/blocklist/prefixes',
        json: { prefixes: ['10.0.0.0/8', '2001:db8::/32'] },
      },
    ]);
  });

  it('creates the set when the daemon does not know it', async () => {
    const r = await run('set', 'add', 'newset', '192.0.2.1');
    expect(r.code).toBe(0);
    expect(stub.requests.map((q) => `${q.method} ${q.path}`)).toEqual([
      'POST /v1/sets/newset/prefixes',
      'POST /v1/sets',
    ]);
    expect(last().json).toEqual({ name: 'newset', prefixes: ['192.0.2.1'] });
  });

  it('refuses a prefix that is not one before asking the daemon', async () => {
    const r = await run('set', 'add', 'blocklist', '10.0.0.0/33');
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('sluice: "10.0.0.0/33" is not an IPv4 or IPv6 address or prefix\n');
    expect(stub.requests).toEqual([]);
  });

  it('removes prefixes, or the whole set without them', async () => {
    await run('set', 'rm', 'blocklist', '10.0.0.0/8');
    expect(last()).toMatchObject({
      method: 'DELETE',
      path: '/v1/sets/blocklist/prefixes',
      json: { prefixes: ['10.0.0.0/8'] },
    });
    const r = await run('set', 'rm', 'blocklist');
    expect(r.stdout).toBe('removed set blocklist (generation 7)\n');
    expect(last()).toMatchObject({ method: 'DELETE', path: '/v1/sets/blocklist', body: '' });
  });

  it('lists sets as a table, and one set as prefixes', async () => {
    expect((await run('set', 'ls')).stdout).toMatchInlineSnapshot(`
      "NAME       PREFIXES
      blocklist    120000
      allow             2
      "
    `);
    expect((await run('set', 'ls', 'allow')).stdout).toBe('192.0.2.0/24\n2001:db8::/32\n');
    expect(JSON.parse((await run('set', 'ls', '--json')).stdout).sets).toHaveLength(2);
  });
});

describe('rule', () => {
  it('turns every match flag into the RuleDoc field', async () => {
    const r = await run(
      'rule',
      'add',
      '--dev',
      'veth1',
      '--hook',
      'tc-ingress',
      '--id',
      'r1',
      '--priority',
      '10',
      '--src',
      '198.51.100.0/24',
      '--dst',
      '192.0.2.0/24',
      '--dst-set',
      'servers',
      '--proto',
      'tcp',
      '--sport',
      '1024-65535',
      '--dport',
      '443',
      '--vlan',
      '100',
      '--tcp-flags',
      'syn,!ack',
      '--filter',
      'ip[8] < 5',
      '--action',
      'drop',
    );
    expect(r).toEqual({ code: 0, stdout: 'added rule r1 (generation 7)\n', stderr: '' });
    expect(last()).toMatchObject({ method: 'POST', path: '/v1/rules' });
    expect(last().json).toEqual({
      device: 'veth1',
      hook: 'tc-ingress',
      id: 'r1',
      priority: 10,
      src: '198.51.100.0/24',
      dst: '192.0.2.0/24',
      dstSet: 'servers',
      proto: 'tcp',
      sport: '1024-65535',
      dport: 443,
      vlan: 100,
      tcpFlags: 'syn,!ack',
      filter: 'ip[8] < 5',
      action: 'drop',
    });
  });

  it('sends rate-limit and redirect parameters', async () => {
    await run(
      'rule',
      'add',
      '--dev',
      'veth1',
      '--proto',
      'icmp',
      '--icmp-type',
      '8/0',
      '--action',
      'ratelimit',
      '--rate',
      '1000pps',
      '--burst',
      '50',
      '--per-source',
    );
    expect(last().json).toEqual({
      device: 'veth1',
      proto: 'icmp',
      icmp: { type: 8, code: 0 },
      action: 'ratelimit',
      rate: '1000pps',
      burst: 50,
      perSource: true,
    });
    await run(
      'rule',
      'add',
      '--dev',
      'veth1',
      '--action',
      'redirect',
      '--to',
      'veth2',
      '--via',
      '02:00:00:00:00:01',
    );
    expect(last().json).toEqual({
      device: 'veth1',
      action: 'redirect',
      to: 'veth2',
      via: '02:00:00:00:00:01',
    });
  });

  it.each([
    [['--dport', '70000'], "option '--dport <port[-port]>' argument '70000' is invalid"],
    [['--sport', '90-80'], "option '--sport <port[-port]>' argument '90-80' is invalid"],
    [['--rate', '10 furlongs'], "option '--rate <rate>' argument '10 furlongs' is invalid"],
    [['--src', '10.0.0.300'], "option '--src <prefix>' argument '10.0.0.300' is invalid"],
    [['--tcp-flags', 'syn,bogus'], "option '--tcp-flags <flags>' argument 'syn,bogus' is invalid"],
  ])('rejects %j as a usage error', async (flags, start) => {
    const r = await run('rule', 'add', '--dev', 'veth1', '--action', 'drop', ...flags);
    expect(r.code).toBe(2);
    expect(r.stderr.startsWith(`sluice: ${start}`)).toBe(true);
    expect(stub.requests).toEqual([]);
  });

  it('says what a ratelimit or redirect rule lacks', async () => {
    const limit = await run('rule', 'add', '--dev', 'veth1', '--action', 'ratelimit');
    expect([limit.code, limit.stderr]).toEqual([
      2,
      'sluice: --action ratelimit needs --rate (1000pps, 10mbit)\n',
    ]);
    const redirect = await run('rule', 'add', '--dev', 'veth1', '--action', 'redirect');
    expect(redirect.stderr).toBe('sluice: --action redirect needs --to DEVICE\n');
  });

  it('removes a rule by id', async () => {
    const r = await run('rule', 'rm', 'r1', '--dry-run');
    expect(last()).toMatchObject({
      method: 'DELETE',
      path: '/v1/rules/r1',
      query: { dryRun: 'true' },
    });
    expect(r.stdout).toBe('no changes\ndry run: nothing applied (removed rule r1)\n');
  });

  it('lists rules with their hits from /v1/stats', async () => {
    const r = await run('rule', 'ls', '--dev', 'veth1');
    expect(stub.requests.map((q) => [q.path, q.query])).toEqual([
      ['/v1/rules', { device: 'veth1' }],
      ['/v1/stats', { device: 'veth1' }],
    ]);
    expect(r.stdout).toMatchInlineSnapshot(`
      "ID   DEVICE  HOOK  PRIO  MATCH           ACTION             PACKETS  BYTES
      r1   veth1   xdp      -  src @blocklist  drop                  1500  96000
      dns  veth1   xdp     10  udp dport 53    ratelimit 1000pps        -      -
      "
    `);
    const json = JSON.parse((await run('rule', 'ls', '--json')).stdout);
    expect(json.rules[0]).toMatchObject({ id: 'r1', packets: 1500, bytes: 96000 });
    expect(json.rules[1]).toMatchObject({ id: 'dns', packets: null });
  });
});

describe('limit', () => {
  it('posts a rule without an action and requires --rate', async () => {
    const r = await run(
      'limit',
      'add',
      '--dev',
      'veth1',
      '--proto',
      'udp',
      '--dport',
      '53',
      '--rate',
      '10mbit',
      '--per-source',
    );
    expect(r.stdout).toBe('added limit l1 (generation 7)\n');
    expect(last()).toMatchObject({
      method: 'POST',
      path: '/v1/limits',
      json: { device: 'veth1', proto: 'udp', dport: 53, rate: '10mbit', perSource: true },
    });
    expect(last().json).not.toHaveProperty('action');
    const missing = await run('limit', 'add', '--dev', 'veth1');
    expect([missing.code, missing.stderr]).toEqual([
      2,
      "sluice: required option '--rate <rate>' not specified\n",
    ]);
  });

  it('removes and lists limits with passed and dropped', async () => {
    await run('limit', 'rm', 'l1');
    expect(last()).toMatchObject({ method: 'DELETE', path: '/v1/limits/l1' });
    expect((await run('limit', 'ls')).stdout).toMatchInlineSnapshot(`
      "ID  DEVICE  HOOK  MATCH            RATE  BURST  PER-SOURCE  PASSED  DROPPED
      l1  veth1   xdp   udp dport 53  1000pps      -  yes            900      100
      "
    `);
  });
});

describe('filter', () => {
  it('posts the joined expression with the action', async () => {
    const r = await run(
      'filter',
      'add',
      '--dev',
      'veth1',
      '--action',
      'drop',
      '--priority',
      '5',
      'udp and',
      'ip[6:2] & 0x1fff != 0',
    );
    expect(r.stdout).toBe('added filter f1 (generation 7)\n');
    expect(last()).toMatchObject({
      method: 'POST',
      path: '/v1/filters',
      json: {
        device: 'veth1',
        action: 'drop',
        priority: 5,
        expression: 'udp and ip[6:2] & 0x1fff != 0',
      },
    });
  });

  it('removes and lists filters', async () => {
    await run('filter', 'rm', 'f1');
    expect(last()).toMatchObject({ method: 'DELETE', path: '/v1/filters/f1' });
    expect((await run('filter', 'ls')).stdout).toMatchInlineSnapshot(`
      "ID  DEVICE  HOOK  PRIO  ACTION  EXPRESSION
      f1  veth1   xdp      -  drop    udp and ip[6:2] & 0x1fff != 0
      "
    `);
  });
});

describe('status and events', () => {
  it('prints generations and the attachment table', async () => {
    expect((await run('status')).stdout).toMatchInlineSnapshot(`
      "generation  desired 8, applied 7 (reconciling)
      ready       yes
      state dir   /var/lib/sluice
      pin dir     /sys/fs/bpf/sluice

      DEVICE  HOOK        STATE     IFINDEX  GENERATION  ERROR
      veth1   xdp         attached        7           7
      veth9   tc-ingress  pending         -           -
      "
    `);
    expect(JSON.parse((await run('status', '--json')).stdout)).toMatchObject({
      desiredGeneration: 8,
    });
  });

  it('lists the devices, with the hooks sluice runs on each', async () => {
    expect((await run('devices')).stdout).toMatchInlineSnapshot(`
      "DEVICE  IFINDEX  STATE  MAC                  MTU  SLUICE
      lo            1  up     00:00:00:00:00:00  65536
      veth1         7  up     02:00:00:00:00:01   1500  xdp
      veth2         8  down   -                      -
      "
    `);
    expect(JSON.parse((await run('devices', '--json')).stdout).devices).toHaveLength(3);
  });

  it('prints one line per server-sent event until the stream ends', async () => {
    const r = await run('events');
    expect(r.code).toBe(0);
    expect(last().headers.accept).toBe('text/event-stream');
    expect(r.stdout.replace(/^\d\d:\d\d:\d\d /gm, 'HH:MM:SS ')).toMatchInlineSnapshot(`
      "HH:MM:SS reconcile generation 8 ok
      HH:MM:SS device veth9 added (ifindex 12)
      HH:MM:SS attachment veth9 tc-ingress attached
      "
    `);
    const json = (await run('events', '--json')).stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(json.map((e) => e.type)).toEqual(['reconcile', 'device', 'attachment']);
  });
});

describe('serve', () => {
  it('hands the daemon its options, the socket resolved like the client does', async () => {
    const seen: unknown[] = [];
    const r = await runCliWith(
      { env: { SLUICE_SOCKET: '/tmp/env.sock' }, serve: async (o) => void seen.push(o) },
      'serve',
      '--listen',
      '127.0.0.1:0',
      '--token-file',
      '/etc/sluice/token',
      '--state-dir',
      '/tmp/state',
      '--pin-dir',
      '/sys/fs/bpf/t',
      '--config',
      'sluice.yaml',
    );
    expect(r.code).toBe(0);
    expect(seen).toEqual([
      {
        socket: '/tmp/env.sock',
        listen: '127.0.0.1:0',
        tokenFile: '/etc/sluice/token',
        stateDir: '/tmp/state',
        pinDir: '/sys/fs/bpf/t',
        config: 'sluice.yaml',
      },
    ]);
    await runCliWith(
      { env: {}, serve: async (o) => void seen.push(o) },
      'serve',
      '--socket',
      '/tmp/s.sock',
    );
    expect(seen[1]).toEqual({ socket: '/tmp/s.sock' });
  });

  it('refuses a TCP listener without a token', async () => {
    const r = await runCliWith({ env: {}, serve: async () => {} }, 'serve', '--listen', ':8080');
    expect([r.code, r.stderr]).toEqual([
      2,
      'sluice: --listen needs --token-file: a TCP listener requires a bearer token\n',
    ]);
  });
});

describe('set load', () => {
  it('streams standard input as text/plain', async () => {
    stub.route('PUT /v1/sets/big', (req) => ({
      json: { ...change, count: req.body.split('\n').filter(Boolean).length },
    }));
    const lines = Array.from({ length: 5000 }, (_, i) => `10.${i >> 8}.${i & 255}.0/24\n`);
    const r = await runCliWith(
      { env: {}, stdin: Readable.from(lines) },
      '--socket',
      stub.socket,
      'set',
      'load',
      'big',
      '--file',
      '-',
    );
    expect(r.stdout).toBe('set big: loaded 5000 prefixes (generation 7)\n');
    expect(last().headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(last().headers['transfer-encoding']).toBe('chunked');
    expect(last().body).toBe(lines.join(''));
  });

  it('streams a file as text/plain, with --dry-run', async () => {
    stub.route('PUT /v1/sets/blocklist', (req) => ({
      json: { ...change, applied: false, count: req.body.split('\n').filter(Boolean).length },
    }));
    const dir = await mkdtemp(join(tmpdir(), 'sluice-set-load-'));
    try {
      const path = join(dir, 'prefixes.txt');
      await writeFile(path, '10.0.0.0/8\n# comment\n2001:db8::/32\n');
      const r = await run('set', 'load', 'blocklist', '--file', path, '--dry-run', '--json');
      expect(last()).toMatchObject({
        method: 'PUT',
        path: '/v1/sets/blocklist',
        query: { dryRun: 'true' },
        body: '10.0.0.0/8\n# comment\n2001:db8::/32\n',
      });
      expect(last().headers['content-type']).toBe('text/plain; charset=utf-8');
      expect(JSON.parse(r.stdout)).toMatchObject({ applied: false, count: 3 });
      const missing = await run('set', 'load', 'blocklist', '--file', join(dir, 'absent.txt'));
      expect([missing.code, missing.stderr.replace(dir, '<dir>')]).toEqual([
        1,
        'sluice: read prefixes from "<dir>/absent.txt": no such file\n',
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
