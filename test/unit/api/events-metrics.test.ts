// Server-sent events and Prometheus metrics.
import { get, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';

import { afterEach, describe, expect, test } from 'vitest';

import { createMetrics } from '../../../api/server.js';
import { seededServer, testServer, type TestServer } from '../../helpers/api-server.js';
import { actionCounters } from '../../helpers/memory-controller.js';

let server: TestServer;
afterEach(async () => {
  await server?.app.close();
});

/** Reads SSE events from `res` until `until` says stop. */
function readEvents(
  res: IncomingMessage,
  until: (events: { event: string; data: unknown }[]) => boolean,
): Promise<{ event: string; data: unknown }[]> {
  return new Promise((resolve, reject) => {
    const events: { event: string; data: unknown }[] = [];
    let buffer = '';
    const timer = setTimeout(
      () => reject(new Error(`timed out after ${JSON.stringify(events)}`)),
      5000,
    );
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      buffer += chunk;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
        const data = JSON.parse(/^data: (.*)$/m.exec(block)?.[1] ?? 'null');
        events.push({ event, data });
      }
      if (until(events)) {
        clearTimeout(timer);
        resolve(events);
      }
    });
    res.on('error', reject);
  });
}

describe('/v1/events', () => {
  test('sends hello at once, then controller events and periodic stats, and cleans up', async () => {
    server = await seededServer();
    await server.app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = server.app.server.address() as AddressInfo;
    const listeners = server.controller.events.listenerCount('event');
    const res = await new Promise<IncomingMessage>((resolve) =>
      get(`http://127.0.0.1:${port}/v1/events?interval=0.1`, resolve),
    );
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    const hello = await readEvents(res, (e) => e.length >= 1);
    expect(hello[0]).toEqual({ event: 'hello', data: { generation: 1, ready: true } });
    expect(server.controller.events.listenerCount('event')).toBe(listeners + 1);
    const later = readEvents(
      res,
      (e) => e.some((x) => x.event === 'config') && e.some((x) => x.event === 'stats'),
    );
    await server.app.inject({
      method: 'POST',
      url: '/v1/attachments',
      payload: { device: 'veth1' },
    });
    const events = await later;
    expect(events.find((e) => e.event === 'config')?.data).toMatchObject({
      type: 'config',
      generation: 2,
      diff: { attachments: { added: ['veth1@xdp'] } },
    });
    expect(events.find((e) => e.event === 'reconcile')?.data).toEqual({
      type: 'reconcile',
      generation: 2,
      ok: true,
    });
    expect(events.find((e) => e.event === 'stats')?.data).toMatchObject({
      devices: [{ name: 'veth0', hook: 'xdp' }, { name: 'veth1' }],
    });
    res.destroy();
    for (let i = 0; i < 50 && server.controller.events.listenerCount('event') > listeners; i++)
      await new Promise((r) => setTimeout(r, 20));
    expect(server.controller.events.listenerCount('event')).toBe(listeners);
  });

  test('refuses an interval out of range', async () => {
    server = await testServer();
    const res = await server.app.inject({ url: '/v1/events?interval=0' });
    expect(res.statusCode).toBe(400);
  });
});

describe('/metrics', () => {
  test('mirrors the kernel counters at scrape time, with no cpu or address labels', async () => {
    server = await seededServer();
    server.controller.counters.set('veth0@xdp', {
      actions: actionCounters({
        pass: { packets: 5, bytes: 300 },
        drop: { packets: 7, bytes: 420 },
      }),
      rules: [{ id: 'r1', position: 0, packets: 7, bytes: 420, lastHit: null }],
      limiters: [{ id: 'lim', passed: 10, dropped: 3 }],
      events: {
        malformed: 2,
        truncated: 1,
        default: 0,
        ratelimited: 3,
        fwdToStack: 0,
        fwdFailed: 0,
        stepLimit: 0,
        filterMissing: 0,
      },
    });
    server.controller.emit({ type: 'reconcile', generation: 1, ok: false, error: 'EPERM' });
    await server.app.inject({ url: '/v1/status' });
    const res = await server.app.inject({ url: '/metrics' });
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const lines = res.body.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
    const pick = (name: string) =>
      lines.filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
    expect(pick('sluice_packets_total')).toEqual([
      'sluice_packets_total{device="veth0",hook="xdp",action="pass"} 5',
      'sluice_packets_total{device="veth0",hook="xdp",action="drop"} 7',
      'sluice_packets_total{device="veth0",hook="xdp",action="redirect"} 0',
      'sluice_packets_total{device="veth0",hook="xdp",action="tx"} 0',
    ]);
    expect(pick('sluice_bytes_total')).toContain(
      'sluice_bytes_total{device="veth0",hook="xdp",action="drop"} 420',
    );
    expect(pick('sluice_rule_matches_total')).toEqual([
      'sluice_rule_matches_total{device="veth0",hook="xdp",rule="r1"} 7',
    ]);
    expect(pick('sluice_rule_bytes_total')).toEqual([
      'sluice_rule_bytes_total{device="veth0",hook="xdp",rule="r1"} 420',
    ]);
    expect(pick('sluice_limiter_dropped_total')).toEqual([
      'sluice_limiter_dropped_total{device="veth0",hook="xdp",rule="lim"} 3',
    ]);
    expect(pick('sluice_limiter_passed_total')).toEqual([
      'sluice_limiter_passed_total{device="veth0",hook="xdp",rule="lim"} 10',
    ]);
    expect(pick('sluice_malformed_total')).toEqual([
      'sluice_malformed_total{device="veth0",hook="xdp"} 3',
    ]);
    expect(pick('sluice_reconcile_errors_total')).toEqual(['sluice_reconcile_errors_total 1']);
    expect(pick('sluice_config_generation')).toEqual(['sluice_config_generation 1']);
    expect(
      lines.some((l) =>
        l.startsWith(
          'sluice_api_request_duration_seconds_count{method="GET",route="/v1/status",status="200"} 1',
        ),
      ),
    ).toBe(true);
    expect(res.body).not.toMatch(/cpu=|addr|src=|dst=/);

    // A later scrape sees new kernel totals, not sums of scrapes.
    server.controller.counters.set('veth0@xdp', {
      actions: actionCounters({
        pass: { packets: 6, bytes: 360 },
        drop: { packets: 7, bytes: 420 },
      }),
    });
    await new Promise((r) => setTimeout(r, 300));
    const again = await server.app.inject({ url: '/metrics' });
    expect(again.body).toContain(
      'sluice_packets_total{device="veth0",hook="xdp",action="pass"} 6\n',
    );
  });

  test('metrics can be shared between servers', async () => {
    server = await seededServer();
    const metrics = createMetrics(server.controller);
    const a = await testServer({ controller: server.controller, metrics });
    const b = await testServer({ controller: server.controller, metrics });
    await a.app.inject({ url: '/v1/status' });
    await b.app.inject({ url: '/v1/status' });
    const text = await metrics.registry.metrics();
    expect(text).toContain(
      'sluice_api_request_duration_seconds_count{method="GET",route="/v1/status",status="200"} 2',
    );
    await a.app.close();
    await b.app.close();
    metrics.close();
  });
});
