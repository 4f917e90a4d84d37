// IPv4 set membership as the pipeline reads it: ranges per /16 (small, big and dense blocks),
// checked against brute force over the prefix texts, in the kernel maps and in the verdicts, while
// changes move a /16 through every representation.
import { afterAll, beforeAll, expect, it } from 'vitest';

import { Dataplane, type DataplaneSpec } from '../../controller/dataplane/dataplane.js';
import {
  SET4_BIG,
  SET4_DENSE,
  SET4_NONE,
  SET4_SMALL,
  set4MaskOf,
} from '../../controller/dataplane/set4-blocks.js';
import { u32 } from '../../controller/dataplane/abi.js';
import { LimitExceededError } from '../../controller/dataplane/errors.js';
import type { Lab, PairTopology } from '../../netns-lab/lab.js';
import { ipv4Frame } from '../helpers/packets/build.js';
import { Prng } from '../helpers/packets/prng.js';
import { openPairDataplane } from '../helpers/pair-dataplane.js';
import { describeKernel } from '../helpers/privileges.js';

const XDP_DROP = 1;
const XDP_PASS = 2;
const NAMES = ['a', 'b', 'c'] as const;

interface P4 {
  net: number;
  len: number;
}

const size = (len: number): number => 2 ** (32 - len);
const text = (p: P4): string =>
  `${p.net >>> 24}.${(p.net >>> 16) & 255}.${(p.net >>> 8) & 255}.${p.net & 255}/${p.len}`;
const bytes = (a: number): Uint8Array =>
  Uint8Array.of(a >>> 24, (a >>> 16) & 255, (a >>> 8) & 255, a & 255);
const dotted = (a: number): string => text({ net: a, len: 32 }).slice(0, -3);

function prefix(prng: Prng, within: P4, len: number): P4 {
  const span = size(within.len) / size(len);
  return { net: within.net + prng.int(span) * size(len), len };
}

/** Each set's prefixes: nested shapes spread so that one /16 of each representation exists. */
function randomSets(seed: number): Map<string, P4[]> {
  const prng = new Prng(seed);
  const sets = new Map<string, P4[]>(NAMES.map((n) => [n, []]));
  const add = (p: P4): void => {
    sets.get(NAMES[prng.int(NAMES.length)])!.push(p);
  };
  const at = (a: number, b: number): P4 => ({ net: ((a << 24) | (b << 16)) >>> 0, len: 16 });
  add({ net: 10 << 24, len: 8 }); // under everything in 10/8
  add({ net: (10 << 24) | (32 << 16), len: 12 });
  for (let i = 0; i < 3; i++) add(prefix(prng, at(10, 1), 20 + prng.int(13))); // small
  for (let i = 0; i < 24; i++) add(prefix(prng, at(10, 2), 17 + prng.int(16))); // big
  for (let i = 0; i < 3000; i++) add(prefix(prng, at(10, 3), 28 + prng.int(5))); // dense
  for (let i = 0; i < 200; i++) add(prefix(prng, { net: 0, len: 0 }, 16 + prng.int(17))); // anywhere
  return sets;
}

/** The mask brute force gives: bit i for every set i with a prefix holding `a`. */
function bruteMask(sets: Map<string, P4[]>, bits: ReadonlyMap<string, number>, a: number): number {
  let mask = 0;
  for (const [name, list] of sets) {
    for (const p of list) if (a >= p.net && a < p.net + size(p.len)) mask |= 1 << bits.get(name)!;
  }
  return mask >>> 0;
}

/** Addresses worth asking about: every prefix's edges and their neighbours, and random ones. */
function probes(sets: Map<string, P4[]>, prng: Prng, random: number): number[] {
  const out = new Set<number>();
  for (const list of sets.values()) {
    for (const p of list) {
      const last = p.net + size(p.len) - 1;
      for (const a of [p.net - 1, p.net, p.net + 1, last - 1, last, last + 1]) {
        if (a >= 0 && a < 2 ** 32) out.add(a);
      }
    }
  }
  for (let i = 0; i < random; i++) out.add(prng.next() >>> 0);
  return [...out];
}

