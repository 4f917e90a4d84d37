// Assembles the `sluice` command line from one module per command and runs it.
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { describeFailure } from './errors.js';
import { processIo, type CliIo } from './output.js';
import { compileCommand } from './commands/compile.js';
import { filterCommand } from './commands/filter.js';
import { selfcheckCommand } from './commands/selfcheck.js';
import type { SelfcheckRunner } from '../netns-lab/selfcheck.js';

function packageVersion(): string {
  const url = new URL('../../package.json', import.meta.url);
  const fallback = new URL('../package.json', import.meta.url);
  for (const candidate of [url, fallback]) {
    try {
      return (JSON.parse(readFileSync(candidate, 'utf8')) as { version: string }).version;
    } catch {
      // compiled (dist/cli) and source (cli/) layouts sit at different depths
    }
  }
  return 'unknown';
}

/** What commands reach outside the process through; tests replace them. */
export interface CliDeps {
  /** Runs the self-check lab (default: netns-lab's runSelfcheck). */
  selfcheck?: SelfcheckRunner;
}

/** Builds the program; every command writes through `io`, so tests can capture what it prints. */
export function buildProgram(io: CliIo = processIo, deps: CliDeps = {}): Command {
  const program = new Command('sluice')
    .description('XDP/TC data-plane controller: drop, forward, load-balance and filter packets')
    .version(packageVersion());
  program.addCommand(compileCommand());
  program.addCommand(filterCommand());
  program.addCommand(selfcheckCommand(deps.selfcheck));
  configureAll(program, io);
  return program;
}

/** Commands added with addCommand() inherit neither exitOverride nor output settings: set them on each. */
function configureAll(command: Command, io: CliIo): void {
  command.exitOverride().configureOutput({
    writeOut: io.out,
    writeErr: io.err,
    // Usage errors read like every other failure: `sluice: <message>`.
    outputError: (text) => io.err(text.replace(/^error: /, 'sluice: ')),
  });
  for (const sub of command.commands) configureAll(sub, io);
}

/**
 * Runs the CLI and returns the exit code: 0 on success, 1 when a command
 * failed, 2 on a usage error. Never calls process.exit itself.
 */
export async function main(
  argv: string[],
  io: CliIo = processIo,
  deps: CliDeps = {},
): Promise<number> {
  const program = buildProgram(io, deps);
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (error: unknown) {
    if (error instanceof CommanderError) {
      if (error.exitCode === 0) return 0; // --help, --version
      return 2;
    }
    io.err(describeFailure(error) + '\n');
    return 1;
  }
}
