// struct sl_pfx4_cover: the /16s a dimension's IPv4 rule prefixes reach, which the pipeline reads
// before its trie (an address outside all of them takes the /0's class).
import { describe, expect, it } from 'vitest';

import { SIZE, encodePfx4Covers } from '../../../controller/dataplane/abi.js';

const BITS = SIZE.pfx4Cover - 8;

function prefix(
  text: string,
  cls = 7,
  dim = 0,
): { dim: number; addr: Uint8Array; len: number; cls: number } {
  const [addr, len] = text.split('/');
  return { dim, addr: Uint8Array.from(addr.split('.').map(Number)), len: Number(len), cls };
}

/** The SRC dimension's cover of these prefixes. */
function encodePfx4Cover(prefixes: ReturnType<typeof prefix>[]): Buffer {
  return encodePfx4Covers(prefixes)[0];
}

/** The /16s whose bit is set, as "a.b". */
function covered(cover: Buffer): string[] {
  const out: string[] = [];
  for (let h = 0; h < 65536; h++)
    if (cover[h >> 3] & (1 << (h & 7))) out.push(`${h >> 8}.${h & 255}`);
  return out;
}

describe('the /16 cover of IPv4 rule prefixes', () => {
  it('marks the one /16 of a longer prefix, and each /16 of a shorter one', () => {
    const cover = encodePfx4Cover([
      prefix('0.0.0.0/0', 3),
      prefix('192.0.2.0/24'),
      prefix('198.51.100.7/32'),
      prefix('10.2.0.0/15'),
    ]);
    expect(covered(cover)).toEqual(['10.2', '10.3', '192.0', '198.51']);
  });

  it('marks the 256 /16s of a /8, and the 32,768 of a /1', () => {
    expect(covered(encodePfx4Cover([prefix('10.0.0.0/8')]))).toHaveLength(256);
    const half = covered(encodePfx4Cover([prefix('128.0.0.0/1')]));
    expect([half.length, half[0], half.at(-1)]).toEqual([32768, '128.0', '255.255']);
  });

  it('keeps each dimension to its own prefixes', () => {
    const [src, dst] = encodePfx4Covers([
      prefix('0.0.0.0/0', 1, 0),
      prefix('0.0.0.0/0', 2, 1),
      prefix('192.0.2.0/24', 7, 0),
      prefix('10.0.0.0/16', 8, 1),
    ]);
    expect([covered(src), covered(dst)]).toEqual([['192.0'], ['10.0']]);
    expect([src.readUInt32LE(BITS), dst.readUInt32LE(BITS)]).toEqual([1, 2]);
  });

  it("keeps the /0's class apart and marks itself written", () => {
    const cover = encodePfx4Cover([prefix('0.0.0.0/0', 41), prefix('192.0.2.0/24', 9)]);
    expect([cover.readUInt32LE(BITS), cover.readUInt32LE(BITS + 4)]).toEqual([41, 1]);
    expect(covered(encodePfx4Cover([prefix('0.0.0.0/0', 41)]))).toEqual([]);
  });
});
