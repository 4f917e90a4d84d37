// A throw-away network namespace for the load balancer's kernel tests, and a test-run server inside it: bpf_fib_lookup answers from the namespace the test run executes in.
//
// The namespace (`sl<6 hex>n`, from netns-lab's Lab, removed in destroy() and at process exit)
// holds two veth pairs with forwarding on:
//   <id>a (peer <id>p): 192.0.2.1/24, 2001:db8:1::1/64 — the balancer's one arm (XDP_TX)
//     static neighbours 192.0.2.11-13, 2001:db8:1::11-13 -> 02:00:5e:00:53:11-13
//     192.0.2.99, 2001:db8:1::99: on the subnet, no neighbour (BPF_FIB_LKUP_RET_NO_NEIGH)
//   <id>c (peer <id>q): 198.51.100.1/24, 2001:db8:2::1/64 — a second device (bpf_redirect)
//     static neighbours 198.51.100.21, 2001:db8:2::21 -> 02:00:5e:00:53:21
// IPv6 addresses are added with nodad, neighbours with nud permanent.
//
// The addon runs test runs on a worker thread of the calling process, which stays in the
// namespace the process started in. So runs go to a child process started inside the namespace
// (`ip netns exec NS taskset -c 0 node --import tsx lb-lab.ts`: this file is also that child's
// script), pinned to CPU 0 so that per-CPU state (the insert bucket) is one CPU's. The child
// opens each program by id once and serves one JSON line per run on stdin/stdout; maps are
// written from the test process (a map is the same kernel object from any namespace).
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { ifindexOf, type BpfProgram } from '../../bpf/index.js';
import { Lab } from '../../netns-lab/lab.js';

const SCRIPT = fileURLToPath(import.meta.url);

/** The MAC of each static neighbour, by address. */
export const NEIGHBOURS: Readonly<Record<string, string>> = {
  '192.0.2.11': '02:00:5e:00:53:11',
  '192.0.2.12': '02:00:5e:00:53:12',
  '192.0.2.13': '02:00:5e:00:53:13',
  '2001:db8:1::11': '02:00:5e:00:53:11',
  '2001:db8:1::12': '02:00:5e:00:53:12',
  '2001:db8:1::13': '02:00:5e:00:53:13',
  '198.51.100.21': '02:00:5e:00:53:21',
  '2001:db8:2::21': '02:00:5e:00:53:21',
};

/** One device of the namespace. */
export interface LbDevice {
  name: string;
  ifindex: number;
  mac: string;
}

/** What one run gave. */
export interface LbRun {
  retval: number;
  /** The frame after the run. */
  data: Buffer;
}

interface Request {
  id: number;
  progId: number;
  data: string;
  ctx?: string;
}

interface Answer {
  id: number;
  retval?: number;
  data?: string;
  error?: string;
}

/** struct xdp_md for a test run: data_end = the frame's length, the ingress device. */
export function xdpCtx(length: number, ifindex: number): Buffer {
  const ctx = Buffer.alloc(24);
  ctx.writeUInt32LE(length, 4);
  ctx.writeUInt32LE(ifindex, 12);
  return ctx;
}

/** The namespace, its devices, and the test-run server inside it. */
export class LbLab {
  readonly lab: Lab;
  readonly netns: string;
  /** The balancer's arm: backends 192.0.2.11-13 and 2001:db8:1::11-13 are behind it. */
  readonly arm: LbDevice;
  /** The other device: backends 198.51.100.21 and 2001:db8:2::21 are behind it. */
  readonly other: LbDevice;
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #waiting = new Map<number, (a: Answer) => void>();
  #next = 0;
  #stderr = '';

  private constructor(
    lab: Lab,
    netns: string,
    arm: LbDevice,
    other: LbDevice,
    child: ChildProcessWithoutNullStreams,
  ) {
    this.lab = lab;
    this.netns = netns;
    this.arm = arm;
    this.other = other;
    this.#child = child;
    createInterface({ input: child.stdout }).on('line', (line) => {
      const answer = JSON.parse(line) as Answer;
      const done = this.#waiting.get(answer.id);
      this.#waiting.delete(answer.id);
      done?.(answer);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      this.#stderr = (this.#stderr + chunk.toString()).slice(-4000);
    });
    child.on('exit', () => {
      for (const [id, done] of this.#waiting) {
        done({ id, error: `the test-run server exited: ${this.#stderr.trim()}` });
      }
      this.#waiting.clear();
    });
  }

