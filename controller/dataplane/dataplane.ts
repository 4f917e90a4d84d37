// The data plane of one sluice instance: prefix sets and per-device pipelines, adopted from bpffs on
// open, changed only through apply() and the incremental set calls, read back through counters().
import { createHash, type Hash } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { ensureBpffs, ifindexOf, unpin, type BpfMap } from '../../bpf/index.js';
import {
  Attachment,
  pipelineBuild,
  type AttachmentKey,
  type Hook,
  type XdpAttachMode,
} from './attachment.js';
import { extendClassifier } from './classify-extend.js';
import { compileClassifier, type ClassifierTables, type ClassifyOptions } from './classify.js';
import { readCounters, type AttachmentCounters } from './counters.js';
import { DataplaneError } from './errors.js';
import { decodeName, encodeName, openNameTable } from './name-table.js';
import { sameElements, validateRuleSet, type Rule, type RuleSetSpec } from './model.js';
import { fingerprintTexts, prefixKeys, prefixKeysOf, type PrefixKeys } from './prefix-keys.js';
import { SetStore, type PendingWrites } from './set-store.js';

/** Where the instance keeps its pins, unless told otherwise. */
export const DEFAULT_PIN_DIR = '/sys/fs/bpf/sluice';

export interface SetSpec {
  name: string;
  /** IPv4 and IPv6 prefixes ("10.0.0.0/8", "2001:db8::/32", bare addresses), any mix. */
  prefixes: Iterable<string>;
  /**
   * fingerprintTexts(prefixes), when the caller already knows it: a caller that keeps a million
   * prefixes in an array it never changes saves hashing them on every apply.
   */
  fingerprint?: string;
}

export interface AttachmentSpec {
  device: string;
  hook?: Hook;
  /** XDP only; default native. */
  mode?: XdpAttachMode;
  rules: RuleSetSpec;
}

/** Everything the data plane should hold: what apply() makes true. */
export interface DataplaneSpec {
  sets?: readonly SetSpec[];
  attachments?: readonly AttachmentSpec[];
  /**
   * Keys ("device@hook") of attachments held now that stay as they are although not in
   * `attachments`: not detached, not validated, not written (their device is gone for now; their
   * pins and counters wait for it). Given in `attachments` again, they are written anew.
   */
  keep?: readonly string[];
  /**
   * Devices the caller looked up for this very change (name → ifindex), so that apply does not
   * ask the kernel again; a device not in it is looked up.
   */
  devices?: ReadonlyMap<string, number>;
}

/** Each rule's JSON, by the very rule object: callers keep unchanged rules as the same objects. */
const ruleJson = new WeakMap<object, string>();

/** A SHA-256 over the JSON of each rule of an array, in order, kept open to be extended. */
interface RulesDigest {
  /** A copy of the array digested. */
  rules: readonly unknown[];
  hash: Hash;
  hex: string;
}
/** The rule arrays digested last, newest first: a rule add's array is one of them plus a rule. */
const recentDigests: RulesDigest[] = [];
const RECENT_DIGESTS = 8;

/** The digest of `rules`, extending that of an array it starts with when one is recent. */
function rulesDigest(rules: readonly unknown[]): string {
  // Compared element by element, not by the array: an array may have grown in place.
  let base: RulesDigest | undefined;
  for (const d of recentDigests) {
    if (d.rules.length > rules.length || (base && d.rules.length <= base.rules.length)) continue;
    if (!d.rules.every((r, i) => r === rules[i])) continue;
    if (d.rules.length === rules.length) return d.hex;
    base = d;
  }
  const hash = base ? base.hash.copy() : createHash('sha256');
  for (let i = base?.rules.length ?? 0; i < rules.length; i++) {
    const rule = rules[i] as object;
    let json = ruleJson.get(rule);
    if (json === undefined) {
      json = JSON.stringify(rule);
      ruleJson.set(rule, json);
    }
    hash.update(json).update('\n');
  }
  const hex = hash.copy().digest('hex');
  recentDigests.unshift({ rules: [...rules], hash, hex });
  if (recentDigests.length > RECENT_DIGESTS) recentDigests.pop();
  return hex;
}

/**
 * A text equal for equal rule sets on the same hook (the rules in order, the set's own actions):
 * a digest of the rules' JSON, extended from the last one's when rules were appended.
 */
