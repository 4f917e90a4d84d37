// IPv6 set membership as the pipeline reads it: ranges per /32 (small, big and dense blocks, the
// short trie for /32s without one, the whole trie past the pages), checked against brute force
// over the prefix texts, in the kernel maps and in the verdicts, while changes move a /32 through
// every representation.
import { join } from 'node:path';

import { afterAll, beforeAll, expect, it } from 'vitest';

import { unpin } from '../../bpf/index.js';
import { Dataplane, type DataplaneSpec } from '../../controller/dataplane/dataplane.js';
import {
  SET6_BIG,
  SET6_DENSE,
  SET6_NONE,
  SET6_PINS,
  SET6_SMALL,
  SET6_TRIE,
  set6MaskOf,
} from '../../controller/dataplane/set6-blocks.js';
import type { Lab, PairTopology } from '../../netns-lab/lab.js';
import { concat, ether, ipv6Header, mac, udpHeader } from '../helpers/packets/build.js';
import { Prng } from '../helpers/packets/prng.js';
import { openPairDataplane } from '../helpers/pair-dataplane.js';
import { describeKernel } from '../helpers/privileges.js';

const XDP_DROP = 1;
const XDP_PASS = 2;
const NAMES = ['a', 'b', 'c'] as const;
const ALL = (1n << 128n) - 1n;

interface P6 {
  net: bigint;
  len: number;
}

const size = (len: number): bigint => 1n << BigInt(128 - len);
const hex = (a: bigint): string => a.toString(16).padStart(32, '0');
const addrText = (a: bigint): string => hex(a).match(/.{4}/g)!.join(':');
const text = (p: P6): string => `${addrText(p.net)}/${p.len}`;
const bytes = (a: bigint): Uint8Array => Uint8Array.from(Buffer.from(hex(a), 'hex'));

function random128(prng: Prng): bigint {
  let a = 0n;
  for (let i = 0; i < 4; i++) a = (a << 32n) | BigInt(prng.next() >>> 0);
  return a;
}

function prefix(prng: Prng, within: P6, len: number): P6 {
  const offset = random128(prng) & (size(within.len) - 1n);
  return { net: (within.net + offset) & ~(size(len) - 1n) & ALL, len };
}

const at32 = (top: number): P6 => ({ net: BigInt(top) << 96n, len: 32 });
const SMALL_TOP = 0x20010db8;
const BIG_TOP = 0x20010db9;
const DENSE_TOP = 0x20010dba;

/** Each set's prefixes: nested shapes spread so that one /32 of each representation exists. */
function randomSets(seed: number): Map<string, P6[]> {
  const prng = new Prng(seed);
  const sets = new Map<string, P6[]>(NAMES.map((n) => [n, []]));
  const add = (p: P6): void => {
    sets.get(NAMES[prng.int(NAMES.length)])!.push(p);
  };
  add({ net: 0x2001n << 112n, len: 16 }); // under everything in 2001::/16
  add({ net: 0x20010d00n << 96n, len: 24 });
  add(prefix(prng, at32(SMALL_TOP), 48)); // small
  for (let i = 0; i < 20; i++) add(prefix(prng, at32(BIG_TOP), 40 + prng.int(89))); // big
  for (let i = 0; i < 600; i++) add(prefix(prng, at32(DENSE_TOP), 64 + prng.int(65))); // dense
  for (let i = 0; i < 300; i++) add(prefix(prng, { net: 0n, len: 0 }, 8 + prng.int(121))); // anywhere
  return sets;
}

/** The mask brute force gives: bit i for every set i with a prefix holding `a`. */
function bruteMask(sets: Map<string, P6[]>, bits: ReadonlyMap<string, number>, a: bigint): number {
  let mask = 0;
  for (const [name, list] of sets) {
    for (const p of list) if (a >= p.net && a < p.net + size(p.len)) mask |= 1 << bits.get(name)!;
  }
  return mask >>> 0;
}

