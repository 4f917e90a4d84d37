// The controller: desired state (persisted in the state directory), the reconciler that makes the
// kernel hold it, devices and drift. The REST API codes against contract.ts's Controller; this is
// the one implementation.
//
// Startup: take the state directory's lock, load the state, open the data plane (which adopts
// what is pinned: programs are replaced behind their links, never detached first), watch
// devices, reconcile. close() stops watching and releases the lock, leaving the data plane
// running; destroy() detaches everything and removes the pins (`sluice down`).
//
// Every change runs through one queue: compute the new NormalConfig, validate all of it (shape,
// then the data plane's own checks, located by JSON Pointer), and — unless a dry run — persist it
// as generation+1, then reconcile. If persisting fails nothing changed. If the kernel refuses the
// new state after it was persisted (a verifier rejection, a device refusing native XDP), the
// previous document is persisted again (generation+2, so the ETag moves on and no generation
// number ever names two documents), reconciled back, and the kernel's error is rethrown.
//
// Network namespace: by default the process's own (run the daemon with `nsenter --net=/run/netns/NS`,
// not `ip netns exec`, whose private /sys hides the host's bpffs: pins would die with the daemon).
// With `netns`, the data plane and the device watcher work in that namespace from the caller's.
import { EventEmitter } from 'node:events';

import type { Logger } from 'pino';

import {
  attachmentKey,
  diffConfig,
  markPrefixesParsed,
  normalizeDocument,
  toDataplaneSpec,
  validateAddedPrefixes,
  validateConfig,
  type NormalRule,
} from './config.js';
import type {
  AttachmentStatus,
  LbBackendView,
  LbMovePrediction,
  LbServiceView,
  LbStats,
  ChangeOptions,
  ChangeResult,
  ConfigDiff,
  Controller,
  ControllerEvent,
  ControllerStatus,
  DeviceInfo,
  ReplayReport,
  Stats,
} from './contract.js';
import { Dataplane } from './dataplane/dataplane.js';
import { formatPrefix, parsePrefix } from './dataplane/model.js';
import {
  AttachmentSchema,
  BackendSchema,
  RuleSchema,
  ServiceSchema,
  type AttachmentDoc,
  type BackendDoc,
  type ServiceDoc,
  type ConfigDoc,
  type HookName,
  type NormalConfig,
  type RuleDoc,
} from './document.js';
import { checkShape } from './config.js';
import { ConflictError, NotFoundError, PreconditionFailedError } from './errors.js';
import { HealthChecker, type HealthTarget } from './lb/health.js';
import { parseCheckSpec } from './lb/health-spec.js';
import { planServices, type ServicePlan } from './lb/lb-config.js';
import { healthKey } from './lb/lb-plane.js';
import { NeighbourKeeper } from './lb/neighbours.js';
import { tableShares } from './lb/maglev.js';
import { backendKey, parseBackendRef, parseServiceKey, serviceKey } from './lb/service-key.js';
import { openDeviceWatcher, type DeviceChange, type DeviceWatcher } from './netlink/devices.js';
import { Reconciler, type SetDelta } from './reconciler.js';
import type { SetEdit } from './journal.js';
import { StateStore } from './store.js';

export { toDataplaneSpec } from './config.js';

export interface OpenControllerOptions {
  stateDir: string;
  pinDir: string;
  logger: Logger;
  /** Devices to watch; default an rtnetlink watcher of the namespace. */
  devices?: DeviceWatcher;
  /** Network namespace (ip netns name) of the devices; default the process's own. */
  netns?: string;
  /** How often drift is looked for, in ms (default 1000); 0 turns the timer off. */
  driftIntervalMs?: number;
}

/** What a change computes: the new document, and what it knows of itself. */
interface Computed {
  config: NormalConfig;
  nextRuleId?: number;
  /** A set change the reconciler may apply incrementally. */
  delta?: SetDelta;
  /** The diff, when the change knows it (so the documents need not be compared). */
  diff?: ConfigDiff;
  /** How a set's prefixes changed, for the state journal (so the set is not written whole). */
  edit?: SetEdit;
}

/**
 * After a group commit, the clients it answered send their next changes: the first within a
 * millisecond or two, the rest one after another as the main thread parses them. Gather them
 * (up to GROUP_GATHER_FIRST_MS for the first, then GROUP_GATHER_GAP_MS after each, at most
 * GROUP_GATHER_MAX_MS in all) so that they join one group instead of trickling in as many: a
 * group costs about the same for one change as for thirty.
 */
const GROUP_GATHER_FIRST_MS = 4;
const GROUP_GATHER_GAP_MS = 1;
const GROUP_GATHER_MAX_MS = 12;
/** #expectedChanges remembers this many groups, for this long. */
const GROUP_MEMORY = 4;
const GROUP_MEMORY_MS = 200;

