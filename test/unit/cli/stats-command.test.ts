// `sluice stats`: the log2 histogram drawn like bpftrace's hist(), the per-device view with rates
// from two samples, --json, and --watch redrawing in place.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { formatHistogram, formatStats } from '../../../cli/render.js';
import { startApiStub, type ApiStub } from '../../helpers/api-stub.js';
import { runCliWith } from '../../helpers/cli.js';
import type { Stats } from '../../../controller/contract.js';

function histogram(buckets: Record<number, number>): number[] {
  const h = new Array<number>(32).fill(0);
  for (const [b, n] of Object.entries(buckets)) h[Number(b)] = n;
  return h;
}

function sample(scale: number): Stats {
  return {
    devices: [
      {
        name: 'veth1',
        device: 'veth1',
        hook: 'xdp',
        ifindex: 7,
        generation: 3,
        actions: {
          pass: { packets: 1000 * scale, bytes: 64_000 * scale },
          drop: { packets: 250 * scale, bytes: 375_000 * scale },
          redirect: { packets: 0, bytes: 0 },
          tx: { packets: 0, bytes: 0 },
        },
        events: {} as Stats['devices'][number]['events'],
        histogram: histogram({ 6: 1000 * scale, 10: 250 * scale }),
        rules: [
          { id: 'r1', position: 0, packets: 250 * scale, bytes: 375_000 * scale, lastHit: null },
          { id: 'idle', position: 1, packets: 0, bytes: 0, lastHit: null },
        ],
        limiters: [],
      },
    ],
  };
}

describe('formatHistogram', () => {
  it("draws the non-empty range of buckets like bpftrace's hist()", () => {
    expect(formatHistogram(histogram({ 0: 1, 6: 1234, 7: 617, 10: 40, 16: 3 })))
      .toMatchInlineSnapshot(`
      "[0, 2)           1 |                                                    |
      [2, 4)           0 |                                                    |
      [4, 8)           0 |                                                    |
      [8, 16)          0 |                                                    |
      [16, 32)         0 |                                                    |
      [32, 64)         0 |                                                    |
      [64, 128)     1234 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
      [128, 256)     617 |@@@@@@@@@@@@@@@@@@@@@@@@@@                          |
      [256, 512)       0 |                                                    |
      [512, 1K)        0 |                                                    |
      [1K, 2K)        40 |@@                                                  |
      [2K, 4K)         0 |                                                    |
      [4K, 8K)         0 |                                                    |
      [8K, 16K)        0 |                                                    |
      [16K, 32K)       0 |                                                    |
      [32K, 64K)       0 |                                                    |
      [64K, 128K)      3 |                                                    |
      "
    `);
  });

  it('draws nothing for an empty histogram', () => {
    expect(formatHistogram(histogram({}))).toBe('');
  });
});

describe('formatStats', () => {
  it('shows totals, rates over the time between two samples, top rules and sizes', () => {
    const text = formatStats({ stats: sample(2), at: 3000 }, { stats: sample(1), at: 1000 });
    expect(text).toMatchInlineSnapshot(`
      "veth1 (xdp, ifindex 7, generation 3)
        action    packets   bytes  pkt/s  bit/s
        pass         2000  128000    500   256k
        drop          500  750000    125  1.50M
        redirect        0       0      0      0
        tx              0       0      0      0
        top rules
        rule  packets   bytes
        r1        500  750000
        packet sizes (bytes)
        [64, 128)    2000 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
        [128, 256)      0 |                                                    |
        [256, 512)      0 |                                                    |
        [512, 1K)       0 |                                                    |
        [1K, 2K)      500 |@@@@@@@@@@@@@                                       |
      "
    `);
  });
});

describe('sluice stats', () => {
  let stub: ApiStub;
  const run = (...args: string[]) => runCliWith({ env: {} }, '--socket', stub.socket, ...args);

  beforeAll(async () => {
    stub = await startApiStub({ 'GET /v1/stats': (_req, n) => ({ json: sample(n) }) });
  });
  afterAll(async () => {
    await stub.close();
  });
  beforeEach(() => {
    stub.requests.length = 0;
    stub.route('GET /v1/stats', (_req, n) => ({ json: sample(n) }));
  });

  it('prints the Stats object with --json, asking for one device', async () => {
    const r = await run('stats', 'veth1', '--json');
    expect(r.code).toBe(0);
    expect(stub.requests).toMatchObject([{ path: '/v1/stats', query: { device: 'veth1' } }]);
    const stats = JSON.parse(r.stdout) as Stats;
    expect(stats.devices[0]).toMatchObject({
      name: 'veth1',
      ifindex: 7,
      actions: { drop: { packets: 250, bytes: 375000 } },
    });
    expect(stats.devices[0].histogram).toHaveLength(32);
  });

  it('samples twice for rates in the human view', async () => {
    const r = await run('stats', '--interval', '0.05');
    expect(stub.requests).toHaveLength(2);
    expect(r.stdout).toMatch(/^ {2}drop +500 +750000 +\d/m);
    stub.route('GET /v1/stats', (_req, n) => ({ json: sample(n) }));
    const once = await run('stats', '--interval', '0');
    expect(once.stdout).toMatch(/^ {2}drop +250 +375000 +- +-$/m);
  });

  it('redraws in place with --watch until --count samples', async () => {
    const r = await run('stats', '--watch', '--count', '2', '--interval', '0.02');
    expect(r.code).toBe(0);
    expect(stub.requests).toHaveLength(2);
    const frames = r.stdout.split('\x1b[H');
    // hide the cursor and clear once, then one frame per sample, each line cleared to its end
    expect(frames[0]).toBe('\x1b[?25l\x1b[2J');
    expect(frames).toHaveLength(3);
    expect(frames[1]).toContain('  drop          250  375000      -      -\x1b[K\n');
    expect(frames[2]).toMatch(/ {2}drop +500 +750000 +\d/);
    expect(frames[2].endsWith('\x1b[J\x1b[?25h')).toBe(true);
    const json = await run('stats', '--watch', '--count', '3', '--interval', '0.01', '--json');
    expect(
      json.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).devices[0].generation),
    ).toEqual([3, 3, 3]);
  });

  it('stops watching when interrupted', async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 150);
    const r = await runCliWith(
      { env: {}, interrupt: controller.signal },
      '--socket',
      stub.socket,
      'stats',
      '--watch',
      '--interval',
      '60',
    );
    expect(r.code).toBe(0);
    expect(stub.requests).toHaveLength(1);
  });

  it('rejects a bad interval as a usage error', async () => {
    const r = await run('stats', '--interval', 'soon');
    expect([r.code, r.stderr]).toEqual([
      2,
      "sluice: option '-i, --interval <seconds>' argument 'soon' is invalid. expected seconds between samples: a number from 0 to 3600 (0.5)\n",
    ]);
  });
});
