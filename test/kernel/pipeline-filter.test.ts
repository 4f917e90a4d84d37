// A rule with a tcpdump expression drops exactly the frames libpcap's filter matches, alone and beside other fields and filter rules, at XDP and TC ingress.
//
// Frames: the filter differential corpus (test/helpers/packets, 6000 frames) and 500 pipeline
// frames (test/helpers/pipeline-packets.ts: QinQ, extension-header chains, fragments, cuts),
// leaving out frames shorter than an Ethernet header, which test runs refuse. libpcap (the oracle
// of test/helpers/oracle.ts) judges them from a pcap whose wire lengths are the captured lengths,
// as a test run's `len` is (see test/kernel/filter-ebpf-differential.test.ts).
//
// The expected verdict of a frame is decide()'s (the rule-by-rule model) with libpcap's verdicts as
// the filter semantics: so a filter rule must drop what libpcap matches, except a frame the
// pipeline cannot parse, which takes the rule set's malformed action before any rule is tried;
// and fields beside a filter, first match and count rules act as for any other rule. Rule
// counters must add up to the frames whose decision counted the rule.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, expect, it } from 'vitest';

import type { AttachmentCounters } from '../../controller/dataplane/counters.js';
import { Dataplane } from '../../controller/dataplane/dataplane.js';
import { decide } from '../../controller/dataplane/model-decide.js';
import {
  ruleSetActions,
  validateRuleSet,
  type RuleSetSpec,
} from '../../controller/dataplane/model.js';
import { Lab, type PairTopology } from '../../netns-lab/lab.js';
import { getPacketCorpus, loadCorpus } from '../helpers/differential.js';
import { runOracle } from '../helpers/oracle.js';
import { writePcapFile } from '../helpers/packets/index.js';
import { openPairDataplane } from '../helpers/pair-dataplane.js';
import { EINVAL, ETH_HLEN, refusedAtTc } from '../helpers/pipeline-frames.js';
import { generatePipelinePackets, hexOf } from '../helpers/pipeline-packets.js';
import { describeKernel } from '../helpers/privileges.js';

/** Expressions of test/fixtures/filter/valid.txt, one per kind of primitive. */
const EXPRESSIONS = [
  'tcp',
  'arp',
  'not ip',
  'ip6 and udp',
  'host 192.0.2.1',
  'src and dst host 10.1.2.3',
  'net 192.0.2.0/24',
  'net 2001:db8::/31',
  'dst net 10',
  'port ssh',
  'src or dst portrange 1024-1030',
  'ether host 00:00:5e:00:53:01 and tcp port 80',
  'ip proto \\tcp',
  'ip6 proto ipv6-icmp',
  'ip6 protochain \\ah',
  'vlan 300',
  'vlan and ether[12:2] = 0x800',
  'pppoes',
  'less 54',
  'len / 2 > 500',
  'udp[8:4] != 0',
  'tcp[tcpflags] & (tcp-syn|tcp-fin) = (tcp-syn|tcp-fin)',
  'icmp6[icmp6type] = icmp6-redirect',
  'ip6 host 2001:db8::1 or fe80::1',
  'llc ua',
  'udp port 53 and not src net 10',
  'icmp and not icmp[icmptype] = icmp-echo',
  'ip and (ip[6] & 0x20 != 0 or ip[6:2] & 0x1fff != 0)',
  'vlan 100 and host 192.0.2.1 and tcp port 80',
  '(ip or ip6) and (tcp or udp) and port 53',
  'ip and ip[2:2] + 14 < len',
  'vlan and not vlan',
];

/** Rule sets mixing filters with other fields, first match and count rules. */
const MIXED: { title: string; ruleSet: RuleSetSpec }[] = [
  {
    title: 'a filter beside a protocol and a port range in one rule',
    ruleSet: {
      rules: [
        { id: 'udp-dns', proto: 'udp', filter: 'port 53', action: 'drop' },
        { id: 'tcp-low-v6', proto: 'tcp', dport: [1, 1023], filter: 'ip6', action: 'drop' },
      ],
    },
  },
  {
    title: 'a filter beside a source prefix and a VLAN in one rule',
    ruleSet: {
      rules: [
        { id: 'doc-web', src: '192.0.2.0/24', filter: 'tcp port 80', action: 'drop' },
        { id: 'vlan-udp', vlan: 100, filter: 'udp', action: 'drop' },
      ],
      malformed: 'drop',
    },
  },
  {
    title: 'two filter rules, where the first that matches decides',
    ruleSet: {
      rules: [
        { id: 'tcp-pass', filter: 'tcp', action: 'pass' },
        { id: 'port-80-drop', filter: 'port 80', action: 'drop' },
      ],
    },
  },
  {
    title: 'count rules with filters before a filter rule that drops',
    ruleSet: {
      rules: [
        { id: 'v6-seen', filter: 'ip6', action: 'count' },
        { id: 'tcp-vlan-seen', vlan: 100, filter: 'tcp', action: 'count' },
        { id: 'udp-drop', filter: 'udp', action: 'drop' },
        { id: 'all-seen', action: 'count' },
      ],
      defaultAction: 'drop',
    },
  },
];

const HOOKS = ['xdp', 'tc-ingress'] as const;
type TestHook = (typeof HOOKS)[number];
const RETVAL: Record<TestHook, { pass: number; drop: number }> = {
  xdp: { pass: 2, drop: 1 },
  'tc-ingress': { pass: 0, drop: 2 },
};

interface Frame {
  data: Uint8Array;
  description: string;
}

