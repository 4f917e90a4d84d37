// `npm run bench`: every benchmark, each a side-by-side table against its peer, measured in this run.
import { benchFilterCbpf } from './filter-cbpf.js';
import { benchDataplaneScale } from './dataplane-scale.js';
import { benchDaemon } from './daemon.js';
import { benchFilterCompile } from './filter-compile.js';
import { runFilterEbpfBench } from './filter-ebpf.js';
import { benchLabDrop } from './lab-drop.js';
import { benchLbCost } from './lb-cost.js';
import { benchLbLab } from './lb-lab.js';
import { benchLbMaglev } from './lb-maglev.js';
import { runMapUpdateBench } from './map-update.js';
import { benchPipelineCost } from './pipeline-cost.js';
import { benchReplay } from './replay.js';
import { formatTable, type BenchTable } from './table.js';

type Section = () => Promise<{ tables: BenchTable[]; notes: string[] }>;

const sections: Record<string, Section> = {
  'map-update': async () => {
    const rows = await runMapUpdateBench();
    const target = (op: string): string =>
      op.includes('batch') ? '≤ 1.25 (rate ≥ 0.8×)' : '≤ 1.5';
    return {
      tables: [
        {
          title: 'map updates, 1,000,000 entries (best of 3 rounds, C and addon alternating)',
          unit: 'ns/elem',
          peer: 'libbpf from C',
          rows: rows.map((r) => ({
            workload: r.op,
            sluice: r.sluiceNs,
            peer: r.cNs,
            target: target(r.op),
          })),
        },
      ],
      notes: [],
    };
  },
  'filter-cbpf': benchFilterCbpf,
  'filter-compile': benchFilterCompile,
  'filter-ebpf': async () => {
    const result = await runFilterEbpfBench();
    const sizes: BenchTable = {
      title: 'the same filters: instructions after the verifier (xlated)',
      unit: 'insns',
      peer: 'hand-written C',
      rows: result.sizes.map((s) => ({ workload: s.expression, sluice: s.insns, peer: s.cInsns })),
    };
    return {
      tables: [result.table, sizes],
      notes: [
        'ns/pkt: wall time of one BPF_PROG_TEST_RUN of 1,000,000 iterations over the same packet, divided; best of 10, sluice and C alternating',
        `an empty XDP program costs ${result.baselineNs.toFixed(1)} ns/pkt on the same harness: most of each figure is the test run itself`,
        ...result.notes,
      ],
    };
  },
  'dataplane-scale': benchDataplaneScale,
  'pipeline-cost': benchPipelineCost,
  'lab-drop': benchLabDrop,
  'lb-maglev': benchLbMaglev,
  'lb-cost': benchLbCost,
  'lb-lab': benchLbLab,
  daemon: benchDaemon,
  replay: benchReplay,
};

const only = process.argv.slice(2);
for (const name of only) {
  if (!(name in sections))
    throw new Error(`unknown benchmark "${name}"; known: ${Object.keys(sections).join(', ')}`);
}
for (const [name, section] of Object.entries(sections)) {
  if (only.length && !only.includes(name)) continue;
  const { tables, notes } = await section();
  for (const table of tables) process.stdout.write(formatTable(table) + '\n');
  for (const note of notes) process.stdout.write(`- ${note}\n`);
  process.stdout.write('\n');
}
