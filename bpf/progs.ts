// Where the compiled kernel programs of bpf/progs live, from source and from dist/ alike.
import { join } from 'node:path';
import { packageRoot } from './addon/index.js';

export { packageRoot };

/** Path of the BPF ELF object built from bpf/progs/<name>.bpf.c (by `make -C bpf/progs`). */
export function bpfObjectPath(name: string): string {
  return join(packageRoot(), 'bpf', 'progs', `${name}.o`);
}
