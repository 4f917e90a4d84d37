// Differential lab test of the classic programs themselves, run by the Linux kernel as packet-socket filters
// (SO_ATTACH_FILTER): every expression of the valid corpus, compiled by compileFilter, over the whole generated
// packet corpus sent as real frames on the loopback device of a private network namespace
// (test/helpers/sockfilter/), against libpcap's verdicts: 100% of the judged packets.
//
// What the kernel cannot or will not do the libpcap way is stated and asserted here, never skipped silently:
// - A socket filter sees only the frame, so `len` is the captured length. The oracle therefore runs over a copy
//   of the corpus whose records say wire length = captured length (as in the eBPF differential test).
// - A packet socket refuses to send a frame shorter than lo's 14-byte Ethernet header (EINVAL), so runts
//   cannot be judged: the helper reports them as 'x', and the test demands that exactly the runts are 'x'.
// - The kernel refuses classic programs with a backward jump (libpcap's protochain loop) or more than
//   BPF_MAXINSNS instructions: exactly those programs must be refused, with EINVAL.
// - Linux masks the count of a shift by X to five bits (A << (X & 31), kernel/bpf/core.c), where libpcap's
//   bpf_filter gives 0 for X >= 32. Programs that shift by X are held to that semantics: their expected verdicts
//   come from the reference interpreter running the program with the count masked by extra instructions.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { CbpfInsn } from '../../bpf/filter/cbpf.js';
import { compileFilter } from '../../bpf/filter/index.js';
import { runReferenceBpf } from '../helpers/cbpf-reference.js';
import {
  getPacketCorpus,
  loadCorpus,
  mismatchIndices,
  verdictsOf,
  type CorpusEntry,
} from '../helpers/differential.js';
import { runOracle, type OracleResult } from '../helpers/oracle.js';
import { writePcapFile, type GeneratedPacket } from '../helpers/packets/index.js';
import { describeKernel } from '../helpers/privileges.js';
import { runSocketFilter, type SocketFilterResult } from '../helpers/sockfilter.js';

const ETH_HLEN = 14;
const BPF_MAXINSNS = 4096;
const EINVAL = 22;

// classic BPF opcodes used below
const BPF_JMP_JA = 0x05;
const BPF_ST = 0x02;
const BPF_STX = 0x03;
const BPF_LD_MEM = 0x60;
const BPF_LDX_MEM = 0x61;
const BPF_TXA = 0x87;
const BPF_TAX = 0x07;
const BPF_AND_K = 0x54;
const BPF_LSH_X = 0x6c;
const BPF_RSH_X = 0x7c;

/** True when the program jumps backward (only `ja` can: its offset is 32 bits, jt/jf are unsigned bytes). */
function hasBackwardJump(program: readonly CbpfInsn[]): boolean {
  return program.some((insn) => insn.code === BPF_JMP_JA && (insn.k | 0) < 0);
}

function shiftsByX(program: readonly CbpfInsn[]): boolean {
  return program.some((insn) => insn.code === BPF_LSH_X || insn.code === BPF_RSH_X);
}

/**
 * The program with every shift by X made to shift by X & 31, as Linux does: the shift becomes
 * `stx M[t]; st M[s]; txa; and #31; tax; ld M[s]; <shift> x; ldx M[t]` with two scratch cells the program
 * does not use, and every jump is moved to its target's new place. Forward jumps only.
 */
