// The README's first command ends in `sluice selfcheck`: it must count what it sends and leave nothing behind.
import { expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { namespacesOf } from '../helpers/namespaces.js';
import { describeKernel } from '../helpers/privileges.js';

await describeKernel('sluice selfcheck', () => {
  it('counts every ping it sends and removes the namespaces it made', async () => {
    const { code, stdout } = await runCli('selfcheck', '--pings', '10', '--json');
    expect(code).toBe(0);
    const result = JSON.parse(stdout);
    expect(result).toMatchObject({
      ok: true,
      sent: 10,
      answered: 10,
      counters: { pass: { packets: 10, bytes: 980 } },
    });
    const labId = String(result.netns).slice(0, -1);
    expect(namespacesOf(labId)).toEqual([]);
  });

  it('rejects a ping count that is not a whole number, as a usage error', async () => {
    const { code, stderr } = await runCli('selfcheck', '--pings', 'many');
    expect(code).toBe(2);
    expect(stderr).toMatchInlineSnapshot(`
      "sluice: option '--pings <n>' argument 'many' is invalid. expected a whole number of pings from 1 to 10000
      "
    `);
  });
});
