// `sluice selfcheck` reports what the lab counted and fails when it disagrees with the pings sent.
import { describe, expect, it } from 'vitest';
import type { SelfcheckResult } from '../../../netns-lab/selfcheck.js';
import { runCliWith } from '../../helpers/cli.js';

/** A self-check that sent `sent` pings, with what the lab would have counted and seen answered. */
function result(sent: number, passed: number, answered: number): SelfcheckResult {
  return {
    device: 'sl0a0a0b',
    netns: 'sl0a0a0b',
    sent,
    answered,
    counters: {
      pass: { packets: passed, bytes: passed * 98 },
      drop: { packets: 0, bytes: 0 },
    },
  };
}

/** `sluice selfcheck ...args` with the lab replaced by one that reports `outcome`. */
function selfcheck(outcome: SelfcheckResult, ...args: string[]) {
  return runCliWith({ selfcheck: async () => outcome }, 'selfcheck', ...args);
}

describe('sluice selfcheck', () => {
  it('exits 0 and prints ok when every ping was counted and answered', async () => {
    const run = await selfcheck(result(20, 20, 20));
    expect(run).toMatchObject({ code: 0, stderr: '' });
    expect(run.stdout).toContain('ok: the program counted every packet sent to it\n');
    const json = await selfcheck(result(20, 20, 20), '--json');
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: true, sent: 20, answered: 20 });
  });

  it('exits 1 when the pass counter disagrees with the pings sent', async () => {
    const run = await selfcheck(result(20, 19, 20));
    expect(run.code).toBe(1);
    expect(run.stdout).toMatchInlineSnapshot(`
      "attached counter_xdp (native XDP) to sl0a0a0b in namespace sl0a0a0b
      sent 20 pings, 20 answered

      action   packets      bytes
      pass          19       1862
      drop           0          0

      unexpected: counted 19 packets passed, sent 20
      removed the namespaces and devices it created
      "
    `);
    expect(run.stderr).toMatchInlineSnapshot(`
      "sluice: self-check failed: counted 19 packets passed, sent 20
      "
    `);
  });

  it('exits 1 with --json, after printing the result with ok false, when pings went unanswered', async () => {
    const run = await selfcheck(result(20, 20, 17), '--json');
    expect(run.code).toBe(1);
    expect(JSON.parse(run.stdout)).toEqual({ ok: false, ...result(20, 20, 17) });
    expect(run.stderr).toMatchInlineSnapshot(`
      "sluice: self-check failed: 17 of 20 pings answered
      "
    `);
  });

  it('names every disagreement', async () => {
    const run = await selfcheck(result(10, 0, 0), '--json');
    expect(run.code).toBe(1);
    expect(run.stderr).toMatchInlineSnapshot(`
      "sluice: self-check failed: counted 0 packets passed, sent 10; 0 of 10 pings answered
      "
    `);
  });
});
