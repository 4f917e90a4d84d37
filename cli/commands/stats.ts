// `sluice stats`: per-device counters with rates, busiest rules and the packet-size histogram, then
// the load balancer's services, backends and events when there are services; once or redrawn in
// place (--watch); GET /v1/stats.
import { performance } from 'node:perf_hooks';
import { Command, InvalidArgumentError } from 'commander';
import type { Stats } from '../../controller/contract.js';
import {
  interruptSignal,
  printJson,
  sleep,
  withClient,
  withExamples,
  type CommandContext,
} from '../context.js';
import { print } from '../output.js';
import { formatStats, type StatsSample } from '../render.js';
import { integerParser } from '../rule-options.js';

interface StatsOptions {
  json?: boolean;
  watch?: boolean;
  interval: number;
  count?: number;
}

function parseInterval(value: string): number {
  const seconds = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || seconds > 3600)
    throw new InvalidArgumentError(
      'expected seconds between samples: a number from 0 to 3600 (0.5)',
    );
  return seconds;
}

/** Cursor home, then the frame with each line cleared to its end, then the rest of the screen. */
const HOME = '\x1b[H';
const CLEAR_LINE = '\x1b[K';
const CLEAR_BELOW = '\x1b[J';
const CLEAR_SCREEN = '\x1b[2J';
const HIDE_CURSOR = '\x1b[?25l';
const SHOW_CURSOR = '\x1b[?25h';

/** One frame of the live view: drawn over the last one line by line, so nothing flickers. */
export function watchFrame(text: string, first: boolean): string {
  const body = text.replace(/\n$/, '').split('\n').join(`${CLEAR_LINE}\n`);
  return `${first ? HIDE_CURSOR + CLEAR_SCREEN : ''}${HOME}${body}${CLEAR_LINE}\n${CLEAR_BELOW}`;
}

/** The `stats` command; throws the client's errors (ApiError, DaemonUnreachableError). */
export function statsCommand(context: CommandContext): Command {
  const command = new Command('stats')
    .description(
      'per-device counters: packets and bytes per action with rates, top rules, packet sizes; load-balancer services and backends',
    )
    .argument('[device]', 'only this device')
    .option('--json', 'print the Stats object (with --watch: one line per sample)')
    .option('-w, --watch', 'redraw every interval until Ctrl-C (or --count samples)')
    .option(
      '-i, --interval <seconds>',
      'seconds between samples; rates need two (0: one sample, no rates)',
      parseInterval,
      1,
    )
    .option(
      '-c, --count <n>',
      'with --watch: stop after this many samples',
      integerParser('a count', 1, 1_000_000),
    )
    .action(async function (this: Command, device: string | undefined, options: StatsOptions) {
      const interrupt = interruptSignal(context);
      try {
        await withClient(this, context, async (client) => {
          const sample = async (): Promise<StatsSample> => ({
            stats: await client.get<Stats>('/v1/stats', { device }),
            at: performance.now(),
          });
          if (!options.watch) {
            const first = await sample();
            if (options.json) return printJson(this, first.stats);
            if (options.interval === 0) return print(this, formatStats(first));
            await sleep(options.interval * 1000, interrupt.signal);
            print(this, formatStats(await sample(), first));
            return;
          }
          let previous: StatsSample | undefined;
          let drawn = 0;
          try {
            for (;;) {
              const current = await sample();
              if (options.json) printJson(this, current.stats);
              else print(this, watchFrame(formatStats(current, previous), drawn === 0));
              previous = current;
              drawn++;
              if (options.count !== undefined && drawn >= options.count) break;
              await sleep(options.interval * 1000, interrupt.signal);
              if (interrupt.signal.aborted) break;
            }
          } finally {
            if (!options.json && drawn > 0) print(this, SHOW_CURSOR);
          }
        });
      } finally {
        interrupt.release();
      }
    });
  return withExamples(
    command,
    'sluice stats',
    'sluice stats veth1 --json',
    'sluice stats veth1 --watch --interval 0.5',
  );
}
