// lb_xdp (bpf/progs/lb.bpf.c) in L2 DSR mode: service lookup, the flow hash against an independent jhash2, Maglev tables in a map-in-map, the FIB's next hop, fragments and counters, under BPF_PROG_TEST_RUN inside a throw-away namespace.
import { describe, expect, it } from 'vitest';

import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';

import { mkdirBpffs, unpin } from '../../bpf/index.js';
import { LbMaps, loadLbObject, type LbService } from '../../controller/lb/lb-maps.js';
import { mac } from '../helpers/packets/build.js';
import {
  ACK,
  SYN,
  XDP_PASS,
  XDP_REDIRECT,
  XDP_TX,
  addressBytes,
  familyOf,
  frame,
  hex,
  type FrameSpec,
} from '../helpers/lb-frames.js';
import { useLbFixture } from '../helpers/lb-fixture.js';
import { NEIGHBOURS } from '../helpers/lb-lab.js';
import { describeKernel } from '../helpers/privileges.js';
import { flowHash as predictFlowHash } from '../../controller/lb/flow-hash.js';

// ---- the flow hash, written here from its definition (not from the C or controller/lb) ----

/** The Maglev slot of a u32 hash in a table of m slots: (hash * m) >> 32, in 64 bits. */
function slotOf(hash: number, m: number): number {
  return Number((BigInt(hash >>> 0) * BigInt(m)) >> 32n);
}

function rol(x: number, s: number): number {
  return ((x << s) | (x >>> (32 - s))) >>> 0;
}

/** Linux jhash2(k, k.length, initval) for 3 or 9 words: whole rounds of three, then the last three. */
function jhash2(k: Uint32Array, initval: number): number {
  let a = (0xdeadbeef + (k.length << 2) + initval) >>> 0;
  let b = a;
  let c = a;
  const mix = (): void => {
    a = (a - c) >>> 0;
    a = (a ^ rol(c, 4)) >>> 0;
    c = (c + b) >>> 0;
    b = (b - a) >>> 0;
    b = (b ^ rol(a, 6)) >>> 0;
    a = (a + c) >>> 0;
    c = (c - b) >>> 0;
    c = (c ^ rol(b, 8)) >>> 0;
    b = (b + a) >>> 0;
    a = (a - c) >>> 0;
    a = (a ^ rol(c, 16)) >>> 0;
    c = (c + b) >>> 0;
    b = (b - a) >>> 0;
    b = (b ^ rol(a, 19)) >>> 0;
    a = (a + c) >>> 0;
    c = (c - b) >>> 0;
    c = (c ^ rol(b, 4)) >>> 0;
    b = (b + a) >>> 0;
  };
  if (k.length !== 3 && k.length !== 9) throw new Error(`jhash2 of ${k.length} words`);
  let i = 0;
  for (; i + 3 < k.length; i += 3) {
    a = (a + k[i]!) >>> 0;
    b = (b + k[i + 1]!) >>> 0;
    c = (c + k[i + 2]!) >>> 0;
    mix();
  }
  a = (a + k[i]!) >>> 0;
  b = (b + k[i + 1]!) >>> 0;
  c = (c + k[i + 2]!) >>> 0;
  c = (c ^ b) >>> 0;
  c = (c - rol(b, 14)) >>> 0;
  a = (a ^ c) >>> 0;
  a = (a - rol(c, 11)) >>> 0;
  b = (b ^ a) >>> 0;
  b = (b - rol(a, 25)) >>> 0;
  c = (c ^ b) >>> 0;
  c = (c - rol(b, 16)) >>> 0;
  a = (a ^ c) >>> 0;
  a = (a - rol(c, 4)) >>> 0;
  b = (b ^ a) >>> 0;
  b = (b - rol(a, 14)) >>> 0;
  c = (c ^ b) >>> 0;
  c = (c - rol(b, 24)) >>> 0;
  return c;
}

type Mode = '5tuple' | 'src' | 'src-port';

