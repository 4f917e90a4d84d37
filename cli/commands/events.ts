// `sluice events`: follow the daemon's event stream (GET /v1/events, server-sent events), one
// line per event, until Ctrl-C.
import { Command } from 'commander';
import type { ControllerEvent } from '../../controller/contract.js';
import { interruptSignal, withClient, withExamples, type CommandContext } from '../context.js';
import { print } from '../output.js';
import { formatDiff } from '../render.js';

/**
 * One event on one line: `reconcile generation 4 ok`, `device veth1 added (ifindex 7)`,
 * `health 10.0.0.100:80/tcp backend 10.1.0.11: up -> down (connection refused)`.
 */
export function formatEvent(type: string, data: unknown): string {
  const e = data as ControllerEvent;
  switch (e.type ?? type) {
    case 'reconcile':
      if (e.type !== 'reconcile') break;
      return `reconcile generation ${e.generation} ${e.ok ? 'ok' : `failed: ${e.error ?? 'unknown error'}`}${e.drift?.length ? ` (drift: ${e.drift.join(', ')})` : ''}`;
    case 'device':
      if (e.type !== 'device') break;
      return `device ${e.name} ${e.action}${e.oldName ? ` (was ${e.oldName})` : ''} (ifindex ${e.ifindex})`;
    case 'attachment':
      if (e.type !== 'attachment') break;
      return `attachment ${e.device} ${e.hook} ${e.state}`;
    case 'config':
      if (e.type !== 'config') break;
      return `config generation ${e.generation}: ${formatDiff(e.diff).trimEnd().replace(/\n\s*/g, ' ')}`;
    case 'health':
      if (e.type !== 'health') break;
      return `health ${e.service} backend ${e.backend}: ${e.from} -> ${e.to}${e.reason ? ` (${e.reason})` : ''}`;
  }
  return `${type} ${JSON.stringify(data)}`;
}

/** The `events` command: returns when the stream ends or on Ctrl-C; throws the client's errors. */
export function eventsCommand(context: CommandContext): Command {
  const command = new Command('events')
    .description(
      'follow what the daemon does (reconciles, devices, attachments, config changes) until Ctrl-C',
    )
    .option('--json', 'print each event as one line of JSON, with its "type"')
    .action(async function (this: Command, options: { json?: boolean }) {
      const interrupt = interruptSignal(context);
      try {
        await withClient(this, context, async (client) => {
          for await (const { event, data } of client.events('/v1/events', interrupt.signal)) {
            let parsed: unknown = data;
            try {
              parsed = JSON.parse(data);
            } catch {
              // not JSON: shown as text
            }
            if (options.json) {
              const record =
                parsed !== null && typeof parsed === 'object'
                  ? { type: event, ...parsed }
                  : { type: event, data: parsed };
              print(this, JSON.stringify(record) + '\n');
            } else {
              const time = new Date().toISOString().slice(11, 19);
              print(this, `${time} ${formatEvent(event, parsed)}\n`);
            }
          }
        });
      } finally {
        interrupt.release();
      }
    });
  return withExamples(command, 'sluice events', 'sluice events --json | jq .');
}
