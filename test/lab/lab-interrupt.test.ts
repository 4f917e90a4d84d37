// A lab interrupted by SIGTERM at any moment leaves none of its namespaces behind.
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';

import { namespacesOf } from '../helpers/namespaces.js';
import { describeKernel } from '../helpers/privileges.js';

const LAB_MODULE = fileURLToPath(new URL('../../netns-lab/lab.ts', import.meta.url));

/** A process that prints its lab's id, then makes namespaces one after another (at most 300). */
const MAKER = `
const { Lab } = await import(${JSON.stringify(LAB_MODULE)});
const lab = new Lab();
console.log(lab.id);
for (let i = 0; i < 300; i++) await lab.addNamespace('i' + i);
await lab.destroy();
`;

/** Starts a maker, lets it run `ms` after it printed its id, stops it with SIGTERM. */
async function interruptAfter(ms: number): Promise<{ id: string; signal: string | null }> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', MAKER], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = once(child, 'exit');
  try {
    const [chunk] = (await once(child.stdout, 'data')) as [Buffer];
    const id = chunk.toString().trim();
    await new Promise((resolve) => setTimeout(resolve, ms));
    child.kill('SIGTERM');
    const [, signal] = (await exited) as [number | null, string | null];
    return { id, signal };
  } finally {
    child.kill('SIGKILL');
  }
}

await describeKernel('a lab stopped by a signal', () => {
  const ids: string[] = [];
  afterAll(() => {
    // what a failing run left: removed here so that the failure does not outlive the test
    for (const name of ids.flatMap(namespacesOf)) execFileSync('ip', ['netns', 'del', name]);
  });

  it('removes every namespace it made, whatever it was doing when the signal came', async () => {
    // Each namespace takes some 10-20 ms to make; the delays land the signal at different
    // points of that, including while `ip netns add` runs.
    for (const ms of [40, 47, 55, 62, 70, 77, 85, 93]) {
      const { id, signal } = await interruptAfter(ms);
      ids.push(id);
      expect(signal).toBe('SIGTERM');
      expect(namespacesOf(id), `lab ${id} stopped after ${ms} ms`).toEqual([]);
    }
  }, 60_000);
});
