// Forwarding by XDP redirect between two router devices with MACs from the FIB: ping and TCP end to end on both families, the kernel's forwarding path bypassed, and the fallback to the stack when a neighbour is missing.
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RuleSpec } from '../../controller/dataplane/model.js';
import { readForwardCounters, type ForwardCounters } from '../../netns-lab/router.js';
import { ping, runIperf, transferTcp } from '../../netns-lab/traffic.js';
import { describeKernel } from '../helpers/privileges.js';
import {
  counterDelta,
  countersOf,
  framesSent,
  openDataplaneLab,
  type CounterDelta,
  type DataplaneLab,
} from './dataplane-lab.js';

/** Ping frames on the wire: Ethernet 14, IPv4 20 or IPv6 40, ICMP 8, ping's 56 bytes. */
const PING4 = 98;
const PING6 = 118;

await describeKernel('forwarding by XDP redirect between router devices', () => {
  let x: DataplaneLab;

  /** Readings of both attachments, the forward counters and the frames the two hosts sent. */
  interface Reading {
    client: ReturnType<typeof countersOf>;
    server1: ReturnType<typeof countersOf>;
    forward: ForwardCounters;
    clientFrames: number;
    server1Frames: number;
  }
  const read = async (): Promise<Reading> => {
    const { net, dp } = x;
    return {
      client: countersOf(dp, net.router.client.device),
      server1: countersOf(dp, net.router.server1.device),
      forward: await readForwardCounters(net.router.netns),
      clientFrames: await framesSent(net.client.netns, net.client.device),
      server1Frames: await framesSent(net.server1.netns, net.server1.device),
    };
  };
  interface Moved {
    client: CounterDelta;
    server1: CounterDelta;
    forward: ForwardCounters;
    clientFrames: number;
    server1Frames: number;
  }
  const since = async (before: Reading): Promise<Moved> => {
    const after = await read();
    return {
      client: counterDelta(after.client, before.client),
      server1: counterDelta(after.server1, before.server1),
      forward: {
        ipv4: after.forward.ipv4 - before.forward.ipv4,
        ipv6: after.forward.ipv6 - before.forward.ipv6,
      },
      clientFrames: after.clientFrames - before.clientFrames,
      server1Frames: after.server1Frames - before.server1Frames,
    };
  };

  beforeAll(async () => {
    // passXdp: a veth drops frames redirected into it unless its peer runs an XDP program.
    x = await openDataplaneLab({ passXdp: true });
    const { net, dp } = x;
    const towards = (prefix4: string, prefix6: string, to: string, name: string): RuleSpec[] => [
      { id: `${name}-v4`, dst: prefix4, action: 'redirect', to },
      { id: `${name}-v6`, dst: prefix6, action: 'redirect', to },
    ];
    await dp.apply({
      attachments: [
        {
          device: net.router.client.device,
          hook: 'xdp',
          mode: 'native',
          rules: {
            rules: towards('198.51.100.0/24', '2001:db8:2::/64', net.router.server1.device, 's1'),
          },
        },
        {
          device: net.router.server1.device,
          hook: 'xdp',
          mode: 'native',
          rules: {
            rules: towards('192.0.2.0/24', '2001:db8:1::/64', net.router.client.device, 'c'),
          },
        },
      ],
    });
  });

  afterAll(async () => {
    await x?.destroy();
  });

  it('forwards pings both ways on both families without the kernel forwarding any', async () => {
    const { net } = x;
    const before = await read();
    expect(
      await ping(net.client, net.server1.ipv4, { count: 100, intervalSeconds: 0.005 }),
    ).toEqual({ sent: 100, received: 100 });
    expect(
      await ping(net.client, net.server1.ipv6, { count: 100, intervalSeconds: 0.005 }),
    ).toEqual({ sent: 100, received: 100 });
    const moved = await since(before);
    expect(moved.forward).toEqual({ ipv4: 0, ipv6: 0 });
    // Requests in at the client side, replies in at the server side: each redirected once.
    for (const [side, name] of [
      [moved.client, 's1'],
      [moved.server1, 'c'],
    ] as const) {
      expect(side.redirect).toEqual({ packets: 200, bytes: 100 * PING4 + 100 * PING6 });
      expect(side.rules[`${name}-v4`]).toEqual({ packets: 100, bytes: 100 * PING4 });
      expect(side.rules[`${name}-v6`]).toEqual({ packets: 100, bytes: 100 * PING6 });
      expect({ pass: side.pass.packets, drop: side.drop.packets }).toEqual({ pass: 0, drop: 0 });
      expect(side.events).toMatchObject({ fwdToStack: 0, fwdFailed: 0 });
    }
    expect({ client: moved.clientFrames, server1: moved.server1Frames }).toEqual({
      client: 200,
      server1: 200,
    });
  });

  it('decrements the TTL and hop limit once, as a router does', async () => {
    const { net, lab } = x;
    const before = await read();
    // A reply crosses the router once, redirected: it arrives with 64 - 1.
    const v4 = await lab.exec(net.client.netns, [
      'ping',
      '-4',
      '-n',
      '-c',
      '1',
      '-W',
      '2',
      net.server1.ipv4,
    ]);
    const v6 = await lab.exec(net.client.netns, [
      'ping',
      '-6',
      '-n',
      '-c',
      '1',
      '-W',
      '2',
      net.server1.ipv6,
    ]);
    expect(/ttl=(\d+)/.exec(v4)?.[1]).toBe('63');
    expect(/(?:ttl|hlim)=(\d+)/.exec(v6)?.[1]).toBe('63');
    // Decremented by the data plane, not by the kernel's forwarding path.
    const moved = await since(before);
    expect(moved.forward).toEqual({ ipv4: 0, ipv6: 0 });
    expect(moved.client.redirect.packets).toBe(2);
    expect(moved.server1.redirect.packets).toBe(2);
  });

  it('carries TCP both ways on both families, every frame redirected', async () => {
    const { net } = x;
    const before = await read();
    const bytes = 4 << 20;
    expect(await transferTcp({ from: net.client, to: net.server1, bytes })).toEqual({
      ok: true,
      sent: bytes,
      received: bytes,
    });
    expect(
      await transferTcp({ from: net.client, to: net.server1, bytes, family: 'ipv6', port: 9002 }),
    ).toEqual({ ok: true, sent: bytes, received: bytes });
    const iperf = await runIperf({ client: net.client, server: net.server1, seconds: 1 });
    expect(iperf.error).toBeUndefined();
    expect(iperf.ok).toBe(true);
    expect(iperf.bytes).toBeGreaterThan(0);

    const moved = await since(before);
    console.info(
      `TCP: client sent ${moved.clientFrames} frames, ${moved.client.redirect.packets} redirected; ` +
        `server1 sent ${moved.server1Frames}, ${moved.server1.redirect.packets} redirected; ` +
        `iperf3 ${iperf.bytes} bytes; forwarded by the kernel ${JSON.stringify(moved.forward)}`,
    );
    expect(moved.forward).toEqual({ ipv4: 0, ipv6: 0 });
    // Every frame either host sent entered the router and was redirected by the attachment it
    // met: none passed to the stack, none dropped.
    expect(moved.client.redirect.packets).toBe(moved.clientFrames);
    expect(moved.server1.redirect.packets).toBe(moved.server1Frames);
    expect(moved.clientFrames).toBeGreaterThan(bytes / 1500);
    for (const side of [moved.client, moved.server1]) {
      expect({ pass: side.pass.packets, drop: side.drop.packets }).toEqual({ pass: 0, drop: 0 });
      expect(side.events).toMatchObject({ fwdToStack: 0, fwdFailed: 0, default: 0 });
    }
  });

  it('keeps forwarding after a restarted controller takes the attachments over', async () => {
    const { net } = x;
    const dp = await x.reopen();
    const before = await read();
    expect(await ping(net.client, net.server1.ipv4, { count: 20, intervalSeconds: 0.005 })).toEqual(
      { sent: 20, received: 20 },
    );
    expect(await ping(net.client, net.server1.ipv6, { count: 20, intervalSeconds: 0.005 })).toEqual(
      { sent: 20, received: 20 },
    );
    const moved = await since(before);
    expect(moved.forward).toEqual({ ipv4: 0, ipv6: 0 });
    expect(moved.client.redirect).toEqual({ packets: 40, bytes: 20 * PING4 + 20 * PING6 });
    expect(moved.server1.redirect).toEqual({ packets: 40, bytes: 20 * PING4 + 20 * PING6 });
    expect(dp.attachments.size).toBe(2);
  });

  it('hands a packet whose neighbour is missing to the stack, which resolves it and forwards', async () => {
    const { net, lab } = x;
    const r1 = net.router.server1;
    for (const [family, address, frame] of [
      ['ipv4', net.server1.ipv4, PING4],
      ['ipv6', net.server1.ipv6, PING6],
    ] as const) {
      if (family === 'ipv6') {
        // The router's solicitation for a packet it forwards comes from a link-local address
        // (the packet's source is not the router's), and the lab has none: lend it one.
        await lab.exec(r1.netns, [
          'ip',
          '-6',
          'addr',
          'add',
          'fe80::1/64',
          'dev',
          r1.device,
          'nodad',
        ]);
      }
      await lab.exec(r1.netns, ['ip', 'neigh', 'del', address, 'dev', r1.device]);
      try {
        const before = await read();
        // 200 ms apart: the neighbour is resolved long before the second request.
        expect(await ping(net.client, address, { count: 5, intervalSeconds: 0.2 })).toEqual({
          sent: 5,
          received: 5,
        });
        const moved = await since(before);
        // The first request found no neighbour: passed to the kernel, which resolved it (ARP or
        // neighbour solicitation) and forwarded the request. The other four were redirected.
        expect(moved.client.events.fwdToStack).toBe(1);
        expect(moved.client.pass).toEqual({ packets: 1, bytes: frame });
        expect(moved.client.redirect).toEqual({ packets: 4, bytes: 4 * frame });
        expect(moved.forward).toEqual(
          family === 'ipv4' ? { ipv4: 1, ipv6: 0 } : { ipv4: 0, ipv6: 1 },
        );
        // The replies (their neighbour, the client, is static) were all redirected; the one
        // frame passed at the server side is the ARP reply or neighbour advertisement.
        expect(moved.server1.redirect).toEqual({ packets: 5, bytes: 5 * frame });
        expect(moved.server1.pass.packets).toBe(1);
        expect(moved.server1Frames).toBe(6);
      } finally {
        if (family === 'ipv6') {
          await lab.exec(r1.netns, ['ip', '-6', 'addr', 'del', 'fe80::1/64', 'dev', r1.device]);
        }
        await lab.exec(r1.netns, [
          'ip',
          'neigh',
          'replace',
          address,
          'lladdr',
          net.server1.mac,
          'dev',
          r1.device,
          'nud',
          'permanent',
        ]);
      }
    }
  });
});
