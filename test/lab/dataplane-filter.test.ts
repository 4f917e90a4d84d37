// A tcpdump-expression rule in native XDP on the router drops exactly the packets `tcpdump -r` says the expression matches, in a captured stream of mixed sizes and payloads.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { run } from '../../netns-lab/exec.js';
import { countInCapture, startCapture, udpStream } from '../../netns-lab/traffic.js';
import { describeKernel } from '../helpers/privileges.js';
import { requireTcpdump } from '../helpers/tcpdump.js';
import { counterDelta, countersOf, openDataplaneLab, type DataplaneLab } from './dataplane-lab.js';

const N = 1000;
const PORT = 9400;
/**
 * Matches about a third of the stream: IPv4 by payload bits and frame length (`udp[8]` is the
 * first payload byte; libpcap's `udp[]` is IPv4 only), IPv6 by the first payload byte read from
 * the fixed header (40) plus UDP's (8).
 */
const EXPRESSION =
  `udp dst port ${PORT} and (udp[8] & 3 = 1 or (udp[9] > 200 and len > 300)` +
  ` or (ip6 and ip6[6] = 17 and ip6[48] & 3 = 2))`;

/** Sum of the frame lengths tcpdump -e prints for the packets of `file` that `expression` matches. */
async function bytesInCapture(file: string, expression: string): Promise<number> {
  const out = await run(['tcpdump', '-r', file, '-n', '-e', '--', expression]);
  let bytes = 0;
  for (const line of out.split('\n')) {
    const length = /, length (\d+):/.exec(line);
    if (length) bytes += Number(length[1]);
  }
  return bytes;
}

await describeKernel('a tcpdump-expression rule in native XDP on the router', () => {
  let x: DataplaneLab;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-filter-'));
    x = await openDataplaneLab();
    await x.dp.apply({
      attachments: [
        {
          device: x.net.router.client.device,
          hook: 'xdp',
          mode: 'native',
          rules: { rules: [{ id: 'expr', filter: EXPRESSION, action: 'drop' }] },
        },
      ],
    });
  });

  afterAll(async () => {
    await x?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('drops what tcpdump -r of the same traffic matches, and passes the rest', async (ctx) => {
    requireTcpdump(ctx);
    const { net, dp } = x;
    const side = net.router.client.device;
    const file = join(dir, 'client.pcap');
    // What the client sends to the port, both families, as it leaves the client.
    const capture = await startCapture(net.client, {
      device: net.client.device,
      file,
      count: 2 * N,
      direction: 'out',
      filter: `udp dst port ${PORT}`,
    });
    const before = countersOf(dp, side);
    const streams = [];
    for (const [family, seed] of [
      ['ipv4', 7],
      ['ipv6', 11],
    ] as const) {
      streams.push(
        await udpStream({
          from: net.client,
          to: net.server1,
          family,
          port: PORT,
          count: N,
          rate: 2000,
          size: 16,
          sizeMax: 600,
          payload: 'random',
          seed,
        }),
      );
    }
    const stats = await capture.stop();
    const delta = counterDelta(countersOf(dp, side), before);

    // The file holds every datagram sent: none lost to a full capture ring.
    expect(stats).toEqual({ captured: 2 * N, matched: 2 * N, dropped: 0 });
    expect(await countInCapture(file)).toBe(2 * N);
    const matched = await countInCapture(file, EXPRESSION);
    const matched4 = await countInCapture(file, `ip and (${EXPRESSION})`);
    // Part of the stream, not all or nothing, on each family.
    expect(matched4).toBeGreaterThan(N / 10);
    expect(matched - matched4).toBeGreaterThan(N / 10);
    expect(matched).toBeLessThan(N);

    const received = streams[0].received + streams[1].received;
    expect(streams.map((s) => s.sent)).toEqual([N, N]);
    expect(streams[0].lost).toBe(matched4);
    expect(streams[1].lost).toBe(matched - matched4);
    expect(received).toBe(2 * N - matched);
    const matchedBytes = await bytesInCapture(file, EXPRESSION);
    const otherBytes = await bytesInCapture(file, `not (${EXPRESSION})`);
    expect(delta.rules.expr).toEqual({ packets: matched, bytes: matchedBytes });
    expect(delta.drop).toEqual({ packets: matched, bytes: matchedBytes });
    expect(delta.pass).toEqual({ packets: 2 * N - matched, bytes: otherBytes });
    expect(delta.events).toMatchObject({ filterMissing: 0, default: 2 * N - matched });
    console.info(`expression matched ${matched} of ${2 * N} (IPv4 ${matched4})`);
  });
});
