// The counting program under real traffic: native and generic XDP, TCX, and a live program upgrade.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { attachTc, attachXdp, loadObject, type BpfObject } from '../../bpf/index.js';
import { readCounters, setVerdict, sumPerCpu } from '../../bpf/counter.js';
import { bpfObjectPath } from '../../bpf/progs.js';
import { Lab, type PairTopology } from '../../netns-lab/lab.js';
import { describeKernel } from '../helpers/privileges.js';

/** Bytes of one ping frame on the wire: Ethernet 14 + IPv4 20 + ICMP 8 + ping's 56 bytes of payload. */
const PING_FRAME = 98;

await describeKernel('counting XDP and TC programs under traffic', () => {
  let lab: Lab;
  let net: PairTopology;
  let object: BpfObject;

  beforeAll(async () => {
    lab = new Lab();
    net = await lab.pair();
  });

  afterAll(async () => {
    await lab?.destroy();
  });

  // Each test loads its own object so counters start at zero.
  const fresh = (): BpfObject => {
    object?.close();
    object = loadObject(bpfObjectPath('counter'), { name: 'counter' });
    return object;
  };
  afterAll(() => object?.close());

  it('counts exactly the 100 pings sent to a native-mode XDP program', async () => {
    const obj = fresh();
    const link = attachXdp(obj.program('counter_xdp'), net.right.device, {
      netns: net.right.netns,
      mode: 'native',
    });
    try {
      expect(await lab.ping(net.left, net.right, 100)).toBe(100);
      expect(readCounters(obj.map('dev_stats'))).toEqual({
        pass: { packets: 100, bytes: 100 * PING_FRAME },
        drop: { packets: 0, bytes: 0 },
      });
    } finally {
      link.close();
    }
  });

  it('drops and counts every ping when the verdict is drop', async () => {
    const obj = fresh();
    setVerdict(obj.map('verdict'), 'drop');
    const link = attachXdp(obj.program('counter_xdp'), net.right.device, {
      netns: net.right.netns,
      mode: 'native',
    });
    try {
      expect(await lab.ping(net.left, net.right, 20, 0.01)).toBe(0);
      expect(readCounters(obj.map('dev_stats')).drop).toEqual({
        packets: 20,
        bytes: 20 * PING_FRAME,
      });
    } finally {
      link.close();
    }
    expect(await lab.ping(net.left, net.right, 3)).toBe(3);
  });

  it('counts in generic mode as well', async () => {
    const obj = fresh();
    const link = attachXdp(obj.program('counter_xdp'), net.right.device, {
      netns: net.right.netns,
      mode: 'generic',
    });
    try {
      expect(await lab.ping(net.left, net.right, 30)).toBe(30);
      expect(readCounters(obj.map('dev_stats')).pass.packets).toBe(30);
    } finally {
      link.close();
    }
  });

  it('replaces the program behind its link while traffic flows, without losing a packet', async () => {
    const obj = fresh();
    const v1 = obj.program('counter_xdp');
    const v2 = obj.program('counter_xdp_v2');
    const link = attachXdp(v1, net.right.device, { netns: net.right.netns, mode: 'native' });
    try {
      const sent = 1500;
      const pinging = lab.ping(net.left, net.right, sent, 0.002);
      // Flip v1 → v2 → v1 → v2 while the pings are in flight.
      for (const next of [v2, v1, v2]) {
        await new Promise((resolve) => setTimeout(resolve, 600));
        link.update(next);
      }
      const answered = await pinging;
      const seenByV2 = sumPerCpu(obj.map('v2_stats'), 0).packets;
      expect(answered).toBe(sent);
      expect(readCounters(obj.map('dev_stats')).pass.packets).toBe(sent);
      expect(seenByV2).toBeGreaterThan(0);
      expect(seenByV2).toBeLessThan(sent);
    } finally {
      link.close();
    }
  });

  it('counts both directions with TC programs on ingress and egress', async () => {
    const obj = fresh();
    const program = obj.program('counter_tc');
    const ingress = attachTc(program, net.right.device, {
      netns: net.right.netns,
      direction: 'ingress',
    });
    const egress = attachTc(program, net.right.device, {
      netns: net.right.netns,
      direction: 'egress',
    });
    try {
      expect(ingress.kind).toBe('tcx');
      expect(await lab.ping(net.left, net.right, 25)).toBe(25);
      // 25 requests in, 25 replies out; TC sees skb->len, the same 98-byte frames.
      expect(readCounters(obj.map('dev_stats')).pass).toEqual({
        packets: 50,
        bytes: 50 * PING_FRAME,
      });
    } finally {
      ingress.close();
      egress.close();
    }
  });

  it('leaves the device without programs once every link is closed', async () => {
    const out = await lab.exec(net.right.netns, ['ip', '-d', 'link', 'show', net.right.device]);
    expect(out).not.toMatch(/prog\/xdp|xdpgeneric|xdpdrv/);
  });
});
