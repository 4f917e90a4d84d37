// The desired-state document as the controller keeps it: shape checks (TypeBox), normalisation
// (every list present, every rule an id), the data plane's own validation mapped back to JSON
// Pointers into the document, diffs, and the DataplaneSpec the reconciler and replay build from it.
//
// Rules belong to an attachment by `device` and `hook`. A rule whose attachment is not configured
// is kept and validated, but runs nowhere until the attachment is added: `sluice detach` does not
// delete rules, and rules may be written before `sluice attach`.
import type { TSchema } from 'typebox';
import { Value } from 'typebox/value';

import { SL_MAX_SETS } from './dataplane/abi.js';
import type { AttachmentSpec, DataplaneSpec } from './dataplane/dataplane.js';
import {
  DataplaneError,
  LimitExceededError,
  PrefixInvalidError,
  RuleInvalidError,
  RuleSetInvalidError,
} from './dataplane/errors.js';
import {
  sameElements,
  validateRuleSet,
  type RuleSetSpec,
  type RuleSpec,
} from './dataplane/model.js';
import { fingerprintTexts, prefixKeys, prefixKeysOf } from './dataplane/prefix-keys.js';
import type { ConfigDiff } from './contract.js';
import {
  ConfigSchema,
  DOCUMENT_VERSION,
  type AttachmentDoc,
  type ConfigDoc,
  type HookName,
  type NormalConfig,
  type RuleDoc,
} from './document.js';
import { ConfigInvalidError } from './errors.js';
import { diffServices, validateDecap, validateServices } from './lb/lb-config.js';
import { fitsSchema } from './schema-errors.js';

export type NormalRule = NormalConfig['rules'][number];

/** "veth1@xdp": the key of an attachment, and of the rule list it runs. */
export function attachmentKey(item: { device: string; hook?: HookName }): string {
  return `${item.device}@${item.hook ?? 'xdp'}`;
}

/** An empty desired state. */
export function emptyConfig(): NormalConfig {
  return { version: DOCUMENT_VERSION, attachments: [], sets: [], rules: [] };
}

// ---------------------------------------------------------------------------------------------
// Shape

