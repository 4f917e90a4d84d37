#!/usr/bin/env node
// Entry point of the `sluice` executable: runs the compiled CLI, bundled into one file when the
// build made it (scripts/bundle.sh: a start loads one file instead of some 500), else as built.
import { existsSync } from 'node:fs';

const bundle = new URL('../dist/sluice.mjs', import.meta.url);
const { main } = await import(existsSync(bundle) ? bundle.href : '../dist/cli/index.js');

process.exitCode = await main(process.argv);
