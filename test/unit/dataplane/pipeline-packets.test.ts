// The pipeline's random frame generator (test/helpers/pipeline-packets.ts): determinism, and that it reaches every parse path.
import { describe, expect, it } from 'vitest';
import { parsePacket } from '../../../controller/dataplane/model-decide.js';
import { generatePipelinePackets } from '../../helpers/pipeline-packets.js';

describe('generatePipelinePackets', () => {
  it('gives the same frames for the same seed and others for another', () => {
    const hex = (seed: number) =>
      generatePipelinePackets({ seed, count: 300 }).map((p) => Buffer.from(p.data).toString('hex'));
    expect(hex(7)).toEqual(hex(7));
    expect(hex(7)).not.toEqual(hex(8));
  });

  it('reaches every parse outcome the pipeline distinguishes', () => {
    const packets = generatePipelinePackets({ seed: 0x5eed_0001, count: 4000 });
    const seen = new Set<string>();
    for (const { data, tags } of packets) {
      for (const tag of tags) seen.add(tag);
      const p = parsePacket(data);
      seen.add(`status-${p.status}`);
      if (p.status !== 'ok') continue;
      seen.add(p.family ? `family-${p.family}` : 'non-ip');
      if (p.laterFragment) seen.add(`later-fragment-${p.family}`);
      if (p.tcpFlags !== undefined) seen.add('parsed-tcp-flags');
      if (p.icmp) seen.add(p.icmp.icmpv6 ? 'parsed-icmpv6' : 'parsed-icmp');
      if (p.sport !== undefined) seen.add(`parsed-ports-${p.proto}`);
      if (p.tags === 2) seen.add('parsed-qinq');
      if (p.extHeaders === 8) seen.add('parsed-8-ext-headers');
    }
    for (const want of [
      'status-ok',
      'status-truncated',
      'status-malformed',
      'family-4',
      'family-6',
      'non-ip',
      'later-fragment-4',
      'later-fragment-6',
      'parsed-tcp-flags',
      'parsed-icmp',
      'parsed-icmpv6',
      'parsed-ports-6',
      'parsed-ports-17',
      'parsed-ports-132',
      'parsed-qinq',
      'parsed-8-ext-headers',
      'vlan-3-tags',
      'ipv6-ext-9',
      'ipv4-options',
      'malformed-ihl',
      'malformed-version',
      'icmp-on-ipv6',
      'icmpv6-on-ipv4',
      'arp',
      'runt',
      'cut',
    ])
      expect(seen, want).toContain(want);
  });

  it('cuts frames at every header boundary of some frame', () => {
    // For each boundary kind, some frame ends exactly there: 14 (Ethernet), 18/22 (tags),
    // 34 (IPv4 header), 54 (IPv6 header).
    const lengths = new Set(
      generatePipelinePackets({ seed: 3, count: 4000 }).map((p) => p.data.length),
    );
    for (const n of [0, 13, 14, 17, 18, 22, 33, 34, 53, 54])
      expect(lengths, `length ${n}`).toContain(n);
  });
});
