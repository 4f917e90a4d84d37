// Hand-made Ethernet frames for the pipeline's readable kernel tests: one call per frame, with the header boundaries kept for truncation.
import {
  concat,
  ether,
  ipv4,
  ipv4Header,
  ipv6,
  ipv6FragmentHeader,
  ipv6Header,
  ipv6OptionsHeader,
  ipv6RoutingHeader,
  mac,
  tcpHeader,
  u16,
  udpHeader,
} from './packets/build.js';

/** Destination and source MAC of every frame built here (documentation range, RFC 7042). */
export const FRAME_DST_MAC = '00:00:5e:00:53:02';
export const FRAME_SRC_MAC = '00:00:5e:00:53:01';

/** IPv6 extension headers by name: hop-by-hop, routing, destination options, fragment. */
export const EXT = { hop: 0, routing: 43, dest: 60, fragment: 44 } as const;

/** One frame, field by field; everything has a default (an untagged IPv4 UDP datagram). */
export interface FrameSpec {
  /** VLAN ids, outer first: one tag is 802.1Q (0x8100); with two, the outer is 802.1ad (0x88a8). */
  vlans?: number[];
  /** Non-IP frames: the EtherType after the tags (0x0806 ARP, …), 28 bytes of payload. */
  etherType?: number;
  /** Default 4, or 6 when `src` or `dst` is IPv6. */
  family?: 4 | 6;
  src?: string;
  dst?: string;
  /** IP protocol (IPv6: after the extension headers); default 17 (UDP). */
  proto?: number;
  sport?: number;
  dport?: number;
  /** TCP flags byte; default 0x02 (SYN). */
  flags?: number;
  /** ICMP or ICMPv6 type and code, for proto 1 or 58; default echo request. */
  icmp?: { type: number; code: number };
  /** IPv4 TTL or IPv6 hop limit; default 64. */
  ttl?: number;
  /** IPv4 options (padded to 4 bytes). */
  ipv4Options?: Uint8Array;
  /** IPv6 extension headers in order (EXT values); a fragment header takes `fragment`. */
  ext?: number[];
  /** 'first': more-fragments, offset 0; 'later': offset 185 (1480 bytes). */
  fragment?: 'first' | 'later';
  /** Bytes after the L4 header; default 8. */
  payload?: number;
}

/** A frame and where each header starts and how much of it the pipeline's parse needs. */
export interface BuiltFrame {
  data: Uint8Array;
  /** Every header the parse reads, in order: name, offset, and the bytes the parse needs of it. */
  headers: { name: string; at: number; need: number }[];
}

/**
 * Builds the frame `spec` describes. IPv4 headers get a valid checksum; L4 checksums are left 0
 * (the pipeline never reads them).
 */
export function buildFrame(spec: FrameSpec = {}): BuiltFrame {
  const family = spec.family ?? ((spec.src ?? spec.dst ?? '').includes(':') ? 6 : 4);
  const parts: { name: string; bytes: Uint8Array; need: number }[] = [];
  const vlans = spec.vlans ?? [];
  const ipType = spec.etherType ?? (family === 4 ? 0x0800 : 0x86dd);
  const tpids = vlans.length === 2 ? [0x88a8, 0x8100] : vlans.map(() => 0x8100);
  const types = [...tpids, ipType];
  parts.push({
    name: 'ethernet',
    bytes: ether(mac(FRAME_DST_MAC), mac(FRAME_SRC_MAC), types[0]),
    need: 14,
  });
  vlans.forEach((vid, i) =>
    parts.push({
      name: `vlan ${vid}`,
      bytes: concat(u16(vid & 0xfff), u16(types[i + 1])),
      need: 4,
    }),
  );
  if (spec.etherType !== undefined) {
    parts.push({ name: 'payload', bytes: new Uint8Array(28).fill(0xab), need: 0 });
    return finish(parts);
  }
  const proto = spec.proto ?? 17;
  const later = spec.fragment === 'later';
  const l4 = later
    ? { name: 'payload', bytes: new Uint8Array(16), need: 0 }
    : l4Header(spec, proto, family);
  const rest = concat(l4.bytes, new Uint8Array(spec.payload ?? 8).fill(0x5a));
  if (family === 4) {
    const header = ipv4Header(
      {
        proto,
        src: ipv4(spec.src ?? '198.51.100.1'),
        dst: ipv4(spec.dst ?? '203.0.113.1'),
        ttl: spec.ttl ?? 64,
        mf: spec.fragment === 'first',
        fragOffset: later ? 185 : 0,
        ...(spec.ipv4Options ? { options: spec.ipv4Options } : {}),
      },
      rest.length,
    );
    parts.push({ name: 'ipv4', bytes: header, need: header.length });
  } else {
    const kinds = spec.ext ?? (spec.fragment ? [EXT.fragment] : []);
    const exts: { name: string; bytes: Uint8Array; need: number }[] = [];
    let next = proto;
    for (let i = kinds.length - 1; i >= 0; i--) {
      const kind = kinds[i];
      let h: Uint8Array;
      if (kind === EXT.fragment) h = ipv6FragmentHeader(next, later ? 185 : 0, true, 0x1234);
      else if (kind === EXT.routing) h = ipv6RoutingHeader(next, 4, 1, [ipv6('2001:db8::99')]);
      else h = ipv6OptionsHeader(next, new Uint8Array(4));
      exts.unshift({ name: `ipv6 ext ${kind}`, bytes: h, need: h.length });
      next = kind;
    }
    const payload = exts.reduce((n, e) => n + e.bytes.length, 0) + rest.length;
    parts.push({
      name: 'ipv6',
      bytes: ipv6Header(
        {
          next,
          src: ipv6(spec.src ?? '2001:db8::1'),
          dst: ipv6(spec.dst ?? '2001:db8::2'),
          hopLimit: spec.ttl ?? 64,
        },
        payload,
      ),
      need: 40,
    });
    parts.push(...exts);
  }
  parts.push({ ...l4, bytes: l4.bytes });
  parts.push({ name: 'payload', bytes: rest.subarray(l4.bytes.length), need: 0 });
  return finish(parts);
}

