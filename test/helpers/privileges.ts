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

/**
 * describe() for kernel tests: runs `body` when the probe passed; otherwise skips with the reason,
 * or — when kernel tests are required — registers one failing test that says why.
 */
export async function describeKernel(title: string, body: () => void): Promise<void> {
  const privileges = await kernelPrivileges();
  if (privileges.ok) {
    describe(title, body);
  } else if (kernelTestsRequired()) {
    describe(title, () => {
      it('has the privileges kernel tests need', () => {
        throw new Error(`kernel tests are required here but cannot run: ${privileges.reason}`);
      });
    });
  } else {
    describe.skip(`${title} (skipped: ${privileges.reason})`, body);
  }
}
