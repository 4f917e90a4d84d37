// The router lab and its traffic drivers: ping, counted UDP, iperf3 and a trafgen flood through a forwarding namespace.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { attachXdp, loadProgram } from '../../bpf/index.js';
import { Lab } from '../../netns-lab/lab.js';
import { readForwardCounters, type RouterTopology } from '../../netns-lab/router.js';
import {
  flood,
  ping,
  readDeviceStats,
  runIperf,
  startCapture,
  steadyStream,
  transferTcp,
  udpStream,
} from '../../netns-lab/traffic.js';
import { namespacesOf } from '../helpers/namespaces.js';
import { describeKernel } from '../helpers/privileges.js';

/** `r1 = ifindex; r2 = 0; r0 = bpf_redirect(r1, r2); exit`: every frame to one device's egress. */
function redirectInsns(ifindex: number): Uint8Array {
  const insns = Buffer.alloc(32);
  insns.set([0xb7, 0x01, 0, 0], 0);
  insns.writeInt32LE(ifindex, 4);
  insns.set([0xb7, 0x02, 0, 0, 0, 0, 0, 0], 8);
  insns.set([0x85, 0, 0, 0, 23, 0, 0, 0], 16); // call 23: BPF_FUNC_redirect
  insns.set([0x95, 0, 0, 0, 0, 0, 0, 0], 24);
  return insns;
}

