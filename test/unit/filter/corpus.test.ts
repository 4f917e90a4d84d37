// Keeps the filter corpora honest: libpcap accepts every valid.txt line and rejects every invalid.txt line, and the packet corpus covers every category.
import { beforeAll, describe, expect, it } from 'vitest';
import {
  getJudgedCorpus,
  getPacketCorpus,
  loadCorpus,
  type JudgedCorpus,
  type PacketCorpus,
} from '../../helpers/differential.js';
import { countCategories, countTags, REQUIRED_TAGS } from '../../helpers/packets/index.js';

let valid: JudgedCorpus;
let invalid: JudgedCorpus;
let corpus: PacketCorpus;

beforeAll(async () => {
  [valid, invalid, corpus] = await Promise.all([
    getJudgedCorpus('valid'),
    getJudgedCorpus('invalid'),
    getPacketCorpus(),
  ]);
});

describe('expression corpora', () => {
  it('has at least 600 valid and 100 invalid expressions, none repeated', async () => {
    for (const [name, min] of [
      ['valid', 600],
      ['invalid', 100],
    ] as const) {
      const entries = await loadCorpus(name);
      expect(entries.length).toBeGreaterThanOrEqual(min);
      const seen = new Map<string, number>();
      const repeats = entries
        .filter((e) => seen.has(e.expression) || !seen.set(e.expression, e.line))
        .map((e) => `${name}.txt:${e.line} ${e.expression}`);
      expect(repeats).toEqual([]);
    }
  });

  it('has every valid.txt line accepted by libpcap', () => {
    const rejected = valid.entries.flatMap((e, i) => {
      const r = valid.results[i]!;
      return r.ok ? [] : [`valid.txt:${e.line} ${JSON.stringify(e.expression)}: ${r.error}`];
    });
    expect(rejected).toEqual([]);
  });

  it('has every invalid.txt line rejected by libpcap', () => {
    const accepted = invalid.entries.flatMap((e, i) =>
      invalid.results[i]!.ok ? [`invalid.txt:${e.line} ${JSON.stringify(e.expression)}`] : [],
    );
    expect(accepted).toEqual([]);
  });

  it('has valid expressions that tell packets apart: most match some packets and miss others', () => {
    let discriminating = 0;
    for (const r of valid.results) {
      if (r.ok && r.verdicts.includes('1') && r.verdicts.includes('0')) discriminating++;
    }
    expect(discriminating / valid.results.length).toBeGreaterThan(0.9);
  });

  it('has invalid expressions of both kinds: syntax errors and semantic errors', () => {
    const errors = invalid.results.map((r) => (r.ok ? '' : r.error));
    const syntax = errors.filter((e) => /syntax error/.test(e)).length;
    expect(syntax).toBeGreaterThanOrEqual(40);
    expect(errors.length - syntax).toBeGreaterThanOrEqual(60);
  });
});

describe('packet corpus', () => {
  it('has at least 5,000 packets', () => {
    expect(corpus.packets.length).toBeGreaterThanOrEqual(5000);
  });

  it('covers every required category, each often enough to matter', () => {
    const tags = countTags(corpus.packets);
    const thin = REQUIRED_TAGS.filter(
      (t) => (tags.get(t) ?? 0) < (t.startsWith('tcp-flags-') ? 2 : 5),
    ).map((t) => `${t}: ${tags.get(t) ?? 0}`);
    expect(thin).toEqual([]);
  });

  it('has the expected mix of scenarios', () => {
    const c = countCategories(corpus.packets);
    expect(c.get('tcp-flags')).toBe(512);
    expect(c.get('runt')).toBe(42);
    for (const k of [
      'tcp4',
      'udp4',
      'icmp4',
      'tcp6',
      'udp6',
      'icmp6',
      'ipv6-ext',
      'arp',
      'rarp',
      '802.3',
      'other-ether',
      'sctp4',
      'sctp6',
      'gre',
      'igmp',
      'esp4',
      'ah4',
      'geneve',
      'decnet',
    ]) {
      expect(c.get(k) ?? 0, k).toBeGreaterThanOrEqual(50);
    }
  });

  it('has captures cut short (caplen < len) and runts shorter than an Ethernet header', () => {
    expect(
      corpus.packets.filter((p) => p.data.length < p.wireLength).length,
    ).toBeGreaterThanOrEqual(300);
    expect(corpus.packets.filter((p) => p.data.length < 14).length).toBeGreaterThanOrEqual(42);
  });
});
