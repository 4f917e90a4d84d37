// `sluice serve`: opens the controller on its state and pin directories, serves the REST API on a
// Unix socket (and optionally TCP with a token), follows a declarative config file, and on
// SIGTERM/SIGINT stops serving while the data plane keeps running, pinned.
import { createHash } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { chmod, mkdir, readFile, unlink } from 'node:fs/promises';
import { connect } from 'node:net';
import { basename, dirname } from 'node:path';

import { pino, type Logger } from 'pino';

import { buildServer, createMetrics } from '../api/server.js';
import { ApplyFileError, parseApplyFile, validateApplyFile } from './config-file.js';
import { SluiceController } from './controller.js';
import { DEFAULT_PIN_DIR } from './dataplane/dataplane.js';
import { StateLockedError } from './errors.js';

export const DEFAULT_SOCKET = '/run/sluice/sluice.sock';
export const DEFAULT_STATE_DIR = '/var/lib/sluice';

/** The options of `sluice serve`. */
export interface ServeOptions {
  socket?: string;
  /** "HOST:PORT" of a TCP listener; needs `tokenFile`. */
  listen?: string;
  tokenFile?: string;
  stateDir?: string;
  pinDir?: string;
  /** A YAML/JSON desired-state file applied at start and whenever it changes. */
  config?: string;
  logLevel?: string;
  /** Where log lines go (default stdout); tests pass a stream. */
  logDestination?: NodeJS.WritableStream;
}

/** A running daemon; `stop()` leaves the data plane running. */
export interface Daemon {
  readonly controller: SluiceController;
  readonly socket: string;
  /** The TCP port actually bound (when `listen` ends in ":0"), else null. */
  readonly port: number | null;
  readonly logger: Logger;
  stop(): Promise<void>;
}

/** True when something accepts connections on the Unix socket at `path`. */
function isServing(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ path });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function parseListen(listen: string): { host: string; port: number } {
  const match = /^\[?([^\]]*?)\]?:(\d{1,5})$/.exec(listen);
  const port = match ? Number(match[2]) : NaN;
  if (!match || port > 65535) {
    throw new Error(`--listen "${listen}": expected HOST:PORT, e.g. 127.0.0.1:8080`);
  }
  return { host: match[1] || '127.0.0.1', port };
}

async function readToken(file: string): Promise<string> {
  const token = (await readFile(file, 'utf8')).trim();
  if (token.length < 16) {
    throw new Error(`token file "${file}": the token must be at least 16 characters`);
  }
  return token;
}

/**
 * Starts the daemon: controller (state loaded, pins adopted, reconciled), then the listeners,
 * then the config file watch. Throws StateLockedError when another daemon serves the state
 * directory or the socket, ControllerError subclasses for unusable state, and the config file's
 * ConfigFileInvalidError when `--config` is invalid at start (the daemon does not start on a file
 * it cannot apply; later changes that fail are logged and the running configuration kept).
 */
