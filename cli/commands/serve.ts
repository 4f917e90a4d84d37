// `sluice serve`: run the controller daemon (the same executable is also its client).
import { Command, InvalidArgumentError } from 'commander';
import { isIP } from 'node:net';
import { socketPath } from '../client.js';
import { withExamples } from '../context.js';

/** What `sluice serve` hands the daemon (controller/daemon.ts's runDaemon). */
export interface ServeOptions {
  /** The Unix socket to serve on: --socket, SLUICE_SOCKET, or /run/sluice/sluice.sock. */
  socket: string;
  /** "HOST:PORT" of a TCP listener too (port 0: any free one); requires `tokenFile`. */
  listen?: string;
  tokenFile?: string;
  stateDir?: string;
  pinDir?: string;
  /** A declarative file applied at start and on every change. */
  config?: string;
  /** pino level: fatal, error, warn, info, debug, trace. */
  logLevel?: string;
}

/** Runs the daemon until it is told to stop. */
export type ServeRunner = (options: ServeOptions) => Promise<void>;

/** The daemon, loaded only for `sluice serve`: client commands start without it. */
async function runDaemon(options: ServeOptions): Promise<void> {
  const mod = await import('../../controller/daemon.js');
  await mod.runDaemon(options);
}

/** "HOST:PORT", "[v6]:PORT" or ":PORT" (every address); port 0 takes any free one. */
export function parseListen(value: string): string {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(value);
  const port = Number(match?.[3]);
  if (!match || port > 65535)
    throw new InvalidArgumentError(
      'expected HOST:PORT with a port from 0 (any free one) to 65535 (127.0.0.1:8080, [::1]:8080)',
    );
  if (match[1] !== undefined && isIP(match[1]) !== 6)
    throw new InvalidArgumentError(`"${match[1]}" in brackets is not an IPv6 address`);
  const host = match[1] !== undefined ? `[${match[1]}]` : match[2] || '0.0.0.0';
  return `${host}:${port}`;
}

interface ServeFlags {
  socket?: string;
  listen?: string;
  tokenFile?: string;
  stateDir?: string;
  pinDir?: string;
  config?: string;
  logLevel?: string;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'];

function parseLogLevel(value: string): string {
  if (!LOG_LEVELS.includes(value))
    throw new InvalidArgumentError(`expected one of ${LOG_LEVELS.join(', ')}`);
  return value;
}

/** The `serve` command; `run` stands in for the daemon in tests. */
export function serveCommand(env: NodeJS.ProcessEnv, run: ServeRunner = runDaemon): Command {
  const command = new Command('serve')
    .description('run the controller daemon: the REST API on a Unix socket (and TCP with a token)')
    .option(
      '--socket <path>',
      'Unix socket to serve on (default: $SLUICE_SOCKET or /run/sluice/sluice.sock)',
    )
    .option('--listen <host:port>', 'also serve on TCP; needs --token-file', parseListen)
    .option(
      '--token-file <file>',
      'the bearer token TCP clients must send (first line of the file)',
    )
    .option('--state-dir <dir>', 'where the desired state is persisted (default /var/lib/sluice)')
    .option(
      '--pin-dir <dir>',
      'bpffs directory for pinned maps and links (default /sys/fs/bpf/sluice)',
    )
    .option('--config <file>', 'a declarative file applied at start and on every change')
    .option('--log-level <level>', 'least severe log lines written (default info)', parseLogLevel)
    .action(async function (this: Command) {
      // The root program reads --socket and --token-file too (for the client): take either.
      const flags = this.optsWithGlobals<ServeFlags>();
      if (flags.listen && flags.tokenFile === undefined)
        this.error('sluice: --listen needs --token-file: a TCP listener requires a bearer token', {
          exitCode: 2,
        });
      const options: ServeOptions = { socket: socketPath(flags.socket, env) };
      if (flags.listen) options.listen = flags.listen;
      if (flags.tokenFile !== undefined) options.tokenFile = flags.tokenFile;
      if (flags.stateDir !== undefined) options.stateDir = flags.stateDir;
      if (flags.pinDir !== undefined) options.pinDir = flags.pinDir;
      if (flags.config !== undefined) options.config = flags.config;
      if (flags.logLevel !== undefined) options.logLevel = flags.logLevel;
      await run(options);
    });
  return withExamples(
    command,
    'sluice serve',
    'sluice serve --socket /tmp/sluice.sock --state-dir /tmp/sluice-state',
    'sluice serve --listen 127.0.0.1:8080 --token-file /etc/sluice/token --config /etc/sluice/sluice.yaml',
  );
}
