// The load balancer as users run it: a `sluice serve` in the balancer namespace, its services and
// backends written through the REST API, lb_xdp run by the XDP pipeline on the client-facing
// device (and lb_nat_tc by the tc-ingress pipelines towards the backends). Real TCP and UDP from
// a client namespace with many sources to four backend namespaces whose servers answer with
// their name (lb-traffic-lab.ts); native XDP everywhere, no tunnel module.
import { afterAll, beforeAll, expect, it } from 'vitest';

import type { ChangeResult, LbServiceView, LbStats } from '../../controller/contract.js';
import { LabDaemon } from '../../netns-lab/daemon.js';
import { runCli } from '../helpers/cli.js';
import { describeKernel } from '../helpers/privileges.js';
import { guard } from './daemon-lab.js';
import {
  BASE_CONFIG,
  LATE_REPLY_WITHIN_MS,
  LbTrafficLab,
  VIP4,
  VIP6,
  source4,
  source6,
  type TcpReply,
} from './lb-traffic-lab.js';

/** Long-lived connections held open through backend changes. */
const STICKY_CONNECTIONS = 2000;
/** The UDP flows of the disruption measurement: 100 sources × 200 ports. */
const UDP_ADDRESSES = Array.from({ length: 100 }, (_, i) => source4(i + 1));
const UDP_FLOWS = UDP_ADDRESSES.length * 200;

