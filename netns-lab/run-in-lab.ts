// Runs one command beside a router lab: builds the topology, describes it in SLUICE_LAB, always tears it down.
//
//   node --import tsx netns-lab/run-in-lab.ts [--pass-xdp] -- <command...>
//
// The command runs in the host namespace with SLUICE_LAB (the RouterTopology as JSON) and
// SLUICE_LAB_FILE (a file holding the same) in its environment; it reaches the lab through
// `ip netns exec` and the bpf wrappers' `netns` option (see `labFromEnv()` in router.ts).
// Exits with the command's status (128 + signal number if a signal ended it), 2 on a usage error.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab } from './lab.js';

const USAGE = 'usage: run-in-lab.ts [--pass-xdp] -- <command...>';

async function main(argv: string[]): Promise<number> {
  const split = argv.indexOf('--');
  const options = split < 0 ? argv : argv.slice(0, split);
  const command = split < 0 ? [] : argv.slice(split + 1);
  const unknown = options.filter((option) => option !== '--pass-xdp');
  if (command.length === 0 || unknown.length > 0) {
    process.stderr.write(
      `run-in-lab: ${unknown.length ? `unknown option "${unknown[0]}"` : 'no command'}\n${USAGE}\n`,
    );
    return 2;
  }

  const lab = new Lab();
  const dir = mkdtempSync(join(tmpdir(), 'sluice-lab-'));
  try {
    const topology = await lab.router({ passXdp: options.includes('--pass-xdp') });
    const json = JSON.stringify(topology);
    const file = join(dir, 'lab.json');
    writeFileSync(file, `${json}\n`);
    const child = spawn(command[0], command.slice(1), {
      stdio: 'inherit',
      env: { ...process.env, SLUICE_LAB: json, SLUICE_LAB_FILE: file },
    });
    // The lab's own hook tears down at the first SIGINT/SIGTERM (and raises it again); this
    // passes the first one on and keeps the process alive until the command has exited.
    let forwarded = false;
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      process.on(signal, () => {
        if (!forwarded) child.kill(signal);
        forwarded = true;
      });
    }
    return await new Promise<number>((resolve) => {
      child.once('error', (error) => {
        process.stderr.write(`run-in-lab: run "${command[0]}": ${error.message}\n`);
        resolve(127);
      });
      child.once('exit', (code, signal) =>
        resolve(code ?? 128 + (signal ? constants.signals[signal] : 0)),
      );
    });
  } finally {
    await lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

process.exitCode = await main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`run-in-lab: ${error instanceof Error ? error.message : String(error)}\n`);
  return 1;
});
