// `sluice serve --config FILE`: the file is applied at start and again whenever it changes; a file
// that fails validation is reported and the running configuration kept.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, expect, it } from 'vitest';

import { LabDaemon } from '../../netns-lab/daemon.js';
import { Lab, type PairTopology } from '../../netns-lab/lab.js';
import { describeKernel } from '../helpers/privileges.js';
import { guard } from './daemon-lab.js';

async function waitFor(what: string, check: () => Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`not within ${ms} ms: ${what}`);
}

await describeKernel('sluice serve --config', () => {
  let lab: Lab;
  let net: PairTopology;
  let daemon: LabDaemon;
  let dir: string;
  let file: string;
  const yaml = (rules: string): string =>
    `attachments:\n  - device: ${net.right.device}\nrules:\n${rules}`;
  const ruleIds = async (): Promise<string[]> =>
    ((await daemon.api('GET', '/v1/config')).body as { rules: { id: string }[] }).rules.map(
      (r) => r.id,
    );

  beforeAll(async () => {
    lab = new Lab();
    net = await lab.pair();
    dir = mkdtempSync(join(tmpdir(), 'sluice-config-'));
    file = join(dir, 'sluice.yaml');
    writeFileSync(
      file,
      yaml(
        `  - id: dns\n    device: ${net.right.device}\n    proto: udp\n    dport: 53\n    action: drop\n`,
      ),
    );
    daemon = guard(lab, new LabDaemon({ netns: net.right.netns, config: file }));
    await daemon.start();
  });

  afterAll(async () => {
    await daemon?.destroy();
    await lab?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('applies the file at start', async () => {
    expect(await ruleIds()).toEqual(['dns']);
    const status = (await daemon.api('GET', '/v1/status')).body as {
      attachments: { device: string; state: string }[];
    };
    expect(status.attachments).toMatchObject([{ device: net.right.device, state: 'attached' }]);
  });

  it('applies it again when it changes, replaced the way editors and ConfigMaps do', async () => {
    const next = join(dir, 'sluice.yaml.new');
    writeFileSync(
      next,
      yaml(
        `  - id: dns\n    device: ${net.right.device}\n    proto: udp\n    dport: 53\n    action: drop\n` +
          `  - id: ssh\n    device: ${net.right.device}\n    proto: tcp\n    dport: 22\n    action: drop\n`,
      ),
    );
    const { renameSync } = await import('node:fs');
    renameSync(next, file);
    await waitFor('the new rule applied', async () => (await ruleIds()).includes('ssh'));
    expect(await ruleIds()).toEqual(['dns', 'ssh']);
  });

  it('keeps the running configuration when the file turns invalid, and says where', async () => {
    const before = await daemon.api('GET', '/v1/config');
    writeFileSync(
      file,
      yaml(`  - id: dns\n    device: ${net.right.device}\n    dport: 99999\n    action: drop\n`),
    );
    await waitFor('the error logged', async () =>
      daemon.logs.some((line) => line.includes('config file not applied')),
    );
    const logged = daemon.logs.find((line) => line.includes('config file not applied'))!;
    expect(JSON.parse(logged).detail).toBe(`${file}:6:12: rules[0].dport must be <= 65535`);
    const after = await daemon.api('GET', '/v1/config');
    expect(after.headers.etag).toBe(before.headers.etag);
    expect(after.body).toEqual(before.body);
  });
});
