// The load balancer in the kernel, as the reconciler drives it: one lb.o per sluice instance, its
// maps pinned under `<pin dir>/lb` so that flows, tables and counters outlive a restart, and its
// programs handed to the pipelines (SL_PROG_LB) that run them after their rules.
//
// - Ids: a service's id (its Maglev slot, counter and flow-key part) and each backend's id are
//   kept across applies and restarts: services are read back from the service maps, backends from
//   lb_backends and the pinned owner map (backend id -> service id). New backend ids come from a
//   rotating cursor, so an id freed now is not handed out again soon: a stale flow entry pinned
//   to it can then only re-select, never reach somebody else's backend.
// - Tables are rebuilt beside the live one and swapped whole (lb-maps.ts). A rebuild starts
//   from the live table (buildMaglevTable's `previous`), so a change moves only the slots it
//   must; after a restart the live table is read back from the kernel first.
// - Backend states: drain or a failed health check take a backend out of the table (weight 0)
//   while its established flows stay (draining; down also lets a TCP SYN re-select). A backend
//   removed from the document drains for the service's drainTimeout, then goes, and the flows
//   still pinned to it are deleted. That deadline lives in this process only: a restart during
//   a drain removes the backend at once.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

import type { Logger } from 'pino';

import {
  createMap,
  openPinned,
  unpin,
  type BpfMap,
  type BpfObject,
  type BpfProgram,
} from '../../bpf/index.js';
import type { LbMovePrediction } from '../contract.js';
import type { LbSettingsDoc } from '../document.js';
import type { HealthState } from './health.js';
import { LB_MAX_BACKENDS, LB_MAX_SERVICES, u32Key } from './lb-abi.js';
import type { BackendPlan, ServicePlan } from './lb-config.js';
import {
  LbDecapMaps,
  LbMaps,
  loadLbDecapObject,
  loadLbObject,
  type LbBackendState,
  type LbConfig,
  type LbCounters,
  type LbFlowEntry,
} from './lb-maps.js';
import { buildMaglevTable, movedShare, predictMoves } from './maglev.js';
import { backendKey, serviceKey } from './service-key.js';

/** Flow-table entries by service id and by backend id. */
type FlowCounts = Awaited<ReturnType<LbMaps['countFlows']>>;

const OWNERS = 'lb_owners';
/**
 * Counting the active flows reads the whole flow table (a batch read; about a second for a
 * million entries): counts are reused until this many times the last count's duration has
 * passed, so stats and /metrics scrapes cost at most about a tenth of a core however large the
 * table, and a small table is counted afresh on every read.
 */
const FLOW_COUNT_SPACING = 10;

/** A backend as the kernel holds it now. */
export interface LiveBackend {
  key: string;
  id: number;
  address: string;
  port: number;
  /** As written to lb_backends; null before the first write. */
  state: LbBackendState | null;
  /** Set while it drains after removal: Date.now() when it goes. */
  removeAt?: number;
}

/** A service as the kernel holds it now. */
export interface LiveService {
  plan: ServicePlan;
  id: number;
  seed: number;
  table: Uint32Array | null;
  backends: Map<string, LiveBackend>;
  /** The ifindexes it is restricted to, as written; null: every device. */
  devices: number[] | null;
}

/** Health by `${service key} ${backend key}`. */
export type HealthMap = ReadonlyMap<string, HealthState>;

export function healthKey(service: string, backend: string): string {
  return `${service} ${backend}`;
}

