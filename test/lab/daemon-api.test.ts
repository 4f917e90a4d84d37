// The REST API of a real `sluice serve` in a lab namespace, resource by resource, over its Unix socket (and over TCP with a bearer token): what the API acknowledges is what the kernel holds, read back from the pins, iproute2, bpftool and real traffic, not through sluice.
import { afterAll, beforeAll, expect, it } from 'vitest';

import { compileFilter, formatListing } from '../../bpf/filter/index.js';
import type { ApiResponse } from '../../netns-lab/daemon.js';
import { udpStream } from '../../netns-lab/traffic.js';
import { writePcap } from '../helpers/packets/index.js';
import { frame } from '../helpers/pipeline-frames.js';
import { describeKernel } from '../helpers/privileges.js';
import {
  bpftoolXdp,
  curlInNetns,
  kernelSnapshot,
  openDaemonLab,
  pinnedCounters,
  pinnedLink,
  pinnedRuleIds,
  pinnedSetHas,
  pinnedSetNames,
  problemOf,
  programName,
  xdpByDevice,
  type DaemonLab,
} from './daemon-e2e-lab.js';
import { EventLog } from './daemon-lab.js';

interface Change {
  generation: number;
  applied: boolean;
  diff: {
    attachments: { added: string[]; removed: string[]; changed: string[] };
    sets: {
      added: string[];
      removed: string[];
      changed: { name: string; added: number; removed: number }[];
    };
    rules: { added: string[]; removed: string[]; changed: string[] };
  };
}

interface DeviceStats {
  name: string;
  hook: string;
  ifindex: number;
  actions: Record<string, { packets: number; bytes: number }>;
  rules: { id: string; packets: number; bytes: number }[];
  limiters: { id: string; passed: number; dropped: number }[];
  histogram: number[];
}

const XDP_ATTACHED_DRV = 1;
const XDP_ATTACHED_SKB = 2;

