// The load balancer's kernel-test fixture: an LbLab namespace, lb.o with its maps and lb_xdp (and lb_decap.o for the encapsulating modes), set up once per describe block and closed after it.
//
// useLbFixture() registers a beforeAll and an afterAll in the describe block that calls it and
// returns accessors, valid from the block's first test on. The afterAll closes every handle and
// removes the namespace, also when the beforeAll failed half-way.
import { afterAll, beforeAll, expect } from 'vitest';

import type { BpfObject, BpfProgram } from '../../bpf/index.js';
import {
  LbDecapMaps,
  LbMaps,
  loadLbDecapObject,
  loadLbObject,
  type LbForwardMode,
  type LbHashMode,
  type LbProto,
} from '../../controller/lb/lb-maps.js';
import { XDP_TX, addressBytes, frame, type FrameSpec } from './lb-frames.js';
import { LbLab } from './lb-lab.js';

/** What useLbFixture() sets up beyond the namespace, lb.o and lb_xdp. */
export interface LbFixtureOptions {
  /** The forward mode of serviceTo()'s services; default 'dsr'. */
  mode?: LbForwardMode;
  /** serviceTo() seeds each service's flow hash with seedBase + its id; default 0. */
  seedBase?: number;
  /** Also load lb_decap.o (decap, decapXdp), with these addresses local to lb_decap_xdp. */
  decap?: { localAddresses?: string[] };
  /** Writes what every test of the block needs (config, backends, services) once lb.o is open. */
  setup?: (maps: LbMaps) => void | Promise<void>;
}

/** Where a serviceTo() service listens, and how it hashes. */
export interface LbServiceToOptions {
  /** Default 80; 0 for every port. */
  port?: number;
  /** Default 'tcp'. */
  proto?: LbProto;
  /** Default '5tuple'. */
  hashMode?: LbHashMode;
}

/** The fixture's handles; each accessor throws when read before the beforeAll set it up. */
export interface LbFixture {
  readonly lab: LbLab;
  readonly object: BpfObject;
  readonly maps: LbMaps;
  /** lb_xdp of lb.o. */
  readonly xdp: BpfProgram;
  /** lb_decap.o's maps (with `decap`). */
  readonly decap: LbDecapMaps;
  /** lb_decap_xdp (with `decap`). */
  readonly decapXdp: BpfProgram;
  /** Another program of lb.o (`lb_nat_tc`), opened once and closed with the rest. */
  program(name: string): BpfProgram;
  /**
   * A new service (the next id, from 1) at `vip` whose Maglev table names only `backend`, in the
   * fixture's mode; resolves with its id.
   */
  serviceTo(vip: string, backend: number, options?: LbServiceToOptions): Promise<number>;
  /** The hash lb_xdp stored for the flow of service `id` from source port `sport`. */
  hashOf(id: number, sport: number): Promise<number>;
}

/**
 * Registers the set-up (namespace, lb.o, its maps and lb_xdp, `setup`) and the teardown of one
 * describe block, and returns the handles. The set-up throws what LbLab.create() and the bpf area
 * throw (a `VerifierError` for a rejected program); it needs what the kernel tests need.
 */