await describeKernel('router lab: a client and two servers behind a forwarding namespace', () => {
  let lab: Lab;
  let net: RouterTopology;

  beforeAll(async () => {
    lab = new Lab();
    net = await lab.router();
  });

  afterAll(async () => {
    await lab?.destroy();
  });

  it('describes every endpoint by namespace, device, MAC, addresses and ifindex', () => {
    const ends = [
      net.client,
      net.server1,
      net.server2,
      net.router.client,
      net.router.server1,
      net.router.server2,
    ];
    for (const end of ends) {
      expect(end.device.length).toBeLessThanOrEqual(15);
      expect(end.netns.startsWith(lab.id)).toBe(true);
      expect(end.mac).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
      expect(end.ifindex).toBeGreaterThan(0);
    }
    expect(ends.map((end) => [end.ipv4, end.ipv6])).toEqual([
      ['192.0.2.2', '2001:db8:1::2'],
      ['198.51.100.2', '2001:db8:2::2'],
      ['203.0.113.2', '2001:db8:3::2'],
      ['192.0.2.1', '2001:db8:1::1'],
      ['198.51.100.1', '2001:db8:2::1'],
      ['203.0.113.1', '2001:db8:3::1'],
    ]);
    expect(new Set(ends.slice(3).map((end) => end.netns))).toEqual(new Set([net.router.netns]));
  });

  it('forwards pings from the client to both servers over IPv4 and IPv6 in the kernel', async () => {
    const before = await readForwardCounters(net.router.netns);
    for (const server of [net.server1, net.server2]) {
      expect(await ping(net.client, server.ipv4, { count: 10 })).toEqual({
        sent: 10,
        received: 10,
      });
      expect(await ping(net.client, server.ipv6, { count: 10 })).toEqual({
        sent: 10,
        received: 10,
      });
    }
    const after = await readForwardCounters(net.router.netns);
    // 20 requests and 20 replies per family, and nothing else: the links are quiet.
    expect({ ipv4: after.ipv4 - before.ipv4, ipv6: after.ipv6 - before.ipv6 }).toEqual({
      ipv4: 40,
      ipv6: 40,
    });
  });

  it('delivers exactly 1000 of 1000 UDP datagrams sent at 2000 per second', async () => {
    const result = await udpStream({
      from: net.client,
      to: net.server1,
      count: 1000,
      rate: 2000,
      size: 100,
      port: 9000,
      sourcePort: 40000,
    });
    expect(result).toMatchObject({ sent: 1000, received: 1000, bytes: 100_000, lost: 0 });
  });

  it('keeps a steady IPv6 stream of 500 datagrams per second whole for half a second', async () => {
    const result = await steadyStream({
      from: net.client,
      to: net.server2,
      family: 'ipv6',
      rate: 500,
      durationMs: 500,
    });
    expect(result).toMatchObject({ sent: 250, received: 250, lost: 0 });
  });

  it('carries an iperf3 TCP transfer through the router for one second', async () => {
    const result = await runIperf({ client: net.client, server: net.server1, seconds: 1 });
    expect(result.error).toBeUndefined();
    expect(result.ok).toBe(true);
    expect(result.bytes).toBeGreaterThan(0);
  });

  it('moves exactly 1 MiB over one TCP connection to the second server over IPv6', async () => {
    const result = await transferTcp({
      from: net.client,
      to: net.server2,
      family: 'ipv6',
      bytes: 1 << 20,
    });
    expect(result).toEqual({ ok: true, sent: 1 << 20, received: 1 << 20 });
  });

  it('sends a trafgen flood of 20000 frames that the router device counts', async () => {
    const count = 20_000;
    const side = net.router.client;
    const before = await readDeviceStats(side.netns, side.device);
    const started = Date.now();
    const result = await flood({
      from: net.client,
      nextHop: side,
      to: net.server1.ipv4,
      count,
      durationMs: 2000,
    });
    expect(Date.now() - started).toBeLessThan(5000);
    expect(result).toEqual({ sent: count, bytes: count * 60 });
    const after = await readDeviceStats(side.netns, side.device);
    expect(after.rx_packets - before.rx_packets).toBeGreaterThanOrEqual(count);
  });

  it('delivers frames the router XDP-redirects to a host running XDP_PASS, past kernel forwarding', async () => {
    const other = new Lab();
    try {
      const xdp = await other.router({ passXdp: true });
      for (const host of [xdp.client, xdp.server1, xdp.server2]) {
        const link = await other.exec(host.netns, ['ip', '-d', 'link', 'show', host.device]);
        expect(link).toMatch(/prog\/xdp id \d+ name sl_pass/);
      }
      const redirect = loadProgram({
        type: 'xdp',
        insns: redirectInsns(xdp.router.server1.ifindex),
        name: 'sl_redirect',
      });
      try {
        const link = attachXdp(redirect, xdp.router.client.device, {
          netns: xdp.router.netns,
          mode: 'native',
        });
        const forwarded = await readForwardCounters(xdp.router.netns);
        // The redirect takes every frame the client sends, its own chatter too (a late MLD
        // report, say): count the flood's frames where they arrive, not the device's total.
        const file = join(mkdtempSync(join(tmpdir(), 'sluice-redirect-')), 'server1.pcap');
        const capture = await startCapture(xdp.server1, {
          device: xdp.server1.device,
          file,
          count: 1000,
          direction: 'in',
          filter: `udp and dst host ${xdp.server1.ipv4}`,
          snapLength: 96,
        });
        const before = await readDeviceStats(xdp.server1.netns, xdp.server1.device);
        const sent = await flood({
          from: xdp.client,
          nextHop: xdp.router.client,
          to: xdp.server1.ipv4,
          count: 1000,
          durationMs: 2000,
        });
        const captured = await capture.stop();
        const after = await readDeviceStats(xdp.server1.netns, xdp.server1.device);
        link.close();
        rmSync(dirname(file), { recursive: true, force: true });
        expect(sent.sent).toBe(1000);
        expect(captured.matched).toBe(1000);
        expect(after.rx_packets - before.rx_packets).toBeGreaterThanOrEqual(1000);
        expect(await readForwardCounters(xdp.router.netns)).toEqual(forwarded);
      } finally {
        redirect.close();
      }
    } finally {
      await other.destroy();
    }
    expect(namespacesOf(other.id)).toEqual([]);
  });

  it('leaves no namespace behind once destroyed', async () => {
    await lab.destroy();
    expect(namespacesOf(lab.id)).toEqual([]);
  });
});
