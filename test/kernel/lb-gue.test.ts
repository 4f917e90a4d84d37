// lb_xdp's GUE forwarding (outer IPv4 or IPv6, UDP to port 6080, a 4-byte GUE header; per-flow outer source and UDP source port) and lb_decap_xdp's GUE decapsulation, byte for byte under BPF_PROG_TEST_RUN inside a throw-away namespace.
import { describe, expect, it } from 'vitest';

import { LB_GUE_PORT } from '../../controller/lb/lb-abi.js';
import { concat, ipv4Header, ipv6Header, setL4Checksum, u16 } from '../helpers/packets/build.js';
import {
  XDP_PASS,
  XDP_TX,
  addressBytes,
  frame,
  hex,
  ipPacket,
  l2,
  type FrameSpec,
} from '../helpers/lb-frames.js';
import {
  OUTER_SOURCE4,
  OUTER_SOURCE6,
  outerSource,
  useEncapFixture,
} from '../helpers/lb-fixture.js';
import { NEIGHBOURS } from '../helpers/lb-lab.js';
import { describeKernel } from '../helpers/privileges.js';

/** The outer UDP source port of a flow: 49152 + the hash's top 14 bits. */
function outerPort(hash: number): number {
  return 0xc000 | (hash >>> 18);
}

/** The GUE header: version 0, C 0, Hlen 0, the inner protocol, flags 0. */
function gueHeader(innerFamily: 4 | 6): Uint8Array {
  return Uint8Array.of(0, innerFamily === 4 ? 4 : 41, 0, 0);
}

/** Outer IP (by `backend`'s family), UDP to 6080 from `sport`, GUE, then `inner`, as a frame. */
function gueFrame(
  inner: Uint8Array,
  o: {
    src: Uint8Array;
    dst: Uint8Array;
    sport: number;
    tos?: number;
    flow?: number;
    df?: boolean;
    dport?: number;
    gue?: Uint8Array;
    mf?: boolean;
    dstMac?: string;
    srcMac?: string;
    vlans?: number[];
  },
): Uint8Array {
  const inner4 = inner[0]! >> 4 === 4;
  const gue = o.gue ?? gueHeader(inner4 ? 4 : 6);
  const length = 8 + gue.length + inner.length;
  const datagram = concat(u16(o.sport), u16(o.dport ?? 6080), u16(length), u16(0), gue, inner);
  let outer: Uint8Array;
  if (o.dst.length === 4) {
    outer = ipv4Header(
      { tos: o.tos ?? 0, id: 0, df: o.df, mf: o.mf, ttl: 64, proto: 17, src: o.src, dst: o.dst },
      datagram.length,
    );
  } else {
    setL4Checksum(datagram, 6, 17, o.src, o.dst);
    outer = ipv6Header(
      { tc: o.tos ?? 0, flow: o.flow ?? 0, next: 17, hopLimit: 64, src: o.src, dst: o.dst },
      datagram.length,
    );
  }
  return l2(concat(outer, datagram), o);
}

/** What lb_xdp must make of `spec` sent to `backend`, given the flow's hash. */
function encapsulated(spec: FrameSpec, backend: string, hash: number, armMac: string): Uint8Array {
  const inner4 = !spec.src.includes(':');
  const outer4 = !backend.includes(':');
  return gueFrame(ipPacket(spec), {
    src: outerSource(outer4 ? OUTER_SOURCE4 : OUTER_SOURCE6, hash),
    dst: addressBytes(backend),
    sport: outerPort(hash),
    tos: spec.tos ?? 0,
    flow: hash & 0xfffff,
    df: inner4 ? (spec.df ?? false) : true,
    dstMac: NEIGHBOURS[backend]!,
    srcMac: armMac,
    vlans: spec.vlans,
  });
}

// ---- an independent checker of the outer headers: its own sum and its own header walk ----

/** RFC 1071 sum of big-endian 16-bit words (an odd last byte padded), folded to 16 bits. */
function onesSum(...parts: Uint8Array[]): number {
  let s = 0;
  for (const bytes of parts) {
    for (let i = 0; i < bytes.length; i += 2) s += bytes[i]! * 256 + (bytes[i + 1] ?? 0);
  }
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 65536);
  return s;
}

