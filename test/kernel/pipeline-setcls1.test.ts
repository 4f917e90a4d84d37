// The class of an address held by one set comes from sl_setcls1, an array the loader writes beside
// the sl_setcls hash: it must say what the hash says for every one-set mask, follow each rule-set
// change, and, where it holds nothing (0, as a map a new build just added), leave the answer to
// the hash. Verdicts are checked for addresses in one set (the array), in two nested sets (the
// hash) and in none, IPv4 and IPv6, source and destination.
import { afterAll, beforeAll, expect, it } from 'vitest';

import { join } from 'node:path';

import { unpin, type BpfMap } from '../../bpf/index.js';
import { SL_DIM, SL_MAX_SETS, encodeSetclsKey, index } from '../../controller/dataplane/abi.js';
import type { Attachment } from '../../controller/dataplane/attachment.js';
import { Dataplane, type SetSpec } from '../../controller/dataplane/dataplane.js';
import type { RuleSpec } from '../../controller/dataplane/model.js';
import { encodeName, openNameTable } from '../../controller/dataplane/name-table.js';
import type { Lab, PairTopology } from '../../netns-lab/lab.js';
import {
  concat,
  ether,
  ipv4Frame,
  ipv6,
  ipv6Header,
  mac,
  udpHeader,
} from '../helpers/packets/build.js';
import { openPairDataplane } from '../helpers/pair-dataplane.js';
import { describeKernel } from '../helpers/privileges.js';

const XDP_DROP = 1;
const XDP_PASS = 2;

const SETS: SetSpec[] = [
  { name: 'wide', prefixes: ['10.0.0.0/8', '2001:db8::/32'] },
  { name: 'narrow', prefixes: ['10.1.0.0/16', '2001:db8:1::/48'] },
  { name: 'servers', prefixes: ['192.0.2.0/24', '2001:db8:ff::/48'] },
];

/** Drops what only `wide` holds at the source, and what `servers` holds at the destination. */
const RULES: RuleSpec[] = [
  { id: 'narrow-pass', srcSet: 'narrow', action: 'pass' },
  { id: 'servers-drop', dstSet: 'servers', action: 'drop' },
  { id: 'wide-drop', srcSet: 'wide', action: 'drop' },
];

function udp4(src: string, dst: string): Uint8Array {
  return ipv4Frame(17, udpHeader(4000, 53, 0), { src, dst });
}

function udp6(src: string, dst: string): Uint8Array {
  const l4 = udpHeader(4000, 53, 0);
  return concat(
    ether(mac('02:00:00:00:00:02'), mac('02:00:00:00:00:01'), 0x86dd),
    ipv6Header({ next: 17, src: ipv6(src), dst: ipv6(dst) }, l4.length),
    l4,
  );
}

/** [frame, what RULES decide for it, why]: one set, two nested sets, none; both families. */
const CASES: [Uint8Array, number, string][] = [
  [udp4('10.2.0.1', '198.51.100.1'), XDP_DROP, 'source in wide only'],
  [udp4('10.1.0.1', '198.51.100.1'), XDP_PASS, 'source in wide and narrow'],
  [udp4('203.0.113.1', '192.0.2.7'), XDP_DROP, 'destination in servers only'],
  [udp4('203.0.113.1', '198.51.100.1'), XDP_PASS, 'in no set'],
  [udp6('2001:db8:2::1', '2001:db8:ffff::1'), XDP_DROP, 'IPv6 source in wide only'],
  [udp6('2001:db8:1::1', '2001:db8:ffff::1'), XDP_PASS, 'IPv6 source in wide and narrow'],
  [udp6('2001:db9::1', '2001:db8:ff::7'), XDP_DROP, 'IPv6 destination in servers only (and wide)'],
  [udp6('2001:db9::1', '2001:dba::1'), XDP_PASS, 'IPv6 in no set'],
];

