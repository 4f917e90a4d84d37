// Byte images of the structs, keys and constants of bpf/progs/include/lb.h (change both together).
//
// Every encoder returns a fresh Buffer of the struct's exact size; every decoder reads one from
// offset 0. Fields typed __be* and addresses are network order, the rest little-endian (x86).
// Addresses are 16 bytes, IPv4 in the first 4, the rest zero, beside a family byte (4 or 6); the
// service, flow-table and NAT keys excepted: one map per family, IPv4 addresses 4 bytes there.

/** LB_MAX_SERVICES: service ids are 0 .. 4095. */
export const LB_MAX_SERVICES = 4096;
/** LB_MAX_BACKENDS: backend ids are 0 .. 65535. */
export const LB_MAX_BACKENDS = 65536;
/** LB_MAGLEV_MAX: the largest Maglev table (a prime). */
export const LB_MAGLEV_MAX = 1048573;
/** LB_MAGLEV_DEFAULT: the table size kept in lb_maglev_d, whose lookup the verifier inlines. */
export const LB_MAGLEV_DEFAULT = 65537;
/** LB_FLOWS_DEFAULT, LB_NAT_DEFAULT: entries of each flow table and of the NAT table unless set at load. */
export const LB_FLOWS_DEFAULT = 65536;
export const LB_NAT_DEFAULT = 65536;
export const LB_FIB_REASONS = 16;

export const LB_HASH = { '5tuple': 0, src: 1, 'src-port': 2 } as const;
export const LB_FWD = { dsr: 0, ipip: 1, nat: 2, gue: 3 } as const;

/** LB_GUE_PORT: the outer UDP destination port of GUE forwarding. */
export const LB_GUE_PORT = 6080;

/** lb_svc.flags */
export const LB_SVC_DEVICES = 1 << 0;

/** lb_backend.flags */
export const LB_BE_ACTIVE = 1 << 0;
export const LB_BE_DOWN = 1 << 1;
export const LB_BE_DRAINING = 1 << 2;

/** lb_flow.state */
export const LB_FLOW_CLOSING = 1 << 0;

/** lb_config.flags */
export const LB_CFG_INSERT_CAP = 1 << 0;
export const LB_CFG_NO_COMMON_LRU = 1 << 1;
export const LB_CFG_SRC4 = 1 << 2;
export const LB_CFG_SRC6 = 1 << 3;

/** lb_decap_cfg.flags */
export const LB_DECAP_ANY = 1 << 0;

export const IPPROTO = { tcp: 6, udp: 17, sctp: 132 } as const;

/** enum lb_event, in index order: lb_events keys. */
export const LB_EVENTS = [
  'flowHit',
  'flowMiss',
  'nonSynMiss',
  'insertCap',
  'flowStale',
  'fragment',
  'fragmentPass',
  'noTable',
  'noBackend',
  'family',
  'noSource',
  'fibFail',
  'tx',
  'redirect',
  'encapFail',
  'natReverse',
  'natInsertFail',
  'flowClosing',
  'insertFail',
  'otherDevice',
] as const;
export type LbEvent = (typeof LB_EVENTS)[number];

/** lb_fib_stats keys: bpf_fib_lookup's BPF_FIB_LKUP_RET_* codes; 0 counts negative returns. */
export const LB_FIB_REASON_NAMES: Readonly<Record<number, string>> = {
  0: 'error',
  1: 'blackhole',
  2: 'unreachable',
  3: 'prohibit',
  4: 'notForwarded',
  5: 'forwardingDisabled',
  6: 'unsupportedLwt',
  7: 'noNeighbour',
  8: 'fragNeeded',
  9: 'noSourceAddress',
};

/** enum lb_decap_event, in index order: lb_decap_stats keys. */
export const LB_DECAP_EVENTS = [
  'decapped',
  'notLocal',
  'malformed',
  'fragment',
  'gueDecapped',
] as const;
export type LbDecapEvent = (typeof LB_DECAP_EVENTS)[number];

