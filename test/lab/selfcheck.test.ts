// The README's first command ends in `sluice selfcheck`: it must count what it sends and leave nothing behind.
import { execFileSync } from 'node:child_process';
import { expect, it } from 'vitest';
import { main } from '../../cli/index.js';
import { describeKernel } from '../helpers/privileges.js';

function namespaces(): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').filter(Boolean);
}

await describeKernel('sluice selfcheck', () => {
  it('counts every ping it sends and removes the namespaces it made', async () => {
    const chunks: string[] = [];
    const write = process.stdout.write;
    process.stdout.write = ((chunk: string) =>
      chunks.push(chunk) > 0) as typeof process.stdout.write;
    let code: number;
    try {
      code = await main(['node', 'sluice', 'selfcheck', '--pings', '10', '--json']);
    } finally {
      process.stdout.write = write;
    }
    expect(code).toBe(0);
    const result = JSON.parse(chunks.join(''));
    expect(result).toMatchObject({
      sent: 10,
      answered: 10,
      counters: { pass: { packets: 10, bytes: 980 } },
    });
    const labId = String(result.netns).slice(0, -1);
    expect(namespaces().filter((line) => line.startsWith(labId))).toEqual([]);
  });
});
