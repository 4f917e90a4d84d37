// `sluice attach`: run the pipeline on a device (POST /v1/attachments).
import { Command, Option } from 'commander';
import type { ChangeResult } from '../../controller/contract.js';
import type { AttachmentDoc } from '../../controller/document.js';
import {
  dryRunQuery,
  printChange,
  withClient,
  withExamples,
  writeOptions,
  type CommandContext,
  type WriteOptions,
} from '../context.js';
import { HOOKS } from '../rule-options.js';

interface AttachOptions extends WriteOptions {
  hook?: AttachmentDoc['hook'];
  mode?: AttachmentDoc['mode'];
  defaultAction?: AttachmentDoc['defaultAction'];
  /** true: `--decap` alone (any destination); a list: `--decap ADDR…`. */
  decap?: true | string[];
}

/** The `attach` command; throws the client's errors (ApiError, DaemonUnreachableError). */
export function attachCommand(context: CommandContext): Command {
  const command = new Command('attach')
    .description('attach the pipeline to a device (the daemon keeps it attached across restarts)')
    .argument('<device>', 'network device')
    .addOption(new Option('--hook <hook>', 'where the pipeline runs (default xdp)').choices(HOOKS))
    .addOption(
      new Option(
        '--mode <mode>',
        'XDP only: native (driver) or generic (skb); default native',
      ).choices(['native', 'generic']),
    )
    .addOption(
      new Option(
        '--default-action <action>',
        'verdict when no rule matches (default pass)',
      ).choices(['pass', 'drop']),
    )
    .option(
      '--decap [address...]',
      "on a backend: decapsulate a sluice balancer's ipip/gue traffic to these addresses (this host's; none given: any)",
    );
  writeOptions(command).action(async function (
    this: Command,
    device: string,
    options: AttachOptions,
  ) {
    const body: AttachmentDoc = { device };
    if (options.hook) body.hook = options.hook;
    if (options.mode) body.mode = options.mode;
    if (options.defaultAction) body.defaultAction = options.defaultAction;
    if (options.decap !== undefined) body.decap = options.decap === true ? [] : options.decap;
    const result = await withClient(this, context, (client) =>
      client.call<ChangeResult>('POST', '/v1/attachments', {
        json: body,
        query: dryRunQuery(options),
      }),
    );
    printChange(this, options, result, `attached ${device} (${options.hook ?? 'xdp'})`);
  });
  return withExamples(
    command,
    'sluice attach veth1 --hook xdp --mode native',
    'sluice attach eth0 --hook tc-ingress',
    'sluice attach eth1 --decap 10.1.0.11   # a backend of an ipip/gue service',
    'sluice attach veth1 --dry-run --json',
  );
}
