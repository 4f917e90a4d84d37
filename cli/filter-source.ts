// Where a filter command's classic program comes from: an expression, or tcpdump -ddd text a user already has.
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { compileFilter, parseCbpfText, type CbpfInsn } from '../bpf/filter/index.js';

export interface FilterSourceOptions {
  /** Path of tcpdump -ddd text, or "-" for standard input. */
  cbpf?: string;
  optimize?: boolean;
  snaplen?: number;
}

async function readText(path: string): Promise<string> {
  if (path !== '-') return await readFile(path, 'utf8');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * The classic program a filter command works on: `words` compiled as one expression, or the
 * -ddd text at `options.cbpf`. Exactly one of the two must be given (a usage error otherwise).
 * Throws the compiler's Filter*Error for a bad expression or bad -ddd text, and the file system's
 * error for an unreadable file.
 */
export async function readFilterProgram(
  command: Command,
  words: string[],
  options: FilterSourceOptions,
): Promise<CbpfInsn[]> {
  if (options.cbpf === undefined) {
    if (words.length === 0)
      command.error('sluice: give a filter expression, or --cbpf FILE', { exitCode: 2 });
    return compileFilter(words.join(' '), { optimize: options.optimize, snaplen: options.snaplen });
  }
  if (words.length > 0) {
    command.error('sluice: give either a filter expression or --cbpf FILE, not both', {
      exitCode: 2,
    });
  }
  if (options.optimize === false || options.snaplen !== undefined) {
    command.error('sluice: -O and --snaplen apply to expressions, not to --cbpf programs', {
      exitCode: 2,
    });
  }
  try {
    return parseCbpfText(await readText(options.cbpf));
  } catch (error: unknown) {
    if ((error as { code?: unknown }).code === 'ENOENT') {
      throw new Error(`read classic BPF from "${options.cbpf}": no such file`, { cause: error });
    }
    throw error;
  }
}