/** A change waiting for its turn in #drain. */
interface PendingChange {
  options: ChangeOptions;
  compute: (c: Committed) => Computed | Promise<Computed>;
  resolve: (result: ChangeResult) => void;
  reject: (error: unknown) => void;
  /** Retried after its group failed in the kernel: committed by itself. */
  alone: boolean;
}

interface Committed {
  config: NormalConfig;
  generation: number;
  nextRuleId: number;
}

/** The controller daemon's core. */
export class SluiceController implements Controller {
  readonly events = new EventEmitter();
  #ready = false;
  #committed: Committed;
  #queue: Promise<unknown> = Promise.resolve();
  readonly #pending: PendingChange[] = [];
  #draining = false;
  /** Set while #drain gathers changes: called on each change that arrives meanwhile. */
  #gathered: (() => void) | undefined;
  /** Changes answered by each of the last GROUP_MEMORY groups (see #expectedChanges). */
  #answered: number[] = [];
  #answeredAt = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  readonly #onDevice: (change: DeviceChange) => void;
  /** Health checks of the load balancer's backends (daemon-run, in the devices' namespace). */
  readonly #health: HealthChecker;
  /** Keeps the backends' neighbour entries resolved (lb_xdp reads them through the FIB). */
  readonly #neighbours: NeighbourKeeper;

