// A script of ours run as a child in a lab namespace, one JSON request a line in and one JSON answer a line out: the parent's side (NetnsScript) and the script's (writeAnswer).
//
// The parent writes `{ id, ...request }`; the script answers each with `{ id, result }` or
// `{ id, error }`, in any order, and once with id -1 when it is ready (listens, reads requests).
// Lines on the script's stdout that are not JSON (a runtime warning, say) are passed over. The
// child is `ip netns exec NS node --import tsx SCRIPT ARGS…`; stop() kills it, and so does the
// lab's cleanup. This file imports nothing heavy: a script that is also a light child (a load
// generator) can import it.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';

import type { Lab } from '../../netns-lab/lab.js';

/** One answer line. */
export interface ScriptAnswer {
  id: number;
  result?: unknown;
  error?: string;
}

/** The parent's side: a script running in `netns`, started by the constructor. */
export class NetnsScript<Request extends { op: string }> {
  /** Names the script in errors: `${name}: …`. */
  readonly name: string;
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #waiting = new Map<number, (a: ScriptAnswer) => void>();
  readonly #ready: Promise<void>;
  #next = 0;
  #stderr = '';

  /** Starts `script` with `args` in `netns`; the lab's cleanup kills it. */
  constructor(lab: Lab, netns: string, script: string, args: string[], name: string) {
    this.name = name;
    this.#child = spawn(
      'ip',
      ['netns', 'exec', netns, process.execPath, '--import', 'tsx', script, ...args],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    const pid = this.#child.pid;
    if (pid !== undefined) {
      lab.addCleanup(() => {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      });
    }
    let ready: () => void = () => undefined;
    let exited: (error: Error) => void = () => undefined;
    this.#ready = new Promise((done, fail) => {
      ready = done;
      exited = fail;
    });
    // Not awaited until ready() is: a rejection before then is no unhandled one.
    this.#ready.catch(() => undefined);
    createInterface({ input: this.#child.stdout }).on('line', (line) => {
      let answer: ScriptAnswer;
      try {
        answer = JSON.parse(line) as ScriptAnswer;
      } catch {
        return; // not ours: a runtime warning, say
      }
      if (answer.id === -1) return ready();
      const done = this.#waiting.get(answer.id);
      this.#waiting.delete(answer.id);
      done?.(answer);
    });
    this.#child.stderr.on('data', (chunk: Buffer) => {
      this.#stderr = (this.#stderr + chunk.toString()).slice(-4000);
    });
    this.#child.stdin.on('error', () => undefined);
    this.#child.on('exit', () => {
      exited(new Error(`${name} exited before it was ready: ${this.#stderr.trim()}`));
      for (const [id, done] of this.#waiting) {
        done({ id, error: `exited: ${this.#stderr.trim()}` });
      }
      this.#waiting.clear();
    });
  }

  /** Resolves once the script is ready; rejects when it exits first, or after `timeoutMs`. */
  async ready(timeoutMs = 20_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(new Error(`${this.name} not ready in ${timeoutMs} ms: ${this.#stderr.trim()}`)),
        timeoutMs,
      );
    });
    try {
      await Promise.race([this.#ready, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Sends one request and resolves with its result; rejects with the script's error (`${name}:
   * …`), when the script exits, or after `timeoutMs`.
   */
  async request<T>(request: Request, timeoutMs = 30_000): Promise<T> {
    const id = this.#next++;
    const answer = await new Promise<ScriptAnswer>((done) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id);
        done({
          id,
          error: `no answer to "${request.op}" in ${timeoutMs} ms: ${this.#stderr.trim()}`,
        });
      }, timeoutMs);
      this.#waiting.set(id, (a) => {
        clearTimeout(timer);
        done(a);
      });
      this.#child.stdin.write(`${JSON.stringify({ id, ...request })}\n`);
    });
    if (answer.error !== undefined) throw new Error(`${this.name}: ${answer.error}`);
    return answer.result as T;
  }

  /** Ends the script's input and kills it. */
  stop(): void {
    this.#child.stdin.end();
    this.#child.kill('SIGKILL');
  }
}

/**
 * The script's side: writes the answer to request `id` on stdout, `result` or, when `error` is
 * given, its message (a string as it is). `writeAnswer(-1, 'ready')` says the script is ready.
 */
export function writeAnswer(id: number, result: unknown, error?: unknown): void {
  const line: ScriptAnswer =
    error === undefined
      ? { id, result }
      : {
          id,
          error: typeof error === 'string' ? error : ((error as Error).message ?? String(error)),
        };
  process.stdout.write(`${JSON.stringify(line)}\n`);
}
