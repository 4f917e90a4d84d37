// Finds out once, by trying, whether kernel tests can run here: create a namespace, load a trivial BPF program.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

import { describe, it } from 'vitest';

export interface Privileges {
  ok: boolean;
  /** Why not, phrased for a skip message: "loading a BPF program failed with EPERM (needs CAP_BPF)". */
  reason: string;
}

/** True when a failed probe must fail the run (CI=true or SLUICE_KERNEL_TESTS=required). */
export function kernelTestsRequired(): boolean {
  return process.env.CI === 'true' || process.env.SLUICE_KERNEL_TESTS === 'required';
}

let probed: Promise<Privileges> | undefined;

async function probe(): Promise<Privileges> {
  const ns = `slprobe${randomBytes(4).toString('hex')}`;
  try {
    execFileSync('ip', ['netns', 'add', ns], { stdio: 'pipe' });
  } catch (error: unknown) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    return {
      ok: false,
      reason: `creating a network namespace failed: ${stderr || String(error)} (needs CAP_SYS_ADMIN and iproute2)`,
    };
  } finally {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'pipe' });
    } catch {
      // not created
    }
  }
  let bpf: typeof import('../../bpf/index.js');
  try {
    bpf = await import('../../bpf/index.js');
  } catch (error: unknown) {
    return { ok: false, reason: `the BPF addon did not load: ${(error as Error).message}` };
  }
  try {
    // r0 = XDP_PASS; exit
    const insns = Buffer.from([0xb7, 0, 0, 0, 2, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]);
    bpf.loadProgram({ type: 'xdp', insns, name: 'sl_probe' }).close();
  } catch (error: unknown) {
    const code = (error as { code?: string }).code ?? 'an error';
    const hint = code === 'EPERM' ? ' (needs CAP_BPF)' : '';
    return { ok: false, reason: `loading a BPF program failed with ${code}${hint}` };
  }
  try {
    bpf.ensureBpffs();
  } catch (error: unknown) {
    return {
      ok: false,
      reason: `mounting bpffs at /sys/fs/bpf failed: ${(error as Error).message}`,
    };
  }
  return { ok: true, reason: '' };
}

/** The probe's result, computed once per process. */
export function kernelPrivileges(): Promise<Privileges> {
  probed ??= probe();
  return probed;
}

/** What a group of tests needs, for the failing test that stands in for them where it is required. */
export interface Requirement {
  /** Title of the stand-in test: "has the privileges kernel tests need". */
  test: string;
  /** Its error, before the probe's reason: "kernel tests are required here but cannot run". */
  failure: string;
}

/**
 * describe() for tests that need what `probe` tried: runs `body` when it passed; otherwise skips
 * with the reason, or — when kernel tests are required (CI) — registers one failing test that
 * says why.
 */
export function describeIfAvailable(
  title: string,
  probe: Privileges,
  requirement: Requirement,
  body: () => void,
): void {
  if (probe.ok) {
    describe(title, body);
  } else if (kernelTestsRequired()) {
    describe(title, () => {
      it(requirement.test, () => {
        throw new Error(`${requirement.failure}: ${probe.reason}`);
      });
    });
  } else {
    describe.skip(`${title} (skipped: ${probe.reason})`, body);
  }
}

/**
 * describe() for kernel tests: runs `body` when the probe passed; otherwise skips with the reason,
 * or — when kernel tests are required — registers one failing test that says why.
 */
export async function describeKernel(title: string, body: () => void): Promise<void> {
  describeIfAvailable(
    title,
    await kernelPrivileges(),
    {
      test: 'has the privileges kernel tests need',
      failure: 'kernel tests are required here but cannot run',
    },
    body,
  );
}
