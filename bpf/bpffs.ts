// The BPF filesystem: find, mount and create directories in it; explain pin failures.
import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

import { native } from './addon/index.js';
import { InvalidArgumentError, SyscallError } from './errors.js';

/** Where bpffs is mounted by convention. */
export const BPFFS_ROOT = '/sys/fs/bpf';

/** True if `path` exists and lies in a bpffs. */
export function isBpffs(path: string): boolean {
  return native.isBpffs(path);
}

/**
 * Mounts a bpffs at `path` (default /sys/fs/bpf) unless one is there; true if it mounted one.
 * Throws SyscallError (EPERM without CAP_SYS_ADMIN, ENOENT if the directory is missing).
 */
export function ensureBpffs(path: string = BPFFS_ROOT): boolean {
  return native.mountBpffs(path);
}

function nearestExisting(path: string): string {
  let dir = path;
  while (!existsSync(dir)) {
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return dir;
}

/** mkdir -p inside a bpffs. Throws InvalidArgumentError when `path` would not be in one. */
export function mkdirBpffs(path: string): void {
  if (!path.startsWith('/'))
    throw new InvalidArgumentError(`create bpffs directory "${path}": path must be absolute`);
  const existing = nearestExisting(path);
  if (!native.isBpffs(existing)) {
    throw new InvalidArgumentError(
      `create bpffs directory "${path}": "${existing}" is not in a bpffs`,
    );
  }
  mkdirSync(path, { recursive: true, mode: 0o700 });
}

/** Adds what to do to a pin/open failure (missing bpffs or directory); other errors pass through. */
export function explainPinError(error: unknown, path: string): unknown {
  if (error instanceof SyscallError && error.code === 'EEXIST') {
    return new SyscallError(
      `${error.message} (something is pinned there already; unpin it first)`,
      {
        errno: error.errno,
        syscall: error.syscall,
        cause: error,
      },
    );
  }
  if (!(error instanceof SyscallError) || (error.code !== 'ENOENT' && error.code !== 'EPERM'))
    return error;
  const dir = dirname(path);
  const existing = nearestExisting(dir);
  let hint: string | undefined;
  if (!native.isBpffs(existing))
    hint = `"${existing}" is not in a bpffs; mount one with ensureBpffs()`;
  else if (existing !== dir)
    hint = `directory "${dir}" does not exist; create it with mkdirBpffs()`;
  if (hint === undefined) return error;
  const wrapped = new SyscallError(`${error.message} (${hint})`, {
    errno: error.errno,
    syscall: error.syscall,
    cause: error,
  });
  return wrapped;
}
