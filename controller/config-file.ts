// Reads a desired-state file (YAML or JSON: YAML 1.2 parses both) for `sluice apply -f` and
// `sluice serve --config`, validates it against the document schema, and locates errors — its own
// and the daemon's JSON Pointers — as FILE:LINE:COL, the way `nft -c` does.
import { readFile } from 'node:fs/promises';
import { Value } from 'typebox/value';
import { Settings } from 'typebox/system';
import {
  isMap,
  isSeq,
  LineCounter,
  parseDocument,
  type Document,
  type Node as YamlNode,
} from 'yaml';
import { ConfigSchema, type ConfigDoc } from './document.js';
import { fitsSchema } from './schema-errors.js';

/** One located error of an apply file. */
export interface FileLocation {
  file: string;
  line: number;
  col: number;
  /** Dotted path of the field (`rules[2].dport`), empty for the whole document. */
  field: string;
  message: string;
}

/** An apply file is unusable: every error located like `nft -c` does, nothing applied. */
export class ApplyFileError extends Error {
  readonly code = 'APPLY_FILE_INVALID';
  readonly errors: FileLocation[];

  constructor(file: string, errors: FileLocation[], options?: ErrorOptions) {
    const n = errors.length;
    super(`"${file}": ${n === 1 ? '1 error' : `${n} errors`}, nothing applied`, options);
    this.errors = errors;
  }

  /** `FILE:LINE:COL: field message`, one line per error, as editors' quickfix lists read them. */
  format(): string {
    return this.errors
      .map((e) => `${e.file}:${e.line}:${e.col}: ${e.field ? `${e.field} ` : ''}${e.message}`)
      .join('\n');
  }
}
ApplyFileError.prototype.name = 'ApplyFileError';

/** A parsed apply file, kept with its syntax tree to find where a pointer is. */
export interface ApplyFile {
  path: string;
  doc: Document;
  lines: LineCounter;
  value: unknown;
}

/** Reads `text` (from `path`); throws ApplyFileError with every located YAML or JSON syntax error. */
export function parseApplyFile(path: string, text: string): ApplyFile {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ApplyFileError(
      path,
      doc.errors.map((error) => {
        const { line, col } = lines.linePos(error.pos[0]);
        const message = error.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
        return { file: path, line, col, field: '', message: lowerFirst(message) };
      }),
    );
  }
  return { path, doc, lines, value: doc.toJS({ maxAliasCount: 100 }) };
}

/** Reads and parses the file at `path`. */
export async function readApplyFile(path: string): Promise<ApplyFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error: unknown) {
    const code = (error as { code?: string }).code;
    throw new Error(
      `read "${path}": ${code === 'ENOENT' ? 'no such file' : String(code ?? error)}`,
      {
        cause: error,
      },
    );
  }
  return parseApplyFile(path, text);
}

function lowerFirst(text: string): string {
  return text.charAt(0).toLowerCase() + text.slice(1);
}

