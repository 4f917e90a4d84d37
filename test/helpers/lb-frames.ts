// Frames for the load balancer's kernel tests (TCP, UDP, SCTP over IPv4 or IPv6, VLAN tags, fragments), and a checksum checker of their own.
import {
  concat,
  ether,
  ipv4,
  ipv4Header,
  ipv6,
  ipv6FragmentHeader,
  ipv6Header,
  mac,
  setL4Checksum,
  tcpHeader,
  u16,
  u32,
  udpHeader,
} from './packets/build.js';

export const TCP = 6;
export const UDP = 17;
export const SCTP = 132;

export const FIN = 0x01;
export const SYN = 0x02;
export const RST = 0x04;
export const PSH = 0x08;
export const ACK = 0x10;

export const XDP_DROP = 1;
export const XDP_PASS = 2;
export const XDP_TX = 3;
export const XDP_REDIRECT = 4;
export const TC_ACT_OK = 0;

/** The client's MACs in every frame: to the balancer's arm from a router. */
export const CLIENT_DST_MAC = '02:00:5e:00:53:aa';
export const CLIENT_SRC_MAC = '02:00:5e:00:53:bb';

export interface FrameSpec {
  src: string;
  dst: string;
  proto?: 'tcp' | 'udp' | 'sctp';
  sport?: number;
  dport?: number;
  /** TCP flags; default SYN. */
  flags?: number;
  /** Default 24 bytes 0x00..0x17. */
  payload?: Uint8Array;
  /** 802.1Q TCIs, outer first. */
  vlans?: number[];
  ttl?: number;
  /** IPv4 TOS or IPv6 traffic class. */
  tos?: number;
  flow?: number;
  /** IPv4: DF set. */
  df?: boolean;
  /** A fragment: offset in 8-byte units, and more fragments. */
  fragment?: { offset: number; more: boolean };
  /** IPv4 UDP without a checksum (0). */
  noUdpChecksum?: boolean;
  dstMac?: string;
  srcMac?: string;
}

const PROTOS = { tcp: TCP, udp: UDP, sctp: SCTP } as const;

export function familyOf(address: string): 4 | 6 {
  return address.includes(':') ? 6 : 4;
}

export function addressBytes(address: string): Uint8Array {
  return familyOf(address) === 4 ? ipv4(address) : ipv6(address);
}

/** The L4 segment (header and payload) with its checksum over the pseudo-header. */
export function segment(spec: FrameSpec): Uint8Array {
  const proto = PROTOS[spec.proto ?? 'tcp'];
  const payload = spec.payload ?? Uint8Array.from({ length: 24 }, (_, i) => i);
  const sport = spec.sport ?? 40000;
  const dport = spec.dport ?? 80;
  const src = addressBytes(spec.src);
  const dst = addressBytes(spec.dst);
  if (proto === TCP) {
    const seg = concat(
      tcpHeader({ sport, dport, flags: spec.flags ?? SYN, seq: 0x01020304, ack: 0 }),
      payload,
    );
    return setL4Checksum(seg, 16, TCP, src, dst);
  }
  if (proto === UDP) {
    const seg = concat(udpHeader(sport, dport, payload.length), payload);
    if (spec.noUdpChecksum) return seg;
    return setL4Checksum(seg, 6, UDP, src, dst);
  }
  // SCTP: common header (CRC32c left 0: nothing here checks it) and the payload as a chunk
  return concat(u16(sport), u16(dport), u32(0x0a0b0c0d), u32(0), payload);
}

/** The IP packet (header and L4), no L2. */
export function ipPacket(spec: FrameSpec, l4 = segment(spec)): Uint8Array {
  const proto = PROTOS[spec.proto ?? 'tcp'];
  const src = addressBytes(spec.src);
  const dst = addressBytes(spec.dst);
  if (familyOf(spec.src) === 4) {
    return concat(
      ipv4Header(
        {
          proto,
          src,
          dst,
          ttl: spec.ttl,
          tos: spec.tos,
          id: 0x1234,
          df: spec.df,
          mf: spec.fragment?.more,
          fragOffset: spec.fragment?.offset,
        },
        l4.length,
      ),
      l4,
    );
  }
  const ext = spec.fragment
    ? ipv6FragmentHeader(proto, spec.fragment.offset, spec.fragment.more, 0x55667788)
    : new Uint8Array(0);
  return concat(
    ipv6Header(
      {
        next: spec.fragment ? 44 : proto,
        hopLimit: spec.ttl,
        tc: spec.tos,
        flow: spec.flow,
        src,
        dst,
      },
      ext.length + l4.length,
    ),
    ext,
    l4,
  );
}

