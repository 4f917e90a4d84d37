// Build time of the load balancer's Maglev table (M = 65537) for 10, 100 and 1,000 backends, against the Maglev paper's C++ figure.
import { buildMaglevTable, type MaglevBackend } from '../controller/lb/maglev.js';
import type { BenchTable } from './table.js';

const SIZE = 65537;
const WARMUP = 3;
const RUNS = 11;
/** The Maglev paper's table generation time (Eisenbud et al., NSDI 2016), C++: quoted, not measured here. */
const PAPER_MS = 1.8;
const TARGET_MS = 20;

function backendsOf(n: number, weightOf: (i: number) => number = () => 1): MaglevBackend[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `10.1.${i >> 8}.${(i & 255) + 1}`,
    weight: weightOf(i),
    key: i,
  }));
}

/** Median wall time of one build, in ms, after a warm-up. */
function medianBuildMs(backends: readonly MaglevBackend[]): number {
  for (let i = 0; i < WARMUP; i++) buildMaglevTable(backends, SIZE);
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const started = performance.now();
    buildMaglevTable(backends, SIZE);
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  return times[RUNS >> 1];
}

/** Maglev build times: equal weights in the table; 2 backends and skewed weights in the notes. */
export async function benchLbMaglev(): Promise<{ tables: BenchTable[]; notes: string[] }> {
  const rows = [10, 100, 1000].map((n) => ({
    workload: `M = ${SIZE}, ${n.toLocaleString('en-US')} backends of weight 1`,
    sluice: medianBuildMs(backendsOf(n)),
    peer: PAPER_MS,
    target: `< ${(TARGET_MS / PAPER_MS).toFixed(1)} (< ${TARGET_MS} ms)`,
  }));
  const two = medianBuildMs(backendsOf(2));
  const skewed = medianBuildMs(backendsOf(1000, (i) => (i === 0 ? 65535 : 1)));
  const mixed = medianBuildMs(backendsOf(1000, (i) => [1, 2, 4, 100, 7][i % 5]));
  return {
    tables: [
      {
        title: `Maglev table build (median of ${RUNS} after ${WARMUP} warm-up builds)`,
        unit: 'ms',
        peer: 'Maglev paper, C++ (quoted)',
        rows,
      },
    ],
    notes: [
      `the peer column is the Maglev paper's ${PAPER_MS} ms for C++ (Eisenbud et al., NSDI 2016), a quoted constant on other hardware, not a run here; the target is sluice < ${TARGET_MS} ms`,
      `2 backends of weight 1: ${two.toFixed(2)} ms`,
      `1,000 backends, weights 1, 2, 4, 100, 7 in turn: ${mixed.toFixed(2)} ms`,
      `1,000 backends, one of weight 65535 and 999 of weight 1 (the heap schedule): ${skewed.toFixed(2)} ms`,
    ],
  };
}
