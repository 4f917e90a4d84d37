// Deterministic packet corpus for the filter differential tests: Ethernet frames covering what pcap-filter(7) can match.
import { Prng } from './prng.js';
import {
  authHeader,
  concat,
  ether,
  ipv4,
  ipv4Header,
  ipv6,
  ipv6FragmentHeader,
  ipv6Header,
  ipv6OptionsHeader,
  ipv6RoutingHeader,
  llc,
  mac,
  setL4Checksum,
  snap,
  tcpHeader,
  u16,
  u32,
  udpHeader,
  vlanTag,
  type Ipv4Options,
} from './build.js';

/** One generated frame: the captured bytes, the length on the wire, and what it is. */
export interface GeneratedPacket {
  data: Uint8Array;
  /** Length on the wire; larger than data.length when the capture was cut short. */
  wireLength: number;
  /** The scenario that produced it (one per packet), e.g. "tcp4", "ipv6-ext", "runt". */
  category: string;
  /** Every feature the frame exercises, e.g. "vlan", "ipv4-options", "tcp-flags-0x12", "truncated". */
  tags: string[];
  /** Short human description for failure messages. */
  description: string;
}

/** The seed the test corpus uses unless told otherwise. */
export const DEFAULT_PACKET_SEED = 0x51_1c_e0_01;
/** The corpus size the tests use unless told otherwise. */
export const DEFAULT_PACKET_COUNT = 6000;

/** Tags every corpus of the default size must contain (asserted by the corpus tests). */
export const REQUIRED_TAGS = [
  'ethernet-ii',
  'llc',
  'snap',
  'raw-802.3',
  'vlan',
  'qinq-88a8',
  'qinq-8100',
  'vlan-9100',
  'mpls',
  'pppoes',
  'pppoed',
  'ipv4',
  'ipv4-options',
  'ipv4-fragment-first',
  'ipv4-fragment-later',
  'ipv4-fragment-last',
  'ipv4-multicast',
  'ipv4-broadcast',
  'ipv6',
  'ipv6-hop-by-hop',
  'ipv6-routing',
  'ipv6-dstopts',
  'ipv6-fragment-first',
  'ipv6-fragment-later',
  'ipv6-ah',
  'ipv6-multicast',
  'arp',
  'rarp',
  'tcp',
  'tcp-options',
  'udp',
  'icmp',
  'icmp6',
  'icmp6-nd',
  'sctp',
  'gre',
  'igmp',
  'esp',
  'ah',
  'pim',
  'vrrp',
  'geneve',
  'ether-broadcast',
  'ether-multicast',
  'stp',
  'netbeui',
  'ipx',
  'iso',
  'isis',
  'atalk',
  'aarp',
  'decnet',
  'other-ethertype',
  'runt',
  'truncated',
  'snapcut',
  'padded',
  'jumbo',
  ...Array.from({ length: 256 }, (_, f) => `tcp-flags-0x${f.toString(16).padStart(2, '0')}`),
] as const;

// Address and port pools: small, so that host/net/port expressions match a real fraction of the corpus.
const MACS = [
  'ff:ff:ff:ff:ff:ff',
  '00:00:5e:00:53:01',
  '00:00:5e:00:53:02',
  '00:00:5e:00:53:ff',
  '02:00:00:00:00:01',
  '00:11:22:33:44:55',
  'aa:bb:cc:dd:ee:ff',
  '01:00:5e:00:00:01',
  '01:00:5e:7f:ff:fa',
  '33:33:00:00:00:01',
  '33:33:ff:00:00:01',
  '01:80:c2:00:00:00',
  '00:00:00:00:00:00',
].map(mac);
const UNICAST_MACS = MACS.filter((m) => (m[0]! & 1) === 0);
const BROADCAST_MAC = mac('ff:ff:ff:ff:ff:ff');
const V4_UNICAST = [
  '192.0.2.1',
  '192.0.2.2',
  '192.0.2.10',
  '192.0.2.254',
  '198.51.100.1',
  '198.51.100.77',
  '198.51.100.200',
  '203.0.113.5',
  '203.0.113.200',
  '10.0.0.1',
  '10.1.2.3',
  '10.255.255.254',
  '192.168.1.1',
  '192.168.200.9',
  '172.16.0.1',
  '127.0.0.1',
  '0.0.0.0',
  '100.64.0.1',
].map(ipv4);
const V4_MULTICAST = ['224.0.0.1', '224.0.0.22', '224.0.0.251', '239.255.255.250', '232.1.2.3'].map(
  ipv4,
);
const V4_BROADCAST = ['255.255.255.255', '192.0.2.255', '10.255.255.255'].map(ipv4);
const V6_UNICAST = [
  '2001:db8::1',
  '2001:db8::2',
  '2001:db8::53',
  '2001:db8:0:1::1',
  '2001:db8:1::2',
  '2001:db8:ffff::80',
  'fe80::1',
  'fe80::200:5eff:fe00:5301',
  '::1',
  '::',
  '::ffff:192.0.2.1',
  '2002:c000:201::1',
  '2001:0db8:85a3::8a2e:370:7334',
].map(ipv6);
const V6_MULTICAST = [
  'ff02::1',
  'ff02::2',
  'ff02::1:ff00:1',
  'ff05::1:3',
  'ff0e::101',
  'ff02::16',
].map(ipv6);
const PORTS = [
  0, 7, 20, 21, 22, 23, 25, 53, 67, 68, 69, 80, 110, 123, 137, 161, 179, 443, 513, 514, 1023, 1024,
  1025, 1026, 1027, 1028, 1029, 1030, 1031, 3306, 5060, 6081, 8080, 8443, 32768, 49152, 65534,
  65535,
];
const VLAN_IDS = [0, 1, 2, 10, 100, 200, 300, 1000, 4094, 4095];
const MPLS_LABELS = [0, 1, 3, 16, 1024, 100000, 1048575];
const PPPOE_SESSIONS = [0, 1, 0x27, 0x1234, 0xffff];
const GENEVE_VNIS = [0, 1, 0xb, 100, 0xffffff];

