// An in-memory Controller for API-layer tests: keeps the desired state, validates it with the
// document schema and the data plane's own validators, and throws the controller's typed errors.
// Nothing touches the kernel; counters are whatever a test sets. Load-balanced services live in the
// document like the rest; their views are computed from it (a backend's table share is its share
// of the weights that take new flows), with counters, health and flow counts a test may set.
import { EventEmitter } from 'node:events';

import { Value } from 'typebox/value';

import type {
  AttachmentStatus,
  ChangeOptions,
  ChangeResult,
  ConfigDiff,
  Controller,
  ControllerEvent,
  ControllerStatus,
  DeviceInfo,
  LbBackendView,
  LbMovePrediction,
  LbServiceView,
  LbStats,
  ReplayReport,
  Stats,
} from '../../controller/contract.js';
import {
  ConfigSchema,
  DOCUMENT_VERSION,
  type AttachmentDoc,
  type BackendDoc,
  type ConfigDoc,
  type HookName,
  type NormalConfig,
  type RuleDoc,
  type ServiceDoc,
  type SetDoc,
} from '../../controller/document.js';
import {
  ConfigInvalidError,
  ConflictError,
  NotFoundError,
  PreconditionFailedError,
} from '../../controller/errors.js';
import { SetInvalidError } from '../../controller/dataplane/errors.js';
import { validateRuleSet, type RuleSpec } from '../../controller/dataplane/model.js';
import { prefixKeys } from '../../controller/dataplane/prefix-keys.js';
import type { AttachmentCounters, PacketCount } from '../../controller/dataplane/counters.js';
import { CheckSpecInvalidError } from '../../controller/lb/health-errors.js';
import { parseCheckSpec } from '../../controller/lb/health-spec.js';
import { MAGLEV_DEFAULT_SIZE, MAGLEV_SIZES } from '../../controller/lb/maglev.js';
import {
  backendKey,
  canonicalAddress,
  parseBackendRef,
  parseServiceKey,
  serviceKey,
} from '../../controller/lb/service-key.js';

const SET_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

const keyOf = (a: { device: string; hook?: HookName }): string => `${a.device}@${a.hook ?? 'xdp'}`;

function clone<T>(value: T): T {
  return structuredClone(value);
}

/** What one change would do: the diff between two documents. */
export function diffConfigs(before: NormalConfig, after: NormalConfig): ConfigDiff {
  const byKey = <T>(list: T[], key: (t: T) => string) => new Map(list.map((t) => [key(t), t]));
  const named = <T>(a: Map<string, T>, b: Map<string, T>, same: (x: T, y: T) => boolean) => ({
    added: [...b.keys()].filter((k) => !a.has(k)),
    removed: [...a.keys()].filter((k) => !b.has(k)),
    changed: [...b.keys()].filter((k) => a.has(k) && !same(a.get(k)!, b.get(k)!)),
  });
  const json = (x: unknown, y: unknown) => JSON.stringify(x) === JSON.stringify(y);
  const setsA = byKey(before.sets, (s) => s.name);
  const setsB = byKey(after.sets, (s) => s.name);
  const changed: ConfigDiff['sets']['changed'] = [];
  for (const [name, b] of setsB) {
    const a = setsA.get(name);
    if (a === undefined || a.prefixes === b.prefixes) continue;
    const old = new Set(a.prefixes);
    const now = new Set(b.prefixes);
    let added = 0;
    let removed = 0;
    for (const p of now) if (!old.has(p)) added++;
    for (const p of old) if (!now.has(p)) removed++;
    if (added > 0 || removed > 0) changed.push({ name, added, removed });
  }
  const services = named(
    byKey(before.services ?? [], serviceKey),
    byKey(after.services ?? [], serviceKey),
    json,
  );
  return {
    attachments: named(byKey(before.attachments, keyOf), byKey(after.attachments, keyOf), json),
    sets: {
      added: [...setsB.keys()].filter((k) => !setsA.has(k)),
      removed: [...setsA.keys()].filter((k) => !setsB.has(k)),
      changed,
    },
    rules: named(
      byKey(before.rules, (r) => r.id),
      byKey(after.rules, (r) => r.id),
      json,
    ),
    // Present when services changed, as the contract says.
    ...(services.added.length + services.removed.length + services.changed.length > 0
      ? { services }
      : {}),
  };
}

