// `sluice filter test|add|rm|ls`: run a compiled filter over a capture file and report what it
// matches (locally), and manage the daemon's filter rules (/v1/filters).
import { Command, Option } from 'commander';
import type { FilterBackend } from '../../bpf/filter-run.js';
import type { ChangeResult } from '../../controller/contract.js';
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
import { readFilterProgram } from '../filter-source.js';
import { formatTable, print, warn } from '../output.js';
import {
  actionOption,
  addLimitOptions,
  addRedirectOptions,
  checkActionNeeds,
  deviceOption,
  hookOption,
  integerParser,
  describeAction,
  type MatchOptions,
  type RULE_ACTIONS,
} from '../rule-options.js';
import { PcapFormatError, readPcap } from '../../bpf/pcap.js';

/** LINKTYPE_ETHERNET: the only link type the compiler generates code for. */
const LINKTYPE_ETHERNET = 1;

interface TestOptions {
  pcap: string;
  cbpf?: string;
  verdicts?: boolean;
  backend: FilterBackend;
}

function filterTestCommand(): Command {
  return new Command('test')
    .description(
      'run the compiled filter over every packet of a pcap file (by default our eBPF, in the kernel)',
    )
    .requiredOption('--pcap <file>', 'capture file (pcap, Ethernet)')
    .option('--verdicts', 'print 1 or 0 per packet, in file order')
    .addOption(
      new Option(
        '--backend <backend>',
        'ebpf: BPF_PROG_TEST_RUN in the kernel; cbpf: the classic interpreter',
      )
        .choices(['ebpf', 'cbpf'])
        .default('ebpf'),
    )
    .option(
      '--cbpf <file>',
      'classic BPF as tcpdump -ddd text ("-": standard input) instead of an expression',
    )
    .argument(
      '[expression...]',
      'pcap-filter(7) expression; several arguments are joined with spaces',
    )
    .action(async function (this: Command, words: string[], options: TestOptions) {
      const program = await readFilterProgram(this, words, options);
      const capture = await readPcap(options.pcap);
      if (capture.linkType !== LINKTYPE_ETHERNET) {
        throw new PcapFormatError(
          'PCAP_LINK_TYPE',
          `filter "${options.pcap}": link type ${capture.linkType} is not Ethernet (1), the only one filters compile for`,
          20,
          { path: options.pcap },
        );
      }
      // Loaded here: the addon it needs is no business of the client commands beside it.
      const { runFilter } = await import('../../bpf/filter-run.js');
      const { verdicts, interpreted } = await runFilter(program, capture.packets, options.backend);
      if (options.verdicts) {
        print(this, verdicts.map((v) => (v ? '1\n' : '0\n')).join(''));
      } else {
        const matched = verdicts.filter(Boolean).length;
        print(this, `matched ${matched} of ${verdicts.length} packets\n`);
      }
      if (options.backend === 'ebpf' && interpreted > 0) {
        warn(
          this,
          `note: ${interpreted} packets judged by the classic interpreter: shorter than an Ethernet header, ` +
            'or truncated while the filter reads the wire length; the kernel test run cannot see either\n',
        );
      }
    });
}

/** A filter rule as `POST /v1/filters` takes it and `GET /v1/filters` lists it. */
interface FilterDoc {
  id?: string;
  device: string;
  hook?: string;
  priority?: number;
  expression: string;
  action: (typeof RULE_ACTIONS)[number];
  rate?: string;
  burst?: number;
  perSource?: boolean;
  to?: string;
  via?: string;
}

type FilterAddOptions = Pick<
  MatchOptions,
  'dev' | 'hook' | 'id' | 'priority' | 'rate' | 'burst' | 'perSource' | 'to' | 'via'
> &
  WriteOptions & { action: FilterDoc['action'] };

