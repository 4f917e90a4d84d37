// `sluice` run from the TypeScript sources (node --import tsx cli/main.ts …): bin/sluice.js's twin,
// for tests and benchmarks that start the daemon as its own process without a build.
import { main } from './index.js';

process.exitCode = await main(process.argv);
