// Set membership of nested prefixes across sets, kept exact under single changes and bulk loads.
import { describe, expect, it } from 'vitest';

import {
  FamilyIndex,
  type PrefixBytes,
  type TrieBatch,
} from '../../../controller/dataplane/prefix-index.js';
import { Prng } from '../../helpers/packets/prng.js';

function v4(text: string): PrefixBytes {
  const [a, l] = text.split('/');
  return { family: 4, addr: Uint8Array.from(a.split('.').map(Number)), len: Number(l ?? 32) };
}

function addr(text: string): Uint8Array {
  return Uint8Array.from(text.split('.').map(Number));
}

/** The batch as "a.b.c.d/len=value" lines, deletes as value 0. */
function listed(batch: TrieBatch): string[] {
  const out: string[] = [];
  for (let i = 0; i < batch.updates; i++) {
    const k = batch.updateKeys.subarray(i * 8, i * 8 + 8);
    out.push(
      `${[...k.subarray(4)].join('.')}/${k.readUInt32LE(0)}=${batch.updateValues.readUInt32LE(i * 8)}`,
    );
  }
  for (let i = 0; i < batch.deletes; i++) {
    const k = batch.deleteKeys.subarray(i * 8, i * 8 + 8);
    out.push(`${[...k.subarray(4)].join('.')}/${k.readUInt32LE(0)}=0`);
  }
  return out.sort();
}

/** Brute force: the sets of every listed prefix that contains the address. */
function brute(lists: Map<number, PrefixBytes[]>, a: Uint8Array): number {
  let mask = 0;
  const x = ((a[0] << 24) | (a[1] << 16) | (a[2] << 8) | a[3]) >>> 0;
  for (const [bit, list] of lists) {
    for (const p of list) {
      const y = ((p.addr[0] << 24) | (p.addr[1] << 16) | (p.addr[2] << 8) | p.addr[3]) >>> 0;
      const m = p.len === 0 ? 0 : (0xffffffff << (32 - p.len)) >>> 0;
      if ((x & m) >>> 0 === (y & m) >>> 0) mask |= 1 << bit;
    }
  }
  return mask;
}

