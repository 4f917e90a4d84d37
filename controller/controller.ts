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
  RuleSchema,
  type AttachmentDoc,
  type ConfigDoc,
  type HookName,
  type NormalConfig,
  type RuleDoc,
} from './document.js';
import { checkShape } from './config.js';
import { ConflictError, NotFoundError, PreconditionFailedError } from './errors.js';
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
 * After a group commit, wait up to this long for the clients it answered to send their next
 * changes (they do within a millisecond or two), so that they join one group instead of
 * trickling in as many: a group costs about the same for one change as for thirty.
 */
const GROUP_GATHER_MS = 2;

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
  /** Set while #drain gathers changes: called once #gatherTarget of them are pending. */
  #gathered: (() => void) | undefined;
  #gatherTarget = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  readonly #onDevice: (change: DeviceChange) => void;

  private constructor(
    readonly stateDir: string,
    readonly pinDir: string,
    private readonly logger: Logger,
    private readonly store: StateStore,
    private readonly reconciler: Reconciler,
    private readonly watcher: DeviceWatcher,
    committed: Committed,
  ) {
    this.#committed = committed;
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
      );
      watcher.on('change', controller.#onDevice);
      phase('devicesListed');
      await reconciler.reconcile(loaded.config, loaded.generation);
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
    options: ChangeOptions = {},
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
      if (id !== undefined) {
        if (c.config.rules.some((r) => r.id === id))
          throw new ConflictError(`add rule "${id}": a rule with that id exists`);
      } else {
        const taken = new Set(c.config.rules.map((r) => r.id));
        do id = `r${nextRuleId++}`;
        while (taken.has(id));
      }
      added = { ...rule, id };
      return {
        config: { ...c.config, rules: [...c.config.rules, added] },
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
      if (this.#gathered && this.#pending.length >= this.#gatherTarget) this.#gathered();
      if (this.#draining) return;
      this.#draining = true;
      void this.#serial(() => this.#drain());
    });
  }

  /** Commits queued changes, a group at a time, until none is left. */
  async #drain(): Promise<void> {
    let answered = 1;
    try {
      for (;;) {
        if (this.#pending.length < answered) await this.#gather(answered);
        if (this.#pending.length === 0) break;
        // A change marked `alone` (retried after its group failed) is committed by itself.
        const alone = this.#pending[0].alone;
        const end = alone ? 1 : this.#pending.findIndex((p) => p.alone);
        const group = this.#pending.splice(0, end < 0 ? this.#pending.length : Math.max(end, 1));
        await this.#commitGroup(group);
        answered = group.length + this.#pending.length;
      }
    } finally {
      this.#draining = false;
    }
  }

  /** Waits until `count` changes are pending (#change wakes it), or GROUP_GATHER_MS. */
  #gather(count: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#gathered = undefined;
        resolve();
      };
      const timer = setTimeout(done, GROUP_GATHER_MS);
      this.#gatherTarget = count;
      this.#gathered = done;
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
    }[] = [];
    for (const change of group) {
      try {
        const next = await change.compute(current);
        // In a group, the whole document is validated once, after the last change (below).
        if (group.length === 1 || change.options.dryRun) validateConfig(next.config);
        const diff: ConfigDiff = next.diff ?? diffConfig(current.config, next.config);
        if (change.options.dryRun) {
          change.resolve({ generation: current.generation, diff, applied: false });
          continue;
        }
        current = {
          config: next.config,
          generation: current.generation + 1,
          nextRuleId: next.nextRuleId ?? current.nextRuleId,
        };
        accepted.push({ change, diff, delta: next.delta, edit: next.edit });
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
    try {
      await this.store.save(
        current,
        accepted.flatMap((a) => (a.edit ? [a.edit] : [])),
      );
    } catch (error: unknown) {
      for (const a of accepted) a.change.reject(error);
      return;
    }
    this.#committed = current;
    const t2 = performance.now();
    try {
      // One set change alone may go incrementally; a group is applied whole.
      const delta = accepted.length === 1 ? accepted[0].delta : undefined;
      await this.reconciler.reconcile(current.config, current.generation, delta);
    } catch (error: unknown) {
      await this.#rollBack(before, current, error);
      if (accepted.length === 1) accepted[0].change.reject(error);
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
        ms: { validate: ms(t0, t1), persist: ms(t1, t2), reconcile: ms(t2, performance.now()) },
      },
      'change applied',
    );
    let generation = before.generation;
    for (const a of accepted) {
      generation += 1;
      this.#emit({ type: 'config', generation, diff: a.diff });
      a.change.resolve({ generation, diff: a.diff, applied: true });
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
      await this.reconciler.reconcile(restored.config, restored.generation);
    } catch (again: unknown) {
      this.logger.error({ err: again }, 'restoring the previous desired state failed');
    }
  }
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
