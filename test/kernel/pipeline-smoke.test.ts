// Smoke test of bpf/progs/pipeline.bpf.c: loads each hook's pair, fills the maps by hand (pipeline.h's layouts) and checks verdicts and counters.
import { afterEach, expect, it } from 'vitest';

import {
  loadProgram,
  openObject,
  type BpfMap,
  type BpfObject,
  type BpfProgram,
} from '../../bpf/index.js';
import { bpfObjectPath } from '../../bpf/progs.js';
import {
  concat,
  ether,
  ipv4Frame,
  ipv6,
  ipv6FragmentHeader,
  ipv6Header,
  ipv6OptionsHeader,
  mac,
  tcpHeader,
  udpHeader,
  vlanTag,
} from '../helpers/packets/build.js';
import { insn } from '../helpers/bpf-insn.js';
import { describeKernel } from '../helpers/privileges.js';

// pipeline.h, restated here so that this test depends on nothing but the C contract.
const SL_MAX_RULES = 4096;
const SL_MAX_CLASSES = 8192;
const SL_WORDS = 64;
const SL_DIMS = 10;
const SL_PROTO_SLOTS = 512;
const SL_PROTO_NOT_IP = 256;
const SL_VLAN_SLOTS = 4352;
const DIM = { proto: 4, dport: 6, vlan: 8 } as const;
const ACT = { pass: 0, drop: 1, count: 2, ratelimit: 3, redirect: 4 } as const;
const VERDICT = { pass: 0, drop: 1, redirect: 2 } as const;
const EV = {
  malformed: 0,
  truncated: 1,
  default: 2,
  ratelimited: 3,
  fwdToStack: 4,
  fwdFailed: 5,
  stepLimit: 6,
  filterMissing: 7,
} as const;
const SL_RULE_FILTER = 1;
const SL_LIMIT_PER_SOURCE = 2;

const XDP_DROP = 1;
const XDP_PASS = 2;
const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;

const M1 = mac('00:00:5e:00:53:01');
const M2 = mac('00:00:5e:00:53:02');

function u32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(value >>> 0);
  return b;
}

/** struct sl_vec with the given rule positions. */
function vector(positions: number[]): Buffer {
  const b = Buffer.alloc(8 + 8 * SL_WORDS);
  let summary = 0n;
  for (const p of positions) {
    const w = Math.floor(p / 64);
    const at = 8 + 8 * w;
    b.writeBigUInt64LE(b.readBigUInt64LE(at) | (1n << BigInt(p % 64)), at);
    summary |= 1n << BigInt(w);
  }
  b.writeBigUInt64LE(summary, 0);
  return b;
}

interface RuleSpec {
  action: number;
  flags?: number;
  stats: number;
  limiter?: number;
  filter?: number;
}

/** struct sl_rule */
function rule(r: RuleSpec): Buffer {
  const b = Buffer.alloc(24);
  b.writeUInt16LE(r.action, 0);
  b.writeUInt16LE(r.flags ?? 0, 2);
  b.writeUInt16LE(r.stats, 4);
  b.writeUInt16LE(r.limiter ?? 0, 6);
  b.writeUInt16LE(r.filter ?? 0, 8);
  return b;
}

interface GenSpec {
  dims: number[];
  rules: RuleSpec[];
  defaultAction?: number;
  malformedAction?: number;
  hasFilters?: boolean;
}

/** struct sl_gen_cfg; every absent class is 0, the empty vector. */
function genCfg(g: GenSpec): Buffer {
  const b = Buffer.alloc(16 + 4 * SL_DIMS + 8);
  b.writeUInt32LE(g.defaultAction ?? ACT.pass, 0);
  b.writeUInt32LE(g.malformedAction ?? ACT.drop, 4);
  b.writeUInt32LE(
    g.dims.reduce((m, d) => m | (1 << d), 0),
    8,
  );
  b.writeUInt32LE(g.rules.length, 12);
  b.writeUInt32LE(g.hasFilters ? 1 : 0, 20 + 4 * SL_DIMS);
  return b;
}

/** One loaded object with the programs of one hook. */
class Pipeline {
  readonly object: BpfObject;
  readonly main: BpfProgram;
  readonly resume: BpfProgram;
  readonly #maps = new Map<string, BpfMap>();

