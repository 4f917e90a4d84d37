// `sluice lb service|backend|ls` against a stub API: the request each command builds (URL-encoded
// keys, bodies, ?dryRun), what it prints for people and with --json, the predictions of what a
// change moves, usage errors (exit 2) before any request; and the LB section of `sluice stats`.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ChangeResult, LbServiceView, Stats } from '../../../controller/contract.js';
import { formatEvent } from '../../../cli/commands/events.js';
import { emptyDiff, startApiStub, type ApiStub } from '../../helpers/api-stub.js';
import { runCliWith } from '../../helpers/cli.js';
import { actionCounters } from '../../helpers/memory-controller.js';

const WEB = '10.0.0.100:80/tcp';
const WEB_PATH = '/v1/lb/services/10.0.0.100%3A80%2Ftcp';

const names = (changed: string[] = [], added: string[] = [], removed: string[] = []) => ({
  added,
  removed,
  changed,
});
const change = (result: Partial<ChangeResult> = {}): ChangeResult => ({
  generation: 7,
  applied: true,
  diff: { ...emptyDiff(), services: names([WEB]) },
  ...result,
});
const moves = [{ service: WEB, movedShare: 0.25, flows: 48, flowsMoved: 12 }];

/** A change route: 201 (or `status`), applied unless ?dryRun=true, with `extra` merged. */
const changeRoute =
  (status: number, extra: Partial<ChangeResult> = {}) =>
  (req: { query: Record<string, string> }) => ({
    status: req.query.dryRun === 'true' ? 200 : status,
    json: change({ applied: req.query.dryRun !== 'true', ...extra }),
  });

const web: LbServiceView = {
  key: WEB,
  vip: '10.0.0.100',
  port: 80,
  proto: 'tcp',
  mode: 'nat',
  hash: '5tuple',
  tableSize: 65537,
  devices: ['veth1@xdp', 'veth2@xdp'],
  packets: 2000,
  bytes: 240000,
  newFlows: 60,
  activeFlows: 48,
  backends: [
    {
      address: '10.1.0.11',
      port: 80,
      weight: 2,
      drain: false,
      check: 'http:/healthz',
      health: 'up',
      state: 'active',
      tableShare: 2 / 3,
      trafficShare: 0.7,
      packets: 1400,
      bytes: 168000,
      newFlows: 42,
      activeFlows: 33,
    },
    {
      address: '10.1.0.12',
      port: 8080,
      weight: 1,
      drain: true,
      check: null,
      health: 'unchecked',
      state: 'draining',
      tableShare: 0,
      trafficShare: 0.3,
      packets: 600,
      bytes: 72000,
      newFlows: 18,
      activeFlows: 15,
    },
  ],
};
const dns: LbServiceView = {
  ...web,
  key: '[2001:db8::53]:53/udp',
  vip: '2001:db8::53',
  port: 53,
  proto: 'udp',
  mode: 'dsr',
  hash: 'src',
  devices: [],
  packets: 0,
  bytes: 0,
  newFlows: 0,
  activeFlows: 0,
  backends: [],
};

let stub: ApiStub;
const run = (...args: string[]) => runCliWith({ env: {} }, '--socket', stub.socket, ...args);
const last = () => stub.requests.at(-1)!;

beforeAll(async () => {
  stub = await startApiStub({
    'POST /v1/lb/services': changeRoute(201, {
      diff: { ...emptyDiff(), services: names([], [WEB]) },
    }),
    [`DELETE ${WEB_PATH}`]: changeRoute(200, {
      diff: { ...emptyDiff(), services: names([], [], [WEB]) },
    }),
    'DELETE /v1/lb/services/%5B2001%3Adb8%3A%3A53%5D%3A53%2Fudp': changeRoute(200),
    [`POST ${WEB_PATH}/backends`]: changeRoute(201, { lb: moves }),
    [`PATCH ${WEB_PATH}/backends/10.1.0.11`]: changeRoute(200, { lb: moves }),
    [`PATCH ${WEB_PATH}/backends/10.1.0.12%3A8080`]: changeRoute(200),
    [`DELETE ${WEB_PATH}/backends/10.1.0.11`]: changeRoute(200, {
      lb: [{ service: WEB, movedShare: 2 / 3, flows: 1, flowsMoved: 1 }],
    }),
    'GET /v1/lb/services': { json: { services: [web, dns] } },
    [`GET ${WEB_PATH}`]: { json: web },
    'GET /v1/lb/services/10.0.0.100%3A81%2Ftcp': {
      problem: {
        status: 404,
        code: 'CONFIG_NOT_FOUND',
        detail: 'service "10.0.0.100:81/tcp" does not exist',
      },
    },
  });
});
afterAll(async () => {
  await stub.close();
});
beforeEach(() => {
  stub.requests.length = 0;
});