describe('prefix-set membership', () => {
  it('gives a /24 of set B inside a /8 of set A the membership of both', () => {
    const index = new FamilyIndex(4);
    index.change([v4('10.0.0.0/8')], 0, true);
    index.change([v4('10.1.2.0/24')], 1, true);
    expect(index.lookup(addr('10.1.2.3'))).toBe(0b11);
    expect(index.lookup(addr('10.9.9.9'))).toBe(0b01);
    expect(index.lookup(addr('11.0.0.1'))).toBe(0);
  });

  it('adds a covering prefix later and updates the entries under it', () => {
    const index = new FamilyIndex(4);
    const first = index.change([v4('10.1.2.0/24'), v4('10.2.0.0/16')], 1, true);
    expect(first.updates).toBe(2);
    expect(listed(index.change([v4('10.0.0.0/8')], 0, true))).toEqual([
      '10.0.0.0/8=1',
      '10.1.2.0/24=3',
      '10.2.0.0/16=3',
    ]);
  });

  it('removes a covering prefix and takes its bit back from the entries under it', () => {
    const index = new FamilyIndex(4);
    index.change([v4('10.0.0.0/8')], 0, true);
    index.change([v4('10.1.2.0/24')], 1, true);
    expect(listed(index.change([v4('10.0.0.0/8')], 0, false))).toEqual([
      '10.0.0.0/8=0',
      '10.1.2.0/24=2',
    ]);
    expect(index.masks()).toEqual([2]);
  });

  it('agrees with a brute-force membership after random single and bulk changes', () => {
    const rng = new Prng(7);
    const index = new FamilyIndex(4);
    const lists = new Map<number, PrefixBytes[]>();
    const randomPrefix = (): PrefixBytes => {
      const len = [0, 4, 8, 12, 16, 20, 24, 28, 32][rng.int(9)];
      const a = Uint8Array.of(10, rng.int(4), rng.int(4), rng.int(256));
      const m = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
      const x = (((a[0] << 24) | (a[1] << 16) | (a[2] << 8) | a[3]) & m) >>> 0;
      return {
        family: 4,
        addr: Uint8Array.of(x >>> 24, (x >>> 16) & 255, (x >>> 8) & 255, x & 255),
        len,
      };
    };
    for (let round = 0; round < 300; round++) {
      const bit = rng.int(4);
      const list = lists.get(bit) ?? [];
      lists.set(bit, list);
      const bulk = round % 50 === 49;
      const batch = Array.from({ length: bulk ? 5000 : 1 + rng.int(3) }, randomPrefix);
      const on = list.length === 0 || rng.int(3) > 0;
      const chosen = on ? batch : [list[rng.int(list.length)]];
      index.change(chosen, bit, on);
      const keys = new Set(chosen.map((p) => `${p.addr.join('.')}/${p.len}`));
      if (on) {
        for (const p of chosen)
          if (!list.some((q) => q.len === p.len && q.addr.join() === p.addr.join())) list.push(p);
      } else {
        lists.set(
          bit,
          list.filter((p) => !keys.has(`${p.addr.join('.')}/${p.len}`)),
        );
      }
      for (let probe = 0; probe < 20; probe++) {
        const a = Uint8Array.of(10, rng.int(4), rng.int(4), rng.int(256));
        expect(index.lookup(a)).toBe(brute(lists, a));
      }
    }
  });

  it('cuts any window of the IPv4 space into ranges of one membership each, as brute force sees it', () => {
    const rng = new Prng(11);
    const index = new FamilyIndex(4);
    const lists = new Map<number, PrefixBytes[]>();
    for (let bit = 0; bit < 3; bit++) {
      const list = Array.from({ length: 60 }, () => {
        const len = [0, 8, 14, 16, 17, 23, 24, 30, 32][rng.int(9)];
        const m = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
        const x = (((10 << 24) | (rng.int(4) << 16) | (rng.int(4) << 8) | rng.int(256)) & m) >>> 0;
        return {
          family: 4 as const,
          addr: Uint8Array.of(x >>> 24, (x >>> 16) & 255, (x >>> 8) & 255, x & 255),
          len,
        };
      });
      lists.set(bit, list);
      index.change(list, bit, true);
    }
    const bytes = (a: number): Uint8Array =>
      Uint8Array.of(a >>> 24, (a >>> 16) & 255, (a >>> 8) & 255, a & 255);
    const windows: [number, number][] = [
      [0, 2 ** 32],
      [10 * 2 ** 24, 11 * 2 ** 24],
      [(10 * 256 + 1) * 65536, (10 * 256 + 3) * 65536],
      [(10 * 256 + 2) * 65536 + 77, (10 * 256 + 2) * 65536 + 300],
    ];
    for (const [lo, hi] of windows) {
      const { starts, masks, n } = index.ranges(lo, hi);
      expect(starts[0]).toBe(lo);
      for (let i = 0; i < n; i++) {
        const end = i + 1 < n ? starts[i + 1] : hi;
        expect(end).toBeGreaterThan(starts[i]);
        if (i > 0) expect(masks[i]).not.toBe(masks[i - 1]);
        // both ends of the range, and a point inside
        for (const a of [starts[i], end - 1, starts[i] + rng.int(end - starts[i])]) {
          expect(masks[i]).toBe(brute(lists, bytes(a)));
        }
      }
    }
  });

  it('cuts each IPv6 /32 into ranges of one membership each, with the short prefixes around it, as brute force sees it', () => {
    const rng = new Prng(12);
    const index = new FamilyIndex(6);
    const lists: { net: bigint; len: number; bit: number }[] = [];
    const tops = [0x20010db8, 0x20010db9, 0x2001ffff, 0x3fff0000];
    const r128 = (): bigint => {
      let x = 0n;
      for (let i = 0; i < 4; i++) x = (x << 32n) | BigInt(rng.next() >>> 0);
      return x;
    };
    for (let bit = 0; bit < 3; bit++) {
      const prefixes: PrefixBytes[] = [];
      for (let i = 0; i < 40; i++) {
        const len = [0, 12, 16, 31, 32, 33, 48, 64, 100, 127, 128][rng.int(11)];
        const top = BigInt(tops[rng.int(tops.length)]);
        const hostMask = (1n << BigInt(128 - len)) - 1n;
        const net =
          ((top << 96n) | (r128() & ((1n << 96n) - 1n))) & ~hostMask & ((1n << 128n) - 1n);
        lists.push({ net, len, bit });
        const addr = Uint8Array.from(Buffer.from(net.toString(16).padStart(32, '0'), 'hex'));
        prefixes.push({ family: 6, addr, len });
      }
      index.change(prefixes, bit, true);
    }
    const brute6 = (a: bigint): number => {
      let mask = 0;
      for (const p of lists) {
        if (a >> BigInt(128 - p.len) === p.net >> BigInt(128 - p.len)) mask |= 1 << p.bit;
      }
      return mask >>> 0;
    };
    const seen: number[] = [];
    index.eachRanges6(
      [...tops, 0x20020000].sort((a, b) => a - b),
      (top, r) => {
        seen.push(top);
        const base = BigInt(top) << 96n;
        const end = base + (1n << 96n);
        const startOf = (i: number): bigint =>
          base | (BigInt(r.hi1[i]) << 64n) | (BigInt(r.hi2[i]) << 32n) | BigInt(r.lo[i]);
        expect(startOf(0)).toBe(base);
        for (let i = 0; i < r.n; i++) {
          const next = i + 1 < r.n ? startOf(i + 1) : end;
          expect(next).toBeGreaterThan(startOf(i));
          if (i > 0) expect(r.masks[i]).not.toBe(r.masks[i - 1]);
          for (const a of [startOf(i), next - 1n]) expect(r.masks[i]).toBe(brute6(a));
        }
        const long = lists.some((p) => p.len > 32 && p.net >> 96n === BigInt(top));
        expect(r.long).toBe(long);
      },
    );
    expect(seen).toEqual([...tops, 0x20020000].sort((a, b) => a - b));
  });
});
