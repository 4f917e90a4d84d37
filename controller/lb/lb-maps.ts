// The load balancer's maps (bpf/progs/include/lb.h) from user space: load the objects, write services (and the devices each applies on), backends, Maglev tables and config, read counters, flows and NAT entries.
//
// Forwarding modes (LB_FWD): 'dsr' (L2 direct server return), 'ipip' (IP in IP), 'gue' (IP in
// UDP to port 6080 with a 4-byte GUE header; lb_decap_xdp strips both on the backends) and 'nat'.
//
// Plain objects in and out; the byte layouts live in lb-abi.ts. Maglev tables come from
// elsewhere (controller/lb/maglev.ts) as a Uint32Array of backend ids, one per slot. Writing one
// builds a new inner map beside the live one, fills it with one batch update, and swaps the
// service's slot of the outer map-in-map: packets see the old table or the new one, never a
// mix, and the table's size travels with it (the program reads M from the inner map). The old
// inner map is freed by the kernel once the outer map lets go of it (this file keeps no fd to it).
import {
  MAP_FLAGS,
  SyscallError,
  createMap,
  getMapById,
  openObject,
  possibleCpus,
  type BpfMap,
  type BpfObject,
} from '../../bpf/index.js';
import { join } from 'node:path';

import { bpfObjectPath } from '../../bpf/progs.js';
import { PrefixInvalidError } from '../dataplane/errors.js';
import { formatAddress, parsePrefix } from '../dataplane/model.js';
import {
  IPPROTO,
  LB_BE_ACTIVE,
  LB_BE_DOWN,
  LB_BE_DRAINING,
  LB_CFG_INSERT_CAP,
  LB_CFG_NO_COMMON_LRU,
  LB_CFG_SRC4,
  LB_CFG_SRC6,
  LB_DECAP_ANY,
  LB_DECAP_EVENTS,
  LB_FIB_REASONS,
  LB_FIB_REASON_NAMES,
  LB_FLOW_CLOSING,
  LB_FLOWS_DEFAULT,
  LB_FWD,
  LB_HASH,
  LB_MAGLEV_DEFAULT,
  LB_MAGLEV_MAX,
  LB_MAX_BACKENDS,
  LB_MAX_SERVICES,
  LB_NAT_DEFAULT,
  LB_SVC_DEVICES,
  COUNTER_SIZE,
  FLOW_SIZE,
  NAT4_SIZE,
  NAT6_SIZE,
  decodeBackend,
  decodeConfig,
  decodeFlow,
  decodeFlowTableKey,
  decodeNat,
  decodeNatKey,
  decodeSvc,
  decodeSvcDevKey,
  decodeSvcKey,
  encodeAddrKey,
  encodeBackend,
  encodeConfig,
  encodeDecapCfg,
  encodeSvc,
  encodeSvcDevKey,
  encodeSvcKey,
  sumCounters,
  sumEvents,
  sumU64,
  u32Key,
  type AddrBytes,
  type CounterImage,
  type LbDecapEvent,
  type LbEvent,
} from './lb-abi.js';
import { LbMapAccessError, LbMapInvalidError } from './errors.js';

export type LbHashMode = keyof typeof LB_HASH;
export type LbForwardMode = keyof typeof LB_FWD;
export type LbProto = keyof typeof IPPROTO;
/**
 * 'shared': one LRU list for all CPUs (lb_flows4, lb_flows6); 'per-cpu': BPF_F_NO_COMMON_LRU
 * (lb_flows4_pc, lb_flows6_pc).
 */
export type LbFlowTable = 'shared' | 'per-cpu';
/** 'active' takes new flows; 'down' keeps its flows but a TCP SYN leaves it; 'draining' keeps its flows. */
export type LbBackendState = 'active' | 'down' | 'draining';

/** What a service matches: a VIP, a port (0: every port) and a protocol. */
export interface LbServiceKey {
  vip: string;
  port: number;
  proto: LbProto;
}

/** How a service balances. */
export interface LbService {
  /** 0 .. 4095: the Maglev slot, counter index and flow-key part of the service. */
  id: number;
  hashMode: LbHashMode;
  forwardMode: LbForwardMode;
  /** jhash2 initval of the service's flow hash (u32). */
  seed: number;
  /** Non-TCP flows idle out after this many seconds; 0 or absent: never (the LRU evicts). */
  udpTimeoutSeconds?: number;
  /** TCP flows idle out after this many seconds; 0 or absent: never. */
  tcpTimeoutSeconds?: number;
  /**
   * The ifindexes of the devices the service applies on (lb_xdp passes its packets arriving
   * anywhere else, counting otherDevice); absent or empty: every device lb_xdp runs on.
   */
  devices?: number[];
}

/** One backend, by id (0 .. 65535). */
export interface LbBackend {
  address: string;
  /** NAT mode: the destination port; 0 or absent: the VIP's port. */
  port?: number;
  /** Default 'active'. */
  state?: LbBackendState;
}

/** The balancer-wide settings (lb_config). */
export interface LbConfig {
  /** New flow-table entries per second per CPU, and the bucket depth; null or absent: no cap. */
  insertCap?: { rate: number; burst: number } | null;
  /** Seconds a TCP entry lives after FIN or RST; 0 or absent: until the LRU evicts it. */
  closingTimeoutSeconds?: number;
  /**
   * IPIP and GUE outer IPv4 source prefix ("198.51.100.0/24"): the host bits come from the flow
   * hash.
   */
  ipipSource4?: string;
  /** IPIP and GUE outer IPv6 source prefix; at most the last 32 bits vary. */
  ipipSource6?: string;
}