/** Figures of a service or backend a test may set (zero by default). */
export interface LbFigures {
  packets: number;
  bytes: number;
  newFlows: number;
  activeFlows: number;
}

type Health = LbBackendView['health'];

/** "10.0.0.100:80/tcp 10.1.0.11": how the LB maps of MemoryController name a backend. */
export function lbBackendId(service: string, backend: string): string {
  return `${service} ${backend}`;
}

/** An attachment's action counters: those given, and zero packets and bytes for the others. */
export function actionCounters(
  given: Partial<AttachmentCounters['actions']> = {},
): AttachmentCounters['actions'] {
  const zero = (): PacketCount => ({ packets: 0, bytes: 0 });
  return {
    pass: given.pass ?? zero(),
    drop: given.drop ?? zero(),
    redirect: given.redirect ?? zero(),
    tx: given.tx ?? zero(),
  };
}

/** Zeroed counters of one attachment. */
function zeroCounters(device: string, hook: HookName, rules: RuleDoc[]): AttachmentCounters {
  return {
    device,
    hook,
    ifindex: 0,
    generation: 0,
    actions: actionCounters(),
    events: {
      malformed: 0,
      truncated: 0,
      default: 0,
      ratelimited: 0,
      fwdToStack: 0,
      fwdFailed: 0,
      stepLimit: 0,
      filterMissing: 0,
    },
    histogram: new Array<number>(16).fill(0),
    rules: rules.map((r, position) => ({
      id: r.id ?? '',
      position,
      packets: 0,
      bytes: 0,
      lastHit: null,
    })),
    limiters: rules
      .filter((r) => r.action === 'ratelimit')
      .map((r) => ({ id: r.id ?? '', passed: 0, dropped: 0 })),
  };
}

/** The in-memory controller. Public fields let a test shape what reads return. */
export class MemoryController implements Controller {
  readonly events = new EventEmitter();
  ready = true;
  /** Devices that "exist"; attachments to others are pending. */
  deviceList: DeviceInfo[] = [
    { name: 'lo', ifindex: 1, up: true, mac: null, mtu: 65536 },
    { name: 'veth0', ifindex: 2, up: true, mac: '02:00:00:00:00:01', mtu: 1500 },
    { name: 'veth1', ifindex: 3, up: true, mac: '02:00:00:00:00:02', mtu: 1500 },
  ];
  /** Counters a test set, by "device@hook"; merged over zeros. */
  counters = new Map<string, Partial<AttachmentCounters>>();
  /** Changes applied (dry runs excluded). */
  applied = 0;
  /** Thrown by the next mutating call, once (to test 5xx mapping). */
  failNext: Error | undefined;
  /** LB counters a test set: by service key, and by lbBackendId(service, backend). */
  lbCounters = new Map<string, Partial<LbFigures>>();
  /** Health verdicts a test set, by lbBackendId; default "unknown" with a check, else "unchecked". */
  lbHealth = new Map<string, Exclude<Health, 'unchecked'>>();
  /** The balancer's events and FIB failures lbStats() reports. */
  lbEvents: Record<string, number> = {
    flowHit: 0,
    flowMiss: 0,
    nonSynMiss: 0,
    insertCap: 0,
    noBackend: 0,
    fibFail: 0,
  };
  lbFibFailures: Record<string, number> = {};
  /** Live flow-table entries per service key, for the predictions of changes (default 0). */
  lbFlows = new Map<string, number>();

  private doc: NormalConfig = { version: DOCUMENT_VERSION, attachments: [], sets: [], rules: [] };
  private generation = 0;
  /** Prefix arrays already validated, so that a change elsewhere does not re-parse millions. */
  private readonly checked = new WeakSet<string[]>();

  config(): { config: NormalConfig; generation: number } {
    return { config: clone(this.doc), generation: this.generation };
  }

  emit(event: ControllerEvent): void {
    this.events.emit('event', event);
  }

