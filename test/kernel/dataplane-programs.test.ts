// Which programs a restarted process runs: the ones this very build pinned (no verifier run, so
// a restart takes milliseconds per attachment), or new ones behind the same link when asked to
// reload or when another build pinned them.
import { afterAll, beforeAll, expect, it } from 'vitest';

import { openPinned } from '../../bpf/index.js';
import { Dataplane } from '../../controller/dataplane/dataplane.js';
import { encodeName } from '../../controller/dataplane/name-table.js';
import type { Lab, PairTopology } from '../../netns-lab/lab.js';
import { openPairDataplane } from '../helpers/pair-dataplane.js';
import { describeKernel } from '../helpers/privileges.js';

await describeKernel('the programs a restarted data plane runs', () => {
  let lab: Lab;
  let net: PairTopology;
  let dir: string;
  let dp: Dataplane;
  const name = (): string => `${net.right.device}@xdp`;
  const programId = (): number => dp.attachments.get(name())!.program.id;
  /** The program the device's link runs, as the kernel says. */
  const linkedId = (): number => {
    const pinned = openPinned(`${dir}/att/${name()}/link`);
    if (pinned.kind !== 'link') throw new Error('no link pinned');
    try {
      return pinned.link.info().progId;
    } finally {
      pinned.link.close();
    }
  };

  beforeAll(async () => {
    ({ lab, net, dir, dp } = await openPairDataplane());
    await dp.apply({
      attachments: [
        {
          device: net.right.device,
          rules: { rules: [{ id: 'dns', proto: 'udp', dport: 53, action: 'drop' }] },
        },
      ],
    });
  });

  afterAll(async () => {
    await dp?.destroy().catch(() => undefined);
    await lab?.destroy();
  });

  it('adopts the programs this build pinned, as they run', async () => {
    const first = programId();
    dp.close();
    const started = performance.now();
    dp = await Dataplane.open({ dir, netns: net.right.netns });
    const ms = performance.now() - started;
    expect(programId()).toBe(first);
    expect(linkedId()).toBe(first);
    console.log(`adopted one attachment's pinned programs in ${ms.toFixed(0)} ms`);
  });

  it('loads new programs behind the same link when asked to reload', async () => {
    const before = programId();
    dp.close();
    dp = await Dataplane.open({ dir, netns: net.right.netns, reloadPrograms: true });
    expect(programId()).not.toBe(before);
    expect(linkedId()).toBe(programId());
  });

  it('loads new programs when another build pinned the ones there', async () => {
    const before = programId();
    dp.close();
    const stamp = openPinned(`${dir}/att/${name()}/sl_build`);
    if (stamp.kind !== 'map') throw new Error('no build stamp pinned');
    stamp.map.update(Buffer.alloc(4), encodeName('xdp:an-older-build'));
    stamp.map.close();
    dp = await Dataplane.open({ dir, netns: net.right.netns });
    expect(programId()).not.toBe(before);
    expect(linkedId()).toBe(programId());
  });
});