interface L3 {
  type: number; // EtherType
  bytes: Uint8Array;
  headerLength: number; // bytes of headers worth truncating inside
  tags: string[];
  desc: string;
}

const TCP_FLAG_NAMES = ['FIN', 'SYN', 'RST', 'PSH', 'ACK', 'URG', 'ECE', 'CWR'];

function flagNames(flags: number): string {
  const n = TCP_FLAG_NAMES.filter((_, i) => flags & (1 << i));
  return n.length ? n.join(',') : 'none';
}

function hex2(v: number): string {
  return `0x${v.toString(16).padStart(2, '0')}`;
}

class Generator {
  /** When set, IPv4 packets are never fragmented (the systematic sections keep their upper headers). */
  unfragmented = false;

  constructor(private readonly rng: Prng) {}

  v4Pair(): { src: Uint8Array; dst: Uint8Array; tags: string[] } {
    const r = this.rng;
    const src = r.pick(V4_UNICAST);
    const kind = r.weighted({ unicast: 80, multicast: 10, broadcast: 6 });
    if (kind === 'multicast') return { src, dst: r.pick(V4_MULTICAST), tags: ['ipv4-multicast'] };
    if (kind === 'broadcast') return { src, dst: r.pick(V4_BROADCAST), tags: ['ipv4-broadcast'] };
    return { src, dst: r.pick(V4_UNICAST), tags: [] };
  }

  v6Pair(): { src: Uint8Array; dst: Uint8Array; tags: string[] } {
    const r = this.rng;
    const src = r.pick(V6_UNICAST);
    if (r.chance(0.15)) return { src, dst: r.pick(V6_MULTICAST), tags: ['ipv6-multicast'] };
    return { src, dst: r.pick(V6_UNICAST), tags: [] };
  }

  port(): number {
    return this.rng.chance(0.85) ? this.rng.pick(PORTS) : this.rng.range(1, 65535);
  }

  payload(max = 48): Uint8Array {
    const r = this.rng;
    if (r.chance(0.03)) return r.bytes(r.range(1000, 1560)); // large frames for greater/less
    return r.bytes(r.chance(0.3) ? 0 : r.range(1, max));
  }

  tcpOptions(): Uint8Array | undefined {
    const r = this.rng;
    if (!r.chance(0.3)) return undefined;
    const parts: Uint8Array[] = [];
    if (r.chance(0.6))
      parts.push(concat(Uint8Array.of(2, 4), u16(r.pick([536, 1360, 1460, 8960]))));
    if (r.chance(0.4)) parts.push(Uint8Array.of(1, 3, 3, r.range(0, 14)));
    if (r.chance(0.4)) parts.push(Uint8Array.of(4, 2));
    if (r.chance(0.5)) parts.push(concat(Uint8Array.of(1, 1, 8, 10), u32(r.next()), u32(r.next())));
    if (parts.length === 0) parts.push(Uint8Array.of(1, 1, 1, 0));
    return concat(...parts);
  }

  tcp(flags?: number): { bytes: Uint8Array; tags: string[]; desc: string } {
    const r = this.rng;
    const f =
      flags ??
      r.pick([0x02, 0x12, 0x10, 0x18, 0x11, 0x04, 0x14, 0x19, 0x29, 0x00, 0xc2, 0x3f, r.int(256)]);
    const options = this.tcpOptions();
    const h = tcpHeader({
      sport: this.port(),
      dport: this.port(),
      seq: r.next(),
      ack: f & 0x10 ? r.next() : 0,
      flags: f,
      window: r.pick([0, 1024, 29200, 65535]),
      urgent: f & 0x20 ? r.range(0, 100) : 0,
      options,
    });
    const tags = ['tcp', `tcp-flags-${hex2(f)}`];
    if (options) tags.push('tcp-options');
    const sport = (h[0]! << 8) | h[1]!;
    const dport = (h[2]! << 8) | h[3]!;
    return {
      bytes: concat(h, this.payload()),
      tags,
      desc: `tcp ${sport}>${dport} [${flagNames(f)}]`,
    };
  }

  udp(): { bytes: Uint8Array; tags: string[]; desc: string } {
    const sport = this.port();
    const dport = this.port();
    const p = this.payload();
    return {
      bytes: concat(udpHeader(sport, dport, p.length), p),
      tags: ['udp'],
      desc: `udp ${sport}>${dport}`,
    };
  }

  sctp(): { bytes: Uint8Array; tags: string[]; desc: string } {
    const r = this.rng;
    const sport = this.port();
    const dport = this.port();
    const chunkType = r.pick([0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 14]);
    const value = r.bytes(r.range(0, 20));
    const chunk = concat(Uint8Array.of(chunkType, r.int(8)), u16(4 + value.length), value);
    const pad = new Uint8Array((4 - (chunk.length % 4)) % 4);
    return {
      bytes: concat(u16(sport), u16(dport), u32(r.next()), u32(r.next()), chunk, pad),
      tags: ['sctp'],
      desc: `sctp ${sport}>${dport} chunk ${chunkType}`,
    };
  }

  icmp(type?: number, code?: number): { bytes: Uint8Array; tags: string[]; desc: string } {
    const r = this.rng;
    const t = type ?? r.pick([0, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 30, 40, 255]);
    const c =
      code ?? (t === 3 ? r.range(0, 15) : t === 5 ? r.range(0, 3) : t === 11 ? r.range(0, 1) : 0);
    const body = r.bytes(r.pick([4, 8, 12, 28, 36]));
    const m = concat(Uint8Array.of(t, c, 0, 0), body);
    return { bytes: m, tags: ['icmp', `icmp-type-${t}`], desc: `icmp type ${t} code ${c}` };
  }

