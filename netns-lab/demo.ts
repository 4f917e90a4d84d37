// The demo behind `npm run demo`: a router lab, `sluice serve` in the router's namespace, a sample
// configuration applied through the CLI, real traffic, the live counters, and a full teardown.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { LabDaemon, sluiceCommand } from './daemon.js';
import { Lab } from './lab.js';
import type { RouterTopology } from './router.js';
import { ping, udpStream, type PingResult, type UdpStreamResult } from './traffic.js';

/** What the demo's traffic got, to compare with what the configuration promises. */
export interface DemoResult {
  /** The lab's id: every namespace, device and the pin directory were named after it. */
  labId: string;
  forwarded: PingResult;
  blocked: PingResult;
  dns: UdpStreamResult;
  filtered: UdpStreamResult;
  /** Where the result disagrees with the configuration, one sentence each. */
  disagreements: string[];
}

/** The embedded sample configuration, for the router's client-facing device. */
export function sampleConfig(lab: RouterTopology): string {
  const dev = lab.router.client.device;
  const out = lab.router.server1.device;
  return `# sluice demo configuration: applied with \`sluice apply -f\`
attachments:
  - device: ${dev}
    hook: xdp
    mode: native
    defaultAction: pass
sets:
  - name: blocklist
    prefixes: [${lab.server2.ipv4}/32, 2001:db8:3::/64, 192.0.2.128/25]
rules:
  - id: blocklist
    device: ${dev}
    dstSet: blocklist
    action: drop
  - id: dns-limit
    device: ${dev}
    proto: udp
    dport: 53
    action: ratelimit
    rate: 200pps
    burst: 20
  - id: no-5001
    device: ${dev}
    filter: udp and dst port 5001
    action: drop
  - id: to-server1
    device: ${dev}
    dst: ${lab.server1.ipv4.replace(/\.\d+$/, '.0')}/24
    action: redirect
    to: ${out}
`;
}

/**
 * Runs `sluice ARGS` against the demo daemon, output to the terminal; throws on failure. Async:
 * the traffic drivers running meanwhile need this process's event loop.
 */
async function sluice(entry: 'source' | 'dist', socket: string, args: string[]): Promise<void> {
  process.stdout.write(`\n$ sluice ${args.join(' ')}\n`);
  const [node, ...argv] = sluiceCommand(entry);
  const child = spawn(node, [...argv, '--socket', socket, ...args], { stdio: 'inherit' });
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  clearTimeout(timer);
  if (code !== 0) throw new Error(`sluice ${args[0]} failed (exit ${code})`);
}

/**
 * Runs the demo, printing as it goes; `watchSeconds` bounds the live view; `entry` says whether
 * the daemon and CLI run from the build (the demo) or the sources (its test). Everything it creates
 * (namespaces, devices, the daemon, pins, temp files) is removed before it returns or throws, and
 * by the lab's exit hook when interrupted.
 */
export async function runDemo(
  watchSeconds = 6,
  entry: 'source' | 'dist' = 'dist',
): Promise<DemoResult> {
  const lab = new Lab();
  const work = mkdtempSync(join(tmpdir(), 'sluice-demo-'));
  const pinDir = `/sys/fs/bpf/${lab.id}`;
  let daemon: LabDaemon | undefined;
  // Runs before the namespaces go, also from the exit hook on Ctrl-C: the daemon and the pins.
  lab.addCleanup(() => {
    daemon?.destroySync();
    rmSync(pinDir, { recursive: true, force: true }); // also when the daemon never started
    rmSync(work, { recursive: true, force: true });
  });
  try {
    process.stdout.write('building the lab: client -> router -> server1, server2 ...\n');
    const topology = await lab.router({ passXdp: true });
    const routerNs = topology.router.netns;
    const dev = topology.router.client.device;
    const configFile = join(work, 'sluice.yaml');
    writeFileSync(configFile, sampleConfig(topology));

    process.stdout.write(`starting sluice serve in namespace ${routerNs}\n`);
    daemon = new LabDaemon({
      netns: routerNs,
      pinDir,
      entry,
      logLevel: 'warn',
      echo: process.stderr,
    });
    const readyMs = await daemon.start();
    process.stdout.write(`sluice serve ready in ${Math.round(readyMs)} ms on ${daemon.socket}\n`);
    const socket = daemon.socket;

    process.stdout.write(`\nsample configuration (${configFile}):\n${sampleConfig(topology)}`);
    await sluice(entry, socket, ['apply', '-f', configFile, '--dry-run']);
    await sluice(entry, socket, ['apply', '-f', configFile]);
    await sluice(entry, socket, ['rule', 'ls', '--dev', dev]);

    process.stdout.write(`\ndriving traffic for ${watchSeconds} s while the counters update:\n`);
    const traffic = Promise.all([
      ping(topology.client, topology.server1.ipv4, {
        count: 50,
        intervalSeconds: watchSeconds / 60,
      }),
      ping(topology.client, topology.server2.ipv4, { count: 20, intervalSeconds: 0.1 }),
      udpStream({
        from: topology.client,
        to: topology.server1,
        port: 53,
        size: 32,
        count: 1000 * Math.max(1, Math.floor(watchSeconds / 2)),
        rate: 1000,
      }),
      udpStream({
        from: topology.client,
        to: topology.server1,
        port: 5001,
        size: 1000,
        count: 300,
        rate: 300,
      }),
    ]);
    await sluice(entry, socket, [
      'stats',
      dev,
      '--watch',
      '--interval',
      '1',
      '--count',
      String(watchSeconds),
    ]);
    const [forwarded, blocked, dns, filtered] = await traffic;
    await sluice(entry, socket, ['stats', dev]);

    const disagreements: string[] = [];
    if (forwarded.received !== forwarded.sent)
      disagreements.push(`${forwarded.received} of ${forwarded.sent} forwarded pings answered`);
    if (blocked.received !== 0)
      disagreements.push(`${blocked.received} pings to the blocklist were answered`);
    if (filtered.received !== 0)
      disagreements.push(`${filtered.received} datagrams to port 5001 got through the filter`);
    const dnsSeconds = dns.elapsedMs / 1000;
    const dnsCeiling = 20 + 200 * (dnsSeconds + 1);
    if (dns.received > dnsCeiling || dns.received === 0)
      disagreements.push(
        `${dns.received} of ${dns.sent} DNS datagrams passed the 200 pps limit in ${dnsSeconds.toFixed(1)} s`,
      );
    process.stdout.write(
      [
        '',
        `forwarded by XDP redirect: ${forwarded.received}/${forwarded.sent} pings answered`,
        `dropped by the blocklist set: ${blocked.sent - blocked.received}/${blocked.sent} pings`,
        `rate-limited to 200 pps: ${dns.received}/${dns.sent} DNS datagrams passed`,
        `dropped by the tcpdump expression: ${filtered.sent - filtered.received}/${filtered.sent} datagrams`,
        ...(disagreements.length === 0
          ? ['ok: the traffic did what the configuration says']
          : disagreements.map((d) => `unexpected: ${d}`)),
        '',
      ].join('\n'),
    );
    return { labId: lab.id, forwarded, blocked, dns, filtered, disagreements };
  } finally {
    await daemon?.stop('SIGTERM'); // the data plane stays up until the lab and pins go
    await daemon?.destroy();
    await lab.destroy(); // runs the cleanup above: pins and temp files go too
    process.stdout.write('removed the lab, the daemon and its pinned programs\n');
  }
}
