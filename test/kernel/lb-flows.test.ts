// lb_xdp's flow table: stickiness across Maglev table swaps, re-selection when a backend goes, TCP state, idle timeouts, the insert cap, and the per-CPU LRU variant, under BPF_PROG_TEST_RUN inside a throw-away namespace.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { BpfMap, BpfObject, BpfProgram } from '../../bpf/index.js';
import {
  decodeFlow,
  encodeFlow,
  encodeFlowTableKey,
  type FlowKeyImage,
} from '../../controller/lb/lb-abi.js';
import {
  LbMaps,
  loadLbObject,
  type LbFlowEntry,
  type LbFlowTable,
} from '../../controller/lb/lb-maps.js';
import {
  ACK,
  FIN,
  RST,
  SYN,
  XDP_TX,
  addressBytes,
  frame,
  type FrameSpec,
} from '../helpers/lb-frames.js';
import { LbLab, NEIGHBOURS } from '../helpers/lb-lab.js';
import { describeKernel } from '../helpers/privileges.js';

const BACKENDS: Record<number, string> = { 1: '192.0.2.11', 2: '192.0.2.12', 3: '192.0.2.13' };

/** A table of `size` slots (a prime) all naming `id`. */
function all(id: number, size = 7): Uint32Array {
  return new Uint32Array(size).fill(id);
}

interface Setup {
  object: BpfObject;
  maps: LbMaps;
  xdp: BpfProgram;
}

function open(flowTable: LbFlowTable): Setup {
  const object = loadLbObject({ flowTable, flowEntries: 4096 });
  const maps = LbMaps.open(object);
  for (const [id, address] of Object.entries(BACKENDS)) maps.setBackend(Number(id), { address });
  return { object, maps, xdp: object.program('lb_xdp') };
}

function close(s: Setup | undefined): void {
  s?.maps.close();
  s?.xdp.close();
  s?.object.close();
}