export async function startDaemon(options: ServeOptions = {}): Promise<Daemon> {
  const started = performance.now();
  const logger = pino(
    { level: options.logLevel ?? 'info', base: { pid: process.pid } },
    options.logDestination ?? process.stdout,
  );
  const socketPath = options.socket ?? DEFAULT_SOCKET;
  if (options.listen && !options.tokenFile) {
    throw new Error('--listen needs --token-file: the TCP listener requires a bearer token');
  }
  const token = options.tokenFile ? await readToken(options.tokenFile) : undefined;
  // Refuse a live socket before touching the state: two daemons must not both reconcile.
  if (await isServing(socketPath)) {
    throw new StateLockedError(
      `another sluice daemon is serving ${socketPath}; stop it first or pass --socket`,
    );
  }

  const controller = await SluiceController.open({
    stateDir: options.stateDir ?? DEFAULT_STATE_DIR,
    pinDir: options.pinDir ?? DEFAULT_PIN_DIR,
    logger: logger.child({ sub: 'controller' }),
  });
  const closers: (() => Promise<void> | void)[] = [() => controller.close()];
  const stop = async (): Promise<void> => {
    for (const close of closers.splice(0).reverse()) {
      try {
        await close();
      } catch (error: unknown) {
        logger.error({ err: error }, 'stopping');
      }
    }
  };

  try {
    if (options.config) {
      const configFile = options.config;
      const applyFile = await followConfigFile(configFile, controller, logger);
      closers.push(applyFile);
    }

    const metrics = createMetrics(controller);
    const unixServer = await buildServer({ controller, logger, metrics });
    await mkdir(dirname(socketPath), { recursive: true });
    await unlink(socketPath).catch(() => undefined); // a stale socket of a killed daemon
    await unixServer.listen({ path: socketPath });
    closers.push(async () => {
      await unixServer.close();
      await unlink(socketPath).catch(() => undefined);
    });
    await chmod(socketPath, 0o660);

    let port: number | null = null;
    if (options.listen && token) {
      const { host, port: wanted } = parseListen(options.listen);
      const tcpServer = await buildServer({ controller, logger, metrics, token });
      await tcpServer.listen({ host, port: wanted });
      const address = tcpServer.server.address();
      port = typeof address === 'object' && address ? address.port : wanted;
      closers.push(() => tcpServer.close());
    }

    logger.info(
      {
        socket: socketPath,
        listen: options.listen ?? null,
        port,
        generation: controller.config().generation,
        startupMs: Math.round(performance.now() - started),
      },
      'sluice ready',
    );
    return { controller, socket: socketPath, port, logger, stop };
  } catch (error: unknown) {
    await stop();
    throw error;
  }
}

/**
 * Applies `file` now (throwing when it is invalid) and again whenever its content changes; a
 * later invalid or unappliable file is logged and reported as an event, and the running
 * configuration kept. The directory is watched, not the file: a Kubernetes ConfigMap update
 * swaps a symlink, which a watch on the old file would never see. Returns the unwatch function.
 */
async function followConfigFile(
  file: string,
  controller: SluiceController,
  logger: Logger,
): Promise<() => void> {
  const log = logger.child({ sub: 'config', file });
  let lastHash = '';
  const applyText = async (text: string): Promise<void> => {
    const hash = createHash('sha256').update(text).digest('hex');
    if (hash === lastHash) return;
    const config = validateApplyFile(parseApplyFile(file, text));
    const result = await controller.replaceConfig(config);
    lastHash = hash;
    log.info({ generation: result.generation, diff: result.diff }, 'config file applied');
  };
  await applyText(await readFile(file, 'utf8'));

  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  const recheck = (): void => {
    clearTimeout(timer);
    // Editors write in several steps; wait for the burst to settle.
    timer = setTimeout(() => {
      running = running
        .then(async () => applyText(await readFile(file, 'utf8')))
        .catch((error: unknown) => {
          // A file error lists every place at fault, FILE:LINE:COL each.
          const detail = error instanceof ApplyFileError ? error.format() : String(error);
          log.error(
            { err: error, detail },
            'config file not applied; the running configuration stays',
          );
          controller.events.emit('event', {
            type: 'reconcile',
            generation: controller.config().generation,
            ok: false,
            error: detail,
          });
        });
    }, 100);
  };
  const watcher: FSWatcher = watch(dirname(file), (_event, name) => {
    if (name === null || name === basename(file) || name.startsWith('..')) recheck();
  });
  // Some file systems (network, overlay) miss events: a slow poll catches what they drop.
  const poll = setInterval(recheck, 5000);
  return () => {
    watcher.close();
    clearInterval(poll);
    clearTimeout(timer);
  };
}

/** `sluice serve`: starts, then runs until SIGTERM or SIGINT, and stops leaving the data plane up. */
export async function runDaemon(options: ServeOptions = {}): Promise<void> {
  const daemon = await startDaemon(options);
  await new Promise<void>((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      daemon.logger.info({ signal }, 'stopping; the data plane keeps running');
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      resolve();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  await daemon.stop();
}
