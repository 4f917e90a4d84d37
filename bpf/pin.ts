// Pinned objects: open by path (recognising maps, programs and links), unpin, and the bpffs helpers.
import { existsSync } from 'node:fs';

import { native } from './addon/index.js';
import { explainPinError } from './bpffs.js';
import { BpfLink } from './link.js';
import { BpfMap } from './map.js';
import { BpfProgram } from './program.js';

export { BPFFS_ROOT, ensureBpffs, isBpffs, mkdirBpffs } from './bpffs.js';

/** A pinned object, by kind. */
export type Pinned =
  | { kind: 'map'; map: BpfMap }
  | { kind: 'program'; program: BpfProgram }
  | { kind: 'link'; link: BpfLink };

/**
 * Opens the object pinned at `path` (bpf_obj_get) and tells what it is. Throws SyscallError ENOENT
 * (with a hint when bpffs or the directory is missing), InvalidArgumentError for a relative path.
 */
export function openPinned(path: string): Pinned {
  let pinned;
  try {
    pinned = native.openPinned(path);
  } catch (error: unknown) {
    throw explainPinError(error, path);
  }
  switch (pinned.kind) {
    case 'map':
      return { kind: 'map', map: new BpfMap(pinned.handle) };
    case 'program':
      return { kind: 'program', program: new BpfProgram(pinned.handle) };
    case 'link':
      return { kind: 'link', link: new BpfLink(pinned.handle) };
  }
}

/** Removes the pin at `path`. Throws InvalidArgumentError outside a bpffs, SyscallError ENOENT if absent. */
export function unpin(path: string): void {
  native.unpin(path);
}

/** True if something exists at `path` inside a bpffs. */
export function isPinned(path: string): boolean {
  return existsSync(path) && native.isBpffs(path);
}
