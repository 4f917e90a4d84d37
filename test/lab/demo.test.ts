// The README's first command ends in `sluice demo`: its traffic must do what its configuration
// says, and it must leave nothing behind.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

import { expect, it } from 'vitest';

import { runDemo } from '../../netns-lab/demo.js';
import { describeKernel } from '../helpers/privileges.js';

await describeKernel('sluice demo', () => {
  it('forwards, drops, rate-limits and filters as its sample configuration says, then removes everything', async () => {
    const result = await runDemo(3, 'source');
    expect(result.disagreements).toEqual([]);
    expect(result.forwarded.received).toBe(result.forwarded.sent);
    expect(result.blocked.received).toBe(0);
    expect(result.filtered.received).toBe(0);
    expect(result.dns.received).toBeGreaterThan(0);
    expect(result.dns.received).toBeLessThan(result.dns.sent);

    const namespaces = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    expect(namespaces.split('\n').filter((line) => line.startsWith(result.labId))).toEqual([]);
    expect(existsSync(`/sys/fs/bpf/${result.labId}`)).toBe(false);
  });
});
