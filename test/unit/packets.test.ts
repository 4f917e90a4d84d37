// The test packet corpus and pcap files: generator determinism, writer/reader round trips, reader errors, and tcpdump/libpcap reading our files.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PcapFormatError, parsePcap, readPcap } from '../../bpf/pcap.js';
import { runOracle } from '../helpers/oracle.js';
import {
  countTags,
  generatePackets,
  writePcap,
  type GeneratedPacket,
} from '../helpers/packets/index.js';
import { ipv6 } from '../helpers/packets/build.js';
import { requireTcpdump } from '../helpers/tcpdump.js';

const run = promisify(execFile);

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-packets-test-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function digest(packets: readonly GeneratedPacket[]): string {
  let h = 0x811c9dc5;
  for (const p of packets) {
    for (const b of p.data) h = Math.imul(h ^ b, 0x01000193) >>> 0;
    h = Math.imul(h ^ p.wireLength, 0x01000193) >>> 0;
  }
  return h.toString(16);
}

function pcapError(fn: () => unknown): PcapFormatError {
  try {
    fn();
  } catch (error: unknown) {
    if (error instanceof PcapFormatError) return error;
    throw error;
  }
  throw new Error('expected a PcapFormatError');
}

describe('packet generator', () => {
  it('gives the same packets for the same seed and different ones for another seed', () => {
    const a = generatePackets({ seed: 7, count: 800 });
    const b = generatePackets({ seed: 7, count: 800 });
    const c = generatePackets({ seed: 8, count: 800 });
    expect(a).toHaveLength(800);
    expect(digest(a)).toBe(digest(b));
    expect(a.map((p) => p.description)).toEqual(b.map((p) => p.description));
    expect(digest(c)).not.toBe(digest(a));
  });

  it('keeps captured length within the wire length and marks every cut capture', () => {
    for (const p of generatePackets()) {
      expect(p.data.length).toBeLessThanOrEqual(p.wireLength);
      if (p.data.length < p.wireLength && p.category !== 'runt') {
        expect(p.tags.some((t) => t === 'truncated' || t === 'snapcut')).toBe(true);
      }
    }
  });

  it('covers every TCP flag combination over IPv4 and IPv6', () => {
    const tags = countTags(generatePackets());
    for (let f = 0; f < 256; f++)
      expect(
        tags.get(`tcp-flags-0x${f.toString(16).padStart(2, '0')}`) ?? 0,
      ).toBeGreaterThanOrEqual(2);
  });

  it('parses IPv6 literals the way inet_pton does', () => {
    const hex = (s: string): string => Buffer.from(ipv6(s)).toString('hex');
    expect(hex('2001:db8::1')).toBe('20010db8000000000000000000000001');
    expect(hex('::')).toBe('0'.repeat(32));
    expect(hex('::1')).toBe('0'.repeat(31) + '1');
    expect(hex('fe80::')).toBe('fe80' + '0'.repeat(28));
    expect(hex('::ffff:192.0.2.1')).toBe('00000000000000000000ffffc0000201');
    expect(hex('2001:0db8:85a3:0000:0000:8a2e:0370:7334')).toBe('20010db885a3000000008a2e03707334');
  });
});

