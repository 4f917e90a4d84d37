// The pipeline program field by field and action by action, at XDP and TC ingress: a readable spec of what a rule matches and what each action does.
//
// Every rule set is applied to one veth device at both hooks (an xdp and a tc-ingress attachment
// side by side), and each hand-made frame (test/helpers/pipeline-frames.ts) runs through each
// hook's program under BPF_PROG_TEST_RUN. Verdicts are shown as words: XDP_PASS 2 and TC_ACT_OK 0
// are "pass", XDP_DROP 1 and TC_ACT_SHOT 2 "drop", XDP_REDIRECT 4 and TC_ACT_REDIRECT 7
// "redirect"; a frame the test run refuses (EINVAL) is "refused". Counters are read as the
// change since the rule set was applied.
//
// bpf_fib_lookup answers from the namespace of the thread running the test, and the addon runs
// test runs on a worker thread of this process, in the host namespace. So the redirects with a
// static next hop run here (their rewrite does not depend on the FIB), and the redirect through
// the FIB runs in a child process inside the lab's namespace (test/helpers/netns-test-run.ts),
// with the ingress device in the test run's context. test/lab/dataplane-forward.test.ts covers
// the FIB path with real traffic.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ifindexOf, type BpfProgram } from '../../bpf/index.js';
import type { Hook } from '../../controller/dataplane/attachment.js';
import type { AttachmentCounters } from '../../controller/dataplane/counters.js';
import { Dataplane, type SetSpec } from '../../controller/dataplane/dataplane.js';
import type { RuleSetSpec } from '../../controller/dataplane/model.js';
import { Lab, type PairTopology } from '../../netns-lab/lab.js';
import { checksum, mac } from '../helpers/packets/build.js';
import { testRunInNetns } from '../helpers/netns-test-run.js';
import { openPairDataplane } from '../helpers/pair-dataplane.js';
import { EINVAL, EXT, buildFrame, cutsOf, frame } from '../helpers/pipeline-frames.js';
import { describeKernel } from '../helpers/privileges.js';

const HOOKS = ['xdp', 'tc-ingress'] as const;
type TestHook = (typeof HOOKS)[number];
const WORDS: Record<TestHook, Record<number, string>> = {
  xdp: { 1: 'drop', 2: 'pass', 4: 'redirect' },
  'tc-ingress': { 0: 'pass', 2: 'drop', 7: 'redirect' },
};
const NEXT_HOP = '02:00:5e:00:53:99';