await describeKernel('IPv4 set ranges', () => {
  let lab: Lab;
  let net: PairTopology;
  let dp: Dataplane;
  let sets: Map<string, P4[]>;

  const spec = (): DataplaneSpec => ({
    sets: [...sets].map(([name, list]) => ({ name, prefixes: list.map(text) })),
    attachments: [
      {
        device: net.right.device,
        rules: { rules: [{ id: 'drop-a', srcSet: 'a', action: 'drop' }] },
      },
    ],
  });
  const maps = () => {
    const s = dp.sets.set4;
    return { dir: s.dir, small: s.small, big: s.big, dense: s.denseMap };
  };
  const kindOf = (a: number): number =>
    maps()
      .dir.lookup(u32(a >>> 16))!
      .readUInt32LE(0);
  /** Kernel masks against brute force for `addresses`; returns the mismatches, as text. */
  const mismatches = (addresses: number[]): string[] => {
    const bits = dp.sets.bits;
    const bad: string[] = [];
    for (const a of addresses) {
      const kernel = set4MaskOf(maps(), bytes(a));
      const want = bruteMask(sets, bits, a);
      if (kernel !== want) bad.push(`${dotted(a)}: kernel ${kernel}, brute force ${want}`);
    }
    return bad;
  };
  const verdict = async (src: number): Promise<number> => {
    const l4 = Buffer.alloc(8);
    l4.writeUInt16BE(1000, 0);
    l4.writeUInt16BE(53, 2);
    l4.writeUInt16BE(8, 4);
    const frame = ipv4Frame(17, l4, { src: dotted(src), dst: '198.51.100.1' });
    return (await [...dp.attachments.values()][0].program.testRun({ data: frame })).retval;
  };

  beforeAll(async () => {
    ({ lab, net, dp } = await openPairDataplane());
    sets = randomSets(7);
    await dp.apply(spec());
  });

  afterAll(async () => {
    await dp?.destroy().catch(() => undefined);
    await lab?.destroy();
  });

  it('holds every representation, each giving the masks brute force gives', () => {
    expect(kindOf((10 << 24) | (1 << 16))).toBe(SET4_SMALL);
    expect(kindOf((10 << 24) | (2 << 16))).toBe(SET4_BIG);
    expect(kindOf((10 << 24) | (3 << 16))).toBe(SET4_DENSE);
    expect(kindOf((11 << 24) | (200 << 16))).toBe(SET4_NONE);
    expect(mismatches(probes(sets, new Prng(1), 2000))).toEqual([]);
  });

  it("drops exactly the sources set a holds, in every representation, through the pipeline's own lookup", async () => {
    const bit = dp.sets.bits.get('a')!;
    const prng = new Prng(2);
    const all = probes(sets, prng, 200);
    const sample = Array.from({ length: 400 }, () => all[prng.int(all.length)]);
    const wrong: string[] = [];
    for (const a of sample) {
      const inA = ((bruteMask(sets, dp.sets.bits, a) >>> bit) & 1) === 1;
      const got = await verdict(a);
      if (got !== (inA ? XDP_DROP : XDP_PASS)) wrong.push(`${dotted(a)}: ${got}, in a: ${inA}`);
    }
    expect(wrong).toEqual([]);
    expect(sample.some((a) => (bruteMask(sets, dp.sets.bits, a) >>> bit) & 1)).toBe(true);
  });

  it('moves a /16 through none, small, big, dense and back as prefixes come and go', async () => {
    const base = ((10 << 24) | (77 << 16)) >>> 0; // only the /8 of some set covers it
    const block: P4 = { net: base, len: 16 };
    const prng = new Prng(3);
    const steps: [number, number][] = [
      [2, SET4_SMALL],
      [18, SET4_BIG],
      [400, SET4_DENSE],
    ];
    const added: P4[] = [];
    const before = kindOf(base);
    expect([SET4_SMALL, SET4_NONE]).toContain(before);
    for (const [count, kind] of steps) {
      const batch = Array.from({ length: count }, () => prefix(prng, block, 28 + prng.int(5)));
      await dp.addPrefixes('b', batch.map(text));
      sets.get('b')!.push(...batch);
      added.push(...batch);
      expect(kindOf(base)).toBe(kind);
      expect(mismatches(probes(new Map([['b', added]]), prng, 0))).toEqual([]);
    }
    // a dense /16 changed in place: its pages are written to the other bank, then the node
    const bankOf = (): number =>
      maps()
        .dense.lookup(u32(base >>> 16))!
        .readUInt16LE(2);
    const bank = bankOf();
    const more = Array.from({ length: 5 }, () => prefix(prng, block, 32));
    await dp.addPrefixes('b', more.map(text));
    sets.get('b')!.push(...more);
    added.push(...more);
    expect(kindOf(base)).toBe(SET4_DENSE);
    expect(bankOf()).toBe(1 - bank);
    expect(mismatches(probes(new Map([['b', added]]), prng, 0))).toEqual([]);
    // back down to big, then to what it was
    const half = added.splice(0, added.length - 25);
    await dp.removePrefixes('b', half.map(text));
    sets.set(
      'b',
      sets.get('b')!.filter((p) => !half.includes(p)),
    );
    expect(kindOf(base)).toBe(SET4_BIG);
    expect(mismatches(probes(new Map([['b', added]]), prng, 0))).toEqual([]);
    await dp.removePrefixes('b', added.map(text));
    sets.set(
      'b',
      sets.get('b')!.filter((p) => !added.includes(p)),
    );
    expect(kindOf(base)).toBe(before);
    expect(mismatches(probes(sets, prng, 500))).toEqual([]);
    // nothing is left of the pages and blocks the /16 used
    const bigKeys = [...maps().big.keys()].map((k) => k.readUInt32LE(0));
    expect(
      bigKeys.filter(
        (k) => k === base >>> 16 || (((k >>> 8) & 0xffff) === base >>> 16 && k >= 1 << 24),
      ),
    ).toEqual([]);
  });

  it('refuses a /16 of more than 16,384 ranges with a limit error, and writes it once it fits again', async () => {
    const base = ((10 << 24) | (99 << 16)) >>> 0;
    // every other address in a set that 10/8 is not in: each /32 opens a range and closes one
    const name = NAMES.find((n) => !sets.get(n)!.some((p) => p.len === 8))!;
    const crowd = Array.from({ length: 8200 }, (_, i) => text({ net: base + 2 * i, len: 32 }));
    const error = await dp.addPrefixes(name, crowd).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LimitExceededError);
    expect((error as LimitExceededError).resource).toBe('set-ranges');
    expect((error as LimitExceededError).message).toMatch(
      /10\.99\.0\.0\/16 would hold 16400 ranges .*at most 16384 fit in one \/16/,
    );
    // the kernel still holds what it held: the /16 is under 10/8 alone
    expect(kindOf(base)).toBe(SET4_SMALL);
    expect(mismatches([base, base + 2, base + 16398])).toEqual([]);
    // the same /16 written once it fits: its marks survive the refused flush
    await dp.removePrefixes(name, crowd.slice(100));
    const kept = Array.from({ length: 100 }, (_, i) => ({ net: base + 2 * i, len: 32 }));
    sets.get(name)!.push(...kept);
    expect(kindOf(base)).toBe(SET4_DENSE);
    expect(mismatches(probes(new Map([[name, kept]]), new Prng(5), 0))).toEqual([]);
  });

  it('rewrites every /16 after a restart whose sets changed, and reads back nothing stale', async () => {
    dp.close();
    dp = await Dataplane.open({ dir: `/sys/fs/bpf/${lab.id}`, netns: net.right.netns });
    sets.get('c')!.splice(0, 100);
    await dp.apply(spec());
    expect(mismatches(probes(sets, new Prng(4), 1000))).toEqual([]);
  });
});