describe('pcap writer and reader', () => {
  const packets = generatePackets({ seed: 3, count: 300 });

  for (const byteOrder of ['le', 'be'] as const) {
    for (const precision of ['micro', 'nano'] as const) {
      it(`round-trips ${byteOrder === 'le' ? 'little' : 'big'}-endian files with ${precision}second timestamps`, () => {
        const file = parsePcap(
          writePcap(
            packets.map((p, i) => ({
              ...p,
              tsSec: 1_600_000_000 + i,
              tsFrac: precision === 'nano' ? 123_456_789 : 654_321,
            })),
            { byteOrder, precision },
          ),
        );
        expect(file.linkType).toBe(1);
        expect(file.snaplen).toBe(262144);
        expect(file.byteOrder).toBe(byteOrder);
        expect(file.precision).toBe(precision);
        expect(file.packets).toHaveLength(packets.length);
        file.packets.forEach((p, i) => {
          expect(p.data).toEqual(packets[i]!.data);
          expect(p.wireLength).toBe(packets[i]!.wireLength);
          expect(p.tsSec).toBe(1_600_000_000 + i);
          expect(p.tsUsec).toBe(precision === 'nano' ? 123_456 : 654_321);
          expect(p.tsNsec).toBe(precision === 'nano' ? 123_456_789 : 654_321_000);
        });
      });
    }
  }

  it('reads an empty capture (header only)', () => {
    expect(parsePcap(writePcap([])).packets).toEqual([]);
  });

  it('masks the FCS bits out of the link type', () => {
    const bytes = writePcap([], { linkType: 1 });
    new DataView(bytes.buffer).setUint32(20, 0x1000_0000 | 1, true);
    expect(parsePcap(bytes).linkType).toBe(1);
  });

  it('rejects a file that is not pcap, naming pcapng', () => {
    expect(
      pcapError(() => parsePcap(Uint8Array.of(0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 0), 'x.pcapng')),
    ).toMatchObject({
      code: 'PCAP_BAD_MAGIC',
      message:
        'read pcap file "x.pcapng": pcapng files are not supported; convert with "editcap -F pcap"',
    });
    expect(
      pcapError(() => parsePcap(new TextEncoder().encode('hello, world, not a capture'))),
    ).toMatchObject({
      code: 'PCAP_BAD_MAGIC',
      message: 'read pcap data: magic number 0x68656c6c is not a pcap file',
    });
  });

  it('rejects truncated files with the offset where they end', () => {
    const good = writePcap(packets.slice(0, 3));
    expect(pcapError(() => parsePcap(good.slice(0, 2)))).toMatchObject({
      code: 'PCAP_TRUNCATED',
      offset: 0,
    });
    expect(pcapError(() => parsePcap(good.slice(0, 20)))).toMatchObject({
      code: 'PCAP_TRUNCATED',
      offset: 20,
    });
    expect(pcapError(() => parsePcap(good.slice(0, 30)))).toMatchObject({
      code: 'PCAP_TRUNCATED',
      offset: 24,
      message: 'read pcap data: record 0 header at byte 24 is cut short (6 of 16 bytes)',
    });
    const cut = pcapError(() => parsePcap(good.slice(0, good.length - 1)));
    expect(cut.code).toBe('PCAP_TRUNCATED');
    expect(cut.message).toMatch(/^read pcap data: record 2 at byte \d+ is cut short/);
  });

  it('rejects an unsupported version and an impossible captured length', () => {
    const v = writePcap([]);
    new DataView(v.buffer).setUint16(4, 3, true);
    expect(pcapError(() => parsePcap(v))).toMatchObject({
      code: 'PCAP_BAD_VERSION',
      message: 'read pcap data: version 3.4 is not supported (expected 2.x)',
    });
    const big = writePcap([{ data: new Uint8Array(4) }]);
    new DataView(big.buffer).setUint32(24 + 8, 0x7fff_ffff, true);
    expect(pcapError(() => parsePcap(big))).toMatchObject({ code: 'PCAP_BAD_RECORD', offset: 24 });
  });

  it('reports a missing file as PCAP_READ with the cause', async () => {
    const error = await readPcap(join(dir, 'missing.pcap')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PcapFormatError);
    expect(error).toMatchObject({ code: 'PCAP_READ' });
    expect((error as Error).cause).toMatchObject({ code: 'ENOENT' });
  });

  it('writes files that libpcap reads packet for packet', async () => {
    const path = join(dir, 'all.pcap');
    const all = generatePackets();
    await writeFile(path, writePcap(all));
    const [r] = await runOracle(path, ['']);
    expect(r).toMatchObject({ ok: true, verdicts: '1'.repeat(all.length) });
    const [big] = await runOracle(path, ['len > 1514']);
    expect(big!.ok && big.verdicts).toBe(
      all.map((p) => (p.wireLength > 1514 ? '1' : '0')).join(''),
    );
    const [cap] = await runOracle(path, ['ether[13] = ether[13]']);
    expect(cap!.ok && cap.verdicts).toBe(
      all.map((p) => (p.data.length >= 14 ? '1' : '0')).join(''),
    );
  });

  it('writes files that tcpdump reads, in both byte orders', async (ctx) => {
    requireTcpdump(ctx);
    for (const byteOrder of ['le', 'be'] as const) {
      const path = join(dir, `tcpdump-${byteOrder}.pcap`);
      await writeFile(
        path,
        writePcap(packets, { byteOrder, precision: byteOrder === 'be' ? 'nano' : 'micro' }),
      );
      const { stdout, stderr } = await run(
        'tcpdump',
        ['-nn', '-r', path, '-c', '1000', '-q', '-t'],
        { maxBuffer: 1 << 26 },
      );
      expect(stderr).toContain('link-type EN10MB (Ethernet)');
      expect(stdout.split('\n').filter((l) => l !== '').length).toBeGreaterThanOrEqual(
        packets.length,
      );
    }
  });
});
