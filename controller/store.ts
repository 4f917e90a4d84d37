// Persistence of the desired state in a state directory (default /var/lib/sluice).
//
// Layout:
//   lock                      the pid of the daemon serving the directory (O_EXCL; stale when
//                             that pid is dead)
//   state.json                schema version, generation, rule-id counter, attachments, rules,
//                             and each set by name with the file holding its prefixes
//   sets/<name>.<gen>.txt     one prefix per line, written once and never changed
//
// Commit protocol: a change writes its new set files first (each: open tmp 'wx', write, fsync,
// rename, fsync the directory), then state.json the same way; the rename of state.json is the
// commit point. Only then are superseded set files deleted. A crash before the rename leaves the
// old state.json referencing the old set files, which are still there; set files (and tmp files)
// nothing references are deleted on load. So a rule change rewrites a few hundred bytes, a set
// change writes that set only, and nothing is ever half-written.
//
// The journal (journal.ndjson, see journal.ts): a change appends one line saying what changed and
// fdatasyncs it; that is its commit point. load() replays the lines newer than state.json's
// generation; a last line without its newline (a crash mid-append) was never acknowledged and is
// cut off. Every JOURNAL_MAX_RECORDS lines or JOURNAL_MAX_BYTES (and on close) the state is
// written whole as above and the journal emptied; lines a crash left behind after that are older
// than state.json and skipped.
//
// Schema versions: `schema` counts the state file's layout. MIGRATIONS[n] turns a schema-n object
// into a schema-(n+1) one; load runs them in order and the next save writes the newest layout. A
// file from a newer sluice (schema above STATE_SCHEMA) is refused, untouched.
import { constants, existsSync, mkdirSync, readFileSync, readdirSync, renameSync } from 'node:fs';
import { fdatasync, ftruncate, write as writeFd } from 'node:fs';
import { open, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { openSync, closeSync, writeSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { Type, type Static } from 'typebox';
import { Value } from 'typebox/value';

import {
  AttachmentSchema,
  LbSettingsSchema,
  ServiceSchema,
  DOCUMENT_VERSION,
  SetFileNameSchema,
  StoredRuleSchema,
  SetNameSchema,
  type NormalConfig,
  type SetDoc,
} from './document.js';
import { StateCorruptError, StateLockedError, StateWriteError } from './errors.js';
import {
  JournalRecordSchema,
  buildRecord,
  replayRecords,
  type JournalRecord,
  type SetEdit,
} from './journal.js';
import { fitsSchema } from './schema-errors.js';

/** Where the daemon keeps its state unless told otherwise. */
export const DEFAULT_STATE_DIR = '/var/lib/sluice';

/**
 * The state file layout this build writes (and the newest it reads). 2: state.json plus the
 * journal, which a sluice that knows only schema 1 would ignore, losing the changes in it.
 */
export const STATE_SCHEMA = 2;

const STATE_FILE = 'state.json';
const JOURNAL_FILE = 'journal.ndjson';
/** The journal is folded into state.json after this many lines, or bytes. */
const JOURNAL_MAX_RECORDS = 2000;
const JOURNAL_MAX_BYTES = 8 * 2 ** 20;

const writeAsync = promisify(writeFd);
const fdatasyncAsync = promisify(fdatasync);
const ftruncateAsync = promisify(ftruncate);
const LOCK_FILE = 'lock';
const SETS_DIR = 'sets';

const StoredSetSchema = Type.Object(
  {
    name: SetNameSchema,
    /** File name under sets/. */
    file: SetFileNameSchema,
    count: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);

/** state.json, schema 1. */
export const StateFileSchema = Type.Object(
  {
    schema: Type.Literal(STATE_SCHEMA),
    generation: Type.Integer({ minimum: 0 }),
    nextRuleId: Type.Integer({ minimum: 1 }),
    attachments: Type.Array(AttachmentSchema),
    sets: Type.Array(StoredSetSchema),
    rules: Type.Array(StoredRuleSchema),
    services: Type.Optional(Type.Array(ServiceSchema)),
    lb: Type.Optional(LbSettingsSchema),
  },
  { additionalProperties: false },
);
export type StateFile = Static<typeof StateFileSchema>;

/**
 * Migrations, by the schema they read: MIGRATIONS[n] takes a schema-n object and returns a
 * schema-(n+1) one, or throws to call the file corrupt. Schema 0 is what the first daemon
 * prototype wrote: `{ generation, config }` with the sets' prefixes inline, no `schema` field
 * and no rule-id counter. Its sets come out with `prefixes` in place of `file`; load writes
 * them to set files.
 */
export const MIGRATIONS: Record<number, (old: Record<string, unknown>) => Record<string, unknown>> =
  {
    0: (old) => {
      const config = (old.config ?? {}) as Record<string, unknown>;
      const rules = (config.rules ?? []) as { id?: string }[];
      const numbered = rules
        .map((r) => /^r(\d+)$/.exec(r.id ?? '')?.[1])
        .filter((n): n is string => n !== undefined)
        .map(Number);
      return {
        schema: 1,
        generation: old.generation ?? 0,
        nextRuleId: Math.max(0, ...numbered) + 1,
        attachments: config.attachments ?? [],
        sets: config.sets ?? [],
        rules,
      };
    },
    // Schema 2 adds the journal beside the file; the file itself is the same.
    1: (old) => ({ ...old, schema: 2 }),
  };

/** What load() returns: the desired state as last committed. */
export interface LoadedState {
  config: NormalConfig;
  generation: number;
  /** The next number of a generated rule id ("r<N>"). */
  nextRuleId: number;
}

/** What save() commits. */
export type SavedState = LoadedState;

interface WrittenSet {
  file: string;
  /** The array last written: a set whose array is this very one is not written again. */
  prefixes: readonly string[];
}

/** The set file name of `name` at `generation`. */
function setFileName(name: string, generation: number): string {
  return `${name}.${generation}.txt`;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error: unknown) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fd = await open(dir, 'r');
  try {
    await fd.sync();
  } finally {
    await fd.close();
  }
}

/**
 * Writes `data` to `path` atomically: a tmp file created exclusively beside it, written, fsynced,
 * renamed over `path`, and the directory fsynced. A stale tmp file of a crashed write is removed
 * first.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const dir = path.slice(0, path.lastIndexOf('/')) || '/';
  const tmp = `${path}.tmp`;
  await unlink(tmp).catch(() => undefined);
  const fd = await open(tmp, 'wx', 0o600);
  try {
    await writeFile(fd, data);
    await fd.sync();
  } finally {
    await fd.close();
  }
  await rename(tmp, path);
  await fsyncDir(dir);
}

/**
 * The state directory of one daemon: the lock, state.json and the set files. open() takes the
 * lock; close() releases it.
 */
export class StateStore {
  readonly #written = new Map<string, WrittenSet>();
  /** Set files the journal names, and those state.json names: kept until it is written whole. */
  readonly #heldFiles = new Set<string>();
  #closed = false;
  /** The state as last committed, which the next journal record starts from. */
  #last: SavedState | undefined;
  #journalFd: number | undefined;
  #journalBytes = 0;
  #journalRecords = 0;

  private constructor(readonly dir: string) {}

  get statePath(): string {
    return join(this.dir, STATE_FILE);
  }

  get journalPath(): string {
    return join(this.dir, JOURNAL_FILE);
  }

  /**
   * Opens `dir` (created if missing) and takes its lock. Throws StateLockedError when a live
   * process holds it; a lock whose pid is dead is taken over.
   */
  static open(dir: string = DEFAULT_STATE_DIR): StateStore {
    mkdirSync(join(dir, SETS_DIR), { recursive: true, mode: 0o700 });
    takeLock(dir);
    return new StateStore(dir);
  }

  /**
   * Reads the committed state; an empty state at generation 0 when there is none. Throws
   * StateCorruptError (the file moved aside, never overwritten) when state.json or a set file
   * it references cannot be read or fails the schema; StateCorruptError with `keptAs` the file
   * itself, untouched, when a newer sluice wrote it.
   */
  async load(): Promise<LoadedState> {
    const path = this.statePath;
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error: unknown) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      // A journal without a state file is one whose first commit never completed: no change
      // was acknowledged from it.
      await unlink(this.journalPath).catch(() => undefined);
      this.#sweep(new Set());
      return {
        config: { version: DOCUMENT_VERSION, attachments: [], sets: [], rules: [] },
        generation: 0,
        nextRuleId: 1,
      };
    }
    let raw: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(text);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
        throw new Error('it is not a JSON object');
      raw = parsed as Record<string, unknown>;
    } catch (error: unknown) {
      this.#corrupt(`it is not valid JSON (${(error as Error).message})`, error);
    }
    const schema = raw.schema ?? 0;
    if (typeof schema !== 'number' || !Number.isInteger(schema) || schema < 0)
      this.#corrupt(`its schema ${JSON.stringify(schema)} is not a version number`);
    if (schema > STATE_SCHEMA) {
      throw new StateCorruptError(
        `state file "${path}" has schema ${schema}, newer than the ${STATE_SCHEMA} this sluice reads: it was written by a newer sluice; run that version, or move the file away to start with an empty state`,
        path,
      );
    }
    let migrated = false;
    for (let v = schema; v < STATE_SCHEMA; v++) {
      try {
        raw = MIGRATIONS[v](raw);
      } catch (error: unknown) {
        this.#corrupt(`migrating it from schema ${v} failed (${(error as Error).message})`, error);
      }
      migrated = true;
    }
    // Sets a migration left inline (schema 0) are written to files by the save below.
    const inline = new Map<string, string[]>();
    if (migrated && Array.isArray(raw.sets)) {
      raw.sets = (raw.sets as SetDoc[]).map((s, i) => {
        if (!Array.isArray(s?.prefixes)) return s;
        inline.set(s.name, s.prefixes);
        return { name: s.name, file: setFileName(`${i}`, 0), count: s.prefixes.length };
      });
    }
    const first = fitsSchema(StateFileSchema, raw)
      ? { done: true as const, value: undefined }
      : Value.Errors(StateFileSchema, raw)[Symbol.iterator]().next();
    if (!first.done) {
      const e = first.value;
      this.#corrupt(`${e.instancePath || '/'} ${e.message}`);
    }
    const state = raw as StateFile;
    const sets: SetDoc[] = [];
    for (const s of state.sets) {
      let prefixes = inline.get(s.name);
      if (prefixes === undefined) {
        try {
          prefixes = await readSetFile(join(this.dir, SETS_DIR, s.file));
        } catch (error: unknown) {
          this.#corrupt(`set "${s.name}": reading "${SETS_DIR}/${s.file}" failed`, error);
        }
        if (prefixes.length !== s.count)
          this.#corrupt(
            `set "${s.name}": "${SETS_DIR}/${s.file}" holds ${prefixes.length} prefixes, not ${s.count}`,
          );
        this.#written.set(s.name, { file: s.file, prefixes });
      }
      sets.push({ name: s.name, prefixes });
    }
    const snapshot: LoadedState = {
      config: {
        version: DOCUMENT_VERSION,
        attachments: state.attachments,
        sets,
        rules: state.rules,
        ...(state.services && state.services.length > 0 ? { services: state.services } : {}),
        ...(state.lb ? { lb: state.lb } : {}),
      },
      generation: state.generation,
      nextRuleId: state.nextRuleId,
    };
    const records = await this.#readJournal(snapshot.generation);
    const loaded =
      records.length === 0
        ? snapshot
        : await replayRecords(snapshot, records, async (file, count, name) => {
            let prefixes: string[];
            try {
              prefixes = await readSetFile(join(this.dir, SETS_DIR, file));
            } catch (error: unknown) {
              this.#corruptJournal(`set "${name}": reading "${SETS_DIR}/${file}" failed`, error);
            }
            if (count !== undefined && prefixes.length !== count)
              this.#corruptJournal(
                `set "${name}": "${SETS_DIR}/${file}" holds ${prefixes.length} prefixes, not ${count}`,
              );
            const before = this.#written.get(name);
            if (before) this.#heldFiles.add(before.file);
            this.#heldFiles.add(file);
            this.#written.set(name, { file, prefixes });
            return prefixes;
          });
    if (migrated) await this.#saveWhole(loaded);
    else this.#sweep(new Set([...state.sets.map((s) => s.file), ...this.#heldFiles]));
    this.#last = loaded;
    return loaded;
  }

  /**
   * The journal's records newer than `generation`, in order. A last line without its newline is
   * cut off the file; a complete line that is not a record makes the journal corrupt.
   */
  async #readJournal(generation: number): Promise<JournalRecord[]> {
    let text: string;
    try {
      text = await readFile(this.journalPath, 'utf8');
    } catch (error: unknown) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    const end = text.lastIndexOf('\n') + 1;
    if (end < text.length) {
      // A crash mid-append: that change was never acknowledged.
      const fd = openSync(this.journalPath, 'r+');
      try {
        await ftruncateAsync(fd, Buffer.byteLength(text.slice(0, end)));
        await fdatasyncAsync(fd);
      } finally {
        closeSync(fd);
      }
    }
    const lines = text.slice(0, end).split('\n');
    lines.pop();
    const records: JournalRecord[] = [];
    let last = generation;
    lines.forEach((line, i) => {
      let record: unknown;
      try {
        record = JSON.parse(line);
      } catch (error: unknown) {
        this.#corruptJournal(`line ${i + 1} is not valid JSON (${(error as Error).message})`);
      }
      if (!fitsSchema(JournalRecordSchema, record)) {
        const e = Value.Errors(JournalRecordSchema, record)[Symbol.iterator]().next().value;
        this.#corruptJournal(`line ${i + 1}: ${e?.instancePath || '/'} ${e?.message ?? 'invalid'}`);
      }
      const r = record as JournalRecord;
      if (r.generation <= generation) return; // folded into state.json already
      if (r.generation <= last)
        this.#corruptJournal(`line ${i + 1}: generation ${r.generation} does not follow ${last}`);
      last = r.generation;
      records.push(r);
    });
    this.#journalRecords = lines.length;
    this.#journalBytes = end;
    return records;
  }

  /** Moves the journal aside and throws StateCorruptError. */
  #corruptJournal(why: string, cause?: unknown): never {
    const path = this.journalPath;
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    let keptAs = `${path}.corrupt-${stamp}`;
    for (let n = 1; existsSync(keptAs); n++) keptAs = `${path}.corrupt-${stamp}-${n}`;
    renameSync(path, keptAs);
    throw new StateCorruptError(
      `state journal "${path}" is corrupt: ${why}; it was moved to "${keptAs}". Start again to begin with the state of "${this.statePath}" (the changes after it are in the moved file), or repair the journal and move it back`,
      keptAs,
      cause === undefined ? undefined : { cause },
    );
  }

  /**
   * Commits `state`: as one journal line saying what changed since the last commit (`edits` say
   * how sets' prefixes changed, so those are not written whole), or, every so often, whole (see
   * #saveWhole). Throws StateWriteError; then the previous state is still the committed one.
   */
  async save(state: SavedState, edits: readonly SetEdit[] = []): Promise<void> {
    if (this.#closed) throw new StateWriteError(`save state in "${this.dir}": the store is closed`);
    const last = this.#last;
    if (
      last === undefined ||
      this.#journalRecords >= JOURNAL_MAX_RECORDS ||
      this.#journalBytes >= JOURNAL_MAX_BYTES
    ) {
      await this.#saveWhole(state);
      this.#last = state;
      return;
    }
    const created: string[] = [];
    const whole = new Map<string, WrittenSet>();
    const fd = this.#journalFd;
    let wrote = false;
    try {
      const record = await buildRecord(last, state, edits, {
        writeFile: async (name, prefixes) => {
          let file = setFileName(name, state.generation);
          if (this.#written.get(name)?.file === file || this.#heldFiles.has(file))
            file = setFileName(name, state.generation + 1);
          await writeFileAtomic(join(this.dir, SETS_DIR, file), encodeLines(prefixes));
          created.push(file);
          whole.set(name, { file, prefixes });
          return file;
        },
      });
      const line = Buffer.from(`${JSON.stringify(record)}\n`);
      const journal = fd ?? (await this.#openJournal());
      wrote = true;
      // Durable when the write returns: the journal is opened O_DSYNC, so no fdatasync follows
      // (one trip to libuv's pool per commit, not two, each waiting for the busy main thread).
      await writeAsync(journal, line, 0, line.length, null);
      this.#journalBytes += line.length;
      this.#journalRecords += 1;
    } catch (error: unknown) {
      for (const file of created) await unlink(join(this.dir, SETS_DIR, file)).catch(() => {});
      // Take back a line that may be partly written, so the next one does not follow it; when
      // even that fails, the next commit writes the state whole and empties the journal.
      if (wrote && this.#journalFd !== undefined) {
        await ftruncateAsync(this.#journalFd, this.#journalBytes).catch(() => {
          this.#last = undefined;
        });
      }
      throw new StateWriteError(
        `save state generation ${state.generation} in "${this.dir}": ${(error as Error).message}`,
        { cause: error },
      );
    }
    for (const [name, w] of whole) {
      // The file written before stays while state.json names it: removed at the next whole save.
      const before = this.#written.get(name);
      if (before) this.#heldFiles.add(before.file);
      this.#heldFiles.add(w.file);
      this.#written.set(name, w);
    }
    this.#last = state;
  }

  /** Folds the journal into state.json (on close, so the next start replays nothing). */
  async compact(): Promise<void> {
    if (this.#closed || this.#last === undefined || this.#journalRecords === 0) return;
    await this.#saveWhole(this.#last);
  }

  /** Opens (creating) the journal for appending; its directory entry made durable once. */
  async #openJournal(): Promise<number> {
    const fd = openSync(
      this.journalPath,
      constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND | constants.O_DSYNC,
      0o600,
    );
    await fsyncDir(this.dir);
    this.#journalFd = fd;
    return fd;
  }

  /**
   * Commits `state` whole: new set files (only for sets whose prefix array is not the one last
   * written), then state.json, then empties the journal and removes superseded set files.
   */
  async #saveWhole(state: SavedState): Promise<void> {
    const next = new Map<string, WrittenSet>();
    const created: string[] = [];
    try {
      for (const set of state.config.sets) {
        const before = this.#written.get(set.name);
        if (before && before.prefixes === set.prefixes) {
          next.set(set.name, before);
          continue;
        }
        let file = setFileName(set.name, state.generation);
        if (before?.file === file) file = setFileName(set.name, state.generation + 1);
        await writeFileAtomic(join(this.dir, SETS_DIR, file), encodeLines(set.prefixes));
        created.push(file);
        next.set(set.name, { file, prefixes: set.prefixes });
      }
      const body: StateFile = {
        schema: STATE_SCHEMA,
        generation: state.generation,
        nextRuleId: state.nextRuleId,
        attachments: state.config.attachments,
        sets: state.config.sets.map((s) => ({
          name: s.name,
          file: next.get(s.name)!.file,
          count: s.prefixes.length,
        })),
        rules: state.config.rules,
        ...(state.config.services?.length ? { services: state.config.services } : {}),
        ...(state.config.lb ? { lb: state.config.lb } : {}),
      };
      await writeFileAtomic(this.statePath, `${JSON.stringify(body, null, 1)}\n`);
    } catch (error: unknown) {
      for (const file of created) await unlink(join(this.dir, SETS_DIR, file)).catch(() => {});
      throw new StateWriteError(
        `save state generation ${state.generation} in "${this.dir}": ${(error as Error).message}`,
        { cause: error },
      );
    }
    // state.json now holds everything: the journal's lines are older than it.
    if (this.#journalRecords > 0 || this.#journalBytes > 0) {
      const fd = this.#journalFd ?? (await this.#openJournal());
      await ftruncateAsync(fd, 0);
      await fdatasyncAsync(fd);
      this.#journalBytes = 0;
      this.#journalRecords = 0;
    }
    const keep = new Set([...next.values()].map((w) => w.file));
    const superseded = new Set([
      ...this.#heldFiles,
      ...[...this.#written.values()].map((w) => w.file),
    ]);
    for (const file of superseded) {
      if (!keep.has(file)) await unlink(join(this.dir, SETS_DIR, file)).catch(() => {});
    }
    this.#heldFiles.clear();
    this.#written.clear();
    for (const [name, w] of next) this.#written.set(name, w);
  }

  /** Releases the lock. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#journalFd !== undefined) closeSync(this.#journalFd);
    this.#journalFd = undefined;
    releaseLock(this.dir);
  }

  /** Deletes set files and tmp files nothing references (left by a crash before a commit). */
  #sweep(referenced: ReadonlySet<string>): void {
    const setsDir = join(this.dir, SETS_DIR);
    for (const name of readdirSync(setsDir)) {
      if (referenced.has(name)) continue;
      try {
        unlinkSync(join(setsDir, name));
      } catch {
        // gone already
      }
    }
    try {
      unlinkSync(`${this.statePath}.tmp`);
    } catch {
      // none
    }
  }

  /** Moves state.json aside (never over an earlier one) and throws StateCorruptError. */
  #corrupt(why: string, cause?: unknown): never {
    const path = this.statePath;
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    let keptAs = `${path}.corrupt-${stamp}`;
    for (let n = 1; existsSync(keptAs); n++) keptAs = `${path}.corrupt-${stamp}-${n}`;
    renameSync(path, keptAs);
    throw new StateCorruptError(
      `state file "${path}" is corrupt: ${why}; it was moved to "${keptAs}". Start again to begin with an empty desired state (the data plane is reconciled to it), or repair the file and move it back`,
      keptAs,
      cause === undefined ? undefined : { cause },
    );
  }
}

