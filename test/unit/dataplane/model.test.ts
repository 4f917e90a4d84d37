// Rule and set validation (controller/dataplane/model.ts): normalised forms, defaults, and every error naming the rule and field.
import { describe, expect, it } from 'vitest';
import { SL_MAX_SETS } from '../../../controller/dataplane/abi.js';
import {
  DataplaneError,
  FilterInvalidError,
  LimitExceededError,
} from '../../../controller/dataplane/errors.js';
import {
  assignSetBits,
  compileSetEntries,
  formatPrefix,
  ruleSetActions,
  validateRuleSet,
  validateSet,
  validateSets,
  type RuleSpec,
  type ValidationContext,
} from '../../../controller/dataplane/model.js';

const context: ValidationContext = {
  sets: new Set(['blocklist', 'allow.v6']),
  devices: new Map([
    ['veth1', 7],
    ['veth2', 8],
  ]),
};

function one(rule: Record<string, unknown>) {
  return validateRuleSet({ rules: [rule as unknown as RuleSpec] }, context)[0];
}

function reject(rules: unknown[] | Record<string, unknown>, extra: Record<string, unknown> = {}) {
  const spec = Array.isArray(rules) ? { rules, ...extra } : { rules: [rules], ...extra };
  try {
    validateRuleSet(spec as never, context);
  } catch (err: unknown) {
    if (err instanceof DataplaneError) return err;
    throw err;
  }
  throw new Error('expected the rule set to be rejected');
}

function message(rule: Record<string, unknown>): string {
  return reject(rule).message;
}