  constructor(readonly hook: 'xdp' | 'tc') {
    this.object = openObject(bpfObjectPath('pipeline'));
    try {
      const mine = [`pipeline_${hook}`, `resume_${hook}`];
      for (const p of this.object.programs())
        this.object.setAutoload(p.name, mine.includes(p.name));
      this.object.load();
    } catch (error: unknown) {
      this.object.close();
      throw error;
    }
    this.main = this.object.program(`pipeline_${hook}`);
    this.resume = this.object.program(`resume_${hook}`);
  }

  map(name: string): BpfMap {
    let m = this.#maps.get(name);
    if (!m) {
      m = this.object.map(name);
      this.#maps.set(name, m);
    }
    return m;
  }

  /** Generation 0: its config, rules and the class 1 vector (the rules `matching` lists). */
  configure(g: GenSpec, matching: number[]): void {
    this.map('sl_gen').update(u32(0), genCfg(g));
    g.rules.forEach((r, pos) => this.map('sl_rules').update(u32(pos), rule(r)));
    this.map('sl_vecs').update(u32(0 * SL_MAX_CLASSES + 1), vector(matching));
    this.map('sl_ctl').update(u32(0), Buffer.alloc(8));
  }

  /** Sum over CPUs of the u64 at `offset` of per-CPU map `name`, key `key`. */
  counter(name: string, key: number, offset = 0): number {
    const values = this.map(name).lookupPerCpu(u32(key)) ?? [];
    return values.reduce((sum, v) => sum + Number(v.readBigUInt64LE(offset)), 0);
  }

  events(): Record<keyof typeof EV, number> {
    const out = {} as Record<keyof typeof EV, number>;
    for (const [name, key] of Object.entries(EV))
      out[name as keyof typeof EV] = this.counter('sl_events', key);
    return out;
  }

  async run(data: Uint8Array, repeat = 1): Promise<number> {
    return (await this.main.testRun({ data, repeat })).retval;
  }

