// `sluice selfcheck`: proves the machine can load, attach and count with XDP, in a throw-away lab.
import { Command, InvalidArgumentError } from 'commander';
import { runSelfcheck } from '../../netns-lab/selfcheck.js';
import { print } from '../output.js';

function parseCount(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 10_000) {
    throw new InvalidArgumentError('expected a whole number of pings from 1 to 10000');
  }
  return n;
}

export function selfcheckCommand(): Command {
  return new Command('selfcheck')
    .description(
      'attach the counting XDP program to a veth in a throw-away namespace, ping through it, print its counters',
    )
    .option('--pings <n>', 'echo requests to send', parseCount, 20)
    .option('--json', 'print the result as JSON')
    .action(async function (this: Command, options: { pings: number; json?: boolean }) {
      const result = await runSelfcheck(options.pings);
      if (options.json) {
        print(this, JSON.stringify(result) + '\n');
        return;
      }
      const { pass, drop } = result.counters;
      print(
        this,
        [
          `attached counter_xdp (native XDP) to ${result.device} in namespace ${result.netns}`,
          `sent ${result.sent} pings, ${result.answered} answered`,
          '',
          'action   packets      bytes',
          `pass   ${String(pass.packets).padStart(9)} ${String(pass.bytes).padStart(10)}`,
          `drop   ${String(drop.packets).padStart(9)} ${String(drop.bytes).padStart(10)}`,
          '',
          pass.packets === result.sent
            ? 'ok: the program counted every packet sent to it'
            : `unexpected: counted ${pass.packets} packets, sent ${result.sent}`,
          'removed the namespaces and devices it created',
          '',
        ].join('\n'),
      );
      if (pass.packets !== result.sent)
        throw new Error('self-check failed: counters disagree with traffic');
    });
}