  private constructor(
    readonly stateDir: string,
    readonly pinDir: string,
    private readonly logger: Logger,
    private readonly store: StateStore,
    private readonly reconciler: Reconciler,
    private readonly watcher: DeviceWatcher,
    committed: Committed,
    /**
     * False when the devices are in another namespace than this process (OpenControllerOptions
     * `netns`, for tests): probes from here would leave through this namespace's routes, so
     * health checks and neighbour probes do not run (backends count as up).
     */
    private readonly probing: boolean,
  ) {
    this.#committed = committed;
    this.#health = new HealthChecker({ logger });
    this.#neighbours = new NeighbourKeeper(logger);
    this.#health.on('transition', (t) => {
      const cut = t.key.indexOf(' ');
      const service = t.key.slice(0, cut);
      const backend = t.key.slice(cut + 1);
      this.#emit({ type: 'health', service, backend, from: t.from, to: t.to, reason: t.reason });
      this.reconciler
        .setHealth(service, backend, t.to)
        .catch((error: unknown) =>
          this.logger.error({ err: error, service, backend }, 'applying a health change failed'),
        );
    });
    this.events.setMaxListeners(0);
    this.reconciler.on('event', (event: ControllerEvent) => this.#emit(event));
    this.#onDevice = (change) => {
      this.#emit({
        type: 'device',
        action: change.action,
        name: change.device.name,
        ifindex: change.device.ifindex,
        ...(change.oldName !== undefined ? { oldName: change.oldName } : {}),
      });
      void this.reconciler.check(`device ${change.action}: "${change.device.name}"`);
    };
  }

  /**
   * Opens the controller: lock and load the state directory, adopt the pinned data plane,
   * watch devices, reconcile. Throws StateLockedError, StateCorruptError, NetlinkError, or the
   * data plane's error when the persisted state cannot be applied (the lock is released again).
   */
  static async open(options: OpenControllerOptions): Promise<SluiceController> {
    const log = options.logger;
    const store = StateStore.open(options.stateDir);
    let dp: Dataplane | undefined;
    let watcher: DeviceWatcher | undefined;
    const t0 = performance.now();
    const phases: Record<string, number> = {};
    const phase = (name: string): void => {
      phases[name] = Math.round(performance.now() - t0);
    };
    try {
      const loaded = await store.load();
      phase('stateLoaded');
      dp = await Dataplane.open({ dir: options.pinDir, netns: options.netns });
      phase('pinsAdopted');
      for (const p of dp.adoptProblems)
        log.warn({ attachment: p.attachment, err: p.error }, 'pinned attachment not adopted');
      watcher = options.devices ?? (await openDeviceWatcher({ netns: options.netns }));
      const reconciler = new Reconciler({ dataplane: dp, logger: log, netns: options.netns });
      const controller = new SluiceController(
        options.stateDir,
        options.pinDir,
        log,
        store,
        reconciler,
        watcher,
        loaded,
        options.netns === undefined,
      );
      watcher.on('change', controller.#onDevice);
      phase('devicesListed');
      await reconciler.reconcile(loaded.config, loaded.generation);
      controller.#syncHealth(loaded.config);
      phase('reconciled');
      const every = options.driftIntervalMs ?? 1000;
      if (every > 0) {
        controller.#timer = setInterval(() => void reconciler.check('periodic'), every);
        controller.#timer.unref();
      }
      controller.#ready = true;
      log.info(
        { generation: loaded.generation, attachments: reconciler.status(), ms: phases },
        'controller ready',
      );
      return controller;
    } catch (error: unknown) {
      if (watcher && !options.devices) watcher.close();
      dp?.close();
      store.close();
      throw error;
    }
  }

  get ready(): boolean {
    return this.#ready;
  }

  /** Stops watching and releases the state directory; the data plane keeps running, pinned. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#ready = false;
    clearInterval(this.#timer);
    this.watcher.off('change', this.#onDevice);
    await this.#serial(async () => undefined);
    await this.reconciler.check('close').catch(() => undefined);
    // The next start then replays no journal. Not needed for safety: the journal is durable.
    await this.store
      .compact()
      .catch((error: unknown) => this.logger.warn({ err: error }, 'compacting the state failed'));
    this.watcher.close();
    await this.#health.close();
    this.#neighbours.close();
    this.reconciler.close();
    this.reconciler.dataplane.close();
    this.store.close();
  }

  /** Detaches every attachment, removes the pins, and closes (`sluice down`). The state stays. */
  async destroy(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#ready = false;
    clearInterval(this.#timer);
    this.watcher.off('change', this.#onDevice);
    await this.#serial(async () => undefined);
    this.watcher.close();
    await this.#health.close();
    this.#neighbours.close();
    this.reconciler.close();
    this.reconciler.lb.unload();
    await this.reconciler.dataplane.destroy();
    this.store.close();
  }

  config(): { config: NormalConfig; generation: number } {
    return { config: this.#committed.config, generation: this.#committed.generation };
  }

  replaceConfig(
    doc: ConfigDoc,
    options: ChangeOptions & { ifGeneration?: number } = {},
  ): Promise<ChangeResult> {
    return this.#change(options, (c) => {
      if (options.ifGeneration !== undefined && options.ifGeneration !== c.generation) {
        throw new PreconditionFailedError(
          `replace config: generation ${options.ifGeneration} is not the current one (${c.generation})`,
          c.generation,
        );
      }
      return normalizeDocument(doc, c.config, c.nextRuleId);
    });
  }

  attach(attachment: AttachmentDoc, options: ChangeOptions = {}): Promise<ChangeResult> {
    return this.#change(options, (c) => {
      checkShape(AttachmentSchema, attachment);
      const key = attachmentKey(attachment);
      const attachments = c.config.attachments.filter((a) => attachmentKey(a) !== key);
      const at = c.config.attachments.findIndex((a) => attachmentKey(a) === key);
      if (at >= 0) attachments.splice(at, 0, attachment);
      else attachments.push(attachment);
      return { config: { ...c.config, attachments } };
    });
  }

  detach(device: string, hook?: HookName, options: ChangeOptions = {}): Promise<ChangeResult> {
    return this.#change(options, (c) => {
      const gone = (a: AttachmentDoc): boolean =>
        a.device === device && (hook === undefined || (a.hook ?? 'xdp') === hook);
      if (!c.config.attachments.some(gone)) {
        throw new NotFoundError(
          `detach "${device}"${hook ? ` ${hook}` : ''}: nothing is attached there`,
        );
      }
      return {
        config: { ...c.config, attachments: c.config.attachments.filter((a) => !gone(a)) },
      };
    });
  }

  putSet(
    name: string,
    prefixes: Iterable<string> | AsyncIterable<string>,
    options: ChangeOptions & { create?: boolean } = {},
  ): Promise<ChangeResult & { count: number }> {
    // Read the input before queueing: a slow upload must not hold up other changes.
    const collected = collectLines(prefixes);
    // The change awaits it later: a body that fails before then (a bad NDJSON line) must not be
    // an unhandled rejection, which ends the process.
    collected.catch(() => undefined);
    let count = 0;
    return this.#change(options, async (c) => {
      const list = await collected;
      count = list.length;
      const sets = [...c.config.sets];
      const at = sets.findIndex((s) => s.name === name);
      // Checked in the change's turn, not before it: two creates of one name cannot both pass.
      if (at >= 0 && options.create) throw new ConflictError(`set "${name}" already exists`);
      if (at >= 0) sets[at] = { name, prefixes: list };
      else sets.push({ name, prefixes: list });
      return { config: { ...c.config, sets } };
    }).then((result) => ({ ...result, count }));
  }

  addPrefixes(
    name: string,
    prefixes: string[],
    options: ChangeOptions = {},
  ): Promise<ChangeResult> {
    return this.#change(options, (c) => {
      const at = this.#setIndex(c.config, name, 'add prefixes to');
      const set = c.config.sets[at];
      const wanted = [...new Set(prefixes.map((p) => p.trim()).filter((p) => p !== ''))];
      // A few prefixes: scanning beats building a set of a million.
      const have = wanted.length <= 64 ? null : new Set(set.prefixes);
      const add = wanted.filter((p) => !(have ? have.has(p) : set.prefixes.includes(p)));
      const whole = add.length > 0 ? [...set.prefixes, ...add] : set.prefixes;
      validateAddedPrefixes(name, at, add, whole, set.prefixes.length);
      const sets = [...c.config.sets];
      sets[at] = { name, prefixes: whole };
      return {
        config: { ...c.config, sets },
        delta: { name, add },
        edit: { name, before: set.prefixes, after: whole, add },
        diff: setsChanged(add.length > 0 ? [{ name, added: add.length, removed: 0 }] : []),
      };
    });
  }

  removePrefixes(
    name: string,
    prefixes: string[],
    options: ChangeOptions = {},
  ): Promise<ChangeResult> {
    return this.#change(options, (c) => {
      const at = this.#setIndex(c.config, name, 'remove prefixes from');
      const set = c.config.sets[at];
      const drop = new Set<string>();
      for (const p of prefixes) for (const form of prefixForms(p.trim())) drop.add(form);
      const removed = set.prefixes.filter((p) => drop.has(p));
      const sets = [...c.config.sets];
      if (removed.length > 0) {
        const whole = set.prefixes.filter((p) => !drop.has(p));
        markPrefixesParsed(whole);
        sets[at] = { name, prefixes: whole };
      }
      return {
        config: { ...c.config, sets },
        delta: { name, remove: removed },
        edit: { name, before: set.prefixes, after: sets[at].prefixes, remove: removed },
        diff: setsChanged(removed.length > 0 ? [{ name, added: 0, removed: removed.length }] : []),
      };
    });
  }

  removeSet(name: string, options: ChangeOptions = {}): Promise<ChangeResult> {
    return this.#change(options, (c) => {
      this.#setIndex(c.config, name, 'remove');
      const users = c.config.rules.filter((r) => r.srcSet === name || r.dstSet === name);
      if (users.length > 0) {
        throw new ConflictError(
          `remove set "${name}": rule${users.length > 1 ? 's' : ''} ${users.map((r) => `"${r.id}"`).join(', ')} use${users.length > 1 ? '' : 's'} it; remove ${users.length > 1 ? 'them' : 'it'} first`,
        );
      }
      return { config: { ...c.config, sets: c.config.sets.filter((s) => s.name !== name) } };
    });
  }

  addRule(rule: RuleDoc, options: ChangeOptions = {}): Promise<ChangeResult & { rule: RuleDoc }> {
    let added: NormalRule | undefined;
    return this.#change(options, (c) => {
      checkShape(RuleSchema, rule);
      let nextRuleId = c.nextRuleId;
      let id = rule.id;
      const taken = ruleIds(c.config.rules);
      if (id !== undefined) {
        if (taken.has(id)) throw new ConflictError(`add rule "${id}": a rule with that id exists`);
      } else {
        do id = `r${nextRuleId++}`;
        while (taken.has(id));
      }
      added = { ...rule, id };
      const rules = [...c.config.rules, added];
      // The ids move on with the rules: the next add in a group asks for them again.
      ruleIdsOf.delete(c.config.rules);
      ruleIdsOf.set(rules, taken.add(id));
      return {
        config: { ...c.config, rules },
        nextRuleId,
        diff: { ...emptyDiff(), rules: { added: [id], removed: [], changed: [] } },
      };
    }).then((result) => ({ ...result, rule: added! }));
  }

  removeRule(id: string, options: ChangeOptions = {}): Promise<ChangeResult> {
    return this.#change(options, (c) => {
      if (!c.config.rules.some((r) => r.id === id))
        throw new NotFoundError(`remove rule "${id}": no such rule`);
      return {
        config: { ...c.config, rules: c.config.rules.filter((r) => r.id !== id) },
        diff: { ...emptyDiff(), rules: { added: [], removed: [id], changed: [] } },
      };
    });
  }

  addService(service: ServiceDoc, options: ChangeOptions = {}): Promise<ChangeResult> {
    return this.#change(options, (c) => {
      checkShape(ServiceSchema, service);
      const key = serviceKey(service);
      const services = c.config.services ?? [];
      if (services.some((s) => serviceKey(s) === key))
        throw new ConflictError(
          `add service ${key}: it exists; change its backends with \`sluice lb backend\``,
        );
      return { config: { ...c.config, services: [...services, service] } };
    });
  }

  removeService(key: string, options: ChangeOptions = {}): Promise<ChangeResult> {
    return this.#change(options, (c) => {
      const at = serviceIndex(c.config, key, 'remove');
      const services = (c.config.services ?? []).filter((_, i) => i !== at);
      const config: NormalConfig = { ...c.config, services };
      if (services.length === 0) delete config.services;
      return { config };
    });
  }

  addBackend(
    service: string,
    backend: BackendDoc,
    options: ChangeOptions = {},
  ): Promise<ChangeResult> {
    return this.#change(options, (c) => {
      checkShape(BackendSchema, backend);
      const at = serviceIndex(c.config, service, 'add a backend to');
      const svc = c.config.services![at];
      const key = backendKey(backend);
      if ((svc.backends ?? []).some((b) => backendKey(b) === key))
        throw new ConflictError(
          `add backend ${key} to service ${serviceKey(svc)}: it exists; change it with \`sluice lb backend set\``,
        );
      return {
        config: withService(c.config, at, { ...svc, backends: [...(svc.backends ?? []), backend] }),
      };
    });
  }

  setBackend(
    service: string,
    backend: string,
    patch: { weight?: number; drain?: boolean; check?: string | null },
    options: ChangeOptions = {},
  ): Promise<ChangeResult> {
    return this.#change(options, (c) => {
      const at = serviceIndex(c.config, service, 'change a backend of');
      const svc = c.config.services![at];
      const j = backendIndex(svc, backend, 'change');
      const next: BackendDoc = { ...svc.backends![j] };
      if (patch.weight !== undefined) next.weight = patch.weight;
      if (patch.drain !== undefined) {
        if (patch.drain) next.drain = true;
        else delete next.drain;
      }
      if (patch.check === null) delete next.check;
      else if (patch.check !== undefined) next.check = patch.check;
      checkShape(BackendSchema, next);
      const backends = [...svc.backends!];
      backends[j] = next;
      return { config: withService(c.config, at, { ...svc, backends }) };
    });
  }

  removeBackend(
    service: string,
    backend: string,
    options: ChangeOptions = {},
  ): Promise<ChangeResult> {
    return this.#change(options, (c) => {
      const at = serviceIndex(c.config, service, 'remove a backend of');
      const svc = c.config.services![at];
      const j = backendIndex(svc, backend, 'remove');
      return {
        config: withService(c.config, at, {
          ...svc,
          backends: svc.backends!.filter((_, i) => i !== j),
        }),
      };
    });
  }

  async lbServices(key?: string): Promise<LbServiceView[]> {
    const config = this.#committed.config;
    let plans = planServices(config);
    if (key !== undefined) {
      const at = serviceIndex(config, key, 'show');
      plans = [plans[at]];
    }
    return this.#lbViews(plans, await this.reconciler.readLb());
  }

  /** The views of `plans` from one read of the balancer's counters and flow table. */
  #lbViews(
    plans: readonly ServicePlan[],
    read: Awaited<ReturnType<Reconciler['readLb']>>,
  ): LbServiceView[] {
    const live = this.reconciler.lb.services;
    const serviceFlows = read?.flows.services ?? new Map<number, number>();
    const backendFlows = read?.flows.backends ?? new Map<number, number>();
    const devices = this.reconciler
      .status()
      .filter((a) => a.hook === 'xdp' && a.state === 'attached')
      .map((a) => `${a.device}@xdp`);
    const zero = { packets: 0, bytes: 0, newFlows: 0 };
    return plans.map((plan): LbServiceView => {
      const l = live.get(plan.key);
      const sc = (l && read?.counters.services.get(l.id)) || zero;
      const ids = l ? [...l.backends.values()].map((b) => b.id) : [];
      const shares = l?.table ? tableShares(l.table, ids) : new Map<number, number>();
      const view = (b: {
        key: string;
        address: string;
        port: number;
        weight: number;
        drain: boolean;
        check?: string;
      }): LbBackendView => {
        const lb = l?.backends.get(b.key);
        const bc = (lb && read?.counters.backends.get(lb.id)) || zero;
        const health =
          b.check === undefined
            ? 'unchecked'
            : (this.#health.state(healthKey(plan.key, b.key)) ?? 'unknown');
        return {
          address: b.address,
          port: b.port || plan.port,
          weight: b.weight,
          drain: b.drain,
          check: b.check ?? null,
          health,
          state: lb?.state ?? (b.drain ? 'draining' : 'active'),
          tableShare: lb ? (shares.get(lb.id) ?? 0) : 0,
          trafficShare: sc.packets > 0 ? bc.packets / sc.packets : 0,
          packets: bc.packets,
          bytes: bc.bytes,
          newFlows: bc.newFlows,
          activeFlows: lb ? (backendFlows.get(lb.id) ?? 0) : 0,
        };
      };
      const planned = new Set(plan.backends.map((b) => b.key));
      const leaving = l
        ? [...l.backends.values()]
            .filter((b) => !planned.has(b.key))
            .map((b) => ({ key: b.key, address: b.address, port: b.port, weight: 0, drain: true }))
        : [];
      return {
        key: plan.key,
        vip: plan.vip,
        port: plan.port,
        proto: plan.proto,
        mode: plan.mode,
        hash: plan.hash,
        tableSize: plan.tableSize,
        devices: !l
          ? []
          : plan.devices
            ? devices.filter((d) => plan.devices!.includes(d.slice(0, d.lastIndexOf('@'))))
            : devices,
        packets: sc.packets,
        bytes: sc.bytes,
        newFlows: sc.newFlows,
        activeFlows: l ? (serviceFlows.get(l.id) ?? 0) : 0,
        backends: [...plan.backends.map(view), ...leaving.map(view)],
      };
    });
  }

  async lbStats(): Promise<LbStats | null> {
    const decap = this.reconciler.lb.decapCounters();
    if (!this.#committed.config.services?.length && !decap) return null;
    const read = await this.reconciler.readLb();
    return {
      events: { ...(read?.counters.events ?? {}) },
      fibFailures: read?.counters.fibFailures ?? {},
      services: this.#lbViews(planServices(this.#committed.config), read),
      ...(decap ? { decap } : {}),
    };
  }

  /** Health checks for every backend of `config` that has one; neighbour probes for all. */
  #syncHealth(config: NormalConfig): void {
    if (!this.probing) return;
    const targets: HealthTarget[] = [];
    const addresses = new Set<string>();
    for (const plan of planServices(config)) {
      for (const b of plan.backends) {
        addresses.add(b.address);
        if (b.check === undefined) continue;
        targets.push({
          key: healthKey(plan.key, b.key),
          address: b.address,
          port: b.port || plan.port || 1,
          spec: parseCheckSpec(b.check),
        });
      }
    }
    this.#health.set(targets);
    this.#neighbours.set(addresses);
  }

  devices(): Promise<DeviceInfo[]> {
    return this.watcher.list();
  }

  status(): ControllerStatus {
    const attachments: AttachmentStatus[] = this.reconciler.status();
    return {
      desiredGeneration: this.#committed.generation,
      appliedGeneration: this.reconciler.appliedGeneration,
      ready: this.#ready,
      stateDir: this.stateDir,
      pinDir: this.pinDir,
      attachments,
    };
  }

  stats(device?: string): Stats {
    if (
      device !== undefined &&
      !this.#committed.config.attachments.some((a) => a.device === device)
    )
      throw new NotFoundError(`stats of "${device}": no attachment is configured on it`);
    const counters = this.reconciler.dataplane
      .counters()
      .filter((c) => device === undefined || c.device === device);
    return { devices: counters.map((c) => ({ name: c.device, ...c })) };
  }

  async replay(doc: ConfigDoc | undefined, pcap: Uint8Array): Promise<ReplayReport> {
    const running = this.#committed;
    const candidate =
      doc === undefined
        ? running.config
        : normalizeDocument(doc, running.config, running.nextRuleId).config;
    if (doc !== undefined) validateConfig(candidate);
    const { replayPcap } = await import('./replay.js');
    const strip = (c: NormalConfig) => {
      const { sets, attachments } = toDataplaneSpec(c);
      return { sets, attachments };
    };
    return replayPcap(strip(candidate), strip(running.config), pcap);
  }

  #emit(event: ControllerEvent): void {
    this.events.emit('event', event);
  }

  #setIndex(config: NormalConfig, name: string, what: string): number {
    const at = config.sets.findIndex((s) => s.name === name);
    if (at < 0) throw new NotFoundError(`${what} set "${name}": no such set`);
    return at;
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /**
   * One change: `compute` derives the new document from the committed one; validated, then
   * (unless a dry run) persisted and reconciled. See the file's header for failures.
   *
   * Changes that arrive while one is being applied are committed together (group commit): each is
   * computed and validated on top of the one before, in arrival order, and gets its own
   * generation; then one write persists them all and one reconcile applies them. A change that
   * fails validation is refused alone. If the kernel refuses a group, the previous state is
   * restored and each of its changes is tried again on its own, so only the culprit fails.
   */
  #change(
    options: ChangeOptions,
    compute: (c: Committed) => Computed | Promise<Computed>,
  ): Promise<ChangeResult> {
    return new Promise<ChangeResult>((resolve, reject) => {
      this.#pending.push({ options, compute, resolve, reject, alone: false });
      this.#gathered?.();
      if (this.#draining) return;
      this.#draining = true;
      void this.#serial(() => this.#drain());
    });
  }

  /** Commits queued changes, a group at a time, until none is left. */
  async #drain(): Promise<void> {
    try {
      for (;;) {
        const expected = this.#expectedChanges();
        if (this.#pending.length < expected) await this.#gather(expected);
        if (this.#pending.length === 0) break;
        // A change marked `alone` (retried after its group failed) is committed by itself.
        const alone = this.#pending[0].alone;
        const end = alone ? 1 : this.#pending.findIndex((p) => p.alone);
        const group = this.#pending.splice(0, end < 0 ? this.#pending.length : Math.max(end, 1));
        await this.#commitGroup(group);
        this.#answered.push(group.length + this.#pending.length);
        if (this.#answered.length > GROUP_MEMORY) this.#answered.shift();
        this.#answeredAt = performance.now();
      }
    } finally {
      this.#draining = false;
    }
  }

  /**
   * How many changes to gather for the next group: as many as the last few groups answered (the
   * clients that keep changes coming; a group that went out small does not shrink the next one),
   * or just the one at hand after a quiet spell.
   */
  #expectedChanges(): number {
    if (performance.now() - this.#answeredAt > GROUP_MEMORY_MS) this.#answered = [];
    return Math.max(1, ...this.#answered);
  }

  /**
   * Waits until `count` changes are pending, or the clients stop sending: GROUP_GATHER_FIRST_MS
   * while none is pending, GROUP_GATHER_GAP_MS after the last arrival, GROUP_GATHER_MAX_MS in
   * all. #change calls #gathered on each arrival.
   */
  #gather(count: number): Promise<void> {
    return new Promise((resolve) => {
      const deadline = performance.now() + GROUP_GATHER_MAX_MS;
      let timer: NodeJS.Timeout | undefined;
      const done = (): void => {
        clearTimeout(timer);
        this.#gathered = undefined;
        resolve();
      };
      const wait = (): void => {
        clearTimeout(timer);
        const ms = this.#pending.length > 0 ? GROUP_GATHER_GAP_MS : GROUP_GATHER_FIRST_MS;
        timer = setTimeout(done, Math.max(0, Math.min(ms, deadline - performance.now())));
      };
      this.#gathered = () => (this.#pending.length >= count ? done() : wait());
      wait();
    });
  }

  async #commitGroup(group: PendingChange[]): Promise<void> {
    if (this.#closed) {
      for (const p of group) p.reject(new Error('the controller is closed'));
      return;
    }
    const t0 = performance.now();
    const before = this.#committed;
    let current = before;
    const accepted: {
      change: PendingChange;
      diff: ConfigDiff;
      delta?: SetDelta;
      edit?: SetEdit;
      lb?: LbMovePrediction[];
    }[] = [];
    for (const change of group) {
      try {
        const next = await change.compute(current);
        // In a group, the whole document is validated once, after the last change (below).
        if (group.length === 1 || change.options.dryRun) validateConfig(next.config);
        const diff: ConfigDiff = next.diff ?? diffConfig(current.config, next.config);
        const moving = diff.services ? [...diff.services.changed, ...diff.services.removed] : [];
        const lb =
          moving.length > 0 ? await this.reconciler.predictLb(next.config, moving) : undefined;
        if (change.options.dryRun) {
          change.resolve({
            generation: current.generation,
            diff,
            applied: false,
            ...(lb?.length ? { lb } : {}),
          });
          continue;
        }
        current = {
          config: next.config,
          generation: current.generation + 1,
          nextRuleId: next.nextRuleId ?? current.nextRuleId,
        };
        accepted.push({ change, diff, delta: next.delta, edit: next.edit, lb });
      } catch (error: unknown) {
        change.reject(error);
      }
    }
    if (accepted.length === 0) return;
    if (group.length > 1) {
      try {
        validateConfig(current.config);
      } catch {
        // Some change of the group is invalid: each again by itself, so only that one fails.
        this.#pending.unshift(...accepted.map((a) => ({ ...a.change, alone: true })));
        return;
      }
    }
    const t1 = performance.now();
    // A change of rules or attachments: the journal write waits on the disk while the kernel is
    // changed, both done before any change is answered; should the disk refuse, the kernel goes
    // back to what the disk holds. A change of sets may write a file of a million lines, which
    // would only compete with the kernel's writes: it goes to disk first.
    const save = (): Promise<void> =>
      this.store.save(
        current,
        accepted.flatMap((a) => (a.edit ? [a.edit] : [])),
      );
    // One set change alone may go incrementally; a group is applied whole.
    const delta = accepted.length === 1 ? accepted[0].delta : undefined;
    const apply = (): Promise<unknown> =>
      this.reconciler.reconcile(current.config, current.generation, delta);
    const sideBySide = accepted.every(
      ({ diff: { sets } }) => sets.added.length + sets.changed.length + sets.removed.length === 0,
    );
    let saved: PromiseSettledResult<void>;
    let applied: PromiseSettledResult<unknown> | undefined;
    if (sideBySide) [saved, applied] = await Promise.allSettled([save(), apply()]);
    else {
      [saved] = await Promise.allSettled([save()]);
      if (saved.status === 'fulfilled') [applied] = await Promise.allSettled([apply()]);
    }
    const t2 = performance.now();
    if (saved.status === 'rejected') {
      if (applied)
        await this.reconciler
          .reconcile(before.config, before.generation)
          .catch((error: unknown) =>
            this.logger.error(
              { err: error },
              'restoring the data plane after a refused write failed',
            ),
          );
      for (const a of accepted) a.change.reject(saved.reason);
      return;
    }
    this.#committed = current;
    if (applied?.status === 'rejected') {
      await this.#rollBack(before, current, applied.reason);
      if (accepted.length === 1) accepted[0].change.reject(applied.reason);
      else {
        // Find the culprit: each change again, by itself, on the restored state.
        this.#pending.unshift(...accepted.map((a) => ({ ...a.change, alone: true })));
      }
      return;
    }
    const ms = (a: number, b: number): number => Math.round(b - a);
    this.logger.debug(
      {
        generation: current.generation,
        changes: accepted.length,
        ms: { validate: ms(t0, t1), persistAndReconcile: ms(t1, t2) },
      },
      'change applied',
    );
    if (current.config.services !== before.config.services) this.#syncHealth(current.config);
    let generation = before.generation;
    for (const a of accepted) {
      generation += 1;
      this.#emit({ type: 'config', generation, diff: a.diff });
      a.change.resolve({
        generation,
        diff: a.diff,
        applied: true,
        ...(a.lb?.length ? { lb: a.lb } : {}),
      });
    }
  }

  /** Persists and reconciles `before` again after the kernel refused `failed`. */
  async #rollBack(before: Committed, failed: Committed, error: unknown): Promise<void> {
    this.logger.error(
      { err: error, generation: failed.generation },
      'the kernel refused the new desired state; restoring the previous one',
    );
    const restored: Committed = {
      config: before.config,
      generation: failed.generation + 1,
      nextRuleId: failed.nextRuleId,
    };
    try {
      await this.store.save(restored);
      this.#committed = restored;
      this.#syncHealth(restored.config);
      await this.reconciler.reconcile(restored.config, restored.generation);
    } catch (again: unknown) {
      this.logger.error({ err: again }, 'restoring the previous desired state failed');
    }
  }
}