  icmp6(type?: number): { bytes: Uint8Array; tags: string[]; desc: string } {
    const r = this.rng;
    const t =
      type ?? r.pick([1, 2, 3, 4, 128, 129, 130, 131, 132, 133, 134, 135, 136, 137, 143, 200]);
    const c = t === 1 ? r.range(0, 6) : t === 3 ? r.range(0, 1) : 0;
    let body: Uint8Array;
    const tags = ['icmp6', `icmp6-type-${t}`];
    if (t >= 133 && t <= 137) {
      tags.push('icmp6-nd');
      const target = t === 135 || t === 136 || t === 137 ? r.pick(V6_UNICAST) : new Uint8Array(0);
      const lla = concat(Uint8Array.of(t === 136 ? 2 : 1, 1), r.pick(UNICAST_MACS));
      body = concat(
        u32(t === 136 ? 0x60000000 : 0),
        target,
        t === 134 ? u32(0) : new Uint8Array(0),
        lla,
      );
    } else {
      body = r.bytes(r.pick([4, 8, 20]));
    }
    return {
      bytes: concat(Uint8Array.of(t, c, 0, 0), body),
      tags,
      desc: `icmp6 type ${t} code ${c}`,
    };
  }

  igmp(): { bytes: Uint8Array; tags: string[]; desc: string } {
    const r = this.rng;
    const t = r.pick([0x11, 0x12, 0x16, 0x17, 0x22]);
    return {
      bytes: concat(Uint8Array.of(t, r.pick([0, 100]), 0, 0), r.pick(V4_MULTICAST)),
      tags: ['igmp'],
      desc: `igmp type ${hex2(t)}`,
    };
  }

  /** An IPv4 packet around an upper layer; handles options and fragments. */
  ipv4Packet(
    proto: number,
    upper: Uint8Array,
    upperTags: string[],
    upperDesc: string,
    pair = this.v4Pair(),
  ): L3 {
    const r = this.rng;
    const tags = ['ipv4', ...pair.tags];
    let options: Uint8Array | undefined;
    if (r.chance(0.2)) {
      tags.push('ipv4-options');
      const kind = r.pick(['nop', 'ra', 'rr', 'ts', 'lsrr', 'long']);
      if (kind === 'nop') options = Uint8Array.of(1, 1, 1, 0);
      else if (kind === 'ra') options = Uint8Array.of(0x94, 4, 0, 0);
      else if (kind === 'rr')
        options = concat(
          Uint8Array.of(7, 11, 4),
          r.pick(V4_UNICAST),
          r.pick(V4_UNICAST),
          Uint8Array.of(0),
        );
      else if (kind === 'ts')
        options = concat(Uint8Array.of(0x44, 12, 5, 0), u32(r.next()), u32(r.next()));
      else if (kind === 'lsrr')
        options = concat(Uint8Array.of(0x83, 7, 4), r.pick(V4_UNICAST), Uint8Array.of(0));
      else options = concat(Uint8Array.of(7, 39, 4), new Uint8Array(36), Uint8Array.of(0)); // IHL 15
    }
    const frag = this.unfragmented ? 'none' : r.weighted({ none: 88, first: 4, later: 5, last: 3 });
    let body = upper;
    const o: Ipv4Options = {
      proto,
      src: pair.src,
      dst: pair.dst,
      tos: r.pick([0, 0, 0x10, 0xb8, 0x02]),
      id: r.int(65536),
      ttl: r.pick([1, 64, 128, 255]),
      df: frag === 'none' && r.chance(0.5),
      options,
    };
    let desc = upperDesc;
    if (frag === 'first') {
      o.mf = true;
      tags.push('ipv4-fragment-first');
      desc += ' (first fragment)';
    } else if (frag !== 'none') {
      o.mf = frag === 'later';
      o.fragOffset = r.pick([1, 2, 3, 185, 0x1fff]);
      body = r.chance(0.5) ? upper : r.bytes(r.range(8, 40)); // later fragments carry no upper header
      tags.push(frag === 'later' ? 'ipv4-fragment-later' : 'ipv4-fragment-last');
      desc += ` (fragment offset ${o.fragOffset * 8}${o.mf ? ', MF' : ''})`;
    }
    if (frag === 'none' || frag === 'first') tags.push(...upperTags);
    else tags.push(...upperTags.filter((t) => !t.startsWith('tcp-flags')));
    if (
      ((proto === 6 && upper.length >= 20) || (proto === 17 && upper.length >= 8)) &&
      body === upper
    ) {
      body = setL4Checksum(Uint8Array.from(upper), proto === 6 ? 16 : 6, proto, pair.src, pair.dst);
    }
    const h = ipv4Header(o, body.length);
    return {
      type: 0x0800,
      bytes: concat(h, body),
      headerLength: h.length + Math.min(body.length, 24),
      tags,
      desc: `ip ${desc}`,
    };
  }