/**
 * The outer headers of a GUE frame as found: where the IP header starts, the outer IPv4 header
 * checksum's verdict (null for IPv6), the UDP checksum's (null when 0 over IPv4) and the fields.
 */
function outerOf(f: Uint8Array) {
  let at = 12;
  while (f[at]! * 256 + f[at + 1]! === 0x8100) at += 4;
  const v4 = f[at]! * 256 + f[at + 1]! === 0x0800;
  const ip = at + 2;
  const udp = ip + (v4 ? (f[ip]! & 15) * 4 : 40);
  const length = f[udp + 4]! * 256 + f[udp + 5]!;
  const datagram = f.subarray(udp, udp + length);
  const src = v4 ? f.subarray(ip + 12, ip + 16) : f.subarray(ip + 8, ip + 24);
  const dst = v4 ? f.subarray(ip + 16, ip + 20) : f.subarray(ip + 24, ip + 40);
  const carried = datagram[6]! * 256 + datagram[7]!;
  const pseudo = concat(src, dst, Uint8Array.of(0, 0, length >> 8, length & 255, 0, 0, 0, 17));
  return {
    ipChecksumOk: v4 ? onesSum(f.subarray(ip, udp)) === 0xffff : null,
    udpChecksumOk: v4 && carried === 0 ? null : onesSum(pseudo, datagram) === 0xffff,
    proto: v4 ? f[ip + 9] : f[ip + 6],
    sport: datagram[0]! * 256 + datagram[1]!,
    dport: datagram[2]! * 256 + datagram[3]!,
    gue: hex(datagram.subarray(8, 12)),
    inner: datagram.subarray(12),
  };
}