describe('lb service add', () => {
  it('posts the service with the options given, and nothing else', async () => {
    const r = await run('lb', 'service', 'add', '10.0.0.100:80', '--proto', 'tcp', '--mode', 'dsr');
    expect(r).toEqual({
      code: 0,
      stdout: 'added service 10.0.0.100:80/tcp (generation 7)\n',
      stderr: '',
    });
    expect(last()).toMatchObject({ method: 'POST', path: '/v1/lb/services', query: {} });
    expect(last().json).toEqual({ vip: '10.0.0.100', port: 80, proto: 'tcp', mode: 'dsr' });
  });

  it('sends every option as the ServiceDoc field', async () => {
    await run(
      'lb',
      'service',
      'add',
      '[2001:DB8::53]:53',
      '--proto',
      'udp',
      '--mode',
      'ipip',
      '--hash',
      'src-port',
      '--table-size',
      '4093',
      '--udp-timeout',
      '10',
      '--tcp-timeout',
      '600',
      '--drain-timeout',
      '0',
      '--dev',
      'veth1',
      'veth2',
    );
    expect(last().json).toEqual({
      vip: '2001:db8::53',
      port: 53,
      proto: 'udp',
      mode: 'ipip',
      hash: 'src-port',
      tableSize: 4093,
      udpTimeout: 10,
      tcpTimeout: 600,
      drainTimeout: 0,
      devices: ['veth1', 'veth2'],
    });
  });

  it('takes the protocol from the key, and leaves it out when neither gives one', async () => {
    const r = await run('lb', 'service', 'add', '10.0.0.100:53/udp');
    expect(r.stdout).toBe('added service 10.0.0.100:53/udp (generation 7)\n');
    expect(last().json).toEqual({ vip: '10.0.0.100', port: 53, proto: 'udp' });
    await run('lb', 'service', 'add', '10.0.0.100:80');
    expect(last().json).toEqual({ vip: '10.0.0.100', port: 80 });
  });

  it('prints the diff of a dry run and the ChangeResult with --json', async () => {
    const dry = await run('lb', 'service', 'add', '10.0.0.100:80', '--dry-run');
    expect(last().query).toEqual({ dryRun: 'true' });
    expect(dry.stdout).toMatchInlineSnapshot(`
      "services:
        + 10.0.0.100:80/tcp
      dry run: nothing applied (added service 10.0.0.100:80/tcp)
      "
    `);
    const json = await run('lb', 'service', 'add', '10.0.0.100:80', '--json');
    expect(JSON.parse(json.stdout)).toEqual(
      change({ diff: { ...emptyDiff(), services: names([], [WEB]) } }),
    );
  });

  it.each([
    [['10.0.0.100'], "command-argument value '10.0.0.100' is invalid for argument 'service'"],
    [['10.0.0.100:80/icmp'], "command-argument value '10.0.0.100:80/icmp' is invalid"],
    [['example.com:80'], "command-argument value 'example.com:80' is invalid"],
    [['10.0.0.100:80', '--proto', 'icmp'], "option '--proto <proto>' argument 'icmp' is invalid"],
    [['10.0.0.100:80', '--mode', 'dnat'], "option '--mode <mode>' argument 'dnat' is invalid"],
    [['10.0.0.100:80', '--hash', 'dst'], "option '--hash <hash>' argument 'dst' is invalid"],
    [['10.0.0.100:80', '--table-size', '1000'], "option '--table-size <m>' argument '1000'"],
    [['10.0.0.100:80', '--udp-timeout', '-1'], "option '--udp-timeout <s>' argument '-1'"],
    [['10.0.0.100:80', '--drain-timeout', '90000'], "option '--drain-timeout <s>' argument"],
  ])('refuses %j as a usage error before asking the daemon', async (args, start) => {
    const r = await run('lb', 'service', 'add', ...args);
    expect(r.code).toBe(2);
    expect(r.stderr.startsWith(`sluice: ${start}`), r.stderr).toBe(true);
    expect(stub.requests).toEqual([]);
  });

  it('says what is wrong with a key, a table size and a protocol given twice', async () => {
    const key = await run('lb', 'service', 'add', '10.0.0.100');
    expect(key.stderr).toMatchInlineSnapshot(`
      "sluice: command-argument value '10.0.0.100' is invalid for argument 'service'. expected VIP:PORT[/PROTO], e.g. 10.0.0.100:80/tcp or [2001:db8::1]:443
      "
    `);
    const size = await run('lb', 'service', 'add', '10.0.0.100:80', '--table-size', '1000');
    expect(size.stderr).toMatchInlineSnapshot(`
      "sluice: option '--table-size <m>' argument '1000' is invalid. expected a Maglev table size, a prime of 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65537, 131071, 262139, 524287, 1048573
      "
    `);
    const twice = await run('lb', 'service', 'add', '10.0.0.100:80/udp', '--proto', 'tcp');
    expect([twice.code, twice.stderr]).toMatchInlineSnapshot(`
      [
        2,
        "sluice: the service says /udp and --proto says tcp: give one
      ",
      ]
    `);
    expect(stub.requests).toEqual([]);
  });
});

