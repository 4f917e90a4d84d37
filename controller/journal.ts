// The state directory's change journal: one JSON line per committed group of changes, saying how
// the desired state moved from the one before. Appending a line and one fdatasync is the whole
// commit of a rule add, where rewriting state.json would serialise every rule and fsync twice.
// store.ts owns the file; this module builds records and replays them, and touches no disk.
//
// A record carries the new generation and rule-id counter, and only what changed:
//   attachments   the whole list, when it changed (it is short)
//   rules         the whole list; or removeRules (ids, applied first) and appendRules (rules, in
//                 order): the kept rules stay in their order, the appended ones follow
//   sets          per set whose prefixes changed: `edits` (prefixes added, then removed, in the
//                 order the changes made them) or `file` (a set file written whole)
//   setOrder      the set names in order, when a set came or went (sets not named are removed)
//   services      the whole list, when it changed (an empty list: none)
//   lb            the balancer settings, when they changed (an empty object: the defaults)
import { Type, type Static } from 'typebox';

import {
  AttachmentSchema,
  LbSettingsSchema,
  ServiceSchema,
  SetFileNameSchema,
  SetNameSchema,
  StoredRuleSchema,
  type NormalConfig,
  type SetDoc,
} from './document.js';

type NormalRule = NormalConfig['rules'][number];

/** A change to one set's prefixes that the controller made: `after` is `before` with the edit. */
export interface SetEdit {
  name: string;
  before: readonly string[];
  after: readonly string[];
  add?: readonly string[];
  remove?: readonly string[];
}

const EditSchema = Type.Object(
  {
    add: Type.Optional(Type.Array(Type.String())),
    remove: Type.Optional(Type.Array(Type.String())),
  },
  { additionalProperties: false },
);

export const JournalRecordSchema = Type.Object(
  {
    generation: Type.Integer({ minimum: 1 }),
    nextRuleId: Type.Integer({ minimum: 1 }),
    attachments: Type.Optional(Type.Array(AttachmentSchema)),
    rules: Type.Optional(Type.Array(StoredRuleSchema)),
    removeRules: Type.Optional(Type.Array(Type.String())),
    appendRules: Type.Optional(Type.Array(StoredRuleSchema)),
    sets: Type.Optional(
      Type.Array(
        Type.Object(
          {
            name: SetNameSchema,
            file: Type.Optional(SetFileNameSchema),
            count: Type.Optional(Type.Integer({ minimum: 0 })),
            edits: Type.Optional(Type.Array(EditSchema)),
          },
          { additionalProperties: false },
        ),
      ),
    ),
    setOrder: Type.Optional(Type.Array(SetNameSchema)),
    services: Type.Optional(Type.Array(ServiceSchema)),
    lb: Type.Optional(LbSettingsSchema),
  },
  { additionalProperties: false },
);
export type JournalRecord = Static<typeof JournalRecordSchema>;

/** What the store knows of a set when it builds a record. */
export interface SetTarget {
  /** Write the set whole to a file and return the file's name (under sets/). */
  writeFile(name: string, prefixes: readonly string[]): Promise<string>;
}

/**
 * The rule list change from `before` to `after` as removals then appends, found by object
 * identity (the controller carries unchanged rules over as the same objects); undefined when
 * that would be longer than listing the rules whole.
 */
function ruleEdit(
  before: readonly NormalRule[],
  after: readonly NormalRule[],
): { removeRules: string[]; appendRules: NormalRule[] } | undefined {
  const removeRules: string[] = [];
  let i = 0;
  let j = 0;
  while (i < before.length && j < after.length) {
    if (before[i] === after[j]) {
      i++;
      j++;
    } else {
      removeRules.push(before[i].id);
      i++;
    }
  }
  for (; i < before.length; i++) removeRules.push(before[i].id);
  const appendRules = after.slice(j);
  if (removeRules.length + appendRules.length > Math.max(16, after.length / 2)) return undefined;
  return { removeRules, appendRules };
}

/**
 * The record taking `before` to `after`. Sets whose change `edits` explains (a chain of edits
 * from the old array to the new one) are recorded as edits; other changed or new sets are
 * written whole through `target`.
 */