export function useLbFixture(options: LbFixtureOptions = {}): LbFixture {
  let lab: LbLab | undefined;
  let object: BpfObject | undefined;
  let maps: LbMaps | undefined;
  let xdp: BpfProgram | undefined;
  let decapObject: BpfObject | undefined;
  let decap: LbDecapMaps | undefined;
  let decapXdp: BpfProgram | undefined;
  const programs = new Map<string, BpfProgram>();
  let nextId = 1;

  beforeAll(async () => {
    lab = await LbLab.create();
    object = loadLbObject();
    maps = LbMaps.open(object);
    xdp = object.program('lb_xdp');
    if (options.decap) {
      decapObject = loadLbDecapObject();
      decap = LbDecapMaps.open(decapObject);
      decapXdp = decapObject.program('lb_decap_xdp');
      for (const address of options.decap.localAddresses ?? []) decap.addLocalAddress(address);
    }
    await options.setup?.(maps);
  });

  afterAll(async () => {
    maps?.close();
    xdp?.close();
    for (const p of programs.values()) p.close();
    object?.close();
    decap?.close();
    decapXdp?.close();
    decapObject?.close();
    await lab?.destroy();
  });

  const ready = <T>(handle: T | undefined, what: string): T => {
    if (handle === undefined) {
      throw new Error(
        `the load-balancer fixture has no ${what}: read before its set-up${
          what.startsWith('decap') ? ' or made without `decap`' : ''
        }`,
      );
    }
    return handle;
  };

  return {
    get lab() {
      return ready(lab, 'lab');
    },
    get object() {
      return ready(object, 'object');
    },
    get maps() {
      return ready(maps, 'maps');
    },
    get xdp() {
      return ready(xdp, 'xdp');
    },
    get decap() {
      return ready(decap, 'decap');
    },
    get decapXdp() {
      return ready(decapXdp, 'decapXdp');
    },
    program(name) {
      let p = programs.get(name);
      if (!p) {
        p = ready(object, 'object').program(name);
        programs.set(name, p);
      }
      return p;
    },
    async serviceTo(vip, backend, { port = 80, proto = 'tcp', hashMode = '5tuple' } = {}) {
      const m = ready(maps, 'maps');
      const id = nextId++;
      m.setService(
        { vip, port, proto },
        { id, hashMode, forwardMode: options.mode ?? 'dsr', seed: (options.seedBase ?? 0) + id },
      );
      await m.setMaglevTable(id, new Uint32Array(5).fill(backend));
      return id;
    },
    async hashOf(id, sport) {
      const flows = await ready(maps, 'maps').readFlows();
      const e = flows.find((x) => x.serviceId === id && x.flow.sport === sport);
      if (!e) throw new Error(`no flow entry for service ${id}, port ${sport}`);
      return e.hash;
    },
  };
}

// ---- IPIP and GUE ----

/** The IPv4 outer source prefix the encapsulation tests configure (lb_config ipipSource4). */
export const OUTER_SOURCE4 = '192.0.2.64/26';
/** The IPv6 outer source prefix the encapsulation tests configure (lb_config ipipSource6). */
export const OUTER_SOURCE6 = '2001:db8:1:0:ffff::/96';

/** The outer source: the prefix with its host bits (at most the low 32) from the flow hash. */
export function outerSource(prefix: string, hash: number): Uint8Array {
  const [text, lenText] = prefix.split('/') as [string, string];
  const len = Number(lenText);
  const addr = Uint8Array.from(addressBytes(text));
  const view = new DataView(addr.buffer);
  const last = addr.length - 4;
  const hostBits = Math.min(32, addr.length * 8 - len);
  const mask = hostBits === 32 ? 0xffffffff : (1 << hostBits) - 1;
  view.setUint32(last, ((view.getUint32(last) & ~mask) | (hash & mask)) >>> 0);
  return addr;
}

/** useLbFixture()'s handles for an encapsulating mode. */
export interface LbEncapFixture extends LbFixture {
  /** lb_xdp's output for `spec` sent to a new service of `backend`; expects XDP_TX. */
  encapsulate(spec: FrameSpec, backend: number): Promise<Buffer>;
}

/**
 * useLbFixture() for an encapsulating mode: lb_decap.o too, both outer source prefixes
 * configured, backends 1, 2 (192.0.2.11, .12) and 11, 12 (2001:db8:1::11, ::12), and the
 * addresses of backends 1 and 11 local to lb_decap_xdp.
 */
export function useEncapFixture(mode: 'ipip' | 'gue', seedBase: number): LbEncapFixture {
  const lb = useLbFixture({
    mode,
    seedBase,
    decap: { localAddresses: ['192.0.2.11', '2001:db8:1::11'] },
    setup(maps) {
      maps.setConfig({ ipipSource4: OUTER_SOURCE4, ipipSource6: OUTER_SOURCE6 });
      for (const [id, address] of [
        [1, '192.0.2.11'],
        [2, '192.0.2.12'],
        [11, '2001:db8:1::11'],
        [12, '2001:db8:1::12'],
      ] as const)
        maps.setBackend(id, { address });
    },
  });
  return Object.assign(lb, {
    async encapsulate(spec: FrameSpec, backend: number): Promise<Buffer> {
      await lb.serviceTo(spec.dst, backend);
      const { retval, data } = await lb.lab.run(lb.xdp, frame(spec));
      expect(retval).toBe(XDP_TX);
      return data;
    },
  });
}
