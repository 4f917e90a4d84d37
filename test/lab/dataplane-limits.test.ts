// Rate limits in native XDP on the router hold their configured rate within 10%: one bucket per rule, or one per source, in packets or in bits.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { udpStream } from '../../netns-lab/traffic.js';
import { describeKernel } from '../helpers/privileges.js';
import {
  addClientAddresses,
  counterDelta,
  countersOf,
  openDataplaneLab,
  sleep,
  udpFrameBytes,
  type DataplaneLab,
} from './dataplane-lab.js';

/**
 * What a token bucket of `burst` that starts full lets through in `ms` at `rate` per second.
 * The bursts below hold 0.2 s of the rate: a sender paused that long by a busy machine loses no
 * tokens (a bucket that is full wastes its refill), so the count measures the limiter, not the
 * sender's scheduling.
 */
const allowance = (rate: number, burst: number, ms: number): number => burst + (rate * ms) / 1000;

await describeKernel('rate limits in native XDP on the router', () => {
  let x: DataplaneLab;
  let second: string;

  beforeAll(async () => {
    x = await openDataplaneLab();
    second = (await addClientAddresses(x.net, x.lab, '192.0.2.3', '2001:db8:1::3')).ipv4;
    await x.dp.apply({
      attachments: [
        {
          device: x.net.router.client.device,
          hook: 'xdp',
          mode: 'native',
          rules: {
            rules: [
              {
                id: 'pps',
                proto: 'udp',
                dport: 9100,
                action: 'ratelimit',
                rate: '1000pps',
                burst: 200,
              },
              {
                id: 'per-source',
                proto: 'udp',
                dport: [9200, 9201],
                action: 'ratelimit',
                rate: '500pps',
                burst: 100,
                perSource: true,
              },
              // Burst in bytes for a bit rate: 100000 bytes, 800000 bits.
              {
                id: 'bits',
                proto: 'udp',
                dport: 9300,
                action: 'ratelimit',
                rate: '4mbit',
                burst: 100_000,
              },
            ],
          },
        },
      ],
    });
    // The second address's MLD reports cross the router now, not during a measurement.
    await sleep(200);
  });

  afterAll(async () => {
    await x?.destroy();
  });

  it('passes 1000 packets per second plus a burst of 200 out of 3000 per second', async () => {
    const { net, dp } = x;
    const side = net.router.client.device;
    const before = countersOf(dp, side);
    const result = await udpStream({
      from: net.client,
      to: net.server1,
      port: 9100,
      count: 9000,
      rate: 3000,
    });
    const delta = counterDelta(countersOf(dp, side), before);
    const expected = allowance(1000, 200, result.elapsedMs);
    expect(result.sent).toBe(9000);
    expect(result.received).toBeGreaterThanOrEqual(expected * 0.9);
    expect(result.received).toBeLessThanOrEqual(expected * 1.1);
    // The limiter's own counts are the receiver's, exactly: nothing else was lost.
    expect(delta.limiters.pps).toEqual({ passed: result.received, dropped: result.lost });
    expect(delta.rules.pps.packets).toBe(9000);
    expect(delta.pass.packets).toBe(result.received);
    expect(delta.drop.packets).toBe(result.lost);
    expect(delta.events.ratelimited).toBe(result.lost);
    console.info(
      `pps: ${result.received} of ${result.sent} in ${result.elapsedMs} ms (bucket allows ${expected.toFixed(0)})`,
    );
  });

  it('gives each source its own bucket of 500 packets per second', async () => {
    const { net, dp } = x;
    const side = net.router.client.device;
    const before = countersOf(dp, side);
    const streams = await Promise.all(
      [net.client.ipv4, second].map((source, i) =>
        udpStream({
          from: net.client,
          to: net.server1,
          sourceAddress: source,
          port: 9200 + i,
          count: 6000,
          rate: 3000,
        }),
      ),
    );
    const delta = counterDelta(countersOf(dp, side), before);
    for (const result of streams) {
      // One shared bucket would let through about half of this to each.
      const expected = allowance(500, 100, result.elapsedMs);
      expect(result.sent).toBe(6000);
      expect(result.received).toBeGreaterThanOrEqual(expected * 0.9);
      expect(result.received).toBeLessThanOrEqual(expected * 1.1);
    }
    const received = streams[0].received + streams[1].received;
    const lost = streams[0].lost + streams[1].lost;
    expect(delta.limiters['per-source']).toEqual({ passed: received, dropped: lost });
    expect(delta.rules['per-source'].packets).toBe(12_000);
    expect(delta.pass.packets).toBe(received);
    expect(delta.drop.packets).toBe(lost);
    console.info(
      `per source: ${streams.map((s) => `${s.received} of ${s.sent} in ${s.elapsedMs} ms`).join(', ')}`,
    );
  });

  it('holds a bit rate of 4 Mbit/s on 1042-byte frames', async () => {
    const { net, dp } = x;
    const side = net.router.client.device;
    const before = countersOf(dp, side);
    const frame = udpFrameBytes('ipv4', 1000);
    const result = await udpStream({
      from: net.client,
      to: net.server1,
      port: 9300,
      count: 3000,
      rate: 1500,
      size: 1000,
    });
    const delta = counterDelta(countersOf(dp, side), before);
    // Bits through: the 800000-bit burst plus 4 Mbit per second, in whole frames.
    const expected = allowance(4_000_000, 800_000, result.elapsedMs) / (frame * 8);
    expect(result.sent).toBe(3000);
    expect(result.received).toBeGreaterThanOrEqual(expected * 0.9);
    expect(result.received).toBeLessThanOrEqual(expected * 1.1);
    expect(delta.limiters.bits).toEqual({ passed: result.received, dropped: result.lost });
    expect(delta.pass).toEqual({ packets: result.received, bytes: result.received * frame });
    console.info(
      `bits: ${result.received} of ${result.sent} frames in ${result.elapsedMs} ms (bucket allows ${expected.toFixed(0)})`,
    );
  });
});