/** Ethernet (and VLAN tags) in front of `packet`, whose family sets the EtherType. */
export function l2(
  packet: Uint8Array,
  spec: Pick<FrameSpec, 'vlans' | 'dstMac' | 'srcMac'>,
): Uint8Array {
  const type = packet[0] >> 4 === 4 ? 0x0800 : 0x86dd;
  const tags = spec.vlans ?? [];
  const parts: Uint8Array[] = [];
  tags.forEach((tci, i) => {
    parts.push(u16(tci), u16(i === tags.length - 1 ? type : 0x8100));
  });
  return concat(
    ether(
      mac(spec.dstMac ?? CLIENT_DST_MAC),
      mac(spec.srcMac ?? CLIENT_SRC_MAC),
      tags.length ? 0x8100 : type,
    ),
    ...parts,
    packet,
  );
}

/** A whole frame. */
export function frame(spec: FrameSpec): Uint8Array {
  return l2(ipPacket(spec), spec);
}

export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

// ---- an independent checker: its own one's complement sum, its own header walk ----

/** RFC 1071 sum of `bytes` (big-endian 16-bit words, an odd last byte padded), not folded to 16 bits. */
function sum16(bytes: Uint8Array, start = 0): number {
  let s = start;
  for (let i = 0; i + 1 < bytes.length; i += 2) s += bytes[i]! * 256 + bytes[i + 1]!;
  if (bytes.length % 2) s += bytes[bytes.length - 1]! * 256;
  return s;
}

function folds(s: number): number {
  let x = s;
  while (x > 0xffff) x = (x & 0xffff) + Math.floor(x / 65536);
  return x;
}

/** What the checker found in a frame: every checksum the frame carries, and whether each verifies. */
export interface ChecksumReport {
  /** Outer to inner: "ipv4", "tcp", "udp", ... each true when it verifies (sums to 0xffff). */
  checks: { what: string; ok: boolean }[];
}

/**
 * Walks Ethernet (+ VLAN tags), then IPv4/IPv6 headers (IPIP nesting followed), and verifies the
 * IPv4 header checksum and the TCP/UDP checksum over the pseudo-header. A UDP checksum of 0 over
 * IPv4 is reported as "udp-none".
 */
export function checkChecksums(frameBytes: Uint8Array): ChecksumReport {
  const checks: { what: string; ok: boolean }[] = [];
  let at = 12;
  let type = frameBytes[at]! * 256 + frameBytes[at + 1]!;
  at += 2;
  while (type === 0x8100 || type === 0x88a8) {
    type = frameBytes[at + 2]! * 256 + frameBytes[at + 3]!;
    at += 4;
  }
  let family = type === 0x0800 ? 4 : type === 0x86dd ? 6 : 0;
  while (family) {
    let proto: number;
    let src: Uint8Array;
    let dst: Uint8Array;
    let l4Length: number;
    let next: number;
    if (family === 4) {
      const ihl = (frameBytes[at]! & 15) * 4;
      const header = frameBytes.subarray(at, at + ihl);
      checks.push({ what: 'ipv4', ok: folds(sum16(header)) === 0xffff });
      proto = header[9]!;
      src = header.subarray(12, 16);
      dst = header.subarray(16, 20);
      l4Length = header[2]! * 256 + header[3]! - ihl;
      next = at + ihl;
    } else {
      proto = frameBytes[at + 6]!;
      src = frameBytes.subarray(at + 8, at + 24);
      dst = frameBytes.subarray(at + 24, at + 40);
      l4Length = frameBytes[at + 4]! * 256 + frameBytes[at + 5]!;
      next = at + 40;
    }
    if (proto === 4 || proto === 41) {
      family = proto === 4 ? 4 : 6;
      at = next;
      continue;
    }
    const l4 = frameBytes.subarray(next, next + l4Length);
    const pseudo =
      family === 4
        ? sum16(src) + sum16(dst) + proto + l4Length
        : sum16(src) + sum16(dst) + proto + l4Length;
    if (proto === TCP) checks.push({ what: 'tcp', ok: folds(sum16(l4, pseudo)) === 0xffff });
    if (proto === UDP) {
      const carried = l4[6]! * 256 + l4[7]!;
      if (family === 4 && carried === 0) checks.push({ what: 'udp-none', ok: true });
      else checks.push({ what: 'udp', ok: folds(sum16(l4, pseudo)) === 0xffff });
    }
    break;
  }
  return { checks };
}
