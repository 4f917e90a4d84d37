// Device churn under a real `sluice serve`: a configured device deleted and re-created gets its pipeline back within a second, a device configured before it exists is attached when it appears, a renamed device loses the pipeline (it follows the configured name) and gets it back when renamed back, and a link detached behind sluice's back is re-attached and reported as drift.
import { afterAll, beforeAll, expect, it } from 'vitest';

import { openPinned } from '../../bpf/index.js';
import { LabDaemon } from '../../netns-lab/daemon.js';
import { Lab } from '../../netns-lab/lab.js';
import { udpStream } from '../../netns-lab/traffic.js';
import { describeKernel } from '../helpers/privileges.js';
import {
  EventLog,
  guard,
  attachmentDir,
  readPinnedCounters,
  waitFor,
  xdpProgramOf,
} from './daemon-lab.js';

const ALLOWED_PORT = 9700;
const BLOCKED_PORT = 9701;
const SENDER_IP = '198.51.100.1';
const RECEIVER_IP = '198.51.100.2';

interface AttachmentStatus {
  device: string;
  hook: string;
  state: 'attached' | 'pending' | 'error';
  ifindex: number | null;
}

await describeKernel('daemon device churn', () => {
  let lab: Lab;
  let daemon: LabDaemon;
  let events: EventLog | undefined;
  /** Sends from `senderNs` over the veth `senderDev` ↔ `device`; the daemon runs in `receiverNs`. */
  let senderNs: string;
  let receiverNs: string;
  let senderDev: string;
  let device: string;
  const figures: string[] = [];

  const exec = (netns: string, ...argv: string[]): Promise<string> => lab.exec(netns, argv);
  const macOf = async (netns: string, dev: string): Promise<string> =>
    (await exec(netns, 'cat', `/sys/class/net/${dev}/address`)).trim();

  /** Static neighbours both ways over the link as it is now (MACs change when it is re-created). */
  const neighbours = async (receiverDev = device): Promise<void> => {
    const [senderMac, receiverMac] = await Promise.all([
      macOf(senderNs, senderDev),
      macOf(receiverNs, receiverDev),
    ]);
    await exec(
      senderNs,
      'ip',
      'neigh',
      'replace',
      RECEIVER_IP,
      'lladdr',
      receiverMac,
      'dev',
      senderDev,
      'nud',
      'permanent',
    );
    await exec(
      receiverNs,
      'ip',
      'neigh',
      'replace',
      SENDER_IP,
      'lladdr',
      senderMac,
      'dev',
      receiverDev,
      'nud',
      'permanent',
    );
  };

  /** The veth pair, created (again): the receiver's end appears in its namespace at once. */
  const addLink = (): Promise<string> =>
    exec(
      senderNs,
      'ip',
      'link',
      'add',
      senderDev,
      'type',
      'veth',
      'peer',
      'name',
      device,
      'netns',
      receiverNs,
    );

  /** Addresses, link state and neighbours of a freshly created pair. */
  const configureLink = async (): Promise<void> => {
    await exec(senderNs, 'ip', 'addr', 'add', `${SENDER_IP}/24`, 'dev', senderDev);
    await exec(receiverNs, 'ip', 'addr', 'add', `${RECEIVER_IP}/24`, 'dev', device);
    await exec(senderNs, 'ip', 'link', 'set', senderDev, 'up');
    await exec(receiverNs, 'ip', 'link', 'set', device, 'up');
    await neighbours();
  };

  const rename = async (from: string, to: string): Promise<void> => {
    await exec(receiverNs, 'ip', 'link', 'set', from, 'down');
    await exec(receiverNs, 'ip', 'link', 'set', from, 'name', to);
    await exec(receiverNs, 'ip', 'link', 'set', to, 'up');
    await neighbours(to);
  };

  const ifindexOf = async (netns: string, dev: string): Promise<number> =>
    Number((await exec(netns, 'cat', `/sys/class/net/${dev}/ifindex`)).trim());

  const statusOf = async (dev: string): Promise<AttachmentStatus | undefined> => {
    const res = await daemon.api('GET', '/v1/status');
    return (res.body as { attachments: AttachmentStatus[] }).attachments.find(
      (a) => a.device === dev,
    );
  };

  /** Waits until the API and the kernel both say `dev` runs (or does not run) the pipeline. */
  const waitAttached = async (
    dev: string,
    attached: boolean,
    timeoutMs: number,
  ): Promise<number> => {
    const t0 = performance.now();
    await waitFor(
      `"${dev}" ${attached ? 'attached' : 'not attached'} in the API and the kernel`,
      async () => {
        const status = await statusOf(dev);
        const prog = await xdpProgramOf(receiverNs, dev);
        if (attached) {
          if (status?.state !== 'attached' || prog === null) return undefined;
          if (status.ifindex !== (await ifindexOf(receiverNs, dev))) return undefined;
          return true;
        }
        return status?.state === 'pending' && prog === null ? true : undefined;
      },
      timeoutMs,
      10,
    );
    return Math.round(performance.now() - t0);
  };

  /** 40 datagrams to each port: the allowed ones all arrive; the blocked ones only when unfiltered. */
  const expectTraffic = async (filtered: boolean): Promise<void> => {
    const target = { netns: receiverNs, ipv4: RECEIVER_IP };
    const send = (port: number) =>
      udpStream({ from: { netns: senderNs }, to: target, port, count: 40, rate: 400 });
    const [allowed, blocked] = await Promise.all([send(ALLOWED_PORT), send(BLOCKED_PORT)]);
    expect(allowed).toMatchObject({ sent: 40, received: 40 });
    expect(blocked).toMatchObject({ sent: 40, received: filtered ? 0 : 40 });
  };

  beforeAll(async () => {
    lab = new Lab();
    senderNs = await lab.addNamespace('a');
    receiverNs = await lab.addNamespace('b');
    for (const ns of [senderNs, receiverNs])
      await exec(
        ns,
        'sysctl',
        '-qw',
        'net.ipv6.conf.all.disable_ipv6=1',
        'net.ipv6.conf.default.disable_ipv6=1',
      );
    senderDev = `${lab.id}a`;
    device = `${lab.id}b`;
    await addLink();
    await configureLink();
    daemon = guard(lab, new LabDaemon({ netns: receiverNs }));
    await daemon.start();
    events = await EventLog.open(daemon.socket);
  });

  afterAll(async () => {
    console.info(figures.join('\n'));
    await events?.close();
    await daemon?.destroy();
    await lab?.destroy();
  });

  it('filters traffic on the configured device', async () => {
    const put = await daemon.api('PUT', '/v1/config', {
      attachments: [{ device, hook: 'xdp', mode: 'native' }],
      rules: [
        { id: 'block', device, hook: 'xdp', proto: 'udp', dport: BLOCKED_PORT, action: 'drop' },
      ],
    });
    expect(put.status, put.text).toBe(200);
    await waitAttached(device, true, 2000);
    await expectTraffic(true);
  });

  it('re-attaches a deleted and re-created device within a second, counters carried on', async () => {
    const before = readPinnedCounters(daemon.pinDir, device);
    const oldIfindex = await ifindexOf(receiverNs, device);
    const mark = events!.events.length;
    await exec(senderNs, 'ip', 'link', 'del', senderDev);
    await waitAttached(device, false, 3000);
    await addLink();
    const ms = await waitAttached(device, true, 1000);
    const newIfindex = await ifindexOf(receiverNs, device);
    expect(newIfindex).not.toBe(oldIfindex);
    figures.push(
      `re-created device: attached again ${ms} ms after it appeared (ifindex ${oldIfindex} -> ${newIfindex})`,
    );
    await events!.next(
      (e) => e.type === 'attachment' && e.data.device === device && e.data.state === 'attached',
      1000,
      mark,
    );
    await configureLink();
    await expectTraffic(true);
    // The pipeline waited, pinned, for its device: the counters go on from where they were.
    const after = readPinnedCounters(daemon.pinDir, device);
    expect(after.rules.block.packets).toBe(before.rules.block.packets + 40);
    expect(after.actions.drop.packets).toBe(before.actions.drop.packets + 40);
  });

  it('attaches a device configured before it exists as soon as it appears', async () => {
    const late = `${lab.id}p`;
    const res = await daemon.api('POST', '/v1/attachments', {
      device: late,
      hook: 'xdp',
      mode: 'native',
    });
    expect(res.status, res.text).toBe(201);
    expect(await statusOf(late)).toMatchObject({ state: 'pending', ifindex: null });
    expect(await xdpProgramOf(receiverNs, late)).toBeNull();
    await exec(receiverNs, 'ip', 'link', 'add', late, 'type', 'veth', 'peer', 'name', `${lab.id}q`);
    const ms = await waitAttached(late, true, 2000);
    figures.push(`device configured before it existed: attached ${ms} ms after it appeared`);
  });

  it('takes the pipeline off a device renamed away and puts it back when renamed back', async () => {
    // The attachment follows the configured name (controller/reconciler.ts): renamed away, the
    // device runs nothing and the attachment is pending; a device of that name again is attached
    // anew (its counters from zero).
    const away = `${lab.id}n`;
    await rename(device, away);
    const offMs = await waitAttached(device, false, 2000);
    expect(await xdpProgramOf(receiverNs, away)).toBeNull();
    await expectTraffic(false);
    await rename(away, device);
    const onMs = await waitAttached(device, true, 2000);
    figures.push(
      `rename: pipeline off ${offMs} ms after the rename away, back ${onMs} ms after the rename back`,
    );
    await expectTraffic(true);
    const counters = readPinnedCounters(daemon.pinDir, device);
    expect(counters.rules.block.packets).toBe(40);
  });

  it('re-attaches a link detached behind its back and reports the drift', async () => {
    /** The id of the link pinned for the attachment, read from bpffs. */
    const pinnedLinkId = (): number => {
      const pinned = openPinned(`${attachmentDir(daemon.pinDir, device)}/link`);
      if (pinned.kind !== 'link')
        throw new Error(`the attachment's link pin holds a ${pinned.kind}`);
      try {
        return pinned.link.info().id;
      } finally {
        pinned.link.close();
      }
    };
    const linkId = pinnedLinkId();
    const mark = events!.events.length;
    const t0 = performance.now();
    // `ip link set xdp off` is refused while a link holds the device; a link can be detached.
    await exec(receiverNs, 'bpftool', 'link', 'detach', 'id', String(linkId));
    await waitFor(
      'the pipeline back on the device',
      async () => ((await xdpProgramOf(receiverNs, device)) !== null ? true : undefined),
      2500,
      10,
    );
    const ms = Math.round(performance.now() - t0);
    const drift = await events!.next(
      (e) => e.type === 'reconcile' && Array.isArray(e.data.drift) && e.data.drift.length > 0,
      1000,
      mark,
    );
    expect(drift.data).toMatchObject({
      ok: true,
      drift: [expect.stringContaining(`${device}@xdp`)],
    });
    expect(daemon.logs.some((l) => l.includes('"drift repaired"'))).toBe(true);
    // A new link: the detached one is defunct for good.
    expect(pinnedLinkId()).not.toBe(linkId);
    figures.push(`drift: re-attached ${ms} ms after "bpftool link detach"`);
    await waitAttached(device, true, 1000);
    await expectTraffic(true);
  });
});
