// The reference model (controller/dataplane/model-decide.ts): the parse semantics header by header, and the decision walk with its step rule.
import { describe, expect, it } from 'vitest';
import { SL_MAX_STEPS } from '../../../controller/dataplane/abi.js';
import { compileClassifier } from '../../../controller/dataplane/classify.js';
import {
  decide,
  defaultFilterMatch,
  parsePacket,
  type ParsedPacket,
} from '../../../controller/dataplane/model-decide.js';
import { validateRuleSet, type Rule, type RuleSpec } from '../../../controller/dataplane/model.js';
import { evaluateTables } from '../../../controller/dataplane/tables-eval.js';
import {
  concat,
  ether,
  ipv4,
  ipv4Header,
  ipv6,
  ipv6FragmentHeader,
  ipv6Header,
  ipv6OptionsHeader,
  ipv6RoutingHeader,
  mac,
  tcpHeader,
  u16,
  udpHeader,
} from '../../helpers/packets/build.js';

const DST = mac('02:00:00:00:00:02');
const SRC = mac('02:00:00:00:00:01');
const A4 = ipv4('192.0.2.1');
const B4 = ipv4('198.51.100.2');
const A6 = ipv6('2001:db8::1');
const B6 = ipv6('2001:db8::2');

/** Ethernet + optional tags (TPID, VID) around an EtherType and a payload. */
function frame(type: number, payload: Uint8Array, tags: [number, number][] = []): Uint8Array {
  const types = [...tags.map((t) => t[0]), type];
  const parts = [ether(DST, SRC, types[0])];
  tags.forEach(([, vid], i) => parts.push(concat(u16(vid), u16(types[i + 1]))));
  return concat(...parts, payload);
}

function tcp4(flags = 0x02, extra: Partial<Parameters<typeof ipv4Header>[0]> = {}): Uint8Array {
  const l4 = tcpHeader({ sport: 1234, dport: 80, flags });
  return frame(0x0800, concat(ipv4Header({ proto: 6, src: A4, dst: B4, ...extra }, l4.length), l4));
}

function udp6(exts: Uint8Array[] = [], first = 17): Uint8Array {
  const l4 = udpHeader(5353, 53, 0);
  return frame(0x86dd, concat(ipv6Header({ next: first, src: A6, dst: B6 }, 0), ...exts, l4));
}

/** The fields that matter, without offsets. */
function fields(p: ParsedPacket): Record<string, unknown> {
  const out: Record<string, unknown> = { status: p.status };
  if (p.vlan !== undefined) out.vlan = p.vlan;
  if (p.family !== undefined) out.family = p.family;
  if (p.proto !== undefined) out.proto = p.proto;
  if (p.laterFragment) out.laterFragment = true;
  if (p.sport !== undefined) out.ports = [p.sport, p.dport];
  if (p.icmp) out.icmp = p.icmp;
  if (p.tcpFlags !== undefined) out.tcpFlags = p.tcpFlags;
  return out;
}

describe('parsePacket: Ethernet and VLAN', () => {
  it('calls fewer than 14 bytes truncated and 14 bytes of ARP non-IP', () => {
    expect(parsePacket(new Uint8Array(13)).status).toBe('truncated');
    expect(fields(parsePacket(frame(0x0806, new Uint8Array(0))))).toEqual({ status: 'ok' });
  });

  it('takes the outer VID of up to two tags, TPIDs in any order', () => {
    const t = tcp4().subarray(14);
    expect(parsePacket(frame(0x0800, t, [[0x8100, 0x0064]])).vlan).toBe(100);
    expect(parsePacket(frame(0x0800, t, [[0x8100, 0xe064]])).vlan).toBe(100);
    const qinq = parsePacket(
      frame(0x0800, t, [
        [0x88a8, 7],
        [0x8100, 200],
      ]),
    );
    expect(fields(qinq)).toMatchObject({ status: 'ok', vlan: 7, family: 4, ports: [1234, 80] });
    expect(
      parsePacket(
        frame(0x0800, t, [
          [0x8100, 9],
          [0x88a8, 10],
        ]),
      ).vlan,
    ).toBe(9);
    expect(parsePacket(frame(0x0800, t, [[0x8100, 0]])).vlan).toBe(0);
  });

  it('calls a third tag non-IP, not malformed', () => {
    const p = parsePacket(
      frame(0x0800, tcp4().subarray(14), [
        [0x8100, 1],
        [0x8100, 2],
        [0x88a8, 3],
      ]),
    );
    expect(fields(p)).toEqual({ status: 'ok', vlan: 1 });
    expect(p.etherType).toBe(0x88a8);
  });

  it('calls a tag cut short truncated', () => {
    const tagged = frame(0x0806, new Uint8Array(0), [[0x8100, 5]]);
    expect(parsePacket(tagged.subarray(0, 17)).status).toBe('truncated');
    expect(parsePacket(tagged.subarray(0, 18)).status).toBe('ok');
  });
});

