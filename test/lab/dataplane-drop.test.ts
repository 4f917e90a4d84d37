// A drop rule on a prefix set, in native XDP on the router: exactly the set's sources are dropped, every other packet flows, and the counters account for each frame.
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { DataplaneSpec } from '../../controller/dataplane/dataplane.js';
import { formatPrefix, parsePrefix } from '../../controller/dataplane/model.js';
import { udpStream, type UdpStreamResult } from '../../netns-lab/traffic.js';
import { describeKernel } from '../helpers/privileges.js';
import {
  addClientAddresses,
  counterDelta,
  countersOf,
  framesSent,
  openDataplaneLab,
  sleep,
  udpFrameBytes,
  type DataplaneLab,
} from './dataplane-lab.js';

const N = 1000;
const RATE = 2000;
const SIZE = 64;

await describeKernel('a drop rule on a prefix set in native XDP on the router', () => {
  let x: DataplaneLab;
  let blocked: { ipv4: string; ipv6: string };

  const spec = (): DataplaneSpec => ({
    sets: [{ name: 'blocklist', prefixes: [`${blocked.ipv4}/32`, `${blocked.ipv6}/128`] }],
    attachments: [
      {
        device: x.net.router.client.device,
        hook: 'xdp',
        mode: 'native',
        rules: {
          rules: [{ id: 'blk', srcSet: 'blocklist', action: 'drop' }],
          defaultAction: 'pass',
        },
      },
    ],
  });

  /** One stream of N datagrams from the client to server1, from `source`. */
  const stream = (source: string, port: number): Promise<UdpStreamResult> =>
    udpStream({
      from: x.net.client,
      to: x.net.server1,
      address: source.includes(':') ? x.net.server1.ipv6 : x.net.server1.ipv4,
      sourceAddress: source,
      port,
      count: N,
      rate: RATE,
      size: SIZE,
    });

  beforeAll(async () => {
    x = await openDataplaneLab();
    // A second address of each family on the client: its streams are the blocked ones.
    blocked = await addClientAddresses(x.net, x.lab, '192.0.2.3', '2001:db8:1::3');
    await x.dp.apply(spec());
    // Adding the IPv6 address sent its MLD reports through the router: let them pass before any
    // test takes its "before" reading.
    await sleep(200);
  });

  afterAll(async () => {
    await x?.destroy();
  });

  it('drops both families from the set and lets the other source through, counting every frame', async () => {
    const { net, dp } = x;
    const side = net.router.client.device;
    const before = countersOf(dp, side);
    const framesBefore = await framesSent(net.client.netns, net.client.device);

    // The allowed and the blocked stream of each family run side by side.
    const [allowed4, blocked4] = await Promise.all([
      stream(net.client.ipv4, 9000),
      stream(blocked.ipv4, 9001),
    ]);
    const [allowed6, blocked6] = await Promise.all([
      stream(net.client.ipv6, 9002),
      stream(blocked.ipv6, 9003),
    ]);

    const delta = counterDelta(countersOf(dp, side), before);
    const frames = (await framesSent(net.client.netns, net.client.device)) - framesBefore;

    for (const allowed of [allowed4, allowed6]) {
      expect(allowed).toMatchObject({ sent: N, received: N, lost: 0 });
    }
    for (const dropped of [blocked4, blocked6]) {
      expect(dropped).toMatchObject({ sent: N, received: 0, lost: N });
    }
    // The links are quiet (static neighbours, no link-local addresses, no DAD or router
    // solicitations): the client sent the 4 N datagrams and nothing else, and every frame it
    // sent crossed the router's device once.
    expect(frames).toBe(4 * N);
    const dropBytes = N * (udpFrameBytes('ipv4', SIZE) + udpFrameBytes('ipv6', SIZE));
    expect(delta.rules.blk).toEqual({ packets: 2 * N, bytes: dropBytes });
    expect(delta.drop).toEqual({ packets: 2 * N, bytes: dropBytes });
    expect(delta.pass).toEqual({ packets: 2 * N, bytes: dropBytes });
    expect(delta.redirect).toEqual({ packets: 0, bytes: 0 });
    // The allowed packets passed by the default action, each once.
    expect(delta.events).toMatchObject({ default: 2 * N, malformed: 0, truncated: 0 });
  });

  it('follows the set as prefixes leave and come back, without touching the rule', async () => {
    const { net, dp } = x;
    const side = net.router.client.device;

    expect(await dp.removePrefixes('blocklist', [`${blocked.ipv4}/32`])).toBeGreaterThan(0);
    // setMembers() writes IPv6 in full groups; compare canonical forms.
    const members = (await dp.setMembers('blocklist')).map((m) => formatPrefix(parsePrefix(m)));
    expect(members).toEqual([`${blocked.ipv6}/128`]);
    let before = countersOf(dp, side);
    const [out4, still6] = await Promise.all([
      stream(blocked.ipv4, 9001),
      stream(blocked.ipv6, 9003),
    ]);
    expect(out4).toMatchObject({ sent: N, received: N });
    expect(still6).toMatchObject({ sent: N, received: 0 });
    let delta = counterDelta(countersOf(dp, side), before);
    expect(delta.rules.blk.packets).toBe(N);
    expect({ pass: delta.pass.packets, drop: delta.drop.packets }).toEqual({ pass: N, drop: N });

    await dp.addPrefixes('blocklist', [`${blocked.ipv4}/32`]);
    before = countersOf(dp, side);
    const [back4, allowed4] = await Promise.all([
      stream(blocked.ipv4, 9001),
      stream(net.client.ipv4, 9000),
    ]);
    expect(back4).toMatchObject({ sent: N, received: 0 });
    expect(allowed4).toMatchObject({ sent: N, received: N });
    delta = counterDelta(countersOf(dp, side), before);
    expect(delta.rules.blk.packets).toBe(N);
    expect({ pass: delta.pass.packets, drop: delta.drop.packets }).toEqual({ pass: N, drop: N });
  });
});
