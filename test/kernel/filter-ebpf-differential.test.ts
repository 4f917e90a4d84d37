// Differential kernel test of the eBPF backend: every expression of the valid corpus, as XDP eBPF under
// BPF_PROG_TEST_RUN (repeat 1), over the whole generated packet corpus, against libpcap's verdicts: 100%.
// Each program is also loaded as a TC classifier and a socket filter: the verifier must accept all three.
//
// Two things the kernel cannot reproduce are handled here, openly:
// - BPF_PROG_TEST_RUN gives XDP programs only the captured bytes, so `len` is the captured length. The oracle
//   therefore runs over a copy of the corpus whose records say wire length = captured length; the generated
//   packets cut short by the capture ("snapcut") are still compared, with that length.
// - XDP test runs refuse data shorter than 14 bytes (EINVAL). Runts run as socket filters instead (same
//   translator, bpf_skb_load_bytes loads), behind a 14-byte dummy header that the socket test run strips.
//
// The backend is judged on libpcap's own programs (pcap_compile's output, translated by cbpfToEbpf), so a
// front-end difference cannot hide or cause a failure here; then end to end on our compiler's program
// wherever it differs from libpcap's. Beside the corpus, 200 random well-formed expressions (the same
// generator and seed as the classic differential test) take the same path.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, expect, it } from 'vitest';

import { loadProgram, type BpfProgram } from '../../bpf/index.js';
import type { CbpfInsn } from '../../bpf/filter/cbpf.js';
import { compileFilter } from '../../bpf/filter/index.js';
import { cbpfToEbpf, type EbpfContext } from '../../bpf/filter/ebpf.js';
import {
  getPacketCorpus,
  loadCorpus,
  mismatchIndices,
  randomExpressions,
  type CorpusEntry,
} from '../helpers/differential.js';
import { runOracle, type OracleResult } from '../helpers/oracle.js';
import { writePcapFile, type GeneratedPacket } from '../helpers/packets/index.js';
import { describeKernel } from '../helpers/privileges.js';

const ETH_HLEN = 14;
const PREFIX = new Uint8Array(ETH_HLEN);
/** Seed of the random expressions; the classic differential test (test/unit/filter) uses the same. */
const RANDOM_SEED = 0x5eed_0001;

function sameProgram(a: readonly CbpfInsn[], b: readonly CbpfInsn[]): boolean {
  return (
    a.length === b.length &&
    a.every(
      (x, i) =>
        x.code === b[i].code && x.jt === b[i].jt && x.jf === b[i].jf && x.k >>> 0 === b[i].k >>> 0,
    )
  );
}

const verdictCache = new Map<string, Promise<string>>();

/** Runs `cbpf` as eBPF over every packet: XDP for 14 bytes and more, a socket filter for runts. Cached per program. */
function kernelVerdicts(cbpf: CbpfInsn[], packets: readonly GeneratedPacket[]): Promise<string> {
  // Many corpus lines are spellings of the same program ("port 80", "port http"): run each program once.
  const key = cbpf.map((i) => `${i.code},${i.jt},${i.jf},${i.k >>> 0}`).join(';');
  let verdicts = verdictCache.get(key);
  if (verdicts === undefined) {
    verdicts = runVerdicts(cbpf, packets);
    verdictCache.set(key, verdicts);
  }
  return verdicts;
}

async function runVerdicts(cbpf: CbpfInsn[], packets: readonly GeneratedPacket[]): Promise<string> {
  const programs: Partial<Record<EbpfContext, BpfProgram>> = {};
  const get = (context: 'xdp' | 'socket'): BpfProgram => {
    let prog = programs[context];
    if (prog === undefined) {
      const spec = cbpfToEbpf(cbpf, { context, verdict: { kind: 'return' } });
      prog = loadProgram({
        type: context === 'xdp' ? 'xdp' : 'socket_filter',
        insns: spec.insns,
        name: `diff_${context}`,
      });
      programs[context] = prog;
    }
    return prog;
  };
  try {
    // Every program must also pass the verifier as a TC classifier and a socket filter.
    get('socket');
    const tc = cbpfToEbpf(cbpf, { context: 'tc', verdict: { kind: 'return' } });
    loadProgram({ type: 'sched_cls', insns: tc.insns, name: 'diff_tc' }).close();
    // One batched test run per program: a worker-thread round trip per packet would dominate the run.
    const runts = packets.filter((p) => p.data.length < ETH_HLEN);
    const frames = packets.filter((p) => p.data.length >= ETH_HLEN);
    const [framed, prefixed] = await Promise.all([
      get('xdp').testRunEach(frames.map((p) => p.data)),
      runts.length
        ? get('socket').testRunEach(runts.map((p) => new Uint8Array([...PREFIX, ...p.data])))
        : undefined,
    ]);
    let nextFrame = 0;
    let nextRunt = 0;
    return packets
      .map((p) => {
        const runt = p.data.length < ETH_HLEN;
        const run = runt ? prefixed! : framed;
        const i = runt ? nextRunt++ : nextFrame++;
        if (run.errnos[i] !== 0)
          throw new Error(
            `test run refused a ${p.data.length}-byte packet: errno ${run.errnos[i]}`,
          );
        const retval = run.retvals[i];
        if (retval !== 0 && retval !== 1) throw new Error(`eBPF returned ${retval}, not 0 or 1`);
        return retval === 1 ? '1' : '0';
      })
      .join('');
  } finally {
    for (const prog of Object.values(programs)) prog?.close();
  }
}