export function ruleSetSignature(rules: RuleSetSpec, hook: Hook): string {
  return [
    hook,
    String(rules.defaultAction ?? ''),
    String(rules.malformed ?? ''),
    rulesDigest(rules.rules ?? []),
  ].join('\n');
}

/**
 * True when `b` is `a` again, hook `hook`, with the very same rule objects: callers keep
 * unchanged rules as the same objects, so this spares comparing thousands of rules field by field.
 */
function sameRuleSet(a: AttachmentSpec | undefined, b: AttachmentSpec, hook: Hook): boolean {
  if (!a || (a.hook ?? 'xdp') !== hook || a.device !== b.device) return false;
  const x = a.rules;
  const y = b.rules;
  if (x.defaultAction !== y.defaultAction || x.malformed !== y.malformed) return false;
  return sameElements(x.rules, y.rules);
}

/** True when both lists hold the same attachments, modes and rule objects, in the same order. */
export function sameAttachments(
  a: readonly AttachmentSpec[],
  b: readonly AttachmentSpec[],
): boolean {
  return (
    a.length === b.length &&
    a.every((x, i) => x.mode === b[i].mode && sameRuleSet(x, b[i], (b[i].hook ?? 'xdp') as Hook))
  );
}

export interface OpenOptions {
  /** bpffs directory of this instance (created if missing); default DEFAULT_PIN_DIR. */
  dir?: string;
  /** Network namespace holding the devices (ip netns name); default: the caller's. */
  netns?: string;
  /**
   * Load the programs anew and replace the running ones behind their links (as another build
   * does), rather than adopt what this build pinned. Default false.
   */
  reloadPrograms?: boolean;
}

/** What apply() changed. */
export interface ApplyReport {
  attached: string[];
  detached: string[];
  updated: string[];
  unchanged: string[];
  /** Kernel entries of the shared set tries written or deleted. */
  setEntries: number;
}

interface Applied {
  spec: AttachmentSpec;
  rules: Rule[];
  signature: string;
}

const keyName = (k: AttachmentKey): string => `${k.device}@${k.hook}`;

function parseKeyName(name: string): AttachmentKey | null {
  const at = name.lastIndexOf('@');
  if (at <= 0) return null;
  const hook = name.slice(at + 1);
  if (hook !== 'xdp' && hook !== 'tc-ingress' && hook !== 'tc-egress') return null;
  return { device: name.slice(0, at), hook };
}

/**
 * The data plane. open() adopts what an earlier process left pinned (programs are replaced behind
 * their links, counters and rules stay); apply() makes the kernel match a whole desired state;
 * addPrefixes/removePrefixes change one set cheaply. Calls are serialized: each waits for the last.
 */
export class Dataplane {
  readonly #attachments = new Map<string, Attachment>();
  readonly #applied = new Map<string, Applied>();
  /** The tables each attachment last had written: a rule add extends them (classify-extend). */
  readonly #tables = new WeakMap<Attachment, ClassifierTables>();
  /** DataplaneSpec.devices of the apply under way. */
  #looked: ReadonlyMap<string, number> | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #masksSig = '';
  /** Masks the kernel tries hold now (after the last flush). */
  #heldMasks: number[] = [];
  /** Per set, the fingerprint of the prefix text last applied; changed sets lose theirs. */
  readonly #setFingerprints = new Map<string, string>();
  readonly #adoptProblems: { attachment: string; error: unknown }[] = [];
  /** Per attachment, its pinned record of what its running generation was written from. */
  readonly #written = new Map<string, BpfMap>();
  /** Set texts an apply left unread in the tries (they matched the pins); see #loadDeferredSets. */
  #deferredSets: Map<string, string[]> | undefined;

  private constructor(
    readonly dir: string,
    readonly netns: string | undefined,
    readonly sets: SetStore,
  ) {}