/** The ids of a rules array, by the array (the controller never changes one, it makes another). */
const ruleIdsOf = new WeakMap<readonly NormalRule[], Set<string>>();

/** The ids of `rules`, built once per array (or moved on from the array it extends). */
function ruleIds(rules: readonly NormalRule[]): Set<string> {
  let ids = ruleIdsOf.get(rules);
  if (ids === undefined) {
    ids = new Set(rules.map((r) => r.id));
    ruleIdsOf.set(rules, ids);
  }
  return ids;
}

/** The index of the service `text` ("VIP:PORT[/PROTO]") names in `config`; NotFoundError. */
function serviceIndex(config: NormalConfig, text: string, what: string): number {
  const key = serviceKey(parseServiceKey(text));
  const at = (config.services ?? []).findIndex((s) => serviceKey(s) === key);
  if (at < 0) throw new NotFoundError(`${what} service ${key}: no such service`);
  return at;
}

/**
 * The index of the backend `text` names in `service`: "ADDR:PORT" exactly, "ADDR" the one backend
 * of that address (NotFoundError when none, ConflictError when several ports share it).
 */
function backendIndex(service: ServiceDoc, text: string, what: string): number {
  const ref = parseBackendRef(text);
  const backends = service.backends ?? [];
  const key = backendKey(ref);
  let found = backends.flatMap((b, i) => (backendKey(b) === key ? [i] : []));
  if (found.length === 0 && ref.port === undefined)
    found = backends.flatMap((b, i) => (backendKey({ address: b.address }) === key ? [i] : []));
  if (found.length === 0)
    throw new NotFoundError(
      `${what} backend ${key} of service ${serviceKey(service)}: no such backend`,
    );
  if (found.length > 1)
    throw new ConflictError(
      `${what} backend ${key} of service ${serviceKey(service)}: several backends have that address; name one as ADDR:PORT`,
    );
  return found[0];
}

