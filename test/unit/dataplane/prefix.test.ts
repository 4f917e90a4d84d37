// Prefix parsing and formatting (controller/dataplane/model.ts): IPv4, IPv6 with "::" and dotted tails, host bits, lengths.
import { describe, expect, it } from 'vitest';
import { PrefixInvalidError } from '../../../controller/dataplane/errors.js';
import {
  addressInPrefix,
  formatPrefix,
  parsePrefix,
  prefixContains,
} from '../../../controller/dataplane/model.js';

function prefixError(text: string, what?: string): PrefixInvalidError {
  try {
    parsePrefix(text, what);
  } catch (err: unknown) {
    if (err instanceof PrefixInvalidError) return err;
    throw err;
  }
  throw new Error(`expected "${text}" to be rejected`);
}

describe('parsePrefix', () => {
  it.each([
    ['10.0.0.0/8', 4, [10, 0, 0, 0], 8],
    ['192.0.2.1', 4, [192, 0, 2, 1], 32],
    ['0.0.0.0/0', 4, [0, 0, 0, 0], 0],
    ['255.255.255.255/32', 4, [255, 255, 255, 255], 32],
  ])('parses the IPv4 prefix %s', (text, family, bytes, len) => {
    const p = parsePrefix(text);
    expect(p.family).toBe(family);
    expect([...p.addr]).toEqual(bytes);
    expect(p.len).toBe(len);
  });

  it.each([
    ['2001:db8::/32', '2001:db8::/32'],
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1/128'],
    ['::/0', '::/0'],
    ['::', '::/128'],
    ['::1', '::1/128'],
    ['1::', '1::/128'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8/128'],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3/128'],
    ['2001:db8:0:1:0:0:0:0/64', '2001:db8:0:1::/64'],
    ['2001:db8::1:0:0:1', '2001:db8::1:0:0:1/128'],
    ['1:0:2:3:4:5:6:7', '1:0:2:3:4:5:6:7/128'],
    ['::ffff:192.0.2.1', '::ffff:192.0.2.1/128'],
    ['::ffff:0:0/96', '::ffff:0.0.0.0/96'],
    ['::192.0.2.1', '::c000:201/128'],
    ['64:ff9b::192.0.2.33', '64:ff9b::c000:221/128'],
    ['1:2:3:4:5:6:192.0.2.1', '1:2:3:4:5:6:c000:201/128'],
    ['0001:0db8::', '1:db8::/128'],
  ])('parses the IPv6 prefix %s and formats it as %s (RFC 5952)', (text, canonical) => {
    const p = parsePrefix(text);
    expect(p.family).toBe(6);
    expect(p.addr).toHaveLength(16);
    expect(formatPrefix(p)).toBe(canonical);
    expect(formatPrefix(parsePrefix(formatPrefix(p)))).toBe(canonical);
  });

  it('reads the dotted tail into the last four bytes', () => {
    expect([...parsePrefix('::ffff:192.0.2.1').addr]).toEqual([
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1,
    ]);
  });

  it('rejects host bits set past the length and names the canonical form', () => {
    const e = prefixError('10.0.0.1/8');
    expect(e.message).toMatchInlineSnapshot(
      `"prefix "10.0.0.1/8" has host bits set: did you mean "10.0.0.0/8"?"`,
    );
    expect(e.code).toBe('PREFIX_INVALID');
    expect(e.canonical).toBe('10.0.0.0/8');
    expect(prefixError('2001:db8::1/32').message).toMatchInlineSnapshot(
      `"prefix "2001:db8::1/32" has host bits set: did you mean "2001:db8::/32"?"`,
    );
    expect(prefixError('192.0.2.129/25').canonical).toBe('192.0.2.128/25');
    expect(prefixError('1.2.3.4/0').canonical).toBe('0.0.0.0/0');
  });

  it.each([
    '10.0.0.0/33',
    '2001:db8::/129',
    '10.0.0.0/',
    '10.0.0.0/08',
    '10.0.0.0/-1',
    '10.0.0.0/8/8',
    '10.0.0.0/ 8',
  ])('rejects the bad length in %s', (text) => {
    expect(prefixError(text).message).toMatch(
      /has a bad length: expected 0 to (32|128) after "\/"$/,
    );
  });

  it.each([
    '10.0.0',
    '10.0.0.256',
    '010.0.0.1',
    ' 10.0.0.1',
    '10.0.0.1 ',
    '1::2::3',
    '1:2:3:4:5:6:7:8:9',
    '::1.2.3.04',
    'example.com',
    '',
    '/8',
  ])('rejects %j as no address', (text) => {
    expect(prefixError(text).message).toContain('is not an IPv4 or IPv6 prefix');
  });

  it('explains a zone index and a non-string', () => {
    expect(prefixError('fe80::1%eth0').message).toMatchInlineSnapshot(
      `"prefix "fe80::1%eth0" has a zone index: prefixes have none"`,
    );
    expect(prefixError(42 as unknown as string).message).toMatchInlineSnapshot(
      `"prefix 42 is not a string: expected a prefix such as "192.0.2.0/24" or "2001:db8::/32""`,
    );
  });

  it('opens the message with what the caller says the prefix is', () => {
    expect(prefixError('10.0.0.1/8', 'set "blocklist" prefix #3').message).toMatchInlineSnapshot(
      `"set "blocklist" prefix #3: prefix "10.0.0.1/8" has host bits set: did you mean "10.0.0.0/8"?"`,
    );
  });
});

describe('prefix containment', () => {
  it('holds for equal and longer prefixes of the same family only', () => {
    const p8 = parsePrefix('10.0.0.0/8');
    expect(prefixContains(p8, parsePrefix('10.1.0.0/16'))).toBe(true);
    expect(prefixContains(p8, p8)).toBe(true);
    expect(prefixContains(parsePrefix('10.1.0.0/16'), p8)).toBe(false);
    expect(prefixContains(parsePrefix('0.0.0.0/0'), parsePrefix('::/0'))).toBe(false);
    expect(prefixContains(parsePrefix('192.0.2.128/25'), parsePrefix('192.0.2.127'))).toBe(false);
    expect(prefixContains(parsePrefix('192.0.2.128/25'), parsePrefix('192.0.2.255'))).toBe(true);
  });

  it('compares partial bytes by their leading bits', () => {
    const p = parsePrefix('2001:db8:8000::/33');
    expect(addressInPrefix(p, 6, parsePrefix('2001:db8:ffff::1').addr)).toBe(true);
    expect(addressInPrefix(p, 6, parsePrefix('2001:db8:7fff::1').addr)).toBe(false);
    expect(addressInPrefix(p, 4, parsePrefix('32.1.13.184').addr)).toBe(false);
  });
});