describe('validateRuleSet: normalised rules', () => {
  it('parses every field into the kernel-facing form', () => {
    const r = one({
      id: 'web',
      priority: 10,
      src: '192.0.2.0/24',
      dst: '198.51.100.7',
      srcSet: 'blocklist',
      proto: 'tcp',
      sport: '1024-65535',
      dport: 443,
      vlan: 100,
      tcpFlags: 'syn,!ack',
      action: 'drop',
    });
    expect(r).toMatchObject({
      index: 0,
      id: 'web',
      idGiven: true,
      priority: 10,
      srcSet: 'blocklist',
      proto: 6,
      sport: [1024, 65535],
      dport: [443, 443],
      vlan: 100,
      tcpFlags: { set: 0x02, unset: 0x10 },
      action: 'drop',
    });
    expect(formatPrefix(r.src!)).toBe('192.0.2.0/24');
    expect(formatPrefix(r.dst!)).toBe('198.51.100.7/32');
  });

  it('takes ports as numbers, pairs and text', () => {
    expect(one({ dport: [1, 2], action: 'pass' }).dport).toEqual([1, 2]);
    expect(one({ dport: '0', action: 'pass' }).dport).toEqual([0, 0]);
    expect(one({ dport: '0-65535', action: 'pass' }).dport).toEqual([0, 65535]);
    expect(one({ sport: 65535, proto: 'sctp', action: 'pass' }).sport).toEqual([65535, 65535]);
  });

  it('takes ICMP by family from the protocol', () => {
    expect(one({ proto: 'icmp', icmp: { type: 8 }, action: 'drop' }).icmp).toEqual({
      family: 4,
      type: 8,
    });
    expect(one({ proto: 58, icmp: { type: 135, code: 0 }, action: 'drop' })).toMatchObject({
      proto: 58,
      icmp: { family: 6, type: 135, code: 0 },
    });
  });

  it('takes TCP flags as names in any case or as masks', () => {
    expect(one({ tcpFlags: ' SYN , !Ack,!rst', action: 'drop' }).tcpFlags).toEqual({
      set: 0x02,
      unset: 0x14,
    });
    expect(one({ tcpFlags: { set: 0x12 }, action: 'drop' }).tcpFlags).toEqual({
      set: 0x12,
      unset: 0,
    });
    expect(one({ tcpFlags: 'fin,syn,rst,psh,ack,urg,ece,cwr', action: 'drop' }).tcpFlags).toEqual({
      set: 0xff,
      unset: 0,
    });
  });

  it.each([
    [1000, { rate: 1000, burst: 100, unit: 'packets' }],
    ['5pps', { rate: 5, burst: 1, unit: 'packets' }],
    ['10kpps', { rate: 10000, burst: 1000, unit: 'packets' }],
    ['1.5Mpps', { rate: 1500000, burst: 150000, unit: 'packets' }],
    ['10mbit', { rate: 10e6, burst: 1e6, unit: 'bits' }],
    ['10Mbit', { rate: 10e6, burst: 1e6, unit: 'bits' }],
    ['2gbit', { rate: 2e9, burst: 2e8, unit: 'bits' }],
    ['500kbit', { rate: 500e3, burst: 65536 * 8, unit: 'bits' }],
    ['1kibit', { rate: 1024, burst: 65536 * 8, unit: 'bits' }],
    ['64kbps', { rate: 512000, burst: 65536 * 8, unit: 'bits' }],
    ['1mbps', { rate: 8e6, burst: 8e5, unit: 'bits' }],
    ['100bps', { rate: 800, burst: 65536 * 8, unit: 'bits' }],
  ])('reads the rate %j with its default burst', (rate, limit) => {
    expect(one({ action: 'ratelimit', rate }).limit).toEqual({ ...limit, perSource: false });
  });

  it('takes burst in packets for packet rates and in bytes for bit rates', () => {
    expect(one({ action: 'ratelimit', rate: '100pps', burst: 7 }).limit!.burst).toBe(7);
    expect(one({ action: 'ratelimit', rate: '1mbit', burst: 1500 }).limit!.burst).toBe(12000);
    expect(one({ action: 'ratelimit', rate: 10, perSource: true }).limit!.perSource).toBe(true);
  });

  it('gives redirects the ifindex the context knows and parses the next hop', () => {
    const r = one({ action: 'redirect', to: 'veth2', via: '02:00:00:aa:bb:cc' });
    expect(r.redirect).toEqual({
      to: 'veth2',
      ifindex: 8,
      via: Uint8Array.of(2, 0, 0, 0xaa, 0xbb, 0xcc),
    });
    const noDevices = validateRuleSet(
      { rules: [{ action: 'redirect', to: 'anything0' }] },
      { sets: new Set() },
    );
    expect(noDevices[0].redirect).toEqual({ to: 'anything0' });
  });

  it('orders by priority, then as given, and defaults the priority to 1000', () => {
    const rules = validateRuleSet(
      {
        rules: [
          { id: 'a', action: 'pass' },
          { id: 'b', priority: 5, action: 'pass' },
          { id: 'c', priority: 1000, action: 'pass' },
          { id: 'd', priority: 5, action: 'pass' },
          { id: 'e', priority: 0, action: 'pass' },
        ],
      },
      context,
    );
    expect(rules.map((r) => r.id)).toEqual(['e', 'b', 'd', 'a', 'c']);
    expect(rules.map((r) => r.index)).toEqual([4, 1, 3, 0, 2]);
  });

  it('generates ids from the fields, stable when other rules come and go', () => {
    const a = { src: '10.0.0.0/8', action: 'drop' } as const;
    const b = { dport: 53, action: 'pass' } as const;
    const first = validateRuleSet({ rules: [a, b, a] }, context);
    const second = validateRuleSet({ rules: [b, { ...a, priority: 3 }] }, context);
    expect(first[0].id).toMatch(/^~[0-9a-f]{14}$/);
    expect(first[0].idGiven).toBe(false);
    expect(first[2].id).toBe(`${first[0].id}.2`);
    expect(second.find((r) => r.index === 1)!.id).toBe(first[0].id);
    expect(second.find((r) => r.index === 0)!.id).toBe(first[1].id);
  });

  it('defaults the default action to pass and malformed packets to drop', () => {
    expect(ruleSetActions({})).toEqual({ defaultAction: 'pass', malformed: 'drop' });
    expect(ruleSetActions({ defaultAction: 'drop', malformed: 'pass' })).toEqual({
      defaultAction: 'drop',
      malformed: 'pass',
    });
  });
});

