#!/usr/bin/env bash
# Bundles the compiled CLI (dist/cli/index.js, with the daemon it imports for `sluice serve`) into
# one file, dist/sluice.mjs, which bin/sluice.js runs. Node 20 spends most of a start in its module
# loader (some 500 files: fastify, typebox, undici, …); one file halves the time to "sluice ready".
# `netlink` stays outside: it finds its native binding relative to its own files.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
npx --no-install esbuild dist/cli/index.js --bundle --platform=node --format=esm --target=node20 \
  --external:netlink --minify-whitespace --minify-syntax --log-level=warning --outfile=dist/sluice.mjs \
  --banner:js="import { createRequire as __sluiceRequire } from 'node:module'; const require = __sluiceRequire(import.meta.url);"
