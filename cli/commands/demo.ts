// `sluice demo`: the README's first command. A router lab, `sluice serve` in it, a sample
// configuration, real traffic and the live counters; everything removed at the end.
import { Command, InvalidArgumentError } from 'commander';

import { withExamples } from '../context.js';
import { DemoFailedError } from '../errors.js';

function parseSeconds(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 2 || n > 600) {
    throw new InvalidArgumentError('expected a whole number of seconds from 2 to 600');
  }
  return n;
}

/** The `demo` command; needs root, a BPF-capable kernel and the built project (npm run demo). */
export function demoCommand(): Command {
  const command = new Command('demo')
    .description(
      'build a client → router → servers lab, run `sluice serve` in the router, apply a sample configuration (blocklist set, drop rule, rate limit, tcpdump-expression rule, XDP forward), drive traffic, show the live counters, tear everything down',
    )
    .option('--seconds <n>', 'how long the live view runs', parseSeconds, 6)
    .action(async (options: { seconds: number }) => {
      // Loaded here: the lab needs the addon and root; the client commands do not.
      const { runDemo } = await import('../../netns-lab/demo.js');
      const result = await runDemo(options.seconds);
      if (result.disagreements.length > 0)
        throw new DemoFailedError(`demo: ${result.disagreements.join('; ')}`);
    });
  return withExamples(command, 'sluice demo', 'sluice demo --seconds 20');
}
