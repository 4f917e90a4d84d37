// TC egress rules on a router device act on the traffic the router sends itself (and on what it forwards): exactly the matching packets are dropped, the rest leave, counted exactly.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ping, udpStream } from '../../netns-lab/traffic.js';
import { describeKernel } from '../helpers/privileges.js';
import {
  counterDelta,
  countersOf,
  openDataplaneLab,
  udpFrameBytes,
  type DataplaneLab,
} from './dataplane-lab.js';

const N = 500;
const SIZE = 64;
/** Ping frames: Ethernet 14, IPv4 20, ICMP 8, ping's 56 bytes. */
const PING4 = 98;

await describeKernel('TC egress rules on a router device', () => {
  let x: DataplaneLab;

  beforeAll(async () => {
    x = await openDataplaneLab();
    await x.dp.apply({
      attachments: [
        {
          device: x.net.router.server1.device,
          hook: 'tc-egress',
          rules: {
            rules: [
              { id: 'no-9300', proto: 'udp', dport: 9300, action: 'drop' },
              // The test sends no ICMPv6: what this rule sees is the kernel's own (an MLD
              // report now and then, quiet links or not), counted apart from the test's frames.
              { id: 'kernel-icmpv6', proto: 'icmpv6', action: 'pass' },
            ],
            defaultAction: 'pass',
          },
        },
      ],
    });
  });

  afterAll(async () => {
    await x?.destroy();
  });

  it('drops the UDP the router itself sends to the port, on both families, and nothing else', async () => {
    const { net, dp } = x;
    const side = net.router.server1.device;
    const router = { netns: net.router.netns };
    const before = countersOf(dp, side, 'tc-egress');
    const stream = (port: number, family: 'ipv4' | 'ipv6') =>
      udpStream({ from: router, to: net.server1, port, family, count: N, rate: 2000, size: SIZE });

    const [blocked4, blocked6, allowed4, pings] = await Promise.all([
      stream(9300, 'ipv4'),
      stream(9300, 'ipv6'),
      stream(9301, 'ipv4'),
      ping(router, net.server1.ipv4, { count: 20 }),
    ]);

    const delta = counterDelta(countersOf(dp, side, 'tc-egress'), before);
    // The sockets were told nothing: a drop at egress is not an error a UDP send reports.
    expect(blocked4).toMatchObject({ sent: N, received: 0 });
    expect(blocked6).toMatchObject({ sent: N, received: 0 });
    expect(allowed4).toMatchObject({ sent: N, received: N, lost: 0 });
    expect(pings).toEqual({ sent: 20, received: 20 });

    // At egress TC sees whole frames (skb->len with the Ethernet header), as XDP does at ingress.
    // What left through the device in that time: the allowed stream and the 20 echo requests
    // (the replies come in, not out), and any ICMPv6 of the kernel's own, counted by its rule.
    const dropped = N * (udpFrameBytes('ipv4', SIZE) + udpFrameBytes('ipv6', SIZE));
    const kernel = delta.rules['kernel-icmpv6'];
    expect(delta.rules['no-9300']).toEqual({ packets: 2 * N, bytes: dropped });
    expect(delta.drop).toEqual({ packets: 2 * N, bytes: dropped });
    expect(delta.pass).toEqual({
      packets: N + 20 + kernel.packets,
      bytes: N * udpFrameBytes('ipv4', SIZE) + 20 * PING4 + kernel.bytes,
    });
    expect(delta.events.default).toBe(N + 20);
    expect(kernel.packets).toBeLessThan(10);
  });

  it('drops the same port in traffic the router forwards out of that device', async () => {
    const { net, dp } = x;
    const side = net.router.server1.device;
    const before = countersOf(dp, side, 'tc-egress');
    const [blocked, allowed] = await Promise.all(
      [9300, 9301].map((port) =>
        udpStream({ from: net.client, to: net.server1, port, count: N, rate: 2000 }),
      ),
    );
    const delta = counterDelta(countersOf(dp, side, 'tc-egress'), before);
    expect(blocked).toMatchObject({ sent: N, received: 0 });
    expect(allowed).toMatchObject({ sent: N, received: N });
    expect(delta.rules['no-9300'].packets).toBe(N);
    const kernel = delta.rules['kernel-icmpv6'].packets;
    expect({ drop: delta.drop.packets, pass: delta.pass.packets }).toEqual({
      drop: N,
      pass: N + kernel,
    });
  });
});
