// Adoption when a pinned attachment's device went away while no process held the data plane.
import { afterAll, beforeAll, expect, it } from 'vitest';

import { Dataplane } from '../../controller/dataplane/dataplane.js';
import type { Lab, PairTopology } from '../../netns-lab/lab.js';
import { ipv4Frame } from '../helpers/packets/build.js';
import { openPairDataplane } from '../helpers/pair-dataplane.js';
import { describeKernel } from '../helpers/privileges.js';

const XDP_DROP = 1;
const XDP_PASS = 2;
const UDP = 17;

/** A UDP frame to `dport`, 8 bytes of payload. */
function udp(dport: number): Uint8Array {
  const l4 = Buffer.alloc(16);
  l4.writeUInt16BE(1000, 0);
  l4.writeUInt16BE(dport, 2);
  l4.writeUInt16BE(16, 4);
  return ipv4Frame(UDP, l4, { src: '192.0.2.1', dst: '198.51.100.1' });
}

await describeKernel('adopting a data plane whose device is gone', () => {
  let lab: Lab;
  let net: PairTopology;
  let dir: string;
  let dp: Dataplane;
  const name = (): string => `${net.right.device}@xdp`;
  const spec = () => ({
    attachments: [
      {
        device: net.right.device,
        rules: {
          rules: [{ id: 'dns', proto: 'udp' as const, dport: 53, action: 'drop' as const }],
        },
      },
    ],
  });

  beforeAll(async () => {
    ({ lab, net, dir, dp } = await openPairDataplane());
  });

  afterAll(async () => {
    await dp?.destroy().catch(() => undefined);
    await lab?.destroy();
  });

  it('opens anyway, reports the attachment, and attaches again once the device is back', async () => {
    await dp.apply(spec());
    const [before] = dp.counters();
    dp.close();

    await lab.exec(net.right.netns, ['ip', 'link', 'del', net.right.device]);
    dp = await Dataplane.open({ dir, netns: net.right.netns });
    expect(dp.adoptProblems.map((p) => p.attachment)).toEqual([name()]);
    expect(dp.attachments.get(name())?.attached).toBe(false);
    await expect(dp.apply(spec())).rejects.toMatchObject({ code: 'DEVICE_NOT_FOUND' });

    await lab.exec(net.right.netns, [
      'ip',
      'link',
      'add',
      net.right.device,
      'type',
      'veth',
      'peer',
      'name',
      `${net.right.device}p`,
    ]);
    await lab.exec(net.right.netns, ['ip', 'link', 'set', net.right.device, 'up']);
    const report = await dp.apply(spec());
    expect(report.attached).toEqual([name()]);
    const att = dp.attachments.get(name())!;
    expect((await att.program.testRun({ data: udp(53) })).retval).toBe(XDP_DROP);
    expect((await att.program.testRun({ data: udp(54) })).retval).toBe(XDP_PASS);
    // The maps were pinned all along: the counters went on from where they were.
    const [after] = dp.counters();
    expect(after.actions.drop.packets).toBe(before.actions.drop.packets + 1);
    expect(after.rules.map((r) => [r.id, r.packets])).toEqual([['dns', 1]]);
  });
});
