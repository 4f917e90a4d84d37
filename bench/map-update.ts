// Benchmark: filling hash and LPM maps through the addon vs. libbpf from C (bench/c/map_update.c), side by side.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { MAP_FLAGS, createMap, type MapType } from '../bpf/index.js';
import { alignColumns } from './table.js';

export interface BenchRow {
  op: string;
  /** ns per element through sluice's addon. */
  sluiceNs: number;
  /** ns per element through libbpf from C. */
  cNs: number;
  /** sluiceNs / cNs: below 1 is faster than C. */
  ratio: number;
}

interface CResult {
  hashSingleNs: number;
  hashBatchNs: number;
  lpmSingleNs: number;
  lpmBatchNs: number;
}

const cDir = fileURLToPath(new URL('./c/', import.meta.url));
const cBinary = `${cDir}build/map_update`;

/** One run of the C baseline (bench/c/map_update.c), built on first use. */
function runC(entries: number): CResult {
  if (!existsSync(cBinary)) execFileSync('make', ['-s', '-C', cDir], { stdio: 'inherit' });
  return JSON.parse(execFileSync(cBinary, [String(entries)], { encoding: 'utf8' })) as CResult;
}

interface Workload {
  type: MapType;
  keySize: number;
  flags: number;
  keys: Buffer;
  values: Buffer;
}

function workloads(entries: number): { hash: Workload; lpm: Workload } {
  const hashKeys = Buffer.alloc(4 * entries);
  const lpmKeys = Buffer.alloc(8 * entries);
  const values = Buffer.alloc(8 * entries);
  for (let i = 0; i < entries; i++) {
    hashKeys.writeUInt32LE(i, 4 * i);
    lpmKeys.writeUInt32LE(32, 8 * i);
    lpmKeys.writeUInt32BE(0x0a000000 + i, 8 * i + 4);
    values.writeUInt32LE(i, 8 * i);
  }
  return {
    hash: { type: 'hash', keySize: 4, flags: 0, keys: hashKeys, values },
    lpm: { type: 'lpm_trie', keySize: 8, flags: MAP_FLAGS.NO_PREALLOC, keys: lpmKeys, values },
  };
}

function fresh(w: Workload, entries: number) {
  return createMap({
    type: w.type,
    keySize: w.keySize,
    valueSize: 8,
    maxEntries: entries,
    flags: w.flags,
    name: 'bench_map',
  });
}

/** Per-element bpf_map_update_elem through BpfMap.update, reusing subarray views (no copies). */
function single(w: Workload, entries: number): number {
  const map = fresh(w, entries);
  const keys: Buffer[] = [];
  const values: Buffer[] = [];
  for (let i = 0; i < entries; i++) {
    keys.push(w.keys.subarray(i * w.keySize, (i + 1) * w.keySize));
    values.push(w.values.subarray(i * 8, i * 8 + 8));
  }
  const start = process.hrtime.bigint();
  for (let i = 0; i < entries; i++) map.update(keys[i], values[i]);
  const elapsed = Number(process.hrtime.bigint() - start);
  map.close();
  return elapsed / entries;
}

async function batch(w: Workload, entries: number): Promise<number> {
  const map = fresh(w, entries);
  const start = process.hrtime.bigint();
  await map.updateBatch(w.keys, w.values);
  const elapsed = Number(process.hrtime.bigint() - start);
  map.close();
  return elapsed / entries;
}

/**
 * Runs both sides in alternating rounds (C, then the addon) and keeps each side's best per
 * operation: the machine is shared, and alternating puts both sides under the same load.
 * One row per operation. Needs CAP_BPF.
 */
export async function runMapUpdateBench(
  options: { entries?: number; rounds?: number } = {},
): Promise<BenchRow[]> {
  const entries = options.entries ?? 1_000_000;
  const rounds = options.rounds ?? 3;
  const w = workloads(entries);
  const best = { c: { ...NONE }, sluice: { ...NONE } };
  for (let round = 0; round < rounds; round++) {
    keepBest(best.c, runC(entries));
    keepBest(best.sluice, {
      hashSingleNs: single(w.hash, entries),
      hashBatchNs: await batch(w.hash, entries),
      lpmSingleNs: single(w.lpm, entries),
      lpmBatchNs: await batch(w.lpm, entries),
    });
  }
  const rows: Array<[string, keyof CResult]> = [
    ['hash update (single)', 'hashSingleNs'],
    ['hash update (batch)', 'hashBatchNs'],
    ['lpm update (single)', 'lpmSingleNs'],
    ['lpm update (batch)', 'lpmBatchNs'],
  ];
  return rows.map(([op, field]) => ({
    op,
    sluiceNs: best.sluice[field],
    cNs: best.c[field],
    ratio: best.sluice[field] / best.c[field],
  }));
}

const NONE: CResult = {
  hashSingleNs: Infinity,
  hashBatchNs: Infinity,
  lpmSingleNs: Infinity,
  lpmBatchNs: Infinity,
};

function keepBest(best: CResult, run: CResult): void {
  for (const field of Object.keys(best) as Array<keyof CResult>)
    best[field] = Math.min(best[field], run[field]);
}

/** The rows as an aligned text table. */
export function formatRows(rows: BenchRow[]): string {
  const header = ['op', 'sluice ns/elem', 'C ns/elem', 'ratio'];
  const body = rows.map((r) => [
    r.op,
    r.sluiceNs.toFixed(1),
    r.cNs.toFixed(1),
    `${r.ratio.toFixed(2)}×`,
  ]);
  return alignColumns(header, body).join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const entries = Number(process.argv[2] ?? 1_000_000);
  const rows = await runMapUpdateBench({ entries });
  console.log(formatRows(rows));
}