  /** An IPv6 packet with an optional extension-header chain around an upper layer. */
  ipv6Packet(
    next: number,
    upper: Uint8Array,
    upperTags: string[],
    upperDesc: string,
    withExt: boolean,
  ): L3 {
    const r = this.rng;
    const pair = this.v6Pair();
    const tags = ['ipv6', ...pair.tags];
    const exts: Array<{ type: number; make: (next: number) => Uint8Array; tag: string }> = [];
    let laterFragment = false;
    if (withExt) {
      if (r.chance(0.5))
        exts.push({
          type: 0,
          make: (n) => ipv6OptionsHeader(n, Uint8Array.of(5, 2, 0, 0)),
          tag: 'ipv6-hop-by-hop',
        });
      if (r.chance(0.4))
        exts.push({
          type: 60,
          make: (n) =>
            ipv6OptionsHeader(
              n,
              r.chance(0.5) ? new Uint8Array(0) : Uint8Array.of(1, 8, ...new Uint8Array(8)),
            ),
          tag: 'ipv6-dstopts',
        });
      if (r.chance(0.4))
        exts.push({
          type: 43,
          make: (n) =>
            ipv6RoutingHeader(n, r.pick([0, 2, 4]), r.range(0, 2), [
              r.pick(V6_UNICAST),
              ...(r.chance(0.5) ? [r.pick(V6_UNICAST)] : []),
            ]),
          tag: 'ipv6-routing',
        });
      if (r.chance(0.35)) {
        laterFragment = !this.unfragmented && r.chance(0.5);
        const off = laterFragment ? r.pick([1, 3, 181]) : 0;
        exts.push({
          type: 44,
          make: (n) => ipv6FragmentHeader(n, off, r.chance(0.7), r.next()),
          tag: laterFragment ? 'ipv6-fragment-later' : 'ipv6-fragment-first',
        });
      }
      if (r.chance(0.25))
        exts.push({
          type: 51,
          make: (n) => authHeader(n, r.next(), r.range(1, 1000), r.bytes(12)),
          tag: 'ipv6-ah',
        });
      if (exts.length === 0)
        exts.push({
          type: 60,
          make: (n) => ipv6OptionsHeader(n, new Uint8Array(4)),
          tag: 'ipv6-dstopts',
        });
    }
    let body = laterFragment ? r.bytes(r.range(8, 40)) : upper;
    if (
      ((next === 6 && upper.length >= 20) || ((next === 17 || next === 58) && upper.length >= 8)) &&
      body === upper
    ) {
      body = setL4Checksum(
        Uint8Array.from(upper),
        next === 6 ? 16 : next === 17 ? 6 : 2,
        next,
        pair.src,
        pair.dst,
      );
    }
    let nh = next;
    const chain: string[] = [];
    for (let i = exts.length - 1; i >= 0; i--) {
      const e = exts[i]!;
      body = concat(e.make(nh), body);
      nh = e.type;
      tags.push(e.tag);
      chain.unshift(String(e.type));
    }
    tags.push(...(laterFragment ? upperTags.filter((t) => !t.startsWith('tcp-flags')) : upperTags));
    const h = ipv6Header(
      {
        next: nh,
        src: pair.src,
        dst: pair.dst,
        tc: r.pick([0, 0, 0xb8]),
        flow: r.int(0x100000),
        hopLimit: r.pick([1, 64, 255]),
      },
      body.length,
    );
    const ext = chain.length
      ? ` ext[${chain.join(',')}]${laterFragment ? ' later-fragment' : ''}`
      : '';
    return {
      type: 0x86dd,
      bytes: concat(h, body),
      headerLength: 40 + Math.min(body.length, 64),
      tags,
      desc: `ip6${ext} ${upperDesc}`,
    };
  }

  arp(rarp: boolean): L3 {
    const r = this.rng;
    const op = rarp ? r.pick([3, 4]) : r.pick([1, 2, 1, 2, 8, 9]);
    const odd = r.chance(0.05);
    const sha = r.pick(UNICAST_MACS);
    const tha = op === 1 || op === 3 ? new Uint8Array(6) : r.pick(UNICAST_MACS);
    const body = concat(
      u16(odd ? 6 : 1),
      u16(odd ? 0x86dd : 0x0800),
      Uint8Array.of(6, 4),
      u16(op),
      sha,
      r.pick(V4_UNICAST),
      tha,
      r.pick(V4_UNICAST),
    );
    return {
      type: rarp ? 0x8035 : 0x0806,
      bytes: body,
      headerLength: body.length,
      tags: [rarp ? 'rarp' : 'arp'],
      desc: `${rarp ? 'rarp' : 'arp'} op ${op}`,
    };
  }

  decnet(): L3 {
    const r = this.rng;
    const addr = (): Uint8Array => {
      const [area, node] = r.pick([
        [1, 1],
        [10, 123],
        [63, 1023],
        [2, 5],
      ]) as [number, number];
      const v = (area << 10) | node;
      return Uint8Array.of(v & 0xff, v >>> 8);
    };
    const pad = r.chance(0.4)
      ? concat(Uint8Array.of(0x80 | 3), new Uint8Array(2))
      : new Uint8Array(0);
    const long = r.chance(0.5);
    const hdr = long
      ? concat(
          Uint8Array.of(0x06, 0, 0),
          Uint8Array.of(0xaa, 0, 4, 0),
          addr(),
          Uint8Array.of(0, 0),
          Uint8Array.of(0xaa, 0, 4, 0),
          addr(),
          Uint8Array.of(0, 0, 0, 0),
        )
      : concat(Uint8Array.of(0x02), addr(), addr(), Uint8Array.of(0));
    const inner = concat(pad, hdr, r.bytes(8));
    const body = concat(Uint8Array.of(inner.length & 0xff, inner.length >>> 8), inner);
    return {
      type: 0x6003,
      bytes: body,
      headerLength: body.length,
      tags: ['decnet'],
      desc: `decnet ${long ? 'long' : 'short'}${pad.length ? ' padded' : ''}`,
    };
  }