await describeKernel('the load balancer driven by the daemon, with real traffic', () => {
  let x: LbTrafficLab;
  let daemon: LabDaemon;
  /** Backend addresses by server name ("b1" …), per family. */
  let address4: Record<string, string>;
  let address6: Record<string, string>;

  const api = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const res = await daemon.api(method, path, body);
    if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${res.text}`);
    return res.body as T;
  };
  const svcPath = (key: string): string => `/v1/lb/services/${encodeURIComponent(key)}`;
  const view = async (key: string): Promise<LbServiceView> => api('GET', svcPath(key));
  const lbStats = async (): Promise<LbStats> => (await api<{ lb: LbStats }>('GET', '/v1/stats')).lb;
  const serverOf = (r: TcpReply): string | undefined => r.reply?.split(' ')[0];
  const eventsSince = (before: Record<string, number>, after: Record<string, number>) =>
    Object.fromEntries(
      Object.entries(after)
        .map(([name, n]) => [name, n - (before[name] ?? 0)] as const)
        .filter(([, n]) => n !== 0),
    );

  beforeAll(async () => {
    x = await LbTrafficLab.create({ balancer: 'daemon' });
    const id = x.lab.id;
    daemon = guard(x.lab, new LabDaemon({ netns: x.balancer }));
    await daemon.start();
    address4 = Object.fromEntries(x.servers.map((s) => [s.host.name, s.host.ipv4]));
    address6 = Object.fromEntries(x.servers.map((s) => [s.host.name, s.host.ipv6]));
    // The pipeline on the client's side runs the balancer; the ones towards the backends turn
    // NAT replies back into the VIP's.
    await api('PUT', '/v1/config', {
      attachments: [
        { device: `${id}lc`, mode: 'native' },
        ...x.servers.map((_, k) => ({ device: `${id}l${k + 1}`, hook: 'tc-ingress' })),
      ],
      lb: { ipipSource4: BASE_CONFIG.ipipSource4, ipipSource6: BASE_CONFIG.ipipSource6 },
    });
  });

  afterAll(async () => {
    await daemon?.destroy();
    await x?.destroy();
  });

  const modes = [
    ['dsr', 80],
    ['ipip', 81],
    ['gue', 84],
    ['nat', 82],
  ] as const;
  for (const [mode, port] of modes) {
    for (const family of [4, 6] as const) {
      it(`carries IPv${family} TCP connections end to end in ${mode} mode`, async () => {
        const vip = family === 4 ? VIP4 : VIP6;
        const addresses = family === 4 ? address4 : address6;
        const added = await api<ChangeResult>('POST', '/v1/lb/services', {
          vip,
          port,
          mode,
          backends: Object.values(addresses).map((address) =>
            mode === 'nat' ? { address, port: 8080 } : { address },
          ),
        });
        const key = family === 4 ? `${vip}:${port}/tcp` : `[${vip}]:${port}/tcp`;
        expect(added.diff.services?.added).toEqual([key]);
        const sources = Array.from({ length: 16 }, (_, i) =>
          family === 4 ? source4(201 + i) : source6(0x400 + port * 0x10 + i),
        );
        const tag = `${mode}${family}`;
        const replies = await x.client.open(tag, vip, port, sources, 'hello');
        const again = await x.client.again(tag, 'again');
        await x.client.close(tag);
        expect(replies.filter((r) => r.error !== undefined)).toEqual([]);
        expect(again.map(serverOf)).toEqual(replies.map(serverOf));
        expect(new Set(replies.map(serverOf)).size).toBeGreaterThan(1);
        const svc = await view(key);
        expect(svc.devices).toEqual([`${x.lab.id}lc@xdp`]);
        expect(svc.newFlows).toBeGreaterThanOrEqual(sources.length);
        // The backends' counters say who took the flows, as the servers do.
        const took = Object.fromEntries(svc.backends.map((b) => [b.address, b.newFlows]));
        const answered: Record<string, number> = {};
        for (const r of replies) {
          const a = addresses[serverOf(r)!];
          answered[a] = (answered[a] ?? 0) + 1;
        }
        for (const [a, n] of Object.entries(answered)) expect(took[a]).toBe(n);
        // The flow table holds each connection (closing ones too, until their timeout).
        expect(svc.activeFlows).toBeGreaterThanOrEqual(sources.length);
        const active = Object.fromEntries(svc.backends.map((b) => [b.address, b.activeFlows]));
        for (const [a, n] of Object.entries(answered)) expect(active[a]).toBeGreaterThanOrEqual(n);
        await api('DELETE', svcPath(key));
      });
    }
  }

  it('is driven by `sluice lb` as the contract shows it: add, list, dry-run a weight, remove', async () => {
    const lb = (...args: string[]) => runCli('--socket', daemon.socket, 'lb', ...args);
    const vip = `${VIP4}:83`;
    expect((await lb('service', 'add', vip, '--proto', 'tcp', '--mode', 'dsr')).code).toBe(0);
    expect((await lb('backend', 'add', vip, address4.b1, '--weight', '1')).code).toBe(0);
    expect(
      (await lb('backend', 'add', vip, address4.b2, '--weight', '3', '--check', 'tcp')).code,
    ).toBe(0);
    const ls = await lb('ls', '--json');
    const [svc] = (JSON.parse(ls.stdout) as { services: LbServiceView[] }).services;
    expect(svc.backends.map((b) => [b.address, b.weight, Math.round(b.tableShare * 100)])).toEqual([
      [address4.b1, 1, 25],
      [address4.b2, 3, 75],
    ]);
    const table = await lb('ls');
    expect(table.stdout).toContain(`${VIP4}:83/tcp`);
    expect(table.stdout).toContain(address4.b2);
    const dry = await lb('backend', 'set', vip, address4.b1, '--weight', '3', '--dry-run');
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/service 203\.0\.113\.200:83\/tcp: 25\.0% of the hash space moves/);
    expect(dry.stdout).toContain('dry run: nothing applied');
    expect((await lb('service', 'rm', `${vip}/tcp`)).code).toBe(0);
    expect(JSON.parse((await lb('ls', '--json')).stdout)).toEqual({ services: [] });
  });

  it(`keeps ${STICKY_CONNECTIONS} established connections on their backends through an add, a drained removal and weight changes`, async () => {
    const key = `${VIP4}:83/tcp`;
    await api('POST', '/v1/lb/services', {
      vip: VIP4,
      port: 83,
      drainTimeout: 3,
      backends: ['b1', 'b2', 'b3'].map((b) => ({ address: address4[b] })),
    });
    const sources = Array.from({ length: STICKY_CONNECTIONS }, (_, i) => source4(1 + (i % 250)));
    const opened = await x.client.open('sticky', VIP4, 83, sources, 'hello');
    expect(opened.filter((r) => r.error !== undefined)).toEqual([]);
    const home = opened.map(serverOf);
    expect(new Set(home)).toEqual(new Set(['b1', 'b2', 'b3']));
    const missesBefore = (await lbStats()).events.nonSynMiss;

    /** Every connection answers again, each from where it started. */
    const stillHome = async (step: string): Promise<void> => {
      const before = (await lbStats()).events;
      const replies = await x.client.again('sticky', step, LATE_REPLY_WITHIN_MS);
      const moved = replies.flatMap((r, i) =>
        r.error !== undefined || serverOf(r) !== home[i]
          ? [`${r.local}:${r.localPort} ${home[i]} -> ${r.error ?? serverOf(r)}`]
          : [],
      );
      // A failure names each connection and what the balancer counted meanwhile.
      const events = moved.length > 0 ? eventsSince(before, (await lbStats()).events) : {};
      expect({ step, moved, events }).toEqual({ step, moved: [], events: {} });
    };
    try {
      await api('POST', `${svcPath(key)}/backends`, { address: address4.b4 });
      await stillHome('after-add');
      await api('PATCH', `${svcPath(key)}/backends/${address4.b2}`, { weight: 4 });
      await stillHome('after-weight');
      const removal = await api<ChangeResult>('DELETE', `${svcPath(key)}/backends/${address4.b1}`);
      expect(removal.lb?.[0]?.flows).toBeGreaterThanOrEqual(STICKY_CONNECTIONS);
      // Within the drain, b1's connections still reach b1.
      await stillHome('while-draining');
      const draining = (await view(key)).backends.find((b) => b.address === address4.b1);
      expect(draining?.state).toBe('draining');
      expect((await lbStats()).events.nonSynMiss - missesBefore).toBe(0);

      // After it, b1 is gone with its flows: its connections break, no other one moves.
      await new Promise((r) => setTimeout(r, 3500));
      const after = await x.client.again('sticky', 'after-drain', LATE_REPLY_WITHIN_MS);
      const others = after.filter((_, i) => home[i] !== 'b1');
      const onB1 = after.filter((_, i) => home[i] === 'b1');
      const movedOthers = after.filter(
        (r, i) => home[i] !== 'b1' && (r.error !== undefined || serverOf(r) !== home[i]),
      );
      expect(movedOthers).toEqual([]);
      expect(onB1.every((r) => r.error !== undefined || serverOf(r) === undefined)).toBe(true);
      const svc = await view(key);
      expect(svc.backends.map((b) => b.address)).not.toContain(address4.b1);
      console.log(
        `sticky: ${STICKY_CONNECTIONS} connections, ${onB1.length} on the removed backend broke after its drain, ${others.length} kept; non-SYN misses before the drain ended: 0`,
      );
    } finally {
      await x.client.close('sticky');
      await api('DELETE', svcPath(key));
    }
  });

  it(`moves at most 1/N + 1 point of ${UDP_FLOWS} new flows when one of four backends goes, as the dry run said`, async () => {
    const key = `${VIP4}:5003/udp`;
    await api('POST', '/v1/lb/services', {
      vip: VIP4,
      port: 5003,
      proto: 'udp',
      backends: ['b1', 'b2', 'b3', 'b4'].map((b) => ({ address: address4[b] })),
    });
    // No flow-table entries: every datagram is placed by the table alone.
    const config = await api<{ lb?: object }>('GET', '/v1/config');
    await api('PUT', '/v1/config', {
      ...config,
      lb: { ...config.lb, insertCap: { rate: 0, burst: 0 } },
    });
    try {
      const round = async (): Promise<Map<string, string>> => {
        const sent = await x.client.udp(VIP4, 5003, UDP_ADDRESSES, 20000, 200);
        expect(sent.failed).toBe(0);
        const at = new Map<string, string>();
        for (const s of x.servers)
          for (const f of (await s.flows(5003)).flows) at.set(`${f.src} ${f.sport}`, s.host.name);
        expect(at.size).toBeGreaterThanOrEqual(UDP_FLOWS * 0.99);
        return at;
      };
      const first = await round();
      const dry = await api<ChangeResult>(
        'DELETE',
        `${svcPath(key)}/backends/${address4.b3}?dryRun=true`,
      );
      expect(dry.applied).toBe(false);
      const predicted = dry.lb![0].movedShare;
      await api('DELETE', `${svcPath(key)}/backends/${address4.b3}`);
      const second = await round();
      const both = [...first.keys()].filter((k) => second.has(k));
      const moved = both.filter((k) => first.get(k) !== second.get(k)).length / both.length;
      console.log(
        `disruption: ${(moved * 100).toFixed(2)}% of ${both.length} flows moved; the dry run said ${(predicted * 100).toFixed(2)}% of the hash space`,
      );
      expect([...second.values()].filter((b) => b === 'b3')).toEqual([]);
      expect(predicted).toBeLessThanOrEqual(0.25 + 0.001);
      expect(moved).toBeLessThanOrEqual(0.25 + 0.01);
      expect(Math.abs(moved - predicted)).toBeLessThanOrEqual(0.01);
    } finally {
      await api('PUT', '/v1/config', config);
      await api('DELETE', svcPath(key));
    }
  });

  it("resolves its backends' neighbours itself: no MAC typed, none known before", async () => {
    const id = x.lab.id;
    const links = x.servers.map((s, k) => ({ address: s.host.ipv4, device: `${id}l${k + 1}` }));
    const neighbours = async (): Promise<string[]> =>
      (
        await x.lab.exec(x.balancer, [
          'ip',
          '-4',
          'neigh',
          'show',
          'nud',
          'reachable',
          'nud',
          'stale',
          'nud',
          'delay',
          'nud',
          'probe',
        ])
      )
        .split('\n')
        .map((line) => line.split(' ')[0])
        .filter((a) => links.some((l) => l.address === a));
    for (const l of links)
      await x.lab.exec(x.balancer, ['ip', 'neigh', 'del', l.address, 'dev', l.device]);
    const key = `${VIP4}:80/tcp`;
    try {
      expect(await neighbours()).toEqual([]);
      await api('POST', '/v1/lb/services', {
        vip: VIP4,
        port: 80,
        backends: links.map((l) => ({ address: l.address })),
      });
      await new Promise((r) => setTimeout(r, 300));
      expect((await neighbours()).sort()).toEqual(links.map((l) => l.address).sort());
      const sources = Array.from({ length: 16 }, (_, i) => source4(230 + i));
      const replies = await x.client.open('neigh', VIP4, 80, sources, 'hello');
      await x.client.close('neigh');
      expect(replies.filter((r) => r.error !== undefined)).toEqual([]);
      expect(new Set(replies.map(serverOf)).size).toBeGreaterThan(1);
    } finally {
      await api('DELETE', svcPath(key)).catch(() => undefined);
    }
  });

  it('takes a backend whose server stops out within fall × interval + 1 s, and back when it starts', async () => {
    const key = `${VIP4}:8080/tcp`;
    await api('POST', '/v1/lb/services', {
      vip: VIP4,
      port: 8080,
      backends: ['b1', 'b2', 'b3', 'b4'].map((b) => ({
        address: address4[b],
        check: 'tcp interval=200ms timeout=100ms rise=2 fall=3',
      })),
    });
    const health = async (): Promise<Record<string, string>> =>
      Object.fromEntries((await view(key)).backends.map((b) => [b.address, b.health]));
    const waitFor = async (
      what: string,
      ok: () => Promise<boolean>,
      ms: number,
    ): Promise<number> => {
      const t0 = performance.now();
      while (performance.now() - t0 < ms) {
        if (await ok()) return performance.now() - t0;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    };
    try {
      await waitFor(
        'every backend up',
        async () => Object.values(await health()).every((h) => h === 'up'),
        5000,
      );
      const b2 = x.servers[1];
      await b2.stop(8080);
      // Out means out of the kernel's table, not only marked down by the checker.
      const out = async (): Promise<boolean> => {
        const b = (await view(key)).backends.find((x) => x.address === address4.b2);
        return b?.health === 'down' && b.state === 'down' && b.tableShare === 0;
      };
      const tookMs = await waitFor('b2 out of the table', out, 3 * 200 + 1000);
      const sources = Array.from({ length: 200 }, (_, i) => source4(1 + i));
      const replies = await x.client.open('health', VIP4, 8080, sources, 'hello');
      await x.client.close('health');
      expect(replies.filter((r) => r.error !== undefined)).toEqual([]);
      expect(replies.filter((r) => serverOf(r) === 'b2')).toEqual([]);
      const share = (await view(key)).backends.find((b) => b.address === address4.b2)?.tableShare;
      expect(share).toBe(0);
      await b2.start(8080);
      await waitFor(
        'b2 back in the table',
        async () => {
          const b = (await view(key)).backends.find((x) => x.address === address4.b2);
          return b?.health === 'up' && b.state === 'active' && b.tableShare > 0;
        },
        3000,
      );
      const back = await x.client.open('health2', VIP4, 8080, sources, 'hello');
      await x.client.close('health2');
      expect(back.some((r) => serverOf(r) === 'b2')).toBe(true);
      console.log(`health: b2 out of the table ${Math.round(tookMs)} ms after its server stopped`);
    } finally {
      await api('DELETE', svcPath(key));
    }
  });
});
