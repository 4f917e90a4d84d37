// Seeded random Ethernet frames for the pipeline's parser and classifier: VLAN/QinQ, IPv4/IPv6, fragments, extension headers, cuts at every header boundary.
//
// The same seed gives the same frames everywhere, so the unit tests (decide() against the tables)
// and the kernel tests (the C program under BPF_PROG_TEST_RUN) can drive one corpus. Values come
// from small pools (PIPELINE_POOLS) that rule generators share, so rules match a real fraction of
// the frames.
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
import { Prng } from './packets/prng.js';

/** One generated frame and what it exercises. */
export interface PipelinePacket {
  data: Uint8Array;
  /** Features, e.g. "qinq", "ipv6-ext-3", "tcp", "fragment-later", "truncated-l4", "malformed-ihl". */
  tags: string[];
  /** Short human description for failure messages. */
  description: string;
}

/** Options of generatePipelinePackets. */
export interface PipelinePacketOptions {
  seed: number;
  count: number;
}

/** The value pools frames draw from (and rule generators should draw from). */
export const PIPELINE_POOLS = {
  v4: [
    '10.0.0.1',
    '10.1.2.3',
    '10.1.2.200',
    '10.1.9.9',
    '10.200.0.1',
    '192.0.2.1',
    '192.0.2.77',
    '192.0.2.200',
    '198.51.100.5',
    '203.0.113.9',
    '0.0.0.0',
    '255.255.255.255',
  ],
  v6: [
    '2001:db8::1',
    '2001:db8::2',
    '2001:db8:1::5',
    '2001:db8:1:2::9',
    '2001:db8:1:2::ff',
    '2001:db8:ffff::1',
    'fe80::1',
    '::',
    '::ffff:192.0.2.1',
  ],
  v4Prefixes: [
    '0.0.0.0/0',
    '10.0.0.0/8',
    '10.1.0.0/16',
    '10.1.2.0/24',
    '10.1.2.3/32',
    '10.1.2.128/25',
    '192.0.2.0/24',
    '192.0.2.64/26',
    '192.0.2.1',
    '198.51.100.0/24',
    '203.0.113.0/24',
    '128.0.0.0/1',
  ],
  v6Prefixes: [
    '::/0',
    '2001:db8::/32',
    '2001:db8:1::/48',
    '2001:db8:1:2::/64',
    '2001:db8::1/128',
    '2001:db8:ffff::/48',
    'fe80::/10',
    '::ffff:0:0/96',
    '8000::/1',
  ],
  ports: [0, 1, 22, 53, 79, 80, 81, 443, 1023, 1024, 8080, 32768, 65534, 65535],
  vlans: [0, 1, 2, 100, 4094, 4095],
  /** Common TCP flag bytes; others are drawn at random. */
  tcpFlags: [0x02, 0x12, 0x10, 0x11, 0x04, 0x14, 0x18, 0x00, 0xff, 0x29, 0xc2],
  icmpTypes: [0, 3, 8, 11],
  icmpv6Types: [1, 128, 129, 135, 136],
  icmpCodes: [0, 1, 3],
} as const;

const SRC_MAC = mac('02:00:00:00:00:01');
const DST_MAC = mac('02:00:00:00:00:02');

/** A frame as a list of headers, so that cuts can fall on and around each boundary. */
interface Parts {
  parts: Uint8Array[];
  tags: string[];
  desc: string[];
}

function pickPort(rng: Prng): number {
  return rng.chance(0.8) ? rng.pick(PIPELINE_POOLS.ports) : rng.int(65536);
}

function v4Addr(rng: Prng): Uint8Array {
  if (rng.chance(0.85)) return ipv4(rng.pick(PIPELINE_POOLS.v4));
  return rng.bytes(4);
}

function v6Addr(rng: Prng): Uint8Array {
  if (rng.chance(0.85)) return ipv6(rng.pick(PIPELINE_POOLS.v6));
  const a = rng.bytes(16);
  if (rng.chance(0.5)) a.set([0x20, 0x01, 0x0d, 0xb8], 0);
  return a;
}