  async replaceConfig(
    doc: ConfigDoc,
    options: ChangeOptions & { ifGeneration?: number } = {},
  ): Promise<ChangeResult> {
    if (options.ifGeneration !== undefined && options.ifGeneration !== this.generation)
      throw new PreconditionFailedError(
        `replace config: If-Match names generation ${options.ifGeneration}, the current one is ${this.generation}`,
        this.generation,
      );
    if (!Value.Check(ConfigSchema, doc)) {
      const first = Value.Errors(ConfigSchema, doc)[0];
      throw new ConfigInvalidError(`config ${first?.instancePath ?? ''}: ${first?.message}`, {
        pointer: first?.instancePath ?? '',
      });
    }
    const next: NormalConfig = {
      version: DOCUMENT_VERSION,
      attachments: clone(doc.attachments ?? []),
      sets: clone(doc.sets ?? []),
      rules: (doc.rules ?? []).map((r) => ({ ...clone(r), id: r.id ?? '' })),
      ...(doc.services !== undefined && doc.services.length > 0
        ? { services: clone(doc.services).map(canonicalService) }
        : {}),
      ...(doc.lb !== undefined ? { lb: clone(doc.lb) } : {}),
    };
    return this.apply(next, options);
  }

  async attach(attachment: AttachmentDoc, options: ChangeOptions = {}): Promise<ChangeResult> {
    const next = this.draft();
    const i = next.attachments.findIndex((a) => keyOf(a) === keyOf(attachment));
    if (i >= 0) next.attachments[i] = clone(attachment);
    else next.attachments.push(clone(attachment));
    return this.apply(next, options);
  }

  async detach(
    device: string,
    hook?: HookName,
    options: ChangeOptions = {},
  ): Promise<ChangeResult> {
    const next = this.draft();
    const gone = (a: { device: string; hook?: HookName }) =>
      a.device === device && (hook === undefined || (a.hook ?? 'xdp') === hook);
    if (!next.attachments.some(gone))
      throw new NotFoundError(
        `detach "${device}"${hook === undefined ? '' : ` ${hook}`}: nothing is attached`,
      );
    next.attachments = next.attachments.filter((a) => !gone(a));
    next.rules = next.rules.filter((r) => !gone(r));
    return this.apply(next, options);
  }

  async putSet(
    name: string,
    prefixes: Iterable<string> | AsyncIterable<string>,
    options: ChangeOptions & { create?: boolean } = {},
  ): Promise<ChangeResult & { count: number }> {
    if (!SET_NAME.test(name))
      throw new SetInvalidError(
        `set name "${name}" is not valid: expected 1 to 64 letters, digits, "_", "." or "-"`,
        { set: name, field: 'name' },
      );
    const list: string[] = [];
    if (Symbol.asyncIterator in prefixes) for await (const p of prefixes) list.push(p);
    else for (const p of prefixes) list.push(p);
    const keys = prefixKeys(list, name);
    this.checked.add(list);
    const next = this.draft();
    const i = next.sets.findIndex((s) => s.name === name);
    if (i >= 0 && options.create) throw new ConflictError(`set "${name}" already exists`);
    const set: SetDoc = { name, prefixes: list };
    if (i >= 0) next.sets[i] = set;
    else next.sets.push(set);
    const result = await this.apply(next, options);
    return { ...result, count: keys.v4.length + keys.v6.length };
  }

  async addPrefixes(name: string, prefixes: string[], options: ChangeOptions = {}) {
    const next = this.draft();
    const set = this.setIn(next, name);
    prefixKeys(prefixes, name);
    const have = new Set(set.prefixes);
    set.prefixes = [...set.prefixes, ...prefixes.filter((p) => !have.has(p))];
    return this.apply(next, options);
  }

  async removePrefixes(name: string, prefixes: string[], options: ChangeOptions = {}) {
    const next = this.draft();
    const set = this.setIn(next, name);
    prefixKeys(prefixes, name);
    const drop = new Set(prefixes);
    set.prefixes = set.prefixes.filter((p) => !drop.has(p));
    return this.apply(next, options);
  }

  async removeSet(name: string, options: ChangeOptions = {}): Promise<ChangeResult> {
    const next = this.draft();
    this.setIn(next, name);
    const user = next.rules.find((r) => r.srcSet === name || r.dstSet === name);
    if (user !== undefined)
      throw new ConflictError(`remove set "${name}": rule "${user.id}" references it`);
    next.sets = next.sets.filter((s) => s.name !== name);
    return this.apply(next, options);
  }

  async addRule(
    rule: RuleDoc,
    options: ChangeOptions = {},
  ): Promise<ChangeResult & { rule: RuleDoc }> {
    const next = this.draft();
    if (rule.id !== undefined && next.rules.some((r) => r.id === rule.id))
      throw new ConflictError(`add rule "${rule.id}": the id is taken`);
    next.rules.push({ ...clone(rule), id: rule.id ?? '' });
    const result = await this.apply(next, options);
    const added = (options.dryRun ? this.lastValidated : this.doc).rules.at(-1)!;
    return { ...result, rule: clone(added) };
  }