/** Addresses worth asking about: every prefix's edges and their neighbours, and random ones. */
function probes(sets: Map<string, P6[]>, prng: Prng, random: number): bigint[] {
  const out = new Set<bigint>();
  for (const list of sets.values()) {
    for (const p of list) {
      const last = p.net + size(p.len) - 1n;
      for (const a of [p.net - 1n, p.net, p.net + 1n, last - 1n, last, last + 1n]) {
        if (a >= 0n && a <= ALL) out.add(a);
      }
    }
  }
  for (let i = 0; i < random; i++) out.add(random128(prng));
  for (const top of [SMALL_TOP, BIG_TOP, DENSE_TOP]) {
    for (let i = 0; i < random / 10; i++) out.add(prefix(prng, at32(top), 128).net);
  }
  return [...out];
}

await describeKernel('IPv6 set ranges', () => {
  let lab: Lab;
  let net: PairTopology;
  let dp: Dataplane;
  let sets: Map<string, P6[]>;

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
    const b = dp.sets.set6Blocks;
    return { dir: b.dir, big: b.big, dense: b.denseMap, short: b.short, trie: dp.sets.set6 };
  };
  const kindOf = (top: number): number => {
    const node = maps().dir.lookup(Buffer.from(Uint32Array.of(top).buffer));
    return node ? node.readUInt32LE(0) : SET6_NONE;
  };
  /** Kernel masks against brute force for `addresses`; returns the mismatches, as text. */
  const mismatches = (addresses: bigint[], within = sets): string[] => {
    const bits = dp.sets.bits;
    const bad: string[] = [];
    for (const a of addresses) {
      const kernel = set6MaskOf(maps(), bytes(a));
      const want = bruteMask(within, bits, a);
      if (kernel !== want) bad.push(`${addrText(a)}: kernel ${kernel}, brute force ${want}`);
    }
    return bad;
  };
  const verdict = async (src: bigint): Promise<number> => {
    const udp = concat(udpHeader(1000, 53, 0));
    const frame = concat(
      ether(mac('02:00:00:00:00:02'), mac('02:00:00:00:00:01'), 0x86dd),
      ipv6Header({ next: 17, src: bytes(src), dst: bytes(0x20010db8ffffn << 80n) }, udp.length),
      udp,
    );
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
    expect(kindOf(SMALL_TOP)).toBe(SET6_SMALL);
    expect(kindOf(BIG_TOP)).toBe(SET6_BIG);
    expect(kindOf(DENSE_TOP)).toBe(SET6_DENSE);
    // under 2001::/16 alone: no block, the short trie answers
    expect(kindOf(0x2001fffe)).toBe(SET6_NONE);
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
      if (got !== (inA ? XDP_DROP : XDP_PASS)) wrong.push(`${addrText(a)}: ${got}, in a: ${inA}`);
    }
    expect(wrong).toEqual([]);
    expect(sample.some((a) => (bruteMask(sets, dp.sets.bits, a) >>> bit) & 1)).toBe(true);
  });

  it('moves a /32 through none, small, big, dense and back as prefixes come and go', async () => {
    const top = 0x2001abcd; // only the /16 of some set covers it
    const block = at32(top);
    const prng = new Prng(3);
    const steps: [number, number][] = [
      [1, SET6_SMALL],
      [18, SET6_BIG],
      [400, SET6_DENSE],
    ];
    const added: P6[] = [];
    expect(kindOf(top)).toBe(SET6_NONE);
    for (const [count, kind] of steps) {
      const batch = Array.from({ length: count }, () => prefix(prng, block, 60 + prng.int(69)));
      await dp.addPrefixes('b', batch.map(text));
      sets.get('b')!.push(...batch);
      added.push(...batch);
      expect(kindOf(top)).toBe(kind);
      expect(mismatches(probes(new Map([['b', added]]), prng, 0), sets)).toEqual([]);
    }
    // a dense /32 changed in place: its pages are written to the other bank, then the node
    const bankOf = (): number =>
      maps()
        .dense.lookup(Buffer.from(Uint32Array.of(top).buffer))!
        .readUInt16LE(2);
    const bank = bankOf();
    const more = Array.from({ length: 5 }, () => prefix(prng, block, 128));
    await dp.addPrefixes('b', more.map(text));
    sets.get('b')!.push(...more);
    added.push(...more);
    expect(kindOf(top)).toBe(SET6_DENSE);
    expect(bankOf()).toBe(1 - bank);
    expect(mismatches(probes(new Map([['b', added]]), prng, 0), sets)).toEqual([]);
    // back down to big, then to nothing
    const half = added.splice(0, added.length - 20);
    await dp.removePrefixes('b', half.map(text));
    sets.set(
      'b',
      sets.get('b')!.filter((p) => !half.includes(p)),
    );
    expect(kindOf(top)).toBe(SET6_BIG);
    expect(mismatches(probes(new Map([['b', added]]), prng, 0), sets)).toEqual([]);
    await dp.removePrefixes('b', added.map(text));
    sets.set(
      'b',
      sets.get('b')!.filter((p) => !added.includes(p)),
    );
    expect(kindOf(top)).toBe(SET6_NONE);
    expect(mismatches(probes(sets, prng, 500))).toEqual([]);
    // nothing is left of the pages and blocks the /32 used
    const bigTops = [...maps().big.keys()].map((k) => k.readUInt32LE(0));
    expect(bigTops.filter((t) => t === top)).toEqual([]);
    expect(maps().dense.lookup(Buffer.from(Uint32Array.of(top).buffer))).toBeNull();
  });

  it('follows a short prefix into every block under it, and out again', async () => {
    const name = NAMES.find((n) => !sets.get(n)!.some((p) => p.len === 16))!;
    const cover: P6 = { net: 0x20010d80n << 96n, len: 25 }; // holds the small, big and dense /32s
    await dp.addPrefixes(name, [text(cover)]);
    sets.get(name)!.push(cover);
    const inside = probes(sets, new Prng(6), 300).filter((a) => a >> 103n === cover.net >> 103n);
    expect(inside.length).toBeGreaterThan(100);
    expect(mismatches(inside)).toEqual([]);
    await dp.removePrefixes(name, [text(cover)]);
    sets.get(name)!.pop();
    expect(mismatches(inside)).toEqual([]);
  });

  it('leaves a /32 of more than 16,384 ranges to the whole trie, and takes it back once it fits', async () => {
    const top = 0x2001beef;
    const base = BigInt(top) << 96n;
    // every other address in a set that 2001::/16 is not in: each /128 opens a range and closes one
    const name = NAMES.find((n) => !sets.get(n)!.some((p) => p.len === 16))!;
    const crowd = Array.from({ length: 8200 }, (_, i) => ({
      net: base + 2n * BigInt(i),
      len: 128,
    }));
    await dp.addPrefixes(name, crowd.map(text));
    sets.get(name)!.push(...crowd);
    expect(kindOf(top)).toBe(SET6_TRIE);
    const edges = [base, base + 1n, base + 2n, base + 16398n, base + 16399n, base + 16400n];
    expect(mismatches(edges)).toEqual([]);
    expect(await verdict(base + 4n)).toBe(name === 'a' ? XDP_DROP : XDP_PASS);
    await dp.removePrefixes(name, crowd.slice(100).map(text));
    sets.set(
      name,
      sets.get(name)!.filter((p) => !crowd.slice(100).includes(p)),
    );
    expect(kindOf(top)).toBe(SET6_DENSE);
    expect(mismatches(edges)).toEqual([]);
  });

  it('rewrites every /32 after a restart whose sets changed, and reads back nothing stale', async () => {
    dp.close();
    dp = await Dataplane.open({ dir: `/sys/fs/bpf/${lab.id}`, netns: net.right.netns });
    sets.get('c')!.splice(0, 100);
    await dp.apply(spec());
    expect(mismatches(probes(sets, new Prng(4), 1000))).toEqual([]);
  });

  it('fills the blocks from what an earlier build kept in the whole trie alone', async () => {
    dp.close();
    const dir = `/sys/fs/bpf/${lab.id}`;
    for (const name of SET6_PINS) unpin(join(dir, name));
    dp = await Dataplane.open({ dir, netns: net.right.netns });
    await dp.apply(spec());
    expect(kindOf(DENSE_TOP)).toBe(SET6_DENSE);
    expect(mismatches(probes(sets, new Prng(8), 1000))).toEqual([]);
  });
});
