// The daemon as users drive it: a million prefixes through the API, rule adds per second from one
// client and from sixteen, and restart-to-ready with that state, beside nftables doing the same.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Agent, request } from 'undici';

import { LabDaemon } from '../netns-lab/daemon.js';
import { run } from '../netns-lab/exec.js';
import { Lab } from '../netns-lab/lab.js';
import type { BenchTable } from './table.js';

const PREFIXES = 1_000_000;
const RULE_ADDS = 2000;

/** `count` distinct random IPv4 /24s as text, one a line. */
function randomSlash24s(count: number): string[] {
  const seen = new Set<number>();
  const bytes = randomBytes(count * 8);
  for (let i = 0; seen.size < count; i++) {
    seen.add(bytes.readUInt32BE((i * 4) % (bytes.length - 4)) >>> 8);
  }
  return [...seen].map((x) => `${x >>> 16}.${(x >>> 8) & 255}.${x & 255}.0/24`);
}

/** Milliseconds `fn` took. */
async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

/** Adds `total` rules split over `clients` clients, each keeping `inFlight` requests going. */
async function addRules(
  socket: string,
  device: string,
  total: number,
  clients: number,
  inFlight: number,
  base: number,
): Promise<{ perSecond: number; failed: number }> {
  let next = 0;
  let failed = 0;
  const agents = Array.from(
    { length: clients },
    () => new Agent({ connect: { socketPath: socket }, connections: inFlight }),
  );
  const worker = async (agent: Agent): Promise<void> => {
    for (;;) {
      const i = next++;
      if (i >= total) return;
      const res = await request('http://localhost/v1/rules', {
        method: 'POST',
        dispatcher: agent,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          id: `b${base + i}`,
          device,
          proto: 'udp',
          dport: 1024 + ((base + i) % 60000),
          action: 'drop',
        }),
      });
      await res.body.dump();
      if (res.statusCode !== 201) failed++;
    }
  };
  const ms = await timed(() =>
    Promise.all(agents.flatMap((agent) => Array.from({ length: inFlight }, () => worker(agent)))),
  );
  await Promise.all(agents.map((a) => a.close()));
  return { perSecond: (total / ms) * 1000, failed };
}

/** nftables: the same prefixes as one interval set loaded with `nft -f`, in its own namespace. */
async function nftSetLoad(lab: Lab, prefixes: string[], dir: string): Promise<number> {
  const ns = await lab.addNamespace('n');
  const file = join(dir, 'set.nft');
  writeFileSync(
    file,
    `table ip b {\n set s {\n type ipv4_addr\n flags interval\n elements = {\n${prefixes.join(',\n')}\n}\n }\n}\n`,
  );
  return timed(() => run(['nft', '-f', file], { netns: ns, timeoutMs: 300_000 }));
}

/** nftables: `count` rule adds, each its own transaction, through one `nft -i` session. */
async function nftRuleAdds(lab: Lab, count: number, dir: string): Promise<number> {
  const ns = await lab.addNamespace('m');
  await run(['nft', 'add table ip r; add chain ip r c { type filter hook input priority 0; }'], {
    netns: ns,
  });
  const lines = Array.from(
    { length: count },
    (_, i) => `add rule ip r c udp dport ${1024 + i} drop`,
  );
  const file = join(dir, 'rules.txt');
  writeFileSync(file, lines.join('\n') + '\n');
  const ms = await timed(() =>
    run(['sh', '-c', `nft -i < ${file} > /dev/null`], { netns: ns, timeoutMs: 300_000 }),
  );
  return (count / ms) * 1000;
}

export async function benchDaemon(): Promise<{ tables: BenchTable[]; notes: string[] }> {
  const lab = new Lab();
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-'));
  const net = await lab.pair();
  const daemon = new LabDaemon({ netns: net.right.netns, entry: 'dist', logLevel: 'warn' });
  try {
    const prefixes = randomSlash24s(PREFIXES);
    const text = prefixes.join('\n') + '\n';
    const firstStart = await daemon.start();

    let status = 0;
    const loadMs = await timed(async () => {
      status = (await daemon.api('PUT', '/v1/sets/big', text)).status;
    });
    if (status !== 200) throw new Error(`set load answered ${status}`);
    const rss = daemon.rss();
    const nftLoadMs = await nftSetLoad(lab, prefixes, dir);

    // One device per run: a device holds at most 4,096 rules.
    const devices: string[] = [];
    for (const n of [1, 2, 3]) {
      const device = `${lab.id}x${n}`;
      await run(['ip', 'link', 'add', device, 'type', 'veth', 'peer', 'name', `${lab.id}y${n}`], {
        netns: net.right.netns,
      });
      await run(['ip', 'link', 'set', device, 'up'], { netns: net.right.netns });
      const attached = await daemon.api('POST', '/v1/attachments', { device });
      if (attached.status !== 201) throw new Error(`attach ${device}: ${attached.text}`);
      devices.push(device);
    }
    const sequential = await addRules(daemon.socket, devices[0], RULE_ADDS, 1, 1, 0);
    const oneClient = await addRules(daemon.socket, devices[1], RULE_ADDS, 1, 32, RULE_ADDS);
    const sixteen = await addRules(daemon.socket, devices[2], RULE_ADDS, 16, 1, 2 * RULE_ADDS);
    const nftAdds = await nftRuleAdds(lab, RULE_ADDS, dir);

    // Restart with the million prefixes and 6,000 rules: a SIGKILL, as a crash would.
    await daemon.stop('SIGKILL');
    const restartMs = await daemon.start();

    return {
      tables: [
        {
          title: `the daemon: ${PREFIXES.toLocaleString('en')} IPv4 prefixes loaded (PUT /v1/sets, text, over the Unix socket)`,
          unit: 'ms',
          peer: 'nft -f (interval set)',
          rows: [
            { workload: 'load 1M /24s', sluice: loadMs, peer: nftLoadMs, target: '< 3000 ms' },
          ],
        },
        {
          title: `the daemon: single rule adds (POST /v1/rules), ${RULE_ADDS} each, every one fsynced to disk and in the kernel before its answer (nft -i keeps nothing on disk)`,
          unit: 'adds/s',
          peer: 'nft -i (one transaction a line)',
          rows: [
            { workload: '1 client, 1 at a time', sluice: sequential.perSecond, peer: nftAdds },
            {
              workload: '1 client, 32 in flight',
              sluice: oneClient.perSecond,
              peer: nftAdds,
              target: '≥ 2000/s',
            },
            {
              workload: '16 clients',
              sluice: sixteen.perSecond,
              peer: nftAdds,
              target: '≥ 2000/s',
            },
          ],
        },
        {
          title:
            'the daemon: restart-to-ready after SIGKILL, 1M prefixes and 6,000 rules on 3 devices in state',
          unit: 'ms',
          peer: 'target',
          rows: [{ workload: 'start to "sluice ready"', sluice: restartMs, peer: 2000 }],
        },
      ],
      notes: [
        `daemon RSS after the load: ${(rss / 2 ** 20).toFixed(0)} MiB (target < 300 MiB); first start ${firstStart.toFixed(0)} ms`,
        `failed rule adds: ${sequential.failed + oneClient.failed + sixteen.failed} (must be 0)`,
        'restart-to-ready counts from process spawn (node start-up included) to the daemon logging "sluice ready": state loaded, pins adopted, reconciled, socket listening',
      ],
    };
  } finally {
    await daemon.destroy();
    await lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}
