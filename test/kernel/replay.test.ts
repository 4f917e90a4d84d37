// replayPcap runs a configuration's real pipeline over a capture with nothing attached: exact per-rule counts, verdict totals and changed verdicts, and nothing left behind.
//
// The capture is built here, packet group by packet group, so every expected number below is
// counted by hand from the rule list: first match wins, a count rule counts and goes on, the
// rate limit (burst 5, 1 packet per second) passes the first 5 DNS queries of a replay that takes
// far less than a second, and the 8-byte runt takes the malformed action (drop).
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';

import { afterEach, expect, it, vi } from 'vitest';

import { Attachment } from '../../controller/dataplane/attachment.js';
import type { AttachmentSpec, DataplaneSpec } from '../../controller/dataplane/dataplane.js';
import type { RuleSpec } from '../../controller/dataplane/model.js';
import { replayPcap } from '../../controller/replay.js';
import { writePcap } from '../helpers/packets/index.js';
import { frame, type FrameSpec } from '../helpers/pipeline-frames.js';
import { describeKernel } from '../helpers/privileges.js';

/** Device names no machine has: replay must not need them. */
const DEVICE = `slr${randomBytes(4).toString('hex')}`;
const NOWHERE = `slr${randomBytes(4).toString('hex')}`;

const SETS = [{ name: 'blocklist', prefixes: ['192.0.2.0/24', '2001:db8:bad::/48'] }];

const RULES: RuleSpec[] = [
  { id: 'blocked', srcSet: 'blocklist', action: 'drop' },
  { id: 'ssh', proto: 'tcp', dport: 22, action: 'drop' },
  { id: 'frags', filter: 'udp and ip[6:2] & 0x1fff != 0', action: 'drop' },
  { id: 'dns', proto: 'udp', dport: 53, action: 'ratelimit', rate: '1pps', burst: 5 },
  { id: 'web', proto: 'tcp', dport: 80, action: 'count' },
  { id: 'out', dst: '203.0.113.0/24', proto: 'udp', dport: 7, action: 'redirect', to: NOWHERE },
];

/** The capture: [frame, how many] in file order. */
const GROUPS: [FrameSpec | Uint8Array, number][] = [
  [{ src: '192.0.2.10', dst: '198.51.100.1', proto: 17, dport: 9999 }, 3], // blocked
  [{ src: '2001:db8:bad::1', dst: '2001:db8::2', proto: 6, dport: 22 }, 2], // blocked, not ssh
  [{ src: '198.51.100.1', dst: '198.51.100.2', proto: 6, dport: 22 }, 4], // ssh
  [{ src: '2001:db8::1', dst: '2001:db8::2', proto: 6, dport: 22 }, 2], // ssh
  [{ src: '198.51.100.1', dst: '198.51.100.2', proto: 17, fragment: 'later' }, 3], // frags
  [{ src: '198.51.100.1', dst: '198.51.100.2', proto: 17, dport: 9999, fragment: 'first' }, 1],
  [{ src: '198.51.100.3', dst: '198.51.100.53', proto: 17, dport: 53 }, 20], // dns: 5 pass
  [{ src: '198.51.100.4', dst: '198.51.100.80', proto: 6, dport: 80 }, 6], // web, then pass
  [{ etherType: 0x0806 }, 2], // ARP: default pass
  [new Uint8Array(8), 1], // runt: malformed drop
  [{ src: '198.51.100.5', dst: '203.0.113.9', proto: 17, dport: 7 }, 2], // out: redirect
];

const PCAP = writePcap(
  GROUPS.flatMap(([spec, n]) =>
    Array.from({ length: n }, () => ({
      data: spec instanceof Uint8Array ? spec : frame(spec),
    })),
  ),
);

const EXPECTED_RULES = [
  { id: 'blocked', packets: 5 },
  { id: 'ssh', packets: 6 },
  { id: 'frags', packets: 3 },
  { id: 'dns', packets: 20 },
  { id: 'web', packets: 6 },
  { id: 'out', packets: 2 },
];
const EXPECTED_VERDICTS = { pass: 14, drop: 30, redirect: 2, tx: 0 };

function specOf(rules: RuleSpec[], hooks: AttachmentSpec['hook'][] = ['xdp']): DataplaneSpec {
  return {
    sets: SETS,
    attachments: hooks.map((hook) => ({ device: DEVICE, hook, rules: { rules } })),
  };
}

/** What replay may leave in bpffs: nothing of its own. */
function replayDirs(): string[] {
  return readdirSync('/sys/fs/bpf').filter((name) => name.startsWith('sl-replay-'));
}

/** XDP and TC programs on the host's devices (bpftool net), which replay must never change. */
function hostAttachments(): string {
  return execFileSync('bpftool', ['net', 'show', '-j'], { encoding: 'utf8' });
}

