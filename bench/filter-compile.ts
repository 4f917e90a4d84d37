// Compile time of long expressions: sluice's compiler against libpcap's, timed as `tcpdump -d` runs.
import { execFileSync } from 'node:child_process';
import { compileFilter } from '../bpf/filter/index.js';
import { hostList } from '../test/helpers/expressions.js';
import type { BenchTable } from './table.js';

/** Host lists past libpcap 1.10's old 4096-block limit: 400 terms make 4,802 blocks. */
const TERMS = [400, 600];
const ROUNDS = 3;

function millisecondsOf(fn: () => void): number {
  const started = performance.now();
  fn();
  return performance.now() - started;
}

/**
 * Wall time to compile an n-term host list, best of 3 rounds, sluice and tcpdump alternating so
 * both see the same load. tcpdump's time includes starting the process: milliseconds, of seconds.
 */
export async function benchFilterCompile(): Promise<{ tables: BenchTable[]; notes: string[] }> {
  const rows = TERMS.map((terms) => {
    const expression = hostList(terms);
    let sluice = Infinity;
    let tcpdump = Infinity;
    let insns = 0;
    for (let round = 0; round < ROUNDS; round++) {
      sluice = Math.min(
        sluice,
        millisecondsOf(() => (insns = compileFilter(expression).length)),
      );
      tcpdump = Math.min(
        tcpdump,
        millisecondsOf(() =>
          execFileSync('tcpdump', ['-d', '-y', 'EN10MB', '--', expression], {
            stdio: ['ignore', 'ignore', 'pipe'],
          }),
        ),
      );
    }
    return {
      workload: `${terms}-term host list (${insns} insns)`,
      sluice,
      peer: tcpdump,
      target: '< 1.00',
    };
  });
  return {
    tables: [
      {
        title: `compile time of long host lists (wall time, best of ${ROUNDS}, alternating)`,
        unit: 'ms',
        peer: 'tcpdump -d',
        rows,
      },
    ],
    notes: [],
  };
}