describe('parsePacket: IPv4', () => {
  it('parses TCP ports and flags', () => {
    expect(fields(parsePacket(tcp4(0x12)))).toEqual({
      status: 'ok',
      family: 4,
      proto: 6,
      ports: [1234, 80],
      tcpFlags: 0x12,
    });
  });

  it('calls a header shorter than 20 bytes truncated, bad version or IHL malformed', () => {
    const f = tcp4();
    expect(parsePacket(f.subarray(0, 33)).status).toBe('truncated');
    const v6 = f.slice();
    v6[14] = 0x65;
    expect(parsePacket(v6).status).toBe('malformed');
    const ihl4 = f.slice();
    ihl4[14] = 0x44;
    expect(parsePacket(ihl4).status).toBe('malformed');
    // a short frame with a bad version is truncated first
    expect(parsePacket(v6.subarray(0, 30)).status).toBe('truncated');
  });

  it('calls options past the end truncated and skips them otherwise', () => {
    const l4 = udpHeader(1, 2, 0);
    const withOptions = frame(
      0x0800,
      concat(
        ipv4Header({ proto: 17, src: A4, dst: B4, options: new Uint8Array(8).fill(1) }, 8),
        l4,
      ),
    );
    expect(fields(parsePacket(withOptions))).toMatchObject({ status: 'ok', ports: [1, 2] });
    expect(parsePacket(withOptions.subarray(0, 14 + 27)).status).toBe('truncated');
    expect(parsePacket(withOptions.subarray(0, 14 + 28)).status).toBe('truncated'); // UDP needs 8
  });

  it('gives a later fragment its protocol and no L4 fields, and parses a first fragment', () => {
    expect(fields(parsePacket(tcp4(2, { fragOffset: 1 }).subarray(0, 34)))).toEqual({
      status: 'ok',
      family: 4,
      proto: 6,
      laterFragment: true,
    });
    expect(fields(parsePacket(tcp4(2, { mf: true })))).toMatchObject({ ports: [1234, 80] });
  });

  it('does not check the total length', () => {
    expect(parsePacket(tcp4(2, { totalLength: 9 })).status).toBe('ok');
    expect(parsePacket(tcp4(2, { totalLength: 65535 })).status).toBe('ok');
  });

  it('needs 20 bytes of TCP, 8 of UDP, 12 of SCTP and 4 of ICMP', () => {
    for (const [proto, need] of [
      [6, 20],
      [17, 8],
      [132, 12],
      [1, 4],
    ]) {
      const f = frame(
        0x0800,
        concat(ipv4Header({ proto, src: A4, dst: B4 }, 40), new Uint8Array(40)),
      );
      expect(parsePacket(f.subarray(0, 34 + need)).status).toBe('ok');
      expect(parsePacket(f.subarray(0, 34 + need - 1)).status).toBe('truncated');
    }
  });

  it('reads ICMP type and code, but gives ICMPv6 on IPv4 no fields', () => {
    const icmp = frame(
      0x0800,
      concat(ipv4Header({ proto: 1, src: A4, dst: B4 }, 4), Uint8Array.of(3, 4, 0, 0)),
    );
    expect(parsePacket(icmp).icmp).toEqual({ type: 3, code: 4, icmpv6: false });
    const v6on4 = frame(0x0800, concat(ipv4Header({ proto: 58, src: A4, dst: B4 }, 0)));
    expect(fields(parsePacket(v6on4))).toEqual({ status: 'ok', family: 4, proto: 58 });
  });
});