/** Packets, bytes (frame length as received) and flow-table entries created. */
export type LbCounter = CounterImage;

/** Every counter of lb.bpf.c summed over CPUs; services and backends with nothing counted are left out. */
export interface LbCounters {
  services: Map<number, LbCounter>;
  backends: Map<number, LbCounter>;
  events: Record<LbEvent, number>;
  /** bpf_fib_lookup failures by reason ('noNeighbour', 'fragNeeded', …); zero ones left out. */
  fibFailures: Record<string, number>;
}

/** A flow key as text: both addresses of one family, host-order ports. */
export interface LbFlowKey {
  family: 4 | 6;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  proto: LbProto | number;
}

/** One flow-table entry, decoded. */
export interface LbFlowEntry {
  serviceId: number;
  flow: LbFlowKey;
  backend: number;
  /** The flow hash that chose the backend. */
  hash: number;
  /** CLOCK_MONOTONIC (coarse) ns of the last refresh, or of the FIN/RST when closing. */
  lastSeenNs: bigint;
  closing: boolean;
}

/** One reverse-NAT entry, decoded. */
export interface LbNatEntry {
  family: 4 | 6;
  backend: string;
  backendPort: number;
  client: string;
  clientPort: number;
  proto: LbProto | number;
  vip: string;
  vipPort: number;
  serviceId: number;
}

/** How to load lb.o. */
export interface LbLoadOptions {
  /** Default 'shared'. */
  flowTable?: LbFlowTable;
  /**
   * Entries of each family's flow table (default LB_FLOWS_DEFAULT); per-cpu: rounded up to a
   * multiple of the CPUs.
   */
  flowEntries?: number;
  /** Entries of each family's reverse-NAT table (default LB_NAT_DEFAULT). */
  natEntries?: number;
  /** Path of lb.o; default bpf/progs/lb.o. */
  path?: string;
  /**
   * A bpffs directory to pin the maps in, or to reuse the maps pinned there by an earlier load
   * (flows, services, tables and counters survive a restart). Maps whose pinned definition
   * differs (another flow-table size) make the load fail: remove the directory's pins first.
   */
  pinDir?: string;
}

const PROTO_NAMES = new Map<number, LbProto>(
  Object.entries(IPPROTO).map(([name, n]) => [n, name as LbProto]),
);

function invalid(field: string, message: string, cause?: unknown): LbMapInvalidError {
  return new LbMapInvalidError(message, { field, cause });
}

function checkInt(field: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw invalid(field, `${field} must be an integer from ${min} to ${max}, got ${value}`);
  }
}

/** 4 or 16 bytes of a bare address, in 16 bytes. Throws LbMapInvalidError. */
function parseAddress(field: string, text: string): AddrBytes {
  let prefix;
  try {
    prefix = parsePrefix(text);
  } catch (error: unknown) {
    if (error instanceof PrefixInvalidError) {
      throw invalid(field, `${field} "${text}" is not an IPv4 or IPv6 address`, error);
    }
    throw error;
  }
  if (prefix.len !== (prefix.family === 4 ? 32 : 128) || text.includes('/')) {
    throw invalid(field, `${field} "${text}" is a prefix, not an address`);
  }
  const addr = new Uint8Array(16);
  addr.set(prefix.addr, 0);
  return { family: prefix.family, addr };
}

function formatBytes(family: 4 | 6, addr: Uint8Array): string {
  return formatAddress(family, addr);
}

function isPrime(n: number): boolean {
  if (n < 2) return false;
  if (n % 2 === 0) return n === 2;
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false;
  return true;
}

/** Runs a map operation, turning a SyscallError into an LbMapAccessError about `map`. */
function access<T>(map: string, what: string, op: () => T): T {
  try {
    return op();
  } catch (error: unknown) {
    if (error instanceof SyscallError) {
      throw new LbMapAccessError(`${what} in map "${map}": ${error.message}`, {
        map,
        cause: error,
      });
    }
    throw error;
  }
}

async function accessAsync<T>(map: string, what: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (error: unknown) {
    if (error instanceof SyscallError) {
      throw new LbMapAccessError(`${what} in map "${map}": ${error.message}`, {
        map,
        cause: error,
      });
    }
    throw error;
  }
}

/** The key of service `key` and the name of its family's map. Throws LbMapInvalidError. */
function encodeServiceKey(key: LbServiceKey): { k: Buffer; map: 'lb_services4' | 'lb_services6' } {
  const vip = parseAddress('vip', key.vip);
  checkInt('port', key.port, 0, 65535);
  const proto = IPPROTO[key.proto];
  if (proto === undefined) {
    throw invalid(
      'proto',
      `proto must be "tcp", "udp" or "sctp", got ${JSON.stringify(key.proto)}`,
    );
  }
  return {
    k: encodeSvcKey({ ...vip, port: key.port, proto }),
    map: vip.family === 4 ? 'lb_services4' : 'lb_services6',
  };
}

