// lb_xdp's NAT forwarding (destination address and port rewritten, checksums updated incrementally, a reverse entry recorded) and lb_nat_tc, the reverse path, byte for byte under BPF_PROG_TEST_RUN inside a throw-away namespace.
import { describe, expect, it } from 'vitest';

import {
  TC_ACT_OK,
  XDP_PASS,
  XDP_TX,
  addressBytes,
  checkChecksums,
  frame,
  hex,
  type FrameSpec,
} from '../helpers/lb-frames.js';
import { useLbFixture } from '../helpers/lb-fixture.js';
import { NEIGHBOURS } from '../helpers/lb-lab.js';
import { describeKernel } from '../helpers/privileges.js';

/** The checks checkChecksums must find, all verifying. */
function checksumsOf(f: Uint8Array): string[] {
  const { checks } = checkChecksums(f);
  return checks.map((c) => `${c.what}:${c.ok ? 'ok' : 'bad'}`);
}

/**
 * Two payload bytes that make the UDP checksum of `spec` with destination `dst`:`dport` come out
 * as 0 (so it is sent as 0xffff), computed with a sum of this file's own.
 */
function payloadForZeroChecksum(spec: FrameSpec, dst: string, dport: number): Uint8Array {
  const payload = new Uint8Array(24).fill(0x11);
  payload[0] = 0;
  payload[1] = 0;
  const words = (b: Uint8Array): number => {
    let s = 0;
    for (let i = 0; i < b.length; i += 2) s += (b[i]! << 8) + (b[i + 1] ?? 0);
    return s;
  };
  const length = 8 + payload.length;
  let sum =
    words(addressBytes(spec.src)) +
    words(addressBytes(dst)) +
    17 +
    length +
    (spec.sport ?? 40000) +
    dport +
    length +
    words(payload);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  // the sum must fold to 0xffff: the checksum, its complement, is then 0
  const w = 0xffff - sum;
  payload[0] = w >>> 8;
  payload[1] = w & 0xff;
  return payload;
}

