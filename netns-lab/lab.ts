// Lab topologies in network namespaces: uniquely named per run, always torn down.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { LabCommandError, run, type RunOptions } from './exec.js';
import { buildRouter, type RouterOptions, type RouterTopology } from './router.js';

/** One end of a veth pair, inside a lab namespace. */
export interface Endpoint {
  netns: string;
  device: string;
  mac: string;
  ipv4: string;
}

/** Two namespaces joined by one veth pair: `left` sends, `right` receives. */
export interface PairTopology {
  left: Endpoint;
  right: Endpoint;
}

/** Names every lab object starts with, so a stray one is recognisable as ours. */
export const LAB_PREFIX = 'sl';

const labs = new Set<Lab>();
let exitHookInstalled = false;

/**
 * A set of namespaces created for one run. Names are `sl<6 hex>` plus a
 * suffix, short enough for the kernel's 15-character device names.
 */
export class Lab {
  readonly id = LAB_PREFIX + randomBytes(3).toString('hex');
  private readonly namespaces: string[] = [];
  private readonly cleanups: (() => void)[] = [];

  constructor() {
    labs.add(this);
    installExitHook();
  }

  /** Creates a namespace `<id><suffix>` with loopback up. */
  async addNamespace(suffix: string): Promise<string> {
    const name = this.id + suffix;
    // Made synchronously and recorded in the same turn, so a SIGINT or SIGTERM handler (which
    // removes the recorded namespaces) can never run between the two: with `ip netns add` run
    // asynchronously, an interrupt while it ran found nothing to remove and the namespace
    // outlived the run.
    const argv = ['ip', 'netns', 'add', name];
    const made = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: 10_000 });
    if (made.status !== 0) throw new LabCommandError(argv, made.stderr || String(made.error ?? ''));
    this.namespaces.push(name);
    await run(['ip', 'link', 'set', 'lo', 'up'], { netns: name });
    return name;
  }

  /**
   * Builds two namespaces joined by a veth pair with static addresses and
   * static neighbours and IPv6 off, so the only packets on the wire are the
   * ones a test sends (no ARP, no neighbour discovery, no router solicitations).
   */
  async pair(options: { subnet?: string } = {}): Promise<PairTopology> {
    const subnet = options.subnet ?? '192.0.2';
    const leftNs = await this.addNamespace('a');
    const rightNs = await this.addNamespace('b');
    const left = { netns: leftNs, device: `${this.id}a`, ipv4: `${subnet}.1` };
    const right = { netns: rightNs, device: `${this.id}b`, ipv4: `${subnet}.2` };
    await run(['ip', 'link', 'add', left.device, 'type', 'veth', 'peer', 'name', right.device], {
      netns: leftNs,
    });
    await run(['ip', 'link', 'set', right.device, 'netns', rightNs], { netns: leftNs });
    const endpoints: Endpoint[] = [];
    for (const end of [left, right]) {
      await run(['sysctl', '-qw', `net.ipv6.conf.all.disable_ipv6=1`], { netns: end.netns });
      await run(['ip', 'addr', 'add', `${end.ipv4}/24`, 'dev', end.device], { netns: end.netns });
      await run(['ip', 'link', 'set', end.device, 'up'], { netns: end.netns });
      endpoints.push({ ...end, mac: await this.macOf(end.netns, end.device) });
    }
    const [l, r] = endpoints;
    await this.addNeighbour(l, r);
    await this.addNeighbour(r, l);
    return { left: l, right: r };
  }

  /**
   * Builds the four-namespace router topology (client, router, two servers) of router.ts.
   * Throws `LabCommandError` when a step fails; what was built is still removed by `destroy()`.
   */
  router(options: RouterOptions = {}): Promise<RouterTopology> {
    return buildRouter(this, options);
  }

  /**
   * Registers `cleanup` to run when the lab is destroyed, before its namespaces go (latest
   * first). It must be synchronous: it also runs from the process's exit hook.
   */
  addCleanup(cleanup: () => void): void {
    this.cleanups.push(cleanup);
  }

  /** Runs a command inside one of this lab's namespaces. */
  exec(netns: string, argv: string[], options: Omit<RunOptions, 'netns'> = {}): Promise<string> {
    return run(argv, { ...options, netns });
  }

  /** Sends `count` ICMP echo requests from `from` to `to` and returns how many were answered. */
  async ping(from: Endpoint, to: Endpoint, count: number, intervalSeconds = 0.01): Promise<number> {
    let output: string;
    try {
      output = await this.exec(
        from.netns,
        [
          'ping',
          '-n',
          '-q',
          '-c',
          String(count),
          '-i',
          String(intervalSeconds),
          '-W',
          '1',
          to.ipv4,
        ],
        { timeoutMs: (count * intervalSeconds + 5) * 1000 },
      );
    } catch (error: unknown) {
      // ping exits 1 when some replies are missing; its summary is still what we want.
      output = String((error as { cause?: { stdout?: string } }).cause?.stdout ?? '');
    }
    const received = /(\d+) (?:packets )?received/.exec(output);
    return received ? Number(received[1]) : 0;
  }

  /**
   * Runs the registered cleanups, kills what still runs in the lab's namespaces, and removes
   * every namespace (and with them their devices and attachments).
   */
  async destroy(): Promise<void> {
    labs.delete(this);
    this.runCleanups();
    for (const name of this.namespaces.splice(0).reverse()) {
      const pids = await run(['ip', 'netns', 'pids', name]).catch(() => '');
      killPids(pids);
      await run(['ip', 'netns', 'del', name]).catch(() => undefined);
    }
  }

  /** Synchronous teardown for process exit, where promises no longer run. */
  destroySync(): void {
    labs.delete(this);
    this.runCleanups();
    for (const name of this.namespaces.splice(0).reverse()) {
      const pids = spawnSync('ip', ['netns', 'pids', name], { encoding: 'utf8', timeout: 10_000 });
      killPids(pids.stdout ?? '');
      spawnSyncQuiet(['ip', 'netns', 'del', name]);
    }
  }

  private runCleanups(): void {
    for (const cleanup of this.cleanups.splice(0).reverse()) {
      try {
        cleanup();
      } catch {
        // teardown goes on: the namespaces below take what a failed cleanup left
      }
    }
  }

  private async macOf(netns: string, device: string): Promise<string> {
    const out = await run(['cat', `/sys/class/net/${device}/address`], { netns });
    return out.trim();
  }

  private async addNeighbour(at: Endpoint, peer: Endpoint): Promise<void> {
    await run(
      [
        'ip',
        'neigh',
        'replace',
        peer.ipv4,
        'lladdr',
        peer.mac,
        'dev',
        at.device,
        'nud',
        'permanent',
      ],
      { netns: at.netns },
    );
  }
}

/**
 * Kills, by pid, the processes `ip netns pids` listed: ones a test started in the lab's
 * namespaces and left running. A namespace outlives `ip netns del` while a process is in it.
 */
function killPids(list: string): void {
  for (const pid of list.split(/\s+/).filter(Boolean).map(Number)) {
    if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

function spawnSyncQuiet(argv: string[]): void {
  spawnSync(argv[0], argv.slice(1), { stdio: 'ignore', timeout: 10_000 });
}

/** Tears down labs still alive when the process exits or is interrupted. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const lab of [...labs]) lab.destroySync();
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      for (const lab of [...labs]) lab.destroySync();
      process.kill(process.pid, signal);
    });
  }
}