/** FNV-1a of the service key: a seed that is the same for the same service in every process. */
function seedOf(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/**
 * An ifindex no device has (ifindexes are small positive numbers): a restricted service whose
 * devices do not exist is restricted to it, and so runs nowhere rather than everywhere.
 */
const NO_DEVICE = 0x7fffffff;

/** The ifindexes of `devices` (sorted); null for null (every device). */
function resolveDevices(
  devices: readonly string[] | null,
  ifindexOf: (device: string) => number,
): number[] | null {
  if (devices === null) return null;
  const found = devices.map(ifindexOf).filter((i) => i > 0);
  return found.length > 0 ? [...new Set(found)].sort((a, b) => a - b) : [NO_DEVICE];
}

function stateOf(b: BackendPlan, health: HealthState | undefined): LbBackendState {
  if (b.drain) return 'draining';
  return b.check !== undefined && health === 'down' ? 'down' : 'active';
}

function lbConfigOf(settings: LbSettingsDoc | undefined): LbConfig {
  return {
    insertCap: settings?.insertCap ?? null,
    closingTimeoutSeconds: settings?.closingTimeout ?? 10,
    ...(settings?.ipipSource4 ? { ipipSource4: settings.ipipSource4 } : {}),
    ...(settings?.ipipSource6 ? { ipipSource6: settings.ipipSource6 } : {}),
  };
}

function sameTable(a: Uint32Array | null, b: Uint32Array): boolean {
  if (!a || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The load balancer of one instance. Not concurrent: the reconciler calls it one call at a time. */
export class LbPlane {
  readonly dir: string;
  readonly #logger: Logger;
  #object: BpfObject | null = null;
  #maps: LbMaps | null = null;
  /** The last flow count (see FLOW_COUNT_SPACING); `until` is Infinity while it runs. */
  #flowCount: { maps: LbMaps; until: number; counts: Promise<FlowCounts> } | null = null;
  #owners: BpfMap | null = null;
  #xdp: BpfProgram | null = null;
  #natTc: BpfProgram | null = null;
  #loadSig = '';
  #configSig: string | null = null;
  readonly #services = new Map<string, LiveService>();
  readonly #serviceIds = new Set<number>();
  readonly #backendIds = new Set<number>();
  #cursor = 0;
  /** The health the last apply used. */
  #health: HealthMap = new Map();
  /** lb_decap.o, while an attachment decapsulates: its program and maps, what they take. */
  #decap: { object: BpfObject; maps: LbDecapMaps; program: BpfProgram } | null = null;
  #decapAddresses = new Set<string>();
  #decapAny = false;

  constructor(dir: string, logger: Logger) {
    this.dir = dir;
    this.#logger = logger;
  }

  /** The programs the pipelines tail-call: lb_xdp at XDP, lb_nat_tc at TC ingress (NAT only). */
  get programs(): { xdp: BpfProgram | null; tcIngress: BpfProgram | null } {
    const nat = [...this.#services.values()].some((s) => s.plan.mode === 'nat');
    return { xdp: this.#xdp, tcIngress: nat ? this.#natTc : null };
  }

  get loaded(): boolean {
    return this.#maps !== null;
  }

  /** Services held now, by key. */
  get services(): ReadonlyMap<string, LiveService> {
    return this.#services;
  }

  /**
   * Makes the kernel hold `services` with `settings`: loads (or adopts the pins of) lb.o when the
   * first service comes, writes services, backends and tables, starts the drain of removed
   * backends, and unloads everything when the last service goes. Throws LbMapInvalidError,
   * LbMapAccessError, or the load's VerifierError/SyscallError.
   */
  async apply(
    services: readonly ServicePlan[],
    settings: LbSettingsDoc | undefined,
    health: HealthMap,
    ifindexOf: (device: string) => number = () => 0,
  ): Promise<void> {
    if (services.length === 0 && !this.loaded && !this.#pinned()) return;
    this.#health = health;
    this.#ensureLoaded(settings);
    const maps = this.#maps!;
    const configSig = JSON.stringify(lbConfigOf(settings));
    if (configSig !== this.#configSig) {
      maps.setConfig(lbConfigOf(settings));
      this.#configSig = configSig;
    }
    const wanted = new Set(services.map((s) => s.key));
    for (const [key, live] of this.#services) if (!wanted.has(key)) await this.#removeService(live);
    for (const plan of services) await this.#applyService(plan, health, ifindexOf);
    if (services.length === 0) this.unload();
  }

  /** What applying `services` would move, for each of `keys` the kernel holds now. */
  async predict(
    services: readonly ServicePlan[],
    keys: readonly string[],
    health: HealthMap,
  ): Promise<LbMovePrediction[]> {
    if (!this.#maps) return [];
    const plans = new Map(services.map((s) => [s.key, s]));
    const out: LbMovePrediction[] = [];
    let flows: LbFlowEntry[] | undefined;
    for (const key of keys) {
      const live = this.#services.get(key);
      if (!live) continue;
      flows ??= await this.#maps.readFlows();
      const mine = flows.filter((f) => f.serviceId === live.id);
      const plan = plans.get(key);
      if (!plan) {
        out.push({ service: key, movedShare: 1, flows: mine.length, flowsMoved: mine.length });
        continue;
      }
      const before = live.table ?? (await this.#liveTable(live));
      const { table } = this.#tableFor(live, plan, health, before);
      const prediction = predictMoves(
        mine.flatMap((f) =>
          typeof f.flow.proto === 'string'
            ? [{ flow: { ...f.flow, proto: f.flow.proto }, backend: f.backend }]
            : [],
        ),
        table,
        plan.hash,
        live.seed,
      );
      out.push({
        service: key,
        movedShare: before && before.length === table.length ? movedShare(before, table) : 1,
        flows: prediction.flows,
        flowsMoved: prediction.moved,
      });
    }
    return out;
  }

  /** The decapsulation program for attachments with `decap`; null when none has it. */
  get decapProgram(): BpfProgram | null {
    return this.#decap?.program ?? null;
  }

  /**
   * Makes lb_decap take `plan` (planDecap: 'any', the local addresses, or null to unload). Its
   * maps are not pinned: they hold only what the document says and counters, and the program
   * keeps running from the prog arrays that hold it while no daemon does.
   */
  applyDecap(plan: 'any' | Set<string> | null): void {
    if (plan === null) {
      this.#closeDecap();
      return;
    }
    if (!this.#decap) {
      const object = loadLbDecapObject();
      try {
        this.#decap = {
          object,
          maps: LbDecapMaps.open(object),
          program: object.program('lb_decap_xdp'),
        };
      } catch (error: unknown) {
        object.close();
        throw error;
      }
      this.#decapAddresses = new Set();
      this.#decapAny = false;
    }
    const { maps } = this.#decap;
    const wanted = plan === 'any' ? new Set<string>() : plan;
    for (const a of wanted) if (!this.#decapAddresses.has(a)) maps.addLocalAddress(a);
    for (const a of this.#decapAddresses) if (!wanted.has(a)) maps.removeLocalAddress(a);
    this.#decapAddresses = new Set(wanted);
    if (this.#decapAny !== (plan === 'any')) {
      maps.setDecapAny(plan === 'any');
      this.#decapAny = plan === 'any';
    }
  }

  /** lb_decap's counters (decapped, notLocal, …); null when it is not loaded. */
  decapCounters(): Record<string, number> | null {
    return this.#decap ? { ...this.#decap.maps.counters() } : null;
  }

  #closeDecap(): void {
    if (!this.#decap) return;
    this.#decap.program.close();
    this.#decap.maps.close();
    this.#decap.object.close();
    this.#decap = null;
  }

  /** Counters, and flow-table entries by service id and by backend id; null when nothing is loaded. */
  async read(): Promise<{ counters: LbCounters; flows: FlowCounts } | null> {
    const maps = this.#maps;
    if (!maps) return null;
    return { counters: await maps.readCounters(), flows: await this.#countFlows(maps) };
  }

  /** The last count while it is recent enough (FLOW_COUNT_SPACING), else a new one. */
  #countFlows(maps: LbMaps): Promise<FlowCounts> {
    const last = this.#flowCount;
    if (last && last.maps === maps && performance.now() < last.until) return last.counts;
    const started = performance.now();
    const entry = { maps, until: Infinity, counts: maps.countFlows() };
    entry.counts.then(
      () => {
        const now = performance.now();
        entry.until = now + (now - started) * FLOW_COUNT_SPACING;
      },
      () => {
        if (this.#flowCount === entry) this.#flowCount = null;
      },
    );
    this.#flowCount = entry;
    return entry.counts;
  }

  /** Date.now() when the next removed backend finishes draining; null when none drains. */
  nextRemoval(): number | null {
    let next: number | null = null;
    for (const s of this.#services.values())
      for (const b of s.backends.values())
        if (b.removeAt !== undefined && (next === null || b.removeAt < next)) next = b.removeAt;
    return next;
  }

  /** Removes the backends whose drain is over (and the flows still pinned to them). */
  async expire(now: number): Promise<string[]> {
    const gone: string[] = [];
    const ids = new Set<number>();
    for (const live of this.#services.values()) {
      let changed = false;
      for (const b of [...live.backends.values()]) {
        if (b.removeAt === undefined || b.removeAt > now) continue;
        this.#dropBackend(live, b);
        ids.add(b.id);
        gone.push(`${live.plan.key} ${b.key}`);
        changed = true;
      }
      if (changed) {
        const { table } = this.#tableFor(live, live.plan, this.#health, live.table);
        await this.#writeTable(live, table);
      }
    }
    if (ids.size > 0) await this.#maps!.deleteFlows((_svc, backend) => ids.has(backend));
    return gone;
  }

  /** Releases the fds; pins stay (a restart adopts them). Idempotent. */
  close(): void {
    this.#closeDecap();
    this.#maps?.close();
    this.#owners?.close();
    this.#xdp?.close();
    this.#natTc?.close();
    this.#object?.close();
    this.#maps = null;
    this.#owners = null;
    this.#xdp = null;
    this.#natTc = null;
    this.#object = null;
    this.#services.clear();
    this.#serviceIds.clear();
    this.#backendIds.clear();
    this.#configSig = null;
  }

  /** Closes and removes every pin: the balancer is gone (the last service went). */
  unload(): void {
    this.close();
    if (!existsSync(this.dir)) return;
    for (const name of readdirSync(this.dir)) unpin(join(this.dir, name));
  }

  #pinned(): boolean {
    return existsSync(this.dir) && readdirSync(this.dir).length > 0;
  }

  #ensureLoaded(settings: LbSettingsDoc | undefined): void {
    const flowTable = settings?.flowTable ?? 'shared';
    const flowEntries = settings?.flowEntries;
    const sig = `${flowTable}/${flowEntries ?? ''}`;
    if (this.#maps && sig === this.#loadSig) return;
    if (this.#maps) {
      // Another flow-table kind or size: the table is made anew, and its flows are lost.
      this.#logger.warn(
        { flowTable, flowEntries },
        'flow table changed: established flows re-select',
      );
      this.unload();
    }
    const options = { flowTable, ...(flowEntries ? { flowEntries } : {}), pinDir: this.dir };
    let object: BpfObject;
    try {
      object = loadLbObject(options);
    } catch (error: unknown) {
      if (!this.#pinned()) throw error;
      // Pins of another definition (flow-table size or kind, an older lb.o): start afresh.
      this.#logger.warn({ err: error }, 'pinned load-balancer maps not reusable: made anew');
      this.unload();
      object = loadLbObject(options);
    }
    this.#object = object;
    this.#maps = LbMaps.open(object);
    this.#xdp = object.program('lb_xdp');
    this.#natTc = object.program('lb_nat_tc');
    this.#owners = this.#openOwners();
    this.#loadSig = sig;
    this.#configSig = null;
    this.#readBack();
  }

  #openOwners(): BpfMap {
    const path = join(this.dir, OWNERS);
    if (existsSync(path)) {
      const pinned = openPinned(path);
      if (pinned.kind === 'map') return pinned.map;
      if (pinned.kind === 'program') pinned.program.close();
      else pinned.link.close();
      unpin(path);
    }
    const map = createMap({
      type: 'hash',
      keySize: 4,
      valueSize: 4,
      maxEntries: LB_MAX_BACKENDS,
      name: OWNERS,
    });
    map.pin(path);
    return map;
  }

  /** What the pins hold: services by key, their backends by owner (after a restart). */
  #readBack(): void {
    const maps = this.#maps!;
    const byId = new Map<number, LiveService>();
    for (const { key, service } of maps.listServices()) {
      const k = serviceKey({ vip: key.vip, port: key.port, proto: key.proto });
      // The plan is a placeholder until the first apply replaces it with the document's.
      const live: LiveService = {
        plan: {
          key: k,
          vip: key.vip,
          port: key.port,
          proto: key.proto,
          mode: service.forwardMode,
          hash: service.hashMode,
          tableSize: 0,
          udpTimeout: service.udpTimeoutSeconds ?? 0,
          tcpTimeout: service.tcpTimeoutSeconds ?? 0,
          drainTimeout: 0,
          devices: null,
          backends: [],
        },
        id: service.id,
        seed: service.seed,
        table: null,
        backends: new Map(),
        devices: service.devices?.length ? service.devices : null,
      };
      this.#services.set(k, live);
      this.#serviceIds.add(service.id);
      byId.set(service.id, live);
    }
    for (const [rawKey, rawValue] of this.#owners!.entries()) {
      const id = rawKey.readUInt32LE(0);
      const owner = byId.get((rawValue as Buffer).readUInt32LE(0));
      const be = maps.getBackend(id);
      if (!owner || !be) {
        this.#owners!.delete(rawKey);
        if (be) maps.removeBackend(id);
        continue;
      }
      const key = backendKey({ address: be.address, ...(be.port ? { port: be.port } : {}) });
      owner.backends.set(key, {
        key,
        id,
        address: be.address,
        port: be.port ?? 0,
        state: be.state ?? 'active',
      });
      this.#backendIds.add(id);
    }
  }

  async #liveTable(live: LiveService): Promise<Uint32Array | null> {
    live.table = await this.#maps!.readMaglevTable(live.id);
    return live.table;
  }

  #allocate(used: Set<number>, max: number, rotate: boolean): number {
    for (let n = 0; n < max; n++) {
      const id = rotate ? (this.#cursor + n) % max : n;
      if (used.has(id)) continue;
      if (rotate) this.#cursor = (id + 1) % max;
      used.add(id);
      return id;
    }
    throw new Error(`no free id left of ${max}`);
  }

  async #applyService(
    plan: ServicePlan,
    health: HealthMap,
    ifindexOf: (device: string) => number,
  ): Promise<void> {
    const maps = this.#maps!;
    let live = this.#services.get(plan.key);
    const fresh = !live;
    if (!live) {
      const id = this.#allocate(this.#serviceIds, LB_MAX_SERVICES, false);
      live = {
        plan,
        id,
        seed: seedOf(plan.key),
        table: null,
        backends: new Map(),
        devices: null,
      };
      this.#services.set(plan.key, live);
      maps.resetCounters([id], []);
      // Flows of an earlier service of this id (removed before a restart) must not match.
      await this.#maps!.deleteFlows((svc) => svc === id);
    }
    const before = live.plan;
    live.plan = plan;
    const devices = resolveDevices(plan.devices, ifindexOf);
    if (
      fresh ||
      before.mode !== plan.mode ||
      before.hash !== plan.hash ||
      before.udpTimeout !== plan.udpTimeout ||
      before.tcpTimeout !== plan.tcpTimeout ||
      String(devices ?? '') !== String(live.devices ?? '')
    ) {
      maps.setService(
        { vip: plan.vip, port: plan.port, proto: plan.proto },
        {
          id: live.id,
          seed: live.seed,
          hashMode: plan.hash,
          forwardMode: plan.mode,
          udpTimeoutSeconds: plan.udpTimeout,
          tcpTimeoutSeconds: plan.tcpTimeout,
          ...(devices ? { devices } : {}),
        },
      );
      live.devices = devices;
    }
    const previous = live.table ?? (fresh ? null : await this.#liveTable(live));
    const { table, states } = this.#tableFor(live, plan, health, previous);
    const now = Date.now();
    const wanted = new Set(plan.backends.map((b) => b.key));
    for (const b of plan.backends) {
      let lb = live.backends.get(b.key);
      if (!lb) {
        const id = this.#allocate(this.#backendIds, LB_MAX_BACKENDS, true);
        lb = { key: b.key, id, address: b.address, port: b.port, state: null };
        live.backends.set(b.key, lb);
        maps.resetCounters([], [id]);
        this.#owners!.update(u32Key(id), u32Key(live.id));
        this.#writeBackend(lb, states.get(b.key)!);
        continue;
      }
      lb.removeAt = undefined;
      this.#writeBackend(lb, states.get(b.key)!);
    }
    for (const lb of live.backends.values()) {
      if (wanted.has(lb.key) || lb.removeAt !== undefined) continue;
      if (plan.drainTimeout === 0) continue;
      lb.removeAt = now + plan.drainTimeout * 1000;
      this.#writeBackend(lb, 'draining');
    }
    // Removed without a drain: out of the table first, then gone.
    const dropNow = [...live.backends.values()].filter(
      (lb) => !wanted.has(lb.key) && lb.removeAt === undefined,
    );
    await this.#writeTable(live, table);
    if (dropNow.length > 0) {
      for (const lb of dropNow) this.#dropBackend(live, lb);
      const ids = new Set(dropNow.map((lb) => lb.id));
      await this.#maps!.deleteFlows((_svc, backend) => ids.has(backend));
    }
  }

  /**
   * The table `plan` gives `live` with `health`, built from `previous` (so only what must move
   * moves), and each planned backend's state.
   */
  #tableFor(
    live: LiveService,
    plan: ServicePlan,
    health: HealthMap,
    previous: Uint32Array | null,
  ): { table: Uint32Array; states: Map<string, LbBackendState> } {
    const states = new Map<string, LbBackendState>();
    const entries: { id: string; weight: number; key: number }[] = [];
    const planned = new Set<string>();
    for (const b of plan.backends) {
      planned.add(b.key);
      const state = stateOf(b, health.get(healthKey(plan.key, b.key)));
      states.set(b.key, state);
      const id = live.backends.get(b.key)?.id ?? this.#peekId(entries);
      entries.push({ id: b.key, weight: state === 'active' ? b.weight : 0, key: id });
    }
    const table = buildMaglevTable(entries, plan.tableSize, previous ? { previous } : undefined);
    return { table, states };
  }

  /** An id for a backend not allocated yet (a prediction): one no live backend has. */
  #peekId(taken: readonly { key: number }[]): number {
    const busy = new Set(taken.map((t) => t.key));
    for (let n = 0; n < LB_MAX_BACKENDS; n++) {
      const id = (this.#cursor + n) % LB_MAX_BACKENDS;
      if (!this.#backendIds.has(id) && !busy.has(id)) return id;
    }
    return LB_MAX_BACKENDS - 1;
  }

  #writeBackend(lb: LiveBackend, state: LbBackendState): void {
    if (lb.state === state) return;
    this.#maps!.setBackend(lb.id, {
      address: lb.address,
      ...(lb.port ? { port: lb.port } : {}),
      state,
    });
    lb.state = state;
  }

  async #writeTable(live: LiveService, table: Uint32Array): Promise<void> {
    if (sameTable(live.table, table)) return;
    await this.#maps!.setMaglevTable(live.id, table);
    live.table = table;
  }

  #dropBackend(live: LiveService, lb: LiveBackend): void {
    this.#maps!.removeBackend(lb.id);
    this.#owners!.delete(u32Key(lb.id));
    this.#backendIds.delete(lb.id);
    live.backends.delete(lb.key);
  }

  async #removeService(live: LiveService): Promise<void> {
    const maps = this.#maps!;
    maps.deleteService({ vip: live.plan.vip, port: live.plan.port, proto: live.plan.proto });
    maps.deleteMaglevTable(live.id);
    for (const lb of [...live.backends.values()]) this.#dropBackend(live, lb);
    await this.#maps!.deleteFlows((svc) => svc === live.id);
    this.#serviceIds.delete(live.id);
    this.#services.delete(live.plan.key);
  }
}
