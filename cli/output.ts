// Where commands write: through commander's configured writers, so tests and the entry point choose the streams.
import type { Command } from 'commander';

/** The two streams a run of the CLI writes to. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
}

export const processIo: CliIo = {
  out: (text) => void process.stdout.write(text),
  err: (text) => void process.stderr.write(text),
};

/**
 * `sluice rule ls | head`: when the reader of stdout goes away, stop quietly, as other Unix tools
 * do, instead of dying on an unhandled EPIPE with a stack trace.
 */
export function stopOnClosedStdout(): void {
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    process.exit(process.exitCode ?? 0);
  });
}

/** Writes a command's result (stdout by default). */
export function print(command: Command, text: string): void {
  const write = command.configureOutput().writeOut ?? processIo.out;
  write(text);
}

/** Writes a note beside the result (stderr by default). */
export function warn(command: Command, text: string): void {
  const write = command.configureOutput().writeErr ?? processIo.err;
  write(text);
}

/** Column alignment for formatTable: numbers read best right-aligned. */
export type Align = 'left' | 'right';

/**
 * Lays `rows` out under `headers`, columns two spaces apart, no trailing spaces. `align` gives
 * each column's alignment (left by default).
 */
export function formatTable(headers: string[], rows: string[][], align: Align[] = []): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((cell, i) => (align[i] === 'right' ? cell.padStart(widths[i]) : cell.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}