  /** A random IP-family L3 packet (what most scenarios produce). */
  ipScenario(kind: string): L3 {
    const r = this.rng;
    switch (kind) {
      case 'tcp4': {
        const u = this.tcp();
        return this.ipv4Packet(6, u.bytes, u.tags, u.desc);
      }
      case 'udp4': {
        const u = this.udp();
        return this.ipv4Packet(17, u.bytes, u.tags, u.desc);
      }
      case 'icmp4': {
        const u = this.icmp();
        return this.ipv4Packet(1, u.bytes, u.tags, u.desc);
      }
      case 'sctp4': {
        const u = this.sctp();
        return this.ipv4Packet(132, u.bytes, u.tags, u.desc);
      }
      case 'igmp': {
        const u = this.igmp();
        return this.ipv4Packet(2, u.bytes, u.tags, u.desc, {
          src: r.pick(V4_UNICAST),
          dst: r.pick(V4_MULTICAST),
          tags: ['ipv4-multicast'],
        });
      }
      case 'gre': {
        const inner = this.ipScenario(r.pick(['tcp4', 'udp4', 'icmp4']));
        const key = r.chance(0.4);
        const proto = r.chance(0.8) ? 0x0800 : 0x6558;
        const payload =
          proto === 0x0800
            ? inner.bytes
            : concat(ether(r.pick(UNICAST_MACS), r.pick(UNICAST_MACS), 0x0800), inner.bytes);
        const gre = concat(
          u16(key ? 0x2000 : 0),
          u16(proto),
          key ? u32(r.next()) : new Uint8Array(0),
          payload,
        );
        return this.ipv4Packet(47, gre, ['gre'], `gre(${inner.desc})`);
      }
      case 'esp4':
        return this.ipv4Packet(
          50,
          concat(u32(r.next()), u32(r.range(1, 9999)), r.bytes(r.range(8, 40))),
          ['esp'],
          'esp',
        );
      case 'ah4': {
        const u = r.chance(0.5) ? this.tcp() : this.udp();
        const next = u.tags.includes('tcp') ? 6 : 17;
        return this.ipv4Packet(
          51,
          concat(authHeader(next, r.next(), r.range(1, 99), r.bytes(12)), u.bytes),
          ['ah', ...u.tags],
          `ah(${u.desc})`,
        );
      }
      case 'other4': {
        const [proto, tag] = r.pick([
          [103, 'pim'],
          [112, 'vrrp'],
          [89, 'ospf'],
          [4, 'ipip'],
          [41, 'ipv6-in-ipv4'],
          [255, 'proto-255'],
          [0, 'proto-0'],
          [58, 'icmp6-in-ipv4'],
          [6, 'tcp-short'],
        ] as const);
        const body =
          tag === 'ipip'
            ? this.ipScenario('udp4').bytes
            : tag === 'tcp-short'
              ? r.bytes(r.range(0, 12))
              : r.bytes(r.range(4, 32));
        return this.ipv4Packet(proto, body, [tag], `proto ${proto}`);
      }
      case 'tcp6': {
        const u = this.tcp();
        return this.ipv6Packet(6, u.bytes, u.tags, u.desc, r.chance(0.2));
      }
      case 'udp6': {
        const u = this.udp();
        return this.ipv6Packet(17, u.bytes, u.tags, u.desc, r.chance(0.2));
      }
      case 'icmp6': {
        const u = this.icmp6();
        return this.ipv6Packet(58, u.bytes, u.tags, u.desc, r.chance(0.15));
      }
      case 'sctp6': {
        const u = this.sctp();
        return this.ipv6Packet(132, u.bytes, u.tags, u.desc, r.chance(0.2));
      }
      case 'ipv6-ext': {
        const which = r.pick(['tcp', 'udp', 'icmp6', 'sctp', 'none']);
        if (which === 'none')
          return this.ipv6Packet(59, new Uint8Array(0), ['ipv6-no-next'], 'no-next-header', true);
        const u =
          which === 'tcp'
            ? this.tcp()
            : which === 'udp'
              ? this.udp()
              : which === 'icmp6'
                ? this.icmp6()
                : this.sctp();
        return this.ipv6Packet(
          ({ tcp: 6, udp: 17, icmp6: 58, sctp: 132 } as const)[
            which as 'tcp' | 'udp' | 'icmp6' | 'sctp'
          ],
          u.bytes,
          u.tags,
          u.desc,
          true,
        );
      }
      case 'other6': {
        const [proto, tag] = r.pick([
          [50, 'esp'],
          [103, 'pim'],
          [112, 'vrrp'],
          [4, 'ipip'],
          [41, 'ipv6-in-ipv6'],
          [1, 'icmp-in-ipv6'],
          [2, 'igmp-in-ipv6'],
        ] as const);
        return this.ipv6Packet(
          proto,
          r.bytes(r.range(8, 32)),
          [tag],
          `proto ${proto}`,
          r.chance(0.2),
        );
      }
      case 'geneve': {
        const vni = r.pick(GENEVE_VNIS);
        const proto = r.pick([0x6558, 0x0800, 0x86dd]);
        const inner4 = this.ipScenario(r.pick(['tcp4', 'udp4', 'icmp4']));
        const inner =
          proto === 0x6558
            ? concat(ether(r.pick(UNICAST_MACS), r.pick(UNICAST_MACS), 0x0800), inner4.bytes)
            : proto === 0x0800
              ? inner4.bytes
              : this.ipScenario('udp6').bytes;
        const optLen = r.pick([0, 0, 1, 2]);
        const hdr = concat(
          Uint8Array.of(optLen, r.pick([0, 0x40, 0x80])),
          u16(proto),
          u32((vni << 8) >>> 0),
          r.bytes(optLen * 4),
        );
        const body = concat(hdr, inner);
        const udp = concat(
          udpHeader(r.pick([6081, 12345, 53]), r.chance(0.9) ? 6081 : 6082, body.length),
          body,
        );
        return r.chance(0.8)
          ? this.ipv4Packet(17, udp, ['udp', 'geneve'], `geneve vni ${vni} (${hex2(proto >>> 8)})`)
          : this.ipv6Packet(17, udp, ['udp', 'geneve'], `geneve vni ${vni}`, false);
      }
      default:
        throw new Error(`unknown scenario "${kind}"`);
    }
  }