/**
 * Opens lb.o, sizes the flow tables (both families; the kind not chosen shrinks to one entry
 * each) and the NAT table, loads it, and records the flow-table choice in lb_config. Throws VerifierError or
 * SyscallError from the load (bpf/), LbMapInvalidError for bad sizes. Needs Linux >= 5.11
 * (bpf_ktime_get_coarse_ns) and kernel BTF (the Maglev table size is read through CO-RE).
 */
export function loadLbObject(options: LbLoadOptions = {}): BpfObject {
  const flowTable = options.flowTable ?? 'shared';
  if (flowTable !== 'shared' && flowTable !== 'per-cpu') {
    throw invalid(
      'flowTable',
      `flowTable must be "shared" or "per-cpu", got ${JSON.stringify(flowTable)}`,
    );
  }
  const flows = options.flowEntries ?? LB_FLOWS_DEFAULT;
  const nat = options.natEntries ?? LB_NAT_DEFAULT;
  checkInt('flowEntries', flows, 1, 1 << 28);
  checkInt('natEntries', nat, 1, 1 << 28);
  const object = openObject(options.path ?? bpfObjectPath('lb'));
  try {
    for (const name of ['lb_flows4', 'lb_flows6'])
      object.setMaxEntries(name, flowTable === 'shared' ? flows : 1);
    // The kernel rounds a per-CPU LRU's size up to a multiple of the possible CPUs; asked for
    // that size, the map's pin matches its definition at the next load and is reused (a size
    // it rounds differs from the pin's, and libbpf refuses the pin).
    const cpus = possibleCpus();
    for (const name of ['lb_flows4_pc', 'lb_flows6_pc'])
      object.setMaxEntries(name, Math.ceil((flowTable === 'per-cpu' ? flows : 1) / cpus) * cpus);
    object.setMaxEntries('lb_nat4', nat);
    object.setMaxEntries('lb_nat6', nat);
    if (options.pinDir !== undefined) {
      for (const name of LB_MAP_NAMES) object.setPinPath(name, join(options.pinDir, name));
    }
    object.load();
    const config = object.map('lb_config');
    try {
      const image = encodeConfig({
        insertRate: 0n,
        insertBurst: 0n,
        flags: flowTable === 'per-cpu' ? LB_CFG_NO_COMMON_LRU : 0,
        closingTimeoutS: 0,
        src4: new Uint8Array(4),
        src4Len: 0,
        src6: new Uint8Array(16),
        src6Len: 0,
      });
      config.update(u32Key(0), image);
    } finally {
      config.close();
    }
    return object;
  } catch (error: unknown) {
    object.close();
    throw error;
  }
}

/** Opens and loads lb_decap.o (path default bpf/progs/lb_decap.o). Throws like BpfObject.load(). */
export function loadLbDecapObject(path?: string): BpfObject {
  const object = openObject(path ?? bpfObjectPath('lb_decap'));
  try {
    object.load();
    return object;
  } catch (error: unknown) {
    object.close();
    throw error;
  }
}

const LB_MAP_NAMES = [
  'lb_services4',
  'lb_services6',
  'lb_svc_devs',
  'lb_maglev',
  'lb_maglev_d',
  'lb_backends',
  'lb_flows4',
  'lb_flows6',
  'lb_flows4_pc',
  'lb_flows6_pc',
  'lb_nat4',
  'lb_nat6',
  'lb_config',
  'lb_insert_tb',
  'lb_svc_stats',
  'lb_be_stats',
  'lb_events',
  'lb_fib_stats',
  // lb_xdp's tail call into its general path: held (and pinned) here because the kernel empties
  // a program array when its last fd or pin goes, and lb_xdp would then pass what it cannot
  // take on its fast path.
  'lb_progs',
] as const;
type LbMapName = (typeof LB_MAP_NAMES)[number];

/**
 * The maps of one loaded lb.o, each through its own fd (valid after the object is closed).
 * Writers validate everything first and write nothing on a bad field; close() releases the fds.
 */
export class LbMaps {
  readonly #maps: Record<LbMapName, BpfMap>;

  private constructor(maps: Record<LbMapName, BpfMap>) {
    this.#maps = maps;
  }

  /**
   * Opens the maps of `object` (loaded from lb.o, by loadLbObject). Throws InvalidStateError
   * (bpf/) for an object that is not loaded or lacks one of the maps.
   */
  static open(object: BpfObject): LbMaps {
    const maps = {} as Record<LbMapName, BpfMap>;
    try {
      for (const name of LB_MAP_NAMES) maps[name] = object.map(name);
    } catch (error: unknown) {
      for (const m of Object.values(maps)) m.close();
      throw error;
    }
    return new LbMaps(maps);
  }

  /** The flow table packets use, as lb_config says. */
  get flowTable(): LbFlowTable {
    return this.#config().flags & LB_CFG_NO_COMMON_LRU ? 'per-cpu' : 'shared';
  }