  close(): void {
    for (const m of this.#maps.values()) m.close();
    this.main.close();
    this.resume.close();
    this.object.close();
  }
}

function ip4Frame(
  proto: number,
  l4: Uint8Array,
  o: { src?: string; ttl?: number; fragOffset?: number } = {},
): Uint8Array {
  return ipv4Frame(proto, l4, {
    ...o,
    src: o.src ?? '192.0.2.1',
    dst: '198.51.100.1',
    dstMac: M2,
    srcMac: M1,
  });
}

const udp53 = concat(udpHeader(40000, 53, 4), new Uint8Array(4));
const UDP = ip4Frame(17, udp53);
const TCP = ip4Frame(6, tcpHeader({ sport: 40000, dport: 80, flags: 0x02 }));
const ARP = concat(ether(mac('ff:ff:ff:ff:ff:ff'), M1, 0x0806), new Uint8Array(28));

/** floor(log2(n)) */
const log2 = (n: number): number => 31 - Math.clz32(n);

/** Generation 0 with one DROP rule that only UDP's protocol class allows. */
function dropUdp(p: Pipeline): void {
  p.configure({ dims: [DIM.proto], rules: [{ action: ACT.drop, stats: 5 }] }, [0]);
  p.map('sl_proto').update(u32(0 * SL_PROTO_SLOTS + 17), u32(1));
}

/**
 * Generation 0 with filters: a COUNT rule (stats 1), a DROP rule that needs filter 0 to match
 * (stats 2) and a PASS rule (stats 3), all allowed by UDP's protocol class.
 */
function countThenFilteredDrop(p: Pipeline): void {
  p.configure(
    {
      dims: [DIM.proto],
      hasFilters: true,
      rules: [
        { action: ACT.count, stats: 1 },
        { action: ACT.drop, stats: 2, flags: SL_RULE_FILTER, filter: 0 },
        { action: ACT.pass, stats: 3 },
      ],
    },
    [0, 1, 2],
  );
  p.map('sl_proto').update(u32(17), u32(1));
}

await describeKernel('pipeline (smoke)', () => {
  let open: Pipeline[] = [];
  const pipeline = (hook: 'xdp' | 'tc'): Pipeline => {
    const p = new Pipeline(hook);
    open.push(p);
    return p;
  };
  afterEach(() => {
    for (const p of open) p.close();
    open = [];
  });

  it('drops UDP by protocol class at XDP and counts the packet once', async () => {
    const p = pipeline('xdp');
    dropUdp(p);
    expect(await p.run(UDP)).toBe(XDP_DROP);
    expect(await p.run(TCP)).toBe(XDP_PASS);

    expect(p.counter('sl_dev_stats', VERDICT.drop)).toBe(1);
    expect(p.counter('sl_dev_stats', VERDICT.drop, 8)).toBe(UDP.length);
    expect(p.counter('sl_dev_stats', VERDICT.pass)).toBe(1);
    expect(p.counter('sl_dev_stats', VERDICT.pass, 8)).toBe(TCP.length);
    expect(p.counter('sl_rule_stats', 5)).toBe(1);
    expect(p.counter('sl_rule_stats', 5, 8)).toBe(UDP.length);
    expect(p.counter('sl_rule_stats', 5, 16)).toBeGreaterThan(0);
    expect(p.counter('sl_hist', log2(UDP.length)) + p.counter('sl_hist', log2(TCP.length))).toBe(
      log2(UDP.length) === log2(TCP.length) ? 4 : 2,
    );
    expect(p.events()).toMatchObject({ default: 1, malformed: 0, truncated: 0 });
  });

  it('passes a frame untouched and uncounted before a generation is configured', async () => {
    const p = pipeline('xdp');
    p.map('sl_ctl').update(u32(0), Buffer.from([7, 0, 0, 0, 0, 0, 0, 0]));
    expect(await p.run(UDP)).toBe(XDP_PASS);
    expect(p.counter('sl_dev_stats', VERDICT.pass)).toBe(0);
  });

  it('applies malformed_action to truncated and malformed IPv4 without trying rules', async () => {
    const p = pipeline('xdp');
    dropUdp(p);
    expect(await p.run(UDP.subarray(0, 14 + 10))).toBe(XDP_DROP);
    const badIhl = Uint8Array.from(UDP);
    badIhl[14] = 0x44;
    expect(await p.run(badIhl)).toBe(XDP_DROP);
    expect(p.events()).toMatchObject({ truncated: 1, malformed: 1, default: 0 });
    expect(p.counter('sl_rule_stats', 5)).toBe(0);
    expect(p.counter('sl_dev_stats', VERDICT.drop)).toBe(2);
    expect(p.counter('sl_hist', log2(24))).toBe(1);
  });

  it('classifies VLAN and QinQ frames by the outer VID', async () => {
    const p = pipeline('xdp');
    p.configure({ dims: [DIM.vlan], rules: [{ action: ACT.drop, stats: 1 }] }, [0]);
    p.map('sl_vlan').update(u32(0 * SL_VLAN_SLOTS + 100), u32(1));
    const tagged = (outer: number, inner: number): Uint8Array =>
      concat(
        ether(M2, M1, 0x88a8),
        vlanTag(outer, 0x8100),
        vlanTag(inner, 0x0800),
        UDP.subarray(14),
      );
    expect(await p.run(tagged(100, 200))).toBe(XDP_DROP);
    expect(await p.run(tagged(200, 100))).toBe(XDP_PASS);
    expect(
      await p.run(concat(ether(M2, M1, 0x8100), vlanTag(0x2064, 0x0800), UDP.subarray(14))),
    ).toBe(
      XDP_DROP, // PCP 1, VID 100
    );
    expect(await p.run(UDP)).toBe(XDP_PASS);
  });

  it('finds the protocol and ports of IPv6 behind hop-by-hop and fragment headers', async () => {
    const p = pipeline('xdp');
    p.configure({ dims: [DIM.proto, DIM.dport], rules: [{ action: ACT.drop, stats: 2 }] }, [0]);
    p.map('sl_proto').update(u32(17), u32(1));
    p.map('sl_ports').update(u32((0 * 2 + 1) * 65536 + 53), u32(1));
    const ip6 = (offset: number): Uint8Array => {
      const l4 = udp53;
      const ext = concat(
        ipv6OptionsHeader(44, new Uint8Array(4)),
        ipv6FragmentHeader(17, offset, true, 9),
      );
      return concat(
        ether(M2, M1, 0x86dd),
        ipv6Header(
          { next: 0, src: ipv6('2001:db8::1'), dst: ipv6('2001:db8::2') },
          ext.length + l4.length,
        ),
        ext,
        l4,
      );
    };
    expect(await p.run(ip6(0))).toBe(XDP_DROP);
    // a later fragment has no ports: DPORT takes absent[DPORT], class 0, which allows no rule
    expect(await p.run(ip6(1))).toBe(XDP_PASS);
    // cut inside the fragment header
    expect(await p.run(ip6(0).subarray(0, 14 + 40 + 8 + 4))).toBe(XDP_DROP);
    expect(p.events()).toMatchObject({ truncated: 1, default: 1 });
  });

  it('drops UDP and passes TCP at TC with the same tables', async () => {
    const p = pipeline('tc');
    dropUdp(p);
    expect(await p.run(UDP)).toBe(TC_ACT_SHOT);
    expect(await p.run(TCP)).toBe(TC_ACT_OK);
    // (a sched_cls test run refuses IPv4 frames shorter than an IPv4 header: cut the UDP header)
    expect(await p.run(UDP.subarray(0, 14 + 20 + 4))).toBe(TC_ACT_SHOT);
    expect(p.counter('sl_dev_stats', VERDICT.drop)).toBe(2);
    expect(p.counter('sl_dev_stats', VERDICT.drop, 8)).toBe(UDP.length + 38);
    expect(p.counter('sl_dev_stats', VERDICT.pass, 8)).toBe(TCP.length);
    expect(p.counter('sl_rule_stats', 5)).toBe(1);
    expect(p.events()).toMatchObject({ truncated: 1, default: 1 });
  });

  it('lets 5 of 10 back-to-back packets through a 1000 pps bucket of depth 5', async () => {
    const p = pipeline('xdp');
    p.configure(
      { dims: [DIM.proto], rules: [{ action: ACT.ratelimit, stats: 3, limiter: 9 }] },
      [0],
    );
    p.map('sl_proto').update(u32(17), u32(1));
    const limiter = Buffer.alloc(24);
    limiter.writeBigUInt64LE(1000n, 0);
    limiter.writeBigUInt64LE(5n, 8);
    p.map('sl_limiters').update(u32(9), limiter);
    expect(await p.run(UDP, 10)).toBe(XDP_DROP);
    expect(p.counter('sl_limit_stats', 9)).toBe(5);
    expect(p.counter('sl_limit_stats', 9, 8)).toBe(5);
    expect(p.events().ratelimited).toBe(5);
    expect(p.counter('sl_rule_stats', 3)).toBe(10);

    // per source: each address has its own bucket
    limiter.writeUInt32LE(SL_LIMIT_PER_SOURCE, 16);
    p.map('sl_limiters').update(u32(10), limiter);
    p.map('sl_rules').update(u32(0), rule({ action: ACT.ratelimit, stats: 3, limiter: 10 }));
    expect(await p.run(ip4Frame(17, udp53, { src: '192.0.2.7' }), 10)).toBe(XDP_DROP);
    expect(await p.run(ip4Frame(17, udp53, { src: '192.0.2.8' }), 10)).toBe(XDP_DROP);
    expect(p.counter('sl_limit_stats', 10)).toBe(10);
    expect(p.counter('sl_limit_stats', 10, 8)).toBe(10);
    expect([...p.map('sl_src_buckets').keys()]).toHaveLength(2);
  });

  it('counts a COUNT rule and goes on to the DROP rule after it', async () => {
    const p = pipeline('xdp');
    p.configure(
      {
        dims: [DIM.proto],
        rules: [
          { action: ACT.count, stats: 7 },
          { action: ACT.drop, stats: 8 },
        ],
      },
      [0, 1],
    );
    p.map('sl_proto').update(u32(17), u32(1));
    expect(await p.run(UDP)).toBe(XDP_DROP);
    expect(p.counter('sl_rule_stats', 7)).toBe(1);
    expect(p.counter('sl_rule_stats', 8)).toBe(1);
    expect(p.counter('sl_dev_stats', VERDICT.drop)).toBe(1);
  });

  it('treats filters as not matching when the filter bank is missing, counting once', async () => {
    const p = pipeline('xdp');
    countThenFilteredDrop(p);
    expect(await p.run(UDP)).toBe(XDP_PASS);
    expect(p.events().filterMissing).toBe(1);
    expect([1, 2, 3].map((s) => p.counter('sl_rule_stats', s))).toEqual([1, 0, 1]);

    // resume_xdp with the bank's result (filter 0 matched) in sl_scratch
    const scratch = Buffer.alloc(16);
    scratch.writeBigUInt64LE(1n, 0);
    scratch.writeUInt32LE(0, 8);
    scratch.writeUInt32LE(1, 12);
    p.map('sl_scratch').update(u32(0), scratch);
    expect((await p.resume.testRun({ data: UDP })).retval).toBe(XDP_DROP);
    // the COUNT rule before the filter was counted by pipeline_xdp, not again by resume_xdp
    expect([1, 2, 3].map((s) => p.counter('sl_rule_stats', s))).toEqual([1, 1, 1]);
  });

  it('runs a filter bank and resume_xdp through sl_progs, counting each rule once', async () => {
    const p = pipeline('xdp');
    countThenFilteredDrop(p);
    // a prog array takes only programs like its owner, expected attach type included
    const expectedAttachType = p.object
      .programs()
      .find((x) => x.name === 'pipeline_xdp')?.expectedAttachType;
    // A stand-in for the generated bank: filter 0 matches every packet.
    const bank = loadProgram({
      type: 'xdp',
      name: 'sl_test_bank',
      expectedAttachType,
      insns: Buffer.concat([
        insn(0xbf, 6, 1, 0, 0), // r6 = ctx
        insn(0x62, 10, 0, -4, 0), // key 0
        insn(0xbf, 2, 10, 0, 0),
        insn(0x07, 2, 0, 0, -4),
        insn(0x18, 1, 0, 0, 0), // r1 = sl_scratch (insn 4)
        insn(0, 0, 0, 0, 0),
        insn(0x85, 0, 0, 0, 1), // map_lookup_elem
        insn(0x15, 0, 0, 8, 0), // if r0 == 0 goto out
        insn(0x7a, 0, 0, 0, 1), // fmask = 1
        insn(0x62, 0, 0, 8, 0), // gen = 0
        insn(0x62, 0, 0, 12, 1), // done = 1
        insn(0xbf, 1, 6, 0, 0),
        insn(0x18, 2, 0, 0, 0), // r2 = sl_progs (insn 12)
        insn(0, 0, 0, 0, 0),
        insn(0xb7, 3, 0, 0, 2), // SL_PROG_RESUME
        insn(0x85, 0, 0, 0, 12), // tail_call
        insn(0xb7, 0, 0, 0, XDP_PASS), // out
        insn(0x95, 0, 0, 0, 0),
      ]),
      relocations: [
        { insnIndex: 4, map: p.map('sl_scratch') },
        { insnIndex: 12, map: p.map('sl_progs') },
      ],
    });
    try {
      p.map('sl_progs').setFd(u32(0), bank);
      p.map('sl_progs').setFd(u32(2), p.resume);
      expect(await p.run(UDP)).toBe(XDP_DROP);
      expect([1, 2, 3].map((s) => p.counter('sl_rule_stats', s))).toEqual([1, 1, 0]);
      expect(p.counter('sl_dev_stats', VERDICT.drop)).toBe(1);
      expect(p.events().filterMissing).toBe(0);
    } finally {
      bank.close();
    }
  });

  it('gives up forwarding non-IP and hands TTL 1 to the stack', async () => {
    const p = pipeline('xdp');
    p.configure({ dims: [DIM.proto], rules: [{ action: ACT.redirect, stats: 4 }] }, [0]);
    p.map('sl_proto').update(u32(SL_PROTO_NOT_IP), u32(1));
    p.map('sl_proto').update(u32(17), u32(1));
    expect(await p.run(ARP)).toBe(XDP_DROP);
    expect(await p.run(ip4Frame(17, udp53, { ttl: 1 }))).toBe(XDP_PASS);
    expect(p.events()).toMatchObject({ fwdFailed: 1, fwdToStack: 1 });
    expect(p.counter('sl_dev_stats', VERDICT.drop)).toBe(1);
    expect(p.counter('sl_dev_stats', VERDICT.pass)).toBe(1);
  });

  it('ignores vector bits at positions past nrules', async () => {
    const p = pipeline('xdp');
    // a vector bit past nrules is no candidate
    p.configure({ dims: [DIM.proto], rules: [{ action: ACT.drop, stats: 1 }] }, [SL_MAX_RULES - 1]);
    p.map('sl_proto').update(u32(17), u32(1));
    expect(await p.run(UDP)).toBe(XDP_PASS);
    expect(p.events().default).toBe(1);
  });
});
