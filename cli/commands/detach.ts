// `sluice detach`: take the pipeline off a device (DELETE /v1/attachments/:device).
import { Command, Option } from 'commander';
import type { ChangeResult } from '../../controller/contract.js';
import type { HookName } from '../../controller/document.js';
import {
  printChange,
  withClient,
  withExamples,
  writeOptions,
  type CommandContext,
  type WriteOptions,
} from '../context.js';
import { HOOKS } from '../rule-options.js';

/** The `detach` command; throws the client's errors (ApiError, DaemonUnreachableError). */
export function detachCommand(context: CommandContext): Command {
  const command = new Command('detach')
    .description('detach the pipeline from a device (every hook, or the one --hook names)')
    .argument('<device>', 'network device')
    .addOption(new Option('--hook <hook>', 'only this hook (default: every hook)').choices(HOOKS));
  writeOptions(command).action(async function (
    this: Command,
    device: string,
    options: WriteOptions & { hook?: HookName },
  ) {
    const result = await withClient(this, context, (client) =>
      client.call<ChangeResult>('DELETE', `/v1/attachments/${encodeURIComponent(device)}`, {
        query: { hook: options.hook, dryRun: options.dryRun || undefined },
      }),
    );
    printChange(
      this,
      options,
      result,
      `detached ${device}${options.hook ? ` (${options.hook})` : ''}`,
    );
  });
  return withExamples(command, 'sluice detach veth1', 'sluice detach eth0 --hook tc-ingress');
}
