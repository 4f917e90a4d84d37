// `sluice set add|rm|ls|load`: named prefix sets that rules match against (/v1/sets).
import { createReadStream } from 'node:fs';
import { access } from 'node:fs/promises';
import { Command } from 'commander';
import type { ChangeResult } from '../../controller/contract.js';
import {
  dryRunQuery,
  printChange,
  printJson,
  withClient,
  withExamples,
  writeOptions,
  type CommandContext,
  type WriteOptions,
} from '../context.js';
import { ApiError } from '../errors.js';
import { formatTable, print } from '../output.js';
import { parsePrefix } from '../rule-options.js';

function setPath(name: string): string {
  return `/v1/sets/${encodeURIComponent(name)}`;
}

function setAddCommand(context: CommandContext): Command {
  const command = new Command('add')
    .description('add prefixes to a set, creating the set when it does not exist')
    .argument('<name>', 'set name')
    .argument('[prefix...]', 'IPv4 or IPv6 addresses or prefixes (none: create an empty set)');
  writeOptions(command).action(async function (
    this: Command,
    name: string,
    words: string[],
    options: WriteOptions,
  ) {
    const prefixes = words.map((word) => {
      try {
        return parsePrefix(word);
      } catch {
        this.error(`sluice: "${word}" is not an IPv4 or IPv6 address or prefix`, { exitCode: 2 });
      }
    });
    const query = dryRunQuery(options);
    const result = await withClient(this, context, async (client) => {
      const create = (): Promise<ChangeResult> =>
        client.call<ChangeResult>('POST', '/v1/sets', { json: { name, prefixes }, query });
      if (prefixes.length === 0) return await create();
      try {
        return await client.call<ChangeResult>('POST', `${setPath(name)}/prefixes`, {
          json: { prefixes },
          query,
        });
      } catch (error: unknown) {
        if (error instanceof ApiError && error.status === 404) return await create();
        throw error;
      }
    });
    printChange(this, options, result, `set ${name}: added ${prefixes.length} prefixes`);
  });
  return withExamples(
    command,
    'sluice set add blocklist 10.0.0.0/8 2001:db8::/32',
    'sluice set add allowlist',
  );
}

function setRmCommand(context: CommandContext): Command {
  const command = new Command('rm')
    .description('remove prefixes from a set, or (without prefixes) the set itself')
    .argument('<name>', 'set name')
    .argument('[prefix...]', 'prefixes to remove');
  writeOptions(command).action(async function (
    this: Command,
    name: string,
    prefixes: string[],
    options: WriteOptions,
  ) {
    const query = dryRunQuery(options);
    const result = await withClient(this, context, (client) =>
      prefixes.length > 0
        ? client.call<ChangeResult>('DELETE', `${setPath(name)}/prefixes`, {
            json: { prefixes },
            query,
          })
        : client.call<ChangeResult>('DELETE', setPath(name), { query }),
    );
    printChange(
      this,
      options,
      result,
      prefixes.length > 0
        ? `set ${name}: removed ${prefixes.length} prefixes`
        : `removed set ${name}`,
    );
  });
  return withExamples(command, 'sluice set rm blocklist 10.0.0.0/8', 'sluice set rm blocklist');
}

function setLsCommand(context: CommandContext): Command {
  const command = new Command('ls')
    .description('list the sets and their sizes, or the prefixes of one set')
    .argument('[name]', "print this set's prefixes, one per line")
    .option('--json', 'print the API response as JSON')
    .action(async function (this: Command, name: string | undefined, options: { json?: boolean }) {
      if (name !== undefined) {
        const set = await withClient(this, context, (client) =>
          client.get<{ name: string; prefixes: string[] }>(setPath(name)),
        );
        if (options.json) return printJson(this, set);
        print(this, set.prefixes.map((p) => `${p}\n`).join(''));
        return;
      }
      const { sets } = await withClient(this, context, (client) =>
        client.get<{ sets: { name: string; count: number }[] }>('/v1/sets'),
      );
      if (options.json) return printJson(this, { sets });
      if (sets.length === 0) return print(this, 'no sets\n');
      print(
        this,
        formatTable(
          ['NAME', 'PREFIXES'],
          sets.map((s) => [s.name, String(s.count)]),
          ['left', 'right'],
        ),
      );
    });
  return withExamples(command, 'sluice set ls', 'sluice set ls blocklist', 'sluice set ls --json');
}

function setLoadCommand(context: CommandContext): Command {
  const command = new Command('load')
    .description(
      'replace a set with the prefixes of a file, one per line (streamed: millions are fine)',
    )
    .argument('<name>', 'set name (created when it does not exist)')
    .requiredOption('-f, --file <file>', 'prefix file, one per line ("-": standard input)');
  writeOptions(command).action(async function (
    this: Command,
    name: string,
    options: WriteOptions & { file: string },
  ) {
    if (options.file !== '-') {
      try {
        await access(options.file);
      } catch (error: unknown) {
        throw new Error(`read prefixes from "${options.file}": no such file`, { cause: error });
      }
    }
    const stream = options.file === '-' ? context.stdin : createReadStream(options.file);
    const result = await withClient(this, context, (client) =>
      client.call<ChangeResult & { count: number }>('PUT', setPath(name), {
        stream: stream as AsyncIterable<Uint8Array>,
        contentType: 'text/plain; charset=utf-8',
        query: dryRunQuery(options),
      }),
    );
    printChange(this, options, result, `set ${name}: loaded ${result.count} prefixes`);
  });
  return withExamples(
    command,
    'sluice set load blocklist --file prefixes.txt',
    'curl -s https://example.net/drop.txt | sluice set load blocklist --file -',
  );
}

/** `sluice set …`: the prefix-set commands; actions throw the client's errors. */
export function setCommand(context: CommandContext): Command {
  return withExamples(
    new Command('set')
      .description('named IPv4/IPv6 prefix sets that rules match with --src-set and --dst-set')
      .addCommand(setAddCommand(context))
      .addCommand(setRmCommand(context))
      .addCommand(setLsCommand(context))
      .addCommand(setLoadCommand(context)),
    'sluice set add blocklist 10.0.0.0/8',
    'sluice set load blocklist --file prefixes.txt',
    'sluice set ls',
  );
}
