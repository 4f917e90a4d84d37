// Validates the differential harness without the compiler: libpcap's own programs, run by the reference interpreter, give libpcap's verdicts, and our listing formatter prints them as tcpdump -d does.
import { beforeAll, describe, expect, it } from 'vitest';
import { runReferenceBpf } from '../../helpers/cbpf-reference.js';
import {
  formatListing,
  getJudgedCorpus,
  getOracleResults,
  getPacketCorpus,
  randomExpressions,
  verdictsOf,
  type JudgedCorpus,
  type PacketCorpus,
} from '../../helpers/differential.js';
import type { OracleResult } from '../../helpers/oracle.js';

let valid: JudgedCorpus;
let corpus: PacketCorpus;

beforeAll(async () => {
  [valid, corpus] = await Promise.all([getJudgedCorpus('valid'), getPacketCorpus()]);
});

function disagreements(expressions: readonly string[], results: readonly OracleResult[]): string[] {
  const out: string[] = [];
  results.forEach((r, i) => {
    if (!r.ok) return;
    const ours = verdictsOf(
      corpus.packets,
      (data, wire) => runReferenceBpf(r.program!, data, wire) !== 0,
    );
    if (ours !== r.verdicts) {
      const at = [...ours].findIndex((c, j) => c !== r.verdicts[j]);
      out.push(
        `${JSON.stringify(expressions[i])}: first at packet #${at} (${corpus.packets[at]?.description})`,
      );
    }
  });
  return out;
}

describe('reference interpreter against libpcap', () => {
  it('gives libpcap’s verdicts for libpcap’s programs of every valid expression', () => {
    expect(
      disagreements(
        valid.entries.map((e) => e.expression),
        valid.results,
      ),
    ).toEqual([]);
  });

  it('gives libpcap’s verdicts for libpcap’s programs of random expressions', async () => {
    const expressions = randomExpressions(0x7e57, 200);
    const results = await getOracleResults(expressions, { program: true });
    expect(disagreements(expressions, results)).toEqual([]);
  });
});

describe('listing formatter', () => {
  it('prints every program of the valid corpus exactly as tcpdump -d does', () => {
    const differ: string[] = [];
    valid.results.forEach((r, i) => {
      // ancillary loads ([type], [ifidx], ...) are printed by name; the corpus has none
      if (r.ok && formatListing(r.program!) !== r.listing)
        differ.push(valid.entries[i]!.expression);
    });
    expect(differ).toEqual([]);
  });
});
