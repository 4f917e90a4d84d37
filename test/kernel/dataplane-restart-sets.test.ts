// A restart does not read a million set entries back when the tries already hold the desired
// texts: what the last complete load wrote is recorded in pins and trusted until a change.
import { afterAll, beforeAll, expect, it } from 'vitest';

import { Dataplane, type DataplaneSpec } from '../../controller/dataplane/dataplane.js';
import type { Lab, PairTopology } from '../../netns-lab/lab.js';
import { ipv4Frame } from '../helpers/packets/build.js';
import { openPairDataplane } from '../helpers/pair-dataplane.js';
import { describeKernel } from '../helpers/privileges.js';

const XDP_DROP = 1;
const XDP_PASS = 2;

function udpFrom(src: string): Uint8Array {
  const l4 = Buffer.alloc(16);
  l4.writeUInt16BE(1000, 0);
  l4.writeUInt16BE(53, 2);
  l4.writeUInt16BE(16, 4);
  return ipv4Frame(17, l4, { src, dst: '198.51.100.1' });
}

await describeKernel('set tries across a restart', () => {
  let lab: Lab;
  let net: PairTopology;
  let dir: string;
  let dp: Dataplane;
  const spec = (): DataplaneSpec => ({
    sets: [
      { name: 'blocked', prefixes: ['192.0.2.0/25', '2001:db8:bad::/48'] },
      { name: 'other', prefixes: ['192.0.2.0/24'] },
    ],
    attachments: [
      {
        device: net.right.device,
        rules: { rules: [{ id: 'b', srcSet: 'blocked', action: 'drop' }] },
      },
    ],
  });
  const verdict = async (src: string): Promise<number> =>
    (await [...dp.attachments.values()][0].program.testRun({ data: udpFrom(src) })).retval;
  const reopen = async (): Promise<void> => {
    dp.close();
    dp = await Dataplane.open({ dir, netns: net.right.netns });
  };

  beforeAll(async () => {
    ({ lab, net, dir, dp } = await openPairDataplane());
  });

  afterAll(async () => {
    await dp?.destroy().catch(() => undefined);
    await lab?.destroy();
  });

  it('trusts the recorded load: the same texts after a restart read and write nothing', async () => {
    await dp.apply(spec());
    const name = `${net.right.device}@xdp`;
    const generation = dp.attachments.get(name)!.generation;
    await reopen();
    const report = await dp.apply(spec());
    expect(report.setEntries).toBe(0);
    expect(dp.sets.loaded).toBe(false);
    // The rule set is the one the pins say was written last: no generation flip either.
    expect(report.unchanged).toEqual([name]);
    expect(dp.attachments.get(name)!.generation).toBe(generation);
    expect(dp.counters()[0].rules.map((r) => r.id)).toEqual(['b']);
    expect(await verdict('192.0.2.1')).toBe(XDP_DROP);
    expect(await verdict('192.0.2.200')).toBe(XDP_PASS);
  });

  it('reads the tries back on the first incremental change, which then sees every member', async () => {
    await dp.addPrefixes('blocked', ['203.0.113.9']);
    expect(dp.sets.loaded).toBe(true);
    expect((await dp.setMembers('blocked')).sort()).toEqual([
      '192.0.2.0/25',
      '2001:db8:bad:0:0:0:0:0/48',
      '203.0.113.9/32',
    ]);
    expect(await verdict('203.0.113.9')).toBe(XDP_DROP);
    expect(await verdict('192.0.2.1')).toBe(XDP_DROP);
  });

  it('does a full load after a restart that follows an incremental change', async () => {
    await reopen();
    // The recorded texts no longer describe the tries: the desired texts are loaded whole.
    const report = await dp.apply(spec());
    expect(dp.sets.loaded).toBe(true);
    // The IPv6 trie is read back and diffed (nothing changes there); the IPv4 ranges cannot give
    // their prefixes back, so the desired IPv4 texts are written whole: 192.0.2.0/25 and /24.
    expect(report.setEntries).toBe(2);
    expect(await verdict('203.0.113.9')).toBe(XDP_PASS); // not in the desired text: gone
    expect(await verdict('192.0.2.1')).toBe(XDP_DROP);
    // …and that load is recorded again, so the next restart is quick once more.
    await reopen();
    expect((await dp.apply(spec())).setEntries).toBe(0);
    expect(dp.sets.loaded).toBe(false);
  });

  it('writes a changed rule set after a restart as a new generation', async () => {
    await reopen();
    const changed = spec();
    changed.attachments![0].rules.rules.push({ id: 'c', proto: 'tcp', action: 'count' });
    const report = await dp.apply(changed);
    expect(report.updated).toEqual([`${net.right.device}@xdp`]);
    await reopen();
    expect((await dp.apply(changed)).unchanged).toEqual([`${net.right.device}@xdp`]);
  });

  it('loads a changed text after a restart even when the set names are the same', async () => {
    await reopen();
    const changed = spec();
    changed.sets = [
      { name: 'blocked', prefixes: ['192.0.2.0/26'] },
      { name: 'other', prefixes: ['192.0.2.0/24'] },
    ];
    await dp.apply(changed);
    expect(dp.sets.loaded).toBe(true);
    expect(await verdict('192.0.2.70')).toBe(XDP_PASS);
    expect(await verdict('192.0.2.10')).toBe(XDP_DROP);
  });
});
