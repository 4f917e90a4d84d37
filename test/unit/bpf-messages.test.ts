// The bpf area's messages name its own options and methods: a library caller has no command-line flags.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { root, sourceFiles } from '../helpers/sources.js';

describe('bpf messages', () => {
  it('name no command-line flag', () => {
    const flags: string[] = [];
    for (const path of sourceFiles('bpf', /\.(ts|cc|h)$/)) {
      const lines = readFileSync(path, 'utf8').split('\n');
      lines.forEach((line, i) => {
        // A flag inside a string literal: 'use --replace', "(use --mode generic)".
        for (const [flag] of line.matchAll(/(?<=['"`][^'"`]*)--[a-z][a-z-]*/g))
          flags.push(`${path.slice(root.length)}:${i + 1}: ${flag}`);
      });
    }
    expect(flags).toEqual([]);
  });
});