it('refuses a capture whose link type is not Ethernet before touching the kernel', async () => {
  const pcap = writePcap([{ data: new Uint8Array(20) }], { linkType: 101 });
  await expect(replayPcap(specOf(RULES), undefined, pcap)).rejects.toMatchObject({
    name: 'PcapFormatError',
    code: 'PCAP_LINK_TYPE',
  });
});

await describeKernel('replayPcap', () => {
  afterEach(() => {
    vi.restoreAllMocks();
    expect(replayDirs()).toEqual([]);
  });

  it('counts per rule and per verdict exactly, at XDP and at TC, on a device that does not exist', async () => {
    const attach = vi.spyOn(Attachment.prototype, 'attach');
    const before = hostAttachments();
    const report = await replayPcap(
      specOf(RULES, ['xdp', 'tc-ingress', 'tc-egress']),
      undefined,
      PCAP,
    );
    expect(report.packets).toBe(46);
    expect(report.attachments.map((a) => a.attachment)).toEqual([
      `${DEVICE}@xdp`,
      `${DEVICE}@tc-ingress`,
      `${DEVICE}@tc-egress`,
    ]);
    for (const att of report.attachments) {
      expect(att.rules).toEqual(EXPECTED_RULES);
      expect(att.verdicts).toEqual(EXPECTED_VERDICTS);
      // Nothing running there: every packet the candidate does not pass is a change.
      expect(att.changed).toBe(EXPECTED_VERDICTS.drop + EXPECTED_VERDICTS.redirect);
    }
    expect(attach).not.toHaveBeenCalled();
    expect(hostAttachments()).toBe(before);
  });

  it('counts as changed exactly the packets a rule missing from the running configuration flips', async () => {
    const running = specOf(RULES.filter((r) => r.id !== 'ssh'));
    const report = await replayPcap(specOf(RULES), running, PCAP);
    // The 6 ssh packets pass without the rule; the blocklisted ones on port 22 drop either way.
    expect(report.attachments[0].changed).toBe(6);
    expect(report.attachments[0].verdicts).toEqual(EXPECTED_VERDICTS);

    const same = await replayPcap(specOf(RULES), specOf(RULES), PCAP);
    expect(same.attachments[0].changed).toBe(0);
  });

  it('replays again only the running attachments that differ', async () => {
    const load = vi.spyOn(Attachment, 'load');
    const candidate = specOf(RULES, ['xdp', 'tc-ingress']);
    const running: DataplaneSpec = {
      sets: SETS,
      attachments: [
        { device: DEVICE, hook: 'xdp', rules: { rules: RULES } },
        { device: DEVICE, hook: 'tc-ingress', rules: { rules: RULES.slice(1) } },
        { device: NOWHERE, hook: 'xdp', rules: { rules: [{ action: 'drop' }] } },
      ],
    };
    const report = await replayPcap(candidate, running, PCAP);
    expect(report.attachments.map((a) => [a.attachment, a.changed])).toEqual([
      [`${DEVICE}@xdp`, 0],
      // Without "blocked": the 3 blocklisted IPv4 packets pass, the 2 IPv6 ones drop as ssh.
      [`${DEVICE}@tc-ingress`, 3],
    ]);
    // Two candidate pipelines, and the one running pipeline that differs.
    expect(load).toHaveBeenCalledTimes(3);
  });

  it('compares with the running sets, not the candidate ones', async () => {
    const running: DataplaneSpec = {
      ...specOf(RULES),
      sets: [{ name: 'blocklist', prefixes: ['2001:db8:bad::/48'] }],
    };
    const report = await replayPcap(specOf(RULES), running, PCAP);
    // Without 192.0.2.0/24 in the running set, its 3 packets pass there.
    expect(report.attachments[0].changed).toBe(3);
  });

  it('removes its bpffs directory when building the running instance fails', async () => {
    const write = Attachment.prototype.writeRuleSet;
    let calls = 0;
    vi.spyOn(Attachment.prototype, 'writeRuleSet').mockImplementation(function (
      this: Attachment,
      ...args
    ) {
      // The candidate's is the first write; the running instance's fails while the candidate's
      // test run may still be going.
      if (++calls === 2) return Promise.reject(new Error('write failed on purpose'));
      return write.apply(this, args);
    });
    const running = specOf(RULES.filter((r) => r.id !== 'ssh'));
    await expect(replayPcap(specOf(RULES), running, PCAP)).rejects.toThrow(
      'write failed on purpose',
    );
    expect(calls).toBe(2);
  });

  it('rejects an invalid candidate before building anything', async () => {
    const rules: RuleSpec[] = [{ id: 'bad', srcSet: 'missing', action: 'drop' }];
    await expect(replayPcap(specOf(rules), undefined, PCAP)).rejects.toMatchObject({
      code: 'SET_NOT_FOUND',
    });
  });
});
