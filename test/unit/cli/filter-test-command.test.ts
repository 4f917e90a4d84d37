// `sluice filter test` with the classic interpreter, and its errors: the parts that need no kernel.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../helpers/cli.js';
import { getPacketCorpus } from '../../helpers/differential.js';
import { FILTER_TEST_EXPRESSIONS, libpcapVerdicts } from '../../helpers/filter-cli.js';
import { writePcap } from '../../helpers/packets/pcap-writer.js';

describe('sluice filter test --backend cbpf', () => {
  let pcap: string;
  let expected: string[];
  let dir: string;

  beforeAll(async () => {
    pcap = (await getPacketCorpus()).pcapPath;
    expected = await libpcapVerdicts();
    dir = await mkdtemp(join(tmpdir(), 'sluice-filter-cli-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("prints libpcap's verdict for every packet, in file order", async () => {
    for (const [i, expression] of FILTER_TEST_EXPRESSIONS.entries()) {
      const run = await runCli(
        'filter',
        'test',
        '--backend',
        'cbpf',
        '--pcap',
        pcap,
        '--verdicts',
        expression,
      );
      expect(run.code).toBe(0);
      expect(run.stdout.replaceAll('\n', ''), expression).toBe(expected[i]);
    }
  });

  it('counts the matches, joining the words of the expression', async () => {
    const matched = [...expected[0]].filter((v) => v === '1').length;
    const run = await runCli(
      'filter',
      'test',
      '--backend',
      'cbpf',
      '--pcap',
      pcap,
      'tcp',
      'port',
      '80',
    );
    expect(run.stdout).toBe(`matched ${matched} of ${expected[0].length} packets\n`);
  });

  it('points at the bad token of an expression and exits 1', async () => {
    const run = await runCli(
      'filter',
      'test',
      '--pcap',
      pcap,
      'udp and dst port and host 192.0.2.1',
    );
    expect(run.code).toBe(1);
    expect(run.stderr).toMatchInlineSnapshot(`
      "udp and dst port and host 192.0.2.1
                       ^^^
      sluice: unexpected "and" at column 18: expected a port number or name
      "
    `);
  });

  it('says which file is missing', async () => {
    const run = await runCli('filter', 'test', '--pcap', join(dir, 'absent.pcap'), 'ip');
    expect(run.code).toBe(1);
    expect(run.stderr.replaceAll(dir, '<dir>')).toMatchInlineSnapshot(`
      "sluice: read pcap file "<dir>/absent.pcap": no such file
      "
    `);
  });

  it('refuses a file that is not a pcap capture', async () => {
    const path = join(dir, 'notes.txt');
    await writeFile(path, 'these are not packets\n');
    const run = await runCli('filter', 'test', '--pcap', path, 'ip');
    expect(run.code).toBe(1);
    expect(run.stderr.replaceAll(dir, '<dir>')).toMatchInlineSnapshot(`
      "sluice: read pcap file "<dir>/notes.txt": magic number 0x74686573 is not a pcap file
      "
    `);
  });

  it('refuses a capture whose link type is not Ethernet', async () => {
    const path = join(dir, 'raw-ip.pcap');
    await writeFile(path, writePcap([{ data: new Uint8Array(20) }], { linkType: 101 }));
    const run = await runCli('filter', 'test', '--pcap', path, 'ip');
    expect(run.code).toBe(1);
    expect(run.stderr.replaceAll(dir, '<dir>')).toMatchInlineSnapshot(`
      "sluice: filter "<dir>/raw-ip.pcap": link type 101 is not Ethernet (1), the only one filters compile for
      "
    `);
  });

  it('rejects an unknown backend as a usage error', async () => {
    const run = await runCli('filter', 'test', '--backend', 'gpu', '--pcap', pcap, 'ip');
    expect(run.code).toBe(2);
  });
});