describe('validateRuleSet: errors', () => {
  it('names the rule by id, else by index, and the field', () => {
    const e = reject([{ action: 'pass' }, { id: 'web', action: 'pass', dport: 'http' }]);
    expect(e).toMatchObject({ code: 'RULE_INVALID', ruleIndex: 1, ruleId: 'web', field: 'dport' });
    expect(e.message).toMatchInlineSnapshot(
      `"rule "web": dport "http" is not a port or range: expected a port from 0 to 65535, a range "1024-65535" or [1024, 65535]"`,
    );
    const f = reject([{ action: 'pass' }, { action: 'pass', vlan: 4096 }]);
    expect(f).toMatchObject({ code: 'RULE_INVALID', ruleIndex: 1, field: 'vlan' });
    expect(f.message).toMatchInlineSnapshot(
      `"rule #1: vlan 4096 is not a VLAN id: expected an integer from 0 to 4095"`,
    );
  });

  it('explains missing and unknown actions and fields', () => {
    expect(message({ src: '10.0.0.0/8' })).toMatchInlineSnapshot(
      `"rule #0: action is missing: expected one of "drop", "pass", "count", "ratelimit", "redirect""`,
    );
    expect(message({ action: 'reject' })).toMatchInlineSnapshot(
      `"rule #0: action "reject" is not an action: expected one of "drop", "pass", "count", "ratelimit", "redirect""`,
    );
    expect(message({ action: 'drop', dprot: 80 })).toMatchInlineSnapshot(
      `"rule #0: dprot is not a rule field: expected one of id, priority, src, dst, srcSet, dstSet, proto, sport, dport, icmp, vlan, tcpFlags, filter, action, rate, burst, perSource, to, via"`,
    );
    expect(message({ action: 'drop', vlan: null })).toMatchInlineSnapshot(
      `"rule #0: vlan is null: give a value or leave the field out"`,
    );
  });

  it('explains bad ids and priorities', () => {
    expect(message({ id: 'has space', action: 'drop' })).toMatchInlineSnapshot(
      `"rule #0: id "has space" is not a rule id: expected 1 to 64 letters, digits, "_", "." or "-""`,
    );
    expect(
      reject([
        { id: 'x', action: 'drop' },
        { id: 'x', action: 'pass' },
      ]).message,
    ).toMatchInlineSnapshot(`"rule "x": id is also rule #0's: ids are unique in a rule set"`);
    expect(message({ priority: -1, action: 'drop' })).toMatchInlineSnapshot(
      `"rule #0: priority -1 is out of range: expected an integer from 0 to 2147483647"`,
    );
    expect(message({ priority: 1.5, action: 'drop' })).toMatchInlineSnapshot(
      `"rule #0: priority 1.5 is out of range: expected an integer from 0 to 2147483647"`,
    );
  });

  it('explains bad prefixes with the canonical form', () => {
    const e = reject({ id: 'r1', src: '10.0.0.1/8', action: 'drop' });
    expect(e).toMatchObject({ code: 'PREFIX_INVALID', field: 'src', ruleId: 'r1' });
    expect(e.message).toMatchInlineSnapshot(
      `"rule "r1": src "10.0.0.1/8" has host bits set: did you mean "10.0.0.0/8"?"`,
    );
    expect(message({ dst: '2001:db8::/200', action: 'drop' })).toMatchInlineSnapshot(
      `"rule #0: dst "2001:db8::/200" has a bad length: expected 0 to 128 after "/""`,
    );
  });

  it('rejects mixed families', () => {
    expect(
      message({ src: '10.0.0.0/8', dst: '2001:db8::/32', action: 'drop' }),
    ).toMatchInlineSnapshot(
      `"rule #0: dst "2001:db8::/32" is IPv6 but src "10.0.0.0/8" is IPv4: a packet has one family"`,
    );
    expect(message({ src: '2001:db8::/32', proto: 'icmp', action: 'drop' })).toMatchInlineSnapshot(
      `"rule #0: proto "icmp" is ICMP for IPv4 but src "2001:db8::/32" is IPv6: use "icmpv6""`,
    );
    expect(message({ dst: '10.0.0.0/8', proto: 58, action: 'drop' })).toMatchInlineSnapshot(
      `"rule #0: proto 58 is ICMPv6 but dst "10.0.0.0/8" is IPv4: use "icmp""`,
    );
  });

  it('rejects unknown sets with SET_NOT_FOUND', () => {
    const e = reject({ dstSet: 'nosuch', action: 'drop' });
    expect(e).toMatchObject({ code: 'SET_NOT_FOUND', set: 'nosuch', field: 'dstSet' });
    expect(e.message).toMatchInlineSnapshot(`"rule #0: dstSet "nosuch" names no prefix set"`);
    expect(message({ srcSet: 'bad name', action: 'drop' })).toMatchInlineSnapshot(
      `"rule #0: srcSet "bad name" is not a set name: expected 1 to 64 letters, digits, "_", "." or "-""`,
    );
  });

  it('explains protocols, ports, ICMP and flags that do not fit together', () => {
    expect(message({ proto: 'gre', action: 'drop' })).toMatchInlineSnapshot(
      `"rule #0: proto "gre" is not a protocol: expected "tcp", "udp", "icmp", "icmpv6", "sctp" or a number from 0 to 255"`,
    );
    expect(message({ proto: 256, action: 'drop' })).toMatchInlineSnapshot(
      `"rule #0: proto 256 is not a protocol: expected "tcp", "udp", "icmp", "icmpv6", "sctp" or a number from 0 to 255"`,
    );
    expect(message({ proto: 'icmp', dport: 80, action: 'drop' })).toMatchInlineSnapshot(
      `"rule #0: dport needs proto "tcp", "udp" or "sctp" (or none, for all three), not "icmp""`,
    );
    expect(message({ dport: '90-80', action: 'drop' })).toMatchInlineSnapshot(
      `"rule #0: dport "90-80" has its low port above its high port: did you mean "80-90"?"`,
    );
    expect(message({ dport: [0, 65536], action: 'drop' })).toMatchInlineSnapshot(
      `"rule #0: dport [0,65536] is out of range: expected a port from 0 to 65535, a range "1024-65535" or [1024, 65535]"`,
    );
    expect(message({ sport: '1024-', action: 'drop' })).toMatchInlineSnapshot(
      `"rule #0: sport "1024-" is not a port or range: expected a port from 0 to 65535, a range "1024-65535" or [1024, 65535]"`,
    );
    expect(message({ icmp: { type: 8 }, action: 'drop' })).toMatchInlineSnapshot(
      `"rule #0: icmp needs proto "icmp" or "icmpv6" to say which ICMP"`,
    );
    expect(message({ proto: 'udp', icmp: { type: 8 }, action: 'drop' })).toMatchInlineSnapshot(
      `"rule #0: icmp needs proto "icmp" or "icmpv6", not "udp""`,
    );
    expect(message({ proto: 'icmp', icmp: { type: 256 }, action: 'drop' })).toMatchInlineSnapshot(
      `"rule #0: icmp type 256 is out of range: expected 0 to 255"`,
    );
    expect(
      message({ proto: 'icmp', icmp: { type: 3, cod: 1 }, action: 'drop' }),
    ).toMatchInlineSnapshot(
      `"rule #0: icmp has an unknown member "cod": expected { type: 0..255, code?: 0..255 }"`,
    );
    expect(message({ proto: 'udp', tcpFlags: 'syn', action: 'drop' })).toMatchInlineSnapshot(
      `"rule #0: tcpFlags needs proto "tcp" (or none), not "udp""`,
    );
    expect(message({ tcpFlags: 'syn,fyn', action: 'drop' })).toMatchInlineSnapshot(
      `"rule #0: tcpFlags "syn,fyn" has "fyn", not a flag: expected a comma-separated list of fin syn rst psh ack urg ece cwr, each optionally preceded by "!""`,
    );
    expect(message({ tcpFlags: 'syn,!syn', action: 'drop' })).toMatchInlineSnapshot(
      `"rule #0: tcpFlags "syn,!syn" names "syn" more than once"`,
    );
    expect(message({ tcpFlags: { set: 2, unset: 2 }, action: 'drop' })).toMatchInlineSnapshot(
      `"rule #0: tcpFlags {"set":2,"unset":2} asks for flags both set and unset (0x2)"`,
    );
    expect(message({ tcpFlags: '', action: 'drop' })).toMatchInlineSnapshot(
      `"rule #0: tcpFlags "" names no flag: to match any TCP packet use proto "tcp""`,
    );
  });

  it('explains action-specific fields', () => {
    expect(message({ action: 'drop', rate: '10pps' })).toMatchInlineSnapshot(
      `"rule #0: rate is only for action "ratelimit", not "drop""`,
    );
    expect(message({ action: 'pass', to: 'veth1' })).toMatchInlineSnapshot(
      `"rule #0: to is only for action "redirect", not "pass""`,
    );
    expect(message({ action: 'redirect' })).toMatchInlineSnapshot(
      `"rule #0: to is missing: action "redirect" needs a device"`,
    );
    expect(message({ action: 'redirect', to: 'eth9' })).toMatchInlineSnapshot(
      `"rule #0: to "eth9" is not a known device"`,
    );
    expect(message({ action: 'redirect', to: 'a/b' })).toMatchInlineSnapshot(
      `"rule #0: to "a/b" is not a device name: expected 1 to 15 bytes without "/", ":" or spaces"`,
    );
    expect(
      message({ action: 'redirect', to: 'veth1', via: '00:00:00:00:00:00' }),
    ).toMatchInlineSnapshot(
      `"rule #0: via "00:00:00:00:00:00" is all zero: leave via out to take the next hop from the FIB"`,
    );
    expect(
      message({ action: 'redirect', to: 'veth1', via: '01:00:5e:00:00:01' }),
    ).toMatchInlineSnapshot(
      `"rule #0: via "01:00:5e:00:00:01" is a multicast address: expected a unicast next hop"`,
    );
    expect(
      message({ action: 'redirect', to: 'veth1', via: 'aa-bb-cc-dd-ee-ff' }),
    ).toMatchInlineSnapshot(
      `"rule #0: via "aa-bb-cc-dd-ee-ff" is not a MAC address: expected "aa:bb:cc:dd:ee:ff""`,
    );
  });

  it('explains rates and bursts with LIMIT_INVALID', () => {
    const e = reject({ action: 'ratelimit' });
    expect(e).toMatchObject({ code: 'LIMIT_INVALID', field: 'rate' });
    expect(e.message).toMatchInlineSnapshot(
      `"rule #0: rate is missing: action "ratelimit" needs a rate such as "1000pps" or "10mbit""`,
    );
    expect(message({ action: 'ratelimit', rate: '1000' })).toMatchInlineSnapshot(
      `"rule #0: rate "1000" has no unit: write "1000pps" or "1000bit""`,
    );
    expect(message({ action: 'ratelimit', rate: '10Mbps' })).toMatchInlineSnapshot(
      `"rule #0: rate "10Mbps" is ambiguous: write "10mbit" for bits or "10mbps" for bytes per second (as tc)"`,
    );
    expect(message({ action: 'ratelimit', rate: '10mb' })).toMatchInlineSnapshot(
      `"rule #0: rate "10mb" has an unknown unit "mb": expected "1000pps", "10kpps", "500kbit", "10mbit", "2gbit", or bytes per second as tc writes them, "64kbps""`,
    );
    expect(message({ action: 'ratelimit', rate: '0.5pps' })).toMatchInlineSnapshot(
      `"rule #0: rate "0.5pps" is not a whole number of packets per second (0.5)"`,
    );
    expect(message({ action: 'ratelimit', rate: 0 })).toMatchInlineSnapshot(
      `"rule #0: rate 0 is not a packet rate: expected a whole number of packets per second from 1 to 10000000000"`,
    );
    expect(message({ action: 'ratelimit', rate: '10 mbit' })).toMatchInlineSnapshot(
      `"rule #0: rate "10 mbit" is not a rate: expected "1000pps", "10kpps", "500kbit", "10mbit", "2gbit", or bytes per second as tc writes them, "64kbps""`,
    );
    expect(message({ action: 'ratelimit', rate: '1000tbit' })).toMatchInlineSnapshot(
      `"rule #0: rate "1000tbit" is above the largest rate, 100000000000000 bits per second"`,
    );
    expect(message({ action: 'ratelimit', rate: '1mbit', burst: 0 })).toMatchInlineSnapshot(
      `"rule #0: burst 0 is not a burst: expected a whole number of bytes, at least 1"`,
    );
    expect(message({ action: 'ratelimit', rate: 10, perSource: 'yes' })).toMatchInlineSnapshot(
      `"rule #0: perSource "yes" is not true or false"`,
    );
  });

  it('wraps filter syntax errors with their position', () => {
    const e = reject({ id: 'f', filter: 'udp and dst port and host 192.0.2.1', action: 'drop' });
    expect(e).toBeInstanceOf(FilterInvalidError);
    const f = e as FilterInvalidError;
    expect(f).toMatchObject({
      code: 'FILTER_INVALID',
      filterCode: 'FILTER_SYNTAX',
      field: 'filter',
      ruleId: 'f',
      offset: 17,
      length: 3,
    });
    expect(f.cause.code).toBe('FILTER_SYNTAX');
    expect(f.format()).toMatchInlineSnapshot(`
      "udp and dst port and host 192.0.2.1
                       ^^^
      rule "f": filter "udp and dst port and host 192.0.2.1": unexpected "and" at column 18: expected a port number or name"
    `);
    expect(message({ filter: '  ', action: 'drop' })).toMatchInlineSnapshot(
      `"rule #0: filter "  " is not a filter: expected a tcpdump expression"`,
    );
  });

  it('explains the rule set fields', () => {
    expect(reject([], { defaultAction: 'count' }).message).toMatchInlineSnapshot(
      `"rule set: defaultAction "count" is not an action: expected "pass" or "drop""`,
    );
    expect(reject([], { malformed: 'redirect' }).message).toMatchInlineSnapshot(
      `"rule set: malformed "redirect" is not an action: expected "pass" or "drop""`,
    );
    expect(reject([], { rule: [] }).message).toMatchInlineSnapshot(
      `"rule set: rule is not a rule set field: expected one of rules, defaultAction, malformed"`,
    );
    expect(reject([5]).message).toMatchInlineSnapshot(`"rule #0 is 5, not an object"`);
  });

  it('counts rules, filters, limiters and redirect devices against the pipeline limits', () => {
    const many = (n: number, f: (i: number) => Record<string, unknown>) =>
      Array.from({ length: n }, (_, i) => f(i));
    const rules = reject(many(4097, () => ({ action: 'pass' })));
    expect(rules).toBeInstanceOf(LimitExceededError);
    expect(rules).toMatchObject({ resource: 'rules', limit: 4096, count: 4097 });
    expect(rules.message).toMatchInlineSnapshot(
      `"rule set has 4097 rules, more than the 4096 a pipeline holds"`,
    );
    const filters = reject(many(65, (i) => ({ filter: `udp port ${i}`, action: 'drop' })));
    expect(filters.message).toMatchInlineSnapshot(
      `"rule set has 65 distinct filter expressions, more than the 64 a pipeline holds"`,
    );
    const limiters = reject(many(1025, () => ({ action: 'ratelimit', rate: 5 })));
    expect(limiters.message).toMatchInlineSnapshot(
      `"rule set has 1025 ratelimit rules, more than the 1024 a pipeline holds"`,
    );
    expect(
      validateRuleSet(
        {
          rules: many(64, (i) => ({
            filter: `udp port ${i % 64}`,
            action: 'drop',
          })) as unknown as RuleSpec[],
        },
        context,
      ),
    ).toHaveLength(64);
  });
});

