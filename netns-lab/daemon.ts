// A real `sluice serve` process in a lab namespace, for end-to-end tests, benchmarks and the demo:
// reached over its Unix socket (and TCP with a token when asked), killed and restarted at will,
// and always stopped, its pins and files removed, by `destroy()`.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Agent, request } from 'undici';

import { packageRoot } from '../bpf/progs.js';

/** The project root, from the sources, dist/ or the CLI bundle alike. */
const ROOT = packageRoot();

/** How to start `sluice`: from the sources through tsx, or the compiled bin/sluice.js. */
export function sluiceCommand(entry: 'source' | 'dist', nodeArgs: string[] = []): string[] {
  return entry === 'source'
    ? [process.execPath, ...nodeArgs, '--import', 'tsx', join(ROOT, 'cli', 'main.ts')]
    : [process.execPath, ...nodeArgs, join(ROOT, 'bin', 'sluice.js')];
}

export interface DaemonOptions {
  /** The namespace the daemon runs in and manages. */
  netns: string;
  /** bpffs directory for its pins; default /sys/fs/bpf/sld<random>. */
  pinDir?: string;
  /** A --config file to follow. */
  config?: string;
  /** Also listen on TCP 127.0.0.1 (inside `netns`) with a generated token. */
  tcp?: boolean;
  /** Default 'source' (tests run what they test); the demo runs the build. */
  entry?: 'source' | 'dist';
  /** Options for node itself (--cpu-prof, say). */
  nodeArgs?: string[];
  /** Passed as --log-level; default info. */
  logLevel?: string;
  /** Also copy the daemon's log lines to this stream (the demo shows warnings). */
  echo?: NodeJS.WritableStream;
}

export interface ApiResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** Parsed JSON when the response is JSON, else the text. */
  body: unknown;
  text: string;
}

/** One started daemon and what it was started with. */
export class LabDaemon {
  readonly dir = mkdtempSync(join(tmpdir(), 'sluice-daemon-'));
  readonly socket = join(this.dir, 'sluice.sock');
  readonly stateDir = join(this.dir, 'state');
  readonly pinDir: string;
  readonly token = randomBytes(24).toString('hex');
  readonly tokenFile = join(this.dir, 'token');
  /** Every line the daemon logged, across restarts. */
  readonly logs: string[] = [];
  proc: ChildProcess | undefined;
  /** TCP port inside the namespace, when started with `tcp`. */
  port: number | null = null;
  readonly #agent: Agent;

  constructor(readonly options: DaemonOptions) {
    this.pinDir = options.pinDir ?? `/sys/fs/bpf/sld${randomBytes(3).toString('hex')}`;
    writeFileSync(this.tokenFile, this.token + '\n', { mode: 0o600 });
    this.#agent = new Agent({ connect: { socketPath: this.socket } });
  }

  /** Starts the daemon and waits until it says it is ready; resolves the milliseconds that took. */
  async start(): Promise<number> {
    const t0 = performance.now();
    const args = [
      ...sluiceCommand(this.options.entry ?? 'source', this.options.nodeArgs),
      'serve',
      '--socket',
      this.socket,
      '--state-dir',
      this.stateDir,
      '--pin-dir',
      this.pinDir,
      ...(this.options.config ? ['--config', this.options.config] : []),
      ...(this.options.tcp ? ['--listen', '127.0.0.1:0', '--token-file', this.tokenFile] : []),
      ...(this.options.logLevel ? ['--log-level', this.options.logLevel] : []),
    ];
    // nsenter, not `ip netns exec`: that one also gives the process a private /sys, hence a
    // private bpffs whose pins die with it. The daemon must pin where the next one will look.
    const proc = spawn('nsenter', [`--net=/run/netns/${this.options.netns}`, '--', ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = proc;
    await new Promise<void>((resolveStart, reject) => {
      let polling = true;
      const resolve = (): void => {
        polling = false;
        resolveStart();
      };
      const timer = setTimeout(
        () => reject(new Error(`daemon not ready in 30 s:\n${this.logs.slice(-20).join('\n')}`)),
        30_000,
      );
      let buffered = '';
      const onData = (chunk: Buffer): void => {
        buffered += chunk.toString();
        const lines = buffered.split('\n');
        buffered = lines.pop() ?? '';
        for (const line of lines) {
          this.logs.push(line);
          this.options.echo?.write(line + '\n');
          if (line.includes('"sluice ready"')) {
            try {
              this.port = (JSON.parse(line) as { port: number | null }).port;
            } catch {
              // not JSON: the port stays unknown
            }
            clearTimeout(timer);
            resolve();
          }
        }
      };
      proc.stdout?.on('data', onData);
      proc.stderr?.on('data', onData);
      // The "sluice ready" line is info: at a quieter log level, /readyz says it.
      const poll = async (): Promise<void> => {
        while (polling) {
          await new Promise((r) => setTimeout(r, 25));
          try {
            if ((await this.api('GET', '/readyz')).status === 200 && !this.options.tcp) {
              clearTimeout(timer);
              resolve();
              return;
            }
          } catch {
            // not listening yet
          }
        }
      };
      void poll();
      proc.once('exit', (code, signal) => {
        polling = false;
        clearTimeout(timer);
        reject(
          new Error(
            `daemon exited (${code ?? signal}) before ready:\n${this.logs.slice(-20).join('\n')}`,
          ),
        );
      });
    });
    return performance.now() - t0;
  }

  /** The daemon's resident memory now, in bytes (0 when it is not running). */
  rss(): number {
    const pid = this.proc?.pid;
    if (!pid || this.proc?.exitCode !== null) return 0;
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
    } catch {
      return 0;
    }
  }

  /** Sends `signal` and waits for the process to exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    // nsenter execs the command, so the pid is the daemon's own.
    proc.kill(signal);
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000))]);
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  }

  /** A request over the Unix socket; `body` objects go as JSON, strings as text/plain. */
  async api(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<ApiResponse> {
    const isText = typeof body === 'string';
    const res = await request(`http://localhost${path}`, {
      method: method as 'GET',
      dispatcher: this.#agent,
      headers: {
        ...(body === undefined
          ? {}
          : { 'content-type': isText ? 'text/plain' : 'application/json' }),
        ...headers,
      },
      body: body === undefined ? undefined : isText ? body : JSON.stringify(body),
    });
    const text = await res.body.text();
    const type = String(res.headers['content-type'] ?? '');
    return {
      status: res.statusCode,
      headers: res.headers,
      text,
      body: type.includes('json') && text ? JSON.parse(text) : text,
    };
  }

  /** Stops the daemon (SIGKILL), removes the pins it left and its files. */
  async destroy(): Promise<void> {
    await this.stop('SIGKILL');
    await this.#agent.close();
    this.destroySync();
  }

  /**
   * destroy() without waiting, for a lab's cleanup (which also runs from its exit hook on an
   * interrupted run, where promises no longer settle): kill, then remove pins and files.
   */
  destroySync(): void {
    this.proc?.kill('SIGKILL');
    rmSync(this.pinDir, { recursive: true, force: true });
    rmSync(this.dir, { recursive: true, force: true });
  }
}