/**
 * The set file's bytes: one prefix a line. Written straight into one buffer (prefixes are ASCII):
 * join() would first flatten a million strings into a 15 MB one, then encode it again.
 */
function encodeLines(prefixes: readonly string[]): Buffer {
  let total = 0;
  for (const p of prefixes) total += p.length + 1;
  const out = Buffer.allocUnsafe(total);
  let at = 0;
  for (const p of prefixes) {
    at += out.write(p, at, 'latin1');
    out[at++] = 10;
  }
  return out;
}

async function readSetFile(path: string): Promise<string[]> {
  const text = await readFile(path, 'latin1');
  if (text === '') return [];
  if (!text.endsWith('\n')) throw new Error(`"${path}" is truncated (no final newline)`);
  return text.slice(0, -1).split('\n');
}

function lockPath(dir: string): string {
  return join(dir, LOCK_FILE);
}

/** Locks held by this process, so a second open in the same process is refused too. */
const held = new Set<string>();

function takeLock(dir: string): void {
  const path = lockPath(dir);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600);
      try {
        writeSync(fd, `${process.pid}\n`);
      } finally {
        closeSync(fd);
      }
      held.add(dir);
      return;
    } catch (error: unknown) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new StateWriteError(`lock state directory "${dir}": ${(error as Error).message}`, {
          cause: error,
        });
      }
    }
    let pid = NaN;
    try {
      pid = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
    } catch {
      // vanished between open and read: try again
    }
    const ours = pid === process.pid && held.has(dir);
    if (Number.isInteger(pid) && pid > 0 && (ours || (pid !== process.pid && isAlive(pid)))) {
      throw new StateLockedError(
        `another sluice daemon (pid ${pid}) serves state directory "${dir}"; stop it or pass --state-dir`,
      );
    }
    // Stale: its daemon died without removing it.
    try {
      unlinkSync(path);
    } catch {
      // someone else took it over first; the next attempt finds out
    }
  }
  throw new StateLockedError(
    `lock state directory "${dir}": the lock file "${lockPath(dir)}" keeps coming back; is another sluice starting?`,
  );
}

function releaseLock(dir: string): void {
  held.delete(dir);
  const path = lockPath(dir);
  try {
    const pid = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
    if (pid === process.pid) unlinkSync(path);
  } catch {
    // gone already
  }
}