describe('prefix sets', () => {
  it('validates names and prefixes, merging duplicates', () => {
    const set = validateSet({ name: 'blocklist', prefixes: ['10.0.0.0/8', '10.0.0.0/8', '::/0'] });
    expect(set.prefixes.map(formatPrefix)).toEqual(['10.0.0.0/8', '::/0']);
  });

  it('names the set and the entry of a bad prefix', () => {
    const error = (fn: () => unknown) => {
      try {
        fn();
      } catch (err: unknown) {
        return err as DataplaneError;
      }
      throw new Error('expected an error');
    };
    const e = error(() => validateSet({ name: 'x', prefixes: ['10.0.0.0/8', '10.1.1.1/16'] }));
    expect(e).toMatchObject({ code: 'PREFIX_INVALID', set: 'x', entry: 1 });
    expect(e.message).toMatchInlineSnapshot(
      `"set "x": prefixes[1] "10.1.1.1/16" has host bits set: did you mean "10.1.0.0/16"?"`,
    );
    expect(error(() => validateSet({ name: 'a b', prefixes: [] })).message).toMatchInlineSnapshot(
      `"set name "a b" is not valid: expected 1 to 64 letters, digits, "_", "." or "-""`,
    );
    expect(
      error(() =>
        validateSets([
          { name: 'a', prefixes: [] },
          { name: 'a', prefixes: [] },
        ]),
      ).message,
    ).toMatchInlineSnapshot(`"set "a" is given twice: set names are unique"`);
    const tooMany = Array.from({ length: SL_MAX_SETS + 1 }, (_, i) => ({
      name: `s${i}`,
      prefixes: [],
    }));
    expect(error(() => validateSets(tooMany)).message).toMatchInlineSnapshot(
      `"33 prefix sets, more than the 32 an instance holds"`,
    );
  });

  it('keeps the bits of sets that stay and gives new sets the lowest free bits', () => {
    const first = assignSetBits(['a', 'b', 'c']);
    expect([...first]).toEqual([
      ['a', 0],
      ['b', 1],
      ['c', 2],
    ]);
    const second = assignSetBits(['c', 'd', 'e', 'a'], first);
    expect(Object.fromEntries(second)).toEqual({ c: 2, a: 0, d: 1, e: 3 });
  });

  it('gives each trie entry the bits of every set holding it, through shorter prefixes', () => {
    const sets = validateSets([
      { name: 'wide', prefixes: ['10.0.0.0/8', '2001:db8::/32'] },
      { name: 'narrow', prefixes: ['10.1.0.0/16', '10.1.2.0/24', '192.0.2.0/24'] },
      { name: 'host', prefixes: ['10.1.2.3', '10.0.0.0/8'] },
    ]);
    const bits = assignSetBits(sets.map((s) => s.name));
    const entries = compileSetEntries(sets, bits);
    const show = (list: typeof entries.v4, family: 4 | 6) =>
      list.map((e) => `${formatPrefix({ family, addr: e.addr, len: e.len })} ${e.mask}`);
    expect(show(entries.v4, 4)).toEqual([
      '10.0.0.0/8 5',
      '10.1.0.0/16 7',
      '10.1.2.0/24 7',
      '10.1.2.3/32 7',
      '192.0.2.0/24 2',
    ]);
    expect(show(entries.v6, 6)).toEqual(['2001:db8::/32 1']);
    expect(entries.masks).toEqual([5n, 7n, 2n, 1n]);
  });
});
