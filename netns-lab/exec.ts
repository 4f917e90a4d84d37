// Runs lab commands (iproute2, ping, tcpdump…) on the host or inside a namespace.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** A lab command that exited non-zero or could not start. */
export class LabCommandError extends Error {
  override name = 'LabCommandError';
  readonly code = 'LAB_COMMAND';
  constructor(
    readonly argv: string[],
    readonly stderr: string,
    options?: { cause?: unknown },
  ) {
    super(`run "${argv.join(' ')}": ${stderr.trim() || 'failed'}`, options);
  }
}

export interface RunOptions {
  /** Namespace to run in (`ip netns exec`); the host namespace when absent. */
  netns?: string;
  /** Milliseconds before the command is killed; commands in the lab never run unbounded. */
  timeoutMs?: number;
}

/** Runs a command and returns its stdout; throws `LabCommandError` on failure or timeout. */
export async function run(argv: string[], options: RunOptions = {}): Promise<string> {
  const full = options.netns ? ['ip', 'netns', 'exec', options.netns, ...argv] : argv;
  try {
    const { stdout } = await execFileAsync(full[0], full.slice(1), {
      timeout: options.timeoutMs ?? 30_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout;
  } catch (error: unknown) {
    const stderr = (error as { stderr?: string }).stderr ?? String(error);
    throw new LabCommandError(full, stderr, { cause: error });
  }
}