/** An L4 header (and a little payload) for a protocol; `family` picks ICMP types. */
function l4(rng: Prng, proto: number, family: 4 | 6, out: Parts): void {
  const payload = rng.bytes(rng.int(12));
  switch (proto) {
    case 6: {
      const flags = rng.chance(0.7) ? rng.pick(PIPELINE_POOLS.tcpFlags) : rng.int(256);
      const sport = pickPort(rng);
      const dport = pickPort(rng);
      out.parts.push(tcpHeader({ sport, dport, flags }), payload);
      out.tags.push('tcp', `tcp-flags-0x${flags.toString(16).padStart(2, '0')}`);
      out.desc.push(`tcp ${sport}>${dport} flags 0x${flags.toString(16)}`);
      return;
    }
    case 17: {
      const sport = pickPort(rng);
      const dport = pickPort(rng);
      out.parts.push(udpHeader(sport, dport, payload.length), payload);
      out.tags.push('udp');
      out.desc.push(`udp ${sport}>${dport}`);
      return;
    }
    case 132: {
      const sport = pickPort(rng);
      const dport = pickPort(rng);
      out.parts.push(concat(u16(sport), u16(dport), rng.bytes(8)), payload);
      out.tags.push('sctp');
      out.desc.push(`sctp ${sport}>${dport}`);
      return;
    }
    case 1:
    case 58: {
      const v6Types = proto === 58;
      const type = rng.chance(0.8)
        ? rng.pick(v6Types ? PIPELINE_POOLS.icmpv6Types : PIPELINE_POOLS.icmpTypes)
        : rng.int(256);
      const code = rng.chance(0.8) ? rng.pick(PIPELINE_POOLS.icmpCodes) : rng.int(256);
      out.parts.push(Uint8Array.of(type, code, 0, 0), payload);
      const kind = proto === 1 ? 'icmp' : 'icmpv6';
      const pool: readonly number[] = v6Types
        ? PIPELINE_POOLS.icmpv6Types
        : PIPELINE_POOLS.icmpTypes;
      out.tags.push(
        (proto === 1) === (family === 4) ? kind : `${kind}-on-ipv${family}`,
        pool.includes(type) ? `${kind}-type-${type}` : `${kind}-type-other`,
      );
      out.desc.push(`${kind} type ${type} code ${code}`);
      return;
    }
    default:
      out.parts.push(payload);
      out.tags.push(`proto-${proto}`);
      out.desc.push(`proto ${proto}`);
  }
}

const L4_PROTOS = [6, 6, 17, 17, 132, 1, 58, 47, 50, 0, 59, 255];

function ipv4Packet(rng: Prng, out: Parts): void {
  const proto = rng.pick(L4_PROTOS.map((p) => (p === 58 && rng.chance(0.7) ? 1 : p)));
  const src = v4Addr(rng);
  const dst = v4Addr(rng);
  const later = rng.chance(0.12);
  const first = !later && rng.chance(0.1);
  const options = rng.chance(0.15) ? rng.bytes(4 * rng.range(1, 10)) : undefined;
  if (options) for (let i = 0; i < options.length; i++) if (options[i] === 0) options[i] = 1;
  const header = ipv4Header(
    {
      proto,
      src,
      dst,
      mf: first || (later && rng.chance(0.5)),
      fragOffset: later ? rng.range(1, 0x1fff) : 0,
      ...(options ? { options } : {}),
    },
    40,
  );
  const malform = rng.chance(0.06);
  if (malform) {
    if (rng.chance(0.5)) {
      header[0] = (header[0] & 0xf0) | rng.int(5);
      out.tags.push('malformed-ihl');
    } else {
      header[0] = (rng.pick([0, 5, 6, 15]) << 4) | (header[0] & 0x0f);
      out.tags.push('malformed-version');
    }
  }
  out.parts.push(header);
  out.tags.push('ipv4');
  if (options) out.tags.push('ipv4-options');
  if (later) out.tags.push('fragment-later');
  if (first) out.tags.push('fragment-first');
  out.desc.push(
    `ipv4 ${src.join('.')} > ${dst.join('.')}${later ? ' later-fragment' : ''}${first ? ' first-fragment' : ''}`,
  );
  if (!later) l4(rng, proto, 4, out);
  else out.parts.push(rng.bytes(rng.int(30)));
}