export const SVC4_KEY_SIZE = 8;
export const SVC6_KEY_SIZE = 20;
export const SVC_SIZE = 20;
export const SVC_DEV_KEY_SIZE = 8;
export const BACKEND_SIZE = 20;
export const FLOW4_KEY_SIZE = 16;
export const FLOW6_KEY_SIZE = 40;
export const FLOW_SIZE = 24;
export const NAT4_KEY_SIZE = 16;
export const NAT6_KEY_SIZE = 40;
export const NAT4_SIZE = 12;
export const NAT6_SIZE = 24;
export const CONFIG_SIZE = 48;
export const BUCKET_SIZE = 16;
export const COUNTER_SIZE = 24;
export const EVENTS_SIZE = 160;
export const ADDR_KEY_SIZE = 20;
export const DECAP_CFG_SIZE = 8;

/** An address as the maps hold it. */
export interface AddrBytes {
  family: 4 | 6;
  /** 16 bytes, network order, IPv4 in the first 4. */
  addr: Uint8Array;
}

/** A u32 map key. */
export function u32Key(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(value >>> 0);
  return b;
}

function addrOf(bytes: Uint8Array, at: number, family: number): Uint8Array {
  return Uint8Array.from(bytes.subarray(at, at + (family === 4 ? 4 : 16)));
}

/** struct lb_svc4_key or lb_svc6_key (the map is the family's: lb_services4, lb_services6) */
export interface SvcKeyImage extends AddrBytes {
  /** Host order; 0: every port. */
  port: number;
  proto: number;
}

/** struct lb_svc4_key or lb_svc6_key, by k.family. */
export function encodeSvcKey(k: SvcKeyImage): Buffer {
  const n = k.family === 4 ? 4 : 16;
  const b = Buffer.alloc(k.family === 4 ? SVC4_KEY_SIZE : SVC6_KEY_SIZE);
  b.writeUInt16BE(k.port, 0);
  b[2] = k.proto;
  b.set(k.addr.subarray(0, n), 4);
  return b;
}

/** A service key back: its family from its size (8 bytes: IPv4, 20: IPv6). */
export function decodeSvcKey(b: Uint8Array): SvcKeyImage {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const family = buf.length === SVC4_KEY_SIZE ? 4 : 6;
  return { family, addr: addrOf(buf, 4, family), port: buf.readUInt16BE(0), proto: buf[2] };
}

/** struct lb_svc */
export interface SvcImage {
  id: number;
  seed: number;
  hashMode: number;
  fwdMode: number;
  flags: number;
  udpTimeoutS: number;
  tcpTimeoutS: number;
}

export function encodeSvc(s: SvcImage): Buffer {
  const b = Buffer.alloc(SVC_SIZE);
  b.writeUInt32LE(s.id >>> 0, 0);
  b.writeUInt32LE(s.seed >>> 0, 4);
  b[8] = s.hashMode;
  b[9] = s.fwdMode;
  b.writeUInt16LE(s.flags, 10);
  b.writeUInt32LE(s.udpTimeoutS >>> 0, 12);
  b.writeUInt32LE(s.tcpTimeoutS >>> 0, 16);
  return b;
}

export function decodeSvc(b: Uint8Array): SvcImage {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  return {
    id: buf.readUInt32LE(0),
    seed: buf.readUInt32LE(4),
    hashMode: buf[8],
    fwdMode: buf[9],
    flags: buf.readUInt16LE(10),
    udpTimeoutS: buf.readUInt32LE(12),
    tcpTimeoutS: buf.readUInt32LE(16),
  };
}

/** struct lb_svc_dev_key: service `svc` applies on device `ifindex`. */
export function encodeSvcDevKey(svc: number, ifindex: number): Buffer {
  const b = Buffer.alloc(SVC_DEV_KEY_SIZE);
  b.writeUInt32LE(svc >>> 0, 0);
  b.writeUInt32LE(ifindex >>> 0, 4);
  return b;
}

export function decodeSvcDevKey(b: Uint8Array): { svc: number; ifindex: number } {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  return { svc: buf.readUInt32LE(0), ifindex: buf.readUInt32LE(4) };
}

/** struct lb_backend */
export interface BackendImage extends AddrBytes {
  /** Host order; 0: the VIP's. */
  port: number;
  flags: number;
}

export function encodeBackend(be: BackendImage): Buffer {
  const b = Buffer.alloc(BACKEND_SIZE);
  b.set(be.addr.subarray(0, be.family === 4 ? 4 : 16), 0);
  b.writeUInt16BE(be.port, 16);
  b[18] = be.family;
  b[19] = be.flags;
  return b;
}

