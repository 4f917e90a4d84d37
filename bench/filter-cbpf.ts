// Filter compiler benchmarks: optimized classic BPF size against libpcap's, and compile speed.
import { compileFilter } from '../bpf/filter/index.js';
import { getJudgedCorpus } from '../test/helpers/differential.js';
import type { BenchTable } from './table.js';
import { median } from './stats.js';

/** Instruction counts of our optimizer against libpcap's (the same count `tcpdump -d` prints), over the corpus. */
export async function benchFilterCbpf(): Promise<{ tables: BenchTable[]; notes: string[] }> {
  const { entries, results } = await getJudgedCorpus('valid');
  const ratios: { expression: string; ours: number; theirs: number; ratio: number }[] = [];
  const failures: string[] = [];
  entries.forEach((entry, i) => {
    const oracle = results[i];
    if (!oracle.ok) return;
    try {
      const ours = compileFilter(entry.expression).length;
      ratios.push({
        expression: entry.expression,
        ours,
        theirs: oracle.insnCount,
        ratio: ours / oracle.insnCount,
      });
    } catch (error: unknown) {
      failures.push(`${entry.expression}: ${(error as Error).message}`);
    }
  });
  const sumOurs = ratios.reduce((s, r) => s + r.ours, 0);
  const sumTheirs = ratios.reduce((s, r) => s + r.theirs, 0);
  const worst = [...ratios].sort((a, b) => b.ratio - a.ratio).slice(0, 8);

  const expressions = entries.map((e) => e.expression);
  const compilable = expressions.filter((expression) => {
    try {
      compileFilter(expression);
      return true;
    } catch {
      return false;
    }
  });
  let compiled = 0;
  const start = process.hrtime.bigint();
  while (process.hrtime.bigint() - start < 2_000_000_000n) {
    for (const expression of compilable) compileFilter(expression);
    compiled += compilable.length;
  }
  const perSecond = compiled / (Number(process.hrtime.bigint() - start) / 1e9);

  const tables: BenchTable[] = [
    {
      title: `classic BPF size, ${ratios.length} corpus expressions (tcpdump -d count = libpcap optimizer)`,
      unit: 'insns',
      peer: 'libpcap',
      rows: [
        {
          workload: 'median per expression',
          sluice: median(ratios.map((r) => r.ours)),
          peer: median(ratios.map((r) => r.theirs)),
        },
        { workload: 'total over corpus', sluice: sumOurs, peer: sumTheirs },
        ...worst.map((r) => ({
          workload: `worst: ${r.expression.slice(0, 48)}`,
          sluice: r.ours,
          peer: r.theirs,
          target: '≤ 1.25',
        })),
      ],
    },
  ];
  const notes = [
    `median ratio ${median(ratios.map((r) => r.ratio)).toFixed(3)} (target ≤ 1.0); max ratio ${Math.max(...ratios.map((r) => r.ratio)).toFixed(3)} (target ≤ 1.25); ` +
      `${ratios.filter((r) => r.ratio > 1.25).length} above 1.25×, ${ratios.filter((r) => r.ratio < 1).length} smaller than libpcap's`,
    `compile speed: ${Math.round(perSecond)} expressions/s over ${compilable.length} corpus expressions (target ≥ 5000)`,
    ...(failures.length
      ? [`${failures.length} corpus expressions did not compile, first: ${failures[0]}`]
      : []),
  ];
  return { tables, notes };
}
