// Assembles the `sluice` command line from one module per command and runs it.
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { DEFAULT_SOCKET } from './client.js';
import { applyCommand } from './commands/apply.js';
import { attachCommand } from './commands/attach.js';
import { compileCommand } from './commands/compile.js';
import { demoCommand } from './commands/demo.js';
import { detachCommand } from './commands/detach.js';
import { devicesCommand } from './commands/devices.js';
import { eventsCommand } from './commands/events.js';
import { filterCommand } from './commands/filter.js';
import { lbCommand } from './commands/lb.js';
import { limitCommand } from './commands/limit.js';
import { ruleCommand } from './commands/rule.js';
import { selfcheckCommand } from './commands/selfcheck.js';
import { serveCommand, type ServeRunner } from './commands/serve.js';
import { setCommand } from './commands/set.js';
import { statsCommand } from './commands/stats.js';
import { statusCommand } from './commands/status.js';
import { processContext, type CommandContext } from './context.js';
import { ApiError, describeFailure } from './errors.js';
import { processIo, stopOnClosedStdout, type CliIo } from './output.js';
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
  /** Runs the daemon for `serve` (default: controller/daemon.ts's runDaemon). */
  serve?: ServeRunner;
  /** Environment read for SLUICE_SOCKET and SLUICE_TOKEN (default: process.env). */
  env?: NodeJS.ProcessEnv;
  /** Where `--file -` reads from (default: process.stdin). */
  stdin?: NodeJS.ReadableStream;
  /** Ends `stats --watch` and `events` (default: the first SIGINT). */
  interrupt?: AbortSignal;
}

const ROOT_HELP = `
The client commands reach the daemon on its Unix socket: --socket, else $SLUICE_SOCKET,
else ${DEFAULT_SOCKET}; or over TCP with --server URL and a bearer token (--token,
--token-file, else $SLUICE_TOKEN).

Exit status:
  0  success
  1  failure: the command failed, or the daemon refused the request or is not running
  2  usage error: unknown command or option, bad or missing argument

Examples:
  $ sluice attach veth1 --hook xdp --mode native
  $ sluice set add blocklist 10.0.0.0/8 2001:db8::/32
  $ sluice rule add --dev veth1 --src-set blocklist --action drop
  $ sluice lb backend add 10.0.0.100:80 10.1.0.11 --weight 2 --check http:/healthz
  $ sluice apply -f sluice.yaml --dry-run --pcap sample.pcap
  $ sluice stats veth1 --watch
  $ sluice --server http://10.0.0.5:8080 --token-file ~/.sluice-token status
`;

/** Builds the program; every command writes through `io`, so tests can capture what it prints. */
export function buildProgram(io: CliIo = processIo, deps: CliDeps = {}): Command {
  const defaults = processContext();
  const context: CommandContext = {
    env: deps.env ?? defaults.env,
    stdin: deps.stdin ?? defaults.stdin,
    interrupt: deps.interrupt,
  };
  const program = new Command('sluice')
    .description('XDP/TC data-plane controller: drop, forward, load-balance and filter packets')
    .version(packageVersion())
    .option('--socket <path>', `daemon socket (default: $SLUICE_SOCKET or ${DEFAULT_SOCKET})`)
    .option('--server <url>', 'reach the daemon over TCP instead: http://HOST:PORT')
    .option('--token <token>', 'bearer token for --server (default: $SLUICE_TOKEN)')
    .option('--token-file <file>', 'read the bearer token for --server from a file')
    .addHelpText('after', ROOT_HELP);
  program.addCommand(serveCommand(context.env, deps.serve));
  program.addCommand(attachCommand(context));
  program.addCommand(detachCommand(context));
  program.addCommand(setCommand(context));
  program.addCommand(ruleCommand(context));
  program.addCommand(limitCommand(context));
  program.addCommand(filterCommand(context));
  program.addCommand(lbCommand(context));
  program.addCommand(applyCommand(context));
  program.addCommand(statsCommand(context));
  program.addCommand(statusCommand(context));
  program.addCommand(devicesCommand(context));
  program.addCommand(eventsCommand(context));
  program.addCommand(compileCommand());
  program.addCommand(selfcheckCommand(deps.selfcheck));
  program.addCommand(demoCommand());
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
  let running: Command | undefined;
  program.hook('preAction', (_program, actionCommand) => {
    running = actionCommand;
    // The daemon's log is its stdout: what a closed one means is for its supervisor to say.
    if (io === processIo && actionCommand.name() !== 'serve') stopOnClosedStdout();
  });
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (error: unknown) {
    if (error instanceof CommanderError) {
      if (error.exitCode === 0) return 0; // --help, --version
      return 2;
    }
    // Scripts asking for JSON get the problem itself on stdout, beside the line on stderr.
    if (error instanceof ApiError && running?.opts().json === true)
      io.out(JSON.stringify(error.problem) + '\n');
    io.err(describeFailure(error) + '\n');
    return 1;
  }
}