await describeKernel('the REST API of a real daemon, read back from the kernel', () => {
  let x: DaemonLab;
  /** The device with native XDP that net.right's traffic reaches. */
  let W: string;
  /** Spare veth pair: generic XDP and tc-ingress on S0, tc-egress on S1. */
  let S0: string;
  let S1: string;

  const api = (method: string, path: string, body?: unknown, headers?: Record<string, string>) =>
    x.daemon.api(method, path, body, headers);

  /** Asserts a 2xx change and returns it. */
  const change = async (
    method: string,
    path: string,
    body?: unknown,
    status = 200,
  ): Promise<Change & Record<string, unknown>> => {
    const res = await api(method, path, body);
    expect(res.status, `${method} ${path}: ${res.text}`).toBe(status);
    return res.body as Change & Record<string, unknown>;
  };

  const generation = async (): Promise<number> => {
    const res = await api('GET', '/v1/config');
    return Number(JSON.parse(String(res.headers.etag)));
  };

  const deviceStats = async (device: string, hook = 'xdp'): Promise<DeviceStats> => {
    const res = await api('GET', `/v1/stats?device=${device}`);
    expect(res.status, res.text).toBe(200);
    const d = (res.body as { devices: DeviceStats[] }).devices.find(
      (s) => s.name === device && s.hook === hook,
    );
    if (!d) throw new Error(`no stats of ${device}@${hook}: ${res.text}`);
    return d;
  };

  beforeAll(async () => {
    x = await openDaemonLab({ tcp: true });
    W = x.wire;
    [S0, S1] = x.spare;
  });

  afterAll(async () => {
    await x?.destroy();
  });

  it('answers /healthz, /readyz and /openapi.json', async () => {
    expect((await api('GET', '/healthz')).body).toEqual({ status: 'ok' });
    expect((await api('GET', '/readyz')).body).toEqual({ ready: true });
    const doc = (await api('GET', '/openapi.json')).body as {
      openapi: string;
      paths: Record<string, Record<string, unknown>>;
    };
    expect(doc.openapi).toBe('3.0.3');
    for (const [path, method] of [
      ['/v1/devices', 'get'],
      ['/v1/attachments', 'post'],
      ['/v1/attachments/{device}', 'delete'],
      ['/v1/sets', 'post'],
      ['/v1/sets/{name}', 'put'],
      ['/v1/sets/{name}/prefixes', 'post'],
      ['/v1/rules', 'post'],
      ['/v1/limits', 'post'],
      ['/v1/filters', 'post'],
      ['/v1/config', 'put'],
      ['/v1/replay', 'post'],
      ['/v1/stats', 'get'],
      ['/v1/status', 'get'],
      ['/v1/events', 'get'],
      ['/v1/compile', 'post'],
      ['/metrics', 'get'],
    ])
      expect(doc.paths[path]?.[method], `${method} ${path}`).toBeDefined();
  });

  it('lists the namespace devices with the kernel ifindex and MAC', async () => {
    const res = await api('GET', '/v1/devices');
    expect(res.status).toBe(200);
    const devices = (res.body as { devices: { name: string; ifindex: number; mac: string }[] })
      .devices;
    const links = JSON.parse(await x.lab.exec(x.netns, ['ip', '-j', 'link', 'show'])) as {
      ifname: string;
      ifindex: number;
      address: string;
    }[];
    for (const name of [W, S0, S1, 'lo']) {
      const link = links.find((l) => l.ifname === name)!;
      const dev = devices.find((d) => d.name === name);
      expect(dev, name).toMatchObject({ ifindex: link.ifindex });
      if (name !== 'lo') expect(dev?.mac).toBe(link.address);
    }
    // Only the daemon's namespace: not the peer's device.
    expect(devices.some((d) => d.name === x.net.right.device)).toBe(false);
  });

  it('attaches xdp native, xdp generic, tc-ingress and tc-egress, as the kernel shows them', async () => {
    const bodies = [
      { device: W, hook: 'xdp', mode: 'native' },
      { device: S0, hook: 'xdp', mode: 'generic' },
      { device: S0, hook: 'tc-ingress' },
      { device: S1, hook: 'tc-egress' },
    ];
    let gen = await generation();
    for (const body of bodies) {
      const result = await change('POST', '/v1/attachments', body, 201);
      expect(result.applied).toBe(true);
      expect(result.generation).toBe(++gen);
      expect(result.diff.attachments.added).toEqual([`${body.device}@${body.hook}`]);
    }
    const xdp = await xdpByDevice(x.netns);
    expect(xdp[W]?.mode).toBe(XDP_ATTACHED_DRV);
    expect(xdp[S0]?.mode).toBe(XDP_ATTACHED_SKB);
    expect(xdp[S1]).toBeUndefined();
    expect(await bpftoolXdp(x.netns)).toEqual({ [W]: 'driver', [S0]: 'generic' });
    expect(await programName(xdp[W].progId)).toBe('pipeline_xdp');

    const ifindex = async (dev: string): Promise<number> =>
      (
        JSON.parse(await x.lab.exec(x.netns, ['ip', '-j', 'link', 'show', 'dev', dev])) as {
          ifindex: number;
        }[]
      )[0].ifindex;
    for (const [dev, hook, dir] of [
      [S0, 'tc-ingress', 'ingress'],
      [S1, 'tc-egress', 'egress'],
    ]) {
      const link = pinnedLink(x.daemon.pinDir, dev, hook);
      expect(link, `${dev}@${hook}`).toMatchObject({
        kind: 'tcx',
        ifindex: await ifindex(dev),
        attachType: dir,
      });
      expect(await programName(link!.progId)).toBe('pipeline_tc');
    }

    const listed = (await api('GET', '/v1/attachments')).body as {
      attachments: { device: string; hook: string; status: { state: string } }[];
    };
    expect(listed.attachments.map((a) => [a.device, a.hook, a.status.state])).toEqual(
      bodies.map((b) => [b.device, b.hook, 'attached']),
    );
  });

  it('detaches one hook and leaves the others of the device', async () => {
    // Re-attach after: the later tests use all four.
    const result = await change('DELETE', `/v1/attachments/${S0}?hook=xdp`);
    expect(result.diff.attachments.removed).toEqual([`${S0}@xdp`]);
    expect((await xdpByDevice(x.netns))[S0]).toBeUndefined();
    expect(pinnedLink(x.daemon.pinDir, S0, 'tc-ingress')?.kind).toBe('tcx');
    await change('POST', '/v1/attachments', { device: S0, hook: 'xdp', mode: 'generic' }, 201);
    expect((await xdpByDevice(x.netns))[S0]?.mode).toBe(XDP_ATTACHED_SKB);
  });

  it('creates a set, streams text/plain and NDJSON bodies, adds and removes prefixes: the tries follow', async () => {
    const pin = x.daemon.pinDir;
    const created = await change(
      'POST',
      '/v1/sets',
      { name: 'blocklist', prefixes: ['10.0.0.0/8', '2001:db8::/32', '203.0.113.7'] },
      201,
    );
    expect(created).toMatchObject({ applied: true, count: 3 });
    expect(created.diff.sets.added).toEqual(['blocklist']);
    expect(pinnedSetNames(pin)).toContain('blocklist');
    for (const p of ['10.0.0.0/8', '10.9.8.7/32', '2001:db8::/32', '2001:db8:1::1/128'])
      expect(pinnedSetHas(pin, 'blocklist', p), p).toBe(true);
    expect(pinnedSetHas(pin, 'blocklist', '203.0.113.7/32')).toBe(true);
    expect(pinnedSetHas(pin, 'blocklist', '203.0.113.8/32')).toBe(false);
    expect(pinnedSetHas(pin, 'blocklist', '11.0.0.1/32')).toBe(false);

    // text/plain: one prefix a line, comments and blank lines skipped.
    const text = '# allowed peers\n198.51.100.0/25\n\n2001:db8:aa::/48\n198.51.100.200\n';
    const put = await change('PUT', '/v1/sets/allow', text);
    expect(put).toMatchObject({ applied: true, count: 3 });
    for (const p of ['198.51.100.0/25', '198.51.100.1/32', '2001:db8:aa::5/128', '198.51.100.200'])
      expect(pinnedSetHas(pin, 'allow', p.includes('/') ? p : `${p}/32`), p).toBe(true);
    expect(pinnedSetHas(pin, 'allow', '198.51.100.129/32')).toBe(false);

    // NDJSON: strings and {"prefix"} objects; replaces the whole set.
    const ndjson = '"198.51.100.128/25"\n{"prefix":"2001:db8:bb::/48"}\n';
    const res = await api('PUT', '/v1/sets/allow', ndjson, {
      'content-type': 'application/x-ndjson',
    });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toMatchObject({ count: 2 });
    expect(pinnedSetHas(pin, 'allow', '198.51.100.129/32')).toBe(true);
    expect(pinnedSetHas(pin, 'allow', '198.51.100.1/32')).toBe(false);
    expect(pinnedSetHas(pin, 'allow', '2001:db8:aa::5/128')).toBe(false);
    expect(pinnedSetHas(pin, 'allow', '2001:db8:bb::5/128')).toBe(true);
    expect((await api('GET', '/v1/sets/allow')).body).toEqual({
      name: 'allow',
      prefixes: ['198.51.100.128/25', '2001:db8:bb::/48'],
    });

    // Add and remove a few.
    const added = await change('POST', '/v1/sets/blocklist/prefixes', {
      prefixes: ['192.0.2.128/25', '2001:db8:ff::/48', '10.0.0.0/8'],
    });
    expect(added.diff.sets.changed).toEqual([{ name: 'blocklist', added: 2, removed: 0 }]);
    expect(pinnedSetHas(pin, 'blocklist', '192.0.2.200/32')).toBe(true);
    const removed = await change('DELETE', '/v1/sets/blocklist/prefixes', {
      prefixes: ['192.0.2.128/25', '203.0.113.7'],
    });
    expect(removed.diff.sets.changed).toEqual([{ name: 'blocklist', added: 0, removed: 2 }]);
    expect(pinnedSetHas(pin, 'blocklist', '192.0.2.200/32')).toBe(false);
    expect(pinnedSetHas(pin, 'blocklist', '203.0.113.7/32')).toBe(false);
    expect(pinnedSetHas(pin, 'blocklist', '2001:db8:ff::1/128')).toBe(true);

    const sets = (await api('GET', '/v1/sets')).body;
    expect(sets).toEqual({
      sets: [
        { name: 'blocklist', count: 3 },
        { name: 'allow', count: 2 },
      ],
    });
  });

  /** Rules covering every match field and every action, on two attachments. */
  const fieldRules = (): Record<string, unknown>[] => [
    {
      id: 'f-dst',
      device: W,
      priority: 10,
      dst: '198.51.100.0/24',
      proto: 'tcp',
      tcpFlags: 'syn,!ack',
      action: 'drop',
    },
    { id: 'f-sets', device: W, srcSet: 'blocklist', dstSet: 'allow', action: 'drop' },
    { id: 'f-sport', device: W, proto: 17, sport: 53, action: 'pass' },
    { id: 'f-vlan', device: W, vlan: 100, action: 'count' },
    { id: 'f-icmp', device: W, proto: 'icmp', icmp: { type: 3, code: 4 }, action: 'count' },
    { id: 'f-frag', device: W, filter: 'udp and ip[6:2] & 0x1fff != 0', action: 'drop' },
    {
      id: 'f-rl',
      device: W,
      proto: 'udp',
      dport: 53,
      action: 'ratelimit',
      rate: '1000pps',
      burst: 100,
      perSource: true,
    },
    {
      id: 'f-redir',
      device: W,
      dst: '203.0.113.9',
      action: 'redirect',
      to: S1,
      via: '02:00:00:00:00:01',
    },
    {
      id: 't-v6',
      device: S0,
      hook: 'tc-ingress',
      src: '2001:db8::/64',
      proto: 'icmpv6',
      action: 'drop',
    },
    {
      id: 't-sctp',
      device: S0,
      hook: 'tc-ingress',
      proto: 'sctp',
      dport: '3868-3870',
      action: 'drop',
    },
    { id: 't-src', device: S0, hook: 'tc-ingress', src: '192.0.2.0/24', action: 'pass' },
    { id: 'e-count', device: S1, hook: 'tc-egress', proto: 'udp', action: 'count' },
  ];

  it('adds rules with every match field and every action: the kernel runs exactly those ids', async () => {
    for (const rule of fieldRules()) {
      const result = await change('POST', '/v1/rules', rule, 201);
      expect(result.diff.rules.added).toEqual([rule.id]);
      expect(result.rule).toMatchObject(rule);
    }
    const ids = (device: string, hook = 'xdp') =>
      fieldRules()
        .filter((r) => r.device === device && (r.hook ?? 'xdp') === hook)
        .map((r) => r.id as string)
        .sort();
    const pin = x.daemon.pinDir;
    expect(pinnedRuleIds(pin, W)).toEqual(ids(W));
    expect(pinnedRuleIds(pin, S0, 'tc-ingress')).toEqual(ids(S0, 'tc-ingress'));
    expect(pinnedRuleIds(pin, S1, 'tc-egress')).toEqual(ids(S1, 'tc-egress'));
    expect(pinnedRuleIds(pin, S0)).toEqual([]);

    const listed = (await api('GET', `/v1/rules?device=${S0}&hook=tc-ingress`)).body as {
      rules: { id: string }[];
    };
    expect(listed.rules.map((r) => r.id)).toEqual(['t-v6', 't-sctp', 't-src']);
    expect((await api('GET', '/v1/rules/f-rl')).body).toMatchObject({ rate: '1000pps' });

    // A referenced set cannot go, and nothing changes.
    const before = await kernelSnapshot(pin, x.netns);
    const gen = await generation();
    const refused = await api('DELETE', '/v1/sets/blocklist');
    expect(refused.status).toBe(409);
    expect(problemOf(refused)).toMatchObject({ code: 'CONFIG_CONFLICT', status: 409 });
    expect(problemOf(refused).detail).toMatchInlineSnapshot(
      `"remove set "blocklist": rule "f-sets" uses it; remove it first"`,
    );
    expect(await generation()).toBe(gen);
    expect(await kernelSnapshot(pin, x.netns)).toEqual(before);
  });

  it('drops pings and a UDP port as configured, and counts what it drops', async () => {
    const pin = x.daemon.pinDir;
    expect(await x.lab.ping(x.net.right, x.net.left, 3)).toBe(3);

    await change(
      'POST',
      '/v1/rules',
      {
        id: 'ping-drop',
        device: W,
        src: x.net.right.ipv4,
        proto: 'icmp',
        icmp: { type: 8 },
        action: 'drop',
      },
      201,
    );
    await change(
      'POST',
      '/v1/rules',
      { id: 'udp-drop', device: W, proto: 'udp', dport: 9999, action: 'drop' },
      201,
    );
    await change(
      'POST',
      '/v1/rules',
      { id: 'udp-count', device: W, proto: 'udp', dport: '9000-9100', action: 'count' },
      201,
    );
    expect(pinnedRuleIds(pin, W)).toEqual(
      expect.arrayContaining(['ping-drop', 'udp-drop', 'udp-count']),
    );

    const before = pinnedCounters(pin, W);
    expect(await x.lab.ping(x.net.right, x.net.left, 5)).toBe(0);
    const dropped = await udpStream({
      from: x.net.right,
      to: x.net.left,
      port: 9999,
      count: 20,
      rate: 1000,
    });
    expect(dropped).toMatchObject({ sent: 20, received: 0 });
    const counted = await udpStream({
      from: x.net.right,
      to: x.net.left,
      port: 9050,
      count: 30,
      rate: 1000,
    });
    expect(counted).toMatchObject({ sent: 30, received: 30 });

    const after = pinnedCounters(pin, W);
    const delta = (id: string): number =>
      after.rules[id].packets - (before.rules[id]?.packets ?? 0);
    expect(delta('ping-drop')).toBe(5);
    expect(delta('udp-drop')).toBe(20);
    expect(delta('udp-count')).toBe(30);
    expect(after.actions.drop.packets - before.actions.drop.packets).toBe(25);
    expect(after.actions.pass.packets - before.actions.pass.packets).toBe(30);

    // The API reports what the pins hold.
    const stats = await deviceStats(W);
    expect(stats.actions.drop).toEqual(after.actions.drop);
    expect(stats.actions.pass).toEqual(after.actions.pass);
    for (const id of ['ping-drop', 'udp-drop', 'udp-count'])
      expect(stats.rules.find((r) => r.id === id)).toMatchObject(after.rules[id]);
    expect(stats.histogram.reduce((a, b) => a + b, 0)).toBe(
      Object.values(after.actions).reduce((a, c) => a + c.packets, 0),
    );
  });

  it('serves Prometheus counters equal to /v1/stats after the traffic', async () => {
    const res = await api('GET', '/metrics');
    expect(res.status).toBe(200);
    expect(String(res.headers['content-type'])).toMatch(/^text\/plain/);
    const stats = (await api('GET', '/v1/stats')).body as { devices: DeviceStats[] };
    const sample = (name: string, labels: Record<string, string>): number => {
      const want = Object.entries(labels)
        .map(([k, v]) => `${k}="${v}"`)
        .join(',');
      const head = want === '' ? `${name} ` : `${name}{${want}} `;
      const line = res.text.split('\n').find((l) => l.startsWith(head));
      if (line === undefined) throw new Error(`no ${name}{${want}} in /metrics`);
      return Number(line.split(' ').at(-1));
    };
    let checked = 0;
    for (const d of stats.devices) {
      for (const [action, c] of Object.entries(d.actions)) {
        expect(sample('sluice_packets_total', { device: d.name, hook: d.hook, action })).toBe(
          c.packets,
        );
        expect(sample('sluice_bytes_total', { device: d.name, hook: d.hook, action })).toBe(
          c.bytes,
        );
        checked++;
      }
      for (const r of d.rules) {
        expect(
          sample('sluice_rule_matches_total', { device: d.name, hook: d.hook, rule: r.id }),
        ).toBe(r.packets);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(16);
    expect(
      sample('sluice_packets_total', { device: W, hook: 'xdp', action: 'drop' }),
    ).toBeGreaterThanOrEqual(25);
    expect(sample('sluice_config_generation', {})).toBe(await generation());
  });

  it('replays a pcap through the running rules and through a candidate, nothing changed', async () => {
    const pcap = writePcap([
      ...Array.from({ length: 3 }, () => ({
        data: frame({ src: x.net.right.ipv4, dst: x.net.left.ipv4, proto: 1 }),
      })),
      ...Array.from({ length: 2 }, () => ({
        data: frame({ src: x.net.right.ipv4, dst: x.net.left.ipv4, proto: 17, dport: 9999 }),
      })),
      ...Array.from({ length: 4 }, () => ({
        data: frame({ src: x.net.right.ipv4, dst: x.net.left.ipv4, proto: 17, dport: 9050 }),
      })),
    ]);
    const before = await kernelSnapshot(x.daemon.pinDir, x.netns);
    const countersBefore = pinnedCounters(x.daemon.pinDir, W);
    const gen = await generation();
    const res = await api('POST', '/v1/replay', { pcap: Buffer.from(pcap).toString('base64') });
    expect(res.status, res.text).toBe(200);
    const report = res.body as {
      packets: number;
      attachments: {
        attachment: string;
        rules: { id: string; packets: number }[];
        verdicts: Record<string, number>;
        changed: number;
      }[];
    };
    expect(report.packets).toBe(9);
    const att = report.attachments.find((a) => a.attachment === `${W}@xdp`)!;
    const hits = Object.fromEntries(att.rules.map((r) => [r.id, r.packets]));
    expect(hits).toMatchObject({ 'ping-drop': 3, 'udp-drop': 2, 'udp-count': 4 });
    expect(att.verdicts).toMatchObject({ drop: 5, pass: 4 });

    // A candidate without udp-drop: the two datagrams change verdict.
    const config = (await api('GET', '/v1/config')).body as { rules: { id: string }[] };
    const candidate = { ...config, rules: config.rules.filter((r) => r.id !== 'udp-drop') };
    const res2 = await api('POST', '/v1/replay', {
      pcap: Buffer.from(pcap).toString('base64'),
      config: candidate,
    });
    expect(res2.status, res2.text).toBe(200);
    const att2 = (res2.body as typeof report).attachments.find((a) => a.attachment === `${W}@xdp`)!;
    expect(att2.changed).toBe(2);
    expect(att2.verdicts).toMatchObject({ drop: 3, pass: 6 });

    expect(await generation()).toBe(gen);
    expect(await kernelSnapshot(x.daemon.pinDir, x.netns)).toEqual(before);
    expect(pinnedCounters(x.daemon.pinDir, W)).toEqual(countersBefore);
  });

  it('replaying the running configuration reports no changed verdicts', async () => {
    const pcap = writePcap([
      { data: frame({ src: x.net.right.ipv4, dst: x.net.left.ipv4, proto: 17, dport: 9999 }) },
    ]);
    const res = await api('POST', '/v1/replay', { pcap: Buffer.from(pcap).toString('base64') });
    expect(res.status, res.text).toBe(200);
    const att = (res.body as { attachments: { attachment: string; changed: number }[] })
      .attachments;
    expect(att.find((a) => a.attachment === `${W}@xdp`)?.changed).toBe(0);
  });

  it('adds, lists and removes a rate limit; the limiter is in the kernel', async () => {
    const pin = x.daemon.pinDir;
    const added = await change(
      'POST',
      '/v1/limits',
      { id: 'dns-limit', device: W, proto: 'udp', dport: 5353, rate: '500pps', burst: 50 },
      201,
    );
    expect(added.rule).toMatchObject({ id: 'dns-limit', action: 'ratelimit', rate: '500pps' });
    expect(pinnedRuleIds(pin, W)).toContain('dns-limit');
    const snap = await kernelSnapshot(pin, x.netns);
    expect(snap.attachments[`${W}@xdp`].limits).toEqual(
      expect.arrayContaining(['dns-limit', 'f-rl']),
    );

    const limits = (await api('GET', '/v1/limits')).body as {
      limits: { id: string; passed: number; dropped: number }[];
    };
    expect(limits.limits.map((l) => l.id).sort()).toEqual(['dns-limit', 'f-rl']);
    expect(limits.limits[0]).toMatchObject({ passed: 0, dropped: 0 });

    // A rule that is not a limit is not removed through /v1/limits.
    const notLimit = await api('DELETE', '/v1/limits/udp-drop');
    expect(problemOf(notLimit)).toMatchObject({ status: 404, code: 'CONFIG_NOT_FOUND' });
    await change('DELETE', '/v1/limits/dns-limit');
    expect(pinnedRuleIds(pin, W)).not.toContain('dns-limit');
    expect((await kernelSnapshot(pin, x.netns)).attachments[`${W}@xdp`].limits).not.toContain(
      'dns-limit',
    );
  });

  it('adds, lists and removes a filter rule given as a tcpdump expression', async () => {
    const pin = x.daemon.pinDir;
    const added = await change(
      'POST',
      '/v1/filters',
      {
        id: 'no-dns',
        device: S1,
        hook: 'tc-egress',
        expression: 'udp dst port 53',
        action: 'drop',
      },
      201,
    );
    expect(added.rule).toMatchObject({ id: 'no-dns', filter: 'udp dst port 53' });
    expect(pinnedRuleIds(pin, S1, 'tc-egress')).toEqual(['e-count', 'no-dns']);
    const filters = (await api('GET', '/v1/filters')).body as { filters: { id: string }[] };
    expect(filters.filters.map((f) => f.id).sort()).toEqual(['f-frag', 'no-dns']);
    // Not a filter rule.
    expect((await api('DELETE', '/v1/filters/e-count')).status).toBe(404);
    await change('DELETE', '/v1/filters/no-dns');
    expect(pinnedRuleIds(pin, S1, 'tc-egress')).toEqual(['e-count']);
  });

  it('reads the config with its ETag, replaces it with If-Match, refuses a stale one (412), dry-runs', async () => {
    const pin = x.daemon.pinDir;
    const res = await api('GET', '/v1/config');
    const etag = String(res.headers.etag);
    expect(etag).toMatch(/^"\d+"$/);
    const doc = res.body as {
      version: 1;
      attachments: unknown[];
      sets: unknown[];
      rules: { id: string }[];
    };
    expect(doc.rules.map((r) => r.id)).toContain('f-redir');

    // Dry run: the diff, nothing else.
    const next = { ...doc, rules: doc.rules.filter((r) => r.id !== 'udp-count') };
    const before = await kernelSnapshot(pin, x.netns);
    const dry = await api('PUT', '/v1/config?dryRun=true', next, { 'if-match': etag });
    expect(dry.status, dry.text).toBe(200);
    expect(dry.body).toMatchObject({
      applied: false,
      generation: Number(JSON.parse(etag)),
      diff: { rules: { added: [], removed: ['udp-count'], changed: [] } },
    });
    expect((await api('GET', '/v1/config')).headers.etag).toBe(etag);
    expect(await kernelSnapshot(pin, x.netns)).toEqual(before);

    // The real thing, then the same If-Match again is stale.
    const put = await api('PUT', '/v1/config', next, { 'if-match': etag });
    expect(put.status, put.text).toBe(200);
    const newTag = String(put.headers.etag);
    expect(Number(JSON.parse(newTag))).toBe(Number(JSON.parse(etag)) + 1);
    expect(pinnedRuleIds(pin, W)).not.toContain('udp-count');
    const stale = await api('PUT', '/v1/config', doc, { 'if-match': etag });
    expect(stale.status).toBe(412);
    expect(problemOf(stale).code).toBe('CONFIG_PRECONDITION');
    expect((await api('GET', '/v1/config')).headers.etag).toBe(newTag);
    expect(pinnedRuleIds(pin, W)).not.toContain('udp-count');
  });

  it('reports status: generations converged, every attachment attached', async () => {
    const status = (await api('GET', '/v1/status')).body as {
      desiredGeneration: number;
      appliedGeneration: number;
      ready: boolean;
      pinDir: string;
      attachments: { device: string; hook: string; state: string }[];
    };
    expect(status.desiredGeneration).toBe(await generation());
    expect(status.appliedGeneration).toBe(status.desiredGeneration);
    expect(status.ready).toBe(true);
    expect(status.pinDir).toBe(x.daemon.pinDir);
    expect(status.attachments.map((a) => `${a.device}@${a.hook}:${a.state}`).sort()).toEqual(
      [`${W}@xdp`, `${S0}@xdp`, `${S0}@tc-ingress`, `${S1}@tc-egress`]
        .map((k) => `${k}:attached`)
        .sort(),
    );
  });

  it('streams a config event for a change (SSE)', async () => {
    const log = await EventLog.open(x.daemon.socket);
    try {
      expect(log.events[0]).toMatchObject({ type: 'hello', data: { ready: true } });
      const from = log.events.length;
      const result = await change('POST', '/v1/sets/allow/prefixes', { prefixes: ['192.0.2.77'] });
      const event = await log.next((e) => e.type === 'config', 10_000, from);
      expect(event.data).toMatchObject({
        type: 'config',
        generation: result.generation,
        diff: { sets: { changed: [{ name: 'allow', added: 1, removed: 0 }] } },
      });
    } finally {
      await log.close();
    }
  });

  it('compiles a tcpdump expression as `sluice compile` does', async () => {
    for (const format of ['d', 'dd', 'ddd'] as const) {
      const res = await api('POST', '/v1/compile', { expression: 'udp dst port 53', format });
      expect(res.status).toBe(200);
      const program = compileFilter('udp dst port 53');
      expect(res.body).toEqual({
        listing: formatListing(program, format),
        instructions: program.length,
      });
    }
    const ebpf = await api('POST', '/v1/compile', { expression: 'icmp', format: 'ebpf' });
    expect(ebpf.status).toBe(200);
    expect((ebpf.body as { instructions: number }).instructions).toBeGreaterThan(0);
  });

  it('serves the same over TCP with the bearer token, and 401 without it', async () => {
    const port = x.daemon.port!;
    expect(port).toBeGreaterThan(0);
    const token = x.daemon.token;
    const tcp = (method: string, path: string, options: Parameters<typeof curlInNetns>[4] = {}) =>
      curlInNetns(x.netns, port, method, path, options);

    expect((await tcp('GET', '/healthz')).body).toEqual({ status: 'ok' });
    const status = await tcp('GET', '/v1/status', { token });
    expect(status.status).toBe(200);
    expect(status.body).toMatchObject({ desiredGeneration: await generation() });
    const created = await tcp('POST', '/v1/sets', {
      token,
      body: { name: 'over-tcp', prefixes: ['203.0.113.64/26'] },
    });
    expect(created.status, created.text).toBe(201);
    expect(pinnedSetHas(x.daemon.pinDir, 'over-tcp', '203.0.113.65/32')).toBe(true);
    expect((await tcp('GET', '/v1/sets/over-tcp', { token })).body).toEqual({
      name: 'over-tcp',
      prefixes: ['203.0.113.64/26'],
    });
    expect((await tcp('DELETE', '/v1/sets/over-tcp', { token })).status).toBe(200);
    expect(pinnedSetNames(x.daemon.pinDir)).not.toContain('over-tcp');
    const metrics = await tcp('GET', '/metrics', { token });
    expect(metrics.text).toMatch(/^sluice_packets_total\{/m);

    const gen = await generation();
    for (const [what, options] of [
      ['no token', {}],
      ['a wrong token', { token: 'x'.repeat(48) }],
      ['a Basic credential', { headers: { authorization: `Basic ${token}` } }],
      ['a token with a space in it', { headers: { authorization: `Bearer ${token} x` } }],
    ] as const) {
      for (const [method, path, body] of [
        ['GET', '/v1/status', undefined],
        ['GET', '/v1/config', undefined],
        ['POST', '/v1/sets', { name: 'nope', prefixes: [] }],
        ['GET', '/metrics', undefined],
      ] as const) {
        const res = await tcp(method, path, { ...options, ...(body ? { body } : {}) });
        expect(res.status, `${what}: ${method} ${path}`).toBe(401);
        expect(problemOf(res)).toMatchObject({ status: 401, code: 'API_UNAUTHORIZED' });
      }
    }
    expect(await generation()).toBe(gen);
    expect(pinnedSetNames(x.daemon.pinDir)).not.toContain('nope');
  });

  it('removes rules, sets and attachments: the kernel lets go of each', async () => {
    const pin = x.daemon.pinDir;
    await change('DELETE', '/v1/rules/ping-drop');
    expect(pinnedRuleIds(pin, W)).not.toContain('ping-drop');
    expect(await x.lab.ping(x.net.right, x.net.left, 3)).toBe(3);

    await change('DELETE', '/v1/rules/f-sets');
    const bit = pinnedSetNames(pin).indexOf('blocklist');
    expect(bit).toBeGreaterThanOrEqual(0);
    const gone = await change('DELETE', '/v1/sets/blocklist');
    expect(gone.diff.sets.removed).toEqual(['blocklist']);
    expect(pinnedSetNames(pin)).not.toContain('blocklist');
    expect(pinnedSetHas(pin, 'blocklist', '10.0.0.0/8')).toBe(false);

    const detached = await change('DELETE', `/v1/attachments/${S0}`);
    expect(detached.diff.attachments.removed.sort()).toEqual([`${S0}@tc-ingress`, `${S0}@xdp`]);
    expect((await xdpByDevice(x.netns))[S0]).toBeUndefined();
    expect(pinnedLink(pin, S0, 'tc-ingress')).toBeNull();
    const res: ApiResponse = await api('DELETE', `/v1/attachments/${S0}`);
    expect(problemOf(res)).toMatchObject({ status: 404 });
  });
});