  /**
   * Opens (or creates) the instance under `dir` and adopts its pinned attachments: each gets this
   * build's program behind its existing link (bpf_link_update, no gap). Throws SyscallError when
   * bpffs is missing and cannot be mounted.
   */
  static async open(options: OpenOptions = {}): Promise<Dataplane> {
    const dir = options.dir ?? DEFAULT_PIN_DIR;
    ensureBpffs();
    mkdirSync(join(dir, 'att'), { recursive: true });
    const dp = new Dataplane(dir, options.netns, await SetStore.open(dir));
    for (const name of readdirSync(join(dir, 'att'))) {
      const key = parseKeyName(name);
      if (!key) continue;
      const att = Attachment.load(
        { ...key, netns: options.netns },
        join(dir, 'att', name),
        dir,
        options.reloadPrograms ? 'reload' : 'adopt',
      );
      dp.#attachments.set(name, att);
      if (!att.attached) continue;
      try {
        att.attach();
      } catch (error: unknown) {
        // Its device is gone (or refuses the new program): the pins and counters stay, and
        // the next apply() naming the device attaches it again.
        dp.#adoptProblems.push({ attachment: name, error });
      }
    }
    return dp;
  }

  /** Attachments open() found pinned but could not run this build's program on, and why. */
  get adoptProblems(): readonly { attachment: string; error: unknown }[] {
    return this.#adoptProblems;
  }

  /** Attachments held now, by "device@hook". */
  get attachments(): ReadonlyMap<string, Attachment> {
    return this.#attachments;
  }

