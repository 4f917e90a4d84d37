// `sluice … | head`: the CLI stops quietly when the reader of its output goes away.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..', '..');

it('exits 0 without a word on stderr when the reader of stdout has gone', async () => {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'cli', 'main.ts'), 'compile', '-ddd', 'tcp port 80'],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  // Gone before the first line is written, as `head` is after its lines: that write gets EPIPE.
  child.stdout.destroy();
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
}, 60_000);