/**
 * src, dst and the port word with the mode's fields zeroed, as little-endian words (3 for IPv4,
 * 9 for IPv6), hashed with initval seed + proto (proto 0 unless '5tuple').
 */
function flowHash(
  f: { src: string; dst: string; sport?: number; dport?: number; proto?: 'tcp' | 'udp' | 'sctp' },
  mode: Mode,
  seed: number,
): number {
  const proto = { tcp: 6, udp: 17, sctp: 132 }[f.proto ?? 'tcp'];
  const n = familyOf(f.src) === 4 ? 4 : 16;
  const key = new Uint8Array(2 * n + 4);
  const view = new DataView(key.buffer);
  key.set(addressBytes(f.src).subarray(0, n), 0);
  if (mode === '5tuple') key.set(addressBytes(f.dst).subarray(0, n), n);
  if (mode !== 'src') view.setUint16(2 * n, f.sport ?? 40000, false);
  if (mode === '5tuple') view.setUint16(2 * n + 2, f.dport ?? 80, false);
  const words = new Uint32Array(key.length / 4);
  for (let i = 0; i < words.length; i++) words[i] = view.getUint32(i * 4, true);
  return jhash2(words, (seed + (mode === '5tuple' ? proto : 0)) >>> 0);
}

// ---- the set-up ----

const VIP4 = '203.0.113.10';
const VIP6 = '2001:db8:100::10';
const SEED4 = 0x5eed0001;
const SEED6 = 0x0badcafe;
/** Backend id -> address. */
const BACKENDS: Record<number, string> = {
  1: '192.0.2.11',
  2: '192.0.2.12',
  3: '192.0.2.13',
  11: '2001:db8:1::11',
  12: '2001:db8:1::12',
  21: '198.51.100.21',
  22: '2001:db8:2::21',
  99: '192.0.2.99',
};
const TABLE4 = Uint32Array.from({ length: 13 }, (_, i) => [1, 2, 3][i % 3]!);
const TABLE6 = Uint32Array.from({ length: 7 }, (_, i) => [11, 12][i % 2]!);

function service(id: number, extra: Partial<LbService> = {}): LbService {
  return { id, hashMode: '5tuple', forwardMode: 'dsr', seed: 0, ...extra };
}