  /**
   * Makes the data plane hold exactly `spec`: every rule set validated before anything changes
   * (throws the first DataplaneError, naming the rule and field), then sets, then each
   * attachment's rule set as one generation flip. Attachments not in `spec` are detached.
   */
  apply(spec: DataplaneSpec): Promise<ApplyReport> {
    return this.#serial(async () => {
      this.#looked = spec.devices;
      try {
        return await this.#apply(spec);
      } finally {
        this.#looked = undefined;
      }
    });
  }

  /**
   * Adds prefixes to set `name` (creating it); only the touched trie entries are written. Returns
   * how many kernel entries changed. Throws PrefixInvalidError naming the entry.
   */
  addPrefixes(name: string, prefixes: Iterable<string>): Promise<number> {
    return this.#serial(() => this.#changeSet(name, prefixKeys(prefixes, name), true));
  }

  /** Removes prefixes from set `name`. */
  removePrefixes(name: string, prefixes: Iterable<string>): Promise<number> {
    return this.#serial(() => this.#changeSet(name, prefixKeys(prefixes, name), false));
  }

  /**
   * The prefixes set `name` holds, as text. After a restart whose apply left the tries unread,
   * the first call reads them back (a second for a million keys).
   */
  setMembers(name: string): Promise<string[]> {
    return this.#serial(async () => {
      await this.#loadDeferredSets();
      return this.sets.members(name);
    });
  }

  /** Counters of every attachment, summed over CPUs. */
  counters(): AttachmentCounters[] {
    return [...this.#attachments.values()].map((att) => readCounters(att, this.netns));
  }

  /** Releases this process's handles; the kernel keeps running everything pinned. */
  close(): void {
    for (const att of this.#attachments.values()) att.close();
    this.#attachments.clear();
    for (const table of this.#written.values()) table.close();
    this.#written.clear();
    this.sets.close();
  }

  /** Detaches every attachment and removes every pin of the instance. */
  async destroy(): Promise<void> {
    await this.#serial(async () => {
      for (const table of this.#written.values()) table.close();
      this.#written.clear();
      for (const att of this.#attachments.values()) att.destroy();
      this.#attachments.clear();
      this.sets.close();
      for (const name of SetStore.pins) {
        try {
          unpin(join(this.dir, name));
        } catch {
          // not pinned
        }
      }
      rmSync(this.dir, { recursive: true, force: true });
    });
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #changeSet(name: string, keys: PrefixKeys, on: boolean): Promise<number> {
    await this.#loadDeferredSets();
    if (this.sets.needsFullLoad) {
      throw new DataplaneError(
        `change set "${name}": after a restart, apply() the whole desired state once first`,
        'SETS_NOT_LOADED',
      );
    }
    if (!this.sets.bits.has(name)) {
      throw new DataplaneError(
        `change set "${name}": no such set; apply() it first`,
        'SET_NOT_FOUND',
      );
    }
    this.#setFingerprints.delete(name);
    const pending = this.sets.planChange(name, keys, on);
    await this.#learnMasks();
    // The set's text is no longer one whole load: a restart must read the tries back.
    this.sets.clearFingerprints();
    const n = await this.sets.flush(pending);
    this.#heldMasks = this.sets.masks();
    return n;
  }

  /**
   * Rewrites the rule sets when planned set writes introduce a mask their classifiers lack
   * (masks() already counts planned values; the tries still hold #heldMasks until the flush).
   */
  async #learnMasks(): Promise<void> {
    const masks = new Set(this.sets.masks());
    const sig = [...masks].sort().join(',');
    if (sig === this.#masksSig) return;
    const list = [...new Set([...masks, ...this.#heldMasks])];
    for (const [name, applied] of this.#applied) {
      this.#recordWritten(name, ''); // written with a transitional mask list: not reusable
      await this.#write(this.#attachments.get(name)!, applied, list);
    }
    this.#masksSig = sig;
  }

  async #apply(spec: DataplaneSpec): Promise<ApplyReport> {
    const report: ApplyReport = {
      attached: [],
      detached: [],
      updated: [],
      unchanged: [],
      setEntries: 0,
    };
    // 1. Validate everything before touching the kernel.
    // Sets whose text is the same as last applied (same fingerprint) are not parsed again.
    const setSpecs = new Map<string, PrefixKeys | 'unchanged'>();
    const fingerprints = new Map<string, string>();
    const lists = new Map<string, string[]>();
    for (const set of spec.sets ?? []) {
      if (lists.has(set.name)) {
        throw new DataplaneError(`set "${set.name}" is given twice`, 'SET_INVALID');
      }
      const list = Array.isArray(set.prefixes) ? (set.prefixes as string[]) : [...set.prefixes];
      lists.set(set.name, list);
      fingerprints.set(set.name, set.fingerprint ?? fingerprintTexts(list));
    }
    // After a restart, sets whose text equals what the last complete load recorded are left as
    // the tries hold them, unread: reading a million keys back costs a second.
    const pinnedMatch = !this.sets.loaded && this.#matchesPinned(fingerprints);
    if (!pinnedMatch) await this.#loadDeferredSets();
    for (const [name, list] of lists) {
      const same =
        pinnedMatch ||
        (!this.sets.needsFullLoad && this.#setFingerprints.get(name) === fingerprints.get(name));
      setSpecs.set(name, same ? 'unchanged' : prefixKeysOf(list, name, fingerprints.get(name)));
    }
    const wanted = new Map<string, Applied>();
    for (const att of spec.attachments ?? []) {
      const key: AttachmentKey = { device: att.device, hook: att.hook ?? 'xdp' };
      const name = keyName(key);
      if (wanted.has(name)) {
        throw new DataplaneError(`attachment "${name}" is given twice`, 'ATTACHMENT_INVALID');
      }
      const before = this.#applied.get(name);
      const signature = sameRuleSet(before?.spec, att, key.hook)
        ? before!.signature
        : ruleSetSignature(att.rules, key.hook);
      // The rule set applied last, unchanged: checked then; only its sets must still exist.
      const rules =
        before?.signature === signature &&
        before.rules.every(
          (r) =>
            (r.srcSet === undefined || setSpecs.has(r.srcSet)) &&
            (r.dstSet === undefined || setSpecs.has(r.dstSet)),
        )
          ? before.rules
          : validateRuleSet(att.rules, { sets: new Set(setSpecs.keys()) });
      this.#ifindex(att.device, `attach to "${att.device}"`);
      for (const r of rules) {
        if (r.redirect) this.#ifindex(r.redirect.to, `rule "${r.id}": redirect`);
      }
      wanted.set(name, {
        spec: { ...att, hook: key.hook },
        rules,
        signature,
      });
    }

    // 2. Sets: plan, teach the classifiers the new masks, then write the tries.
    let pending: PendingWrites;
    if (pinnedMatch) {
      pending = { v4: [], v6: [] };
      this.#deferredSets = lists;
    } else if (this.sets.needsFullLoad || this.#largeChange(setSpecs)) {
      pending = this.sets.planReplaceAll(this.#parsedAll(setSpecs));
    } else {
      pending = { v4: [], v6: [] };
      for (const [name, keys] of setSpecs) {
        if (keys === 'unchanged') continue;
        const p = this.sets.planSet(name, keys);
        pending.v4.push(...p.v4);
        pending.v6.push(...p.v6);
      }
      const empty: PrefixKeys = { v4: new Float64Array(0), v6: [] };
      for (const name of this.sets.setNames()) {
        if (setSpecs.has(name)) continue;
        const p = this.sets.planSet(name, empty);
        pending.v4.push(...p.v4);
        pending.v6.push(...p.v6);
      }
    }
    // Masks the tries will hold, and those they hold until the flush: classifiers need both.
    const masks = new Set([...this.sets.masks(), ...this.#heldMasks]);

    // 3. Attachments: removed ones go, changed ones flip a generation, new ones attach last.
    const keep = new Set(spec.keep ?? []);
    for (const [name, att] of this.#attachments) {
      if (wanted.has(name)) continue;
      if (keep.has(name)) {
        // Written in full when wanted again: its classifier may miss masks learnt meanwhile.
        this.#applied.delete(name);
        this.#recordWritten(name, '');
        continue;
      }
      this.#written.get(name)?.close();
      this.#written.delete(name);
      att.destroy();
      this.#attachments.delete(name);
      this.#applied.delete(name);
      report.detached.push(name);
    }
    const maskList = [...masks];
    const maskSig = maskList.sort().join(',');
    for (const [name, applied] of wanted) {
      let att = this.#attachments.get(name);
      const fresh = att === undefined || !att.attached;
      const before = this.#applied.get(name);
      if (
        !fresh &&
        before &&
        before.signature === applied.signature &&
        maskSig === this.#masksSig
      ) {
        report.unchanged.push(name);
        continue;
      }
      // After a restart nothing is applied in this process yet; when the pins say the running
      // generation was written by this build from this very rule set, masks and redirect
      // targets, writing it again would change nothing but cost a generation flip.
      const writtenKey = this.#writtenKey(applied, maskSig);
      if (
        !fresh &&
        !before &&
        att &&
        this.#readWritten(name) === writtenKey &&
        att.adoptRules(applied.rules)
      ) {
        this.#applied.set(name, applied);
        report.unchanged.push(name);
        continue;
      }
      if (att === undefined) {
        att = Attachment.load(
          { device: applied.spec.device, hook: applied.spec.hook!, netns: this.netns },
          join(this.dir, 'att', name),
          this.dir,
        );
        this.#attachments.set(name, att);
      }
      this.#recordWritten(name, '');
      await this.#write(att, applied, maskList);
      this.#recordWritten(name, writtenKey);
      if (!att.attached) {
        att.attach(applied.spec.mode ?? 'native');
        report.attached.push(name);
      } else report.updated.push(name);
      this.#applied.set(name, applied);
    }
    this.#masksSig = maskSig;

    // 4. Only now the tries: every classifier already knows every mask they will hold. The
    // recorded fingerprints go first and come back after, so a crash in between is a full load.
    const writes = [...pending.v4, ...pending.v6].some((b) => b.updates + b.deletes > 0);
    if (writes) this.sets.clearFingerprints();
    report.setEntries = await this.sets.flush(pending);
    this.#heldMasks = this.sets.masks();
    this.#setFingerprints.clear();
    for (const [name, fp] of fingerprints) this.#setFingerprints.set(name, fp);
    for (const name of this.sets.setNames()) {
      if (!setSpecs.has(name)) this.sets.dropSet(name);
    }
    if (!pinnedMatch) this.sets.recordFingerprints(fingerprints);
    return report;
  }

  /** What a generation is written from: this build's pipeline, the rules, masks, redirects. */
  #writtenKey(applied: Applied, maskSig: string): string {
    const redirects = applied.rules.flatMap((r) =>
      r.redirect ? [`${r.redirect.to}=${this.#ifindex(r.redirect.to, 'redirect')}`] : [],
    );
    return createHash('sha256')
      .update(pipelineBuild())
      .update('\0')
      .update(applied.signature)
      .update('\0')
      .update(maskSig)
      .update('\0')
      .update(redirects.join(','))
      .digest('hex')
      .slice(0, 40);
  }

  #writtenTable(name: string): BpfMap {
    let table = this.#written.get(name);
    if (!table) {
      table = openNameTable(join(this.dir, 'att', name, 'sl_written'), 1, 'sl_written');
      this.#written.set(name, table);
    }
    return table;
  }

  #readWritten(name: string): string {
    return decodeName(this.#writtenTable(name).lookup(Buffer.alloc(4)));
  }

  /** Records `key` ('' = unknown) before and after a generation is written. */
  #recordWritten(name: string, key: string): void {
    this.#writtenTable(name).update(Buffer.alloc(4), encodeName(key));
  }

  /** True when `fingerprints` name exactly the sets the pins recorded, with equal texts. */
  #matchesPinned(fingerprints: ReadonlyMap<string, string>): boolean {
    const pinned = this.sets.pinnedState();
    if (!pinned || pinned.fingerprints.size !== fingerprints.size) return false;
    for (const [name, fp] of fingerprints) {
      if (pinned.fingerprints.get(name) !== fp) return false;
    }
    this.sets.adoptPinned(pinned);
    return true;
  }

  /**
   * Reads the tries back, and when an apply left them unread because they matched its texts,
   * replays that load in memory (no kernel writes: the tries already hold it) so that changes
   * know every set's members.
   */
  async #loadDeferredSets(): Promise<void> {
    await this.sets.load();
    const deferred = this.#deferredSets;
    if (!deferred) return;
    this.#deferredSets = undefined;
    const parsed = new Map<string, PrefixKeys>();
    for (const [name, list] of deferred) parsed.set(name, prefixKeysOf(list, name));
    const pending = this.sets.planReplaceAll(parsed);
    await this.sets.flush(pending); // only what changed behind our back since the restart
    this.#heldMasks = this.sets.masks();
  }

  /** Compiles and writes one attachment's rule set as a new generation. */
  async #write(att: Attachment, applied: Applied, masks: number[]): Promise<void> {
    const options: ClassifyOptions = {
      setBits: new Map(this.sets.bits),
      masks: masks.map(BigInt),
      defaultAction: applied.spec.rules.defaultAction ?? 'pass',
      malformed: applied.spec.rules.malformed ?? 'drop',
    };
    // Rules appended to what the attachment holds (a rule add) extend its last tables, which that
    // uses up: until this write succeeds, the next one compiles afresh.
    const last = this.#tables.get(att);
    this.#tables.delete(att);
    const tables: ClassifierTables =
      (last && extendClassifier(last, applied.rules, options)) ??
      compileClassifier(applied.rules, options);
    const devices = new Map<string, number>();
    for (const r of applied.rules) {
      if (r.redirect) devices.set(r.redirect.to, this.#ifindex(r.redirect.to, 'redirect'));
    }
    await att.writeRuleSet(tables, devices);
    this.#tables.set(att, tables);
  }

  /**
   * True when the sets change so much that one merge and sweep over everything beats walking each
   * change (the first load of a big set, say), and writes every entry once instead of per set.
   */
  #largeChange(sets: ReadonlyMap<string, PrefixKeys | 'unchanged'>): boolean {
    let changes = 0;
    for (const [name, keys] of sets) {
      if (keys === 'unchanged') continue;
      const bit = this.sets.bits.get(name);
      if (bit === undefined) {
        changes += keys.v4.length + keys.v6.length;
        continue;
      }
      for (const [family, wanted] of [
        [this.sets.v4, keys.v4],
        [this.sets.v6, keys.v6],
      ] as const) {
        const { add, remove } = family.diffKeys(wanted, bit);
        changes += add.length + remove.length;
      }
    }
    return changes > 65_536;
  }

  /** Every set's keys, parsing again the ones skipped as unchanged (a full replace needs all). */
  #parsedAll(sets: ReadonlyMap<string, PrefixKeys | 'unchanged'>): Map<string, PrefixKeys> {
    const out = new Map<string, PrefixKeys>();
    for (const [name, keys] of sets) {
      if (keys !== 'unchanged') out.set(name, keys);
      else {
        const bit = this.sets.bits.get(name)!;
        out.set(name, {
          v4: this.sets.v4.keysWithBit(bit) as Float64Array,
          v6: this.sets.v6.keysWithBit(bit) as string[],
        });
      }
    }
    return out;
  }

  #ifindex(device: string, what: string): number {
    const looked = this.#looked?.get(device);
    if (looked !== undefined) return looked;
    try {
      return ifindexOf(device, this.netns);
    } catch (error: unknown) {
      throw new DataplaneError(
        `${what}: no device "${device}"${this.netns ? ` in network namespace "${this.netns}"` : ''}`,
        'DEVICE_NOT_FOUND',
        { cause: error },
      );
    }
  }
}
