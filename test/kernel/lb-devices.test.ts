// A service restricted to some devices (LB_SVC_DEVICES, lb_svc_devs): lb_xdp balances its packets arriving on those and passes the rest, counting otherDevice; LbMaps writes, reads back and removes the device entries. BPF_PROG_TEST_RUN inside a throw-away namespace.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { BpfMap, BpfObject, BpfProgram } from '../../bpf/index.js';
import { decodeSvcDevKey } from '../../controller/lb/lb-abi.js';
import { LbMaps, loadLbObject, type LbService } from '../../controller/lb/lb-maps.js';
import { XDP_PASS, XDP_REDIRECT, XDP_TX, frame, hex } from '../helpers/lb-frames.js';
import { LbLab, xdpCtx } from '../helpers/lb-lab.js';
import { describeKernel } from '../helpers/privileges.js';

await describeKernel('a load-balancer service restricted to some devices', () => {
  let lab: LbLab;
  let object: BpfObject;
  let maps: LbMaps;
  let devs: BpfMap;
  let xdp: BpfProgram;
  let nextId = 1;

  beforeAll(async () => {
    lab = await LbLab.create();
    object = loadLbObject();
    maps = LbMaps.open(object);
    devs = object.map('lb_svc_devs');
    xdp = object.program('lb_xdp');
    maps.setBackend(1, { address: '192.0.2.11' });
  });

  afterAll(async () => {
    maps?.close();
    devs?.close();
    xdp?.close();
    object?.close();
    await lab?.destroy();
  });

  /** A DSR service at `vip`:80/tcp (or every port) to backend 1, on `devices`. */
  async function service(vip: string, devices?: number[], port = 80): Promise<LbService> {
    const s: LbService = {
      id: nextId++,
      hashMode: '5tuple',
      forwardMode: 'dsr',
      seed: 3000,
      ...(devices ? { devices } : {}),
    };
    maps.setService({ vip, port, proto: 'tcp' }, s);
    await maps.setMaglevTable(s.id, new Uint32Array(5).fill(1));
    return s;
  }

  /** lb_svc_devs as {svc, ifindex} pairs, sorted. */
  function entries(): string[] {
    return [...devs.keys()]
      .map((k) => decodeSvcDevKey(k))
      .map((d) => `${d.svc}@${d.ifindex}`)
      .sort();
  }

  /** One run of `vip`:80 arriving on `ifindex`: the verdict, whether the frame changed, deltas. */
  async function send(vip: string, ifindex: number, id: number) {
    const f = frame({ src: '198.51.100.7', dst: vip, sport: 41000 + nextId });
    const before = { events: maps.events(), packets: maps.serviceCounters(id).packets };
    const { retval, data } = await lab.run(xdp, f, xdpCtx(f.length, ifindex));
    return {
      retval,
      untouched: hex(data) === hex(f),
      otherDevice: maps.events().otherDevice - before.events.otherDevice,
      packets: maps.serviceCounters(id).packets - before.packets,
    };
  }

  it('balances a packet arriving on a device the service lists', async () => {
    const s = await service('203.0.113.50', [lab.arm.ifindex]);
    expect(await send('203.0.113.50', lab.arm.ifindex, s.id)).toEqual({
      retval: XDP_TX,
      untouched: false,
      otherDevice: 0,
      packets: 1,
    });
  });

  it('passes a packet arriving on another device untouched, counting otherDevice and not the service', async () => {
    const s = await service('203.0.113.51', [lab.other.ifindex]);
    expect(await send('203.0.113.51', lab.arm.ifindex, s.id)).toEqual({
      retval: XDP_PASS,
      untouched: true,
      otherDevice: 1,
      packets: 0,
    });
    // arriving on the listed device, the same packet leaves by the arm (bpf_redirect)
    expect(await send('203.0.113.51', lab.other.ifindex, s.id)).toEqual({
      retval: XDP_REDIRECT,
      untouched: false,
      otherDevice: 0,
      packets: 1,
    });
  });

  it('balances on every device without devices, or with an empty list', async () => {
    for (const devices of [undefined, []]) {
      const vip = `203.0.113.${52 + (devices ? 1 : 0)}`;
      const s = await service(vip, devices);
      for (const ifindex of [lab.arm.ifindex, lab.other.ifindex]) {
        const r = await send(vip, ifindex, s.id);
        expect({ otherDevice: r.otherDevice, packets: r.packets }).toEqual({
          otherDevice: 0,
          packets: 1,
        });
      }
    }
  });

  it("leaves the packet to the VIP's all-ports service when the exact-port one is elsewhere", async () => {
    const exact = await service('203.0.113.54', [lab.other.ifindex]);
    const all = await service('203.0.113.54', undefined, 0);
    expect(await send('203.0.113.54', lab.arm.ifindex, all.id)).toEqual({
      retval: XDP_TX,
      untouched: false,
      otherDevice: 0,
      packets: 1,
    });
    expect(maps.serviceCounters(exact.id).packets).toBe(0);
  });

  it('writes, reads back, replaces and removes the device entries', async () => {
    const key = { vip: '203.0.113.55', port: 80, proto: 'tcp' } as const;
    const s = await service(key.vip, [lab.other.ifindex, lab.arm.ifindex, lab.arm.ifindex]);
    const listed = () => maps.listServices().find((x) => x.key.vip === key.vip)?.service.devices;
    const mine = () => entries().filter((e) => e.startsWith(`${s.id}@`));
    const sorted = [lab.arm.ifindex, lab.other.ifindex].sort((a, b) => a - b);
    expect(listed()).toEqual(sorted);
    expect(mine()).toEqual(sorted.map((i) => `${s.id}@${i}`).sort());

    maps.setService(key, { ...s, devices: [lab.other.ifindex] });
    expect(listed()).toEqual([lab.other.ifindex]);
    expect(mine()).toEqual([`${s.id}@${lab.other.ifindex}`]);
    expect((await send(key.vip, lab.arm.ifindex, s.id)).otherDevice).toBe(1);

    maps.setService(key, { ...s, devices: undefined });
    expect(listed()).toBeUndefined();
    expect(mine()).toEqual([]);
    expect((await send(key.vip, lab.arm.ifindex, s.id)).packets).toBe(1);

    maps.setService(key, { ...s, devices: [lab.arm.ifindex] });
    expect(mine()).toEqual([`${s.id}@${lab.arm.ifindex}`]);
    expect(maps.deleteService(key)).toBe(true);
    expect(mine()).toEqual([]);
  });

  it('moves the device entries with the service when its id changes', async () => {
    const key = { vip: '203.0.113.56', port: 80, proto: 'tcp' } as const;
    const s = await service(key.vip, [lab.arm.ifindex]);
    const id = nextId++;
    await maps.setMaglevTable(id, new Uint32Array(5).fill(1));
    maps.setService(key, { ...s, id });
    expect(entries().filter((e) => e.startsWith(`${s.id}@`) || e.startsWith(`${id}@`))).toEqual([
      `${id}@${lab.arm.ifindex}`,
    ]);
    expect(await send(key.vip, lab.arm.ifindex, id)).toMatchObject({ retval: XDP_TX, packets: 1 });
  });

  describe('rejects', () => {
    it('an ifindex that is not a positive integer, writing nothing', () => {
      const key = { vip: '203.0.113.57', port: 80, proto: 'tcp' } as const;
      const before = entries();
      const set = (devices: number[]) => () =>
        maps.setService(key, { id: 99, hashMode: '5tuple', forwardMode: 'dsr', seed: 1, devices });
      expect(set([0])).toThrowErrorMatchingInlineSnapshot(
        `[LbMapInvalidError: devices[0] must be an integer from 1 to 2147483647, got 0]`,
      );
      expect(set([lab.arm.ifindex, 1.5])).toThrowErrorMatchingInlineSnapshot(
        `[LbMapInvalidError: devices[1] must be an integer from 1 to 2147483647, got 1.5]`,
      );
      expect(entries()).toEqual(before);
      expect(maps.listServices().some((x) => x.key.vip === key.vip)).toBe(false);
    });
  });
});