function report(
  entry: CorpusEntry,
  expected: string,
  actual: string,
  packets: readonly GeneratedPacket[],
  what: string,
): string {
  const bad = mismatchIndices(expected, actual);
  const first = bad
    .slice(0, 3)
    .map(
      (i) =>
        `packet ${i} (${packets[i].description}, ${packets[i].data.length} bytes): eBPF ${actual[i]}, libpcap ${expected[i]}`,
    );
  return `line ${entry.line} \`${entry.expression}\` (${what}): ${bad.length} of ${packets.length} packets differ; ${first.join('; ')}`;
}

await describeKernel(
  'filter eBPF backend against libpcap over the corpus (XDP, BPF_PROG_TEST_RUN)',
  () => {
    let dir: string;
    let packets: GeneratedPacket[];
    let entries: CorpusEntry[];
    let oracle: OracleResult[];

    beforeAll(async () => {
      const corpus = await getPacketCorpus();
      packets = corpus.packets;
      const random = randomExpressions(RANDOM_SEED, 200).map((expression, i) => ({
        expression,
        line: i + 1,
        section: 'random',
      }));
      entries = [...(await loadCorpus('valid')), ...random];
      dir = await mkdtemp(join(tmpdir(), 'sluice-filter-ebpf-diff-'));
      const pcap = join(dir, 'corpus-caplen.pcap');
      await writePcapFile(
        pcap,
        packets.map((p) => ({ data: p.data, wireLength: p.data.length })),
      );
      oracle = await runOracle(
        pcap,
        entries.map((e) => e.expression),
        { program: true },
      );
    }, 300_000);
    afterAll(async () => {
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it("gives libpcap's verdict for every corpus and random expression on every packet", async () => {
      const failures: string[] = [];
      let compared = 0;
      for (const [n, entry] of entries.entries()) {
        const result = oracle[n];
        if (!result.ok && entry.section === 'random') {
          // A random expression libpcap refuses (e.g. "rejects all packets") must be refused by us too.
          const refused = (() => {
            try {
              compileFilter(entry.expression);
              return false;
            } catch {
              return true;
            }
          })();
          if (!refused)
            failures.push(
              `random \`${entry.expression}\`: libpcap rejects it, compileFilter accepts it`,
            );
          compared++;
          continue;
        }
        if (!result.ok || !result.program) {
          failures.push(
            `line ${entry.line} \`${entry.expression}\`: libpcap rejects it: ${result.ok ? 'no program' : result.error}`,
          );
          continue;
        }
        const libpcapProgram = result.program as CbpfInsn[];
        try {
          const actual = await kernelVerdicts(libpcapProgram, packets);
          if (actual !== result.verdicts)
            failures.push(report(entry, result.verdicts, actual, packets, "libpcap's program"));
          compared++;
        } catch (error: unknown) {
          failures.push(
            `line ${entry.line} \`${entry.expression}\` (libpcap's program): ${(error as Error).message}`,
          );
          continue;
        }
        let ours: CbpfInsn[];
        try {
          ours = compileFilter(entry.expression);
        } catch (error: unknown) {
          failures.push(
            `line ${entry.line} \`${entry.expression}\` (compileFilter): ${(error as Error).message}`,
          );
          continue;
        }
        // Identical programs were judged just above.
        if (sameProgram(ours, libpcapProgram)) continue;
        try {
          const actual = await kernelVerdicts(ours, packets);
          if (actual !== result.verdicts)
            failures.push(report(entry, result.verdicts, actual, packets, 'compileFilterToEbpf'));
        } catch (error: unknown) {
          failures.push(
            `line ${entry.line} \`${entry.expression}\` (compileFilterToEbpf): ${(error as Error).message}`,
          );
        }
      }
      expect(failures).toEqual([]);
      expect(compared).toBe(entries.length);
    }, 900_000);
  },
);
