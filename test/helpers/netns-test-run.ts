// Runs one BPF_PROG_TEST_RUN from inside a network namespace, in a child process: for programs whose helpers (bpf_fib_lookup, device lookups of ctx ifindexes) answer from the caller's namespace.
//
// The addon runs test runs on a worker thread of this process, which stays in the namespace the
// process started in; withNetns() moves only the calling thread, and only synchronously. So this
// file is also a script: `ip netns exec NS node --import tsx netns-test-run.ts '<json requests>'`
// opens each program by id, runs it once over its frame and prints the results as JSON.
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const SCRIPT = fileURLToPath(import.meta.url);

/** One run the child makes: a program by id, over one frame, with an optional context. */
interface Request {
  progId: number;
  /** Hex of the frame. */
  data: string;
  /** Hex of struct xdp_md / struct __sk_buff. */
  ctx?: string;
}

/** One run of testRunInNetns. */
export interface NetnsTestRun {
  /** The loaded program's id (BpfProgram.id). */
  progId: number;
  data: Uint8Array;
  /** struct xdp_md or struct __sk_buff to start with. */
  ctx?: Uint8Array;
}

/** What one run gave. */
export interface NetnsTestRunResult {
  retval: number;
  /** The frame after the run. */
  dataOut: Buffer;
}

/**
 * Runs each of `runs` once, in order, inside the network namespace `netns`, and returns each
 * one's return value and frame after the run. Takes a second or two (one Node.js child process
 * for all of them). Throws with the child's stderr when it fails.
 */
export async function testRunInNetns(
  netns: string,
  runs: readonly NetnsTestRun[],
): Promise<NetnsTestRunResult[]> {
  const requests: Request[] = runs.map((r) => ({
    progId: r.progId,
    data: Buffer.from(r.data).toString('hex'),
    ...(r.ctx ? { ctx: Buffer.from(r.ctx).toString('hex') } : {}),
  }));
  const argv = ['netns', 'exec', netns, process.execPath, '--import', 'tsx', SCRIPT];
  try {
    const { stdout } = await execFileAsync('ip', [...argv, JSON.stringify(requests)], {
      timeout: 60_000,
    });
    const answers = JSON.parse(stdout) as { retval: number; dataOut: string }[];
    return answers.map((a) => ({ retval: a.retval, dataOut: Buffer.from(a.dataOut, 'hex') }));
  } catch (error: unknown) {
    const stderr = (error as { stderr?: string }).stderr ?? '';
    throw new Error(
      `test runs in network namespace "${netns}": ${stderr.trim() || String(error)}`,
      { cause: error },
    );
  }
}

async function main(json: string): Promise<void> {
  const requests = JSON.parse(json) as Request[];
  const { getProgramById } = await import('../../bpf/index.js');
  const answers: { retval: number; dataOut: string }[] = [];
  for (const request of requests) {
    const program = getProgramById(request.progId);
    try {
      const run = await program.testRun({
        data: Buffer.from(request.data, 'hex'),
        ...(request.ctx ? { ctx: Buffer.from(request.ctx, 'hex') } : {}),
        dataOut: true,
      });
      answers.push({
        retval: run.retval,
        dataOut: (run.dataOut ?? Buffer.alloc(0)).toString('hex'),
      });
    } finally {
      program.close();
    }
  }
  process.stdout.write(`${JSON.stringify(answers)}\n`);
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === SCRIPT) {
  await main(process.argv[2] ?? '[]');
}