  async removeRule(id: string, options: ChangeOptions = {}): Promise<ChangeResult> {
    const next = this.draft();
    if (!next.rules.some((r) => r.id === id))
      throw new NotFoundError(`remove rule "${id}": no such rule`);
    next.rules = next.rules.filter((r) => r.id !== id);
    return this.apply(next, options);
  }

  async addService(service: ServiceDoc, options: ChangeOptions = {}): Promise<ChangeResult> {
    const next = this.draft();
    const key = serviceKey(service);
    const services = next.services ?? [];
    if (services.some((s) => serviceKey(s) === key))
      throw new ConflictError(`add service "${key}": the service exists`);
    next.services = [...services, canonicalService(clone(service))];
    return this.apply(next, options);
  }

  async removeService(key: string, options: ChangeOptions = {}): Promise<ChangeResult> {
    const next = this.draft();
    const { index } = this.serviceIn(next, key, 'remove service');
    next.services = next.services!.filter((_, i) => i !== index);
    if (next.services.length === 0) delete next.services;
    return this.apply(next, options);
  }

  async addBackend(
    service: string,
    backend: BackendDoc,
    options: ChangeOptions = {},
  ): Promise<ChangeResult> {
    const next = this.draft();
    const { index, key } = this.serviceIn(next, service, 'add backend');
    const svc = next.services![index];
    const id = backendKey(backend);
    if ((svc.backends ?? []).some((b) => backendKey(b) === id))
      throw new ConflictError(`add backend "${id}" to service "${key}": the backend exists`);
    svc.backends = [...(svc.backends ?? []), canonicalBackend(clone(backend))];
    return this.apply(next, options);
  }

  async setBackend(
    service: string,
    backend: string,
    patch: { weight?: number; drain?: boolean; check?: string | null },
    options: ChangeOptions = {},
  ): Promise<ChangeResult> {
    const next = this.draft();
    const { index, key } = this.serviceIn(next, service, 'set backend');
    const svc = next.services![index];
    const b = svc.backends![this.backendIn(svc, key, backend, 'set backend')];
    if (patch.weight !== undefined) b.weight = patch.weight;
    if (patch.drain !== undefined) {
      if (patch.drain) b.drain = true;
      else delete b.drain;
    }
    if (patch.check === null) delete b.check;
    else if (patch.check !== undefined) b.check = patch.check;
    return this.apply(next, options);
  }

  async removeBackend(
    service: string,
    backend: string,
    options: ChangeOptions = {},
  ): Promise<ChangeResult> {
    const next = this.draft();
    const { index, key } = this.serviceIn(next, service, 'remove backend');
    const svc = next.services![index];
    const at = this.backendIn(svc, key, backend, 'remove backend');
    svc.backends = svc.backends!.filter((_, i) => i !== at);
    return this.apply(next, options);
  }

  async lbServices(key?: string): Promise<LbServiceView[]> {
    const services = this.doc.services ?? [];
    if (key === undefined) return services.map((s) => this.serviceView(s));
    const { index } = this.serviceIn(this.doc, key, 'service');
    return [this.serviceView(services[index])];
  }

  async lbStats(): Promise<LbStats | null> {
    if ((this.doc.services ?? []).length === 0) return null;
    return {
      events: { ...this.lbEvents },
      fibFailures: { ...this.lbFibFailures },
      services: await this.lbServices(),
    };
  }

  async devices(): Promise<DeviceInfo[]> {
    return clone(this.deviceList);
  }

  status(): ControllerStatus {
    return {
      desiredGeneration: this.generation,
      appliedGeneration: this.generation,
      ready: this.ready,
      stateDir: '/tmp/sluice-test/state',
      pinDir: '/sys/fs/bpf/sluice-test',
      attachments: this.doc.attachments.map((a): AttachmentStatus => {
        const dev = this.deviceList.find((d) => d.name === a.device);
        return {
          device: a.device,
          hook: a.hook ?? 'xdp',
          state: dev === undefined ? 'pending' : 'attached',
          ifindex: dev?.ifindex ?? null,
          error: null,
          appliedGeneration: dev === undefined ? null : this.generation,
        };
      }),
    };
  }