describe('lb service rm', () => {
  it('deletes the service by its URL-encoded key, tcp by default', async () => {
    const r = await run('lb', 'service', 'rm', '10.0.0.100:80');
    expect(r.stdout).toBe('removed service 10.0.0.100:80/tcp (generation 7)\n');
    expect(last()).toMatchObject({ method: 'DELETE', path: WEB_PATH, body: '' });
  });

  it('writes an IPv6 key canonically and keeps its protocol', async () => {
    const r = await run('lb', 'service', 'rm', '[2001:DB8:0::53]:53/udp', '--dry-run');
    expect(last()).toMatchObject({
      method: 'DELETE',
      path: '/v1/lb/services/%5B2001%3Adb8%3A%3A53%5D%3A53%2Fudp',
      query: { dryRun: 'true' },
    });
    expect(r.stdout).toContain('dry run: nothing applied (removed service [2001:db8::53]:53/udp)');
  });

  it('prints the problem of a missing service with --json and exits 1', async () => {
    stub.route('DELETE /v1/lb/services/10.0.0.100%3A81%2Ftcp', {
      problem: {
        status: 404,
        code: 'CONFIG_NOT_FOUND',
        detail: 'remove service: service "10.0.0.100:81/tcp" does not exist',
      },
    });
    const r = await run('lb', 'service', 'rm', '10.0.0.100:81', '--json');
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ status: 404, code: 'CONFIG_NOT_FOUND' });
    expect(r.stderr).toBe('sluice: remove service: service "10.0.0.100:81/tcp" does not exist\n');
  });
});

describe('lb ls', () => {
  it('draws a table per service and a row per backend', async () => {
    const r = await run('lb', 'ls');
    expect(r.code).toBe(0);
    expect(last()).toMatchObject({ method: 'GET', path: '/v1/lb/services' });
    expect(r.stdout).toMatchInlineSnapshot(`
      "SERVICE            MODE  HASH    DEVICES              PACKETS
      10.0.0.100:80/tcp  nat   5tuple  veth1@xdp,veth2@xdp     2000
        BACKEND         WEIGHT  STATE     HEALTH     TABLE  TRAFFIC  PACKETS  FLOWS
        10.1.0.11            2  active    up         66.7%    70.0%     1400     33
        10.1.0.12:8080       1  draining  unchecked   0.0%    30.0%      600     15

      SERVICE                MODE  HASH  DEVICES  PACKETS
      [2001:db8::53]:53/udp  dsr   src   -              0
        no backends
      "
    `);
  });

  it('is the same as `lb service ls`, and --json prints the API response', async () => {
    const a = await run('lb', 'ls');
    const b = await run('lb', 'service', 'ls');
    expect(b.stdout).toBe(a.stdout);
    const json = await run('lb', 'service', 'ls', '--json');
    expect(JSON.parse(json.stdout)).toEqual({ services: [web, dns] });
  });

  it('shows one service by key', async () => {
    const r = await run('lb', 'ls', '10.0.0.100:80');
    expect(last().path).toBe(WEB_PATH);
    expect(r.stdout.split('\n')[1]).toMatch(/^10\.0\.0\.100:80\/tcp +nat/);
    expect(JSON.parse((await run('lb', 'service', 'ls', WEB, '--json')).stdout)).toEqual(web);
    const missing = await run('lb', 'ls', '10.0.0.100:81');
    expect([missing.code, missing.stderr]).toEqual([
      1,
      'sluice: service "10.0.0.100:81/tcp" does not exist\n',
    ]);
  });

  it('says when there are no services', async () => {
    stub.route('GET /v1/lb/services', { json: { services: [] } });
    expect((await run('lb', 'ls')).stdout).toBe('no services\n');
    stub.route('GET /v1/lb/services', { json: { services: [web, dns] } });
  });
});

