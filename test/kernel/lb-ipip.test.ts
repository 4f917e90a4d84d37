// lb_xdp's IPIP forwarding (outer IPv4 or IPv6 header, per-flow outer source) and lb_decap_xdp, the backend's decapsulation, byte for byte under BPF_PROG_TEST_RUN inside a throw-away namespace.
import { describe, expect, it } from 'vitest';

import { concat, ether, ipv4Header, ipv6Header, mac, u16 } from '../helpers/packets/build.js';
import {
  XDP_PASS,
  XDP_TX,
  addressBytes,
  checkChecksums,
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

/** What lb_xdp must make of `spec` sent to `backend`, given the flow's hash. */
function encapsulated(spec: FrameSpec, backend: string, hash: number, armMac: string): Uint8Array {
  const inner = ipPacket(spec);
  const inner4 = !spec.src.includes(':');
  const tos = spec.tos ?? 0;
  let outer: Uint8Array;
  if (!backend.includes(':')) {
    outer = ipv4Header(
      {
        tos,
        id: 0,
        df: inner4 ? (spec.df ?? false) : true,
        ttl: 64,
        proto: inner4 ? 4 : 41,
        src: outerSource(OUTER_SOURCE4, hash),
        dst: addressBytes(backend),
      },
      inner.length,
    );
  } else {
    outer = ipv6Header(
      {
        tc: tos,
        flow: hash & 0xfffff,
        next: inner4 ? 4 : 41,
        hopLimit: 64,
        src: outerSource(OUTER_SOURCE6, hash),
        dst: addressBytes(backend),
      },
      inner.length,
    );
  }
  const tags = (spec.vlans ?? []).flatMap((tci, i, all) => [
    u16(tci),
    u16(i === all.length - 1 ? (outer.length === 20 ? 0x0800 : 0x86dd) : 0x8100),
  ]);
  return concat(
    ether(
      mac(NEIGHBOURS[backend]!),
      mac(armMac),
      tags.length ? 0x8100 : outer.length === 20 ? 0x0800 : 0x86dd,
    ),
    ...tags,
    outer,
    inner,
  );
}

await describeKernel('the load balancer in IPIP mode', () => {
  const lb = useEncapFixture('ipip', 1000);

  describe('encapsulation', () => {
    const cases: {
      title: string;
      vip: string;
      backend: [number, string];
      spec: Partial<FrameSpec>;
    }[] = [
      {
        title: 'puts an IPv4 header (protocol 4) in front of an IPv4 packet for an IPv4 backend',
        vip: '203.0.113.10',
        backend: [1, '192.0.2.11'],
        spec: { src: '198.51.100.7', tos: 0x28, df: true },
      },
      {
        title:
          'puts an IPv6 header (next header 41) in front of an IPv6 packet for an IPv6 backend',
        vip: '2001:db8:100::10',
        backend: [11, '2001:db8:1::11'],
        spec: { src: '2001:db8:9::7', tos: 0x28, flow: 0x12345 },
      },
      {
        title: 'puts an IPv6 header (next header 4) in front of an IPv4 packet for an IPv6 backend',
        vip: '203.0.113.11',
        backend: [12, '2001:db8:1::12'],
        spec: { src: '198.51.100.7' },
      },
      {
        title:
          'puts an IPv4 header (protocol 41, DF) in front of an IPv6 packet for an IPv4 backend',
        vip: '2001:db8:100::11',
        backend: [2, '192.0.2.12'],
        spec: { src: '2001:db8:9::7' },
      },
      {
        title: 'keeps VLAN tags in front of the outer header',
        vip: '203.0.113.12',
        backend: [1, '192.0.2.11'],
        spec: { src: '198.51.100.7', vlans: [10, 20] },
      },
      {
        title: 'carries a UDP datagram with its checksum as it was',
        vip: '203.0.113.13',
        backend: [2, '192.0.2.12'],
        spec: { src: '198.51.100.7', proto: 'udp', payload: new Uint8Array(301).fill(7) },
      },
    ];

    for (const c of cases) {
      it(c.title, async () => {
        const id = await lb.serviceTo(c.vip, c.backend[0], {
          proto: c.spec.proto === 'udp' ? 'udp' : 'tcp',
        });
        const spec: FrameSpec = { src: '', dst: c.vip, sport: 40000 + id, dport: 80, ...c.spec };
        const { retval, data } = await lb.lab.run(lb.xdp, frame(spec));
        const want = encapsulated(
          spec,
          c.backend[1],
          await lb.hashOf(id, spec.sport!),
          lb.lab.arm.mac,
        );
        expect({ retval, data: hex(data) }).toEqual({ retval: XDP_TX, data: hex(want) });
        expect(checkChecksums(data).checks.every((x) => x.ok)).toBe(true);
        expect(checkChecksums(data).checks.map((x) => x.what)).toEqual(
          c.backend[1].includes(':')
            ? spec.proto === 'udp'
              ? ['udp']
              : spec.src.includes(':')
                ? ['tcp']
                : ['ipv4', 'tcp']
            : spec.src.includes(':')
              ? ['ipv4', 'tcp']
              : spec.proto === 'udp'
                ? ['ipv4', 'ipv4', 'udp']
                : ['ipv4', 'ipv4', 'tcp'],
        );
      });
    }

    it('chooses the outer source per flow from the hash, so flows spread over the prefix', async () => {
      const vip = '203.0.113.20';
      const id = await lb.serviceTo(vip, 1);
      const sources = new Set<string>();
      for (let i = 0; i < 16; i++) {
        const { data } = await lb.lab.run(
          lb.xdp,
          frame({ src: '198.51.100.9', dst: vip, sport: 2000 + i }),
        );
        const src = hex(data.subarray(14 + 12, 14 + 16));
        expect(src).toBe(hex(outerSource(OUTER_SOURCE4, await lb.hashOf(id, 2000 + i))));
        sources.add(src);
      }
      expect(sources.size).toBeGreaterThan(8);
    });

    it('passes untouched, counting it, when no outer source of the backend family is configured', async () => {
      const vip = '203.0.113.21';
      await lb.serviceTo(vip, 1);
      lb.maps.setConfig({ ipipSource6: OUTER_SOURCE6 });
      try {
        const before = lb.maps.events().noSource;
        const f = frame({ src: '198.51.100.9', dst: vip });
        const { retval, data } = await lb.lab.run(lb.xdp, f);
        expect({ retval, data: hex(data) }).toEqual({ retval: XDP_PASS, data: hex(f) });
        expect(lb.maps.events().noSource - before).toBe(1);
      } finally {
        lb.maps.setConfig({ ipipSource4: OUTER_SOURCE4, ipipSource6: OUTER_SOURCE6 });
      }
    });
  });

  describe('decapsulation on the backend', () => {
    const cases: { title: string; spec: FrameSpec; backend: number }[] = [
      {
        title: 'strips an outer IPv4 header and passes the client packet, MACs kept',
        spec: { src: '198.51.100.7', dst: '203.0.113.30', sport: 555 },
        backend: 1,
      },
      {
        title: 'strips an outer IPv6 header from an IPv6 packet',
        spec: { src: '2001:db8:9::7', dst: '2001:db8:100::30', sport: 555 },
        backend: 11,
      },
      {
        title: 'strips an outer IPv6 header from an IPv4 packet',
        spec: { src: '198.51.100.7', dst: '203.0.113.31', sport: 556 },
        backend: 11,
      },
      {
        title: 'strips an outer IPv4 header from an IPv6 packet',
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
        const before = lb.decap.counters().decapped;
        const { retval, data } = await lb.lab.run(lb.decapXdp, encap);
        const want = l2(ipPacket(c.spec), {
          vlans: c.spec.vlans,
          dstMac: [...encap.subarray(0, 6)].map((b) => b.toString(16).padStart(2, '0')).join(':'),
          srcMac: [...encap.subarray(6, 12)].map((b) => b.toString(16).padStart(2, '0')).join(':'),
        });
        expect({ retval, data: hex(data) }).toEqual({ retval: XDP_PASS, data: hex(want) });
        expect(lb.decap.counters().decapped - before).toBe(1);
      });
    }

    it('strips an outer IPv4 header with options', async () => {
      const inner = ipPacket({ src: '198.51.100.7', dst: '203.0.113.33', sport: 600 });
      const outer = ipv4Header(
        {
          proto: 4,
          src: addressBytes('192.0.2.70'),
          dst: addressBytes('192.0.2.11'),
          options: Uint8Array.of(1, 1, 1, 0, 0x94, 4, 0, 0),
        },
        inner.length,
      );
      const { retval, data } = await lb.lab.run(lb.decapXdp, l2(concat(outer, inner), {}));
      expect({ retval, data: hex(data) }).toEqual({ retval: XDP_PASS, data: hex(l2(inner, {})) });
    });

    it('passes IPIP to an address that is not local untouched, unless told to take any', async () => {
      const inner = ipPacket({ src: '198.51.100.7', dst: '203.0.113.34' });
      const outer = ipv4Header(
        { proto: 4, src: addressBytes('192.0.2.70'), dst: addressBytes('192.0.2.12') },
        inner.length,
      );
      const f = l2(concat(outer, inner), {});
      const before = lb.decap.counters();
      const first = await lb.lab.run(lb.decapXdp, f);
      expect({ retval: first.retval, data: hex(first.data) }).toEqual({
        retval: XDP_PASS,
        data: hex(f),
      });
      expect(lb.decap.counters().notLocal - before.notLocal).toBe(1);
      lb.decap.setDecapAny(true);
      try {
        const second = await lb.lab.run(lb.decapXdp, f);
        expect(hex(second.data)).toBe(hex(l2(inner, {})));
      } finally {
        lb.decap.setDecapAny(false);
      }
    });

    it('passes untouched a packet whose inner header is not of the announced version, counting it', async () => {
      const inner = ipPacket({ src: '2001:db8:9::7', dst: '2001:db8:100::34' });
      const outer = ipv4Header(
        { proto: 4, src: addressBytes('192.0.2.70'), dst: addressBytes('192.0.2.11') },
        inner.length,
      );
      const f = l2(concat(outer, inner), {});
      const before = lb.decap.counters().malformed;
      const { retval, data } = await lb.lab.run(lb.decapXdp, f);
      expect({ retval, data: hex(data) }).toEqual({ retval: XDP_PASS, data: hex(f) });
      expect(lb.decap.counters().malformed - before).toBe(1);
    });

    it('passes a fragmented outer packet untouched, counting it', async () => {
      const inner = ipPacket({ src: '198.51.100.7', dst: '203.0.113.35' });
      const outer = ipv4Header(
        { proto: 4, mf: true, src: addressBytes('192.0.2.70'), dst: addressBytes('192.0.2.11') },
        inner.length,
      );
      const f = l2(concat(outer, inner), {});
      const before = lb.decap.counters().fragment;
      const { retval, data } = await lb.lab.run(lb.decapXdp, f);
      expect({ retval, data: hex(data) }).toEqual({ retval: XDP_PASS, data: hex(f) });
      expect(lb.decap.counters().fragment - before).toBe(1);
    });

    it('passes what is not IPIP untouched and uncounted', async () => {
      const f = frame({ src: '198.51.100.7', dst: '192.0.2.11' });
      const before = lb.decap.counters();
      const { retval, data } = await lb.lab.run(lb.decapXdp, f);
      expect({ retval, data: hex(data) }).toEqual({ retval: XDP_PASS, data: hex(f) });
      expect(lb.decap.counters()).toEqual(before);
    });
  });
});