  /** Wraps an L3 packet into an Ethernet frame, maybe with VLAN/QinQ/MPLS/PPPoE encapsulation. */
  frame(
    l3: L3,
    allowEncap = true,
  ): { bytes: Uint8Array; headerLength: number; tags: string[]; desc: string } {
    const r = this.rng;
    const tags: string[] = ['ethernet-ii'];
    let dst: Uint8Array;
    if (l3.tags.includes('ipv4-broadcast') || (l3.tags.includes('arp') && r.chance(0.5)))
      dst = r.chance(0.9) ? BROADCAST_MAC : r.pick(MACS);
    else if (l3.tags.includes('ipv4-multicast'))
      dst = r.chance(0.9) ? mac('01:00:5e:00:00:01') : r.pick(MACS);
    else if (l3.tags.includes('ipv6-multicast'))
      dst = r.chance(0.9) ? mac('33:33:00:00:00:01') : r.pick(MACS);
    else dst = r.chance(0.85) ? r.pick(UNICAST_MACS) : r.pick(MACS);
    const src = r.chance(0.95) ? r.pick(UNICAST_MACS) : r.pick(MACS);
    if (dst[0] === 0xff && dst.every((b) => b === 0xff)) tags.push('ether-broadcast');
    else if (dst[0]! & 1) tags.push('ether-multicast');
    let type = l3.type;
    let inner = l3.bytes;
    let extra = 0;
    let desc = l3.desc;
    const isIp = type === 0x0800 || type === 0x86dd;
    const encap = allowEncap
      ? r.weighted({
          none: 74,
          vlan: 11,
          qinq88a8: 4,
          qinq8100: 3,
          vlan9100: 1,
          triple: 1,
          mpls: isIp ? 4 : 0,
          pppoes: isIp ? 2 : 0,
        })
      : 'none';
    const tci = (): number => (r.int(8) << 13) | (r.chance(0.1) ? 0x1000 : 0) | r.pick(VLAN_IDS);
    const tagVlan = (tpid: number, t: number, body: Uint8Array): { t: number; b: Uint8Array } => ({
      t: tpid,
      b: concat(vlanTag(tci(), t), body),
    });
    if (encap === 'vlan') {
      ({ t: type, b: inner } = tagVlan(0x8100, type, inner));
      extra = 4;
      tags.push('vlan');
      desc = `vlan ${desc}`;
    } else if (encap === 'qinq88a8') {
      let x = tagVlan(0x8100, type, inner);
      x = tagVlan(0x88a8, x.t, x.b);
      type = x.t;
      inner = x.b;
      extra = 8;
      tags.push('vlan', 'qinq-88a8');
      desc = `qinq(88a8) ${desc}`;
    } else if (encap === 'qinq8100') {
      let x = tagVlan(0x8100, type, inner);
      x = tagVlan(0x8100, x.t, x.b);
      type = x.t;
      inner = x.b;
      extra = 8;
      tags.push('vlan', 'qinq-8100');
      desc = `qinq(8100) ${desc}`;
    } else if (encap === 'vlan9100') {
      const x = tagVlan(0x9100, type, inner);
      type = x.t;
      inner = x.b;
      extra = 4;
      tags.push('vlan', 'vlan-9100');
      desc = `vlan(9100) ${desc}`;
    } else if (encap === 'triple') {
      let x = tagVlan(0x8100, type, inner);
      x = tagVlan(0x8100, x.t, x.b);
      x = tagVlan(0x88a8, x.t, x.b);
      type = x.t;
      inner = x.b;
      extra = 12;
      tags.push('vlan', 'qinq-88a8', 'vlan-triple');
      desc = `vlan×3 ${desc}`;
    } else if (encap === 'mpls') {
      const depth = r.range(1, 3);
      const labels: number[] = [];
      const stack: Uint8Array[] = [];
      for (let i = 0; i < depth; i++) {
        const label = r.pick(MPLS_LABELS);
        labels.push(label);
        stack.push(
          u32(
            ((label << 12) |
              (r.int(8) << 9) |
              (i === depth - 1 ? 0x100 : 0) |
              r.pick([1, 64, 255])) >>>
              0,
          ),
        );
      }
      inner = concat(...stack, inner);
      type = r.chance(0.9) ? 0x8847 : 0x8848;
      extra = depth * 4;
      tags.push('mpls');
      desc = `mpls[${labels.join(',')}] ${desc}`;
    } else if (encap === 'pppoes') {
      const sid = r.pick(PPPOE_SESSIONS);
      const ppp = concat(u16(type === 0x0800 ? 0x0021 : 0x0057), inner);
      inner = concat(Uint8Array.of(0x11, 0), u16(sid), u16(ppp.length), ppp);
      type = 0x8864;
      extra = 8;
      tags.push('pppoes');
      desc = `pppoes ${sid} ${desc}`;
    }
    const h = ether(dst, src, type);
    return {
      bytes: concat(h, inner),
      headerLength: 14 + extra + l3.headerLength,
      tags: [...tags, ...l3.tags],
      desc,
    };
  }