await describeKernel('the load balancer flow table', () => {
  let lab: LbLab;
  let s: Setup;
  let flowMap: BpfMap;
  let nextVip = 1;

  beforeAll(async () => {
    lab = await LbLab.create();
    s = open('shared');
    flowMap = s.object.map('lb_flows4');
  });

  afterAll(async () => {
    flowMap?.close();
    close(s);
    await lab?.destroy();
  });

  /** A new TCP service (its own VIP, id and table) for one test. */
  async function newService(
    table: Uint32Array,
    extra: { udpTimeoutSeconds?: number; proto?: 'tcp' | 'udp'; setup?: Setup } = {},
  ): Promise<{ id: number; vip: string }> {
    const id = nextVip++;
    const vip = `203.0.113.${id}`;
    const m = (extra.setup ?? s).maps;
    m.setService(
      { vip, port: 80, proto: extra.proto ?? 'tcp' },
      {
        id,
        hashMode: '5tuple',
        forwardMode: 'dsr',
        seed: id,
        udpTimeoutSeconds: extra.udpTimeoutSeconds,
      },
    );
    await m.setMaglevTable(id, table);
    return { id, vip };
  }

  /** Sends one frame; the backend its destination MAC names, or 'passed'. */
  async function backendOf(spec: FrameSpec, setup: Setup = s): Promise<string> {
    const { retval, data } = await lab.run(setup.xdp, frame(spec));
    if (retval !== XDP_TX) return 'passed';
    const dmac = [...data.subarray(0, 6)].map((b) => b.toString(16).padStart(2, '0')).join(':');
    return Object.entries(BACKENDS).find(([, a]) => NEIGHBOURS[a] === dmac)?.[1] ?? dmac;
  }

  async function entryOf(
    serviceId: number,
    sport: number,
    setup: Setup = s,
  ): Promise<LbFlowEntry | undefined> {
    return (await setup.maps.readFlows()).find(
      (e) => e.serviceId === serviceId && e.flow.sport === sport,
    );
  }

  function delta<T extends Record<string, number>>(before: T, after: T): Partial<T> {
    const out: Record<string, number> = {};
    for (const k of Object.keys(after)) if (after[k] !== before[k]) out[k] = after[k]! - before[k]!;
    return out as Partial<T>;
  }

  /** Rewrites entry (svc, flow)'s timestamp through the raw map. */
  function setStamp(svc: number, flow: FlowKeyImage, tsNs: bigint): void {
    const key = encodeFlowTableKey(flow, svc);
    const raw = flowMap.lookup(key);
    if (!raw) throw new Error('no such flow entry');
    flowMap.update(key, encodeFlow({ ...decodeFlow(raw), tsNs }));
  }

  /** As if entry (svc, flow) had last been seen at boot. */
  function age(svc: number, flow: FlowKeyImage): void {
    setStamp(svc, flow, 1n);
  }

  describe('stickiness', () => {
    it('keeps a flow on its backend after the table is swapped to one that maps it elsewhere', async () => {
      const { id, vip } = await newService(all(1));
      const flow = { src: '192.0.2.100', dst: vip, sport: 1000 };
      expect(await backendOf({ ...flow, flags: SYN })).toBe('192.0.2.11');
      await s.maps.setMaglevTable(id, all(2, 11));
      const before = s.maps.events();
      expect([
        await backendOf({ ...flow, flags: ACK }),
        await backendOf({ ...flow, flags: ACK | 0x08 }),
        await backendOf({ ...flow, sport: 1001, flags: SYN }),
      ]).toEqual(['192.0.2.11', '192.0.2.11', '192.0.2.12']);
      expect(delta(before, s.maps.events())).toEqual({ flowHit: 2, flowMiss: 1, tx: 3 });
    });

    it('re-selects a flow, on any packet, once its backend is removed', async () => {
      s.maps.setBackend(10, { address: '192.0.2.13' });
      const { id, vip } = await newService(all(10));
      const flow = { src: '192.0.2.100', dst: vip, sport: 2000 };
      expect(await backendOf({ ...flow, flags: SYN })).toBe('192.0.2.13');
      await s.maps.setMaglevTable(id, all(2));
      s.maps.removeBackend(10);
      const before = s.maps.events();
      expect(await backendOf({ ...flow, flags: ACK })).toBe('192.0.2.12');
      expect(delta(before, s.maps.events())).toEqual({ flowStale: 1, nonSynMiss: 1, tx: 1 });
      expect((await entryOf(id, 2000))?.backend).toBe(2);
    });

    it('keeps a down backend for packets of its flows but re-selects on a SYN', async () => {
      s.maps.setBackend(11, { address: '192.0.2.11' });
      const { id, vip } = await newService(all(11));
      const flow = { src: '192.0.2.100', dst: vip, sport: 3000 };
      expect(await backendOf({ ...flow, flags: SYN })).toBe('192.0.2.11');
      await s.maps.setMaglevTable(id, all(3));
      s.maps.setBackend(11, { address: '192.0.2.11', state: 'down' });
      expect(await backendOf({ ...flow, flags: ACK })).toBe('192.0.2.11');
      const before = s.maps.events();
      expect(await backendOf({ ...flow, flags: SYN })).toBe('192.0.2.13');
      expect(delta(before, s.maps.events())).toEqual({ flowStale: 1, tx: 1 });
    });

    it('keeps a draining backend for its flows, SYN included', async () => {
      s.maps.setBackend(12, { address: '192.0.2.12' });
      const { id, vip } = await newService(all(12));
      const flow = { src: '192.0.2.100', dst: vip, sport: 4000 };
      expect(await backendOf({ ...flow, flags: SYN })).toBe('192.0.2.12');
      await s.maps.setMaglevTable(id, all(1));
      s.maps.setBackend(12, { address: '192.0.2.12', state: 'draining' });
      expect([
        await backendOf({ ...flow, flags: ACK }),
        await backendOf({ ...flow, flags: SYN }),
        await backendOf({ ...flow, sport: 4001, flags: SYN }),
      ]).toEqual(['192.0.2.12', '192.0.2.12', '192.0.2.11']);
    });

    it('counts a TCP packet without SYN that misses the table, selects it by Maglev and inserts it', async () => {
      const { id, vip } = await newService(all(3));
      const before = s.maps.events();
      expect(await backendOf({ src: '192.0.2.100', dst: vip, sport: 5000, flags: ACK })).toBe(
        '192.0.2.13',
      );
      expect(delta(before, s.maps.events())).toEqual({ flowMiss: 1, nonSynMiss: 1, tx: 1 });
      expect((await entryOf(id, 5000))?.backend).toBe(3);
    });

    it('does not count a SYN or a UDP packet that misses as a non-SYN miss', async () => {
      const tcp = await newService(all(1));
      const udp = await newService(all(1), { proto: 'udp' });
      const before = s.maps.events();
      await backendOf({ src: '192.0.2.100', dst: tcp.vip, sport: 5100, flags: SYN });
      await backendOf({ src: '192.0.2.100', dst: udp.vip, sport: 5100, proto: 'udp' });
      expect(delta(before, s.maps.events())).toEqual({ flowMiss: 2, tx: 2 });
    });
  });

  describe('TCP state and timeouts', () => {
    it('marks an entry closing on FIN and on RST, and a new SYN clears the mark', async () => {
      const { id, vip } = await newService(all(1));
      await backendOf({ src: '192.0.2.100', dst: vip, sport: 6000, flags: SYN });
      await backendOf({ src: '192.0.2.100', dst: vip, sport: 6001, flags: SYN });
      const before = s.maps.events();
      await backendOf({ src: '192.0.2.100', dst: vip, sport: 6000, flags: FIN | ACK });
      await backendOf({ src: '192.0.2.100', dst: vip, sport: 6001, flags: RST });
      await backendOf({ src: '192.0.2.100', dst: vip, sport: 6001, flags: RST });
      expect(delta(before, s.maps.events())).toEqual({ flowHit: 3, flowClosing: 2, tx: 3 });
      expect([(await entryOf(id, 6000))?.closing, (await entryOf(id, 6001))?.closing]).toEqual([
        true,
        true,
      ]);
      await backendOf({ src: '192.0.2.100', dst: vip, sport: 6001, flags: SYN });
      expect((await entryOf(id, 6001))?.closing).toBe(false);
    });

    it('ages a closing entry out after the closing timeout, and only then', async () => {
      s.maps.setConfig({ closingTimeoutSeconds: 5 });
      const { id, vip } = await newService(all(1));
      const flow = { src: '192.0.2.100', dst: vip, sport: 6100 };
      await backendOf({ ...flow, flags: SYN });
      await backendOf({ ...flow, flags: FIN | ACK });
      await s.maps.setMaglevTable(id, all(2));
      expect(await backendOf({ ...flow, flags: ACK })).toBe('192.0.2.11');
      age(id, {
        family: 4,
        src: addressBytes(flow.src),
        dst: addressBytes(vip),
        sport: 6100,
        dport: 80,
        proto: 6,
      });
      const before = s.maps.events();
      expect(await backendOf({ ...flow, flags: ACK })).toBe('192.0.2.12');
      expect(delta(before, s.maps.events())).toMatchObject({ flowStale: 1, nonSynMiss: 1 });
      s.maps.setConfig({});
    });

    it('idles a UDP flow out after its service timeout, and keeps it before', async () => {
      const { id, vip } = await newService(all(1), { proto: 'udp', udpTimeoutSeconds: 30 });
      const flow = { src: '192.0.2.100', dst: vip, sport: 7000, proto: 'udp' as const };
      expect(await backendOf(flow)).toBe('192.0.2.11');
      await s.maps.setMaglevTable(id, all(3));
      expect(await backendOf(flow)).toBe('192.0.2.11');
      const key = {
        family: 4 as const,
        src: addressBytes(flow.src),
        dst: addressBytes(vip),
        sport: 7000,
        dport: 80,
        proto: 17,
      };
      age(id, key);
      const before = s.maps.events();
      expect(await backendOf(flow)).toBe('192.0.2.13');
      expect(delta(before, s.maps.events())).toEqual({ flowStale: 1, tx: 1 });
    });

    it('never idles a UDP flow out when its service timeout is 0', async () => {
      const { id, vip } = await newService(all(1), { proto: 'udp' });
      const flow = { src: '192.0.2.100', dst: vip, sport: 7100, proto: 'udp' as const };
      await backendOf(flow);
      await s.maps.setMaglevTable(id, all(3));
      age(id, {
        family: 4,
        src: addressBytes(flow.src),
        dst: addressBytes(vip),
        sport: 7100,
        dport: 80,
        proto: 17,
      });
      expect(await backendOf(flow)).toBe('192.0.2.11');
    });

    it('refreshes the timestamp of an entry a packet hits once it is over a second old', async () => {
      const { id, vip } = await newService(all(1), { proto: 'udp', udpTimeoutSeconds: 30 });
      const flow = { src: '192.0.2.100', dst: vip, sport: 7200, proto: 'udp' as const };
      const key = {
        family: 4 as const,
        src: addressBytes(flow.src),
        dst: addressBytes(vip),
        sport: 7200,
        dport: 80,
        proto: 17,
      };
      await backendOf(flow);
      const inserted = (await entryOf(id, 7200))!.lastSeenNs;
      // half a second older: a hit leaves it
      setStamp(id, key, inserted - 500_000_000n);
      await backendOf(flow);
      expect((await entryOf(id, 7200))?.lastSeenNs).toBe(inserted - 500_000_000n);
      // five seconds older: a hit refreshes it to the coarse clock's now
      setStamp(id, key, inserted - 5_000_000_000n);
      await backendOf(flow);
      expect((await entryOf(id, 7200))!.lastSeenNs).toBeGreaterThanOrEqual(inserted);
    });
  });

  describe('insert cap', () => {
    it('forwards new flows but inserts none with a cap of 0', async () => {
      const { id, vip } = await newService(all(2));
      s.maps.setConfig({ insertCap: { rate: 0, burst: 0 } });
      const before = { events: s.maps.events(), svc: s.maps.serviceCounters(id) };
      const got: string[] = [];
      for (let i = 0; i < 4; i++)
        got.push(await backendOf({ src: '192.0.2.100', dst: vip, sport: 8000 + i }));
      expect(got).toEqual(new Array(4).fill('192.0.2.12'));
      expect(delta(before.events, s.maps.events())).toEqual({ flowMiss: 4, insertCap: 4, tx: 4 });
      expect((await s.maps.readFlows()).filter((e) => e.serviceId === id)).toEqual([]);
      expect(s.maps.serviceCounters(id)).toMatchObject({ packets: 4, newFlows: 0 });
      s.maps.setConfig({});
    });

    it('inserts as many new flows as the bucket holds, then forwards the rest statelessly', async () => {
      const { id, vip } = await newService(all(2));
      s.maps.setConfig({ insertCap: { rate: 0, burst: 2 } });
      const before = s.maps.events();
      for (let i = 0; i < 5; i++)
        await backendOf({ src: '192.0.2.100', dst: vip, sport: 8100 + i });
      expect(delta(before, s.maps.events())).toEqual({ flowMiss: 5, insertCap: 3, tx: 5 });
      const inserted = (await s.maps.readFlows())
        .filter((e) => e.serviceId === id)
        .map((e) => e.flow.sport)
        .sort();
      expect(inserted).toEqual([8100, 8101]);
      // an inserted flow is a hit from then on, a skipped one misses again
      const again = s.maps.events();
      await backendOf({ src: '192.0.2.100', dst: vip, sport: 8100, flags: ACK });
      await backendOf({ src: '192.0.2.100', dst: vip, sport: 8104, flags: ACK });
      expect(delta(again, s.maps.events())).toEqual({
        flowHit: 1,
        flowMiss: 1,
        nonSynMiss: 1,
        insertCap: 1,
        tx: 2,
      });
      s.maps.setConfig({});
    });

    it('refills the bucket at the configured rate', async () => {
      const { id, vip } = await newService(all(2));
      s.maps.setConfig({ insertCap: { rate: 1000, burst: 1 } });
      await backendOf({ src: '192.0.2.100', dst: vip, sport: 8200 });
      await new Promise((done) => setTimeout(done, 50));
      await backendOf({ src: '192.0.2.100', dst: vip, sport: 8201 });
      const inserted = (await s.maps.readFlows()).filter((e) => e.serviceId === id);
      expect(inserted.length).toBe(2);
      s.maps.setConfig({});
    });
  });

  describe('the per-CPU LRU variant', () => {
    let pc: Setup;

    beforeAll(() => {
      pc = open('per-cpu');
    });

    afterAll(() => {
      close(pc);
    });

    it('uses lb_flows4_pc and lb_flows6_pc, created with BPF_F_NO_COMMON_LRU, and leaves the shared ones at one entry', () => {
      const maps = ['lb_flows4', 'lb_flows6', 'lb_flows4_pc', 'lb_flows6_pc'].map((name) =>
        pc.object.map(name),
      );
      try {
        const [flows4, flows6, flows4Pc, flows6Pc] = maps;
        expect(pc.maps.flowTable).toBe('per-cpu');
        expect({
          shared: [flows4!.maxEntries, flows6!.maxEntries],
          flags: [flows4Pc!.flags & 2, flows6Pc!.flags & 2],
        }).toEqual({ shared: [1, 1], flags: [2, 2] });
        expect(flows4Pc!.maxEntries).toBeGreaterThanOrEqual(4096);
        expect(flows6Pc!.maxEntries).toBeGreaterThanOrEqual(4096);
      } finally {
        for (const m of maps) m.close();
      }
    });

    it('keeps a flow on its backend across a table swap, as the shared table does', async () => {
      const { id, vip } = await newService(all(1), { setup: pc });
      const flow = { src: '192.0.2.100', dst: vip, sport: 9000 };
      expect(await backendOf({ ...flow, flags: SYN }, pc)).toBe('192.0.2.11');
      await pc.maps.setMaglevTable(id, all(2));
      expect(await backendOf({ ...flow, flags: ACK }, pc)).toBe('192.0.2.11');
      expect(await backendOf({ ...flow, sport: 9001 }, pc)).toBe('192.0.2.12');
      const mine = (await pc.maps.readFlows()).filter((e) => e.serviceId === id);
      expect(mine.map((e) => [e.flow.sport, e.backend]).sort()).toEqual([
        [9000, 1],
        [9001, 2],
      ]);
      const counted = await pc.maps.countFlows();
      expect(counted.services.get(id)).toBe(2);
      expect([counted.backends.get(1) ?? 0, counted.backends.get(2) ?? 0]).toEqual([
        (await pc.maps.readFlows()).filter((e) => e.backend === 1).length,
        (await pc.maps.readFlows()).filter((e) => e.backend === 2).length,
      ]);
    });
  });
});
