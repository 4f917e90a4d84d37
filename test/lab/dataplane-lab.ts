// The router lab with a sluice data plane on the router, and counter arithmetic for the dataplane-*.test.ts lab tests.
import { rmSync } from 'node:fs';
import type { AttachmentCounters } from '../../controller/dataplane/counters.js';
import { Dataplane } from '../../controller/dataplane/dataplane.js';
import type { Hook } from '../../controller/dataplane/attachment.js';
import { Lab } from '../../netns-lab/lab.js';
import type { RouterOptions, RouterTopology } from '../../netns-lab/router.js';
import { readDeviceStats } from '../../netns-lab/traffic.js';

/** A router lab and the data plane of its router namespace, pinned under /sys/fs/bpf/<lab id>. */
export interface DataplaneLab {
  lab: Lab;
  net: RouterTopology;
  /** The open data plane; `reopen()` replaces it. */
  dp: Dataplane;
  /** Its bpffs directory. */
  dir: string;
  /** close() then open() again: what a restarted controller does. */
  reopen(options?: { reloadPrograms?: boolean }): Promise<Dataplane>;
  /** Detaches and unpins everything (dp.destroy()), then removes the namespaces. */
  destroy(): Promise<void>;
}

/**
 * Builds the router topology and opens a data plane for the router namespace. Everything made is
 * removed by `destroy()`, failures included, so call it from afterAll whatever happened.
 */
export async function openDataplaneLab(options: RouterOptions = {}): Promise<DataplaneLab> {
  const lab = new Lab();
  const dir = `/sys/fs/bpf/${lab.id}`;
  // Whatever becomes of the data plane (a failed destroy(), an interrupted run: the lab's exit
  // hook runs this too), its pins go with the lab; unpinned, the links detach when the last
  // handle closes, and the devices go with the namespaces anyway.
  lab.addCleanup(() => rmSync(dir, { recursive: true, force: true }));
  let dp: Dataplane | undefined;
  let net: RouterTopology | undefined;
  const destroy = async (): Promise<void> => {
    try {
      await dp?.destroy();
    } finally {
      await lab.destroy();
    }
  };
  try {
    net = await lab.router(options);
    dp = await Dataplane.open({ dir, netns: net.router.netns });
  } catch (error: unknown) {
    await destroy().catch(() => undefined);
    throw error;
  }
  const opened: DataplaneLab = {
    lab,
    net,
    dp,
    dir,
    async reopen(options = {}) {
      opened.dp.close();
      dp = await Dataplane.open({ dir, netns: net!.router.netns, ...options });
      opened.dp = dp;
      return dp;
    },
    destroy,
  };
  return opened;
}

/** The counters of the attachment on `device` at `hook`; throws when there is none. */
export function countersOf(dp: Dataplane, device: string, hook: Hook = 'xdp'): AttachmentCounters {
  const found = dp.counters().find((c) => c.device === device && c.hook === hook);
  if (!found) throw new Error(`no attachment "${device}@${hook}"`);
  return found;
}

export interface PacketDelta {
  packets: number;
  bytes: number;
}

/** What moved between two readings of one attachment's counters. */
export interface CounterDelta {
  pass: PacketDelta;
  drop: PacketDelta;
  redirect: PacketDelta;
  tx: PacketDelta;
  events: Record<keyof AttachmentCounters['events'], number>;
  /** By rule id; rules absent before count from zero. */
  rules: Record<string, PacketDelta>;
  /** By rate-limit rule id. */
  limiters: Record<string, { passed: number; dropped: number }>;
}

/** `after - before`, counter by counter. */
export function counterDelta(after: AttachmentCounters, before: AttachmentCounters): CounterDelta {
  const minus = (a: PacketDelta, b: PacketDelta | undefined): PacketDelta => ({
    packets: a.packets - (b?.packets ?? 0),
    bytes: a.bytes - (b?.bytes ?? 0),
  });
  const events = { ...after.events };
  for (const key of Object.keys(events) as (keyof typeof events)[]) {
    events[key] -= before.events[key];
  }
  const rules: Record<string, PacketDelta> = {};
  for (const rule of after.rules) {
    rules[rule.id] = minus(
      rule,
      before.rules.find((r) => r.id === rule.id),
    );
  }
  const limiters: Record<string, { passed: number; dropped: number }> = {};
  for (const limiter of after.limiters) {
    const was = before.limiters.find((l) => l.id === limiter.id);
    limiters[limiter.id] = {
      passed: limiter.passed - (was?.passed ?? 0),
      dropped: limiter.dropped - (was?.dropped ?? 0),
    };
  }
  return {
    pass: minus(after.actions.pass, before.actions.pass),
    drop: minus(after.actions.drop, before.actions.drop),
    redirect: minus(after.actions.redirect, before.actions.redirect),
    tx: minus(after.actions.tx, before.actions.tx),
    events,
    rules,
    limiters,
  };
}

/** Frames `device` in `netns` has sent so far (sysfs tx_packets): what its peer's hooks see. */
export async function framesSent(netns: string, device: string): Promise<number> {
  return (await readDeviceStats(netns, device)).tx_packets;
}

/** Bytes of a UDP frame on the wire without FCS, as XDP counts it: Ethernet, IP, UDP, payload. */
export function udpFrameBytes(family: 'ipv4' | 'ipv6', payload: number): number {
  return 14 + (family === 'ipv4' ? 20 : 40) + 8 + payload;
}

/**
 * Adds `ipv4` and `ipv6` as further addresses of the client's device, and static neighbours for
 * them on the router, so the lab stays quiet. Returns the two addresses.
 */
export async function addClientAddresses(
  net: RouterTopology,
  lab: Lab,
  ipv4: string,
  ipv6: string,
): Promise<{ ipv4: string; ipv6: string }> {
  const { client, router } = net;
  await lab.exec(client.netns, ['ip', 'addr', 'add', `${ipv4}/24`, 'dev', client.device]);
  await lab.exec(client.netns, [
    'ip',
    '-6',
    'addr',
    'add',
    `${ipv6}/64`,
    'dev',
    client.device,
    'nodad',
  ]);
  for (const address of [ipv4, ipv6]) {
    await lab.exec(router.netns, [
      'ip',
      'neigh',
      'replace',
      address,
      'lladdr',
      client.mac,
      'dev',
      router.client.device,
      'nud',
      'permanent',
    ]);
  }
  return { ipv4, ipv6 };
}

export const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, ms));