  /** Builds the namespace and starts the server; removes what it built if a step fails. */
  static async create(): Promise<LbLab> {
    const lab = new Lab();
    try {
      const ns = await lab.addNamespace('n');
      const sh = (argv: string[]) => lab.exec(ns, argv);
      await sh(['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
      await sh(['sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=0']);
      await sh(['sysctl', '-qw', 'net.ipv6.conf.default.disable_ipv6=0']);
      await sh(['sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']);
      await sh(['sysctl', '-qw', 'net.ipv6.conf.default.forwarding=1']);
      const devices: LbDevice[] = [];
      for (const [dev, peer, v4, v6] of [
        [`${lab.id}a`, `${lab.id}p`, '192.0.2.1/24', '2001:db8:1::1/64'],
        [`${lab.id}c`, `${lab.id}q`, '198.51.100.1/24', '2001:db8:2::1/64'],
      ] as const) {
        await sh(['ip', 'link', 'add', dev, 'type', 'veth', 'peer', 'name', peer]);
        await sh(['ip', 'addr', 'add', v4, 'dev', dev]);
        await sh(['ip', '-6', 'addr', 'add', v6, 'dev', dev, 'nodad']);
        await sh(['ip', 'link', 'set', peer, 'up']);
        await sh(['ip', 'link', 'set', dev, 'up']);
        const mac = (await sh(['cat', `/sys/class/net/${dev}/address`])).trim();
        devices.push({ name: dev, ifindex: ifindexOf(dev, ns), mac });
      }
      const [arm, other] = devices as [LbDevice, LbDevice];
      for (const [address, lladdr] of Object.entries(NEIGHBOURS)) {
        const dev =
          address.startsWith('198.51.100.') || address.startsWith('2001:db8:2:') ? other : arm;
        await sh([
          'ip',
          'neigh',
          'replace',
          address,
          'lladdr',
          lladdr,
          'dev',
          dev.name,
          'nud',
          'permanent',
        ]);
      }
      const child = spawn(
        'ip',
        ['netns', 'exec', ns, 'taskset', '-c', '0', process.execPath, '--import', 'tsx', SCRIPT],
        { stdio: ['pipe', 'pipe', 'pipe'] },
      );
      const pid = child.pid;
      if (pid !== undefined) {
        lab.addCleanup(() => {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // already gone
          }
        });
      }
      return new LbLab(lab, ns, arm, other, child);
    } catch (error: unknown) {
      await lab.destroy();
      throw error;
    }
  }

  /**
   * Runs `program` once over `frame` inside the namespace. `ctx`: struct xdp_md or __sk_buff;
   * for XDP programs by default xdpCtx() with the arm as the ingress device; null for none.
   */
  async run(program: BpfProgram, frame: Uint8Array, ctx?: Uint8Array | null): Promise<LbRun> {
    const id = this.#next++;
    const context = ctx === null ? undefined : (ctx ?? xdpCtx(frame.length, this.arm.ifindex));
    const request: Request = {
      id,
      progId: program.id,
      data: Buffer.from(frame).toString('hex'),
      ...(context ? { ctx: Buffer.from(context).toString('hex') } : {}),
    };
    const answer = await new Promise<Answer>((done) => {
      this.#waiting.set(id, done);
      this.#child.stdin.write(`${JSON.stringify(request)}\n`);
    });
    if (answer.error !== undefined) {
      throw new Error(`test run in network namespace "${this.netns}": ${answer.error}`);
    }
    return { retval: answer.retval ?? -1, data: Buffer.from(answer.data ?? '', 'hex') };
  }

  /** Stops the server and removes the namespace. */
  async destroy(): Promise<void> {
    this.#child.stdin.end();
    await this.lab.destroy();
  }
}

/** The server: one JSON request per line in, one answer per line out, in order. */
async function serve(): Promise<void> {
  const { getProgramById } = await import('../../bpf/index.js');
  const programs = new Map<number, BpfProgram>();
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    const request = JSON.parse(line) as Request;
    let answer: Answer;
    try {
      let program = programs.get(request.progId);
      if (!program) {
        program = getProgramById(request.progId);
        programs.set(request.progId, program);
      }
      const run = await program.testRun({
        data: Buffer.from(request.data, 'hex'),
        ...(request.ctx ? { ctx: Buffer.from(request.ctx, 'hex') } : {}),
        dataOut: true,
      });
      answer = {
        id: request.id,
        retval: run.retval,
        data: (run.dataOut ?? Buffer.alloc(0)).toString('hex'),
      };
    } catch (error: unknown) {
      answer = { id: request.id, error: (error as Error).message };
    }
    process.stdout.write(`${JSON.stringify(answer)}\n`);
  }
  for (const p of programs.values()) p.close();
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === SCRIPT) {
  await serve();
}
