// Whole-document validation (controller/config.ts): shape errors and the data plane's own errors, each naming the JSON Pointer, the rule and the field.
import { describe, expect, it } from 'vitest';

import {
  diffConfig,
  normalizeDocument,
  toDataplaneSpec,
  validateConfig,
} from '../../../controller/config.js';
import type { ConfigDoc, NormalConfig } from '../../../controller/document.js';
import { ConfigInvalidError } from '../../../controller/errors.js';

const empty: NormalConfig = { version: 1, attachments: [], sets: [], rules: [] };

/** The ConfigInvalidError a document gets: normalised, then validated. */
function reject(doc: unknown): ConfigInvalidError {
  try {
    validateConfig(normalizeDocument(doc, empty, 1).config);
  } catch (error: unknown) {
    if (error instanceof ConfigInvalidError) return error;
    throw error;
  }
  throw new Error('the document was accepted');
}

const base = {
  attachments: [{ device: 'veth1' }],
  sets: [{ name: 'blocklist', prefixes: ['10.0.0.0/8'] }],
};

describe('document validation', () => {
  it('names the pointer of a value out of range, with the rule id', () => {
    const e = reject({
      ...base,
      rules: [{ id: 'dns', device: 'veth1', dport: 70000, action: 'drop' }],
    });
    expect(e.pointer).toBe('/rules/0/dport');
    expect(e.message).toMatchInlineSnapshot(
      `"/rules/0/dport (rule "dns"): 70000 must be <= 65535, or must be string"`,
    );
  });

  it('lists the allowed values of an enumeration', () => {
    const e = reject({ ...base, rules: [{ device: 'veth1', action: 'nuke' }] });
    expect(e.pointer).toBe('/rules/0/action');
    expect(e.message).toMatchInlineSnapshot(
      `"/rules/0/action: "nuke" must be one of "drop", "pass", "count", "ratelimit", "redirect""`,
    );
  });

  it('points at an unknown field and at a missing one', () => {
    const unknown = reject({ rules: [{ device: 'veth1', action: 'drop', dprot: 53 }] });
    expect(unknown.pointer).toBe('/rules/0/dprot');
    expect(unknown.message).toMatchInlineSnapshot(`"/rules/0/dprot: 53 is not a known field"`);
    const missing = reject({ attachments: [{ hook: 'xdp' }] });
    expect(missing.pointer).toBe('/attachments/0/device');
    expect(missing.message).toMatchInlineSnapshot(`"/attachments/0/device: is required"`);
  });

  it('maps a data-plane rule error back to the document rule and field', () => {
    const e = reject({
      attachments: [{ device: 'veth1' }, { device: 'veth2' }],
      rules: [
        { id: 'a', device: 'veth2', action: 'drop' },
        { id: 'limit', device: 'veth1', proto: 'udp', action: 'drop', rate: '10pps' },
      ],
    });
    expect(e.pointer).toBe('/rules/1/rate');
    expect(e.message).toMatchInlineSnapshot(
      `"/rules/1/rate: attachment "veth1@xdp": rule "limit": rate is only for action "ratelimit", not "drop""`,
    );
    expect(e.cause).toMatchObject({ code: 'RULE_INVALID', ruleIndex: 0, field: 'rate' });
  });

  it('names an unknown set and a bad prefix in a rule', () => {
    const set = reject({
      ...base,
      rules: [{ id: 'x', device: 'veth1', srcSet: 'nope', action: 'drop' }],
    });
    expect(set.pointer).toBe('/rules/0/srcSet');
    expect(set.message).toMatchInlineSnapshot(
      `"/rules/0/srcSet: attachment "veth1@xdp": rule "x": srcSet "nope" names no prefix set"`,
    );
    const prefix = reject({
      ...base,
      rules: [{ id: 'y', device: 'veth1', src: '10.0.0.1/8', action: 'drop' }],
    });
    expect(prefix.pointer).toBe('/rules/0/src');
    expect(prefix.message).toMatchInlineSnapshot(
      `"/rules/0/src: attachment "veth1@xdp": rule "y": src "10.0.0.1/8" has host bits set: did you mean "10.0.0.0/8"?"`,
    );
  });

  it('names the entry of a bad prefix in a set', () => {
    const e = reject({ sets: [{ name: 'b', prefixes: ['10.0.0.0/8', '192.0.2.300'] }] });
    expect(e.pointer).toBe('/sets/0/prefixes/1');
    expect(e.message).toMatchInlineSnapshot(
      `"/sets/0/prefixes/1: set "b": prefixes[1]: prefix "192.0.2.300" is not an IPv4 or IPv6 prefix: expected an address with an optional length, such as "192.0.2.0/24" or "2001:db8::/32""`,
    );
  });

  it('refuses repeated attachments, sets and rule ids', () => {
    expect(
      reject({ attachments: [{ device: 'a' }, { device: 'a', hook: 'xdp' }] }).message,
    ).toMatchInlineSnapshot(
      `"/attachments/1: attachment "a@xdp" is also /attachments/0: one per device and hook"`,
    );
    expect(
      reject({
        sets: [
          { name: 's', prefixes: [] },
          { name: 's', prefixes: [] },
        ],
      }).pointer,
    ).toBe('/sets/1/name');
    expect(
      reject({
        rules: [
          { id: 'a', device: 'x', action: 'drop' },
          { id: 'a', device: 'y', action: 'pass' },
        ],
      }).message,
    ).toMatchInlineSnapshot(
      `"/rules/1/id (rule "a"): is also the id of /rules/0: rule ids are unique"`,
    );
  });

  it('gives rules without an id a counter id, and the same id again for the same rule', () => {
    const doc: ConfigDoc = {
      attachments: [{ device: 'veth1' }],
      rules: [
        { device: 'veth1', proto: 'udp', dport: 53, action: 'drop' },
        { id: 'mine', device: 'veth1', action: 'pass' },
        { device: 'veth1', proto: 'tcp', action: 'count' },
      ],
    };
    const first = normalizeDocument(doc, empty, 5);
    expect(first.config.rules.map((r) => r.id)).toEqual(['r5', 'mine', 'r6']);
    expect(first.nextRuleId).toBe(7);
    const again = normalizeDocument(doc, first.config, first.nextRuleId);
    expect(again.config.rules.map((r) => r.id)).toEqual(['r5', 'mine', 'r6']);
    expect(diffConfig(first.config, again.config)).toEqual({
      attachments: { added: [], removed: [], changed: [] },
      sets: { added: [], removed: [], changed: [] },
      rules: { added: [], removed: [], changed: [] },
    });
  });

  it('diffs sets by prefixes added and removed', () => {
    const before = normalizeDocument(
      { sets: [{ name: 's', prefixes: ['10.0.0.0/8', '192.0.2.0/24'] }] },
      empty,
      1,
    ).config;
    const after = normalizeDocument(
      { sets: [{ name: 's', prefixes: ['10.0.0.0/8', '198.51.100.0/24', '203.0.113.0/24'] }] },
      empty,
      1,
    ).config;
    expect(diffConfig(before, after).sets).toEqual({
      added: [],
      removed: [],
      changed: [{ name: 's', added: 2, removed: 1 }],
    });
  });
});