describe('parsePacket: IPv6', () => {
  it('parses UDP after the fixed header', () => {
    expect(fields(parsePacket(udp6()))).toEqual({
      status: 'ok',
      family: 6,
      proto: 17,
      ports: [5353, 53],
    });
  });

  it('calls fewer than 40 bytes truncated and a bad version malformed', () => {
    expect(parsePacket(udp6().subarray(0, 53)).status).toBe('truncated');
    const bad = udp6().slice();
    bad[14] = 0x40;
    expect(parsePacket(bad).status).toBe('malformed');
  });

  it('walks hop-by-hop, routing, destination options and first-fragment headers', () => {
    const exts = [
      ipv6OptionsHeader(43, new Uint8Array(10)),
      ipv6RoutingHeader(44, 0, 1, [A6]),
      ipv6FragmentHeader(60, 0, true, 1),
      ipv6OptionsHeader(17, new Uint8Array(0)),
    ];
    const p = parsePacket(udp6(exts, 0));
    expect(fields(p)).toEqual({ status: 'ok', family: 6, proto: 17, ports: [5353, 53] });
    expect(p.extHeaders).toBe(4);
  });

  it('stops at a later fragment: its next header is the protocol', () => {
    const p = parsePacket(udp6([ipv6FragmentHeader(60, 8, false, 1)], 44));
    expect(fields(p)).toEqual({ status: 'ok', family: 6, proto: 60, laterFragment: true });
  });

  it('takes eight extension headers and calls a ninth malformed', () => {
    const chain = (n: number) =>
      Array.from({ length: n }, (_, i) =>
        ipv6OptionsHeader(i === n - 1 ? 17 : 60, new Uint8Array(0)),
      );
    expect(fields(parsePacket(udp6(chain(8), 60)))).toMatchObject({
      status: 'ok',
      ports: [5353, 53],
    });
    expect(parsePacket(udp6(chain(9), 60)).status).toBe('malformed');
    // the ninth is malformed before its bytes are looked at
    expect(parsePacket(udp6(chain(9), 60).subarray(0, 54 + 64)).status).toBe('malformed');
  });

  it('calls an extension header that does not fit truncated', () => {
    const f = udp6([ipv6OptionsHeader(17, new Uint8Array(20))], 0);
    expect(parsePacket(f.subarray(0, 54 + 1)).status).toBe('truncated');
    expect(parsePacket(f.subarray(0, 54 + 23)).status).toBe('truncated');
    expect(parsePacket(f.subarray(0, 54 + 24)).status).toBe('truncated'); // then UDP is cut
    expect(parsePacket(f.subarray(0, 54 + 32)).status).toBe('ok');
    const frag = udp6([ipv6FragmentHeader(17, 0, false, 1)], 44);
    expect(parsePacket(frag.subarray(0, 54 + 7)).status).toBe('truncated');
  });

  it('reads ICMPv6 but gives ICMP on IPv6 no fields', () => {
    const icmp6 = frame(
      0x86dd,
      concat(ipv6Header({ next: 58, src: A6, dst: B6 }, 4), Uint8Array.of(135, 0, 0, 0)),
    );
    expect(parsePacket(icmp6).icmp).toEqual({ type: 135, code: 0, icmpv6: true });
    const icmpOn6 = frame(
      0x86dd,
      concat(ipv6Header({ next: 1, src: A6, dst: B6 }, 4), Uint8Array.of(8, 0, 0, 0)),
    );
    expect(fields(parsePacket(icmpOn6))).toEqual({ status: 'ok', family: 6, proto: 1 });
  });
});

function rules(specs: RuleSpec[]): Rule[] {
  return validateRuleSet({ rules: specs }, { sets: new Set(['inside']) });
}

const noSets = () => new Set<string>();
const actions = { defaultAction: 'pass', malformed: 'drop' } as const;

