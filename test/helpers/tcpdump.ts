// tcpdump, the oracle of the listing and pcap tests: found once by trying; where it cannot run, its tests skip saying why, or fail where tests are required.
import { execFileSync } from 'node:child_process';
import type { TestContext } from 'vitest';
import { describeIfAvailable, kernelTestsRequired, type Privileges } from './privileges.js';

const REQUIREMENT = {
  test: 'has a tcpdump that runs',
  failure: 'tests against tcpdump are required here (CI) but cannot run',
};

let probed: Privileges | undefined;

/** Whether `tcpdump -d` runs here, tried once per process. */
export function tcpdumpAvailable(): Privileges {
  if (probed) return probed;
  try {
    execFileSync('tcpdump', ['-d', '-y', 'EN10MB', '--', 'tcp'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    probed = { ok: true, reason: '' };
  } catch (error: unknown) {
    probed = {
      ok: false,
      reason: `running "tcpdump -d" failed (${(error as Error).message.split('\n')[0]})`,
    };
  }
  return probed;
}

/**
 * describe() for tests that compare with tcpdump: runs `body` where tcpdump runs; elsewhere skips
 * with the reason, or, with CI=true or SLUICE_KERNEL_TESTS=required, fails saying why.
 */
export function describeWithTcpdump(title: string, body: () => void): void {
  describeIfAvailable(title, tcpdumpAvailable(), REQUIREMENT, body);
}

/** The same for one test: skips it where tcpdump cannot run, or fails it where tests are required. */
export function requireTcpdump(ctx: TestContext): void {
  const { ok, reason } = tcpdumpAvailable();
  if (ok) return;
  if (kernelTestsRequired()) throw new Error(`${REQUIREMENT.failure}: ${reason}`);
  ctx.skip(`skipped: ${reason}`);
}
