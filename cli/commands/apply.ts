// `sluice apply -f FILE`: replace the whole desired state with a YAML or JSON file, atomically,
// printing the diff (PUT /v1/config); `--pcap` first replays a capture through it (POST /v1/replay).
import { readFile } from 'node:fs/promises';
import { Command } from 'commander';
import type { ChangeResult, ReplayReport } from '../../controller/contract.js';
import type { ConfigDoc } from '../../controller/document.js';
import {
  locateProblem,
  parseApplyFile,
  readApplyFile,
  validateApplyFile,
  type ApplyFile,
} from '../../controller/config-file.js';
import { printJson, withClient, withExamples, type CommandContext } from '../context.js';
import { ApiError } from '../errors.js';
import { print } from '../output.js';
import { formatChange, formatReplay } from '../render.js';

interface ApplyOptions {
  file: string;
  dryRun?: boolean;
  pcap?: string;
  json?: boolean;
}

/** The daemon's rejection of a place in the file, located there; other errors pass unchanged. */
function locatedError(file: ApplyFile, error: unknown, prefix = ''): unknown {
  if (!(error instanceof ApiError)) return error;
  return locateProblem(file, error.problem, prefix) ?? error;
}

async function readStdin(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/** The `apply` command: throws ApplyFileError for a file the schema or the daemon rejects. */
export function applyCommand(context: CommandContext): Command {
  const command = new Command('apply')
    .description(
      'make the desired state exactly what a YAML or JSON file says, atomically, and print the diff',
    )
    .requiredOption('-f, --file <file>', 'the desired state ("-": standard input)')
    .option('--dry-run', 'validate and print the diff; change nothing (like nft -c)')
    .option(
      '--pcap <file>',
      'also run this capture through the new rules and report per-rule counts and changed verdicts',
    )
    .option('--json', 'print {result, replay?} as JSON')
    .action(async function (this: Command, options: ApplyOptions) {
      const file =
        options.file === '-'
          ? parseApplyFile('<stdin>', await readStdin(context.stdin))
          : await readApplyFile(options.file);
      const config: ConfigDoc = validateApplyFile(file);
      let pcap: Buffer | undefined;
      if (options.pcap !== undefined) {
        try {
          pcap = await readFile(options.pcap);
        } catch (error: unknown) {
          throw new Error(`read pcap file "${options.pcap}": no such file`, { cause: error });
        }
      }
      const sizes = new Map((config.sets ?? []).map((s) => [s.name, s.prefixes.length]));
      await withClient(this, context, async (client) => {
        // Replay first: the verdicts it compares against are the running configuration's.
        let replay: ReplayReport | undefined;
        if (pcap !== undefined) {
          try {
            replay = await client.call<ReplayReport>('POST', '/v1/replay', {
              json: { config, pcap: pcap.toString('base64') },
            });
          } catch (error: unknown) {
            throw locatedError(file, error, '/config');
          }
        }
        let result: ChangeResult;
        try {
          result = await client.call<ChangeResult>('PUT', '/v1/config', {
            json: config,
            query: options.dryRun ? { dryRun: true } : {},
          });
        } catch (error: unknown) {
          throw locatedError(file, error);
        }
        if (options.json) return printJson(this, replay ? { result, replay } : { result });
        print(this, formatChange(result, sizes));
        if (replay) print(this, formatReplay(replay));
      });
    });
  return withExamples(
    command,
    'sluice apply -f sluice.yaml',
    'sluice apply -f sluice.yaml --dry-run --pcap sample.pcap',
    'sluice apply -f - --dry-run < sluice.json',
  );
}