await describeKernel('the load balancer in GUE mode', () => {
  const lb = useEncapFixture('gue', 2000);

  it('names port 6080 as the GUE port', () => {
    expect(LB_GUE_PORT).toBe(6080);
  });

  describe('encapsulation', () => {
    const cases: {
      title: string;
      vip: string;
      backend: [number, string];
      spec: Partial<FrameSpec>;
    }[] = [
      {
        title:
          'puts IPv4, UDP and a GUE header (proto 4) in front of an IPv4 packet for an IPv4 backend',
        vip: '203.0.113.10',
        backend: [1, '192.0.2.11'],
        spec: { src: '198.51.100.7', tos: 0x28, df: true },
      },
      {
        title:
          'puts IPv6, UDP with its checksum and a GUE header (proto 41) in front of an IPv6 packet for an IPv6 backend',
        vip: '2001:db8:100::10',
        backend: [11, '2001:db8:1::11'],
        spec: { src: '2001:db8:9::7', tos: 0x28, flow: 0x12345 },
      },
      {
        title:
          'puts IPv6, UDP and a GUE header (proto 4) in front of an IPv4 packet for an IPv6 backend',
        vip: '203.0.113.11',
        backend: [12, '2001:db8:1::12'],
        spec: { src: '198.51.100.7' },
      },
      {
        title:
          'puts IPv4 (DF), UDP and a GUE header (proto 41) in front of an IPv6 packet for an IPv4 backend',
        vip: '2001:db8:100::11',
        backend: [2, '192.0.2.12'],
        spec: { src: '2001:db8:9::7' },
      },
      {
        title: 'keeps VLAN tags in front of the outer header',
        vip: '203.0.113.12',
        backend: [11, '2001:db8:1::11'],
        spec: { src: '198.51.100.7', vlans: [10, 20] },
      },
      {
        title: 'carries a UDP datagram of odd length with its own checksum as it was',
        vip: '2001:db8:100::12',
        backend: [12, '2001:db8:1::12'],
        spec: { src: '2001:db8:9::7', proto: 'udp', payload: new Uint8Array(301).fill(7) },
      },
    ];

    for (const c of cases) {
      it(c.title, async () => {
        const id = await lb.serviceTo(c.vip, c.backend[0], {
          proto: c.spec.proto === 'udp' ? 'udp' : 'tcp',
        });
        const spec: FrameSpec = { src: '', dst: c.vip, sport: 40000 + id, dport: 80, ...c.spec };
        const { retval, data } = await lb.lab.run(lb.xdp, frame(spec));
        const hash = await lb.hashOf(id, spec.sport!);
        const want = encapsulated(spec, c.backend[1], hash, lb.lab.arm.mac);
        expect({ retval, data: hex(data) }).toEqual({ retval: XDP_TX, data: hex(want) });
        const outer = outerOf(data);
        const outer4 = !c.backend[1].includes(':');
        expect({ ...outer, inner: hex(outer.inner) }).toEqual({
          ipChecksumOk: outer4 ? true : null,
          udpChecksumOk: outer4 ? null : true,
          proto: 17,
          sport: outerPort(hash),
          dport: 6080,
          gue: spec.src.includes(':') ? '00290000' : '00040000',
          inner: hex(ipPacket(spec)),
        });
        expect(outer.sport).toBeGreaterThanOrEqual(49152);
      });
    }

    it('computes the IPv6 UDP checksum over datagrams of every size, up to a 3,362-byte frame', async () => {
      const vip = '2001:db8:100::20';
      const id = await lb.serviceTo(vip, 11, { proto: 'udp' });
      // UDP datagrams of 60 + n bytes (GUE's 12, the client's 48 + n): below, at and above the
      // checksum's chunk sizes (4 … 512), both parities, a 1,500-byte client frame and more.
      // The arm's MTU goes up meanwhile: the FIB refuses an outer packet larger (fragNeeded).
      const sizes = [0, 1, 2, 3, 5, 6, 7, 203, 204, 452, 453, 454, 455, 964, 965, 1438, 2500, 3300];
      const mtu = (n: number) =>
        lb.lab.lab.exec(lb.lab.netns, ['ip', 'link', 'set', lb.lab.arm.name, 'mtu', String(n)]);
      await mtu(4000);
      try {
        for (const [i, n] of sizes.entries()) {
          const spec: FrameSpec = {
            src: '2001:db8:9::7',
            dst: vip,
            proto: 'udp',
            sport: 7000 + i,
            dport: 80,
            payload: Uint8Array.from({ length: n }, (_, k) => (k * 7 + n) & 255),
          };
          const { retval, data } = await lb.lab.run(lb.xdp, frame(spec));
          const hash = await lb.hashOf(id, 7000 + i);
          const want = encapsulated(spec, '2001:db8:1::11', hash, lb.lab.arm.mac);
          expect({ n, retval, udpChecksumOk: outerOf(data).udpChecksumOk }).toEqual({
            n,
            retval: XDP_TX,
            udpChecksumOk: true,
          });
          expect(hex(data)).toBe(hex(want));
        }
      } finally {
        await mtu(1500);
      }
    });

    it('chooses the outer source and the UDP source port per flow from the hash, so flows spread', async () => {
      const vip = '203.0.113.20';
      const id = await lb.serviceTo(vip, 1);
      const sources = new Set<string>();
      const ports = new Set<number>();
      for (let i = 0; i < 16; i++) {
        const { data } = await lb.lab.run(
          lb.xdp,
          frame({ src: '198.51.100.9', dst: vip, sport: 2000 + i }),
        );
        const hash = await lb.hashOf(id, 2000 + i);
        const src = hex(data.subarray(14 + 12, 14 + 16));
        const sport = outerOf(data).sport;
        expect({ src, sport }).toEqual({
          src: hex(outerSource(OUTER_SOURCE4, hash)),
          sport: outerPort(hash),
        });
        sources.add(src);
        ports.add(sport);
      }
      expect(sources.size).toBeGreaterThan(8);
      expect(ports.size).toBeGreaterThan(8);
    });

    it('passes a packet to no service untouched', async () => {
      await lb.serviceTo('203.0.113.21', 1);
      const f = frame({ src: '198.51.100.9', dst: '203.0.113.22' });
      const before = lb.maps.events();
      const { retval, data } = await lb.lab.run(lb.xdp, f);
      expect({ retval, data: hex(data) }).toEqual({ retval: XDP_PASS, data: hex(f) });
      expect(lb.maps.events()).toEqual(before);
    });

    it('passes untouched, counting it, when no outer source of the backend family is configured', async () => {
      const vip = '2001:db8:100::21';
      await lb.serviceTo(vip, 11);
      lb.maps.setConfig({ ipipSource4: OUTER_SOURCE4 });
      try {
        const before = lb.maps.events().noSource;
        const f = frame({ src: '2001:db8:9::9', dst: vip });
        const { retval, data } = await lb.lab.run(lb.xdp, f);
        expect({ retval, data: hex(data) }).toEqual({ retval: XDP_PASS, data: hex(f) });
        expect(lb.maps.events().noSource - before).toBe(1);
      } finally {
        lb.maps.setConfig({ ipipSource4: OUTER_SOURCE4, ipipSource6: OUTER_SOURCE6 });
      }
    });
  });

  describe('decapsulation on the backend', () => {
    const macOf = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');

    const cases: { title: string; spec: FrameSpec; backend: number }[] = [
      {
        title: 'strips outer IPv4, UDP and GUE and passes the client packet, MACs kept',
        spec: { src: '198.51.100.7', dst: '203.0.113.30', sport: 555 },
        backend: 1,
      },
      {
        title: 'strips outer IPv6, UDP and GUE from an IPv6 packet',
        spec: { src: '2001:db8:9::7', dst: '2001:db8:100::30', sport: 555 },
        backend: 11,
      },
      {
        title: 'strips outer IPv6, UDP and GUE from an IPv4 packet, the EtherType now IPv4',
        spec: { src: '198.51.100.7', dst: '203.0.113.31', sport: 556 },
        backend: 11,
      },
      {
        title: 'strips outer IPv4, UDP and GUE from an IPv6 packet, the EtherType now IPv6',
        spec: { src: '2001:db8:9::7', dst: '2001:db8:100::31', sport: 556 },
        backend: 1,
      },
      {
        title: 'keeps VLAN tags, with the inner EtherType after them',
        spec: { src: '198.51.100.7', dst: '203.0.113.32', sport: 557, vlans: [7, 8] },
        backend: 1,
      },
    ];

    for (const c of cases) {
      it(c.title, async () => {
        const encap = await lb.encapsulate(c.spec, c.backend);
        const before = lb.decap.counters();
        const { retval, data } = await lb.lab.run(lb.decapXdp, encap);
        const want = l2(ipPacket(c.spec), {
          vlans: c.spec.vlans,
          dstMac: macOf(encap.subarray(0, 6)),
          srcMac: macOf(encap.subarray(6, 12)),
        });
        expect({ retval, data: hex(data) }).toEqual({ retval: XDP_PASS, data: hex(want) });
        const after = lb.decap.counters();
        expect({
          decapped: after.decapped - before.decapped,
          gueDecapped: after.gueDecapped - before.gueDecapped,
        }).toEqual({ decapped: 1, gueDecapped: 1 });
      });
    }

    const inner = ipPacket({ src: '198.51.100.7', dst: '203.0.113.33', sport: 600 });
    const to = (dst: string, o: Partial<Parameters<typeof gueFrame>[1]> = {}) =>
      gueFrame(inner, {
        src: addressBytes(dst.includes(':') ? '2001:db8:1::70' : '192.0.2.70'),
        dst: addressBytes(dst),
        sport: 50000,
        ...o,
      });

    it('takes a GUE frame it did not make alike (outer IPv4 with options)', async () => {
      const datagram = concat(u16(50000), u16(6080), u16(12 + inner.length), u16(0));
      const outer = ipv4Header(
        {
          proto: 17,
          src: addressBytes('192.0.2.70'),
          dst: addressBytes('192.0.2.11'),
          options: Uint8Array.of(1, 1, 1, 0, 0x94, 4, 0, 0),
        },
        datagram.length + 4 + inner.length,
      );
      const f = l2(concat(outer, datagram, gueHeader(4), inner), {});
      const { retval, data } = await lb.lab.run(lb.decapXdp, f);
      expect({ retval, data: hex(data) }).toEqual({ retval: XDP_PASS, data: hex(l2(inner, {})) });
    });

    /** Runs `f` through lb_decap_xdp: the verdict, whether it came out untouched, counter deltas. */
    async function passed(f: Uint8Array) {
      const before = lb.decap.counters();
      const { retval, data } = await lb.lab.run(lb.decapXdp, f);
      const after = lb.decap.counters();
      const moved = Object.fromEntries(
        Object.entries(after)
          .map(([k, v]) => [k, v - before[k as keyof typeof before]])
          .filter(([, d]) => d !== 0),
      );
      return { retval, untouched: hex(data) === hex(f), counted: moved };
    }

    it('passes GUE to an address that is not local untouched, counting it, unless told to take any', async () => {
      const f = to('192.0.2.12');
      expect(await passed(f)).toEqual({
        retval: XDP_PASS,
        untouched: true,
        counted: { notLocal: 1 },
      });
      expect(await passed(to('2001:db8:1::12'))).toEqual({
        retval: XDP_PASS,
        untouched: true,
        counted: { notLocal: 1 },
      });
      lb.decap.setDecapAny(true);
      try {
        const { data } = await lb.lab.run(lb.decapXdp, f);
        expect(hex(data)).toBe(hex(l2(inner, {})));
      } finally {
        lb.decap.setDecapAny(false);
      }
    });

    for (const [what, gue] of [
      ['version 1', Uint8Array.of(0x40, 4, 0, 0)],
      ['the C bit (a control message)', Uint8Array.of(0x20, 4, 0, 0)],
      ['a header length', Uint8Array.of(0x01, 4, 0, 0)],
      ['flags', Uint8Array.of(0, 4, 0x80, 0)],
      ['another inner protocol', Uint8Array.of(0, 47, 0, 0)],
    ] as const) {
      it(`passes a GUE header with ${what} untouched, counting it malformed`, async () => {
        expect(await passed(to('192.0.2.11', { gue }))).toEqual({
          retval: XDP_PASS,
          untouched: true,
          counted: { malformed: 1 },
        });
      });
    }

    it('passes untouched a GUE packet whose inner header is not of the announced version, counting it', async () => {
      expect(await passed(to('2001:db8:1::11', { gue: gueHeader(6) }))).toEqual({
        retval: XDP_PASS,
        untouched: true,
        counted: { malformed: 1 },
      });
    });

    it('passes the first fragment of a GUE datagram untouched, counting it', async () => {
      expect(await passed(to('192.0.2.11', { mf: true }))).toEqual({
        retval: XDP_PASS,
        untouched: true,
        counted: { fragment: 1 },
      });
    });

    it('passes UDP to another port untouched and uncounted', async () => {
      for (const dst of ['192.0.2.11', '2001:db8:1::11']) {
        expect(await passed(to(dst, { dport: 6081 }))).toEqual({
          retval: XDP_PASS,
          untouched: true,
          counted: {},
        });
      }
      const udp = frame({ src: '198.51.100.7', dst: '192.0.2.11', proto: 'udp', dport: 53 });
      expect(await passed(udp)).toEqual({ retval: XDP_PASS, untouched: true, counted: {} });
    });

    it('passes a GUE header cut short untouched and uncounted', async () => {
      const datagram = concat(u16(50000), u16(6080), u16(10), u16(0), Uint8Array.of(0, 4));
      const f = l2(
        concat(
          ipv4Header(
            { proto: 17, src: addressBytes('192.0.2.70'), dst: addressBytes('192.0.2.11') },
            datagram.length,
          ),
          datagram,
        ),
        {},
      );
      expect(await passed(f)).toEqual({ retval: XDP_PASS, untouched: true, counted: {} });
    });

    it('still strips IPIP', async () => {
      const outer = ipv4Header(
        { proto: 4, src: addressBytes('192.0.2.70'), dst: addressBytes('192.0.2.11') },
        inner.length,
      );
      const before = lb.decap.counters();
      const { data } = await lb.lab.run(lb.decapXdp, l2(concat(outer, inner), {}));
      expect(hex(data)).toBe(hex(l2(inner, {})));
      const after = lb.decap.counters();
      expect([after.decapped - before.decapped, after.gueDecapped - before.gueDecapped]).toEqual([
        1, 0,
      ]);
    });
  });
});