  /** An 802.3 frame with a length field: LLC, SNAP, or raw IPX. */
  frame8023(): { bytes: Uint8Array; headerLength: number; tags: string[]; desc: string } {
    const r = this.rng;
    const kind = r.weighted({
      stp: 3,
      netbeui: 2,
      ipxllc: 2,
      rawipx: 2,
      iso: 4,
      snapip: 2,
      snapatalk: 2,
      snapaarp: 2,
      snapother: 1,
      llcmisc: 4,
    });
    const ctl = (): number =>
      r.pick([
        0x03, 0x13, 0x63, 0x43, 0x6f, 0x7f, 0xe3, 0xf3, 0xaf, 0xbf, 0x87, 0x01, 0x05, 0x09, 0x11,
        0x00, 0x02, 0x0e, 0x0d,
      ]);
    let body: Uint8Array;
    const tags = ['llc'];
    let desc: string;
    switch (kind) {
      case 'stp':
        body = concat(llc(0x42, 0x42, 0x03), u16(0), Uint8Array.of(0, 0), r.bytes(31));
        tags.push('stp');
        desc = 'stp bpdu';
        break;
      case 'netbeui':
        body = concat(llc(0xf0, 0xf0, ctl()), r.bytes(20));
        tags.push('netbeui');
        desc = 'netbeui';
        break;
      case 'ipxllc':
        body = concat(llc(0xe0, 0xe0, 0x03), u16(0xffff), r.bytes(28));
        tags.push('ipx');
        desc = 'ipx (llc)';
        break;
      case 'rawipx':
        body = concat(u16(0xffff), u16(30), r.bytes(26));
        tags.splice(0, 1, 'raw-802.3', 'ipx');
        desc = 'ipx (raw 802.3)';
        break;
      case 'iso': {
        const nlpid = r.pick([0x81, 0x82, 0x83, 0x83, 0x83]);
        const pdu = r.pick([15, 16, 17, 18, 20, 24, 25, 26, 27]);
        const isis =
          nlpid === 0x83
            ? concat(Uint8Array.of(0x83, 27, 1, 0, pdu, 1, 0, 0), r.bytes(20))
            : concat(Uint8Array.of(nlpid, 20, 1), r.bytes(24));
        body = concat(llc(0xfe, 0xfe, 0x03), isis);
        tags.push('iso', ...(nlpid === 0x83 ? ['isis'] : nlpid === 0x81 ? ['clnp'] : ['esis']));
        desc = nlpid === 0x83 ? `isis pdu ${pdu}` : `iso nlpid ${hex2(nlpid)}`;
        break;
      }
      case 'snapip': {
        const inner = this.ipScenario('udp4');
        body = concat(llc(0xaa, 0xaa, 0x03), snap(0, 0x0800), inner.bytes);
        tags.push('snap');
        desc = 'snap ip';
        break;
      }
      case 'snapatalk':
        body = concat(llc(0xaa, 0xaa, 0x03), snap(0x080007, 0x809b), r.bytes(24));
        tags.push('snap', 'atalk');
        desc = 'snap atalk';
        break;
      case 'snapaarp':
        body = concat(llc(0xaa, 0xaa, 0x03), snap(0, 0x80f3), r.bytes(28));
        tags.push('snap', 'aarp');
        desc = 'snap aarp';
        break;
      case 'snapother':
        body = concat(
          llc(0xaa, 0xaa, 0x03),
          snap(r.pick([0, 0x00000c, 0x0080c2]), r.pick([0x2000, 0x0806, 0x86dd, 0x0001])),
          r.bytes(20),
        );
        tags.push('snap');
        desc = 'snap other';
        break;
      default: {
        const c = ctl();
        body = concat(
          llc(
            r.pick([0x06, 0x04, 0x00, 0x42, 0xf0, 0xe0, 0xfe, 0xaa, 0x80]),
            r.pick([0x06, 0x05, 0x01, 0xaa]),
            c,
          ),
          r.bytes(r.range(0, 30)),
        );
        desc = `llc ctl ${hex2(c)}`;
      }
    }
    const dst = r.chance(0.3) ? mac('01:80:c2:00:00:00') : r.pick(MACS);
    const tagsAll = dst.every((b) => b === 0xff)
      ? [...tags, 'ether-broadcast']
      : dst[0]! & 1
        ? [...tags, 'ether-multicast']
        : tags;
    const useVlan = r.chance(0.08);
    const h = useVlan
      ? concat(dst, r.pick(UNICAST_MACS), u16(0x8100), vlanTag(r.pick(VLAN_IDS), body.length))
      : ether(dst, r.pick(UNICAST_MACS), body.length);
    return {
      bytes: concat(h, body),
      headerLength: h.length + 8,
      tags: useVlan ? [...tagsAll, 'vlan'] : tagsAll,
      desc: `802.3 ${desc}`,
    };
  }

  otherEther(): { bytes: Uint8Array; headerLength: number; tags: string[]; desc: string } {
    const r = this.rng;
    const [type, tag] = r.pick([
      [0x8137, 'ipx'],
      [0x809b, 'atalk'],
      [0x80f3, 'aarp'],
      [0x6004, 'lat'],
      [0x6001, 'mopdl'],
      [0x6002, 'moprc'],
      [0x6007, 'sca'],
      [0x88cc, 'lldp'],
      [0x9000, 'loopback'],
      [0x0842, 'wol'],
      [0x8863, 'pppoed'],
      [0x88e5, 'macsec'],
      [0x0600, 'xns'],
      [0x05dd, 'len-1501'],
      [0x05dc, 'len-1500-bogus'],
      [0x0800, 'ipv4-bogus-version'],
      [0x86dd, 'ipv6-bogus-version'],
      [0x8847, 'mpls-bare'],
      [0x8864, 'pppoes-lcp'],
    ] as const);
    let body: Uint8Array;
    if (tag === 'pppoed')
      body = concat(
        Uint8Array.of(0x11, r.pick([0x09, 0x07, 0x19, 0x65, 0xa7])),
        u16(0),
        u16(4),
        u16(0x0101),
        u16(0),
      );
    else if (tag === 'ipv4-bogus-version' || tag === 'ipv6-bogus-version')
      body = concat(Uint8Array.of(r.pick([0x00, 0x45, 0x60, 0x4f, 0xf5])), r.bytes(r.range(0, 50)));
    else if (tag === 'pppoes-lcp')
      body = concat(
        Uint8Array.of(0x11, 0),
        u16(r.pick(PPPOE_SESSIONS)),
        u16(6),
        u16(0xc021),
        r.bytes(4),
      );
    else if (tag === 'mpls-bare')
      body = concat(u32(((r.pick(MPLS_LABELS) << 12) | 0x1ff) >>> 0), r.bytes(r.range(0, 20)));
    else body = r.bytes(r.range(0, 46));
    const dst = r.pick(MACS);
    const tags = [
      'ethernet-ii',
      'other-ethertype',
      tag,
      ...(tag === 'pppoes-lcp' ? ['pppoes'] : []),
    ];
    if (dst.every((b) => b === 0xff)) tags.push('ether-broadcast');
    else if (dst[0]! & 1) tags.push('ether-multicast');
    return {
      bytes: concat(ether(dst, r.pick(UNICAST_MACS), type), body),
      headerLength: 14 + Math.min(body.length, 24),
      tags,
      desc: `ethertype 0x${type.toString(16)} (${tag})`,
    };
  }
}

