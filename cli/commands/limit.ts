// `sluice limit add|rm|ls`: rate-limit rules, token buckets on matching traffic (/v1/limits).
import { Command } from 'commander';
import type { ChangeResult } from '../../controller/contract.js';
import type { RuleDoc } from '../../controller/document.js';
import {
  dryRunQuery,
  printChange,
  printJson,
  removeByIdCommand,
  withClient,
  withExamples,
  writeOptions,
  type CommandContext,
  type WriteOptions,
} from '../context.js';
import { formatTable, print } from '../output.js';
import {
  addLimitOptions,
  addMatchOptions,
  describeMatch,
  deviceOption,
  ruleFromOptions,
  type MatchOptions,
} from '../rule-options.js';

function limitAddCommand(context: CommandContext): Command {
  const command = new Command('add').description(
    'limit matching traffic to a rate (one bucket, or one per source with --per-source)',
  );
  addMatchOptions(command);
  addLimitOptions(command, true);
  writeOptions(command).action(async function (
    this: Command,
    options: MatchOptions & WriteOptions,
  ) {
    const result = await withClient(this, context, (client) =>
      client.call<ChangeResult & { rule?: RuleDoc }>('POST', '/v1/limits', {
        json: ruleFromOptions(options),
        query: dryRunQuery(options),
      }),
    );
    printChange(
      this,
      options,
      result,
      `added limit ${result.rule?.id ?? options.id ?? ''}`.trimEnd(),
    );
  });
  return withExamples(
    command,
    'sluice limit add --dev veth1 --proto udp --dport 53 --rate 1000pps --per-source',
    'sluice limit add --dev eth0 --dst 192.0.2.10 --rate 10mbit --burst 65536',
  );
}

type Limit = RuleDoc & { id: string; passed: number; dropped: number };

function limitLsCommand(context: CommandContext): Command {
  const command = new Command('ls')
    .description('list rate limits with the packets they passed and dropped')
    .addOption(deviceOption('--dev <device>', "only this device's limits"))
    .option('--json', 'print the API response as JSON')
    .action(async function (this: Command, options: { dev?: string; json?: boolean }) {
      const { limits } = await withClient(this, context, (client) =>
        client.get<{ limits: Limit[] }>('/v1/limits'),
      );
      const shown = options.dev ? limits.filter((l) => l.device === options.dev) : limits;
      if (options.json) return printJson(this, { limits: shown });
      if (shown.length === 0) return print(this, 'no limits\n');
      print(
        this,
        formatTable(
          ['ID', 'DEVICE', 'HOOK', 'MATCH', 'RATE', 'BURST', 'PER-SOURCE', 'PASSED', 'DROPPED'],
          shown.map((l) => [
            l.id,
            l.device,
            l.hook ?? 'xdp',
            describeMatch(l),
            String(l.rate ?? '-'),
            l.burst === undefined ? '-' : String(l.burst),
            l.perSource ? 'yes' : 'no',
            String(l.passed),
            String(l.dropped),
          ]),
          ['left', 'left', 'left', 'left', 'right', 'right', 'left', 'right', 'right'],
        ),
      );
    });
  return withExamples(command, 'sluice limit ls', 'sluice limit ls --dev veth1 --json');
}

/** `sluice limit …`: the rate-limit commands; actions throw the client's errors. */
export function limitCommand(context: CommandContext): Command {
  return withExamples(
    new Command('limit')
      .description('rate limits: rules whose action is a token bucket')
      .addCommand(limitAddCommand(context))
      .addCommand(
        removeByIdCommand(context, {
          path: '/v1/limits',
          what: 'a rate limit',
          idName: 'rule id',
          noun: 'limit',
          example: 'sluice limit rm dns-limit',
        }),
      )
      .addCommand(limitLsCommand(context)),
    'sluice limit add --dev veth1 --proto udp --dport 53 --rate 1000pps',
    'sluice limit ls',
  );
}
