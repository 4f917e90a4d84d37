// The data plane's life: apply, atomic generation flips, adoption by a new process, detach and cleanup.
import { existsSync } from 'node:fs';

import { afterAll, beforeAll, expect, it } from 'vitest';

import { getLinkById, openPinned } from '../../bpf/index.js';
import { Dataplane, type DataplaneSpec } from '../../controller/dataplane/dataplane.js';
import type { RuleSetSpec } from '../../controller/dataplane/model.js';
import { Lab, type PairTopology } from '../../netns-lab/lab.js';
import { concat, ipv4Frame, tcpHeader, udpHeader } from '../helpers/packets/build.js';
import { openPairDataplane } from '../helpers/pair-dataplane.js';
import { describeKernel } from '../helpers/privileges.js';

const XDP_DROP = 1;
const XDP_PASS = 2;
function udp(src: string, dport: number): Uint8Array {
  const l4 = concat(udpHeader(1000, dport, 4), new Uint8Array(4));
  return ipv4Frame(17, l4, { src, dst: '198.51.100.1' });
}

function tcp(src: string, dport = 80): Uint8Array {
  const l4 = tcpHeader({ sport: 4000, dport, flags: 0x02 });
  return ipv4Frame(6, l4, { src, dst: '198.51.100.1' });
}

/** The rule set after the first change: TCP port 80 is dropped too, ahead of DNS. */
const WEB_AND_DNS: RuleSetSpec = {
  rules: [
    { id: 'web', proto: 'tcp', dport: 80, action: 'drop', priority: 10 },
    { id: 'dns', proto: 'udp', dport: 53, action: 'drop' },
  ],
};