function filterAddCommand(context: CommandContext): Command {
  const command = new Command('add')
    .description(
      'drop, pass, count, limit or redirect the packets a pcap-filter(7) expression matches',
    )
    .addOption(deviceOption().makeOptionMandatory())
    .addOption(hookOption())
    .addOption(actionOption())
    .option('--id <id>', 'filter rule id (default: generated)')
    .option(
      '--priority <n>',
      'lower runs first (default: after the rules already there)',
      integerParser('a priority', 0, 1_000_000),
    )
    .argument(
      '<expression...>',
      'pcap-filter(7) expression; several arguments are joined with spaces',
    );
  addLimitOptions(command, false);
  addRedirectOptions(command);
  writeOptions(command).action(async function (
    this: Command,
    words: string[],
    options: FilterAddOptions,
  ) {
    checkActionNeeds(this, options);
    const body: FilterDoc = {
      device: options.dev,
      expression: words.join(' '),
      action: options.action,
    };
    for (const key of [
      'id',
      'hook',
      'priority',
      'rate',
      'burst',
      'perSource',
      'to',
      'via',
    ] as const)
      if (options[key] !== undefined)
        (body as unknown as Record<string, unknown>)[key] = options[key];
    const result = await withClient(this, context, (client) =>
      client.call<ChangeResult & { filter?: { id: string }; rule?: { id: string } }>(
        'POST',
        '/v1/filters',
        { json: body, query: dryRunQuery(options) },
      ),
    );
    const id = result.filter?.id ?? result.rule?.id ?? options.id ?? '';
    printChange(this, options, result, `added filter ${id}`.trimEnd());
  });
  return withExamples(
    command,
    "sluice filter add --dev veth1 --action drop 'udp and ip[6:2] & 0x1fff != 0'",
    "sluice filter add --dev veth1 --action ratelimit --rate 100pps 'icmp[icmptype] == icmp-echo'",
  );
}

function filterLsCommand(context: CommandContext): Command {
  const command = new Command('ls')
    .description('list filter rules')
    .addOption(deviceOption('--dev <device>', "only this device's filters"))
    .option('--json', 'print the API response as JSON')
    .action(async function (this: Command, options: { dev?: string; json?: boolean }) {
      const { filters } = await withClient(this, context, (client) =>
        client.get<{
          filters: (Partial<FilterDoc> & { id: string; device: string; filter?: string })[];
        }>('/v1/filters'),
      );
      const shown = options.dev ? filters.filter((f) => f.device === options.dev) : filters;
      if (options.json) return printJson(this, { filters: shown });
      if (shown.length === 0) return print(this, 'no filters\n');
      print(
        this,
        formatTable(
          ['ID', 'DEVICE', 'HOOK', 'PRIO', 'ACTION', 'EXPRESSION'],
          shown.map((f) => [
            f.id,
            f.device,
            f.hook ?? 'xdp',
            f.priority === undefined ? '-' : String(f.priority),
            describeAction({
              action: f.action ?? 'drop',
              rate: f.rate,
              burst: f.burst,
              perSource: f.perSource,
              to: f.to,
              via: f.via,
            }),
            // The daemon lists filter rules as rules: the expression is their `filter`.
            f.expression ?? f.filter ?? '',
          ]),
          ['left', 'left', 'left', 'right', 'left', 'left'],
        ),
      );
    });
  return withExamples(command, 'sluice filter ls', 'sluice filter ls --dev veth1 --json');
}

/** `sluice filter …`: filter expressions, run locally (`test`) or by the daemon (add, rm, ls). */
export function filterCommand(context: CommandContext): Command {
  return withExamples(
    new Command('filter')
      .description('tcpdump-style filter expressions')
      .addCommand(
        withExamples(
          filterTestCommand(),
          'sluice filter test --pcap sample.pcap --verdicts udp port 53',
        ),
      )
      .addCommand(filterAddCommand(context))
      .addCommand(
        removeByIdCommand(context, {
          path: '/v1/filters',
          what: 'a filter rule',
          idName: 'filter id',
          noun: 'filter',
          example: 'sluice filter rm frag-drop',
        }),
      )
      .addCommand(filterLsCommand(context)),
    'sluice filter test --pcap sample.pcap tcp port 80',
    "sluice filter add --dev veth1 --action drop 'udp and ip[6:2] & 0x1fff != 0'",
    'sluice filter ls',
  );
}
