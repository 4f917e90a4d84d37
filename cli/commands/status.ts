// `sluice status`: desired vs applied generation and where each attachment stands (GET /v1/status).
import { Command } from 'commander';
import type { ControllerStatus } from '../../controller/contract.js';
import { printJson, withClient, withExamples, type CommandContext } from '../context.js';
import { formatTable, print } from '../output.js';

/** The human view of a ControllerStatus. */
export function formatStatus(status: ControllerStatus): string {
  const converged = status.desiredGeneration === status.appliedGeneration;
  const head = [
    `generation  desired ${status.desiredGeneration}, applied ${status.appliedGeneration}${converged ? '' : ' (reconciling)'}`,
    `ready       ${status.ready ? 'yes' : 'no'}`,
    `state dir   ${status.stateDir}`,
    `pin dir     ${status.pinDir}`,
    '',
    '',
  ].join('\n');
  if (status.attachments.length === 0) return `${head}no attachments\n`;
  return (
    head +
    formatTable(
      ['DEVICE', 'HOOK', 'STATE', 'IFINDEX', 'GENERATION', 'ERROR'],
      status.attachments.map((a) => [
        a.device,
        a.hook,
        a.state,
        a.ifindex === null ? '-' : String(a.ifindex),
        a.appliedGeneration === null ? '-' : String(a.appliedGeneration),
        a.error ?? '',
      ]),
      ['left', 'left', 'left', 'right', 'right', 'left'],
    )
  );
}

/** The `status` command; throws the client's errors. */
export function statusCommand(context: CommandContext): Command {
  const command = new Command('status')
    .description('desired and applied generation, and the state of every attachment')
    .option('--json', 'print the ControllerStatus object')
    .action(async function (this: Command, options: { json?: boolean }) {
      const status = await withClient(this, context, (client) =>
        client.get<ControllerStatus>('/v1/status'),
      );
      if (options.json) return printJson(this, status);
      print(this, formatStatus(status));
    });
  return withExamples(command, 'sluice status', 'sluice status --json');
}
