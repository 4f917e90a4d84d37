// Bulk prefix parsing: the fast paths agree with the full parser and keep its errors.
import { describe, expect, it } from 'vitest';

import { formatKey } from '../../../controller/dataplane/prefix-index.js';
import { prefixKeys } from '../../../controller/dataplane/prefix-keys.js';

const text = (keys: { v4: Float64Array; v6: string[] }): string[] => [
  ...[...keys.v4].map(formatKey),
  ...keys.v6.map(formatKey),
];

describe('bulk prefix parsing', () => {
  it('sorts both families apart and drops repeats', () => {
    const keys = prefixKeys(
      ['192.0.2.0/24', '2001:db8:bad::/48', '10.0.0.0/8', '192.0.2.0/24', '10.1.2.3', '::/0'],
      'mixed',
    );
    expect(text(keys)).toEqual([
      '10.0.0.0/8',
      '10.1.2.3/32',
      '192.0.2.0/24',
      '0:0:0:0:0:0:0:0/0',
      '2001:db8:bad:0:0:0:0:0/48',
    ]);
  });

  it('reads the forms only the full parser knows', () => {
    expect(text(prefixKeys(['::ffff:192.0.2.1/128', '2001:DB8::1'], 's'))).toEqual([
      '0:0:0:0:0:ffff:c000:201/128',
      '2001:db8:0:0:0:0:0:1/128',
    ]);
  });

  it('names the set and the entry of a prefix with host bits set', () => {
    expect(() =>
      prefixKeys(['10.0.0.0/8', '10.0.0.1/8'], 'blocklist'),
    ).toThrowErrorMatchingInlineSnapshot(
      `[PrefixInvalidError: set "blocklist": prefixes[1]: prefix "10.0.0.1/8" has host bits set: did you mean "10.0.0.0/8"?]`,
    );
    expect(() => prefixKeys(['2001:db8::1/32'], 'v6')).toThrow(/did you mean "2001:db8::\/32"/);
    expect(() => prefixKeys(['300.0.0.0/8'], 'x')).toThrow(/prefixes\[0\]/);
  });

  it('reads a million IPv4 prefixes into one sorted array', () => {
    const list: string[] = [];
    for (let i = 0; i < 1_000_000; i++)
      list.push(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    const keys = prefixKeys(list, 'big');
    expect(keys.v4.length).toBe(1_000_000);
    for (let i = 1; i < keys.v4.length; i++)
      if (keys.v4[i - 1] >= keys.v4[i]) throw new Error(`unsorted at ${i}`);
  });
});
