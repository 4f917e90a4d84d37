// `sluice devices`: the network devices the daemon sees (GET /v1/devices) and the hooks it runs on
// each (GET /v1/status), so the name to give `attach` is at hand.
import { Command } from 'commander';
import type { ControllerStatus, DeviceInfo } from '../../controller/contract.js';
import { printJson, withClient, withExamples, type CommandContext } from '../context.js';
import { formatTable, print } from '../output.js';

/** The human view: one row a device, with the hooks sluice has attached there. */
export function formatDevices(devices: DeviceInfo[], status: ControllerStatus): string {
  if (devices.length === 0) return 'no devices\n';
  const hooks = new Map<string, string[]>();
  for (const a of status.attachments) {
    if (a.state !== 'attached') continue;
    hooks.set(a.device, [...(hooks.get(a.device) ?? []), a.hook]);
  }
  return formatTable(
    ['DEVICE', 'IFINDEX', 'STATE', 'MAC', 'MTU', 'SLUICE'],
    devices.map((d) => [
      d.name,
      String(d.ifindex),
      d.up ? 'up' : 'down',
      d.mac ?? '-',
      d.mtu === null ? '-' : String(d.mtu),
      hooks.get(d.name)?.join(',') ?? '',
    ]),
    ['left', 'right', 'left', 'left', 'right', 'left'],
  );
}

/** The `devices` command; throws the client's errors. */
export function devicesCommand(context: CommandContext): Command {
  const command = new Command('devices')
    .description("the network devices of the daemon's namespace, and the hooks sluice runs on each")
    .option('--json', 'print {"devices": [...]} as the API answers it')
    .action(async function (this: Command, options: { json?: boolean }) {
      const [{ devices }, status] = await withClient(this, context, (client) =>
        Promise.all([
          client.get<{ devices: DeviceInfo[] }>('/v1/devices'),
          client.get<ControllerStatus>('/v1/status'),
        ]),
      );
      if (options.json) return printJson(this, { devices });
      print(this, formatDevices(devices, status));
    });
  return withExamples(command, 'sluice devices', 'sluice devices --json');
}
