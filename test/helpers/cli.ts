// Runs the sluice CLI in-process, capturing what it prints and its exit code.
import { main, type CliDeps } from '../../cli/index.js';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** `sluice ...args` as the entry point runs it, with stdout and stderr captured. */
export async function runCli(...args: string[]): Promise<CliRun> {
  return runCliWith({}, ...args);
}

/** runCli with stand-ins for what commands reach outside the process through (the self-check lab). */
export async function runCliWith(deps: CliDeps, ...args: string[]): Promise<CliRun> {
  let stdout = '';
  let stderr = '';
  const code = await main(
    ['node', 'sluice', ...args],
    { out: (text) => (stdout += text), err: (text) => (stderr += text) },
    deps,
  );
  return { code, stdout, stderr };
}