describe('decide', () => {
  it('counts count rules and goes on; the first deciding rule wins', () => {
    const r = rules([
      { action: 'count' },
      { dport: 81, action: 'drop' },
      { proto: 'tcp', action: 'count' },
      { dport: 80, action: 'redirect', to: 'veth1' },
      { action: 'drop' },
    ]);
    expect(decide(r, actions, noSets, tcp4())).toEqual({
      verdict: 'redirect',
      matched: [0, 2, 3],
      steps: 3,
    });
    expect(decide(r, actions, noSets, udp6())).toEqual({
      verdict: 'drop',
      matched: [0, 4],
      steps: 2,
    });
  });

  it('reports ratelimit and leaves the bucket to the caller', () => {
    expect(decide(rules([{ action: 'ratelimit', rate: 5 }]), actions, noSets, tcp4())).toEqual({
      verdict: 'ratelimit',
      matched: [0],
      steps: 1,
    });
  });

  it('applies the default with event "default" when no rule decides', () => {
    const r = rules([{ action: 'count' }, { vlan: 3, action: 'drop' }]);
    expect(decide(r, { defaultAction: 'drop', malformed: 'pass' }, noSets, tcp4())).toEqual({
      verdict: 'drop',
      matched: [0],
      event: 'default',
      steps: 1,
    });
  });

  it('gives malformed and truncated frames the malformed action without trying rules', () => {
    const r = rules([{ action: 'count' }]);
    expect(decide(r, actions, noSets, tcp4().subarray(0, 40))).toEqual({
      verdict: 'drop',
      matched: [],
      event: 'truncated',
      steps: 0,
    });
    const bad = tcp4().slice();
    bad[14] = 0x43;
    expect(decide(r, { defaultAction: 'drop', malformed: 'pass' }, noSets, bad)).toMatchObject({
      verdict: 'pass',
      event: 'malformed',
    });
  });

  it('lets non-IP frames match only rules without address, protocol or L4 fields', () => {
    const arp = frame(0x0806, new Uint8Array(28), [[0x8100, 4]]);
    const r = rules([
      { src: '0.0.0.0/0', action: 'drop' },
      { proto: 0, action: 'drop' },
      { dport: '0-65535', action: 'drop' },
      { srcSet: 'inside', action: 'drop' },
      { tcpFlags: '!syn', action: 'drop' },
      { vlan: 4, action: 'count' },
      { action: 'pass' },
    ]);
    expect(decide(r, actions, () => new Set(['inside']), arp)).toEqual({
      verdict: 'pass',
      matched: [5, 6],
      steps: 2,
    });
  });

  it('matches sets through the membership callback, per address', () => {
    const r = rules([
      { srcSet: 'inside', action: 'drop' },
      { dstSet: 'inside', action: 'redirect', to: 'x' },
    ]);
    const inside = (family: 4 | 6, addr: Uint8Array) =>
      new Set(family === 4 && addr[0] === 198 ? ['inside'] : []);
    expect(decide(r, actions, inside, tcp4())).toMatchObject({ verdict: 'redirect', matched: [1] });
  });

  it('tries at most SL_MAX_STEPS candidates: count rules, filter misses and the match', () => {
    const counts = (n: number): RuleSpec[] =>
      Array.from({ length: n }, () => ({ action: 'count' }));
    const cut = decide(
      rules([...counts(SL_MAX_STEPS), { action: 'drop' }]),
      actions,
      noSets,
      tcp4(),
    );
    expect(cut).toMatchObject({ verdict: 'pass', event: 'step_limit', steps: SL_MAX_STEPS });
    expect(cut.matched).toHaveLength(SL_MAX_STEPS);
    const last = decide(
      rules([...counts(SL_MAX_STEPS - 1), { action: 'drop' }]),
      actions,
      noSets,
      tcp4(),
    );
    expect(last).toMatchObject({ verdict: 'drop', steps: SL_MAX_STEPS });
    expect(last.event).toBeUndefined();
    // exactly SL_MAX_STEPS candidates, none deciding: nothing was cut off, so 'default'
    const exact = decide(
      rules([...counts(SL_MAX_STEPS), { vlan: 9, action: 'drop' }]),
      actions,
      noSets,
      tcp4(),
    );
    expect(exact).toMatchObject({ event: 'default', steps: SL_MAX_STEPS });
    // filter misses cost a step each
    const misses: RuleSpec[] = Array.from({ length: SL_MAX_STEPS }, () => ({
      filter: 'arp',
      action: 'drop',
    }));
    expect(decide(rules([...misses, { action: 'drop' }]), actions, noSets, tcp4())).toMatchObject({
      verdict: 'pass',
      matched: [],
      event: 'step_limit',
    });
  });

  it('charges nothing for rules that fail a field other than the filter', () => {
    const skipped: RuleSpec[] = Array.from({ length: 200 }, (_, i) => ({
      dport: 1000 + i,
      filter: 'tcp',
      action: 'drop',
    }));
    expect(decide(rules([...skipped, { action: 'drop' }]), actions, noSets, tcp4())).toEqual({
      verdict: 'drop',
      matched: [200],
      steps: 1,
    });
  });

  it('runs filters as compiled classic BPF over the whole frame', () => {
    expect(defaultFilterMatch('tcp dst port 80', tcp4())).toBe(true);
    expect(defaultFilterMatch('udp', tcp4())).toBe(false);
    expect(defaultFilterMatch('vlan 5', frame(0x0806, new Uint8Array(28), [[0x8100, 5]]))).toBe(
      true,
    );
    const r = rules([
      { filter: 'udp', action: 'drop' },
      { filter: 'tcp[13] & 2 != 0', action: 'count' },
      { action: 'pass' },
    ]);
    expect(decide(r, actions, noSets, tcp4(0x02))).toEqual({
      verdict: 'pass',
      matched: [1, 2],
      steps: 3,
    });
    expect(decide(r, actions, noSets, tcp4(0x10))).toEqual({
      verdict: 'pass',
      matched: [2],
      steps: 3,
    });
  });
});

describe('evaluateTables', () => {
  it('decides as decide() does, going through the filter bank only for filter candidates', () => {
    const r = rules([
      { dport: 80, action: 'count' },
      { proto: 'udp', filter: 'udp port 53', action: 'drop' },
      { action: 'pass' },
    ]);
    const tables = compileClassifier(r, { setBits: new Map(), masks: [], ...actions });
    const tcp = evaluateTables(tables, tcp4(), () => 0n);
    expect(tcp).toMatchObject({ verdict: 'pass', matched: [0, 2], steps: 2, filterBank: false });
    expect(tcp.candidates).toEqual([0, 2]);
    const udp = evaluateTables(tables, udp6(), () => 0n);
    expect(udp).toMatchObject({ verdict: 'drop', matched: [1], steps: 1, filterBank: true });
    expect(decide(r, actions, noSets, udp6())).toEqual({ verdict: 'drop', matched: [1], steps: 1 });
  });
});