await describeKernel('the load balancer in NAT mode', () => {
  const lb = useLbFixture({
    mode: 'nat',
    setup(maps) {
      maps.setBackend(1, { address: '192.0.2.11', port: 8080 });
      maps.setBackend(2, { address: '192.0.2.12' });
      maps.setBackend(11, { address: '2001:db8:1::11', port: 8443 });
    },
  });

  const cases: {
    title: string;
    spec: FrameSpec;
    backend: [number, string, number];
  }[] = [
    {
      title: 'rewrites an IPv4 TCP destination to the backend address and port',
      spec: { src: '198.51.100.7', dst: '203.0.113.10', proto: 'tcp', sport: 33000, dport: 80 },
      backend: [1, '192.0.2.11', 8080],
    },
    {
      title: 'rewrites an IPv6 TCP destination to the backend address and port',
      spec: {
        src: '2001:db8:9::7',
        dst: '2001:db8:100::10',
        proto: 'tcp',
        sport: 33000,
        dport: 443,
      },
      backend: [11, '2001:db8:1::11', 8443],
    },
    {
      title: 'rewrites an IPv4 UDP destination and its checksum',
      spec: { src: '198.51.100.7', dst: '203.0.113.11', proto: 'udp', sport: 5353, dport: 53 },
      backend: [1, '192.0.2.11', 8080],
    },
    {
      title: 'rewrites an IPv6 UDP destination and its checksum',
      spec: { src: '2001:db8:9::7', dst: '2001:db8:100::11', proto: 'udp', sport: 5353, dport: 53 },
      backend: [11, '2001:db8:1::11', 8443],
    },
    {
      title: 'keeps the VIP port for a backend without one',
      spec: { src: '198.51.100.7', dst: '203.0.113.12', proto: 'tcp', sport: 33001, dport: 80 },
      backend: [2, '192.0.2.12', 80],
    },
    {
      title: 'leaves an IPv4 UDP checksum of 0 at 0',
      spec: {
        src: '198.51.100.7',
        dst: '203.0.113.13',
        proto: 'udp',
        sport: 5354,
        dport: 53,
        noUdpChecksum: true,
      },
      backend: [1, '192.0.2.11', 8080],
    },
    {
      title: 'rewrites a VLAN-tagged IPv4 packet behind its tags',
      spec: {
        src: '198.51.100.7',
        dst: '203.0.113.14',
        proto: 'tcp',
        sport: 33002,
        dport: 80,
        vlans: [5, 6],
      },
      backend: [1, '192.0.2.11', 8080],
    },
  ];

  describe('forward path', () => {
    for (const c of cases) {
      it(c.title, async () => {
        const id = await lb.serviceTo(c.spec.dst, c.backend[0], {
          port: c.spec.dport!,
          proto: c.spec.proto!,
        });
        const { retval, data } = await lb.lab.run(lb.xdp, frame(c.spec));
        const want = frame({
          ...c.spec,
          dst: c.backend[1],
          dport: c.backend[2],
          dstMac: NEIGHBOURS[c.backend[1]],
          srcMac: lb.lab.arm.mac,
        });
        expect({ retval, data: hex(data) }).toEqual({ retval: XDP_TX, data: hex(want) });
        expect(checksumsOf(data).every((x) => x.endsWith(':ok'))).toBe(true);
        expect(checksumsOf(data).length).toBe(c.spec.src.includes(':') ? 1 : 2);
        const nat = (await lb.maps.readNat()).filter((e) => e.serviceId === id);
        expect(nat).toEqual([
          {
            family: c.spec.src.includes(':') ? 6 : 4,
            backend: c.backend[1],
            backendPort: c.backend[2],
            client: c.spec.src,
            clientPort: c.spec.sport,
            proto: c.spec.proto,
            vip: c.spec.dst,
            vipPort: c.spec.dport,
            serviceId: id,
          },
        ]);
      });
    }

    it('sends a UDP checksum that comes out as 0 as 0xffff', async () => {
      const spec: FrameSpec = {
        src: '198.51.100.8',
        dst: '203.0.113.15',
        proto: 'udp',
        sport: 7777,
        dport: 53,
      };
      spec.payload = payloadForZeroChecksum(spec, '192.0.2.11', 8080);
      await lb.serviceTo(spec.dst, 1, { port: 53, proto: 'udp' });
      const { retval, data } = await lb.lab.run(lb.xdp, frame(spec));
      expect(retval).toBe(XDP_TX);
      expect(hex(data.subarray(14 + 20 + 6, 14 + 20 + 8))).toBe('ffff');
      expect(checksumsOf(data)).toEqual(['ipv4:ok', 'udp:ok']);
    });

    it('rewrites only the address of an SCTP packet, keeping the port', async () => {
      const spec: FrameSpec = {
        src: '198.51.100.7',
        dst: '203.0.113.16',
        proto: 'sctp',
        sport: 9000,
        dport: 3868,
      };
      await lb.serviceTo(spec.dst, 1, { port: 3868, proto: 'sctp' });
      const { retval, data } = await lb.lab.run(lb.xdp, frame(spec));
      const want = frame({
        ...spec,
        dst: '192.0.2.11',
        dstMac: NEIGHBOURS['192.0.2.11'],
        srcMac: lb.lab.arm.mac,
      });
      expect({ retval, data: hex(data) }).toEqual({ retval: XDP_TX, data: hex(want) });
    });

    it('passes a backend of the other family untouched, counting it', async () => {
      await lb.serviceTo('203.0.113.17', 11);
      const before = lb.maps.events().family;
      const f = frame({ src: '198.51.100.7', dst: '203.0.113.17' });
      const { retval, data } = await lb.lab.run(lb.xdp, f);
      expect({ retval, data: hex(data) }).toEqual({ retval: XDP_PASS, data: hex(f) });
      expect(lb.maps.events().family - before).toBe(1);
    });

    it('rewrites only the address of every fragment, and the L4 checksum of the first', async () => {
      const id = await lb.serviceTo('203.0.113.20', 1, { port: 0, proto: 'udp', hashMode: 'src' });
      for (const fragment of [
        { offset: 0, more: true },
        { offset: 4, more: false },
      ]) {
        const spec: FrameSpec = {
          src: '198.51.100.7',
          dst: '203.0.113.20',
          proto: 'udp',
          sport: 6000,
          dport: 53,
          fragment,
        };
        const input = frame(spec);
        const { retval, data } = await lb.lab.run(lb.xdp, input);
        const want = Buffer.from(
          frame({
            ...spec,
            dst: '192.0.2.11',
            dstMac: NEIGHBOURS['192.0.2.11'],
            srcMac: lb.lab.arm.mac,
          }),
        );
        // a later fragment's bytes past the IP header are payload: they stay as sent
        if (fragment.offset) Buffer.from(input).copy(want, 34, 34);
        expect({ fragment, retval, data: hex(data) }).toEqual({
          fragment,
          retval: XDP_TX,
          data: hex(want),
        });
      }
      expect((await lb.maps.readNat()).filter((e) => e.serviceId === id)).toMatchObject([
        { backendPort: 53, clientPort: 6000, vipPort: 53 },
      ]);
    });

    it('writes the reverse entry once per flow, not once per packet', async () => {
      const id = await lb.serviceTo('203.0.113.18', 1);
      for (let i = 0; i < 3; i++)
        await lb.lab.run(lb.xdp, frame({ src: '198.51.100.7', dst: '203.0.113.18', sport: 1234 }));
      expect((await lb.maps.readNat()).filter((e) => e.serviceId === id)).toHaveLength(1);
    });
  });

  describe('reverse path (lb_nat_tc)', () => {
    for (const c of cases) {
      it(`turns the reply back: ${c.title.replace(/^rewrites |^keeps |^leaves /, '')}`, async () => {
        // the forward test of the same case wrote the entry
        const reply: FrameSpec = {
          ...c.spec,
          src: c.backend[1],
          dst: c.spec.src,
          sport: c.backend[2],
          dport: c.spec.sport,
          flags: 0x12,
        };
        const before = lb.maps.events().natReverse;
        const { retval, data } = await lb.lab.run(lb.program('lb_nat_tc'), frame(reply), null);
        const want = frame({ ...reply, src: c.spec.dst, sport: c.spec.dport });
        expect({ retval, data: hex(data) }).toEqual({ retval: TC_ACT_OK, data: hex(want) });
        expect(checksumsOf(data).every((x) => x.endsWith(':ok'))).toBe(true);
        expect(lb.maps.events().natReverse - before).toBe(1);
      });
    }

    it('leaves a reply without a NAT entry untouched', async () => {
      const f = frame({
        src: '192.0.2.11',
        dst: '198.51.100.99',
        sport: 8080,
        dport: 1,
        flags: 0x12,
      });
      const before = lb.maps.events().natReverse;
      const { retval, data } = await lb.lab.run(lb.program('lb_nat_tc'), f, null);
      expect({ retval, data: hex(data) }).toEqual({ retval: TC_ACT_OK, data: hex(f) });
      expect(lb.maps.events().natReverse).toBe(before);
    });

    it('round-trips a flow: client to VIP, VIP to client, byte for byte', async () => {
      await lb.serviceTo('203.0.113.19', 1);
      const request: FrameSpec = {
        src: '198.51.100.50',
        dst: '203.0.113.19',
        sport: 45678,
        dport: 80,
        payload: new Uint8Array(57).fill(0xab),
      };
      const forwarded = await lb.lab.run(lb.xdp, frame(request));
      expect(checksumsOf(forwarded.data)).toEqual(['ipv4:ok', 'tcp:ok']);
      const reply = frame({
        src: '192.0.2.11',
        dst: '198.51.100.50',
        sport: 8080,
        dport: 45678,
        flags: 0x18,
        payload: new Uint8Array(33).fill(0xcd),
      });
      const back = await lb.lab.run(lb.program('lb_nat_tc'), reply, null);
      expect(hex(back.data)).toBe(
        hex(
          frame({
            src: '203.0.113.19',
            dst: '198.51.100.50',
            sport: 80,
            dport: 45678,
            flags: 0x18,
            payload: new Uint8Array(33).fill(0xcd),
          }),
        ),
      );
    });
  });
});
