// A shell inside a lab namespace with a private bpffs at /sys/fs/bpf and a private /run, for tools
// that keep state there between calls (xdp-filter pins its maps under /sys/fs/bpf/xdp-filter and
// locks /run/xdp-filter.lck): the state is the shell's alone, and goes when the shell exits.
//
// `ip netns exec` gives the shell a mount namespace of its own (a slave of the host's: nothing
// mounted in it propagates back), so the bpffs and the tmpfs it mounts are seen by it and its
// children only, and vanish with its last process. Commands run one at a time, each bounded.
import { spawn, type ChildProcess } from 'node:child_process';

import { LabCommandError } from '../netns-lab/exec.js';

const DONE = '__sluice_bench_done__';

function quote(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** A long-lived `sh` in a namespace; run() sends it one command and returns its output. */
export class PrivateShell {
  #output = '';
  #wake: (() => void) | null = null;
  #exited = false;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly netns: string,
    private readonly child: ChildProcess,
  ) {
    child.stdout?.setEncoding('utf8').on('data', (text: string) => {
      this.#output += text;
      this.#wake?.();
    });
    child.stdin?.on('error', () => undefined);
    child.once('close', () => {
      this.#exited = true;
      this.#wake?.();
    });
  }

  /**
   * Starts the shell in `netns` and mounts its private bpffs and /run. Throws `LabCommandError`
   * when either mount fails.
   */
  static async start(netns: string): Promise<PrivateShell> {
    const child = spawn('ip', ['netns', 'exec', netns, 'sh'], {
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    const shell = new PrivateShell(netns, child);
    try {
      await shell.run(['mount', '-t', 'bpf', 'bpf', '/sys/fs/bpf']);
      await shell.run(['mount', '-t', 'tmpfs', 'tmpfs', '/run']);
    } catch (error: unknown) {
      shell.close();
      throw error;
    }
    return shell;
  }

  /**
   * Runs `argv` (stderr merged into stdout) and returns the output. Throws `LabCommandError` with
   * the output when it exits non-zero, when the shell is gone, or after `timeoutMs` (then the
   * shell is killed: a command still running would desynchronise the next).
   */
  run(argv: string[], timeoutMs = 30_000): Promise<string> {
    const next = this.#queue.then(() => this.#run(argv, timeoutMs));
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #run(argv: string[], timeoutMs: number): Promise<string> {
    const full = ['ip', 'netns', 'exec', this.netns, ...argv];
    if (this.#exited) throw new LabCommandError(full, 'the namespace shell has exited');
    this.#output = '';
    this.child.stdin?.write(`${argv.map(quote).join(' ')} 2>&1; echo "${DONE} $?"\n`);
    const deadline = Date.now() + timeoutMs;
    const marker = new RegExp(`${DONE} (\\d+)\\n`);
    for (;;) {
      const m = marker.exec(this.#output);
      if (m) {
        const text = this.#output.slice(0, m.index);
        if (m[1] !== '0') throw new LabCommandError(full, `exit ${m[1]}: ${text}`);
        return text;
      }
      if (this.#exited)
        throw new LabCommandError(full, `the namespace shell exited: ${this.#output}`);
      if (Date.now() > deadline) {
        this.child.kill('SIGKILL');
        throw new LabCommandError(full, `no answer in ${timeoutMs} ms: ${this.#output}`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = null;
    }
  }

  /** Ends the shell (its private mounts go with it), killing it if it lingers. Idempotent. */
  close(): void {
    if (this.#exited) return;
    this.child.stdin?.end();
    setTimeout(() => {
      if (!this.#exited) this.child.kill('SIGKILL');
    }, 2_000).unref();
  }
}
