// Reads a desired-state file (YAML 1.2 or JSON, which YAML parses too) into a ConfigDoc, and
// locates every problem as file:line:column the way `nft -c` does, so a person can jump to it.
import { readFile } from 'node:fs/promises';

import { isMap, isSeq, LineCounter, parseDocument, type Document } from 'yaml';

import { ConfigSchema, type ConfigDoc } from './document.js';
import { ConfigInvalidError } from './errors.js';
import { schemaProblems } from './schema-errors.js';

/** One located problem of a configuration file. */
export interface ConfigFileProblem {
  file: string;
  line: number;
  column: number;
  /** JSON Pointer into the document ("" for the whole). */
  pointer: string;
  message: string;
}

/** A configuration file that does not parse or does not fit the schema; `problems` are located. */
export class ConfigFileInvalidError extends ConfigInvalidError {
  readonly problems: ConfigFileProblem[];
  constructor(problems: ConfigFileProblem[]) {
    super(problems.map(formatProblem).join('\n'), { pointer: problems[0]?.pointer ?? '' });
    this.problems = problems;
  }
}
ConfigFileInvalidError.prototype.name = 'ConfigFileInvalidError';

/** `sluice.yaml:3:12: /rules/0/dport: must be <= 65535` */
export function formatProblem(problem: ConfigFileProblem): string {
  const where = `${problem.file}:${problem.line}:${problem.column}`;
  return problem.pointer
    ? `${where}: ${problem.pointer}: ${problem.message}`
    : `${where}: ${problem.message}`;
}

/** A parsed configuration file that can still say where each part of it came from. */
export interface ParsedConfig {
  config: ConfigDoc;
  /** Line and column (from 1) of the value at `pointer`, or of its nearest existing parent. */
  locate(pointer: string): { line: number; column: number };
}

function unescapePointer(segment: string): string {
  return segment.replace(/~1/g, '/').replace(/~0/g, '~');
}

function locator(doc: Document, lines: LineCounter) {
  return (pointer: string): { line: number; column: number } => {
    const path = pointer === '' ? [] : pointer.split('/').slice(1).map(unescapePointer);
    let node: unknown = doc.contents;
    let offset = (doc.contents as { range?: number[] } | null)?.range?.[0] ?? 0;
    for (const segment of path) {
      if (isMap(node)) {
        const pair = node.items.find(
          (item) => String((item.key as { value?: unknown })?.value) === segment,
        );
        if (!pair) break;
        const keyRange = (pair.key as { range?: number[] }).range;
        const valueRange = (pair.value as { range?: number[] } | null)?.range;
        offset = valueRange?.[0] ?? keyRange?.[0] ?? offset;
        node = pair.value;
      } else if (isSeq(node)) {
        const item = node.items[Number(segment)] as { range?: number[] } | undefined;
        if (!item) break;
        offset = item.range?.[0] ?? offset;
        node = item;
      } else break;
    }
    const pos = lines.linePos(offset);
    return { line: pos.line, column: pos.col };
  };
}

/**
 * Parses `text` (named `file` in messages). Throws ConfigFileInvalidError listing every syntax
 * error (duplicate keys and alias bombs included) or, when the syntax is fine, every schema error,
 * each located.
 */
export function parseConfigText(text: string, file: string): ParsedConfig {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length > 0) {
    throw new ConfigFileInvalidError(
      doc.errors.map((error) => {
        const pos = error.linePos?.[0] ?? { line: 1, col: 1 };
        return {
          file,
          line: pos.line,
          column: pos.col,
          pointer: '',
          message: error.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, ''),
        };
      }),
    );
  }
  const locate = locator(doc, lines);
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 }) ?? {};
  } catch (error: unknown) {
    throw new ConfigFileInvalidError([
      { file, line: 1, column: 1, pointer: '', message: (error as Error).message },
    ]);
  }
  const problems = schemaProblems(ConfigSchema, value).map(({ pointer, message }) => ({
    file,
    ...locate(pointer),
    pointer,
    message,
  }));
  if (problems.length > 0) throw new ConfigFileInvalidError(problems);
  return { config: value as ConfigDoc, locate };
}

/** Reads and parses the configuration file at `path`; see parseConfigText. */
export async function readConfigFile(path: string): Promise<ParsedConfig> {
  return parseConfigText(await readFile(path, 'utf8'), path);
}