export function decodeBackend(b: Uint8Array): BackendImage {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const family = buf[18] === 6 ? 6 : 4;
  return { family, addr: addrOf(buf, 0, family), port: buf.readUInt16BE(16), flags: buf[19] };
}

/** A flow of a flow-table key (struct lb_flow4_key or lb_flow6_key, without the service id). */
export interface FlowKeyImage {
  family: 4 | 6;
  src: Uint8Array;
  dst: Uint8Array;
  /** Host order. */
  sport: number;
  dport: number;
  proto: number;
}

/** The size of a flow-table key of `family`: struct lb_flow4_key or lb_flow6_key. */
export function flowTableKeySize(family: 4 | 6): number {
  return family === 4 ? FLOW4_KEY_SIZE : FLOW6_KEY_SIZE;
}

/** struct lb_flow4_key or lb_flow6_key, by the flow's family: the key of flow `k` of service `svc`. */
export function encodeFlowTableKey(k: FlowKeyImage, svc: number): Buffer {
  const n = k.family === 4 ? 4 : 16;
  const b = Buffer.alloc(flowTableKeySize(k.family));
  b.set(k.src.subarray(0, n), 0);
  b.set(k.dst.subarray(0, n), n);
  b.writeUInt16BE(k.sport, 2 * n);
  b.writeUInt16BE(k.dport, 2 * n + 2);
  b[2 * n + 4] = k.proto;
  b.writeUInt16LE(svc & 0xffff, 2 * n + 6);
  return b;
}

/** A flow-table key back: its family from its size (16 bytes: IPv4, 40: IPv6). */
export function decodeFlowTableKey(b: Uint8Array): { flow: FlowKeyImage; svc: number } {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const family = buf.length === FLOW4_KEY_SIZE ? 4 : 6;
  const n = family === 4 ? 4 : 16;
  return {
    flow: {
      family,
      src: Uint8Array.from(buf.subarray(0, n)),
      dst: Uint8Array.from(buf.subarray(n, 2 * n)),
      sport: buf.readUInt16BE(2 * n),
      dport: buf.readUInt16BE(2 * n + 2),
      proto: buf[2 * n + 4],
    },
    svc: buf.readUInt16LE(2 * n + 6),
  };
}

/** struct lb_flow */
export interface FlowImage {
  backend: number;
  hash: number;
  tsNs: bigint;
  state: number;
}

export function encodeFlow(f: FlowImage): Buffer {
  const b = Buffer.alloc(FLOW_SIZE);
  b.writeUInt32LE(f.backend >>> 0, 0);
  b.writeUInt32LE(f.hash >>> 0, 4);
  b.writeBigUInt64LE(f.tsNs, 8);
  b.writeUInt32LE(f.state >>> 0, 16);
  return b;
}

export function decodeFlow(b: Uint8Array): FlowImage {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  return {
    backend: buf.readUInt32LE(0),
    hash: buf.readUInt32LE(4),
    tsNs: buf.readBigUInt64LE(8),
    state: buf.readUInt32LE(16),
  };
}

/** struct lb_nat4_key or lb_nat6_key (the map is the family's: lb_nat4, lb_nat6) */
export interface NatKeyImage {
  family: 4 | 6;
  backend: Uint8Array;
  client: Uint8Array;
  /** Host order. */
  bport: number;
  cport: number;
  proto: number;
}

/** struct lb_nat4_key or lb_nat6_key, by k.family. */
export function encodeNatKey(k: NatKeyImage): Buffer {
  const n = k.family === 4 ? 4 : 16;
  const b = Buffer.alloc(k.family === 4 ? NAT4_KEY_SIZE : NAT6_KEY_SIZE);
  b.set(k.backend.subarray(0, n), 0);
  b.set(k.client.subarray(0, n), n);
  b.writeUInt16BE(k.bport, 2 * n);
  b.writeUInt16BE(k.cport, 2 * n + 2);
  b[2 * n + 4] = k.proto;
  return b;
}