function l4Header(
  spec: FrameSpec,
  proto: number,
  family: 4 | 6,
): { name: string; bytes: Uint8Array; need: number } {
  const sport = spec.sport ?? 40000;
  const dport = spec.dport ?? 53;
  switch (proto) {
    case 6:
      return {
        name: 'tcp',
        bytes: tcpHeader({ sport, dport, flags: spec.flags ?? 0x02 }),
        need: 20,
      };
    case 17:
      return { name: 'udp', bytes: udpHeader(sport, dport, spec.payload ?? 8), need: 8 };
    case 132:
      return { name: 'sctp', bytes: concat(u16(sport), u16(dport), new Uint8Array(8)), need: 12 };
    case 1:
    case 58: {
      const icmp = spec.icmp ?? { type: proto === 1 ? 8 : 128, code: 0 };
      // ICMP on the other family has no fields the pipeline reads
      const need = (proto === 1) === (family === 4) ? 4 : 0;
      return {
        name: proto === 1 ? 'icmp' : 'icmpv6',
        bytes: Uint8Array.of(icmp.type, icmp.code, 0, 0, 0, 0, 0, 0),
        need,
      };
    }
    default:
      return { name: `proto ${proto}`, bytes: new Uint8Array(0), need: 0 };
  }
}

function finish(parts: { name: string; bytes: Uint8Array; need: number }[]): BuiltFrame {
  const headers: BuiltFrame['headers'] = [];
  let at = 0;
  for (const p of parts) {
    if (p.need > 0) headers.push({ name: p.name, at, need: p.need });
    at += p.bytes.length;
  }
  return { data: concat(...parts.map((p) => p.bytes)), headers };
}

/** The frame `spec` describes (buildFrame's data). */
export function frame(spec: FrameSpec = {}): Uint8Array {
  return buildFrame(spec).data;
}

/**
 * Every cut of `built` that ends inside a header the parse reads: for each such header, the
 * frame ending where it starts, one byte into it, and one byte short of what the parse needs.
 * Each is named "<header> cut at <length>". Cuts shorter than an Ethernet header are left out
 * (test runs refuse them).
 */
export function cutsOf(built: BuiltFrame): { name: string; data: Uint8Array }[] {
  const seen = new Set<number>();
  const out: { name: string; data: Uint8Array }[] = [];
  for (const h of built.headers) {
    for (const len of [h.at, h.at + 1, h.at + h.need - 1]) {
      if (len < 14 || len >= h.at + h.need || seen.has(len)) continue;
      seen.add(len);
      out.push({ name: `${h.name} cut at ${len}`, data: built.data.slice(0, len) });
    }
  }
  return out;
}

/** BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header (EINVAL). */
export const ETH_HLEN = 14;
/** The errno of a test run the kernel refuses. */
export const EINVAL = 22;

/**
 * True for a frame the skb test run refuses with EINVAL: untagged IPv4 with fewer than 20 bytes
 * after the Ethernet header, or IPv6 with fewer than 40 (found by trying, Linux 6.18).
 */
export function refusedAtTc(frame: Uint8Array): boolean {
  const type = (frame[12] << 8) | frame[13];
  return (
    (type === 0x0800 && frame.length < ETH_HLEN + 20) ||
    (type === 0x86dd && frame.length < ETH_HLEN + 40)
  );
}
