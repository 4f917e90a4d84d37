// The load balancer's health checks against hosts in namespaces: an address that answers ping,
// and one where nothing lives. The checker runs in the test process; its ping runs in the client's
// namespace through nsenter, as the daemon's would in its own.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, expect, it } from 'vitest';

import { HealthChecker, type HealthTransition } from '../../controller/lb/health.js';
import { parseCheckSpec } from '../../controller/lb/health-spec.js';
import { Lab, type PairTopology } from '../../netns-lab/lab.js';
import { describeKernel } from '../helpers/privileges.js';

/** A ping that runs in the client's namespace, as the daemon's would in its own. */
function pingIn(dir: string, netns: string): string {
  const file = join(dir, `ping-${netns}`);
  writeFileSync(file, `#!/bin/sh\nexec nsenter --net=/run/netns/${netns} ping "$@"\n`);
  chmodSync(file, 0o755);
  return file;
}

function next(checker: HealthChecker, key: string, to: string): Promise<HealthTransition> {
  return new Promise((resolve) => {
    const on = (t: HealthTransition): void => {
      if (t.key !== key || t.to !== to) return;
      checker.off('transition', on);
      resolve(t);
    };
    checker.on('transition', on);
  });
}

await describeKernel('health checks in a lab', () => {
  let lab: Lab;
  let net: PairTopology;
  let dir: string;
  const checkers: HealthChecker[] = [];

  beforeAll(async () => {
    lab = new Lab();
    net = await lab.pair();
    dir = mkdtempSync(join(tmpdir(), 'sluice-health-'));
  });

  afterAll(async () => {
    for (const c of checkers) await c.close();
    await lab?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('marks an address that answers ping up, and one where nothing lives down', async () => {
    const checker = new HealthChecker({ ping: pingIn(dir, net.left.netns) });
    checkers.push(checker);
    // Nothing holds .99 of the pair's subnet: the neighbour lookup fails, no reply comes.
    const nobody = net.right.ipv4.replace(/\.\d+$/, '.99');
    const up = next(checker, 'right', 'up');
    const down = next(checker, 'nobody', 'down');
    checker.set([
      {
        key: 'right',
        address: net.right.ipv4,
        port: 0,
        spec: parseCheckSpec('icmp interval=300ms timeout=300ms rise=1'),
      },
      {
        key: 'nobody',
        address: nobody,
        port: 0,
        spec: parseCheckSpec('icmp interval=300ms timeout=300ms fall=2'),
      },
    ]);
    expect((await up).reason).toBe('icmp echo reply');
    expect((await down).reason).toMatch(/^(timeout after 300 ms|icmp .+|ping: .+)$/);
  });
});
