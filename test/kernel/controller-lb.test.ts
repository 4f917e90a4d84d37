// Load-balanced services as desired state, against a real kernel: the controller loads lb.o once,
// pins its maps beside the pipelines', hooks lb_xdp into every XDP pipeline (SL_PROG_LB) and
// lb_nat_tc into tc-ingress ones when a NAT service exists, keeps service and backend ids and
// the live table across a restart, and takes everything out again with the last service.
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { pino } from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { getProgramById, openPinned } from '../../bpf/index.js';
import { SluiceController } from '../../controller/controller.js';
import { SL_PROG_LB } from '../../controller/dataplane/abi.js';
import { ConfigInvalidError, ConflictError, NotFoundError } from '../../controller/errors.js';
import { Lab, type PairTopology } from '../../netns-lab/lab.js';
import { describeKernel } from '../helpers/privileges.js';

const logger = pino({ level: 'silent' });
const VIP = '10.0.0.100:80';

await describeKernel('load-balanced services through the controller', () => {
  let lab: Lab;
  let net: PairTopology;
  let stateDir: string;
  let pinDir: string;
  let controller: SluiceController | undefined;
  let dev: string;

  const open = async (): Promise<SluiceController> => {
    controller = await SluiceController.open({ stateDir, pinDir, logger, netns: net.right.netns });
    return controller;
  };

  /** The name of the program in SL_PROG_LB of attachment `key`, or null when the slot is empty. */
  const balancerOf = (key: string): string | null => {
    const pinned = openPinned(join(pinDir, 'att', key, 'sl_progs'));
    if (pinned.kind !== 'map') throw new Error('sl_progs is not a map');
    try {
      const slot = Buffer.alloc(4);
      slot.writeUInt32LE(SL_PROG_LB);
      let raw: Buffer | null;
      try {
        raw = pinned.map.lookup(slot);
      } catch {
        return null; // ENOENT: empty slot
      }
      if (!raw) return null;
      const prog = getProgramById(raw.readUInt32LE(0));
      try {
        return prog.info().name;
      } finally {
        prog.close();
      }
    } finally {
      pinned.map.close();
    }
  };

  beforeAll(async () => {
    lab = new Lab();
    net = await lab.pair();
    dev = net.right.device;
    stateDir = mkdtempSync(join(tmpdir(), 'sluice-lb-'));
    pinDir = `/sys/fs/bpf/${lab.id}`;
  });

  afterAll(async () => {
    await controller?.destroy().catch(() => undefined);
    await lab?.destroy();
    rmSync(pinDir, { recursive: true, force: true });
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  });

  it('runs nothing of the balancer while no service is configured', async () => {
    const c = await open();
    await c.attach({ device: dev });
    await c.attach({ device: dev, hook: 'tc-ingress' });
    expect(balancerOf(`${dev}@xdp`)).toBeNull();
    expect(existsSync(join(pinDir, 'lb'))).toBe(false);
    expect(await c.lbStats()).toBeNull();
  });

  it('hooks lb_xdp into the XDP pipeline with the first service, and shows its backends', async () => {
    const c = controller!;
    const result = await c.addService({
      vip: '10.0.0.100',
      port: 80,
      backends: [{ address: '10.1.0.11' }, { address: '10.1.0.12', weight: 3 }],
    });
    expect(result.diff.services).toEqual({
      added: ['10.0.0.100:80/tcp'],
      removed: [],
      changed: [],
    });
    expect(balancerOf(`${dev}@xdp`)).toBe('lb_xdp');
    // No NAT service: the tc-ingress pipeline has nothing to reverse.
    expect(balancerOf(`${dev}@tc-ingress`)).toBeNull();
    const [svc] = await c.lbServices();
    expect(svc).toMatchObject({ key: '10.0.0.100:80/tcp', mode: 'dsr', tableSize: 65537 });
    expect(svc.devices).toEqual([`${dev}@xdp`]);
    const shares = svc.backends.map((b) => Math.round(b.tableShare * 100));
    expect(shares).toEqual([25, 75]);
    expect(svc.backends.map((b) => [b.address, b.state, b.health])).toEqual([
      ['10.1.0.11', 'active', 'unchecked'],
      ['10.1.0.12', 'active', 'unchecked'],
    ]);
  });

  it('says before applying what a backend change moves, and moves exactly that', async () => {
    const c = controller!;
    const dry = await c.addBackend(VIP, { address: '10.1.0.13' }, { dryRun: true });
    expect(dry.applied).toBe(false);
    // Weights 1:3:1: the new backend takes a fifth of the hash space, and only that moves.
    expect(dry.lb).toHaveLength(1);
    expect(dry.lb![0].service).toBe('10.0.0.100:80/tcp');
    expect(dry.lb![0].movedShare).toBeCloseTo(0.2, 2);
    expect((await c.lbServices())[0].backends).toHaveLength(2);
    const done = await c.addBackend(VIP, { address: '10.1.0.13' });
    expect(done.lb![0].movedShare).toBe(dry.lb![0].movedShare);
    const shares = (await c.lbServices())[0].backends.map((b) => Math.round(b.tableShare * 100));
    expect(shares).toEqual([20, 60, 20]);
  });

  it('drains a backend: out of the table, still known, back when undrained', async () => {
    const c = controller!;
    await c.setBackend(VIP, '10.1.0.12', { drain: true });
    let b = (await c.lbServices())[0].backends;
    expect(b.map((x) => [x.address, x.state, Math.round(x.tableShare * 100)])).toEqual([
      ['10.1.0.11', 'active', 50],
      ['10.1.0.12', 'draining', 0],
      ['10.1.0.13', 'active', 50],
    ]);
    await c.setBackend(VIP, '10.1.0.12', { drain: false });
    b = (await c.lbServices())[0].backends;
    expect(b.map((x) => x.state)).toEqual(['active', 'active', 'active']);
  });

  it('runs a service restricted to devices only there, and nowhere when none of them exists', async () => {
    const c = controller!;
    await c.addService({
      vip: '10.0.0.100',
      port: 443,
      devices: [dev],
      backends: [{ address: '10.1.0.11' }],
    });
    await c.addService({ vip: '10.0.0.100', port: 444, devices: ['sl-nosuchdev'] });
    const views = await c.lbServices();
    expect(views.map((v) => [v.key, v.devices])).toEqual([
      ['10.0.0.100:80/tcp', [`${dev}@xdp`]],
      ['10.0.0.100:443/tcp', [`${dev}@xdp`]],
      ['10.0.0.100:444/tcp', []],
    ]);
    const pinned = openPinned(join(pinDir, 'lb', 'lb_svc_devs'));
    if (pinned.kind !== 'map') throw new Error('lb_svc_devs is not a map');
    const ifindexes = [...pinned.map.keys()].map((k) => k.readUInt32LE(4)).sort((a, b) => a - b);
    pinned.map.close();
    const ifindex = Number(
      (await lab.exec(net.right.netns, ['cat', `/sys/class/net/${dev}/ifindex`])).trim(),
    );
    // The missing device's service is bound to an ifindex no device has.
    expect(ifindexes).toEqual([ifindex, 0x7fffffff]);
    await c.removeService('10.0.0.100:443');
    await c.removeService('10.0.0.100:444');
  });

  it('refuses what it cannot run, naming the place', async () => {
    const c = controller!;
    await expect(c.addService({ vip: '10.0.0.100', port: 80 })).rejects.toThrow(ConflictError);
    await expect(c.addBackend('10.0.0.9:80', { address: '10.1.0.1' })).rejects.toThrow(
      NotFoundError,
    );
    await expect(
      c.addService({ vip: '10.0.0.101', port: 80, backends: [{ address: '2001:db8::1' }] }),
    ).rejects.toThrow(/dsr forwards within one address family/);
    await expect(c.addService({ vip: '10.0.0.101', port: 80, tableSize: 1000 })).rejects.toThrow(
      ConfigInvalidError,
    );
    await expect(
      c.addBackend(VIP, { address: '10.1.0.14', check: 'http:healthz' }),
    ).rejects.toThrow(/\/services\/0\/backends\/3\/check/);
  });

  it('keeps ids, table and counters across a restart, and hooks NAT reversal in for a NAT service', async () => {
    const c = controller!;
    const before = (await c.lbServices())[0];
    // the maps are adopted, not made anew: the flow tables (every flow's backend) survive too
    const mapIds = (): number[] =>
      ['lb_flows4', 'lb_flows4_pc', 'lb_maglev', 'lb_maglev_d', 'lb_progs'].map((name) => {
        const pinned = openPinned(join(pinDir, 'lb', name));
        if (pinned.kind !== 'map') throw new Error(`${name} is not a map`);
        try {
          return pinned.map.info().id;
        } finally {
          pinned.map.close();
        }
      });
    const idsBefore = mapIds();
    await c.close();
    const again = await open();
    expect(mapIds()).toEqual(idsBefore);
    const after = (await again.lbServices())[0];
    expect(after.backends.map((b) => b.tableShare)).toEqual(
      before.backends.map((b) => b.tableShare),
    );
    expect(balancerOf(`${dev}@xdp`)).toBe('lb_xdp');
    await again.addService({ vip: '10.0.0.100', port: 53, proto: 'udp', mode: 'nat' });
    expect(balancerOf(`${dev}@tc-ingress`)).toBe('lb_nat_tc');
  });

  it('decapsulates on a backend device instead of balancing there, with its counters in the stats', async () => {
    const c = controller!;
    await c.attach({ device: dev, decap: ['10.1.0.11'] });
    expect(balancerOf(`${dev}@xdp`)).toBe('lb_decap_xdp');
    const stats = await c.lbStats();
    expect(stats?.decap).toMatchObject({ decapped: 0 });
    await expect(c.attach({ device: dev, hook: 'tc-ingress', decap: [] })).rejects.toThrow(
      /decap is for the xdp hook only/,
    );
    await expect(c.attach({ device: dev, decap: ['backend-1'] })).rejects.toThrow(
      /\/attachments\/0\/decap\/0/,
    );
    await c.attach({ device: dev });
    expect(balancerOf(`${dev}@xdp`)).toBe('lb_xdp');
  });

  it('takes the balancer out with the last service, pins and all', async () => {
    const c = controller!;
    await c.removeService('10.0.0.100:53/udp');
    expect(balancerOf(`${dev}@tc-ingress`)).toBeNull();
    const removed = await c.removeService(VIP);
    expect(removed.diff.services?.removed).toEqual(['10.0.0.100:80/tcp']);
    expect(balancerOf(`${dev}@xdp`)).toBeNull();
    expect(existsSync(join(pinDir, 'lb')) ? readdirSync(join(pinDir, 'lb')) : []).toEqual([]);
    expect(c.config().config.services).toBeUndefined();
  });
});
