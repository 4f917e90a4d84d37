// `sluice selfcheck`: proves the machine can load, attach and count with XDP, in a throw-away lab.
import { Command, InvalidArgumentError } from 'commander';
import type { SelfcheckResult, SelfcheckRunner } from '../../netns-lab/selfcheck.js';
import { SelfcheckFailedError } from '../errors.js';
import { print } from '../output.js';

function parseCount(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 10_000) {
    throw new InvalidArgumentError('expected a whole number of pings from 1 to 10000');
  }
  return n;
}

function report(result: SelfcheckResult, disagreements: string[]): string {
  const { pass, drop } = result.counters;
  return [
    `attached counter_xdp (native XDP) to ${result.device} in namespace ${result.netns}`,
    `sent ${result.sent} pings, ${result.answered} answered`,
    '',
    'action   packets      bytes',
    `pass   ${String(pass.packets).padStart(9)} ${String(pass.bytes).padStart(10)}`,
    `drop   ${String(drop.packets).padStart(9)} ${String(drop.bytes).padStart(10)}`,
    '',
    ...(disagreements.length === 0
      ? ['ok: the program counted every packet sent to it']
      : disagreements.map((d) => `unexpected: ${d}`)),
    'removed the namespaces and devices it created',
    '',
  ].join('\n');
}

/**
 * The `selfcheck` command. It prints the result (with `--json`, the result and `ok`), then fails
 * with SelfcheckFailedError, so exit status 1, when the counters or the replies disagree with the
 * pings sent. `run` stands in for the lab in tests.
 */
export function selfcheckCommand(run?: SelfcheckRunner): Command {
  return new Command('selfcheck')
    .description(
      'attach the counting XDP program to a veth in a throw-away namespace, ping through it, print its counters',
    )
    .option('--pings <n>', 'echo requests to send', parseCount, 20)
    .option('--json', 'print the result as JSON')
    .action(async function (this: Command, options: { pings: number; json?: boolean }) {
      // Loaded here, not at start: the lab needs the BPF addon, the client commands do not.
      const lab = await import('../../netns-lab/selfcheck.js');
      const result = await (run ?? lab.runSelfcheck)(options.pings);
      const disagreements = lab.selfcheckDisagreements(result);
      const ok = disagreements.length === 0;
      print(
        this,
        options.json ? JSON.stringify({ ok, ...result }) + '\n' : report(result, disagreements),
      );
      if (!ok)
        throw new SelfcheckFailedError(`self-check failed: ${disagreements.join('; ')}`, {
          result,
        });
    });
}
