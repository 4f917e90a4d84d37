// `sluice compile --cbpf`: classic BPF people already have (tcpdump -ddd text) printed back and translated.
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../helpers/cli.js';
import { requireTcpdump } from '../../helpers/tcpdump.js';

const tcpdump = (layout: string, expression: string): string =>
  execFileSync('tcpdump', [layout, '-y', 'EN10MB', expression], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });

describe('sluice compile --cbpf', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-cbpf-cli-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function saved(expression: string): Promise<string> {
    const path = join(dir, `${expression.replace(/\W+/g, '_')}.ddd`);
    await writeFile(path, tcpdump('-ddd', expression));
    return path;
  }

  it("prints tcpdump's own -ddd program in each of tcpdump's layouts", async (ctx) => {
    requireTcpdump(ctx);
    for (const expression of ['tcp port 80', 'vlan 100 and udp', 'ip6 protochain 6']) {
      const path = await saved(expression);
      for (const layout of ['-d', '-dd', '-ddd']) {
        const run = await runCli('compile', layout, '--cbpf', path);
        expect(run.stdout, `${layout} ${expression}`).toBe(tcpdump(layout, expression));
      }
    }
  });

  it('translates it to eBPF', async (ctx) => {
    requireTcpdump(ctx);
    const run = await runCli('compile', '--ebpf', '--cbpf', await saved('icmp or arp'));
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^ {3}0: \(61\) r2 = \*\(u32 \*\)\(r1 \+0\)\n/);
  });

  it('points at the instruction whose jump leaves the program', async () => {
    const path = join(dir, 'bad.ddd');
    await writeFile(path, '3\n40 0 0 12\n21 0 9 2048\n6 0 0 1\n');
    const run = await runCli('compile', '--cbpf', path);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatchInlineSnapshot(`
      "21 0 9 2048
           ^
      sluice: jump in instruction 1 goes to 11, past the end of the program
      "
    `);
  });

  it('takes an expression or a program, not both and not neither, as usage errors', async (ctx) => {
    requireTcpdump(ctx);
    const path = await saved('ip');
    expect(await runCli('compile', '--cbpf', path, 'ip')).toMatchObject({ code: 2 });
    expect(await runCli('compile')).toMatchObject({ code: 2 });
    expect(await runCli('compile', '-O', '--cbpf', path)).toMatchObject({ code: 2 });
  });
});
