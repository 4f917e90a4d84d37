// Benches that time programs inside a lab namespace run a child of their own module there: a
// test run's ingress device is looked up in the caller's namespace, and bpf_fib_lookup answers
// from that device's.
import { fileURLToPath } from 'node:url';

import type { Lab } from '../netns-lab/lab.js';

/** The argument that tells a bench module it is the child. */
export const INSIDE = '--inside';

/**
 * Runs `moduleUrl` (a bench's import.meta.url) with INSIDE and `config` as JSON in `netns`, and
 * returns the last line it prints, parsed. Throws `LabCommandError` with the child's stderr when
 * it fails.
 */
export async function runInside<T>(
  lab: Lab,
  netns: string,
  moduleUrl: string,
  config: unknown,
  timeoutMs: number,
): Promise<T> {
  const out = await lab.exec(
    netns,
    [
      process.execPath,
      ...process.execArgv,
      fileURLToPath(moduleUrl),
      INSIDE,
      JSON.stringify(config),
    ],
    { timeoutMs },
  );
  return JSON.parse(out.trim().split('\n').pop()!) as T;
}