function ipv6Packet(rng: Prng, out: Parts): void {
  const proto = rng.pick(L4_PROTOS.map((p) => (p === 1 && rng.chance(0.7) ? 58 : p)));
  const src = v6Addr(rng);
  const dst = v6Addr(rng);
  // 0..9 extension headers: mostly few, sometimes the 8 allowed or a 9th
  const n = rng.chance(0.6) ? 0 : rng.chance(0.8) ? rng.range(1, 3) : rng.range(7, 9);
  const kinds: number[] = [];
  for (let i = 0; i < n; i++) kinds.push(rng.pick([0, 43, 60, 44, 44]));
  // Build from the inside out: each header names the next one.
  const exts: Uint8Array[] = [];
  let next = proto;
  let later = false;
  const laterAt = kinds.lastIndexOf(44);
  const makeLater = laterAt >= 0 && rng.chance(0.4);
  for (let i = kinds.length - 1; i >= 0; i--) {
    const kind = kinds[i];
    let h: Uint8Array;
    if (kind === 44) {
      const isLater = makeLater && i === laterAt;
      if (isLater) later = true;
      h = ipv6FragmentHeader(next, isLater ? rng.range(1, 0x1fff) : 0, rng.chance(0.5), rng.next());
    } else if (kind === 43) {
      h = ipv6RoutingHeader(
        next,
        rng.pick([0, 2, 4]),
        rng.int(3),
        [v6Addr(rng)].slice(0, rng.int(2)),
      );
    } else {
      h = ipv6OptionsHeader(next, rng.bytes(rng.pick([0, 4, 6, 12])));
    }
    exts.unshift(h);
    next = kind;
  }
  let header = ipv6Header({ next, src, dst }, 0);
  if (rng.chance(0.05)) {
    header = header.slice();
    header[0] = (rng.pick([4, 0, 7, 15]) << 4) | (header[0] & 0x0f);
    out.tags.push('malformed-version');
  }
  out.parts.push(header, ...exts);
  out.tags.push('ipv6', `ipv6-ext-${n}`, ...kinds.map((k) => `ipv6-ext-type-${k}`));
  if (later) out.tags.push('fragment-later');
  else if (kinds.includes(44)) out.tags.push('fragment-first');
  out.desc.push(`ipv6 ext [${kinds.join(',')}]${later ? ' later-fragment' : ''}`);
  // After a later fragment the rest is opaque; otherwise the L4 header of `proto`.
  if (later) out.parts.push(rng.bytes(rng.int(30)));
  else l4(rng, proto, 6, out);
}

/** One random frame from `rng`. */
export function generatePipelinePacket(rng: Prng): PipelinePacket {
  const out: Parts = { parts: [], tags: [], desc: [] };
  const kind = rng.weighted({ ipv4: 45, ipv6: 40, arp: 5, other: 5, runt: 2 });
  if (kind === 'runt') {
    const data = rng.bytes(rng.int(14));
    return { data, tags: ['runt', 'truncated-eth'], description: `runt of ${data.length} bytes` };
  }
  const etherType =
    kind === 'ipv4'
      ? 0x0800
      : kind === 'ipv6'
        ? 0x86dd
        : kind === 'arp'
          ? 0x0806
          : rng.pick([0x88cc, 0x8847, 0x0042, 0x05dc, 0x8035]);
  // 0..3 VLAN tags, TPIDs 0x8100 and 0x88a8 in any order; a third one makes the frame non-IP
  const ntags = rng.weighted({ 0: 55, 1: 25, 2: 15, 3: 5 });
  const tpids: number[] = [];
  for (let i = 0; i < Number(ntags); i++) tpids.push(rng.pick([0x8100, 0x88a8]));
  const vids = tpids.map(() => (rng.chance(0.8) ? rng.pick(PIPELINE_POOLS.vlans) : rng.int(4096)));
  const types = [...tpids, etherType];
  out.parts.push(ether(DST_MAC, SRC_MAC, types[0]));
  for (let i = 0; i < tpids.length; i++) {
    const pcp = rng.int(8);
    out.parts.push(concat(u16((pcp << 13) | vids[i]), u16(types[i + 1])));
  }
  if (tpids.length === 1) out.tags.push('vlan');
  if (tpids.length === 2) out.tags.push('qinq');
  if (tpids.length === 3) out.tags.push('vlan-3-tags');
  if (tpids.length > 0) out.desc.push(`vlan ${vids.join('.')}`);
  if (kind === 'ipv4') ipv4Packet(rng, out);
  else if (kind === 'ipv6') ipv6Packet(rng, out);
  else {
    out.parts.push(rng.bytes(28 + rng.int(20)));
    out.tags.push(kind === 'arp' ? 'arp' : 'other-ethertype');
    out.desc.push(kind === 'arp' ? 'arp' : `ethertype 0x${etherType.toString(16)}`);
  }
  let data = concat(...out.parts);
  // Cut at, just before or just after a header boundary, or inside a header.
  if (rng.chance(0.18)) {
    const bounds: number[] = [];
    let at = 0;
    for (const p of out.parts) {
      bounds.push(at);
      at += p.length;
    }
    const b = rng.pick([...bounds, data.length]);
    const cut = Math.max(0, Math.min(data.length - 1, b + rng.pick([-1, 0, 0, 1, rng.int(20)])));
    data = data.slice(0, cut);
    out.tags.push('cut');
    out.desc.push(`cut at ${cut}`);
  }
  return { data, tags: out.tags, description: out.desc.join(', ') };
}

/** `count` frames from `seed`; equal seeds give equal frames. */
export function generatePipelinePackets(options: PipelinePacketOptions): PipelinePacket[] {
  const rng = new Prng(options.seed);
  const out: PipelinePacket[] = [];
  for (let i = 0; i < options.count; i++) out.push(generatePipelinePacket(rng));
  return out;
}

/** Hex of a frame, for failure messages. */
export function hexOf(data: Uint8Array): string {
  return Buffer.from(data).toString('hex');
}