describe('documents grown by rule adds', () => {
  const attachments: NormalConfig['attachments'] = [
    { device: 'veth1' },
    { device: 'veth2', defaultAction: 'drop' },
    { device: 'veth1', hook: 'tc-ingress' },
  ];
  const rule = (i: number): NormalConfig['rules'][number] => ({
    id: `r${i}`,
    device: i % 3 === 0 ? 'veth2' : i % 5 === 0 ? 'veth9' : 'veth1',
    ...(i % 7 === 0 ? { hook: 'tc-ingress' as const } : {}),
    dport: 1000 + i,
    ...(i % 11 === 0 ? { action: 'redirect', to: i % 2 ? 'veth2' : 'veth3' } : { action: 'drop' }),
  });
  /** The devices that exist: veth3, a redirect target, does not. */
  const devices = new Set(['veth1', 'veth2', 'veth9']);

  it('split into the same rule sets as a document written whole, step after step', () => {
    // Each step appends to the last document's rules (as addRule does); the fresh copy shares
    // no object with it, so nothing is derived.
    let config: NormalConfig = { version: 1, attachments, sets: [], rules: [] };
    let previous = config;
    for (let n = 1; n <= 40; n += 1 + (n % 4)) {
      config = {
        ...config,
        rules: [
          ...config.rules,
          ...Array.from({ length: n % 4 || 1 }, (_, k) => rule(config.rules.length + k)),
        ],
      };
      validateConfig(config);
      expect(toDataplaneSpec(config, devices)).toEqual(
        toDataplaneSpec(structuredClone(config), devices),
      );
      // The document it grew from is as it was (a rollback reconciles it again).
      expect(toDataplaneSpec(previous, devices)).toEqual(
        toDataplaneSpec(structuredClone(previous), devices),
      );
      previous = config;
    }
  });

  it('still names the document index of a bad appended rule', () => {
    let config: NormalConfig = { version: 1, attachments, sets: [], rules: [rule(1), rule(2)] };
    validateConfig(config);
    config = {
      ...config,
      rules: [
        ...config.rules,
        { id: 'bad', device: 'veth1', dport: 70000, action: 'drop' } as never,
      ],
    };
    expect(() => validateConfig(config)).toThrow(ConfigInvalidError);
    try {
      validateConfig(config);
    } catch (error: unknown) {
      expect((error as ConfigInvalidError).pointer).toBe('/rules/2/dport');
    }
  });
});
