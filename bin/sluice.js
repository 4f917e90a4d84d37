#!/usr/bin/env node
// Entry point of the `sluice` executable: runs the compiled CLI.
import { main } from '../dist/cli/index.js';

process.exitCode = await main(process.argv);
