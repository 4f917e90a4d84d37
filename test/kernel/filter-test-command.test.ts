// `sluice filter test` with its default backend: our eBPF, test-run in the kernel over a capture.
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { getPacketCorpus } from '../helpers/differential.js';
import { FILTER_TEST_EXPRESSIONS, libpcapVerdicts } from '../helpers/filter-cli.js';
import { describeKernel } from '../helpers/privileges.js';
import { requireTcpdump } from '../helpers/tcpdump.js';

await describeKernel('sluice filter test (eBPF in the kernel)', () => {
  let pcap: string;
  let expected: string[];

  beforeAll(async () => {
    pcap = (await getPacketCorpus()).pcapPath;
    expected = await libpcapVerdicts();
  });

  it("prints libpcap's verdict for every packet, runts and truncated captures included", async () => {
    for (const [i, expression] of FILTER_TEST_EXPRESSIONS.entries()) {
      const run = await runCli('filter', 'test', '--pcap', pcap, '--verdicts', expression);
      expect(run.code).toBe(0);
      expect(run.stdout.replaceAll('\n', ''), expression).toBe(expected[i]);
    }
  });

  it('says how many packets the kernel could not judge and the interpreter did', async () => {
    const { packets } = await getPacketCorpus();
    const runts = packets.filter((p) => p.data.length < 14).length;
    const truncated = packets.filter(
      (p) => p.data.length >= 14 && p.wireLength !== p.data.length,
    ).length;

    const ports = await runCli('filter', 'test', '--pcap', pcap, 'tcp port 80');
    expect(ports.stderr).toContain(`note: ${runts} packets judged by the classic interpreter`);

    // `greater` reads the wire length, which a test run only knows as the captured length.
    const length = await runCli('filter', 'test', '--pcap', pcap, 'greater 200');
    expect(length.stderr).toContain(
      `note: ${runts + truncated} packets judged by the classic interpreter`,
    );
  });
});

await describeKernel('sluice filter test --cbpf (a program the user already has)', () => {
  it("runs tcpdump's own -ddd program as eBPF with libpcap's verdicts", async (ctx) => {
    requireTcpdump(ctx);
    const { pcapPath } = await getPacketCorpus();
    const expected = await libpcapVerdicts();
    const dir = await mkdtemp(join(tmpdir(), 'sluice-cbpf-run-'));
    try {
      for (const [i, expression] of FILTER_TEST_EXPRESSIONS.entries()) {
        const path = join(dir, `${i}.ddd`);
        const ddd = execFileSync('tcpdump', ['-ddd', '-y', 'EN10MB', expression], {
          encoding: 'utf8',
        });
        await writeFile(path, ddd);
        const run = await runCli(
          'filter',
          'test',
          '--pcap',
          pcapPath,
          '--verdicts',
          '--cbpf',
          path,
        );
        expect(run.stdout.replaceAll('\n', ''), expression).toBe(expected[i]);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