function withLinuxShifts(program: readonly CbpfInsn[]): CbpfInsn[] {
  const used = new Set(
    program
      .filter((i) => [BPF_ST, BPF_STX, BPF_LD_MEM, BPF_LDX_MEM].includes(i.code))
      .map((i) => i.k),
  );
  const [s, t] = [...Array(16).keys()].filter((cell) => !used.has(cell));
  if (s === undefined || t === undefined) throw new Error('no free scratch cells to mask a shift');
  const at: number[] = [];
  let n = 0;
  for (const insn of program) {
    at.push(n);
    n += insn.code === BPF_LSH_X || insn.code === BPF_RSH_X ? 8 : 1;
  }
  at.push(n);
  const out: CbpfInsn[] = [];
  program.forEach((insn, pc) => {
    const op = (code: number, k = 0): CbpfInsn => ({ code, jt: 0, jf: 0, k });
    if (insn.code === BPF_LSH_X || insn.code === BPF_RSH_X) {
      out.push(op(BPF_STX, t), op(BPF_ST, s), op(BPF_TXA), op(BPF_AND_K, 31), op(BPF_TAX));
      out.push(op(BPF_LD_MEM, s), { ...insn }, op(BPF_LDX_MEM, t));
      return;
    }
    if ((insn.code & 7) !== 5) {
      out.push({ ...insn });
      return;
    }
    const moved = (offset: number): number => at[pc + 1 + offset]! - (at[pc]! + 1);
    if (insn.code === BPF_JMP_JA) {
      out.push({ ...insn, k: moved(insn.k) });
      return;
    }
    const jt = moved(insn.jt);
    const jf = moved(insn.jf);
    if (jt > 255 || jf > 255) throw new Error('masking a shift pushed a jump out of range');
    out.push({ ...insn, jt, jf });
  });
  return out;
}

/** The '1'/'0' string with the packets the kernel did not judge ('x') left out. */
function judgedOnly(verdicts: string, kernel: string): string {
  return [...verdicts].filter((_, i) => kernel[i] !== 'x').join('');
}

function report(
  entry: CorpusEntry,
  expected: string,
  actual: string,
  packets: readonly GeneratedPacket[],
  what: string,
): string {
  const bad = mismatchIndices(expected, actual).filter((i) => actual[i] !== 'x');
  const first = bad
    .slice(0, 3)
    .map(
      (i) =>
        `packet ${i} (${packets[i]!.description}, ${packets[i]!.data.length} bytes): kernel ${actual[i]}, ${what} ${expected[i]}`,
    );
  return `line ${entry.line} \`${entry.expression}\`: ${bad.length} of ${packets.length} packets differ from ${what}; ${first.join('; ')}`;
}

// Compiling needs no privileges: it happens, and fails loudly, before anything is skipped.
const entries = await loadCorpus('valid');
const compiled = entries.map((entry) => {
  try {
    return { entry, program: compileFilter(entry.expression) };
  } catch (error: unknown) {
    return { entry, error: error as Error };
  }
});

describe('filter classic programs for the kernel socket filter', () => {
  it('compiles every valid corpus expression', () => {
    expect(
      compiled
        .filter((c) => c.error)
        .map((c) => `line ${c.entry.line} \`${c.entry.expression}\`: ${c.error!.message}`),
    ).toEqual([]);
  });
});

