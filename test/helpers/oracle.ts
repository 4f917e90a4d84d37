// Runs libpcap (through the small C program in test/helpers/oracle/) as the reference engine of the filter differential tests.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Directory holding oracle.c and its Makefile. */
export const ORACLE_DIR = join(dirname(fileURLToPath(import.meta.url)), 'oracle');
/** Path of the built oracle binary. */
export const ORACLE_BIN = join(ORACLE_DIR, 'build', 'oracle');

/** A classic BPF instruction as libpcap emitted it. */
export interface OracleInsn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

/** libpcap's result for one expression. */
export type OracleResult =
  | {
      ok: true;
      /** One '1'/'0' per packet of the pcap file, in file order. */
      verdicts: string;
      insnCount: number;
      /** The optimized program (only with `{ program: true }`). */
      program?: OracleInsn[];
      /** tcpdump -d text of the program, one line per instruction (only with `{ program: true }`). */
      listing?: string;
    }
  | { ok: false; error: string };

let building: Promise<void> | undefined;

async function mtime(path: string): Promise<number> {
  try {
    return (await stat(path)).mtimeMs;
  } catch {
    return -1;
  }
}

/**
 * Builds the oracle with make if the binary is missing or older than its sources. Throws when make fails
 * (the message carries make's output; libpcap-dev, pkg-config and a C compiler are needed).
 */
export async function buildOracle(): Promise<string> {
  building ??= (async () => {
    const bin = await mtime(ORACLE_BIN);
    const src = Math.max(
      await mtime(join(ORACLE_DIR, 'oracle.c')),
      await mtime(join(ORACLE_DIR, 'Makefile')),
    );
    if (bin >= 0 && bin >= src) return;
    try {
      await run('make', ['-s', '-C', ORACLE_DIR], { maxBuffer: 16 << 20 });
    } catch (error: unknown) {
      const e = error as { stderr?: string; stdout?: string; message?: string };
      throw new Error(
        `build the libpcap oracle in "${ORACLE_DIR}": ${e.stderr || e.stdout || e.message}`,
        { cause: error },
      );
    }
  })();
  try {
    await building;
  } catch (error: unknown) {
    building = undefined;
    throw error;
  }
  return ORACLE_BIN;
}

/**
 * Compiles each expression with libpcap (DLT_EN10MB, snaplen 262144, optimized unless `optimize` is false, netmask
 * unknown) and runs it over
 * every packet of the pcap file, in one process. Results are in the order of `expressions`.
 *
 * Throws when an expression contains a newline (it could not be passed line by line), when the oracle cannot be
 * built or run, or when its output does not parse.
 */
export async function runOracle(
  pcapPath: string,
  expressions: readonly string[],
  options: { program?: boolean; optimize?: boolean } = {},
): Promise<OracleResult[]> {
  for (const e of expressions) {
    if (/[\n\0]/.test(e))
      throw new Error(
        `run the libpcap oracle: expression ${JSON.stringify(e)} contains a newline or NUL`,
      );
  }
  if (expressions.length === 0) return [];
  const bin = await buildOracle();
  const dir = await mkdtemp(join(tmpdir(), 'sluice-oracle-'));
  try {
    const exprFile = join(dir, 'expressions.txt');
    await writeFile(exprFile, expressions.map((e) => `${e}\n`).join(''));
    const args = [
      ...(options.program ? ['-p'] : []),
      ...(options.optimize === false ? ['-O'] : []),
      pcapPath,
      exprFile,
    ];
    const { stdout } = await run(bin, args, { maxBuffer: 1 << 30, encoding: 'utf8' });
    return parseOracleOutput(stdout, expressions.length, options.program === true);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function parseOracleOutput(stdout: string, expected: number, withProgram: boolean): OracleResult[] {
  const results: OracleResult[] = [];
  const lines = stdout.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  let current: { program: OracleInsn[]; listing: string[] } | undefined;
  for (const line of lines) {
    if (line.startsWith('\t')) {
      if (!current)
        throw new Error(
          `parse libpcap oracle output: program line before any OK line: ${JSON.stringify(line)}`,
        );
      const tab = line.indexOf('\t', 1);
      const nums = tab < 0 ? line.slice(1) : line.slice(1, tab);
      const text = tab < 0 ? '' : line.slice(tab + 1);
      const [code, jt, jf, k] = nums.split(' ').map(Number) as [number, number, number, number];
      current.program.push({ code, jt, jf, k });
      current.listing.push(`(${String(current.listing.length).padStart(3, '0')}) ${text}`);
    } else if (line.startsWith('OK ')) {
      const [, count, verdicts] = line.split(' ');
      current = { program: [], listing: [] };
      results.push({
        ok: true,
        verdicts: verdicts ?? '',
        insnCount: Number(count),
        ...(withProgram ? current : {}),
      } as OracleResult);
    } else if (line.startsWith('ERR ')) {
      current = undefined;
      results.push({ ok: false, error: line.slice(4) });
    } else {
      throw new Error(
        `parse libpcap oracle output: unexpected line ${JSON.stringify(line.slice(0, 200))}`,
      );
    }
  }
  if (results.length !== expected) {
    throw new Error(
      `parse libpcap oracle output: ${results.length} results for ${expected} expressions`,
    );
  }
  if (withProgram) {
    for (const r of results) {
      if (r.ok) r.listing = (r.listing as unknown as string[]).join('\n');
    }
  }
  return results;
}