  stats(device?: string): Stats {
    return {
      devices: this.doc.attachments
        .filter((a) => device === undefined || a.device === device)
        .map((a) => {
          const hook = a.hook ?? 'xdp';
          const rules = this.doc.rules.filter((r) => keyOf(r) === keyOf(a));
          const counters = {
            ...zeroCounters(a.device, hook, rules),
            ...clone(this.counters.get(keyOf(a)) ?? {}),
            generation: this.generation,
          };
          return { ...counters, name: a.device };
        }),
    };
  }

  async replay(doc: ConfigDoc | undefined, pcap: Uint8Array): Promise<ReplayReport> {
    const config = doc ?? this.doc;
    // Records after the 24-byte header: 16-byte record header, captured length at offset 8.
    const view = new DataView(pcap.buffer, pcap.byteOffset, pcap.byteLength);
    const little =
      view.getUint32(0, false) === 0xd4c3b2a1 || view.getUint32(0, false) === 0x4d3cb2a1;
    let packets = 0;
    for (let at = 24; at + 16 <= pcap.length; packets++) at += 16 + view.getUint32(at + 8, little);
    return {
      packets,
      attachments: (config.attachments ?? []).map((a) => ({
        attachment: keyOf(a),
        rules: (config.rules ?? [])
          .filter((r) => keyOf(r) === keyOf(a))
          .map((r) => ({ id: r.id ?? '', packets: 0 })),
        verdicts: { [a.defaultAction ?? 'pass']: packets },
        changed: 0,
      })),
    };
  }

  private lastValidated: NormalConfig = this.doc;

  private draft(): NormalConfig {
    return {
      version: DOCUMENT_VERSION,
      attachments: clone(this.doc.attachments),
      // Prefix arrays are shared, not copied: they are replaced, never changed in place.
      sets: this.doc.sets.map((s) => ({ name: s.name, prefixes: s.prefixes })),
      rules: clone(this.doc.rules),
      ...(this.doc.services !== undefined ? { services: clone(this.doc.services) } : {}),
      ...(this.doc.lb !== undefined ? { lb: clone(this.doc.lb) } : {}),
    };
  }

  /** The index and canonical key of the service `key` names; NotFoundError when there is none. */
  private serviceIn(doc: NormalConfig, key: string, what: string): { index: number; key: string } {
    const canonical = serviceKey(parseServiceKey(key));
    const index = (doc.services ?? []).findIndex((s) => serviceKey(s) === canonical);
    if (index < 0)
      throw new NotFoundError(
        `${what === 'service' ? '' : `${what}: `}service "${canonical}" does not exist`,
      );
    return { index, key: canonical };
  }

  /**
   * The index of the backend `ref` names in `service`: by its key, or by address alone when one
   * backend has that address. NotFoundError when there is none.
   */
  private backendIn(service: ServiceDoc, key: string, ref: string, what: string): number {
    const wanted = parseBackendRef(ref);
    const id = backendKey(wanted);
    const backends = service.backends ?? [];
    let index = backends.findIndex((b) => backendKey(b) === id);
    if (index < 0 && wanted.port === undefined) {
      const same = backends.flatMap((b, i) => (b.address === wanted.address ? [i] : []));
      if (same.length === 1) index = same[0];
    }
    if (index < 0)
      throw new NotFoundError(`${what}: backend "${id}" of service "${key}" does not exist`);
    return index;
  }

  private health(key: string, backend: BackendDoc): Health {
    return (
      this.lbHealth.get(lbBackendId(key, backendKey(backend))) ??
      (backend.check === undefined ? 'unchecked' : 'unknown')
    );
  }

  /** Each backend's share of the table: its weight among those taking new flows. */
  private tableShares(key: string, service: ServiceDoc): Map<string, number> {
    const weights = (service.backends ?? []).map((b) =>
      b.drain === true || this.health(key, b) === 'down' ? 0 : (b.weight ?? 1),
    );
    const total = weights.reduce((a, b) => a + b, 0);
    return new Map(
      (service.backends ?? []).map((b, i) => [backendKey(b), total === 0 ? 0 : weights[i] / total]),
    );
  }