/** "/rules/2/dport" → ["rules", 2, "dport"] (RFC 6901 unescaping; digits index arrays). */
export function pointerSegments(pointer: string): (string | number)[] {
  if (pointer === '' || pointer === '/') return [];
  return pointer
    .replace(/^\//, '')
    .split('/')
    .map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

/** ["rules", 2, "dport"] → "rules[2].dport". */
export function fieldName(segments: (string | number)[]): string {
  return segments
    .map((s, i) => (typeof s === 'number' ? `[${s}]` : i === 0 ? s : `.${s}`))
    .join('');
}

/**
 * Where `segments` is in the file: the value's first character, or the key's when `atKey` (an
 * unknown field), or the nearest existing parent's when the path runs out (a missing field).
 */
export function locate(
  file: ApplyFile,
  segments: (string | number)[],
  atKey = false,
): { line: number; col: number } {
  let node: unknown = file.doc.contents;
  let position = (node as YamlNode | null)?.range?.[0] ?? 0;
  for (const [i, segment] of segments.entries()) {
    const last = i === segments.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((p) => {
        const key = p.key as { value?: unknown } | null;
        return (key?.value ?? key) === segment || String(key?.value) === String(segment);
      });
      if (!pair) break;
      const keyNode = pair.key as YamlNode | null;
      if (last && atKey && keyNode?.range) {
        position = keyNode.range[0];
        break;
      }
      node = pair.value;
      const range = (node as YamlNode | null)?.range ?? keyNode?.range;
      if (range) position = range[0];
    } else if (isSeq(node) && typeof segment === 'number' && segment < node.items.length) {
      node = node.items[segment];
      const range = (node as YamlNode | null)?.range;
      if (range) position = range[0];
    } else {
      break;
    }
  }
  return file.lines.linePos(position);
}

/** The piece of ConfigSchema a TypeBox schemaPath ("#/properties/rules/items/...") names. */
function schemaAt(schemaPath: string): Record<string, unknown> | undefined {
  let node: unknown = ConfigSchema;
  for (const key of schemaPath.replace(/^#\/?/, '').split('/').filter(Boolean)) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node !== null && typeof node === 'object' ? (node as Record<string, unknown>) : undefined;
}

interface SchemaError {
  keyword: string;
  schemaPath: string;
  instancePath: string;
  params: Record<string, unknown>;
  message: string;
}

function typeOfValue(value: unknown): string {
  if (Array.isArray(value)) return 'array';
  if (value === null) return 'null';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

function valueAt(root: unknown, segments: (string | number)[]): unknown {
  let node = root;
  for (const s of segments) node = (node as Record<string | number, unknown> | undefined)?.[s];
  return node;
}

/** One error's message, in words: unions list their choices; patterns say what they stand for. */
function messageOf(error: SchemaError, group: SchemaError[], value: unknown): string {
  if (error.keyword === 'anyOf') {
    const branches = group.filter(
      (e) => e !== error && e.schemaPath.startsWith(`${error.schemaPath}/anyOf/`),
    );
    // A branch of the value's own type that failed on something else says the most.
    const own = branches.find(
      (e) => e.keyword !== 'type' && e.keyword !== 'const' && e.keyword !== 'anyOf',
    );
    if (own) return messageOf(own, group, value);
    const choices = branches
      .filter((e) => e.keyword === 'const')
      .map((e) => JSON.stringify(e.params.allowedValue));
    const types = branches
      .filter((e) => e.keyword === 'type')
      .map((e) => {
        const t = e.params.type;
        return t === 'integer' ? 'an integer' : t === 'string' ? 'a string' : String(t);
      });
    if (choices.length > 0) {
      const listed =
        choices.length === 1
          ? choices[0]
          : `${choices.slice(0, -1).join(', ')} or ${choices.at(-1)}`;
      return `must be ${choices.length === 1 ? '' : 'one of '}${listed}${types.length ? ` or ${types.join(' or ')}` : ''}, not ${JSON.stringify(value)}`;
    }
    return `must be ${types.join(' or ')}`;
  }
  if (error.keyword === 'pattern' || error.keyword === 'const') {
    const description = schemaAt(error.schemaPath)?.description;
    if (error.keyword === 'const')
      return `must be ${JSON.stringify(error.params.allowedValue)}, not ${JSON.stringify(value)}`;
    if (typeof description === 'string')
      return `expected ${description}, not ${JSON.stringify(value)}`;
    return `${JSON.stringify(value)} does not match ${String(error.params.pattern)}`;
  }
  if (error.keyword === 'type') {
    const t = String(error.params.type);
    return `must be ${t === 'integer' || t === 'array' || t === 'object' ? 'an' : 'a'} ${t}, not ${typeOfValue(value)}`;
  }
  if (error.keyword === 'required') {
    const missing = (error.params.requiredProperties as string[] | undefined) ?? [];
    return `is missing ${missing.map((m) => `"${m}"`).join(', ') || 'a required field'}`;
  }
  return error.message;
}

/**
 * Validates the file against ConfigSchema and returns the document; throws ApplyFileError with one
 * located line per problem (one per field, unions folded into their choices), in file order.
 */
export function validateApplyFile(file: ApplyFile): ConfigDoc {
  // The compiled check first: walking a valid million-prefix file for errors takes seconds.
  if (fitsSchema(ConfigSchema, file.value)) return file.value as ConfigDoc;
  const previous = Settings.Get().maxErrors;
  let errors: SchemaError[];
  try {
    Settings.Set({ maxErrors: 1000 });
    errors = Value.Errors(ConfigSchema, file.value) as unknown as SchemaError[];
  } finally {
    Settings.Set({ maxErrors: previous });
  }
  if (errors.length === 0) return file.value as ConfigDoc;
  const byPath = new Map<string, SchemaError[]>();
  for (const e of errors) {
    const list = byPath.get(e.instancePath) ?? [];
    list.push(e);
    byPath.set(e.instancePath, list);
  }
  const located: (FileLocation & { order: number })[] = [];
  for (const [path, group] of byPath) {
    const segments = pointerSegments(path);
    // Unknown fields are reported at their own key ("schema is false"); their parent's summary is noise.
    const unknown = group.find((e) => e.keyword === 'boolean');
    if (unknown) {
      const { line, col } = locate(file, segments, true);
      located.push({
        file: file.path,
        line,
        col,
        field: fieldName(segments),
        message: 'is not a known field',
        order: 0,
      });
      continue;
    }
    const meaningful = group.filter((e) => e.keyword !== 'additionalProperties');
    if (meaningful.length === 0) continue;
    // The outermost union explains its branches; otherwise the first error.
    const outer =
      meaningful
        .filter((e) => e.keyword === 'anyOf')
        .sort((a, b) => a.schemaPath.length - b.schemaPath.length)[0] ?? meaningful[0];
    const value = valueAt(file.value, segments);
    const { line, col } = locate(file, segments);
    located.push({
      file: file.path,
      line,
      col,
      field: fieldName(segments),
      message: messageOf(outer, meaningful, value),
      order: 0,
    });
  }
  located.sort((a, b) => a.line - b.line || a.col - b.col);
  throw new ApplyFileError(
    file.path,
    located.map(({ order: _order, ...rest }) => rest),
  );
}

/**
 * The daemon's problem about this file, located: its `pointer` and each of its `errors`. Returns
 * undefined when the problem points nowhere in the document. `prefix` is stripped from pointers
 * (the replay body holds the document under "/config").
 */
export function locateProblem(
  file: ApplyFile,
  problem: {
    detail?: string;
    title?: string;
    pointer?: string;
    errors?: { pointer: string; detail: string }[];
  },
  prefix = '',
): ApplyFileError | undefined {
  const strip = (p: string): string =>
    prefix && p.startsWith(prefix) ? p.slice(prefix.length) : p;
  const entries: { pointer: string; detail: string }[] = [];
  if (problem.errors && problem.errors.length > 0) entries.push(...problem.errors);
  else if (problem.pointer !== undefined)
    entries.push({
      pointer: problem.pointer,
      detail: problem.detail ?? problem.title ?? 'rejected',
    });
  if (entries.length === 0) return undefined;
  return new ApplyFileError(
    file.path,
    entries.map((e) => {
      const segments = pointerSegments(strip(e.pointer));
      const { line, col } = locate(file, segments);
      return { file: file.path, line, col, field: fieldName(segments), message: e.detail };
    }),
  );
}