await describeKernel(
  'filter classic programs in the kernel socket filter against libpcap (SO_ATTACH_FILTER, lo in a private netns)',
  () => {
    let dir: string;
    let packets: GeneratedPacket[];
    let oracle: OracleResult[];
    let kernel: SocketFilterResult[];
    const programs = compiled.map((c) => c.program ?? []);

    beforeAll(async () => {
      packets = (await getPacketCorpus()).packets;
      dir = await mkdtemp(join(tmpdir(), 'sluice-filter-socket-diff-'));
      const pcap = join(dir, 'corpus-caplen.pcap');
      await writePcapFile(
        pcap,
        packets.map((p) => ({ data: p.data, wireLength: p.data.length })),
      );
      [oracle, kernel] = await Promise.all([
        runOracle(
          pcap,
          entries.map((e) => e.expression),
        ),
        runSocketFilter(pcap, programs),
      ]);
    }, 600_000);
    afterAll(async () => {
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('refuses exactly the programs with a backward jump or too many instructions, with EINVAL', () => {
      const refusable = entries
        .filter((_, n) => hasBackwardJump(programs[n]!) || programs[n]!.length > BPF_MAXINSNS)
        .map((e) => `line ${e.line} \`${e.expression}\``);
      const refused = entries
        .map((e, n) => ({ e, r: kernel[n]! }))
        .filter(({ r }) => !r.ok)
        .map(
          ({ e, r }) => `line ${e.line} \`${e.expression}\`: ${r.ok ? '' : `${r.errno} ${r.code}`}`,
        );
      expect(refused).toEqual(refusable.map((where) => `${where}: ${EINVAL} EINVAL`));
    });

    it('judges every packet but the runts shorter than an Ethernet header', () => {
      // The packet socket refuses to send a runt (EINVAL), so the kernel never runs the filter on one: those
      // packets are 'x' for every program, and only they are.
      const runts = packets.flatMap((p, i) => (p.data.length < ETH_HLEN ? [i] : []));
      expect(runts.length).toBeGreaterThan(0);
      const wrong = entries.flatMap((e, n) => {
        const r = kernel[n]!;
        if (!r.ok) return [];
        const unjudged = [...r.verdicts].flatMap((v, i) => (v === 'x' ? [i] : []));
        return r.verdicts.length === packets.length && unjudged.join() === runts.join()
          ? []
          : [
              `line ${e.line} \`${e.expression}\`: ${r.verdicts.length} verdicts, ${unjudged.length} unjudged, for ${packets.length} packets of which ${runts.length} are runts`,
            ];
      });
      expect(wrong).toEqual([]);
    });

    it("gives libpcap's verdict on every judged packet for every program the kernel accepts", () => {
      const failures: string[] = [];
      let compared = 0;
      for (const [n, entry] of entries.entries()) {
        const result = oracle[n]!;
        const k = kernel[n]!;
        if (!result.ok) {
          failures.push(
            `line ${entry.line} \`${entry.expression}\`: libpcap rejects it: ${result.error}`,
          );
          continue;
        }
        if (!k.ok || shiftsByX(programs[n]!)) continue; // refusals above; shifts by X below
        compared++;
        if (judgedOnly(k.verdicts, k.verdicts) !== judgedOnly(result.verdicts, k.verdicts))
          failures.push(report(entry, result.verdicts, k.verdicts, packets, 'libpcap'));
      }
      expect(failures).toEqual([]);
      const refused = kernel.filter((k) => !k.ok).length;
      const shifting = programs.filter((p, n) => kernel[n]!.ok && shiftsByX(p)).length;
      expect(compared + refused + shifting).toBe(entries.length);
    });

    it('shifts by X as Linux does (count & 31), and the same program under libpcap semantics gives libpcap verdicts', () => {
      const failures: string[] = [];
      let shifting = 0;
      for (const [n, entry] of entries.entries()) {
        const program = programs[n]!;
        const k = kernel[n]!;
        const result = oracle[n]!;
        if (!k.ok || !result.ok || !shiftsByX(program)) continue;
        shifting++;
        const masked = withLinuxShifts(program);
        const expected = verdictsOf(packets, (data) => runReferenceBpf(masked, data) !== 0);
        if (judgedOnly(k.verdicts, k.verdicts) !== judgedOnly(expected, k.verdicts))
          failures.push(report(entry, expected, k.verdicts, packets, 'the masked-shift model'));
        // The only difference is the shift: run as libpcap runs it (reference interpreter, count >= 32 gives
        // 0), the very same program must give libpcap's verdicts.
        const unmasked = verdictsOf(packets, (data) => runReferenceBpf(program, data) !== 0);
        if (unmasked !== result.verdicts)
          failures.push(
            report(entry, result.verdicts, unmasked, packets, 'libpcap (reference interpreter)'),
          );
      }
      expect(failures).toEqual([]);
      expect(shifting).toBeGreaterThan(0);
    });
  },
);
