// Byte-level header builders (Ethernet, LLC, VLAN, IPv4/IPv6 and extension headers, L4) for generated test packets.

/** Concatenates byte arrays. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Big-endian 16-bit value as two bytes. */
export function u16(v: number): Uint8Array {
  return Uint8Array.of((v >>> 8) & 0xff, v & 0xff);
}

/** Big-endian 32-bit value as four bytes. */
export function u32(v: number): Uint8Array {
  return Uint8Array.of((v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
}

/** Parses "aa:bb:cc:dd:ee:ff". */
export function mac(text: string): Uint8Array {
  const parts = text.split(':');
  if (parts.length !== 6) throw new Error(`parse MAC "${text}": expected 6 groups`);
  return Uint8Array.from(parts.map((p) => parseInt(p, 16)));
}

/** Parses a dotted-quad IPv4 address. */
export function ipv4(text: string): Uint8Array {
  const parts = text.split('.');
  if (parts.length !== 4) throw new Error(`parse IPv4 "${text}": expected 4 parts`);
  return Uint8Array.from(parts.map((p) => Number(p)));
}

/** Parses an IPv6 address (with "::" and an optional dotted-quad tail). */
export function ipv6(text: string): Uint8Array {
  let t = text;
  if (t.includes('.')) {
    const cut = t.lastIndexOf(':');
    const v4 = ipv4(t.slice(cut + 1));
    t = `${t.slice(0, cut + 1)}${((v4[0]! << 8) | v4[1]!).toString(16)}:${((v4[2]! << 8) | v4[3]!).toString(16)}`;
  }
  const groupsOf = (s: string): number[] =>
    s === '' ? [] : s.split(':').map((g) => parseInt(g, 16));
  let groups: number[];
  if (t.includes('::')) {
    const [l, r] = t.split('::') as [string, string];
    const left = groupsOf(l);
    const right = groupsOf(r);
    groups = [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  } else {
    groups = groupsOf(t);
  }
  if (groups.length !== 8 || groups.some((g) => !(g >= 0 && g <= 0xffff))) {
    throw new Error(`parse IPv6 "${text}": expected 8 groups of 16 bits`);
  }
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[i * 2] = g >>> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  return out;
}

/** Internet checksum (RFC 1071) over the given bytes. */
export function checksum(...parts: Uint8Array[]): number {
  let sum = 0;
  let odd = false;
  let carry = 0;
  for (const p of parts) {
    for (let i = 0; i < p.length; i++) {
      if (odd) sum += carry | p[i]!;
      else carry = p[i]! << 8;
      odd = !odd;
    }
  }
  if (odd) sum += carry;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** Ethernet II header. */
export function ether(dst: Uint8Array, src: Uint8Array, type: number): Uint8Array {
  return concat(dst, src, u16(type));
}

/** An 802.1Q/802.1ad tag: the TCI and the next EtherType (the tag's TPID precedes it). */
export function vlanTag(tci: number, innerType: number): Uint8Array {
  return concat(u16(tci), u16(innerType));
}

/** 802.2 LLC header. */
export function llc(dsap: number, ssap: number, control: number): Uint8Array {
  return Uint8Array.of(dsap, ssap, control);
}

/** 802.2 SNAP header (after LLC AA AA 03). */
export function snap(oui: number, type: number): Uint8Array {
  return concat(Uint8Array.of((oui >>> 16) & 0xff, (oui >>> 8) & 0xff, oui & 0xff), u16(type));
}

export interface Ipv4Options {
  tos?: number;
  id?: number;
  df?: boolean;
  mf?: boolean;
  fragOffset?: number; // in 8-byte units
  ttl?: number;
  proto: number;
  src: Uint8Array;
  dst: Uint8Array;
  options?: Uint8Array; // padded to 4 bytes here
  totalLength?: number; // overrides the computed total length
}

/** IPv4 header with a correct header checksum; payloadLength counts the bytes after the header. */
export function ipv4Header(o: Ipv4Options, payloadLength: number): Uint8Array {
  let opts = o.options ?? new Uint8Array(0);
  if (opts.length % 4 !== 0) opts = concat(opts, new Uint8Array(4 - (opts.length % 4)));
  const ihl = 5 + opts.length / 4;
  const h = new Uint8Array(ihl * 4);
  h[0] = 0x40 | ihl;
  h[1] = o.tos ?? 0;
  h.set(u16(o.totalLength ?? ihl * 4 + payloadLength), 2);
  h.set(u16(o.id ?? 0), 4);
  const flags = (o.df ? 0x4000 : 0) | (o.mf ? 0x2000 : 0) | ((o.fragOffset ?? 0) & 0x1fff);
  h.set(u16(flags), 6);
  h[8] = o.ttl ?? 64;
  h[9] = o.proto;
  h.set(o.src, 12);
  h.set(o.dst, 16);
  h.set(opts, 20);
  h.set(u16(checksum(h)), 10);
  return h;
}

/** What ipv4Frame puts around its L4 bytes; the MACs default to 02:00:00:00:00:02 from 02:00:00:00:00:01. */
export interface Ipv4FrameOptions {
  src: string;
  dst: string;
  ttl?: number;
  fragOffset?: number; // in 8-byte units
  dstMac?: Uint8Array;
  srcMac?: Uint8Array;
}

/** An untagged Ethernet + IPv4 frame (no FCS) carrying `l4` as protocol `proto`. */
export function ipv4Frame(proto: number, l4: Uint8Array, o: Ipv4FrameOptions): Uint8Array {
  return concat(
    ether(o.dstMac ?? mac('02:00:00:00:00:02'), o.srcMac ?? mac('02:00:00:00:00:01'), 0x0800),
    ipv4Header(
      { proto, src: ipv4(o.src), dst: ipv4(o.dst), ttl: o.ttl, fragOffset: o.fragOffset },
      l4.length,
    ),
    l4,
  );
}

/** Fixed IPv6 header. */
export function ipv6Header(
  o: {
    tc?: number;
    flow?: number;
    next: number;
    hopLimit?: number;
    src: Uint8Array;
    dst: Uint8Array;
  },
  payloadLength: number,
): Uint8Array {
  const h = new Uint8Array(40);
  const tc = o.tc ?? 0;
  const flow = o.flow ?? 0;
  h.set(u32((6 << 28) | (tc << 20) | (flow & 0xfffff)), 0);
  h.set(u16(payloadLength), 4);
  h[6] = o.next;
  h[7] = o.hopLimit ?? 64;
  h.set(o.src, 8);
  h.set(o.dst, 24);
  return h;
}

/** Hop-by-hop or destination options header: next header, then options padded to 8-byte units. */
export function ipv6OptionsHeader(next: number, body: Uint8Array): Uint8Array {
  const total = Math.ceil((body.length + 2) / 8) * 8;
  const h = new Uint8Array(total);
  h[0] = next;
  h[1] = total / 8 - 1;
  h.set(body, 2);
  // PadN covering the rest, when more than one byte is left (a single Pad1 is 0 already)
  const rest = total - 2 - body.length;
  if (rest >= 2) {
    h[2 + body.length] = 1;
    h[3 + body.length] = rest - 2;
  }
  return h;
}

/** Routing header (type 0 or 2 or 4-ish) with the given addresses. */
export function ipv6RoutingHeader(
  next: number,
  type: number,
  segmentsLeft: number,
  addrs: Uint8Array[],
): Uint8Array {
  const h = new Uint8Array(8 + 16 * addrs.length);
  h[0] = next;
  h[1] = addrs.length * 2;
  h[2] = type;
  h[3] = segmentsLeft;
  addrs.forEach((a, i) => h.set(a, 8 + 16 * i));
  return h;
}

/** Fragment header; offset in 8-byte units. */
export function ipv6FragmentHeader(
  next: number,
  offset: number,
  more: boolean,
  id: number,
): Uint8Array {
  return concat(Uint8Array.of(next, 0), u16(((offset & 0x1fff) << 3) | (more ? 1 : 0)), u32(id));
}

/** Authentication header (RFC 4302) with a 12-byte ICV. */
export function authHeader(next: number, spi: number, seq: number, icv: Uint8Array): Uint8Array {
  const len = 12 + icv.length;
  return concat(Uint8Array.of(next, len / 4 - 2), u16(0), u32(spi), u32(seq), icv);
}

export interface TcpOptions {
  sport: number;
  dport: number;
  seq?: number;
  ack?: number;
  flags: number; // FIN 0x01 SYN 0x02 RST 0x04 PSH 0x08 ACK 0x10 URG 0x20 ECE 0x40 CWR 0x80
  window?: number;
  urgent?: number;
  options?: Uint8Array; // padded to 4 bytes here
}

/** TCP header (checksum left 0 unless a pseudo-header is given). */
export function tcpHeader(o: TcpOptions): Uint8Array {
  let opts = o.options ?? new Uint8Array(0);
  if (opts.length % 4 !== 0) opts = concat(opts, new Uint8Array(4 - (opts.length % 4)));
  const h = new Uint8Array(20 + opts.length);
  h.set(u16(o.sport), 0);
  h.set(u16(o.dport), 2);
  h.set(u32(o.seq ?? 0), 4);
  h.set(u32(o.ack ?? 0), 8);
  h[12] = ((5 + opts.length / 4) << 4) & 0xf0;
  h[13] = o.flags & 0xff;
  h.set(u16(o.window ?? 65535), 14);
  h.set(u16(o.urgent ?? 0), 18);
  h.set(opts, 20);
  return h;
}

/** UDP header; length covers header and payload. */
export function udpHeader(sport: number, dport: number, payloadLength: number): Uint8Array {
  return concat(u16(sport), u16(dport), u16(8 + payloadLength), u16(0));
}

/** Fills in an L4 checksum at `at` using the IPv4 or IPv6 pseudo-header. */
export function setL4Checksum(
  segment: Uint8Array,
  at: number,
  proto: number,
  src: Uint8Array,
  dst: Uint8Array,
): Uint8Array {
  segment[at] = 0;
  segment[at + 1] = 0;
  const pseudo =
    src.length === 4
      ? concat(src, dst, Uint8Array.of(0, proto), u16(segment.length))
      : concat(src, dst, u32(segment.length), Uint8Array.of(0, 0, 0, proto));
  let c = checksum(pseudo, segment);
  if (c === 0 && proto === 17) c = 0xffff;
  segment.set(u16(c), at);
  return segment;
}