await describeKernel('the load balancer in DSR mode', () => {
  const lb = useLbFixture({
    async setup(maps) {
      for (const [id, address] of Object.entries(BACKENDS))
        maps.setBackend(Number(id), { address });
      maps.setService({ vip: VIP4, port: 80, proto: 'tcp' }, service(1, { seed: SEED4 }));
      await maps.setMaglevTable(1, TABLE4);
      maps.setService({ vip: VIP6, port: 443, proto: 'tcp' }, service(2, { seed: SEED6 }));
      await maps.setMaglevTable(2, TABLE6);
    },
  });

  /** The frame after the run, and the backend its destination MAC names (or null). */
  async function send(
    spec: FrameSpec,
  ): Promise<{ retval: number; out: Buffer; backend: string | null }> {
    const { retval, data } = await lb.lab.run(lb.xdp, frame(spec));
    const dmac = [...data.subarray(0, 6)].map((b) => b.toString(16).padStart(2, '0')).join(':');
    const backend =
      Object.entries(NEIGHBOURS).find(
        ([address, m]) =>
          m === dmac &&
          familyOf(address) === familyOf(spec.src) &&
          (address.startsWith('198.51.') || address.startsWith('2001:db8:2:')) ===
            (retval === XDP_REDIRECT),
      )?.[0] ?? null;
    return { retval, out: data, backend };
  }

  describe('service lookup', () => {
    it('passes a packet to an address that is no VIP untouched', async () => {
      const f = frame({ src: '192.0.2.200', dst: '203.0.113.11', dport: 80 });
      const before = lb.maps.events();
      const { retval, data } = await lb.lab.run(lb.xdp, f);
      expect({ retval, data: hex(data) }).toEqual({ retval: XDP_PASS, data: hex(f) });
      expect(lb.maps.events()).toEqual(before);
    });

    it('passes a packet to the VIP on another port or protocol untouched', async () => {
      for (const spec of [
        { src: '192.0.2.200', dst: VIP4, dport: 81 },
        { src: '192.0.2.200', dst: VIP4, dport: 80, proto: 'udp' as const },
        { src: '2001:db8:9::1', dst: VIP6, dport: 80 },
      ]) {
        const f = frame(spec);
        const { retval, data } = await lb.lab.run(lb.xdp, f);
        expect({ retval, data: hex(data) }).toEqual({ retval: XDP_PASS, data: hex(f) });
      }
    });

    it('prefers the exact port, then falls back to an all-ports service', async () => {
      const vip = '203.0.113.20';
      lb.maps.setService({ vip, port: 0, proto: 'udp' }, service(5));
      await lb.maps.setMaglevTable(5, Uint32Array.from([2, 2, 2]));
      lb.maps.setService({ vip, port: 53, proto: 'udp' }, service(6));
      await lb.maps.setMaglevTable(6, Uint32Array.from([3, 3, 3, 3, 3]));
      const to = async (dport: number) =>
        (await send({ src: '192.0.2.201', dst: vip, proto: 'udp', dport })).backend;
      expect([await to(53), await to(54), await to(5353)]).toEqual([
        '192.0.2.13',
        '192.0.2.12',
        '192.0.2.12',
      ]);
    });

    it('passes a service without a Maglev table, counting it', async () => {
      lb.maps.setService({ vip: '203.0.113.30', port: 80, proto: 'tcp' }, service(7));
      const before = lb.maps.events().noTable;
      const f = frame({ src: '192.0.2.200', dst: '203.0.113.30' });
      const { retval, data } = await lb.lab.run(lb.xdp, f);
      expect({ retval, data: hex(data) }).toEqual({ retval: XDP_PASS, data: hex(f) });
      expect(lb.maps.events().noTable - before).toBe(1);
    });

    it('passes a packet whose table slot names a removed backend, counting it', async () => {
      lb.maps.setBackend(40, { address: '192.0.2.11' });
      lb.maps.removeBackend(40);
      lb.maps.setService({ vip: '203.0.113.31', port: 80, proto: 'tcp' }, service(8));
      await lb.maps.setMaglevTable(8, Uint32Array.from([40, 40]));
      const before = lb.maps.events().noBackend;
      const f = frame({ src: '192.0.2.200', dst: '203.0.113.31' });
      const { retval, data } = await lb.lab.run(lb.xdp, f);
      expect({ retval, data: hex(data) }).toEqual({ retval: XDP_PASS, data: hex(f) });
      expect(lb.maps.events().noBackend - before).toBe(1);
    });
  });

  describe('backend selection', () => {
    const flows4 = Array.from({ length: 24 }, (_, i) => ({
      src: `192.0.2.${100 + i}`,
      dst: VIP4,
      sport: 30000 + i * 7,
      dport: 80,
    }));

    it('picks table[(jhash_3words(src, dst, ports, seed + proto) * M) >> 32] for IPv4 flows', async () => {
      const got: string[] = [];
      const want: string[] = [];
      for (const f of flows4) {
        got.push((await send({ ...f, flags: SYN })).backend ?? 'none');
        want.push(BACKENDS[TABLE4[slotOf(flowHash(f, '5tuple', SEED4), TABLE4.length)]!]!);
      }
      expect(got).toEqual(want);
      // and the spread shows the hash at work: every backend gets some of 24 flows
      expect(new Set(got).size).toBe(3);
    });

    it('stores the same hash the independent jhash2 gives, for each flow it inserted', async () => {
      const entries = await lb.maps.readFlows();
      for (const f of flows4) {
        const e = entries.find((x) => x.flow.src === f.src && x.flow.sport === f.sport);
        expect({ src: f.src, hash: e?.hash }).toEqual({
          src: f.src,
          hash: flowHash(f, '5tuple', SEED4),
        });
        expect(e?.flow).toEqual({
          family: 4,
          src: f.src,
          dst: VIP4,
          sport: f.sport,
          dport: 80,
          proto: 'tcp',
        });
        expect(e?.serviceId).toBe(1);
      }
    });

    it('picks table[(jhash2(src, dst, ports: 9 words, seed + proto) * M) >> 32] for IPv6 flows', async () => {
      for (let i = 0; i < 12; i++) {
        const f = {
          src: `2001:db8:9::${(i + 1).toString(16)}`,
          dst: VIP6,
          sport: 50000 + i,
          dport: 443,
        };
        const { backend } = await send({ ...f });
        expect({ i, backend }).toEqual({
          i,
          backend: BACKENDS[TABLE6[slotOf(flowHash(f, '5tuple', SEED6), TABLE6.length)]!],
        });
      }
    });

    it('hashes by the fields each hash mode keeps', async () => {
      const modes: Mode[] = ['5tuple', 'src', 'src-port'];
      for (const [i, mode] of modes.entries()) {
        const vip = `203.0.113.${40 + i}`;
        const seed = 1000 + i;
        lb.maps.setService(
          { vip, port: 0, proto: 'tcp' },
          service(20 + i, { hashMode: mode, seed }),
        );
        await lb.maps.setMaglevTable(20 + i, TABLE4);
        const flows = [
          { src: '192.0.2.150', dst: vip, sport: 1111, dport: 80 },
          { src: '192.0.2.150', dst: vip, sport: 2222, dport: 80 },
          { src: '192.0.2.150', dst: vip, sport: 2222, dport: 8080 },
        ];
        for (const f of flows) await send(f);
        const entries = (await lb.maps.readFlows()).filter((e) => e.serviceId === 20 + i);
        const hashes = flows.map(
          (f) => entries.find((e) => e.flow.sport === f.sport && e.flow.dport === f.dport)?.hash,
        );
        expect({ mode, hashes }).toEqual({
          mode,
          hashes: flows.map((f) => flowHash(f, mode, seed)),
        });
        // And what user space predicts with (a dry run's "would now hash elsewhere").
        expect(hashes).toEqual(
          flows.map((f) => predictFlowHash({ ...f, proto: 'tcp' }, mode, seed)),
        );
      }
      // 'src' ignores both ports, 'src-port' only the destination port
      const byMode = (id: number) =>
        lb.maps
          .readFlows()
          .then((es) => new Set(es.filter((e) => e.serviceId === id).map((e) => e.hash)).size);
      expect([await byMode(20), await byMode(21), await byMode(22)]).toEqual([3, 1, 2]);
    });
  });

  describe('forwarding', () => {
    it('rewrites only the MACs of an IPv4 packet and sends it back out of the arm (XDP_TX)', async () => {
      const spec = { src: '192.0.2.100', dst: VIP4, sport: 30000, dport: 80, flags: ACK };
      const backend = BACKENDS[TABLE4[slotOf(flowHash({ ...spec }, '5tuple', SEED4), 13)]!]!;
      const input = frame(spec);
      const { retval, data } = await lb.lab.run(lb.xdp, input);
      const want = Buffer.from(input);
      Buffer.from(mac(NEIGHBOURS[backend]!)).copy(want, 0);
      Buffer.from(mac(lb.lab.arm.mac)).copy(want, 6);
      expect({ retval, data: hex(data) }).toEqual({ retval: XDP_TX, data: hex(want) });
    });

    it('rewrites only the MACs of an IPv6 packet', async () => {
      const spec = { src: '2001:db8:9::77', dst: VIP6, sport: 41000, dport: 443 };
      const backend = BACKENDS[TABLE6[slotOf(flowHash({ ...spec }, '5tuple', SEED6), 7)]!]!;
      const input = frame(spec);
      const { retval, data } = await lb.lab.run(lb.xdp, input);
      const want = Buffer.from(input);
      Buffer.from(mac(NEIGHBOURS[backend]!)).copy(want, 0);
      Buffer.from(mac(lb.lab.arm.mac)).copy(want, 6);
      expect({ retval, data: hex(data) }).toEqual({ retval: XDP_TX, data: hex(want) });
    });

    it('keeps VLAN tags as received', async () => {
      const spec = { src: '192.0.2.100', dst: VIP4, sport: 30000, dport: 80, vlans: [100, 200] };
      const input = frame(spec);
      const { retval, data } = await lb.lab.run(lb.xdp, input);
      expect(retval).toBe(XDP_TX);
      expect(hex(data.subarray(12))).toBe(hex(input.subarray(12)));
      expect(hex(data.subarray(6, 12))).toBe(hex(mac(lb.lab.arm.mac)));
    });

    it('redirects to the device the FIB names when it is not the ingress device', async () => {
      lb.maps.setService({ vip: '203.0.113.50', port: 80, proto: 'tcp' }, service(30));
      await lb.maps.setMaglevTable(30, Uint32Array.from([21, 21]));
      const input = frame({ src: '192.0.2.100', dst: '203.0.113.50' });
      const { retval, data } = await lb.lab.run(lb.xdp, input);
      const want = Buffer.from(input);
      Buffer.from(mac('02:00:5e:00:53:21')).copy(want, 0);
      Buffer.from(mac(lb.lab.other.mac)).copy(want, 6);
      expect({ retval, data: hex(data) }).toEqual({ retval: XDP_REDIRECT, data: hex(want) });
      expect(lb.maps.events().redirect).toBeGreaterThan(0);
    });

    it('passes untouched and counts the reason when the FIB has no neighbour for the backend', async () => {
      lb.maps.setService({ vip: '203.0.113.51', port: 80, proto: 'tcp' }, service(31));
      await lb.maps.setMaglevTable(31, Uint32Array.from([99, 99]));
      const before = { events: lb.maps.events(), fib: lb.maps.fibFailures() };
      const input = frame({ src: '192.0.2.100', dst: '203.0.113.51' });
      const { retval, data } = await lb.lab.run(lb.xdp, input);
      expect({ retval, data: hex(data) }).toEqual({ retval: XDP_PASS, data: hex(input) });
      expect(lb.maps.events().fibFail - before.events.fibFail).toBe(1);
      expect((lb.maps.fibFailures().noNeighbour ?? 0) - (before.fib.noNeighbour ?? 0)).toBe(1);
    });

    it('passes a backend of the other family in DSR mode, counting it', async () => {
      lb.maps.setService({ vip: '203.0.113.52', port: 80, proto: 'tcp' }, service(32));
      await lb.maps.setMaglevTable(32, Uint32Array.from([11, 11]));
      const before = lb.maps.events().family;
      const input = frame({ src: '192.0.2.100', dst: '203.0.113.52' });
      const { retval, data } = await lb.lab.run(lb.xdp, input);
      expect({ retval, data: hex(data) }).toEqual({ retval: XDP_PASS, data: hex(input) });
      expect(lb.maps.events().family - before).toBe(1);
    });
  });

  describe('Maglev tables', () => {
    it('swaps a table for one of another size in one step, and new flows follow it', async () => {
      lb.maps.setService({ vip: '203.0.113.60', port: 80, proto: 'tcp' }, service(40));
      await lb.maps.setMaglevTable(
        40,
        Uint32Array.from({ length: 13 }, () => 1),
      );
      const to = async (sport: number) =>
        (await send({ src: '192.0.2.100', dst: '203.0.113.60', sport })).backend;
      expect(await to(1)).toBe('192.0.2.11');
      await lb.maps.setMaglevTable(
        40,
        Uint32Array.from({ length: 65537 }, () => 3),
      );
      expect(await to(2)).toBe('192.0.2.13');
      await lb.maps.setMaglevTable(
        40,
        Uint32Array.from({ length: 5 }, () => 2),
      );
      expect(await to(3)).toBe('192.0.2.12');
    });

    it('picks slot (hash * 65537) >> 32 of a default-size table, reads each table back and removes it', async () => {
      // Tables of 65537 slots live in lb_maglev_d, whose lookup is inlined; others in lb_maglev.
      lb.maps.setService(
        { vip: '203.0.113.62', port: 80, proto: 'tcp' },
        service(42, { seed: 99 }),
      );
      const big = Uint32Array.from({ length: 65537 }, (_, i) => [1, 2, 3][i % 3]!);
      const small = Uint32Array.from({ length: 7 }, (_, i) => [3, 2, 1][i % 3]!);
      let sport = 4100;
      for (const table of [big, small, big]) {
        await lb.maps.setMaglevTable(42, table);
        expect(await lb.maps.readMaglevTable(42)).toEqual(table);
        // new flows (ports not seen before) each, so no flow-table entry decides
        const flows = Array.from({ length: 6 }, () => ({
          src: '192.0.2.100',
          dst: '203.0.113.62',
          sport: sport++,
          dport: 80,
        }));
        const want = flows.map(
          (f) => BACKENDS[table[slotOf(flowHash(f, '5tuple', 99), table.length)]!]!,
        );
        expect(new Set(want).size).toBeGreaterThan(1);
        const got = [];
        for (const f of flows) got.push((await send(f)).backend);
        expect(got).toEqual(want);
      }
      expect(lb.maps.deleteMaglevTable(42)).toBe(true);
      expect(await lb.maps.readMaglevTable(42)).toBeNull();
      expect(lb.maps.deleteMaglevTable(42)).toBe(false);
    });

    it('takes a table of the largest size, 1048573 slots', async () => {
      lb.maps.setService(
        { vip: '203.0.113.61', port: 80, proto: 'tcp' },
        service(41, { seed: 77 }),
      );
      const table = Uint32Array.from({ length: 1048573 }, (_, i) => (i % 2 ? 1 : 2));
      await lb.maps.setMaglevTable(41, table);
      const f = { src: '192.0.2.100', dst: '203.0.113.61', sport: 4242, dport: 80 };
      const { backend } = await send(f);
      expect(backend).toBe(BACKENDS[table[slotOf(flowHash(f, '5tuple', 77), 1048573)]!]);
    });

    it('refuses a table whose size is not a prime', async () => {
      await expect(lb.maps.setMaglevTable(1, new Uint32Array(12))).rejects.toMatchObject({
        code: 'LB_MAP_INVALID',
        field: 'table',
      });
    });
  });

  describe('fragments', () => {
    it('passes every fragment of a datagram to an exact-port service, counting the first', async () => {
      const before = lb.maps.events();
      const first = frame({ src: '192.0.2.100', dst: VIP4, fragment: { offset: 0, more: true } });
      const later = frame({ src: '192.0.2.100', dst: VIP4, fragment: { offset: 6, more: false } });
      for (const f of [first, later]) {
        const { retval, data } = await lb.lab.run(lb.xdp, f);
        expect({ retval, data: hex(data) }).toEqual({ retval: XDP_PASS, data: hex(f) });
      }
      const after = lb.maps.events();
      expect(after.fragmentPass - before.fragmentPass).toBe(1);
      expect(after.fragment - before.fragment).toBe(0);
    });

    it('sends every fragment of a datagram to one backend of an all-ports service, without flow entries', async () => {
      lb.maps.setService({ vip: '203.0.113.70', port: 0, proto: 'udp' }, service(50, { seed: 9 }));
      await lb.maps.setMaglevTable(50, TABLE4);
      lb.maps.setService(
        { vip: '2001:db8:100::70', port: 0, proto: 'udp' },
        service(51, { seed: 9 }),
      );
      await lb.maps.setMaglevTable(51, TABLE6);
      const before = lb.maps.events().fragment;
      for (const [src, dst] of [
        ['192.0.2.100', '203.0.113.70'],
        ['2001:db8:9::5', '2001:db8:100::70'],
      ] as const) {
        const spec = { src, dst, proto: 'udp' as const, sport: 5000, dport: 6000 };
        const table = familyOf(src) === 4 ? TABLE4 : TABLE6;
        const want =
          BACKENDS[
            table[slotOf(flowHash({ ...spec, sport: 0, dport: 0 }, '5tuple', 9), table.length)]!
          ];
        const pieces = [
          await send({ ...spec, fragment: { offset: 0, more: true } }),
          await send({ ...spec, fragment: { offset: 3, more: true } }),
          await send({ ...spec, fragment: { offset: 6, more: false } }),
        ];
        expect(pieces.map((p) => [p.retval, p.backend])).toEqual([
          [XDP_TX, want],
          [XDP_TX, want],
          [XDP_TX, want],
        ]);
      }
      expect(lb.maps.events().fragment - before).toBe(6);
      const entries = (await lb.maps.readFlows()).filter(
        (e) => e.serviceId === 50 || e.serviceId === 51,
      );
      expect(entries).toEqual([]);
    });
  });

  describe('the two paths', () => {
    // lb_xdp balances a plain IPv4 TCP/UDP packet itself and tail-calls lb_xdp_general, through
    // lb_progs, for everything else (bpf/progs/lb.bpf.c, "Fast path").
    it('reaches its general path through lb_progs, which the load filled with lb_xdp_general', async () => {
      const progs = lb.object.map('lb_progs');
      const general = lb.object.program('lb_xdp_general');
      try {
        const slot = new Uint8Array(4);
        const id = progs.lookup(slot)?.readUInt32LE(0);
        expect(id).toBe(general.info().id);
        const ipv6 = frame({ src: '2001:db8:9::77', dst: VIP6, sport: 41001, dport: 443 });
        const tagged = frame({ src: '192.0.2.100', dst: VIP4, sport: 30001, vlans: [100] });
        const plain = frame({ src: '192.0.2.100', dst: VIP4, sport: 30001 });
        const retvals = async (): Promise<number[]> =>
          Promise.all([ipv6, tagged, plain].map(async (f) => (await lb.lab.run(lb.xdp, f)).retval));
        expect(await retvals()).toEqual([XDP_TX, XDP_TX, XDP_TX]);
        // Without the slot only the fast path's packet is balanced; the others pass untouched.
        progs.delete(slot);
        try {
          const untouched = await lb.lab.run(lb.xdp, ipv6);
          expect({ retval: untouched.retval, data: hex(untouched.data) }).toEqual({
            retval: XDP_PASS,
            data: hex(ipv6),
          });
          expect(await retvals()).toEqual([XDP_PASS, XDP_PASS, XDP_TX]);
        } finally {
          progs.setFd(slot, general);
        }
        expect(await retvals()).toEqual([XDP_TX, XDP_TX, XDP_TX]);
      } finally {
        general.close();
        progs.close();
      }
    });
    it('calls no generic map helper: the verifier resolved every map at each call site', () => {
      // A call site that two maps reach (clang merges look-alike calls) is neither inlined nor
      // a direct call: it goes through bpf_map_lookup_elem's indirect call on every packet.
      for (const name of ['lb_xdp', 'lb_xdp_general']) {
        const program = lb.object.program(name);
        try {
          const xlated = execFileSync(
            'bpftool',
            ['prog', 'dump', 'xlated', 'id', String(program.info().id)],
            { encoding: 'utf8' },
          );
          expect(xlated).toMatch(/call __htab_map_lookup_elem/);
          expect({ name, generic: xlated.match(/call bpf_map_\w+_elem#/g) ?? [] }).toEqual({
            name,
            generic: [],
          });
        } finally {
          program.close();
        }
      }
    });
  });

  describe('pins of an earlier build', () => {
    it('adds lb_progs and lb_maglev_d beside pins that lack them, keeps the tables there, and moves one when it is rewritten', async () => {
      const dir = `/sys/fs/bpf/sluice-test-lbpins-${process.pid}-${Date.now()}`;
      mkdirBpffs(dir);
      try {
        // a first load fills the pins: one service with a 13-slot table (held in lb_maglev)
        const first = loadLbObject({ pinDir: dir });
        const firstMaps = LbMaps.open(first);
        try {
          for (const [id, address] of Object.entries(BACKENDS))
            firstMaps.setBackend(Number(id), { address });
          firstMaps.setService({ vip: '203.0.113.63', port: 80, proto: 'tcp' }, service(43));
          await firstMaps.setMaglevTable(
            43,
            Uint32Array.from({ length: 13 }, () => 2),
          );
        } finally {
          firstMaps.close();
          first.close();
        }
        // an earlier build pinned neither map
        unpin(`${dir}/lb_progs`);
        unpin(`${dir}/lb_maglev_d`);
        const again = loadLbObject({ pinDir: dir });
        const maps = LbMaps.open(again);
        const xdp = again.program('lb_xdp');
        try {
          const send = (sport: number, vlans: number[] = []) =>
            lb.lab.run(xdp, frame({ src: '192.0.2.100', dst: '203.0.113.63', sport, vlans }));
          expect(await maps.readMaglevTable(43)).toEqual(Uint32Array.from({ length: 13 }, () => 2));
          // the fast path, and the general path through the new lb_progs (a VLAN tag)
          expect((await send(5000)).retval).toBe(XDP_TX);
          expect((await send(5001, [7])).retval).toBe(XDP_TX);
          await maps.setMaglevTable(
            43,
            Uint32Array.from({ length: 65537 }, () => 3),
          );
          const moved = await send(5002);
          expect(hex(moved.data.subarray(0, 6))).toBe(hex(mac(NEIGHBOURS['192.0.2.13']!)));
          expect((await maps.readMaglevTable(43))?.length).toBe(65537);
        } finally {
          xdp.close();
          maps.close();
          again.close();
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('counters', () => {
    it('counts packets, bytes and new flows per service and per backend', async () => {
      lb.maps.setService({ vip: '203.0.113.80', port: 80, proto: 'tcp' }, service(60));
      await lb.maps.setMaglevTable(60, Uint32Array.from([2, 2]));
      const before = {
        svc: lb.maps.serviceCounters(60),
        be: lb.maps.backendCounters(2),
        ev: lb.maps.events(),
      };
      const a = frame({ src: '192.0.2.100', dst: '203.0.113.80', sport: 1000 });
      const b = frame({
        src: '192.0.2.100',
        dst: '203.0.113.80',
        sport: 1000,
        flags: ACK,
        payload: new Uint8Array(100),
      });
      for (const f of [a, b]) expect((await lb.lab.run(lb.xdp, f)).retval).toBe(XDP_TX);
      const svc = lb.maps.serviceCounters(60);
      const be = lb.maps.backendCounters(2);
      const ev = lb.maps.events();
      expect({
        svc: {
          packets: svc.packets - before.svc.packets,
          bytes: svc.bytes - before.svc.bytes,
          newFlows: svc.newFlows - before.svc.newFlows,
        },
        be: {
          packets: be.packets - before.be.packets,
          bytes: be.bytes - before.be.bytes,
          newFlows: be.newFlows - before.be.newFlows,
        },
        hit: ev.flowHit - before.ev.flowHit,
        miss: ev.flowMiss - before.ev.flowMiss,
        tx: ev.tx - before.ev.tx,
      }).toEqual({
        svc: { packets: 2, bytes: a.length + b.length, newFlows: 1 },
        be: { packets: 2, bytes: a.length + b.length, newFlows: 1 },
        hit: 1,
        miss: 1,
        tx: 2,
      });
      const all = await lb.maps.readCounters();
      expect(all.services.get(60)?.packets).toBe(svc.packets);
      expect(all.backends.get(2)?.packets).toBe(be.packets);
    });
  });
});
