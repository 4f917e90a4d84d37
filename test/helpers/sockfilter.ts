// Runs classic BPF programs in the Linux kernel as packet-socket filters (SO_ATTACH_FILTER, through the small C
// program in test/helpers/sockfilter/, in a network namespace of its own) as an engine of the filter differential tests.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Directory holding sockfilter.c and its Makefile. */
export const SOCKFILTER_DIR = join(dirname(fileURLToPath(import.meta.url)), 'sockfilter');
/** Path of the built binary. */
export const SOCKFILTER_BIN = join(SOCKFILTER_DIR, 'build', 'sockfilter');

/** A classic BPF instruction. */
export interface SocketFilterInsn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

/** The kernel's result for one program. */
export type SocketFilterResult =
  | {
      ok: true;
      /**
       * One char per packet of the pcap file, in file order: '1' accepted, '0' dropped, 'x' not judged (the
       * packet socket would not send it: shorter than lo's 14-byte Ethernet header).
       */
      verdicts: string;
    }
  | {
      ok: false;
      /** SO_ATTACH_FILTER refused the program with this errno (22 EINVAL: backward jump, too long, ...). */
      errno: number;
      code: string;
    };

let building: Promise<void> | undefined;

async function mtime(path: string): Promise<number> {
  try {
    return (await stat(path)).mtimeMs;
  } catch {
    return -1;
  }
}

/** Builds the helper with make if the binary is missing or older than its sources; throws with make's output. */
export async function buildSocketFilter(): Promise<string> {
  building ??= (async () => {
    const bin = await mtime(SOCKFILTER_BIN);
    const src = Math.max(
      await mtime(join(SOCKFILTER_DIR, 'sockfilter.c')),
      await mtime(join(SOCKFILTER_DIR, 'Makefile')),
    );
    if (bin >= 0 && bin >= src) return;
    try {
      await run('make', ['-s', '-C', SOCKFILTER_DIR], { maxBuffer: 16 << 20 });
    } catch (error: unknown) {
      const e = error as { stderr?: string; stdout?: string; message?: string };
      throw new Error(
        `build the socket-filter helper in "${SOCKFILTER_DIR}": ${e.stderr || e.stdout || e.message}`,
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
  return SOCKFILTER_BIN;
}

/** The program as one line of the helper's input: "N code jt jf k code jt jf k ...". */
function programLine(program: readonly SocketFilterInsn[]): string {
  const nums = [program.length];
  for (const { code, jt, jf, k } of program) nums.push(code, jt, jf, k >>> 0);
  return nums.join(' ');
}

/**
 * Attaches each program in turn to an AF_PACKET socket on the loopback device of a private network namespace
 * and sends every packet of the pcap file (its captured bytes; the kernel never sees a wire length) through
 * it. Identical programs run once. Results are in the order of `programs`.
 *
 * Needs CAP_SYS_ADMIN (unshare) and CAP_NET_RAW. Throws when the helper cannot be built or run, when it
 * finds anything it cannot account for (a frame missing or changed on transmit, a drop), or when its output
 * does not parse.
 */
export async function runSocketFilter(
  pcapPath: string,
  programs: readonly (readonly SocketFilterInsn[])[],
  options: { timeoutMs?: number } = {},
): Promise<SocketFilterResult[]> {
  if (programs.length === 0) return [];
  const lines = programs.map(programLine);
  const unique = [...new Set(lines)];
  const bin = await buildSocketFilter();
  const dir = await mkdtemp(join(tmpdir(), 'sluice-sockfilter-'));
  try {
    const file = join(dir, 'programs.txt');
    await writeFile(file, unique.map((l) => `${l}\n`).join(''));
    let stdout: string;
    try {
      ({ stdout } = await run(bin, [pcapPath, file], {
        maxBuffer: 1 << 30,
        encoding: 'utf8',
        timeout: options.timeoutMs ?? 600_000,
        killSignal: 'SIGKILL',
      }));
    } catch (error: unknown) {
      const e = error as { stderr?: string; message?: string };
      throw new Error(`run the socket-filter helper: ${e.stderr?.trim() || e.message}`, {
        cause: error,
      });
    }
    const results = parseOutput(stdout, unique.length);
    const byLine = new Map(unique.map((l, i) => [l, results[i]!]));
    return lines.map((l) => byLine.get(l)!);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function parseOutput(stdout: string, expected: number): SocketFilterResult[] {
  const lines = stdout.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const results = lines.map((line): SocketFilterResult => {
    const refused = /^REFUSED (\d+) (\S+)$/.exec(line);
    if (refused) return { ok: false, errno: Number(refused[1]), code: refused[2]! };
    if (/^[01x]*$/.test(line)) return { ok: true, verdicts: line };
    throw new Error(
      `parse socket-filter helper output: unexpected line ${JSON.stringify(line.slice(0, 200))}`,
    );
  });
  if (results.length !== expected)
    throw new Error(
      `parse socket-filter helper output: ${results.length} results for ${expected} programs`,
    );
  return results;
}
