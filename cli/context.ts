// What the daemon-client commands share: the environment and stdin they read, how they reach the
// daemon, how they learn of Ctrl-C, and the small printing conventions of their results.
import { Command } from 'commander';
import { ApiClient, resolveEndpoint, type GlobalOptions } from './client.js';
import type { ChangeResult } from '../controller/contract.js';
import { print } from './output.js';
import { formatDiff } from './render.js';

/** The outside world of a client command; tests replace parts of it. */
export interface CommandContext {
  env: NodeJS.ProcessEnv;
  /** Where `-` reads from (set load, apply). */
  stdin: NodeJS.ReadableStream;
  /** Ends `--watch` and `events`; by default the first SIGINT does. */
  interrupt?: AbortSignal;
}

/** The context of a real run: process.env, process.stdin, SIGINT. */
export function processContext(): CommandContext {
  return { env: process.env, stdin: process.stdin };
}

/**
 * Runs `fn` with a client of the daemon that `command`'s global options choose, closing it after.
 * Throws what `fn` throws, and the endpoint's errors (an unreadable token file).
 */
export async function withClient<T>(
  command: Command,
  context: CommandContext,
  fn: (client: ApiClient) => Promise<T>,
): Promise<T> {
  const endpoint = await resolveEndpoint(command.optsWithGlobals<GlobalOptions>(), context.env);
  const client = new ApiClient(endpoint);
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

/**
 * A signal that aborts on the context's interrupt, or else on the first SIGINT (which then no
 * longer ends the process: the command returns normally). Call `release()` when done.
 */
export function interruptSignal(context: CommandContext): {
  signal: AbortSignal;
  release(): void;
} {
  if (context.interrupt) return { signal: context.interrupt, release: () => {} };
  const controller = new AbortController();
  const onSigint = (): void => controller.abort();
  process.once('SIGINT', onSigint);
  return { signal: controller.signal, release: () => process.off('SIGINT', onSigint) };
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/** Prints `value` as one line of JSON. */
export function printJson(command: Command, value: unknown): void {
  print(command, JSON.stringify(value) + '\n');
}

/** `?dryRun=true` when the command was given `--dry-run`. */
export function dryRunQuery(options: { dryRun?: boolean }): { dryRun?: boolean } {
  return options.dryRun ? { dryRun: true } : {};
}

/** Adds the `Examples:` section to a command's help. */
export function withExamples(command: Command, ...examples: string[]): Command {
  return command.addHelpText(
    'after',
    `\nExamples:\n${examples.map((e) => `  $ ${e}`).join('\n')}\n`,
  );
}

/** Options every write command takes. */
export interface WriteOptions {
  json?: boolean;
  dryRun?: boolean;
}

/**
 * Prints what a write did: `--json` the ChangeResult; else `done` with the generation, or for a
 * dry run the diff it would make.
 */
export function printChange(
  command: Command,
  options: WriteOptions,
  result: ChangeResult,
  done: string,
): void {
  if (options.json) return printJson(command, result);
  if (!result.applied) {
    print(command, formatDiff(result.diff) + `dry run: nothing applied (${done})\n`);
    return;
  }
  print(command, `${done} (generation ${result.generation})\n`);
}

/** Adds `--dry-run` and `--json` to a write command. */
export function writeOptions(command: Command): Command {
  return command
    .option('--dry-run', 'show what would change; change nothing')
    .option('--json', 'print the change result as JSON');
}

/** What tells one `rm <id>` command from another. */
export interface RemoveByIdSpec {
  /** The collection path: `/v1/rules`; the id is appended, encoded. */
  path: string;
  /** What the command removes, for its description: `a rate limit`. */
  what: string;
  /** The argument's help: `rule id`. */
  idName: string;
  /** The noun of the done line: `removed limit <id>`. */
  noun: string;
  example: string;
}

/**
 * The `rm <id>` command of a resource whose members are removed by id (rules, limits, filters),
 * with `--dry-run` and `--json`; its action throws the client's errors.
 */
export function removeByIdCommand(context: CommandContext, spec: RemoveByIdSpec): Command {
  const command = new Command('rm')
    .description(`remove ${spec.what}`)
    .argument('<id>', spec.idName);
  writeOptions(command).action(async function (this: Command, id: string, options: WriteOptions) {
    const result = await withClient(this, context, (client) =>
      client.call<ChangeResult>('DELETE', `${spec.path}/${encodeURIComponent(id)}`, {
        query: dryRunQuery(options),
      }),
    );
    printChange(this, options, result, `removed ${spec.noun} ${id}`);
  });
  return withExamples(command, spec.example);
}
