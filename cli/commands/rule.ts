// `sluice rule add|rm|ls`: ordered match → action rules of an attachment (/v1/rules).
import { Command } from 'commander';
import type { ChangeResult, Stats } from '../../controller/contract.js';
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
import { ApiError } from '../errors.js';
import { formatTable, print } from '../output.js';
import {
  actionOption,
  addLimitOptions,
  addMatchOptions,
  addRedirectOptions,
  checkActionNeeds,
  describeAction,
  describeMatch,
  deviceOption,
  hookOption,
  ruleFromOptions,
  type MatchOptions,
} from '../rule-options.js';

function ruleAddCommand(context: CommandContext): Command {
  const command = new Command('add').description(
    'add a rule to a device: the fields given must all match; lower --priority runs first',
  );
  addMatchOptions(command).addOption(actionOption());
  addLimitOptions(command, false);
  addRedirectOptions(command);
  writeOptions(command).action(async function (
    this: Command,
    options: MatchOptions & WriteOptions & { action: RuleDoc['action'] },
  ) {
    checkActionNeeds(this, options);
    if (options.action !== 'ratelimit' && (options.rate ?? options.burst ?? options.perSource))
      this.error('sluice: --rate, --burst and --per-source go with --action ratelimit', {
        exitCode: 2,
      });
    if (options.action !== 'redirect' && (options.to ?? options.via))
      this.error('sluice: --to and --via go with --action redirect', { exitCode: 2 });
    const rule: RuleDoc = { ...ruleFromOptions(options), action: options.action };
    const result = await withClient(this, context, (client) =>
      client.call<ChangeResult & { rule: RuleDoc }>('POST', '/v1/rules', {
        json: rule,
        query: dryRunQuery(options),
      }),
    );
    printChange(this, options, result, `added rule ${result.rule?.id ?? rule.id ?? ''}`.trimEnd());
  });
  return withExamples(
    command,
    'sluice rule add --dev veth1 --src-set blocklist --action drop',
    'sluice rule add --dev veth1 --proto udp --dport 53 --action ratelimit --rate 1000pps',
    "sluice rule add --dev veth1 --priority 10 --dst 192.0.2.0/24 --proto tcp --tcp-flags 'syn,!ack' --action drop",
    "sluice rule add --dev veth1 --filter 'udp and ip[6:2] & 0x1fff != 0' --action drop",
    'sluice rule add --dev veth1 --dst 198.51.100.7 --action redirect --to veth2',
  );
}

/** Per-rule hits from /v1/stats, by rule id; empty when the daemon cannot give them. */
async function ruleHits(
  get: <T>(path: string, query?: Record<string, string | undefined>) => Promise<T>,
  device: string | undefined,
): Promise<Map<string, { packets: number; bytes: number }>> {
  const hits = new Map<string, { packets: number; bytes: number }>();
  try {
    const stats = await get<Stats>('/v1/stats', { device });
    for (const d of stats.devices)
      for (const r of d.rules) hits.set(`${d.name}@${d.hook}/${r.id}`, r);
  } catch (error: unknown) {
    // The rules are still worth listing when their counters are not (yet) readable.
    if (!(error instanceof ApiError)) throw error;
  }
  return hits;
}

type ListedRule = RuleDoc & { id: string };

function ruleLsCommand(context: CommandContext): Command {
  const command = new Command('ls')
    .description('list rules in the order they are tried, with their hits')
    .addOption(deviceOption('--dev <device>', "only this device's rules"))
    .addOption(hookOption())
    .option('--json', 'print the rules (with packets and bytes) as JSON')
    .action(async function (
      this: Command,
      options: { dev?: string; hook?: string; json?: boolean },
    ) {
      const { rules, hits } = await withClient(this, context, async (client) => {
        const { rules } = await client.get<{ rules: ListedRule[] }>('/v1/rules', {
          device: options.dev,
          hook: options.hook,
        });
        return { rules, hits: await ruleHits((p, q) => client.get(p, q), options.dev) };
      });
      const withHits = rules.map((rule) => {
        const hit = hits.get(`${rule.device}@${rule.hook ?? 'xdp'}/${rule.id}`);
        return { ...rule, packets: hit?.packets ?? null, bytes: hit?.bytes ?? null };
      });
      if (options.json) return printJson(this, { rules: withHits });
      if (rules.length === 0) return print(this, 'no rules\n');
      print(
        this,
        formatTable(
          ['ID', 'DEVICE', 'HOOK', 'PRIO', 'MATCH', 'ACTION', 'PACKETS', 'BYTES'],
          withHits.map((r) => [
            r.id,
            r.device,
            r.hook ?? 'xdp',
            r.priority === undefined ? '-' : String(r.priority),
            describeMatch(r),
            describeAction(r),
            r.packets === null ? '-' : String(r.packets),
            r.bytes === null ? '-' : String(r.bytes),
          ]),
          ['left', 'left', 'left', 'right', 'left', 'left', 'right', 'right'],
        ),
      );
    });
  return withExamples(command, 'sluice rule ls', 'sluice rule ls --dev veth1 --json');
}

/** `sluice rule …`: the rule commands; actions throw the client's errors. */
export function ruleCommand(context: CommandContext): Command {
  return withExamples(
    new Command('rule')
      .description('rules: match fields → drop, pass, count, ratelimit or redirect')
      .addCommand(ruleAddCommand(context))
      .addCommand(
        removeByIdCommand(context, {
          path: '/v1/rules',
          what: 'a rule',
          idName: 'rule id',
          noun: 'rule',
          example: 'sluice rule rm drop-bogons',
        }),
      )
      .addCommand(ruleLsCommand(context)),
    'sluice rule add --dev veth1 --src-set blocklist --action drop',
    'sluice rule ls --dev veth1',
    'sluice rule rm r1',
  );
}
