// The README's kernel promises match the code: the Quick start's minimum and the Kernel features table.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { root, sourceFiles } from '../helpers/sources.js';
const readme = readFileSync(join(root, 'README.md'), 'utf8');

/** 6.9 → 6009, so versions compare as numbers. */
function versionKey(version: string): number {
  const [major, minor] = version.split('.').map(Number);
  return major * 1000 + minor;
}

/** The text of every TypeScript and C++ file of the bpf area, the addon's sources included. */
function bpfSources(): string[] {
  return sourceFiles('bpf', /\.(ts|cc|h)$/)
    .filter((path) => !path.includes('/progs/'))
    .map((path) => readFileSync(path, 'utf8'));
}

/** Rows of the Kernel features table: feature cell (lower case) → Linux version. */
function featureTable(): Map<string, string> {
  const section = readme.split(/^## Kernel features$/m)[1]?.split(/^## /m)[0] ?? '';
  const rows = new Map<string, string>();
  for (const line of section.split('\n')) {
    const cells = line.split('|').map((cell) => cell.trim());
    if (cells.length === 5 && /^\d+\.\d+$/.test(cells[3]))
      rows.set(cells[1].toLowerCase(), cells[3]);
  }
  return rows;
}

describe('README kernel requirements', () => {
  it('lists every feature the code reports as NotSupportedError, with its minKernel', () => {
    const reported = new Map<string, string>();
    for (const text of bpfSources()) {
      for (const [, feature, minKernel] of text.matchAll(
        /ThrowNotSupported\([^;]*?"([^"]+)",\s*"(\d+\.\d+)"\)/g,
      ))
        reported.set(feature.toLowerCase(), minKernel);
    }
    expect(reported.size).toBeGreaterThan(0);
    const table = featureTable();
    for (const [feature, minKernel] of reported) {
      const row = [...table].find(([cell]) => cell.includes(feature));
      expect(row?.[1], `README row for "${feature}"`).toBe(minKernel);
    }
  });

  it('asks in the Quick start for the newest kernel any feature needs', () => {
    const newest = [...featureTable().values()].sort((a, b) => versionKey(b) - versionKey(a))[0];
    // The code's own notes ("Linux ≥ 6.9", "Linux >= 6.6") may not ask for more than the table.
    const noted = bpfSources().flatMap((text) =>
      [...text.matchAll(/Linux (?:≥|>=) (\d+\.\d+)/g)].map((m) => m[1]),
    );
    for (const version of noted)
      expect(versionKey(version)).toBeLessThanOrEqual(versionKey(newest));
    const quickStart = readme.split(/^## Quick start$/m)[1]?.split(/^## /m)[0] ?? '';
    expect(/Linux ≥ (\d+\.\d+)/.exec(quickStart)?.[1]).toBe(newest);
  });
});
