// Tests compared with tcpdump skip, saying why, where it cannot run — and fail instead where tests are required (CI).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
// A PATH with node and nothing else: tcpdump is missing there.
const bin = mkdtempSync(join(tmpdir(), 'sluice-no-tcpdump-'));
symlinkSync(process.execPath, join(bin, 'node'));

interface Outcome {
  failed: string[];
  skipped: number;
  passed: number;
}

/** Runs one test file in a child vitest without tcpdump on PATH; `env` adds to the environment. */
function runWithoutTcpdump(file: string, env: Record<string, string>): Outcome {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(
      ([name]) => !/^(VITEST|CI$|SLUICE_KERNEL_TESTS$|NODE_OPTIONS$)/.test(name),
    ),
  );
  const child = spawnSync(
    process.execPath,
    [join(root, 'node_modules/vitest/vitest.mjs'), 'run', file, '--reporter=json'],
    { cwd: root, encoding: 'utf8', env: { ...inherited, ...env, PATH: bin }, timeout: 120_000 },
  );
  const report = JSON.parse(child.stdout.slice(child.stdout.indexOf('{'))) as {
    testResults: { assertionResults: { title: string; status: string }[] }[];
  };
  const results = report.testResults.flatMap((file) => file.assertionResults);
  return {
    failed: results.filter((r) => r.status === 'failed').map((r) => r.title),
    skipped: results.filter((r) => r.status === 'skipped' || r.status === 'pending').length,
    passed: results.filter((r) => r.status === 'passed').length,
  };
}

afterAll(() => rmSync(bin, { recursive: true, force: true }));

describe('tests against tcpdump where it is missing', () => {
  it('skip outside CI', () => {
    const outcome = runWithoutTcpdump('test/unit/filter/accept.test.ts', {});
    expect(outcome.failed).toEqual([]);
    expect(outcome.skipped).toBeGreaterThan(40);
  });

  it.each<Record<string, string>>([{ CI: 'true' }, { SLUICE_KERNEL_TESTS: 'required' }])(
    'fail with %j',
    (env) => {
      expect(runWithoutTcpdump('test/unit/filter/accept.test.ts', env).failed).toEqual([
        'has a tcpdump that runs',
      ]);
    },
  );
});