export async function buildRecord(
  before: { config: NormalConfig },
  after: { config: NormalConfig; generation: number; nextRuleId: number },
  edits: readonly SetEdit[],
  target: SetTarget,
): Promise<JournalRecord> {
  const record: JournalRecord = { generation: after.generation, nextRuleId: after.nextRuleId };
  const b = before.config;
  const a = after.config;
  if (a.attachments !== b.attachments) record.attachments = [...a.attachments];
  if (a.services !== b.services) record.services = [...(a.services ?? [])];
  if (a.lb !== b.lb) record.lb = a.lb ?? {};
  if (a.rules !== b.rules) {
    const edit = ruleEdit(b.rules, a.rules);
    if (edit === undefined) record.rules = [...a.rules];
    else {
      if (edit.removeRules.length > 0) record.removeRules = edit.removeRules;
      if (edit.appendRules.length > 0) record.appendRules = edit.appendRules;
    }
  }
  const old = new Map(b.sets.map((s) => [s.name, s.prefixes]));
  const sets: NonNullable<JournalRecord['sets']> = [];
  for (const set of a.sets) {
    const was = old.get(set.name);
    if (was === set.prefixes) continue;
    const chain = was === undefined ? undefined : editChain(set.name, was, set.prefixes, edits);
    if (chain !== undefined) {
      if (chain.length > 0) sets.push({ name: set.name, edits: chain });
    } else {
      const file = await target.writeFile(set.name, set.prefixes);
      sets.push({ name: set.name, file, count: set.prefixes.length });
    }
  }
  if (sets.length > 0) record.sets = sets;
  const names = (list: readonly SetDoc[]): string => list.map((s) => s.name).join('\0');
  if (names(a.sets) !== names(b.sets)) record.setOrder = a.sets.map((s) => s.name);
  return record;
}

/** The edits leading from `from` to `to` for set `name`, or undefined when they do not. */
function editChain(
  name: string,
  from: readonly string[],
  to: readonly string[],
  edits: readonly SetEdit[],
): { add?: string[]; remove?: string[] }[] | undefined {
  const chain: { add?: string[]; remove?: string[] }[] = [];
  let at = from;
  for (const edit of edits) {
    if (edit.name !== name || edit.before !== at) continue;
    const step: { add?: string[]; remove?: string[] } = {};
    if (edit.add?.length) step.add = [...edit.add];
    if (edit.remove?.length) step.remove = [...edit.remove];
    if (step.add || step.remove) chain.push(step);
    at = edit.after;
    if (at === to) return chain;
  }
  return at === to ? chain : undefined;
}

/**
 * Applies `records` (in order, each newer than `state`) to `state`; `readSet` reads a set file
 * a record names. Prefix edits are applied as the controller made them: additions appended,
 * removals taken out wherever they stand.
 */
export async function replayRecords(
  state: { config: NormalConfig; generation: number; nextRuleId: number },
  records: readonly JournalRecord[],
  readSet: (file: string, count: number | undefined, name: string) => Promise<string[]>,
): Promise<{ config: NormalConfig; generation: number; nextRuleId: number }> {
  let { attachments, rules, services, lb } = state.config;
  const sets = new Map<string, readonly string[]>(
    state.config.sets.map((s) => [s.name, s.prefixes]),
  );
  let order = state.config.sets.map((s) => s.name);
  /** Sets being edited, as insertion-ordered sets (when their prefixes are distinct). */
  const editing = new Map<string, Set<string> | string[]>();
  let generation = state.generation;
  let nextRuleId = state.nextRuleId;
  for (const r of records) {
    generation = r.generation;
    nextRuleId = r.nextRuleId;
    if (r.attachments) attachments = r.attachments;
    if (r.services) services = r.services;
    if (r.lb) lb = Object.keys(r.lb).length > 0 ? r.lb : undefined;
    if (r.rules) rules = r.rules as NormalRule[];
    if (r.removeRules?.length) {
      const gone = new Set(r.removeRules);
      rules = rules.filter((rule) => !gone.has(rule.id));
    }
    if (r.appendRules?.length) rules = [...rules, ...(r.appendRules as NormalRule[])];
    for (const s of r.sets ?? []) {
      if (s.file !== undefined) {
        editing.delete(s.name);
        sets.set(s.name, await readSet(s.file, s.count, s.name));
      }
      for (const edit of s.edits ?? []) {
        let members = editing.get(s.name);
        if (members === undefined) {
          const list = sets.get(s.name) ?? [];
          const distinct = new Set(list);
          members = distinct.size === list.length ? distinct : [...list];
          editing.set(s.name, members);
        }
        if (members instanceof Set) {
          for (const p of edit.add ?? []) members.add(p);
          for (const p of edit.remove ?? []) members.delete(p);
        } else {
          members.push(...(edit.add ?? []));
          const drop = new Set(edit.remove ?? []);
          if (drop.size > 0)
            editing.set(
              s.name,
              members.filter((p) => !drop.has(p)),
            );
        }
      }
    }
    if (r.setOrder) {
      order = r.setOrder;
      for (const name of [...sets.keys()]) if (!order.includes(name)) sets.delete(name);
      for (const name of [...editing.keys()]) if (!order.includes(name)) editing.delete(name);
    }
  }
  for (const [name, members] of editing) sets.set(name, [...members]);
  const config: NormalConfig = { ...state.config };
  delete config.services;
  delete config.lb;
  return {
    config: {
      ...config,
      ...(services && services.length > 0 ? { services } : {}),
      ...(lb ? { lb } : {}),
      attachments,
      rules,
      sets: order.map((name) => ({ name, prefixes: (sets.get(name) ?? []) as string[] })),
    },
    generation,
    nextRuleId,
  };
}
