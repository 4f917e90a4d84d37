// The pipeline memoizes each walk's outcome by the packet's classes (per CPU, under a stamp the
// loader renews with every rule-set write): what a packet gets must stay exactly what the rules
// say, whatever the packets before it left in the memo.
//
// Every rule set here has a source-prefix rule, so packets go through the full classifier (and
// its memo) rather than the array-only first step of small rule sets.
import { afterAll, beforeAll, expect, it } from 'vitest';

import { openPinned, possibleCpus, type BpfMap } from '../../bpf/index.js';

import type { Dataplane, DataplaneSpec, SetSpec } from '../../controller/dataplane/dataplane.js';
import type { RuleSetSpec, RuleSpec } from '../../controller/dataplane/model.js';
import type { Lab, PairTopology } from '../../netns-lab/lab.js';
import { concat, ipv4Frame, udpHeader } from '../helpers/packets/build.js';
import { openPairDataplane } from '../helpers/pair-dataplane.js';
import { describeKernel } from '../helpers/privileges.js';

const XDP_DROP = 1;
const XDP_PASS = 2;

/** A UDP datagram whose payload starts with `first`. */
function udp(o: { src?: string; sport?: number; dport?: number; first?: number } = {}): Uint8Array {
  const payload = Uint8Array.of(o.first ?? 0, 0, 0, 0, 0, 0, 0, 0);
  const l4 = concat(udpHeader(o.sport ?? 4000, o.dport ?? 80, payload.length), payload);
  return ipv4Frame(17, l4, { src: o.src ?? '192.0.2.1', dst: '198.51.100.1' });
}

/** Sends the classifier's way: a rule on a source prefix no frame here has. */
const LAN: RuleSpec = { id: 'lan', src: '10.0.0.0/8', action: 'pass' };

