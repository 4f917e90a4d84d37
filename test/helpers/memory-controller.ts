// An in-memory Controller for API-layer tests: keeps the desired state, validates it with the
// document schema and the data plane's own validators, and throws the controller's typed errors.
// Nothing touches the kernel; counters are whatever a test sets.
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
  ReplayReport,
  Stats,
} from '../../controller/contract.js';
import {
  ConfigSchema,
  DOCUMENT_VERSION,
  type AttachmentDoc,
  type ConfigDoc,
  type HookName,
  type NormalConfig,
  type RuleDoc,
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
  };
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
    options: ChangeOptions = {},
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
    };
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
    this.lastValidated = next;
    if (options.dryRun) return { generation: this.generation, diff, applied: false };
    this.doc = next;
    this.generation++;
    this.applied++;
    this.emit({ type: 'config', generation: this.generation, diff });
    this.emit({ type: 'reconcile', generation: this.generation, ok: true });
    return { generation: this.generation, diff, applied: true };
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
}
