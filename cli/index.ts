// Assembles the `sluice` command line from one module per command and runs it.
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { describeFailure } from './errors.js';
import { compileCommand } from './commands/compile.js';
import { filterCommand } from './commands/filter.js';
import { selfcheckCommand } from './commands/selfcheck.js';

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

/** Builds the program; commands write through `out`/`err` so tests can capture them. */
export function buildProgram(): Command {
  const program = new Command('sluice')
    .description('XDP/TC data-plane controller: drop, forward, load-balance and filter packets')
    .version(packageVersion());
  program.addCommand(compileCommand());
  program.addCommand(filterCommand());
  program.addCommand(selfcheckCommand());
  throwInsteadOfExiting(program);
  return program;
}

/** Commands added with addCommand() don't inherit exitOverride, so set it on every one. */
function throwInsteadOfExiting(command: Command): void {
  command.exitOverride();
  for (const sub of command.commands) throwInsteadOfExiting(sub);
}

/**
 * Runs the CLI and returns the exit code: 0 on success, 1 when a command
 * failed, 2 on a usage error. Never calls process.exit itself.
 */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (error: unknown) {
    if (error instanceof CommanderError) {
      if (error.exitCode === 0) return 0; // --help, --version
      return 2;
    }
    process.stderr.write(describeFailure(error) + '\n');
    return 1;
  }
}