await describeKernel('the pipeline memo', () => {
  let lab: Lab;
  let net: PairTopology;
  let dp: Dataplane;
  let dir: string;

  const apply = async (ruleSet: RuleSetSpec, sets: SetSpec[] = []): Promise<void> => {
    const spec: DataplaneSpec = {
      sets,
      attachments: [{ device: net.right.device, hook: 'xdp', rules: ruleSet }],
    };
    await dp.apply(spec);
  };
  const run = async (frame: Uint8Array, repeat = 1): Promise<number> =>
    (await dp.attachments.get(`${net.right.device}@xdp`)!.program.testRun({ data: frame, repeat }))
      .retval;
  const packets = (id: string): number =>
    dp.counters()[0].rules.find((r) => r.id === id)?.packets ?? 0;

  beforeAll(async () => {
    ({ lab, net, dp, dir } = await openPairDataplane());
  });

  afterAll(async () => {
    await dp?.destroy().catch(() => undefined);
    await lab?.destroy();
  });

  it('a rule-set change reaches the next packet, even where the classes keep their ids', async () => {
    // Two rules swap places: the frame's classes keep their numbers (the loader renumbers
    // nothing here) while its deciding position moves from 2 to 1, where a memo not renewed
    // would find 'other' and pass it.
    const web: RuleSpec = { id: 'web', proto: 'udp', dport: 80, action: 'drop' };
    const other: RuleSpec = { id: 'other', proto: 'udp', dport: 81, action: 'pass' };
    for (let round = 0; round < 10; round++) {
      await apply({ rules: [LAN, other, web] });
      expect(await run(udp(), 50)).toBe(XDP_DROP);
      await apply({ rules: [LAN, web, other] });
      expect(await run(udp(), 50)).toBe(XDP_DROP);
      expect(await run(udp({ dport: 81 }), 50)).toBe(XDP_PASS);
    }
  });

  it('count rules count every packet, memoized or not', async () => {
    // 'all-udp' alone fits the memo's four count rules per outcome; six do not
    const counts = (n: number): RuleSpec[] =>
      Array.from({ length: n }, (_, i) => ({ id: `c${n}-${i}`, proto: 'udp', action: 'count' }));
    for (const n of [1, 4, 6]) {
      await apply({
        rules: [...counts(n), LAN, { id: `dns${n}`, proto: 'udp', dport: 53, action: 'drop' }],
      });
      expect(await run(udp({ dport: 53 }), 1000)).toBe(XDP_DROP);
      expect(await run(udp({ dport: 54 }), 500)).toBe(XDP_PASS);
      expect(counts(n).map((r) => packets(r.id!))).toEqual(counts(n).map(() => 1500));
      expect(packets(`dns${n}`)).toBe(1000);
    }
  });

  it('a tcpdump-expression rule is judged for each packet of the same classes', async () => {
    // 'two' first, so that 'odd' is decided by the second classification, after the bank
    await apply({
      rules: [
        { id: 'two', filter: 'udp[8] & 2 = 2', action: 'pass' },
        { id: 'odd', filter: 'udp[8] & 1 = 1', action: 'drop' },
        LAN,
      ],
    });
    for (let i = 0; i < 40; i++) {
      const expected = i & 2 ? XDP_PASS : i & 1 ? XDP_DROP : XDP_PASS;
      expect(await run(udp({ first: i }), 10)).toBe(expected);
    }
    expect(packets('two')).toBe(200);
    expect(packets('odd')).toBe(100);
  });

  it('a change of set membership reaches the next packet', async () => {
    const block = (...prefixes: string[]): SetSpec[] => [{ name: 'block', prefixes }];
    const rules: RuleSetSpec = { rules: [{ id: 'blocked', srcSet: 'block', action: 'drop' }, LAN] };
    const frame = udp({ src: '198.51.100.7' });
    await apply(rules, block('192.0.2.0/24'));
    expect(await run(frame, 100)).toBe(XDP_PASS);
    await apply(rules, block('192.0.2.0/24', '198.51.100.0/24'));
    expect(await run(frame, 100)).toBe(XDP_DROP);
    await apply(rules, block('192.0.2.0/24'));
    expect(await run(frame, 100)).toBe(XDP_PASS);
  });

  it('stays exact over more distinct class tuples than it has slots', async () => {
    // 100 source-port rules, then 60 destination-port rules: 101 x 61 = 6,161 class tuples, more
    // than the 4,096 slots per CPU, so slots are taken over by other tuples and found stale. Each
    // tuple is sent twice, and each packet must be counted by the rule that decides it.
    const sports = Array.from({ length: 100 }, (_, i): RuleSpec => ({
      id: `s${i}`,
      proto: 'udp',
      sport: 1000 + i,
      action: 'pass',
    }));
    const dports = Array.from({ length: 60 }, (_, i): RuleSpec => ({
      id: `d${i}`,
      proto: 'udp',
      dport: 2000 + i,
      action: 'drop',
    }));
    await apply({ rules: [LAN, ...sports, ...dports] });
    const wrong: string[] = [];
    for (let round = 0; round < 2; round++) {
      for (let sport = 1000; sport <= 1100; sport++) {
        for (let dport = 2000; dport <= 2060; dport++) {
          const expected = sport < 1100 || dport === 2060 ? XDP_PASS : XDP_DROP;
          if ((await run(udp({ sport, dport }))) !== expected) wrong.push(`${sport}->${dport}`);
        }
      }
    }
    expect(wrong).toEqual([]);
    const miscounted = dp
      .counters()[0]
      .rules.filter(
        (r) => r.packets !== (r.id.startsWith('s') ? 122 : r.id.startsWith('d') ? 2 : 0),
      );
    expect(miscounted.map((r) => `${r.id}: ${r.packets}`)).toEqual([]);
  });

  it('answers from a slot only for the very tuple the slot holds', async () => {
    // struct sl_memo_slot (pipeline.bpf.c, private to it): u64 key[3], u32 state, u32 pos,
    // u16 count[4], u32 ncount, u32 pad
    const DECIDED = 2;
    const at = (i: number): Buffer => Buffer.from(Uint32Array.of(i).buffer);
    const pinned = openPinned(`${dir}/att/${net.right.device}@xdp/sl_memo`);
    if (pinned.kind !== 'map') throw new Error('sl_memo is not pinned as a map');
    const memo: BpfMap = pinned.map;
    try {
      await apply({
        rules: [
          LAN,
          { id: 'from-1000', proto: 'udp', sport: 1000, action: 'pass' },
          { id: 'to-80', proto: 'udp', dport: 80, action: 'drop' },
        ],
      });
      /** Every slot on every CPU holds `value`. */
      const fill = (value: Buffer): void => {
        const perCpu = Array.from({ length: possibleCpus() }, () => value);
        for (let i = 0; i < 4096; i++) memo.update(at(i), perCpu);
      };
      /** `slotKey` decided at position 2 ('to-80', a drop). */
      const drop = (slotKey: Buffer): Buffer =>
        Buffer.concat([slotKey, at(DECIDED), at(2), Buffer.alloc(16)]);
      const frame = udp({ sport: 1000 });
      fill(Buffer.alloc(48));
      expect(await run(frame)).toBe(XDP_PASS);
      // the frame's slot: decided at position 1
      let key: Buffer | undefined;
      for (let i = 0; i < 4096 && !key; i++) {
        const slot = memo
          .lookupPerCpu(at(i))
          ?.find((v) => v.readUInt32LE(24) === DECIDED && v.readUInt32LE(28) === 1);
        key = slot?.subarray(0, 24);
      }
      expect(key).toBeDefined();
      // a slot whose key differs in any of its three words is not the frame's
      for (let word = 0; word < 3; word++) {
        const other = Buffer.from(key!);
        other[word * 8] ^= 1;
        fill(drop(other));
        expect(await run(frame)).toBe(XDP_PASS);
      }
      // and one that holds the frame's tuple is what decides it (the memo is read at all)
      fill(drop(key!));
      expect(await run(frame)).toBe(XDP_DROP);
    } finally {
      memo.close();
    }
  });
});