describe('lb backend add', () => {
  it("posts the contract's example and prints what moves", async () => {
    const r = await run(
      'lb',
      'backend',
      'add',
      '10.0.0.100:80',
      '10.1.0.11',
      '--weight',
      '2',
      '--check',
      'http:/healthz',
    );
    expect(last()).toMatchObject({ method: 'POST', path: `${WEB_PATH}/backends`, query: {} });
    expect(last().json).toEqual({ address: '10.1.0.11', weight: 2, check: 'http:/healthz' });
    expect(r).toEqual({
      code: 0,
      stdout:
        'service 10.0.0.100:80/tcp: added backend 10.1.0.11 (generation 7)\n' +
        'service 10.0.0.100:80/tcp: 25.0% of the hash space moves; 12 of 48 live flows would now hash elsewhere (kept by the flow table)\n',
      stderr: '',
    });
  });

  it('sends a backend port and --drain, and says a dry run applied nothing', async () => {
    const r = await run(
      'lb',
      'backend',
      'add',
      '10.0.0.100:80/tcp',
      '10.1.0.12:8080',
      '--drain',
      '--dry-run',
    );
    expect(last()).toMatchObject({ query: { dryRun: 'true' } });
    expect(last().json).toEqual({ address: '10.1.0.12', port: 8080, drain: true });
    expect(r.stdout).toMatchInlineSnapshot(`
      "services:
        ~ 10.0.0.100:80/tcp
      dry run: nothing applied (service 10.0.0.100:80/tcp: added backend 10.1.0.12:8080)
      service 10.0.0.100:80/tcp: 25.0% of the hash space moves; 12 of 48 live flows would now hash elsewhere (kept by the flow table)
      "
    `);
  });

  it('prints the ChangeResult with its predictions as they are with --json', async () => {
    const r = await run('lb', 'backend', 'add', '10.0.0.100:80', '10.1.0.11', '--json');
    expect(JSON.parse(r.stdout)).toEqual(change({ lb: moves }));
  });

  it.each([
    [
      ['10.0.0.100:80', '10.1.0.300'],
      "command-argument value '10.1.0.300' is invalid for argument 'backend'",
    ],
    [['10.0.0.100:80', '10.1.0.11/24'], "command-argument value '10.1.0.11/24' is invalid"],
    [['10.0.0.100:80', '10.1.0.11', '--weight', '70000'], "option '--weight <w>' argument '70000'"],
    [['10.0.0.100:80', '10.1.0.11', '--check', 'ftp'], "option '--check <spec>' argument 'ftp'"],
    [['10.0.0.100:80'], "missing required argument 'backend'"],
  ])('refuses %j as a usage error before asking the daemon', async (args, start) => {
    const r = await run('lb', 'backend', 'add', ...args);
    expect(r.code).toBe(2);
    expect(r.stderr.startsWith(`sluice: ${start}`), r.stderr).toBe(true);
    expect(stub.requests).toEqual([]);
  });

  it('says what is wrong with a check', async () => {
    const r = await run(
      'lb',
      'backend',
      'add',
      '10.0.0.100:80',
      '10.1.0.11',
      '--check',
      'http:healthz',
    );
    expect(r.stderr).toMatchInlineSnapshot(`
      "sluice: option '--check <spec>' argument 'http:healthz' is invalid. the path must start with "/"
      "
    `);
  });
});