/** `config` with service `at` replaced by `service`. */
function withService(config: NormalConfig, at: number, service: ServiceDoc): NormalConfig {
  const services = [...(config.services ?? [])];
  services[at] = service;
  return { ...config, services };
}

/** A diff that changes nothing. */
function emptyDiff(): ConfigDiff {
  return {
    attachments: { added: [], removed: [], changed: [] },
    sets: { added: [], removed: [], changed: [] },
    rules: { added: [], removed: [], changed: [] },
  };
}

/** A diff whose only changes are prefixes of sets. */
function setsChanged(changed: { name: string; added: number; removed: number }[]): ConfigDiff {
  const diff = emptyDiff();
  diff.sets.changed.push(...changed);
  return diff;
}

/** Reads lines (or items) into a list: trimmed, blank lines and "#" comments dropped. */
async function collectLines(items: Iterable<string> | AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  const push = (raw: string): void => {
    // An item may hold several lines (a chunk of a file).
    if (raw.includes('\n')) {
      for (const line of raw.split('\n')) push(line);
      return;
    }
    const hash = raw.indexOf('#');
    const text = (hash >= 0 ? raw.slice(0, hash) : raw).trim();
    if (text !== '') out.push(text);
  };
  if (Symbol.asyncIterator in items) for await (const item of items) push(item);
  else for (const item of items) push(item);
  return out;
}

/** The spellings of a prefix a set may hold it under: as given, canonical, and bare for a host. */
function prefixForms(text: string): string[] {
  const forms = [text];
  try {
    const p = parsePrefix(text);
    const canonical = formatPrefix(p);
    forms.push(canonical);
    if (p.len === (p.family === 4 ? 32 : 128))
      forms.push(canonical.slice(0, canonical.indexOf('/')));
  } catch {
    // not a prefix: only the text itself can match
  }
  return forms;
}