await describeKernel('one-set classes (sl_setcls1)', () => {
  let lab: Lab;
  let net: PairTopology;
  let dp: Dataplane;
  let dir: string;

  const att = (): Attachment => dp.attachments.get(`${net.right.device}@xdp`)!;
  const apply = (rules: RuleSpec[]): Promise<unknown> =>
    dp.apply({ sets: SETS, attachments: [{ device: net.right.device, rules: { rules } }] });
  const verdicts = async (): Promise<string[]> => {
    const out: string[] = [];
    for (const [frame, , why] of CASES)
      out.push(`${why}: ${(await att().program.testRun({ data: frame })).retval}`);
    return out;
  };
  const expected = CASES.map(([, verdict, why]) => `${why}: ${verdict}`);
  const u32 = (n: number): Buffer => Buffer.from(Uint32Array.of(n).buffer);
  /** The active generation's sl_setcls1, and sl_setcls's class of each one-set mask (or null). */
  const tables = (): { one: number[]; hash: (number | null)[] } => {
    const { sl_setcls1: one, sl_setcls: hash } = att().maps as Record<string, BpfMap>;
    const gen = att().generation;
    const out = { one: [] as number[], hash: [] as (number | null)[] };
    for (const dim of [SL_DIM.SSET, SL_DIM.DSET]) {
      for (let bit = 0; bit < SL_MAX_SETS; bit++) {
        const slot = (dim - SL_DIM.SSET) * SL_MAX_SETS + bit;
        out.one.push(one.lookup(u32(index.setcls1(gen, slot)))!.readUInt32LE(0));
        const cls = hash.lookup(encodeSetclsKey(gen, dim, 1n << BigInt(bit)));
        out.hash.push(cls ? cls.readUInt32LE(0) : null);
      }
    }
    return out;
  };

  beforeAll(async () => {
    ({ lab, net, dp, dir } = await openPairDataplane());
    await apply(RULES);
  });

  afterAll(async () => {
    await dp?.destroy().catch(() => undefined);
    await lab?.destroy();
  });

  it('holds class + 1 for every one-set mask the hash knows, and a class for every other', () => {
    const { one, hash } = tables();
    expect(one.every((v) => v > 0)).toBe(true);
    const known = hash.flatMap((cls, slot) => (cls === null ? [] : [[slot, cls + 1]]));
    // wide at SSET and servers at DSET (narrow lies inside wide: its masks have two bits)
    expect(known.length).toBe(2);
    expect(known).toEqual(known.map(([slot]) => [slot, one[slot]]));
  });

  it('decides one-set, nested and unheld addresses as the rules say, IPv4 and IPv6', async () => {
    expect(await verdicts()).toEqual(expected);
  });

  it('leaves the answer to the hash where it holds 0, with the same verdicts', async () => {
    const map = att().maps.sl_setcls1;
    const gen = att().generation;
    const held = tables().one;
    for (let slot = 0; slot < 2 * SL_MAX_SETS; slot++)
      map.update(u32(index.setcls1(gen, slot)), u32(0));
    try {
      expect(await verdicts()).toEqual(expected);
    } finally {
      // put back what the loader wrote, which its record of the generation says is there
      held.forEach((v, slot) => map.update(u32(index.setcls1(gen, slot)), u32(v)));
    }
  });

  it('follows a rule-set change: the next generation holds the new classes', async () => {
    // Without the wide rule, an address only in wide passes; the rest stays.
    await apply(RULES.filter((r) => r.id !== 'wide-drop'));
    const { one, hash } = tables();
    expect(one.every((v) => v > 0)).toBe(true);
    hash.forEach((cls, slot) => cls !== null && expect(one[slot]).toBe(cls + 1));
    const now = await verdicts();
    expect(now[0]).toBe(`${CASES[0][2]}: ${XDP_PASS}`);
    expect(now[4]).toBe(`${CASES[4][2]}: ${XDP_PASS}`);
    expect(now.filter((_, i) => i !== 0 && i !== 4)).toEqual(
      expected.filter((_, i) => i !== 0 && i !== 4),
    );
    // and back
    await apply(RULES);
    expect(tables().one.every((v) => v > 0)).toBe(true);
    expect(await verdicts()).toEqual(expected);
  });

  it("is created and written whole under an earlier build's pins, which lack it", async () => {
    const attDir = att().dir;
    dp.close();
    unpin(join(attDir, 'sl_setcls1'));
    // what an earlier build records of the generation it wrote: a key of its own build
    const written = openNameTable(join(attDir, 'sl_written'), 1, 'sl_written');
    written.update(Buffer.alloc(4), encodeName('an earlier build'));
    written.close();
    dp = await Dataplane.open({ dir, netns: net.right.netns });
    await apply(RULES);
    const { one, hash } = tables();
    expect(one.every((v) => v > 0)).toBe(true);
    hash.forEach((cls, slot) => cls !== null && expect(one[slot]).toBe(cls + 1));
    expect(await verdicts()).toEqual(expected);
  });
});