/**
 * Generates the packet corpus: systematic sections (every TCP flag combination over IPv4 and IPv6, ICMP and
 * ICMPv6 types, runts) followed by a weighted random mix, with some frames cut short (truncated mid-header,
 * snap-length cut) or padded to the Ethernet minimum. Deterministic for a given seed and count.
 */
export function generatePackets(
  options: { seed?: number; count?: number } = {},
): GeneratedPacket[] {
  const seed = options.seed ?? DEFAULT_PACKET_SEED;
  const count = options.count ?? DEFAULT_PACKET_COUNT;
  const rng = new Prng(seed);
  const g = new Generator(rng);
  const out: GeneratedPacket[] = [];

  const push = (
    f: { bytes: Uint8Array; headerLength: number; tags: string[]; desc: string },
    category: string,
    mutate = true,
  ): void => {
    let data = f.bytes;
    let wireLength = data.length;
    const tags = [...f.tags];
    let desc = f.desc;
    if (mutate) {
      const m = rng.weighted({ none: 82, pad: 6, truncate: 7, snapcut: 4, jumbo: 1 });
      if (m === 'pad' && data.length < 60) {
        data = concat(data, new Uint8Array(60 - data.length));
        wireLength = 60;
        tags.push('padded');
        desc += ' +pad';
      } else if (m === 'truncate') {
        const cut = rng.range(1, Math.max(1, Math.min(data.length - 1, f.headerLength + 2)));
        data = data.slice(0, cut);
        tags.push('truncated');
        desc += ` [caplen ${cut}/${wireLength}]`;
      } else if (m === 'snapcut' && data.length > 34) {
        const cut = rng.pick([34, 38, 42, 54, 64, 68, 96]);
        if (cut < data.length) {
          data = data.slice(0, cut);
          tags.push('snapcut');
          desc += ` [caplen ${cut}/${wireLength}]`;
        }
      } else if (m === 'jumbo') {
        wireLength = rng.pick([1514, 1518, 4000, 9018, 65535, 262144]);
        if (wireLength > data.length) {
          tags.push('jumbo', 'snapcut');
          desc += ` [caplen ${data.length}/${wireLength}]`;
        } else wireLength = data.length;
      }
    }
    if (data.length > 1514 || wireLength > 1514) tags.push('large');
    out.push({ data, wireLength, category, tags, description: desc });
  };

  // Every TCP flag combination, over IPv4 and over IPv6, captured whole.
  g.unfragmented = true;
  for (let f = 0; f < 256; f++) {
    const u = g.tcp(f);
    push(g.frame(g.ipv4Packet(6, u.bytes, u.tags, u.desc)), 'tcp-flags', false);
  }
  for (let f = 0; f < 256; f++) {
    const u = g.tcp(f);
    push(g.frame(g.ipv6Packet(6, u.bytes, u.tags, u.desc, rng.chance(0.1))), 'tcp-flags', false);
  }
  g.unfragmented = false;
  // ICMP and ICMPv6 types and codes.
  for (const [t, codes] of [
    [0, 1],
    [3, 16],
    [4, 1],
    [5, 4],
    [8, 1],
    [9, 1],
    [10, 1],
    [11, 2],
    [12, 2],
    [13, 1],
    [14, 1],
    [15, 1],
    [16, 1],
    [17, 1],
    [18, 1],
  ] as const) {
    for (let c = 0; c < codes; c++) {
      const u = g.icmp(t, c);
      push(g.frame(g.ipv4Packet(1, u.bytes, u.tags, u.desc)), 'icmp-types');
    }
  }
  for (const t of [1, 2, 3, 4, 128, 129, 130, 131, 132, 133, 134, 135, 136, 137, 143]) {
    for (let i = 0; i < 3; i++) {
      const u = g.icmp6(t);
      push(g.frame(g.ipv6Packet(58, u.bytes, u.tags, u.desc, i === 2)), 'icmp6-types');
    }
  }
  // Runts: shorter than an Ethernet header, some with a longer wire length.
  for (let n = 0; n < 14; n++) {
    for (let i = 0; i < 3; i++) {
      const data = rng.chance(0.5) ? rng.bytes(n) : concat(BROADCAST_MAC, rng.bytes(8)).slice(0, n);
      const wireLength = i === 0 ? n : rng.pick([n, 14, 60, 1514]);
      out.push({
        data,
        wireLength: Math.max(wireLength, n),
        category: 'runt',
        tags: ['runt'],
        description: `runt ${n} bytes (wire ${wireLength})`,
      });
    }
  }

  const mix = {
    tcp4: 20,
    udp4: 12,
    icmp4: 5,
    sctp4: 3,
    igmp: 2,
    gre: 2,
    esp4: 2,
    ah4: 2,
    other4: 3,
    tcp6: 10,
    udp6: 7,
    icmp6: 5,
    sctp6: 2,
    'ipv6-ext': 7,
    other6: 2,
    geneve: 2,
    arp: 4,
    rarp: 2,
    decnet: 1,
    '802.3': 6,
    'other-ether': 3,
  } as const;
  while (out.length < count) {
    const kind = rng.weighted(mix);
    if (kind === 'arp' || kind === 'rarp') push(g.frame(g.arp(kind === 'rarp')), kind);
    else if (kind === 'decnet') push(g.frame(g.decnet(), false), kind);
    else if (kind === '802.3') push(g.frame8023(), kind);
    else if (kind === 'other-ether') push(g.otherEther(), kind);
    else push(g.frame(g.ipScenario(kind)), kind);
  }
  return out;
}

/** Counts packets per tag. */
export function countTags(packets: readonly GeneratedPacket[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const p of packets) for (const t of new Set(p.tags)) counts.set(t, (counts.get(t) ?? 0) + 1);
  return counts;
}

/** Counts packets per category. */
export function countCategories(packets: readonly GeneratedPacket[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const p of packets) counts.set(p.category, (counts.get(p.category) ?? 0) + 1);
  return counts;
}
