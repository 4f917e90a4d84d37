// Pinned maps user space creates itself: opened when pinned, else created and pinned; and the
// 64-byte name tables (set names by bit, rule ids by counter slot) that survive a restart in them.
import { createMap, isPinned, openPinned, type BpfMap, type MapSpec } from '../../bpf/index.js';
import { DataplaneError } from './errors.js';

/** Bytes of one name in a name table: 63 of UTF-8 and a terminating zero. */
export const NAME_BYTES = 64;

/** The map pinned at `path`, or a new one made from `spec` and pinned there. */
export function openOrCreateMap(path: string, spec: MapSpec): BpfMap {
  if (isPinned(path)) {
    const pinned = openPinned(path);
    if (pinned.kind !== 'map') {
      throw new DataplaneError(`open "${path}": a ${pinned.kind} is pinned there`, 'PIN_CONFLICT');
    }
    return pinned.map;
  }
  const map = createMap(spec);
  map.pin(path);
  return map;
}

/** An array of `entries` names, pinned at `path`. */
export function openNameTable(path: string, entries: number, name: string): BpfMap {
  return openOrCreateMap(path, {
    type: 'array',
    keySize: 4,
    valueSize: NAME_BYTES,
    maxEntries: entries,
    name,
  });
}

/** A name as a table value; the empty name clears the slot. */
export function encodeName(text: string): Buffer {
  const b = Buffer.alloc(NAME_BYTES);
  b.write(text.slice(0, NAME_BYTES - 1), 'utf8');
  return b;
}

/** The name in a table value ('' for an empty slot). */
export function decodeName(value: Buffer | null): string {
  return value ? value.toString('utf8').replace(/\0.*$/s, '') : '';
}