/** JSON Pointer segment escaping (RFC 6901). */
function escapePointer(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** `rule "web"` for a pointer into /rules/<i> of `doc`, when that rule has an id. */
function ruleNameAt(doc: unknown, pointer: string): string {
  const m = /^\/rules\/(\d+)/.exec(pointer);
  if (!m) return '';
  const rule = (doc as { rules?: unknown[] })?.rules?.[Number(m[1])] as { id?: unknown };
  return typeof rule?.id === 'string' ? ` (rule "${rule.id}")` : '';
}

interface SchemaError {
  keyword: string;
  instancePath: string;
  params: Record<string, unknown>;
  message: string;
}

/**
 * Throws ConfigInvalidError for the first place where `doc` does not fit `schema`, its pointer
 * set, its message naming the place (and the rule id) and saying what was expected.
 */
export function checkShape(schema: TSchema, doc: unknown): void {
  if (fitsSchema(schema, doc)) return;
  const errors = [...Value.Errors(schema, doc)] as unknown as SchemaError[];
  if (errors.length === 0) return;
  const first = errors[0];
  let pointer = first.instancePath;
  let what: string;
  if (first.keyword === 'required') {
    const missing = (first.params.requiredProperties as string[]) ?? [];
    pointer = `${pointer}/${escapePointer(missing[0] ?? '')}`;
    what = 'is required';
  } else if (
    first.keyword === 'additionalProperties' ||
    (first.keyword === 'boolean' && errors.some((e) => e.keyword === 'additionalProperties'))
  ) {
    const extra = errors.find((e) => e.keyword === 'additionalProperties');
    const names = (extra?.params.additionalProperties as string[]) ?? [];
    if (first.keyword === 'additionalProperties') pointer = `${pointer}/${names[0] ?? ''}`;
    what = 'is not a known field';
  } else {
    const here = errors.filter((e) => e.instancePath === pointer && e.keyword !== 'anyOf');
    const consts = here.filter((e) => e.keyword === 'const');
    if (consts.length > 0 && consts.length === here.length) {
      const values = consts.map((e) => JSON.stringify(e.params.allowedValue));
      what = values.length === 1 ? `must be ${values[0]}` : `must be one of ${values.join(', ')}`;
    } else {
      what = [...new Set(here.map((e) => e.message))].join(', or ');
    }
  }
  const value = valueAt(doc, pointer);
  const shown = value === undefined ? '' : ` ${truncate(JSON.stringify(value))}`;
  throw new ConfigInvalidError(`${pointer || '/'}${ruleNameAt(doc, pointer)}:${shown} ${what}`, {
    pointer,
  });
}

function truncate(text: string): string {
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function valueAt(doc: unknown, pointer: string): unknown {
  let at: unknown = doc;
  for (const raw of pointer.split('/').slice(1)) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (typeof at !== 'object' || at === null) return undefined;
    at = (at as Record<string, unknown>)[key];
  }
  return at;
}

// ---------------------------------------------------------------------------------------------
// Normalisation

/** The rule's fields that say what it does, without its id: equal for the same rule. */
function ruleBody(rule: RuleDoc): string {
  const rest: Record<string, unknown> = { ...rule, hook: rule.hook ?? 'xdp' };
  delete rest.id;
  return stableJson(rest);
}

/** JSON with object keys sorted at every level: equal for equal values whatever the key order. */
function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const obj = value as Record<string, unknown>;
    return `{${Object.keys(obj)
      .filter((k) => obj[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableJson(obj[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * Makes a whole document a NormalConfig: shape checked, lists present, rules given ids. Ids given
 * are kept; a rule without one takes the id of an identical rule of `previous` (so applying the same
 * file again changes nothing), else `r<N>` from the counter. Throws ConfigInvalidError.
 */
export function normalizeDocument(
  doc: unknown,
  previous: NormalConfig,
  nextRuleId: number,
): { config: NormalConfig; nextRuleId: number } {
  checkShape(ConfigSchema, doc);
  const d = doc as ConfigDoc;
  const given = new Map<string, number>();
  (d.rules ?? []).forEach((r, i) => {
    if (r.id === undefined) return;
    const first = given.get(r.id);
    if (first !== undefined)
      throw new ConfigInvalidError(
        `/rules/${i}/id (rule "${r.id}"): is also the id of /rules/${first}: rule ids are unique`,
        { pointer: `/rules/${i}/id` },
      );
    given.set(r.id, i);
  });
  const reusable = new Map<string, string[]>();
  for (const r of previous.rules) {
    if (given.has(r.id)) continue;
    const body = ruleBody(r);
    reusable.set(body, [...(reusable.get(body) ?? []), r.id]);
  }
  let counter = nextRuleId;
  const taken = new Set(given.keys());
  const rules = (d.rules ?? []).map((r): NormalRule => {
    if (r.id !== undefined) return { ...r, id: r.id };
    const same = reusable.get(ruleBody(r));
    let id = same?.shift();
    while (id === undefined || taken.has(id)) {
      id = `r${counter++}`;
    }
    taken.add(id);
    return { ...r, id };
  });
  return {
    config: {
      version: DOCUMENT_VERSION,
      attachments: d.attachments ?? [],
      sets: d.sets ?? [],
      rules,
      ...(d.services && d.services.length > 0 ? { services: d.services } : {}),
      ...(d.lb ? { lb: d.lb } : {}),
    },
    nextRuleId: counter,
  };
}

// ---------------------------------------------------------------------------------------------
// Validation

/** Prefix arrays already parsed without error: a set is parsed again only when its array changes. */
const parsedSets = new WeakSet<readonly string[]>();

/**
 * Checks the prefixes a change adds to set `setIndex` of a document (already valid without them),
 * so that a one-prefix change to a million-prefix set does not parse the million again; then
 * records `whole` (the set's new array) as parsed. `offset` is where `added` starts in `whole`.
 * Throws ConfigInvalidError pointing at the entry.
 */
export function validateAddedPrefixes(
  name: string,
  setIndex: number,
  added: readonly string[],
  whole: readonly string[],
  offset: number,
): void {
  try {
    prefixKeys(added, name);
  } catch (error: unknown) {
    if (error instanceof PrefixInvalidError && error.entry !== undefined) {
      const pointer = `/sets/${setIndex}/prefixes/${offset + error.entry}`;
      throw new ConfigInvalidError(`${pointer}: ${error.message}`, { pointer, cause: error });
    }
    throw error;
  }
  parsedSets.add(whole);
}

/** Records `whole` as parsed: it holds only prefixes of arrays already parsed. */
export function markPrefixesParsed(whole: readonly string[]): void {
  parsedSets.add(whole);
}

/** RuleSpecs by rule: the same object for an unchanged rule, which the data plane checks once. */
const ruleSpecs = new WeakMap<NormalRule, RuleSpec>();

/** A RuleSpec (controller/dataplane) from a rule of the document. */
export function toRuleSpec(rule: NormalRule): RuleSpec {
  let spec = ruleSpecs.get(rule);
  if (spec === undefined) {
    const fields: Record<string, unknown> = { ...rule };
    delete fields.device;
    delete fields.hook;
    spec = fields as unknown as RuleSpec;
    ruleSpecs.set(rule, spec);
  }
  return spec;
}

/** ruleGroups per document: validating and then applying one document groups its rules once. */
const groupsOf = new WeakMap<NormalConfig, Map<string, RuleGroup>>();

/** The documents grouped last, newest first: a rule add's document is one plus a rule. */
const recentlyGrouped: Grouped[] = [];

/**
 * A document's rules and attachments with their groups: not the document, whose sets (a million
 * prefixes, replaced by a reload) must not be kept alive by this cache.
 */
interface Grouped {
  rules: NormalConfig['rules'];
  attachments: NormalConfig['attachments'];
  groups: Map<string, RuleGroup>;
}
const RECENTLY_GROUPED = 4;

type RuleGroup = { spec: RuleSetSpec; index: number[] };

function ruleGroups(config: NormalConfig): Map<string, RuleGroup> {
  let groups: Map<string, RuleGroup> | null | undefined = groupsOf.get(config);
  if (groups === undefined) {
    groups = null;
    for (const last of recentlyGrouped) if ((groups = groupAppended(last, config))) break;
    groups ??= groupRules(config);
    groupsOf.set(config, groups);
    recentlyGrouped.unshift({ rules: config.rules, attachments: config.attachments, groups });
    if (recentlyGrouped.length > RECENTLY_GROUPED) recentlyGrouped.pop();
  }
  return groups;
}

/**
 * The groups of `config` from those of `last` when `config` is `last` with rules appended (the
 * same attachments, the same rule objects first): only the groups that gain rules are new
 * objects, so every cache keyed on an unchanged group's spec still holds. Null otherwise.
 */
function groupAppended(last: Grouped, config: NormalConfig): Map<string, RuleGroup> | null {
  const before = last.rules;
  const rules = config.rules;
  if (config.attachments !== last.attachments || rules.length <= before.length) return null;
  for (let i = 0; i < before.length; i++) if (rules[i] !== before[i]) return null;
  const groups = new Map(last.groups);
  /** The groups that gain rules, with what they were. */
  const grown = new Map<string, RuleGroup | undefined>();
  for (let i = before.length; i < rules.length; i++) {
    const key = attachmentKey(rules[i]);
    let group = groups.get(key);
    if (!group || !grown.has(key)) {
      grown.set(key, group);
      group = group
        ? { spec: { ...group.spec, rules: [...group.spec.rules] }, index: [...group.index] }
        : { spec: { rules: [] }, index: [] };
      groups.set(key, group);
    }
    group.spec.rules.push(toRuleSpec(rules[i]));
    group.index.push(i);
  }
  // Redirect targets carry over too: the old set's plus the new rules'.
  for (const [key, old] of grown) {
    const known = old && targetsOf.get(old.spec);
    if (!known) continue;
    const spec = groups.get(key)!.spec;
    const added = spec.rules.slice(old.spec.rules.length).flatMap((r) => (r.to ? [r.to] : []));
    targetsOf.set(spec, added.length > 0 ? [...new Set([...known, ...added])] : known);
  }
  return groups;
}

function groupRules(config: NormalConfig): Map<string, RuleGroup> {
  const groups = new Map<string, RuleGroup>();
  for (const att of config.attachments) {
    groups.set(attachmentKey(att), {
      spec: {
        rules: [],
        ...(att.defaultAction ? { defaultAction: att.defaultAction } : {}),
        ...(att.malformed ? { malformed: att.malformed } : {}),
      },
      index: [],
    });
  }
  config.rules.forEach((rule, i) => {
    const key = attachmentKey(rule);
    let group = groups.get(key);
    if (!group) groups.set(key, (group = { spec: { rules: [] }, index: [] }));
    group.spec.rules.push(toRuleSpec(rule));
    group.index.push(i);
  });
  return groups;
}

/**
 * Checks everything the data plane would, before anything is persisted: unique attachments and
 * set names, every set's prefixes, and each attachment's rule set (controller/dataplane's
 * validateRuleSet). Throws ConfigInvalidError whose pointer names the place
 * ("/rules/3/dport", "/sets/0/prefixes/17") and whose cause is the data plane's error.
 */
export function validateConfig(config: NormalConfig): void {
  const attachments = new Map<string, number>();
  config.attachments.forEach((att, i) => {
    const key = attachmentKey(att);
    const first = attachments.get(key);
    if (first !== undefined)
      throw new ConfigInvalidError(
        `/attachments/${i}: attachment "${key}" is also /attachments/${first}: one per device and hook`,
        { pointer: `/attachments/${i}` },
      );
    attachments.set(key, i);
    if (att.mode !== undefined && (att.hook ?? 'xdp') !== 'xdp')
      throw new ConfigInvalidError(
        `/attachments/${i}/mode: attachment "${key}": mode is for the xdp hook only`,
        { pointer: `/attachments/${i}/mode` },
      );
    if (att.decap !== undefined) validateDecap(att.decap, key, i, att.hook ?? 'xdp');
  });
  if (config.sets.length > SL_MAX_SETS)
    throw new ConfigInvalidError(
      `/sets: ${config.sets.length} prefix sets, more than the ${SL_MAX_SETS} an instance holds`,
      { pointer: '/sets' },
    );
  const setNames = new Map<string, number>();
  config.sets.forEach((set, i) => {
    const first = setNames.get(set.name);
    if (first !== undefined)
      throw new ConfigInvalidError(
        `/sets/${i}/name: set "${set.name}" is also /sets/${first}: set names are unique`,
        { pointer: `/sets/${i}/name` },
      );
    setNames.set(set.name, i);
    if (parsedSets.has(set.prefixes)) return;
    try {
      // Parsed once: the data plane's load reuses these keys (and the fingerprint) for the same
      // array.
      prefixKeysOf(set.prefixes, set.name, fingerprintOf(set.prefixes));
    } catch (error: unknown) {
      if (error instanceof PrefixInvalidError && error.entry !== undefined) {
        throw new ConfigInvalidError(`/sets/${i}/prefixes/${error.entry}: ${error.message}`, {
          pointer: `/sets/${i}/prefixes/${error.entry}`,
          cause: error,
        });
      }
      throw error;
    }
    parsedSets.add(set.prefixes);
  });
  validateServices(config);
  const setsSeen = [...setNames.keys()].join('\0');
  for (const [key, group] of ruleGroups(config)) {
    if (validatedBefore(key, group.spec, setsSeen)) continue;
    try {
      validateRuleSet(group.spec, { sets: new Set(setNames.keys()) });
    } catch (error: unknown) {
      throw locate(error, key, group.index, attachments.get(key));
    }
    validGroups.set(key, { spec: group.spec, sets: setsSeen });
  }
}

/**
 * The rule set last found valid per attachment key: a change to one attachment does not check
 * the thousands of rules of the others again. Keyed by text, but a hit needs the very same rule
 * objects, so documents of other controllers in the process only miss.
 */
const validGroups = new Map<string, { spec: RuleSetSpec; sets: string }>();

function validatedBefore(key: string, spec: RuleSetSpec, sets: string): boolean {
  const last = validGroups.get(key);
  if (!last || last.sets !== sets) return false;
  const a = last.spec;
  if (a.defaultAction !== spec.defaultAction || a.malformed !== spec.malformed) return false;
  return sameElements(a.rules, spec.rules);
}

/** A data-plane validation error as a ConfigInvalidError pointing into the document. */
function locate(
  error: unknown,
  key: string,
  index: readonly number[],
  attachmentIndex: number | undefined,
): unknown {
  if (!(error instanceof DataplaneError)) return error;
  let pointer: string | undefined;
  const ruleIndex =
    error instanceof RuleInvalidError || error instanceof PrefixInvalidError
      ? error.ruleIndex
      : undefined;
  if (ruleIndex !== undefined) {
    const field = (error as { field?: string }).field;
    pointer = `/rules/${index[ruleIndex]}${field ? `/${field}` : ''}`;
  } else if (error instanceof RuleSetInvalidError && attachmentIndex !== undefined) {
    pointer = `/attachments/${attachmentIndex}/${error.field}`;
  } else if (error instanceof LimitExceededError) {
    pointer = '/rules';
  }
  if (pointer === undefined) return error;
  return new ConfigInvalidError(`${pointer}: attachment "${key}": ${error.message}`, {
    pointer,
    cause: error,
  });
}

// ---------------------------------------------------------------------------------------------
// Diff

function sameJson(a: unknown, b: unknown): boolean {
  return stableJson(a) === stableJson(b);
}

/**
 * What changes from `before` to `after`, object by object. `setChanges`, when given, are the
 * counts of changed sets already known (a million-prefix set is not compared again).
 */
export function diffConfig(
  before: NormalConfig,
  after: NormalConfig,
  setChanges?: ReadonlyMap<string, { added: number; removed: number }>,
): ConfigDiff {
  const diff: ConfigDiff = {
    attachments: { added: [], removed: [], changed: [] },
    sets: { added: [], removed: [], changed: [] },
    rules: { added: [], removed: [], changed: [] },
  };
  const keyed = <T>(list: readonly T[], key: (item: T) => string): Map<string, T> =>
    new Map(list.map((item) => [key(item), item]));

  const attBefore = keyed(before.attachments, attachmentKey);
  const attAfter = keyed(after.attachments, attachmentKey);
  for (const [k, a] of attAfter) {
    const b = attBefore.get(k);
    if (!b) diff.attachments.added.push(k);
    else if (!sameJson(normalAttachment(a), normalAttachment(b))) diff.attachments.changed.push(k);
  }
  for (const k of attBefore.keys()) if (!attAfter.has(k)) diff.attachments.removed.push(k);

  const setBefore = keyed(before.sets, (s) => s.name);
  const setAfter = keyed(after.sets, (s) => s.name);
  for (const [name, s] of setAfter) {
    const b = setBefore.get(name);
    if (!b) diff.sets.added.push(name);
    else if (b.prefixes !== s.prefixes) {
      const { added, removed } = setChanges?.get(name) ?? countChanges(b.prefixes, s.prefixes);
      if (added + removed > 0) diff.sets.changed.push({ name, added, removed });
    }
  }
  for (const name of setBefore.keys()) if (!setAfter.has(name)) diff.sets.removed.push(name);

  const ruleBefore = keyed(before.rules, (r) => r.id);
  const ruleAfter = keyed(after.rules, (r) => r.id);
  const orderBefore = before.rules.map((r) => r.id);
  const orderAfter = after.rules.map((r) => r.id).filter((id) => ruleBefore.has(id));
  const kept = orderBefore.filter((id) => ruleAfter.has(id));
  // Positions by id, once: a change to one rule of thousands must not cost thousands squared.
  const keptAt = new Map(kept.map((id, i) => [id, i]));
  const afterAt = new Map(orderAfter.map((id, i) => [id, i]));
  for (const [id, r] of ruleAfter) {
    const b = ruleBefore.get(id);
    if (!b) diff.rules.added.push(id);
    else if (
      // Changes carry unchanged rules over as the same objects: no need to compare those.
      (r !== b && !sameJson(normalRule(r), normalRule(b))) ||
      keptAt.get(id) !== afterAt.get(id)
    )
      diff.rules.changed.push(id);
  }
  for (const id of ruleBefore.keys()) if (!ruleAfter.has(id)) diff.rules.removed.push(id);
  const services = diffServices(before, after);
  if (services) diff.services = services;
  return diff;
}

function normalAttachment(a: AttachmentDoc): AttachmentDoc {
  return { ...a, hook: a.hook ?? 'xdp' };
}

/** A rule as compared: an absent hook is "xdp" (GET /v1/config writes the default out). */
function normalRule(r: RuleDoc): RuleDoc {
  return { ...r, hook: r.hook ?? 'xdp' };
}

/** Prefixes added and removed between two lists (as text, duplicates counted once). */
function countChanges(
  before: readonly string[],
  after: readonly string[],
): { added: number; removed: number } {
  const old = new Set(before);
  const now = new Set(after);
  let added = 0;
  let removed = 0;
  for (const p of now) if (!old.has(p)) added++;
  for (const p of old) if (!now.has(p)) removed++;
  return { added, removed };
}

/** True when the diff changes nothing. */
export function isEmptyDiff(diff: ConfigDiff): boolean {
  return [diff.attachments, diff.sets, diff.rules, ...(diff.services ? [diff.services] : [])].every(
    (d) => d.added.length + d.removed.length + d.changed.length === 0,
  );
}

// ---------------------------------------------------------------------------------------------
// Data plane spec

/** Why an attachment of the desired state is not in the DataplaneSpec. */
export interface PendingAttachment {
  key: string;
  device: string;
  hook: HookName;
  reason: string;
}

/**
 * The DataplaneSpec of `config`: every set, and each configured attachment with its rules in
 * document order. With `existingDevices`, attachments whose device (or a redirect target) is not
 * among them are left out and listed in `pending`; without it, every attachment is included.
 */
export function toDataplaneSpec(
  config: NormalConfig,
  existingDevices?: ReadonlySet<string>,
): DataplaneSpec & { pending: PendingAttachment[] } {
  const groups = ruleGroups(config);
  const attachments: AttachmentSpec[] = [];
  const pending: PendingAttachment[] = [];
  for (const att of config.attachments) {
    const key = attachmentKey(att);
    const hook = att.hook ?? 'xdp';
    const rules = groups.get(key)!.spec;
    if (existingDevices) {
      const missing = [att.device, ...redirectTargets(rules)].find((d) => !existingDevices.has(d));
      if (missing !== undefined) {
        pending.push({
          key,
          device: att.device,
          hook,
          reason:
            missing === att.device
              ? `device "${missing}" does not exist`
              : `redirect target device "${missing}" does not exist`,
        });
        continue;
      }
    }
    attachments.push({
      device: att.device,
      hook,
      ...(hook === 'xdp' ? { mode: att.mode ?? 'native' } : {}),
      rules,
    });
  }
  const sets = config.sets.map((set) => ({
    name: set.name,
    prefixes: set.prefixes,
    fingerprint: fingerprintOf(set.prefixes),
  }));
  return { sets, attachments, pending };
}

/** The devices a rule set redirects to, once per rule set object (ruleGroups keeps them). */
const targetsOf = new WeakMap<RuleSetSpec, string[]>();

function redirectTargets(rules: RuleSetSpec): string[] {
  let targets = targetsOf.get(rules);
  if (targets === undefined) {
    targets = [...new Set(rules.rules.flatMap((r) => (r.to ? [r.to] : [])))];
    targetsOf.set(rules, targets);
  }
  return targets;
}

/** Fingerprints per prefix array: the controller never changes an array, it makes a new one. */
const fingerprints = new WeakMap<readonly string[], string>();

/** fingerprintTexts(list), computed once per array. */
function fingerprintOf(list: readonly string[]): string {
  let fp = fingerprints.get(list);
  if (fp === undefined) {
    fp = fingerprintTexts(list);
    fingerprints.set(list, fp);
  }
  return fp;
}