await describeKernel('filter rules against libpcap', () => {
  let lab: Lab;
  let net: PairTopology;
  let dp: Dataplane;
  let dir: string;
  let frames: Frame[];
  /** libpcap's verdict per expression, one '1'/'0' per frame. */
  const oracle = new Map<string, string>();
  const indexOf = new Map<Uint8Array, number>();

  beforeAll(async () => {
    // Every expression must be one the corpus file lists (libpcap accepts it).
    const valid = new Set((await loadCorpus('valid')).map((e) => e.expression));
    const mixed = MIXED.flatMap((m) => m.ruleSet.rules.flatMap((r) => r.filter ?? []));
    const expressions = [...new Set([...EXPRESSIONS, ...mixed])];
    expect(expressions.filter((e) => !valid.has(e))).toEqual([]);

    const corpus = await getPacketCorpus();
    frames = [
      ...corpus.packets,
      ...generatePipelinePackets({ seed: 0x5eed_f117, count: 500 }),
    ].filter((p) => p.data.length >= ETH_HLEN);
    frames.forEach((f, i) => indexOf.set(f.data, i));
    dir = await mkdtemp(join(tmpdir(), 'sluice-pipeline-filter-'));
    const pcap = join(dir, 'frames.pcap');
    await writePcapFile(
      pcap,
      frames.map((f) => ({ data: f.data, wireLength: f.data.length })),
    );
    const results = await runOracle(pcap, expressions);
    results.forEach((r, i) => {
      if (!r.ok) throw new Error(`libpcap rejects "${expressions[i]}": ${r.error}`);
      oracle.set(expressions[i], r.verdicts);
    });

    ({ lab, net, dp } = await openPairDataplane());
  }, 300_000);

  afterAll(async () => {
    await dp?.destroy().catch(() => undefined);
    await lab?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const libpcap = (expression: string, frame: Uint8Array): boolean => {
    const verdicts = oracle.get(expression);
    const i = indexOf.get(frame);
    if (verdicts === undefined || i === undefined)
      throw new Error(`no libpcap verdict for "${expression}" on this frame`);
    return verdicts[i] === '1';
  };

  const countersOf = (hook: TestHook): AttachmentCounters =>
    dp.counters().find((c) => c.hook === hook)!;

  /**
   * Applies `ruleSet` at both hooks, runs every frame through each, and returns what differs from
   * the model with libpcap's filter verdicts: verdicts, then rule counters.
   */
  async function disagreements(ruleSet: RuleSetSpec): Promise<string[]> {
    const device = net.right.device;
    await dp.apply({ attachments: HOOKS.map((hook) => ({ device, hook, rules: ruleSet })) });
    const rules = validateRuleSet(ruleSet, { sets: new Set() });
    const actions = ruleSetActions(ruleSet);
    const decisions = frames.map((f) => decide(rules, actions, () => new Set(), f.data, libpcap));
    const problems: string[] = [];
    for (const hook of HOOKS) {
      const att = dp.attachments.get(`${device}@${hook}`)!;
      const before = countersOf(hook);
      const { retvals, errnos } = await att.program.testRunEach(frames.map((f) => f.data));
      const after = countersOf(hook);
      const expected = new Map(rules.map((r) => [r.id, 0]));
      let wrong = 0;
      frames.forEach((f, i) => {
        const d = decisions[i];
        if (hook === 'tc-ingress' && refusedAtTc(f.data)) {
          if (errnos[i] !== EINVAL)
            problems.push(
              `${hook}: the test run took a frame cut in its IP header: ${hexOf(f.data)}`,
            );
          return;
        }
        for (const pos of d.matched) expected.set(rules[pos].id, expected.get(rules[pos].id)! + 1);
        const want = RETVAL[hook][d.verdict === 'drop' ? 'drop' : 'pass'];
        if (errnos[i] === 0 && retvals[i] === want) return;
        if (++wrong <= 3)
          problems.push(
            `${hook}: frame ${i} (${f.description}, ${f.data.length} bytes) ${hexOf(f.data)}: ` +
              `kernel ${errnos[i] ? `errno ${errnos[i]}` : `retval ${retvals[i]}`}, expected ${want} ` +
              `(${JSON.stringify(d)}; libpcap ${rules.flatMap((r) => (r.filter ? [`"${r.filter}" ${libpcap(r.filter, f.data) ? 1 : 0}`] : [])).join(', ')})`,
          );
      });
      if (wrong > 3) problems.push(`${hook}: ${wrong} of ${frames.length} frames differ`);
      const counted = Object.fromEntries(
        after.rules.map((r) => [
          r.id,
          r.packets - (before.rules.find((b) => b.id === r.id)?.packets ?? 0),
        ]),
      );
      const want = Object.fromEntries(expected);
      if (JSON.stringify(counted) !== JSON.stringify(want))
        problems.push(
          `${hook}: rule counters ${JSON.stringify(counted)}, expected ${JSON.stringify(want)}`,
        );
    }
    return problems;
  }

  it.each(EXPRESSIONS)('drops exactly the frames libpcap matches with `%s`', async (expression) => {
    expect(
      await disagreements({
        rules: [{ id: 'filtered', filter: expression, action: 'drop' }],
        defaultAction: 'pass',
        malformed: 'pass',
      }),
    ).toEqual([]);
  });

  for (const { title, ruleSet } of MIXED)
    it(`decides as the model with libpcap's filter verdicts: ${title}`, async () => {
      expect(await disagreements(ruleSet)).toEqual([]);
    });

  it('matches some frames and misses others with most expressions (the corpus tells them apart)', () => {
    const mixedVerdicts = EXPRESSIONS.filter((e) => {
      const v = oracle.get(e)!;
      return v.includes('1') && v.includes('0');
    });
    expect(mixedVerdicts.length).toBeGreaterThanOrEqual(EXPRESSIONS.length - 2);
  });
});