await describeKernel('the data plane', () => {
  let lab: Lab;
  let net: PairTopology;
  let dir: string;
  let dp: Dataplane;

  const spec = (rules: RuleSetSpec): DataplaneSpec => ({
    sets: [{ name: 'blocklist', prefixes: ['192.0.2.0/24', '2001:db8:bad::/48'] }],
    attachments: [{ device: net.right.device, hook: 'xdp', rules }],
  });
  const verdict = async (frame: Uint8Array): Promise<number> =>
    (await [...dp.attachments.values()][0].program.testRun({ data: frame })).retval;

  beforeAll(async () => {
    ({ lab, net, dir, dp } = await openPairDataplane());
  });

  afterAll(async () => {
    await dp?.destroy().catch(() => undefined);
    await lab?.destroy();
  });

  it('attaches a rule set and applies it to packets', async () => {
    const report = await dp.apply(
      spec({
        rules: [
          { id: 'dns', proto: 'udp', dport: 53, action: 'drop' },
          { id: 'blocked', srcSet: 'blocklist', action: 'drop' },
        ],
      }),
    );
    expect(report.attached).toEqual([`${net.right.device}@xdp`]);
    expect(await verdict(udp('10.0.0.1', 53))).toBe(XDP_DROP);
    expect(await verdict(udp('10.0.0.1', 54))).toBe(XDP_PASS);
    expect(await verdict(tcp('192.0.2.77'))).toBe(XDP_DROP);
    expect(await verdict(tcp('203.0.113.7'))).toBe(XDP_PASS);
    const [counters] = dp.counters();
    expect(counters.actions.drop.packets).toBe(2);
    expect(counters.actions.pass.packets).toBe(2);
    expect(counters.rules.map((r) => [r.id, r.packets])).toEqual([
      ['dns', 1],
      ['blocked', 1],
    ]);
    expect(counters.rules[0].lastHit).toBeInstanceOf(Date);
  });

  it('pins its link and maps under its directory', () => {
    const base = `${dir}/att/${net.right.device}@xdp`;
    expect(existsSync(`${base}/link`)).toBe(true);
    expect(existsSync(`${base}/sl_rules`)).toBe(true);
    expect(existsSync(`${dir}/sl_set4_dir`)).toBe(true);
    expect(existsSync(`${dir}/sl_set6`)).toBe(true);
  });

  it('flips to a new generation on a change and keeps the counters of rules that stay', async () => {
    const before = [...dp.attachments.values()][0].generation;
    const report = await dp.apply(spec(WEB_AND_DNS));
    expect(report.updated).toEqual([`${net.right.device}@xdp`]);
    const att = [...dp.attachments.values()][0];
    expect(att.generation).not.toBe(before);
    expect(await verdict(tcp('203.0.113.7'))).toBe(XDP_DROP);
    expect(await verdict(tcp('192.0.2.77', 22))).toBe(XDP_PASS);
    const [counters] = dp.counters();
    expect(counters.rules.map((r) => [r.id, r.packets])).toEqual([
      ['web', 1],
      ['dns', 1],
    ]);
  });

  it('reports an unchanged attachment without writing a generation', async () => {
    const att = [...dp.attachments.values()][0];
    const gen = att.generation;
    const report = await dp.apply(spec(WEB_AND_DNS));
    expect(report.unchanged).toEqual([`${net.right.device}@xdp`]);
    expect(att.generation).toBe(gen);
  });

  it('rejects a bad rule set before it changes anything', async () => {
    const gen = [...dp.attachments.values()][0].generation;
    await expect(
      dp.apply(spec({ rules: [{ id: 'bad', proto: 'udp', dport: 70000, action: 'drop' }] })),
    ).rejects.toMatchObject({ code: 'RULE_INVALID', field: 'dport' });
    await expect(
      dp.apply(spec({ rules: [{ id: 'nosuch', srcSet: 'nosuch', action: 'drop' }] })),
    ).rejects.toMatchObject({ code: 'SET_NOT_FOUND' });
    expect([...dp.attachments.values()][0].generation).toBe(gen);
    expect(await verdict(tcp('203.0.113.7'))).toBe(XDP_DROP);
  });

  it('is adopted by a new process of another build: program replaced behind the same link, counters kept', async () => {
    const base = `${dir}/att/${net.right.device}@xdp`;
    const pinned = openPinned(`${base}/link`);
    if (pinned.kind !== 'link') throw new Error('expected a pinned link');
    const linkId = pinned.link.id;
    const progBefore = pinned.link.info().progId;
    pinned.link.close();
    const dropsBefore = dp.counters()[0].actions.drop.packets;
    dp.close();

    // As an upgraded sluice does (the same build adopts its pinned programs as they are).
    dp = await Dataplane.open({ dir, netns: net.right.netns, reloadPrograms: true });
    const att = dp.attachments.get(`${net.right.device}@xdp`)!;
    expect(att).toBeDefined();
    const link = getLinkById(linkId);
    try {
      expect(link.info().progId).not.toBe(progBefore);
      expect(link.info().progId).toBe(att.program.id);
    } finally {
      link.close();
    }
    // The rules are still in force before anything is applied, and the counters went on.
    expect(await verdict(tcp('203.0.113.7'))).toBe(XDP_DROP);
    expect(dp.counters()[0].actions.drop.packets).toBe(dropsBefore + 1);
    expect(dp.counters()[0].rules).toEqual([]); // rule objects come back with the next apply

    await dp.apply(spec(WEB_AND_DNS));
    const [counters] = dp.counters();
    expect(counters.rules.map((r) => [r.id, r.packets])).toEqual([
      ['web', 3],
      ['dns', 1],
    ]);
    expect((await dp.setMembers('blocklist')).sort()).toEqual([
      '192.0.2.0/24',
      '2001:db8:bad:0:0:0:0:0/48',
    ]);
  });

  it('changes one set cheaply and the next packet sees it', async () => {
    await dp.apply(spec({ rules: [{ id: 'blocked', srcSet: 'blocklist', action: 'drop' }] }));
    expect(await verdict(tcp('198.51.100.9'))).toBe(XDP_PASS);
    expect(await dp.addPrefixes('blocklist', ['198.51.100.0/24'])).toBe(1);
    expect(await verdict(tcp('198.51.100.9'))).toBe(XDP_DROP);
    expect(await dp.removePrefixes('blocklist', ['198.51.100.0/24'])).toBe(1);
    expect(await verdict(tcp('198.51.100.9'))).toBe(XDP_PASS);
  });

  it('detaches and unpins an attachment that leaves the desired state', async () => {
    const report = await dp.apply({ sets: [], attachments: [] });
    expect(report.detached).toEqual([`${net.right.device}@xdp`]);
    expect(existsSync(`${dir}/att/${net.right.device}@xdp`)).toBe(false);
    expect(dp.attachments.size).toBe(0);
  });

  it('removes every pin of the instance on destroy', async () => {
    await dp.destroy();
    expect(existsSync(dir)).toBe(false);
  });
});