describe('lb backend set', () => {
  it('patches only what is given', async () => {
    const r = await run('lb', 'backend', 'set', '10.0.0.100:80', '10.1.0.11', '--weight', '4');
    expect(last()).toMatchObject({ method: 'PATCH', path: `${WEB_PATH}/backends/10.1.0.11` });
    expect(last().json).toEqual({ weight: 4 });
    expect(r.stdout).toContain(
      'service 10.0.0.100:80/tcp: changed backend 10.1.0.11 (generation 7)\n',
    );
    expect(r.stdout).toContain('25.0% of the hash space moves');
  });

  it('sends --drain and --check, and --no-drain and --no-check as false and null', async () => {
    await run('lb', 'backend', 'set', '10.0.0.100:80', '10.1.0.11', '--drain', '--check', 'tcp');
    expect(last().json).toEqual({ drain: true, check: 'tcp' });
    await run('lb', 'backend', 'set', '10.0.0.100:80', '10.1.0.11', '--no-drain', '--no-check');
    expect(last().json).toEqual({ drain: false, check: null });
  });

  it('encodes a backend with its own port', async () => {
    const r = await run('lb', 'backend', 'set', WEB, '10.1.0.12:8080', '--weight', '0', '--json');
    expect(last().path).toBe(`${WEB_PATH}/backends/10.1.0.12%3A8080`);
    expect(JSON.parse(r.stdout)).toEqual(change());
  });

  it('refuses a set that changes nothing as a usage error', async () => {
    const r = await run('lb', 'backend', 'set', '10.0.0.100:80', '10.1.0.11');
    expect([r.code, r.stderr]).toMatchInlineSnapshot(`
      [
        2,
        "sluice: nothing to change: give --weight, --drain, --no-drain, --check or --no-check
      ",
      ]
    `);
    expect(stub.requests).toEqual([]);
  });
});

describe('lb backend rm', () => {
  it('deletes the backend and prints what moves', async () => {
    const r = await run('lb', 'backend', 'rm', '10.0.0.100:80', '10.1.0.11');
    expect(last()).toMatchObject({ method: 'DELETE', path: `${WEB_PATH}/backends/10.1.0.11` });
    expect(r.stdout).toMatchInlineSnapshot(`
      "service 10.0.0.100:80/tcp: removed backend 10.1.0.11 (generation 7)
      service 10.0.0.100:80/tcp: 66.7% of the hash space moves; 1 of 1 live flow would now hash elsewhere (kept by the flow table)
      "
    `);
  });
});

describe('sluice stats with services', () => {
  const stats: Stats = {
    devices: [
      {
        name: 'veth1',
        device: 'veth1',
        hook: 'xdp',
        ifindex: 7,
        generation: 3,
        actions: actionCounters({ tx: { packets: 2000, bytes: 240000 } }),
        events: {} as Stats['devices'][number]['events'],
        histogram: [],
        rules: [],
        limiters: [],
      },
    ],
    lb: {
      events: {
        tx: 2000,
        flowHit: 1940,
        flowMiss: 60,
        nonSynMiss: 2,
        insertCap: 0,
        noBackend: 0,
        fibFail: 1,
      },
      fibFailures: { no_neigh: 1, blackhole: 0 },
      services: [web, dns],
    },
  };

  it('prints a load-balancer section after the devices', async () => {
    stub.route('GET /v1/stats', { json: stats });
    const r = await run('stats', '--interval', '0');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatchInlineSnapshot(`
      "veth1 (xdp, ifindex 7, generation 3)
        action    packets   bytes  pkt/s  bit/s
        pass            0       0      -      -
        drop            0       0      -      -
        redirect        0       0      -      -
        tx           2000  240000      -      -

      load balancer
        service / backend      packets   bytes  new flows  active flows
        10.0.0.100:80/tcp         2000  240000         60            48
          10.1.0.11               1400  168000         42            33
          10.1.0.12:8080           600   72000         18            15
        [2001:db8::53]:53/udp        0       0          0             0
        events: flowHit 1940, flowMiss 60, nonSynMiss 2, fibFail 1, tx 2000
        fib failures: no_neigh 1
      "
    `);
  });

  it('includes lb as it is with --json', async () => {
    stub.route('GET /v1/stats', { json: stats });
    const r = await run('stats', '--json');
    expect(JSON.parse(r.stdout)).toEqual(stats);
  });

  it('prints no section without lb', async () => {
    stub.route('GET /v1/stats', { json: { devices: [] } });
    const r = await run('stats', '--interval', '0');
    expect(r.stdout).toBe('no attachments\n');
  });
});

describe('sluice events with services', () => {
  it("prints a backend's health change and a config change of services on one line each", () => {
    expect(
      formatEvent('health', {
        type: 'health',
        service: WEB,
        backend: '10.1.0.11',
        from: 'up',
        to: 'down',
        reason: 'connect: connection refused',
      }),
    ).toBe('health 10.0.0.100:80/tcp backend 10.1.0.11: up -> down (connect: connection refused)');
    expect(
      formatEvent('config', {
        type: 'config',
        generation: 8,
        diff: { ...emptyDiff(), services: names([WEB], ['10.0.0.100:53/udp']) },
      }),
    ).toBe('config generation 8: services: + 10.0.0.100:53/udp ~ 10.0.0.100:80/tcp');
  });
});