  #config() {
    const raw = access('lb_config', 'read the config', () =>
      this.#maps.lb_config.lookup(u32Key(0)),
    );
    if (!raw) throw new LbMapAccessError('read the config: no entry 0', { map: 'lb_config' });
    return decodeConfig(raw);
  }

  /** The flow tables packets use, IPv4's and IPv6's. */
  #flowMaps(): BpfMap[] {
    return this.flowTable === 'per-cpu'
      ? [this.#maps.lb_flows4_pc, this.#maps.lb_flows6_pc]
      : [this.#maps.lb_flows4, this.#maps.lb_flows6];
  }

  /**
   * Adds or replaces the service `key`. With `devices`, their lb_svc_devs entries are written
   * before the service (with LB_SVC_DEVICES) and the entries it no longer names are removed
   * after it, so no packet on a device in both the old and the new list is passed meanwhile.
   * Throws LbMapInvalidError for a bad field (VIP, port, proto, id, modes, seed, timeouts,
   * devices), LbMapAccessError when a map is full (the entries it added are taken back).
   */
  setService(key: LbServiceKey, service: LbService): void {
    const { k, map } = encodeServiceKey(key);
    checkInt('id', service.id, 0, LB_MAX_SERVICES - 1);
    checkInt('seed', service.seed, 0, 0xffffffff);
    const hashMode = LB_HASH[service.hashMode];
    if (hashMode === undefined) {
      throw invalid(
        'hashMode',
        `hashMode must be "5tuple", "src" or "src-port", got ${JSON.stringify(service.hashMode)}`,
      );
    }
    const fwdMode = LB_FWD[service.forwardMode];
    if (fwdMode === undefined) {
      throw invalid(
        'forwardMode',
        `forwardMode must be "dsr", "ipip", "gue" or "nat", got ${JSON.stringify(service.forwardMode)}`,
      );
    }
    const udp = service.udpTimeoutSeconds ?? 0;
    const tcp = service.tcpTimeoutSeconds ?? 0;
    checkInt('udpTimeoutSeconds', udp, 0, 0xffffffff);
    checkInt('tcpTimeoutSeconds', tcp, 0, 0xffffffff);
    const devices = service.devices ?? [];
    if (!Array.isArray(devices)) {
      throw invalid(
        'devices',
        `devices must be an array of ifindexes, got ${JSON.stringify(devices)}`,
      );
    }
    devices.forEach((ifindex, i) => checkInt(`devices[${i}]`, ifindex, 1, 0x7fffffff));
    const wanted = new Set(devices);
    const v = encodeSvc({
      id: service.id,
      seed: service.seed,
      hashMode,
      fwdMode,
      flags: wanted.size ? LB_SVC_DEVICES : 0,
      udpTimeoutS: udp,
      tcpTimeoutS: tcp,
    });
    const what = `set service ${key.vip}:${key.port}/${key.proto}`;
    const raw = access(map, what, () => this.#maps[map].lookup(k));
    const previousId = raw ? decodeSvc(raw).id : undefined;
    const had = new Set(this.#devicesOf(service.id));
    const added: number[] = [];
    try {
      access('lb_svc_devs', what, () => {
        for (const ifindex of wanted) {
          if (had.has(ifindex)) continue;
          this.#maps.lb_svc_devs.update(encodeSvcDevKey(service.id, ifindex), Buffer.of(1));
          added.push(ifindex);
        }
      });
      access(map, what, () => this.#maps[map].update(k, v));
    } catch (error: unknown) {
      for (const ifindex of added)
        this.#maps.lb_svc_devs.delete(encodeSvcDevKey(service.id, ifindex));
      throw error;
    }
    this.#removeDevices(service.id, wanted, what);
    if (previousId !== undefined && previousId !== service.id) {
      this.#removeDevices(previousId, new Set(), what, { unlessInUse: true });
    }
  }

  /**
   * Removes the service `key`, then its lb_svc_devs entries (unless another service has its
   * id); false if there was none. Its table and flows stay.
   */
  deleteService(key: LbServiceKey): boolean {
    const { k, map } = encodeServiceKey(key);
    const what = `delete service ${key.vip}:${key.port}/${key.proto}`;
    const raw = access(map, what, () => this.#maps[map].lookup(k));
    const deleted = access(map, what, () => this.#maps[map].delete(k));
    if (raw) this.#removeDevices(decodeSvc(raw).id, new Set(), what, { unlessInUse: true });
    return deleted;
  }

  /** The ifindexes lb_svc_devs holds for service id `id`. */
  #devicesOf(id: number): number[] {
    const out: number[] = [];
    for (const raw of this.#maps.lb_svc_devs.keys()) {
      const d = decodeSvcDevKey(raw);
      if (d.svc === id) out.push(d.ifindex);
    }
    return out;
  }

  /**
   * Deletes service id `id`'s lb_svc_devs entries whose device is not in `keep`; with
   * `unlessInUse`, none while a service in lb_services4/6 still has the id (looked for only
   * when there is something to delete: services without devices cost no scan of the services).
   */
  #removeDevices(
    id: number,
    keep: ReadonlySet<number>,
    what: string,
    options: { unlessInUse?: boolean } = {},
  ): void {
    const stale = this.#devicesOf(id).filter((ifindex) => !keep.has(ifindex));
    if (!stale.length || (options.unlessInUse && this.#idInUse(id))) return;
    access('lb_svc_devs', what, () => {
      for (const ifindex of stale) this.#maps.lb_svc_devs.delete(encodeSvcDevKey(id, ifindex));
    });
  }

  /** Whether a service in lb_services4 or lb_services6 has id `id`. */
  #idInUse(id: number): boolean {
    for (const map of [this.#maps.lb_services4, this.#maps.lb_services6]) {
      for (const [, raw] of map.entries()) {
        if (decodeSvc(raw as Buffer).id === id) return true;
      }
    }
    return false;
  }

  /** Every service in the map, with the devices of those restricted to some. */
  listServices(): { key: LbServiceKey; service: LbService }[] {
    const out: { key: LbServiceKey; service: LbService }[] = [];
    const devices = new Map<number, number[]>();
    for (const raw of this.#maps.lb_svc_devs.keys()) {
      const d = decodeSvcDevKey(raw);
      const list = devices.get(d.svc) ?? [];
      list.push(d.ifindex);
      devices.set(d.svc, list);
    }
    const entries = [...this.#maps.lb_services4.entries(), ...this.#maps.lb_services6.entries()];
    for (const [rawKey, rawValue] of entries) {
      const k = decodeSvcKey(rawKey);
      const s = decodeSvc(rawValue as Buffer);
      const restricted =
        s.flags & LB_SVC_DEVICES
          ? { devices: [...(devices.get(s.id) ?? [])].sort((a, b) => a - b) }
          : {};
      out.push({
        key: {
          vip: formatBytes(k.family, k.addr),
          port: k.port,
          proto: PROTO_NAMES.get(k.proto) ?? ('tcp' as LbProto),
        },
        service: {
          id: s.id,
          seed: s.seed,
          hashMode: (Object.keys(LB_HASH) as LbHashMode[])[s.hashMode] ?? '5tuple',
          forwardMode: (Object.keys(LB_FWD) as LbForwardMode[])[s.fwdMode] ?? 'dsr',
          udpTimeoutSeconds: s.udpTimeoutS,
          tcpTimeoutSeconds: s.tcpTimeoutS,
          ...restricted,
        },
      });
    }
    return out;
  }

  /** Writes backend `id`. Throws LbMapInvalidError for a bad id, address, port or state. */
  setBackend(id: number, backend: LbBackend): void {
    checkInt('backend id', id, 0, LB_MAX_BACKENDS - 1);
    const a = parseAddress('address', backend.address);
    const port = backend.port ?? 0;
    checkInt('port', port, 0, 65535);
    const state = backend.state ?? 'active';
    if (state !== 'active' && state !== 'down' && state !== 'draining') {
      throw invalid(
        'state',
        `state must be "active", "down" or "draining", got ${JSON.stringify(state)}`,
      );
    }
    const flags =
      LB_BE_ACTIVE |
      (state === 'down' ? LB_BE_DOWN : 0) |
      (state === 'draining' ? LB_BE_DRAINING : 0);
    access('lb_backends', `set backend ${id}`, () =>
      this.#maps.lb_backends.update(u32Key(id), encodeBackend({ ...a, port, flags })),
    );
  }

  /** Removes backend `id` (zeroes it): its flows re-select on their next packet. */
  removeBackend(id: number): void {
    checkInt('backend id', id, 0, LB_MAX_BACKENDS - 1);
    access('lb_backends', `remove backend ${id}`, () =>
      this.#maps.lb_backends.update(u32Key(id), Buffer.alloc(20)),
    );
  }

  /** Backend `id`, or null when it does not exist. */
  getBackend(id: number): LbBackend | null {
    checkInt('backend id', id, 0, LB_MAX_BACKENDS - 1);
    const raw = this.#maps.lb_backends.lookup(u32Key(id));
    if (!raw) return null;
    const b = decodeBackend(raw);
    if (!(b.flags & LB_BE_ACTIVE)) return null;
    return {
      address: formatBytes(b.family, b.addr),
      port: b.port,
      state: b.flags & LB_BE_DOWN ? 'down' : b.flags & LB_BE_DRAINING ? 'draining' : 'active',
    };
  }

  /**
   * Installs `table` (slot -> backend id) as service `serviceId`'s Maglev table: a new inner
   * array of table.length entries filled by one batch update, then one swap of the outer slot.
   * A table of LB_MAGLEV_DEFAULT entries goes to lb_maglev_d (a fixed size, so packets look it
   * up without a call), any other to lb_maglev (BPF_F_INNER_MAP); lb_xdp asks lb_maglev_d
   * first, so a table moving between them is written before the other slot is emptied and
   * every packet sees the old table or the new one. Throws LbMapInvalidError when the size is
   * not a prime up to LB_MAGLEV_MAX or an id is out of range, LbMapAccessError when the kernel
   * refuses (nothing swapped). Needs Linux >= 5.10 (inner arrays of differing sizes).
   */
  async setMaglevTable(serviceId: number, table: Uint32Array): Promise<void> {
    checkInt('service id', serviceId, 0, LB_MAX_SERVICES - 1);
    const m = table.length;
    if (m < 1 || m > LB_MAGLEV_MAX || !isPrime(m)) {
      throw invalid(
        'table',
        `a Maglev table's size must be a prime up to ${LB_MAGLEV_MAX}, got ${m}`,
      );
    }
    for (let i = 0; i < m; i++) {
      // 0xffffffff (MAGLEV_NO_BACKEND): no backend takes new flows there (LB_EV_NO_BACKEND).
      if (table[i] >= LB_MAX_BACKENDS && table[i] !== 0xffffffff) {
        throw invalid(
          'table',
          `table slot ${i} names backend ${table[i]}, past the last id ${LB_MAX_BACKENDS - 1}`,
        );
      }
    }
    const fixed = m === LB_MAGLEV_DEFAULT;
    const [into, other] = fixed
      ? (['lb_maglev_d', 'lb_maglev'] as const)
      : (['lb_maglev', 'lb_maglev_d'] as const);
    const inner = access(into, `create the table of service ${serviceId}`, () =>
      createMap({
        type: 'array',
        keySize: 4,
        valueSize: 4,
        maxEntries: m,
        flags: fixed ? 0 : MAP_FLAGS.INNER_MAP,
        name: `lb_tbl_${serviceId}`,
      }),
    );
    try {
      const keys = new Uint32Array(m);
      for (let i = 0; i < m; i++) keys[i] = i;
      const values = Uint32Array.from(table);
      await accessAsync(into, `fill the table of service ${serviceId}`, () =>
        inner.updateBatch(
          new Uint8Array(keys.buffer, 0, keys.byteLength),
          new Uint8Array(values.buffer, 0, values.byteLength),
        ),
      );
      access(into, `swap the table of service ${serviceId}`, () =>
        this.#maps[into].setFd(u32Key(serviceId), inner),
      );
    } finally {
      inner.close();
    }
    access(other, `remove the previous table of service ${serviceId}`, () =>
      this.#maps[other].delete(u32Key(serviceId)),
    );
  }

  /** Service `serviceId`'s installed Maglev table, read back from the kernel; null when none. */
  async readMaglevTable(serviceId: number): Promise<Uint32Array | null> {
    checkInt('service id', serviceId, 0, LB_MAX_SERVICES - 1);
    // lb_maglev_d first, as packets ask
    let from: 'lb_maglev_d' | 'lb_maglev' = 'lb_maglev_d';
    let raw = this.#maps[from].lookup(u32Key(serviceId));
    if (!raw) {
      from = 'lb_maglev';
      raw = this.#maps[from].lookup(u32Key(serviceId));
    }
    if (!raw) return null;
    const id = raw.readUInt32LE(0);
    const inner = access(from, `open the table of service ${serviceId}`, () => getMapById(id));
    try {
      const { keys, values, count } = await accessAsync(
        from,
        `read the table of service ${serviceId}`,
        () => inner.lookupBatch(),
      );
      const table = new Uint32Array(inner.maxEntries);
      for (let i = 0; i < count; i++) table[keys.readUInt32LE(i * 4)] = values.readUInt32LE(i * 4);
      return table;
    } finally {
      inner.close();
    }
  }

  /** Zeroes the counters of service `id` and backend `ids` (an id taken by someone new). */
  resetCounters(serviceIds: readonly number[], backendIds: readonly number[]): void {
    const zero = Array.from({ length: possibleCpus() }, () => Buffer.alloc(COUNTER_SIZE));
    for (const id of serviceIds) this.#maps.lb_svc_stats.update(u32Key(id), zero);
    for (const id of backendIds) this.#maps.lb_be_stats.update(u32Key(id), zero);
  }

  /** Removes service `serviceId`'s table (its packets then pass: LB_EV_NO_TABLE); false if none. */
  deleteMaglevTable(serviceId: number): boolean {
    checkInt('service id', serviceId, 0, LB_MAX_SERVICES - 1);
    let deleted = false;
    for (const name of ['lb_maglev_d', 'lb_maglev'] as const) {
      if (
        access(name, `delete the table of service ${serviceId}`, () =>
          this.#maps[name].delete(u32Key(serviceId)),
        )
      )
        deleted = true;
    }
    return deleted;
  }

  /**
   * Writes the balancer-wide config (the flow-table choice made at load stays) and refills
   * every CPU's insert bucket. Throws LbMapInvalidError for a bad rate, burst, timeout or prefix.
   */
  setConfig(config: LbConfig): void {
    const current = this.#config();
    let flags = current.flags & LB_CFG_NO_COMMON_LRU;
    let rate = 0n;
    let burst = 0n;
    if (config.insertCap) {
      checkInt('insertCap.rate', config.insertCap.rate, 0, Number.MAX_SAFE_INTEGER);
      checkInt('insertCap.burst', config.insertCap.burst, 0, 9223372036);
      rate = BigInt(config.insertCap.rate);
      burst = BigInt(config.insertCap.burst);
      flags |= LB_CFG_INSERT_CAP;
    }
    const closing = config.closingTimeoutSeconds ?? 0;
    checkInt('closingTimeoutSeconds', closing, 0, 0xffffffff);
    const src4 = new Uint8Array(4);
    const src6 = new Uint8Array(16);
    let src4Len = 0;
    let src6Len = 0;
    for (const [field, text, family] of [
      ['ipipSource4', config.ipipSource4, 4],
      ['ipipSource6', config.ipipSource6, 6],
    ] as const) {
      if (text === undefined) continue;
      let prefix;
      try {
        prefix = parsePrefix(text, field);
      } catch (error: unknown) {
        throw invalid(field, `${field} "${text}" is not a prefix`, error);
      }
      if (prefix.family !== family) {
        throw invalid(field, `${field} "${text}" is not an IPv${family} prefix`);
      }
      if (family === 4) {
        src4.set(prefix.addr);
        src4Len = prefix.len;
        flags |= LB_CFG_SRC4;
      } else {
        src6.set(prefix.addr);
        src6Len = prefix.len;
        flags |= LB_CFG_SRC6;
      }
    }
    const image = encodeConfig({
      insertRate: rate,
      insertBurst: burst,
      flags,
      closingTimeoutS: closing,
      src4,
      src4Len,
      src6,
      src6Len,
    });
    access('lb_config', 'write the config', () => {
      this.#maps.lb_config.update(u32Key(0), image);
      this.#maps.lb_insert_tb.update(u32Key(0), Buffer.alloc(16));
    });
  }

  /** The config as written (flow-table choice included). */
  getConfig(): LbConfig & { flowTable: LbFlowTable } {
    const c = this.#config();
    const out: LbConfig & { flowTable: LbFlowTable } = {
      flowTable: c.flags & LB_CFG_NO_COMMON_LRU ? 'per-cpu' : 'shared',
      insertCap:
        c.flags & LB_CFG_INSERT_CAP
          ? { rate: Number(c.insertRate), burst: Number(c.insertBurst) }
          : null,
      closingTimeoutSeconds: c.closingTimeoutS,
    };
    if (c.flags & LB_CFG_SRC4) out.ipipSource4 = `${formatBytes(4, c.src4)}/${c.src4Len}`;
    if (c.flags & LB_CFG_SRC6) out.ipipSource6 = `${formatBytes(6, c.src6)}/${c.src6Len}`;
    return out;
  }

  /** Service `id`'s counters summed over CPUs. */
  serviceCounters(id: number): LbCounter {
    checkInt('service id', id, 0, LB_MAX_SERVICES - 1);
    return sumCounters(this.#maps.lb_svc_stats.lookupPerCpu(u32Key(id)) ?? []);
  }

  /** Backend `id`'s counters summed over CPUs. */
  backendCounters(id: number): LbCounter {
    checkInt('backend id', id, 0, LB_MAX_BACKENDS - 1);
    return sumCounters(this.#maps.lb_be_stats.lookupPerCpu(u32Key(id)) ?? []);
  }

  /** lb_events summed over CPUs. */
  events(): Record<LbEvent, number> {
    return sumEvents(this.#maps.lb_events.lookupPerCpu(u32Key(0)) ?? []);
  }

  /** bpf_fib_lookup failures by reason, summed over CPUs; zero ones left out. */
  fibFailures(): Record<string, number> {
    const out: Record<string, number> = {};
    for (let i = 0; i < LB_FIB_REASONS; i++) {
      const n = sumU64(this.#maps.lb_fib_stats.lookupPerCpu(u32Key(i)) ?? []);
      if (n) out[LB_FIB_REASON_NAMES[i] ?? `code${i}`] = n;
    }
    return out;
  }

  /** Every counter, read in batches on a worker thread. */
  async readCounters(): Promise<LbCounters> {
    const perId = async (map: BpfMap): Promise<Map<number, LbCounter>> => {
      const cpus = possibleCpus();
      const out = new Map<number, LbCounter>();
      const { keys, values, count } = await map.lookupBatch();
      const stride = COUNTER_SIZE * cpus;
      for (let i = 0; i < count; i++) {
        const per: Uint8Array[] = [];
        for (let c = 0; c < cpus; c++) {
          const at = i * stride + c * COUNTER_SIZE;
          per.push(values.subarray(at, at + COUNTER_SIZE));
        }
        const sum = sumCounters(per);
        if (sum.packets || sum.bytes || sum.newFlows) out.set(keys.readUInt32LE(i * 4), sum);
      }
      return out;
    };
    return {
      services: await perId(this.#maps.lb_svc_stats),
      backends: await perId(this.#maps.lb_be_stats),
      events: this.events(),
      fibFailures: this.fibFailures(),
    };
  }

  /** Every entry of the flow tables in use (both families), its key decoded (for dry runs and inspection). */
  async readFlows(): Promise<LbFlowEntry[]> {
    const out: LbFlowEntry[] = [];
    for (const map of this.#flowMaps()) {
      const { keys, values, count } = await accessAsync(map.name, 'read the flows', () =>
        map.lookupBatch(),
      );
      const size = map.keySize;
      for (let i = 0; i < count; i++) {
        const k = decodeFlowTableKey(keys.subarray(i * size, (i + 1) * size));
        const v = decodeFlow(values.subarray(i * FLOW_SIZE, (i + 1) * FLOW_SIZE));
        out.push({
          serviceId: k.svc,
          flow: {
            family: k.flow.family,
            src: formatBytes(k.flow.family, k.flow.src),
            dst: formatBytes(k.flow.family, k.flow.dst),
            sport: k.flow.sport,
            dport: k.flow.dport,
            proto: PROTO_NAMES.get(k.flow.proto) ?? k.flow.proto,
          },
          backend: v.backend,
          hash: v.hash,
          lastSeenNs: v.tsNs,
          closing: (v.state & LB_FLOW_CLOSING) !== 0,
        });
      }
    }
    return out;
  }

  /**
   * Flow-table entries by service id and by backend id, counted without decoding them: this is
   * what stats and /metrics show, and a table may hold millions. (The "per-cpu" tables have
   * per-CPU LRU lists, BPF_F_NO_COMMON_LRU, not per-CPU values: one value an entry in both.)
   */
  async countFlows(): Promise<{ services: Map<number, number>; backends: Map<number, number> }> {
    const services = new Map<number, number>();
    const backends = new Map<number, number>();
    for (const map of this.#flowMaps()) {
      const { keys, values, count } = await accessAsync(map.name, 'read the flows', () =>
        map.lookupBatch(),
      );
      const size = map.keySize;
      for (let i = 0; i < count; i++) {
        const svc = flowService(keys, size, i);
        const backend = values.readUInt32LE(i * FLOW_SIZE);
        services.set(svc, (services.get(svc) ?? 0) + 1);
        backends.set(backend, (backends.get(backend) ?? 0) + 1);
      }
    }
    return { services, backends };
  }

  /** Empties the flow tables in use (every flow re-selects on its next packet); returns how many went. */
  clearFlows(): number {
    let removed = 0;
    for (const map of this.#flowMaps()) {
      for (const key of [...map.keys()]) if (map.delete(key)) removed++;
    }
    return removed;
  }

  /**
   * Deletes the flow-table entries `doomed` picks by service id and backend id (a service or
   * backend that went); returns how many went.
   */
  async deleteFlows(doomed: (service: number, backend: number) => boolean): Promise<number> {
    let removed = 0;
    for (const map of this.#flowMaps()) {
      const { keys, values, count } = await accessAsync(map.name, 'read the flows', () =>
        map.lookupBatch(),
      );
      const size = map.keySize;
      for (let i = 0; i < count; i++) {
        const key = keys.subarray(i * size, (i + 1) * size);
        const svc = flowService(keys, size, i);
        const backend = values.readUInt32LE(i * FLOW_SIZE);
        if (doomed(svc, backend) && map.delete(key)) removed++;
      }
    }
    return removed;
  }

  /** Every reverse-NAT entry (both families), decoded. */
  async readNat(): Promise<LbNatEntry[]> {
    const out: LbNatEntry[] = [];
    for (const [map, valueSize] of [
      [this.#maps.lb_nat4, NAT4_SIZE],
      [this.#maps.lb_nat6, NAT6_SIZE],
    ] as const) {
      const { keys, values, count } = await accessAsync(map.name, 'read the NAT entries', () =>
        map.lookupBatch(),
      );
      const size = map.keySize;
      for (let i = 0; i < count; i++) {
        const k = decodeNatKey(keys.subarray(i * size, (i + 1) * size));
        const v = decodeNat(values.subarray(i * valueSize, (i + 1) * valueSize), k.family);
        out.push({
          family: k.family,
          backend: formatBytes(k.family, k.backend),
          backendPort: k.bport,
          client: formatBytes(k.family, k.client),
          clientPort: k.cport,
          proto: PROTO_NAMES.get(k.proto) ?? k.proto,
          vip: formatBytes(k.family, v.vip),
          vipPort: v.vport,
          serviceId: v.svc,
        });
      }
    }
    return out;
  }

  /** Releases every map fd. Idempotent. */
  close(): void {
    for (const m of Object.values(this.#maps)) m.close();
  }
}

/** The service id of flow-table key `i` of `size` bytes: its last two bytes (lb_flow4_key, lb_flow6_key). */
function flowService(keys: Buffer, size: number, i: number): number {
  return keys.readUInt16LE((i + 1) * size - 2);
}

/** The maps of one loaded lb_decap.o: which outer destinations are decapsulated, and counters. */
export class LbDecapMaps {
  readonly #dst: BpfMap;
  readonly #cfg: BpfMap;
  readonly #stats: BpfMap;

  private constructor(dst: BpfMap, cfg: BpfMap, stats: BpfMap) {
    this.#dst = dst;
    this.#cfg = cfg;
    this.#stats = stats;
  }

  /** Opens the maps of `object` (loaded from lb_decap.o). Throws InvalidStateError (bpf/). */
  static open(object: BpfObject): LbDecapMaps {
    const opened: BpfMap[] = [];
    try {
      for (const name of ['lb_decap_dst', 'lb_decap_cfg', 'lb_decap_stats'])
        opened.push(object.map(name));
    } catch (error: unknown) {
      for (const m of opened) m.close();
      throw error;
    }
    return new LbDecapMaps(opened[0], opened[1], opened[2]);
  }

  /**
   * Decapsulates IPIP and GUE packets to `address` from now on. Throws LbMapInvalidError,
   * LbMapAccessError.
   */
  addLocalAddress(address: string): void {
    const k = encodeAddrKey(parseAddress('address', address));
    access('lb_decap_dst', `add local address ${address}`, () =>
      this.#dst.update(k, Buffer.alloc(4)),
    );
  }

  /** Stops decapsulating packets to `address`; false if it was not there. */
  removeLocalAddress(address: string): boolean {
    const k = encodeAddrKey(parseAddress('address', address));
    return access('lb_decap_dst', `remove local address ${address}`, () => this.#dst.delete(k));
  }

  /** true: decapsulate every IPIP and GUE packet whatever its outer destination. */
  setDecapAny(any: boolean): void {
    access('lb_decap_cfg', 'write the config', () =>
      this.#cfg.update(u32Key(0), encodeDecapCfg(any ? LB_DECAP_ANY : 0)),
    );
  }

  /** lb_decap_stats summed over CPUs. */
  counters(): Record<LbDecapEvent, number> {
    const out = {} as Record<LbDecapEvent, number>;
    LB_DECAP_EVENTS.forEach((name, i) => {
      out[name] = sumU64(this.#stats.lookupPerCpu(u32Key(i)) ?? []);
    });
    return out;
  }

  /** Releases the map fds. Idempotent. */
  close(): void {
    this.#dst.close();
    this.#cfg.close();
    this.#stats.close();
  }
}