  private serviceView(service: ServiceDoc): LbServiceView {
    const key = serviceKey(service);
    const shares = this.tableShares(key, service);
    const figures = (id: string): LbFigures => ({
      packets: 0,
      bytes: 0,
      newFlows: 0,
      activeFlows: 0,
      ...this.lbCounters.get(id),
    });
    const backends = (service.backends ?? []).map((b) => {
      const id = backendKey(b);
      const health = this.health(key, b);
      return {
        backend: b,
        health,
        figures: figures(lbBackendId(key, id)),
        share: shares.get(id) ?? 0,
      };
    });
    const sum = (field: keyof LbFigures) =>
      backends.reduce((total, b) => total + b.figures[field], 0);
    const own = this.lbCounters.get(key) ?? {};
    const total = {
      packets: own.packets ?? sum('packets'),
      bytes: own.bytes ?? sum('bytes'),
      newFlows: own.newFlows ?? sum('newFlows'),
      activeFlows: own.activeFlows ?? sum('activeFlows'),
    };
    const backendPackets = sum('packets');
    return {
      key,
      vip: canonicalAddress(service.vip) ?? service.vip,
      port: service.port,
      proto: service.proto ?? 'tcp',
      mode: service.mode ?? 'dsr',
      hash: service.hash ?? '5tuple',
      tableSize: service.tableSize ?? MAGLEV_DEFAULT_SIZE,
      devices: this.doc.attachments
        .filter((a) => (a.hook ?? 'xdp') === 'xdp')
        .map((a) => `${a.device}@xdp`),
      ...total,
      backends: backends.map(({ backend: b, health, figures: f, share }) => ({
        address: canonicalAddress(b.address) ?? b.address,
        port: b.port ?? service.port,
        weight: b.weight ?? 1,
        drain: b.drain ?? false,
        check: b.check ?? null,
        health,
        state: b.drain === true ? 'draining' : health === 'down' ? 'down' : 'active',
        tableShare: share,
        trafficShare: backendPackets === 0 ? 0 : f.packets / backendPackets,
        ...f,
      })),
    };
  }

  /**
   * What moves in each service kept by a change whose table changes: the share of slots that go
   * elsewhere, taken as half the summed change of the backends' shares (what an ideal consistent
   * hash moves), and that share of the service's live flows (lbFlows).
   */
  private predict(before: NormalConfig, after: NormalConfig): LbMovePrediction[] {
    const old = new Map((before.services ?? []).map((s) => [serviceKey(s), s]));
    const out: LbMovePrediction[] = [];
    for (const service of after.services ?? []) {
      const key = serviceKey(service);
      const was = old.get(key);
      if (was === undefined) continue;
      const a = this.tableShares(key, was);
      const b = this.tableShares(key, service);
      let moved = 0;
      for (const id of new Set([...a.keys(), ...b.keys()]))
        moved += Math.abs((b.get(id) ?? 0) - (a.get(id) ?? 0));
      const movedShare = Math.round((moved / 2) * 1e6) / 1e6;
      if (movedShare === 0) continue;
      const flows = this.lbFlows.get(key) ?? 0;
      out.push({ service: key, movedShare, flows, flowsMoved: Math.round(flows * movedShare) });
    }
    return out;
  }

  private setIn(doc: NormalConfig, name: string): SetDoc {
    const set = doc.sets.find((s) => s.name === name);
    if (set === undefined) throw new NotFoundError(`set "${name}" does not exist`);
    return set;
  }

  /** Validates `next` as the controller would, fills generated rule ids, then commits. */
  private async apply(next: NormalConfig, options: ChangeOptions): Promise<ChangeResult> {
    if (this.failNext !== undefined) {
      const err = this.failNext;
      this.failNext = undefined;
      throw err;
    }
    this.validate(next);
    const diff = diffConfigs(this.doc, next);
    const moves = this.predict(this.doc, next);
    const lb = moves.length > 0 ? { lb: moves } : {};
    this.lastValidated = next;
    if (options.dryRun) return { generation: this.generation, diff, applied: false, ...lb };
    this.doc = next;
    this.generation++;
    this.applied++;
    this.emit({ type: 'config', generation: this.generation, diff });
    this.emit({ type: 'reconcile', generation: this.generation, ok: true });
    return { generation: this.generation, diff, applied: true, ...lb };
  }