/** The change in one attachment's counters, zero events left out. */
interface Counted {
  rules: Record<string, number>;
  verdicts: { pass: number; drop: number; redirect: number };
  events: Record<string, number>;
  limiters: Record<string, { passed: number; dropped: number }>;
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

await describeKernel('the pipeline program, field by field', () => {
  let lab: Lab;
  let net: PairTopology;
  let dp: Dataplane;
  let device: string;
  let baseline = new Map<Hook, AttachmentCounters>();

  beforeAll(async () => {
    ({ lab, net, dp } = await openPairDataplane());
    device = net.right.device;
  });

  afterAll(async () => {
    await dp?.destroy().catch(() => undefined);
    await lab?.destroy();
  });

  const countersOf = (hook: Hook): AttachmentCounters => {
    const c = dp.counters().find((x) => x.hook === hook);
    if (!c) throw new Error(`no attachment at ${hook}`);
    return c;
  };

  /** Applies `rules` (and `sets`) at both hooks and starts counting from here. */
  async function use(rules: RuleSetSpec, sets: SetSpec[] = []): Promise<void> {
    await dp.apply({ sets, attachments: HOOKS.map((hook) => ({ device, hook, rules })) });
    baseline = new Map(HOOKS.map((hook) => [hook, countersOf(hook)]));
  }

  const program = (hook: TestHook): BpfProgram => dp.attachments.get(`${device}@${hook}`)!.program;

  /** Each frame's verdict at `hook`, as a word. */
  async function verdicts(frames: Uint8Array[], hook: TestHook): Promise<string[]> {
    const { retvals, errnos } = await program(hook).testRunEach(frames);
    return [...retvals].map((r, i) =>
      errnos[i] === EINVAL
        ? 'refused'
        : errnos[i]
          ? `errno ${errnos[i]}`
          : (WORDS[hook][r] ?? `retval ${r}`),
    );
  }

  /** Each frame's verdict at both hooks, which must agree. */
  async function verdictsAtBoth(frames: Uint8Array[]): Promise<string[]> {
    const xdp = await verdicts(frames, 'xdp');
    const tc = await verdicts(frames, 'tc-ingress');
    expect({ tc }).toEqual({ tc: xdp });
    return xdp;
  }

  /** What the counters of `hook` moved by since use(). */
  function counted(hook: TestHook = 'xdp'): Counted {
    const now = countersOf(hook);
    const was = baseline.get(hook)!;
    const rulesBefore = new Map(was.rules.map((r) => [r.id, r.packets]));
    const limitsBefore = new Map(was.limiters.map((l) => [l.id, l]));
    const events: Record<string, number> = {};
    for (const [name, n] of Object.entries(now.events)) {
      const d = n - was.events[name as keyof typeof was.events];
      if (d !== 0) events[name] = d;
    }
    return {
      rules: Object.fromEntries(
        now.rules.map((r) => [r.id, r.packets - (rulesBefore.get(r.id) ?? 0)]),
      ),
      verdicts: {
        pass: now.actions.pass.packets - was.actions.pass.packets,
        drop: now.actions.drop.packets - was.actions.drop.packets,
        redirect: now.actions.redirect.packets - was.actions.redirect.packets,
      },
      events,
      limiters: Object.fromEntries(
        now.limiters.map((l) => {
          const b = limitsBefore.get(l.id);
          return [
            l.id,
            { passed: l.passed - (b?.passed ?? 0), dropped: l.dropped - (b?.dropped ?? 0) },
          ];
        }),
      ),
    };
  }

  describe('match fields', () => {
    it('drops by source prefix and passes the rest', async () => {
      await use({ rules: [{ id: 'from-doc', src: '192.0.2.0/24', action: 'drop' }] });
      expect(
        await verdictsAtBoth([
          frame({ src: '192.0.2.7' }),
          frame({ src: '192.0.3.7' }),
          frame({ src: '2001:db8::7' }),
        ]),
      ).toEqual(['drop', 'pass', 'pass']);
      for (const hook of HOOKS)
        expect(counted(hook)).toEqual({
          rules: { 'from-doc': 1 },
          verdicts: { pass: 2, drop: 1, redirect: 0 },
          events: { default: 2 },
          limiters: {},
        });
    });

    it('matches an IPv6 destination prefix, and never a packet of the other family', async () => {
      await use({ rules: [{ id: 'to-site', dst: '2001:db8:1::/48', action: 'drop' }] });
      expect(
        await verdictsAtBoth([
          frame({ dst: '2001:db8:1:2::9' }),
          frame({ dst: '2001:db8:2::9' }),
          frame({ dst: '192.0.2.1' }),
        ]),
      ).toEqual(['drop', 'pass', 'pass']);
    });

    it('matches source and destination addresses through prefix sets', async () => {
      await use(
        {
          rules: [
            { id: 'from-bad', srcSet: 'bad', action: 'drop' },
            { id: 'to-web', dstSet: 'web', action: 'count' },
          ],
        },
        [
          { name: 'bad', prefixes: ['198.51.100.0/24', '2001:db8:bad::/48'] },
          { name: 'web', prefixes: ['203.0.113.80', '2001:db8::80'] },
        ],
      );
      expect(
        await verdictsAtBoth([
          frame({ src: '198.51.100.9', dst: '203.0.113.80' }),
          frame({ src: '2001:db8:bad::1' }),
          frame({ src: '192.0.2.1', dst: '203.0.113.80' }),
          frame({ src: '2001:db8::1', dst: '2001:db8::80' }),
          frame({ src: '192.0.2.1', dst: '203.0.113.81' }),
        ]),
      ).toEqual(['drop', 'drop', 'pass', 'pass', 'pass']);
      expect(counted().rules).toEqual({ 'from-bad': 2, 'to-web': 2 });
    });

    it('sees an address in a /24 of one set and a /8 of another as held by both sets', async () => {
      await use(
        {
          rules: [
            { id: 'in-b', srcSet: 'b', action: 'count' },
            { id: 'in-a', srcSet: 'a', action: 'drop' },
          ],
        },
        [
          { name: 'a', prefixes: ['10.0.0.0/8', '2001:db8::/32'] },
          { name: 'b', prefixes: ['10.1.2.0/24', '2001:db8:1::/48'] },
        ],
      );
      expect(
        await verdictsAtBoth([
          frame({ src: '10.1.2.3' }),
          frame({ src: '10.9.9.9' }),
          frame({ src: '2001:db8:1::5' }),
          frame({ src: '2001:db8:2::5' }),
          frame({ src: '192.0.2.1' }),
        ]),
      ).toEqual(['drop', 'drop', 'drop', 'drop', 'pass']);
      expect(counted().rules).toEqual({ 'in-b': 2, 'in-a': 4 });
    });

    it('matches the IPv4 protocol and the IPv6 next header after the extension headers', async () => {
      await use({ rules: [{ id: 'gre', proto: 47, action: 'drop' }] });
      expect(
        await verdictsAtBoth([
          frame({ proto: 47 }),
          frame({ family: 6, proto: 47, ext: [EXT.hop, EXT.dest] }),
          frame({ family: 6, proto: 17, ext: [EXT.hop] }),
          frame({ proto: 6 }),
        ]),
      ).toEqual(['drop', 'drop', 'pass', 'pass']);
    });

    it('matches a port range inclusively at both ends', async () => {
      await use({
        rules: [
          { id: 'range', proto: 'tcp', dport: '1000-2000', action: 'drop' },
          { id: 'one', proto: 'udp', sport: 123, action: 'drop' },
        ],
      });
      expect(
        await verdictsAtBoth([
          frame({ proto: 6, dport: 999 }),
          frame({ proto: 6, dport: 1000 }),
          frame({ proto: 6, dport: 2000 }),
          frame({ proto: 6, dport: 2001 }),
          frame({ proto: 17, dport: 1500 }),
          frame({ proto: 17, sport: 123 }),
          frame({ proto: 17, sport: 124 }),
        ]),
      ).toEqual(['pass', 'drop', 'drop', 'pass', 'pass', 'drop', 'pass']);
    });

    it('matches ports without a protocol on TCP, UDP and SCTP only', async () => {
      await use({ rules: [{ id: 'port-53', dport: 53, action: 'drop' }] });
      expect(
        await verdictsAtBoth([
          frame({ proto: 6, dport: 53 }),
          frame({ proto: 17, dport: 53 }),
          frame({ proto: 132, dport: 53 }),
          frame({ family: 6, proto: 17, dport: 53 }),
          frame({ proto: 47 }),
        ]),
      ).toEqual(['drop', 'drop', 'drop', 'drop', 'pass']);
    });

    it('matches an ICMP type, and a code when given, of its own family only', async () => {
      await use({
        rules: [
          { id: 'echo', proto: 'icmp', icmp: { type: 8 }, action: 'drop' },
          { id: 'port-unreach', proto: 'icmp', icmp: { type: 3, code: 3 }, action: 'drop' },
          { id: 'echo6', proto: 'icmpv6', icmp: { type: 128 }, action: 'drop' },
        ],
      });
      expect(
        await verdictsAtBoth([
          frame({ proto: 1, icmp: { type: 8, code: 0 } }),
          frame({ proto: 1, icmp: { type: 0, code: 0 } }),
          frame({ proto: 1, icmp: { type: 3, code: 3 } }),
          frame({ proto: 1, icmp: { type: 3, code: 1 } }),
          frame({ family: 6, proto: 58, icmp: { type: 128, code: 0 } }),
          frame({ family: 6, proto: 58, icmp: { type: 8, code: 0 } }),
          // ICMPv6 carried over IPv4 has no ICMP fields
          frame({ family: 4, proto: 58, icmp: { type: 128, code: 0 } }),
        ]),
      ).toEqual(['drop', 'pass', 'drop', 'pass', 'drop', 'pass', 'pass']);
      expect(counted().rules).toEqual({ echo: 1, 'port-unreach': 1, echo6: 1 });
    });

    it('matches the outer VLAN id of a tagged or QinQ frame; an untagged frame has none', async () => {
      await use({
        rules: [
          { id: 'vlan-100', vlan: 100, action: 'drop' },
          { id: 'vlan-0', vlan: 0, action: 'drop' },
        ],
      });
      expect(
        await verdictsAtBoth([
          frame({ vlans: [100] }),
          frame({ vlans: [100, 200] }),
          frame({ vlans: [200, 100] }),
          frame({ vlans: [0] }),
          frame({}),
          frame({ vlans: [100], family: 6 }),
          frame({ vlans: [100], etherType: 0x0806 }),
        ]),
      ).toEqual(['drop', 'drop', 'pass', 'drop', 'pass', 'drop', 'drop']);
    });

    it('matches TCP flags that must be set and flags that must be clear', async () => {
      await use({
        rules: [
          { id: 'syn-only', tcpFlags: 'syn,!ack', action: 'drop' },
          { id: 'fin-rst', tcpFlags: { set: 0x05, unset: 0 }, action: 'drop' },
        ],
      });
      expect(
        await verdictsAtBoth([
          frame({ proto: 6, flags: 0x02 }),
          frame({ proto: 6, flags: 0x12 }),
          frame({ proto: 6, flags: 0x05 }),
          frame({ proto: 6, flags: 0x04 }),
          frame({ proto: 17 }),
        ]),
      ).toEqual(['drop', 'pass', 'drop', 'pass', 'pass']);
    });

    it('classifies a frame that is not IP by its VLAN and catch-all rules only', async () => {
      await use({
        rules: [
          { id: 'any-src', src: '0.0.0.0/0', action: 'drop' },
          { id: 'any-proto', proto: 0, action: 'drop' },
          { id: 'counted', action: 'count' },
        ],
        defaultAction: 'pass',
      });
      expect(
        await verdictsAtBoth([frame({ etherType: 0x0806 }), frame({ vlans: [5, 6, 7] })]),
      ).toEqual(['pass', 'pass']);
      expect(counted().rules).toEqual({ 'any-src': 0, 'any-proto': 0, counted: 2 });
    });
  });

  describe('headers', () => {
    it('walks hop-by-hop, routing, destination-options and fragment headers to the ports', async () => {
      await use({ rules: [{ id: 'dns', proto: 'udp', dport: 53, action: 'drop' }] });
      expect(
        await verdictsAtBoth([
          frame({ family: 6, ext: [EXT.hop, EXT.routing, EXT.dest, EXT.fragment] }),
          frame({ family: 6, ext: [EXT.fragment, EXT.dest] }),
          frame({ family: 6, ext: [EXT.hop, EXT.routing, EXT.dest, EXT.fragment], dport: 54 }),
        ]),
      ).toEqual(['drop', 'drop', 'pass']);
    });

    it('walks 8 IPv6 extension headers and takes a 9th as malformed', async () => {
      await use({
        rules: [{ id: 'dns', proto: 'udp', dport: 53, action: 'pass' }],
        defaultAction: 'pass',
        malformed: 'drop',
      });
      const eight = [
        EXT.hop,
        EXT.dest,
        EXT.routing,
        EXT.dest,
        EXT.fragment,
        EXT.dest,
        EXT.routing,
        EXT.dest,
      ];
      expect(
        await verdictsAtBoth([
          frame({ family: 6, ext: eight }),
          frame({ family: 6, ext: [...eight, EXT.dest] }),
        ]),
      ).toEqual(['pass', 'drop']);
      for (const hook of HOOKS)
        expect(counted(hook)).toEqual({
          rules: { dns: 1 },
          verdicts: { pass: 1, drop: 1, redirect: 0 },
          events: { malformed: 1 },
          limiters: {},
        });
    });

    it('gives a first fragment its ports and a later fragment only its protocol', async () => {
      await use({
        rules: [
          { id: 'dns', proto: 'udp', dport: 53, action: 'drop' },
          { id: 'udp', proto: 'udp', action: 'count' },
        ],
      });
      expect(
        await verdictsAtBoth([
          frame({ fragment: 'first' }),
          frame({ fragment: 'later' }),
          frame({ family: 6, fragment: 'first' }),
          frame({ family: 6, fragment: 'later' }),
        ]),
      ).toEqual(['drop', 'pass', 'drop', 'pass']);
      expect(counted().rules).toEqual({ dns: 2, udp: 2 });
    });

    it('gives malformed IP headers the malformed action and the malformed event', async () => {
      await use({
        rules: [{ id: 'all', action: 'pass' }],
        defaultAction: 'pass',
        malformed: 'drop',
      });
      const ihl4 = frame();
      ihl4[14] = 0x44;
      const v6in4 = frame();
      v6in4[14] = 0x65;
      const v4in6 = frame({ family: 6 });
      v4in6[14] = (4 << 4) | (v4in6[14] & 0x0f);
      expect(await verdictsAtBoth([ihl4, v6in4, v4in6, frame()])).toEqual([
        'drop',
        'drop',
        'drop',
        'pass',
      ]);
      expect(counted()).toEqual({
        rules: { all: 1 },
        verdicts: { pass: 1, drop: 3, redirect: 0 },
        events: { malformed: 3 },
        limiters: {},
      });
    });

    const truncatable = {
      tcp: buildFrame({ proto: 6 }),
      'vlan icmp': buildFrame({ vlans: [7], proto: 1, ipv4Options: Uint8Array.of(1, 1, 1, 1) }),
      'qinq ipv6 udp': buildFrame({
        vlans: [100, 200],
        family: 6,
        ext: [EXT.hop, EXT.routing, EXT.fragment],
      }),
      icmpv6: buildFrame({ family: 6, proto: 58 }),
      sctp: buildFrame({ proto: 132 }),
    };
    const cuts = Object.entries(truncatable).flatMap(([name, f]) =>
      cutsOf(f).map((c) => ({ ...c, name: `${name}: ${c.name}` })),
    );
    const whole = Object.values(truncatable).map((f) => f.data);

    it('cuts every test frame inside each header the parse reads', () => {
      expect(cuts.map((c) => c.name)).toMatchInlineSnapshot(`
        [
          "tcp: ipv4 cut at 14",
          "tcp: ipv4 cut at 15",
          "tcp: ipv4 cut at 33",
          "tcp: tcp cut at 34",
          "tcp: tcp cut at 35",
          "tcp: tcp cut at 53",
          "vlan icmp: vlan 7 cut at 14",
          "vlan icmp: vlan 7 cut at 15",
          "vlan icmp: vlan 7 cut at 17",
          "vlan icmp: ipv4 cut at 18",
          "vlan icmp: ipv4 cut at 19",
          "vlan icmp: ipv4 cut at 41",
          "vlan icmp: icmp cut at 42",
          "vlan icmp: icmp cut at 43",
          "vlan icmp: icmp cut at 45",
          "qinq ipv6 udp: vlan 100 cut at 14",
          "qinq ipv6 udp: vlan 100 cut at 15",
          "qinq ipv6 udp: vlan 100 cut at 17",
          "qinq ipv6 udp: vlan 200 cut at 18",
          "qinq ipv6 udp: vlan 200 cut at 19",
          "qinq ipv6 udp: vlan 200 cut at 21",
          "qinq ipv6 udp: ipv6 cut at 22",
          "qinq ipv6 udp: ipv6 cut at 23",
          "qinq ipv6 udp: ipv6 cut at 61",
          "qinq ipv6 udp: ipv6 ext 0 cut at 62",
          "qinq ipv6 udp: ipv6 ext 0 cut at 63",
          "qinq ipv6 udp: ipv6 ext 0 cut at 69",
          "qinq ipv6 udp: ipv6 ext 43 cut at 70",
          "qinq ipv6 udp: ipv6 ext 43 cut at 71",
          "qinq ipv6 udp: ipv6 ext 43 cut at 93",
          "qinq ipv6 udp: ipv6 ext 44 cut at 94",
          "qinq ipv6 udp: ipv6 ext 44 cut at 95",
          "qinq ipv6 udp: ipv6 ext 44 cut at 101",
          "qinq ipv6 udp: udp cut at 102",
          "qinq ipv6 udp: udp cut at 103",
          "qinq ipv6 udp: udp cut at 109",
          "icmpv6: ipv6 cut at 14",
          "icmpv6: ipv6 cut at 15",
          "icmpv6: ipv6 cut at 53",
          "icmpv6: icmpv6 cut at 54",
          "icmpv6: icmpv6 cut at 55",
          "icmpv6: icmpv6 cut at 57",
          "sctp: ipv4 cut at 14",
          "sctp: ipv4 cut at 15",
          "sctp: ipv4 cut at 33",
          "sctp: sctp cut at 34",
          "sctp: sctp cut at 35",
          "sctp: sctp cut at 45",
        ]
      `);
    });

    it('gives a frame cut inside any header the malformed action and the truncated event', async () => {
      for (const malformed of ['drop', 'pass'] as const) {
        await use({ rules: [{ id: 'all', action: 'count' }], defaultAction: 'drop', malformed });
        const xdp = await verdicts(
          cuts.map((c) => c.data),
          'xdp',
        );
        expect(xdp).toEqual(cuts.map(() => malformed));
        expect(counted('xdp')).toEqual({
          rules: { all: 0 },
          verdicts: {
            pass: malformed === 'pass' ? cuts.length : 0,
            drop: malformed === 'drop' ? cuts.length : 0,
            redirect: 0,
          },
          events: { truncated: cuts.length },
          limiters: {},
        });
        // The skb test run refuses an untagged frame cut inside its IPv4 or IPv6 header.
        const tc = await verdicts(
          cuts.map((c) => c.data),
          'tc-ingress',
        );
        const refused = cuts.map((c) => {
          const type = (c.data[12] << 8) | c.data[13];
          return (type === 0x0800 && c.data.length < 34) || (type === 0x86dd && c.data.length < 54);
        });
        expect(tc).toEqual(refused.map((r) => (r ? 'refused' : malformed)));
        expect(counted('tc-ingress').events).toEqual({
          truncated: refused.filter((r) => !r).length,
        });
      }
      // Whole, the same frames reach the rules.
      expect(await verdictsAtBoth(whole)).toEqual(whole.map(() => 'drop'));
      expect(counted().rules).toEqual({ all: whole.length });
    });
  });

  describe('rule order and actions', () => {
    it('tries rules by priority, then in the order given, and the first that decides wins', async () => {
      await use({
        rules: [
          { id: 'late', priority: 20, action: 'drop' },
          { id: 'early', priority: 10, action: 'pass' },
          { id: 'tie-1', priority: 5, proto: 'tcp', action: 'drop' },
          { id: 'tie-2', priority: 5, proto: 'tcp', action: 'pass' },
        ],
      });
      expect(await verdictsAtBoth([frame({ proto: 17 }), frame({ proto: 6 })])).toEqual([
        'pass',
        'drop',
      ]);
      expect(counted().rules).toEqual({ 'tie-1': 1, 'tie-2': 0, early: 1, late: 0 });
    });

    it('counts a count rule and goes on to the next matching rule', async () => {
      await use({
        rules: [
          { id: 'seen', action: 'count' },
          { id: 'udp-seen', proto: 'udp', action: 'count' },
          { id: 'dns', dport: 53, action: 'drop' },
        ],
      });
      expect(
        await verdictsAtBoth([frame({ proto: 17, dport: 53 }), frame({ proto: 6, dport: 80 })]),
      ).toEqual(['drop', 'pass']);
      for (const hook of HOOKS)
        expect(counted(hook)).toEqual({
          rules: { seen: 2, 'udp-seen': 1, dns: 1 },
          verdicts: { pass: 1, drop: 1, redirect: 0 },
          events: { default: 1 },
          limiters: {},
        });
    });

    it('applies the default action when no rule decides, with the default event', async () => {
      await use({ rules: [{ id: 'seen', action: 'count' }], defaultAction: 'drop' });
      expect(await verdictsAtBoth([frame(), frame({ family: 6 })])).toEqual(['drop', 'drop']);
      expect(counted()).toEqual({
        rules: { seen: 2 },
        verdicts: { pass: 0, drop: 2, redirect: 0 },
        events: { default: 2 },
        limiters: {},
      });
    });

    it('stops after 64 candidate rules and applies the default with the step-limit event', async () => {
      await use({
        rules: [
          ...Array.from({ length: 70 }, (_, i) => ({ id: `c${i}`, action: 'count' as const })),
          { id: 'never', action: 'pass' },
        ],
        defaultAction: 'drop',
      });
      expect(await verdictsAtBoth([frame()])).toEqual(['drop']);
      const c = counted();
      expect(Object.values(c.rules).filter((n) => n === 1)).toHaveLength(64);
      expect(c.rules.c63).toBe(1);
      expect(c.rules.c64).toBe(0);
      expect(c.events).toEqual({ stepLimit: 1 });
    });

    it('lets a burst of 5 through a 1000pps limit and drops the rest of 10 back-to-back frames', async () => {
      for (const hook of HOOKS) {
        let got: string[] = [];
        let id = '';
        for (let attempt = 1; attempt <= 3; attempt++) {
          id = `limit-${hook}-${attempt}`;
          await use({ rules: [{ id, action: 'ratelimit', rate: '1000pps', burst: 5 }] });
          got = await verdicts(
            Array.from({ length: 10 }, () => frame()),
            hook,
          );
          // One more pass means a millisecond went by between two runs (a refill at 1000pps):
          // the machine paused the test, so try again on a fresh bucket.
          if (got.filter((v) => v === 'pass').length !== 6) break;
        }
        expect(got).toEqual([...Array(5).fill('pass'), ...Array(5).fill('drop')]);
        expect(counted(hook)).toEqual({
          rules: { [id]: 10 },
          verdicts: { pass: 5, drop: 5, redirect: 0 },
          events: { ratelimited: 5 },
          limiters: { [id]: { passed: 5, dropped: 5 } },
        });
      }
    });

    it('keeps one bucket per source address with perSource', async () => {
      let got: string[] = [];
      for (let attempt = 1; attempt <= 3; attempt++) {
        await use({
          rules: [
            {
              id: `per-source-${attempt}`,
              action: 'ratelimit',
              rate: '1000pps',
              burst: 2,
              perSource: true,
            },
          ],
        });
        const a = frame({ src: '192.0.2.1' });
        const b = frame({ src: '192.0.2.2' });
        got = await verdicts([a, a, a, a, b, b, b, b], 'xdp');
        if (got.filter((v) => v === 'pass').length !== 5) break;
      }
      expect(got).toEqual(['pass', 'pass', 'drop', 'drop', 'pass', 'pass', 'drop', 'drop']);
      expect(Object.values(counted().limiters)).toEqual([{ passed: 4, dropped: 4 }]);
    });

    it('redirects with a static next hop: destination MAC rewritten, TTL decremented, IPv4 checksum valid', async () => {
      await use({
        rules: [
          { id: 'fwd', dst: '203.0.113.0/24', action: 'redirect', to: device, via: NEXT_HOP },
        ],
      });
      const data = frame({ dst: '203.0.113.5', ttl: 64, proto: 6, dport: 443 });
      for (const hook of HOOKS) {
        const run = await program(hook).testRun({ data, dataOut: true });
        expect(WORDS[hook][run.retval]).toBe('redirect');
        const out = run.dataOut!;
        expect(out.length).toBe(data.length);
        expect(hex(out.subarray(0, 6))).toBe(NEXT_HOP.replaceAll(':', ''));
        // The source MAC comes from the FIB when it routes out of the rule's device; a test run
        // asks the host namespace's FIB (see the header), so it is not asserted.
        expect(out[14 + 8]).toBe(63);
        expect(checksum(out.subarray(14, 34))).toBe(0);
        expect(hex(out.subarray(14 + 8 + 1, 14 + 10))).toBe(hex(data.subarray(14 + 9, 14 + 10)));
        expect(hex(out.subarray(34))).toBe(hex(data.subarray(34)));
        expect(counted(hook)).toEqual({
          rules: { fwd: 1 },
          verdicts: { pass: 0, drop: 0, redirect: 1 },
          events: {},
          limiters: {},
        });
      }
    });

    it('redirects IPv6 and VLAN-tagged frames with the hop limit decremented and the tags kept', async () => {
      await use({ rules: [{ id: 'fwd', action: 'redirect', to: device, via: NEXT_HOP }] });
      const v6 = frame({ family: 6, ttl: 9 });
      const tagged = frame({ vlans: [100, 200], ttl: 9 });
      for (const hook of HOOKS) {
        const a = await program(hook).testRun({ data: v6, dataOut: true });
        expect(WORDS[hook][a.retval]).toBe('redirect');
        expect(a.dataOut![14 + 7]).toBe(8);
        const b = await program(hook).testRun({ data: tagged, dataOut: true });
        expect(WORDS[hook][b.retval]).toBe('redirect');
        expect(hex(b.dataOut!.subarray(12, 22))).toBe(hex(tagged.subarray(12, 22)));
        expect(b.dataOut![22 + 8]).toBe(8);
        expect(checksum(b.dataOut!.subarray(22, 42))).toBe(0);
      }
    });

    it("redirects through the FIB: MACs from the route's neighbour and device, out of the rule's device", async () => {
      // The lab's right end routes 192.0.2.0/24 out of its veth, with a static neighbour for the
      // left end; 203.0.113.0/24 has no route there.
      await lab.exec(net.right.netns, ['sysctl', '-qw', 'net.ipv4.conf.all.forwarding=1']);
      await use({ rules: [{ id: 'fib', action: 'redirect', to: device }] });
      const ifindex = ifindexOf(device, net.right.netns);
      const routed = frame({ src: '198.51.100.7', dst: net.left.ipv4, ttl: 64 });
      const unrouted = frame({ src: '198.51.100.7', dst: '203.0.113.1', ttl: 64 });
      // struct xdp_md: data_end = the frame's length, ingress_ifindex at 12
      const xdpCtx = (data: Uint8Array): Buffer => {
        const ctx = Buffer.alloc(24);
        ctx.writeUInt32LE(data.length, 4);
        ctx.writeUInt32LE(ifindex, 12);
        return ctx;
      };
      // struct __sk_buff up to ifindex: ingress_ifindex at 36, ifindex at 40
      const skbCtx = Buffer.alloc(44);
      skbCtx.writeUInt32LE(ifindex, 36);
      skbCtx.writeUInt32LE(ifindex, 40);
      const ctxOf = (hook: TestHook, data: Uint8Array): Buffer =>
        hook === 'xdp' ? xdpCtx(data) : skbCtx;
      const runs = HOOKS.flatMap((hook) =>
        [routed, unrouted].map((data) => ({
          progId: program(hook).id,
          data,
          ctx: ctxOf(hook, data),
        })),
      );
      const [xdpRouted, xdpUnrouted, tcRouted, tcUnrouted] = await testRunInNetns(
        net.right.netns,
        runs,
      );
      for (const [hook, a, b] of [
        ['xdp', xdpRouted, xdpUnrouted],
        ['tc-ingress', tcRouted, tcUnrouted],
      ] as const) {
        expect(WORDS[hook][a.retval]).toBe('redirect');
        expect(hex(a.dataOut.subarray(0, 12))).toBe(
          hex(mac(net.left.mac)) + hex(mac(net.right.mac)),
        );
        expect(a.dataOut[14 + 8]).toBe(63);
        expect(checksum(a.dataOut.subarray(14, 34))).toBe(0);
        expect(WORDS[hook][b.retval]).toBe('drop');
        expect(counted(hook)).toEqual({
          rules: { fib: 2 },
          verdicts: { pass: 0, drop: 1, redirect: 1 },
          events: { fwdFailed: 1 },
          limiters: {},
        });
      }
    });

    it('hands a frame whose TTL would expire to the stack, and drops a frame that is not IP', async () => {
      await use({ rules: [{ id: 'fwd', action: 'redirect', to: device, via: NEXT_HOP }] });
      for (const hook of HOOKS) {
        expect(
          await verdicts(
            [frame({ ttl: 1 }), frame({ family: 6, ttl: 0 }), frame({ etherType: 0x0806 })],
            hook,
          ),
        ).toEqual(['pass', 'pass', 'drop']);
        expect(counted(hook)).toEqual({
          rules: { fwd: 3 },
          verdicts: { pass: 2, drop: 1, redirect: 0 },
          events: { fwdToStack: 2, fwdFailed: 1 },
          limiters: {},
        });
      }
    });
  });
});