/** A NAT key back: its family from its size (16 bytes: IPv4, 40: IPv6). */
export function decodeNatKey(b: Uint8Array): NatKeyImage {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const family = buf.length === NAT4_KEY_SIZE ? 4 : 6;
  const n = family === 4 ? 4 : 16;
  return {
    family,
    backend: addrOf(buf, 0, family),
    client: addrOf(buf, n, family),
    bport: buf.readUInt16BE(2 * n),
    cport: buf.readUInt16BE(2 * n + 2),
    proto: buf[2 * n + 4],
  };
}

/** struct lb_nat4 or lb_nat6 (the VIP's family is the key's) */
export interface NatImage {
  vip: Uint8Array;
  /** Host order. */
  vport: number;
  svc: number;
}

export function decodeNat(b: Uint8Array, family: 4 | 6): NatImage {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const n = family === 4 ? 4 : 16;
  return { vip: addrOf(buf, 0, family), vport: buf.readUInt16BE(n), svc: buf.readUInt32LE(n + 4) };
}

/** struct lb_config */
export interface ConfigImage {
  insertRate: bigint;
  insertBurst: bigint;
  flags: number;
  closingTimeoutS: number;
  /** 4 bytes. */
  src4: Uint8Array;
  src4Len: number;
  /** 16 bytes. */
  src6: Uint8Array;
  src6Len: number;
}

export function encodeConfig(c: ConfigImage): Buffer {
  const b = Buffer.alloc(CONFIG_SIZE);
  b.writeBigUInt64LE(c.insertRate, 0);
  b.writeBigUInt64LE(c.insertBurst, 8);
  b.writeUInt32LE(c.flags >>> 0, 16);
  b.writeUInt32LE(c.closingTimeoutS >>> 0, 20);
  b.set(c.src4.subarray(0, 4), 24);
  b[28] = c.src4Len;
  b[29] = c.src6Len;
  b.set(c.src6.subarray(0, 16), 32);
  return b;
}

export function decodeConfig(b: Uint8Array): ConfigImage {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  return {
    insertRate: buf.readBigUInt64LE(0),
    insertBurst: buf.readBigUInt64LE(8),
    flags: buf.readUInt32LE(16),
    closingTimeoutS: buf.readUInt32LE(20),
    src4: Uint8Array.from(buf.subarray(24, 28)),
    src4Len: buf[28],
    src6Len: buf[29],
    src6: Uint8Array.from(buf.subarray(32, 48)),
  };
}

/** struct lb_counter, summed over the per-CPU values given. */
export interface CounterImage {
  packets: number;
  bytes: number;
  newFlows: number;
}

export function sumCounters(values: readonly Uint8Array[]): CounterImage {
  let packets = 0n;
  let bytes = 0n;
  let newFlows = 0n;
  for (const v of values) {
    const buf = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    packets += buf.readBigUInt64LE(0);
    bytes += buf.readBigUInt64LE(8);
    newFlows += buf.readBigUInt64LE(16);
  }
  return { packets: Number(packets), bytes: Number(bytes), newFlows: Number(newFlows) };
}

/**
 * struct lb_events (a u64 per enum lb_event, LB_EVENTS in index order), summed over the per-CPU
 * values given.
 */
export function sumEvents(values: readonly Uint8Array[]): Record<LbEvent, number> {
  const sums = LB_EVENTS.map(() => 0n);
  for (const v of values) {
    const buf = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    for (let i = 0; i < sums.length; i++) sums[i] += buf.readBigUInt64LE(i * 8);
  }
  const out = {} as Record<LbEvent, number>;
  LB_EVENTS.forEach((name, i) => {
    out[name] = Number(sums[i]);
  });
  return out;
}

/** A u64 per-CPU value summed over CPUs. */
export function sumU64(values: readonly Uint8Array[]): number {
  let n = 0n;
  for (const v of values) n += Buffer.from(v.buffer, v.byteOffset, v.byteLength).readBigUInt64LE(0);
  return Number(n);
}

/** struct lb_addr_key */
export function encodeAddrKey(a: AddrBytes): Buffer {
  const b = Buffer.alloc(ADDR_KEY_SIZE);
  b[0] = a.family;
  b.set(a.addr.subarray(0, a.family === 4 ? 4 : 16), 4);
  return b;
}

/** struct lb_decap_cfg */
export function encodeDecapCfg(flags: number): Buffer {
  const b = Buffer.alloc(DECAP_CFG_SIZE);
  b.writeUInt32LE(flags >>> 0, 0);
  return b;
}
