// The benches' hand-written C peers (bench/c/<name>.bpf.c), compiled on first use.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const cDir = fileURLToPath(new URL('./c/', import.meta.url));

/**
 * Compiles bench/c/<file>.bpf.c into bench/c/build/<file>.o when missing or older than the source
 * or one of `headers` (paths relative to bench/c, which is on the include path), and returns the
 * object's path. clang comes from bootstrap, like the project's own programs' compiler.
 */
export function buildC(file: string, headers: string[] = []): string {
  const src = `${cDir}${file}.bpf.c`;
  const obj = `${cDir}build/${file}.o`;
  const newest = Math.max(
    ...[src, ...headers.map((h) => `${cDir}${h}`)].map((p) => statSync(p).mtimeMs),
  );
  if (!existsSync(obj) || statSync(obj).mtimeMs < newest) {
    mkdirSync(`${cDir}build`, { recursive: true });
    execFileSync('clang', [
      '-O2',
      '-g',
      '-target',
      'bpf',
      '-Wall',
      '-Werror',
      '-I/usr/include/x86_64-linux-gnu',
      `-I${cDir}`,
      '-c',
      src,
      '-o',
      obj,
    ]);
  }
  return obj;
}