  private validate(doc: NormalConfig): void {
    const attachments = new Set<string>();
    doc.attachments.forEach((a, i) => {
      if (attachments.has(keyOf(a)))
        throw new ConfigInvalidError(`attachment "${keyOf(a)}" is given twice`, {
          pointer: `/attachments/${i}`,
        });
      attachments.add(keyOf(a));
    });
    const sets = new Set<string>();
    doc.sets.forEach((s, i) => {
      if (sets.has(s.name))
        throw new ConfigInvalidError(`set "${s.name}" is given twice`, { pointer: `/sets/${i}` });
      sets.add(s.name);
      if (!this.checked.has(s.prefixes)) {
        prefixKeys(s.prefixes, s.name);
        this.checked.add(s.prefixes);
      }
    });
    const ids = new Map<string, number>();
    doc.rules.forEach((r, i) => {
      if (r.id !== '' && ids.has(r.id))
        throw new ConfigInvalidError(`rule "${r.id}" is given twice`, {
          pointer: `/rules/${i}/id`,
        });
      ids.set(r.id, i);
      if (!attachments.has(keyOf(r)))
        throw new ConfigInvalidError(
          `rule ${r.id === '' ? `#${i}` : `"${r.id}"`}: nothing is attached at "${keyOf(r)}"`,
          { pointer: `/rules/${i}/device` },
        );
    });
    this.validateServices(doc.services ?? []);
    for (const a of doc.attachments) {
      const members = doc.rules.flatMap((r, i) => (keyOf(r) === keyOf(a) ? [i] : []));
      const specs = members.map((i) => {
        const { id } = doc.rules[i];
        const fields: Record<string, unknown> = { ...doc.rules[i] };
        delete fields.device;
        delete fields.hook;
        delete fields.id;
        // Generated ids ("~…") are the controller's, not the user's: validate without them.
        return (id === '' || id.startsWith('~')
          ? fields
          : { id, ...fields }) as unknown as RuleSpec;
      });
      const validated = validateRuleSet(
        {
          rules: specs,
          ...(a.defaultAction !== undefined ? { defaultAction: a.defaultAction } : {}),
          ...(a.malformed !== undefined ? { malformed: a.malformed } : {}),
        },
        { sets },
      );
      for (const rule of validated) {
        const stored = doc.rules[members[rule.index]];
        if (stored.id === '') stored.id = rule.id;
      }
    }
  }

  /** What the controller refuses of services: bad addresses, sizes and checks, keys given twice. */
  private validateServices(services: ServiceDoc[]): void {
    const keys = new Set<string>();
    services.forEach((service, i) => {
      const at = `/services/${i}`;
      if (canonicalAddress(service.vip) === null)
        throw new ConfigInvalidError(`${at}/vip: "${service.vip}" is not an IPv4 or IPv6 address`, {
          pointer: `${at}/vip`,
        });
      const key = serviceKey(service);
      if (keys.has(key))
        throw new ConfigInvalidError(`${at}: service "${key}" is given twice`, { pointer: at });
      keys.add(key);
      if (service.tableSize !== undefined && !MAGLEV_SIZES.includes(service.tableSize))
        throw new ConfigInvalidError(
          `${at}/tableSize: service "${key}": table size ${service.tableSize} is not one of ${MAGLEV_SIZES.join(', ')}`,
          { pointer: `${at}/tableSize` },
        );
      const backends = new Set<string>();
      (service.backends ?? []).forEach((backend, j) => {
        const bat = `${at}/backends/${j}`;
        if (canonicalAddress(backend.address) === null)
          throw new ConfigInvalidError(
            `${bat}/address: service "${key}": "${backend.address}" is not an IPv4 or IPv6 address`,
            { pointer: `${bat}/address` },
          );
        const id = backendKey(backend);
        if (backends.has(id))
          throw new ConfigInvalidError(`${bat}: service "${key}": backend "${id}" is given twice`, {
            pointer: bat,
          });
        backends.add(id);
        if (backend.check !== undefined) {
          try {
            parseCheckSpec(backend.check);
          } catch (error: unknown) {
            if (!(error instanceof CheckSpecInvalidError)) throw error;
            throw new ConfigInvalidError(`${bat}/check: ${error.message}`, {
              pointer: `${bat}/check`,
              cause: error,
            });
          }
        }
      });
    });
  }
}

/** A service with its addresses in canonical form, as the controller keeps it. */
function canonicalService(service: ServiceDoc): ServiceDoc {
  const vip = canonicalAddress(service.vip);
  return {
    ...service,
    ...(vip !== null ? { vip } : {}),
    ...(service.backends !== undefined ? { backends: service.backends.map(canonicalBackend) } : {}),
  };
}

function canonicalBackend(backend: BackendDoc): BackendDoc {
  const address = canonicalAddress(backend.address);
  return address === null ? backend : { ...backend, address };
}
