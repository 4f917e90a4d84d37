// Kernel test that handles do not leak file descriptors: 10,000 create/load/close cycles leave /proc/self/fd unchanged.
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { expect, it } from 'vitest';

import { VerifierError, createMap, loadObject, loadProgram } from '../../bpf/index.js';
import { describeKernel } from '../helpers/privileges.js';

const fixture = fileURLToPath(new URL('../../bpf/progs/addon_test.o', import.meta.url));
const PASS = Buffer.from([0xb7, 0, 0, 0, 2, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]);
const UNINIT = Buffer.from([0xbf, 0x20, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]);

const openFds = (): number => readdirSync('/proc/self/fd').length;

async function cycle(i: number): Promise<void> {
  const map = createMap({
    type: 'hash',
    keySize: 4,
    valueSize: 8,
    maxEntries: 8,
    name: 'leak_map',
  });
  const prog = loadProgram({ type: 'xdp', insns: PASS, name: 'leak_prog' });
  const key = Buffer.alloc(4);
  key.writeUInt32LE(i);
  map.update(key, Buffer.alloc(8));
  if (i % 100 === 0) {
    await map.updateBatch(Buffer.alloc(8), Buffer.alloc(16));
    await map.lookupBatch();
    await prog.testRun({ data: Buffer.alloc(64) });
    expect(() => loadProgram({ type: 'xdp', insns: UNINIT, name: 'leak_bad' })).toThrow(
      VerifierError,
    );
  }
  if (i % 500 === 0) {
    const object = loadObject(fixture);
    object.map('test_hash').close();
    object.program('addon_pass_xdp').close();
    object.close();
  }
  map.close();
  prog.close();
  expect(() => map.lookup(key)).toThrow('map "leak_map" is closed');
}

await describeKernel('addon file descriptors', () => {
  it('leaves the fd count unchanged after 10,000 map and program open/load/close cycles', async () => {
    // warm up: libbpf probes kernel features once, vitest opens its own files
    for (let i = 0; i < 10; i++) await cycle(i);
    const before = openFds();
    for (let i = 0; i < 10_000; i++) await cycle(i);
    expect(openFds()).toBe(before);
  });
});

await describeKernel('addon handles and the garbage collector', () => {
  it('reports a closed map, not a crash, through an update function that outlived its map', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const before = openFds();
    const update = ((): ((key: Buffer, value: Buffer, flags: number) => void) => {
      const map = createMap({
        type: 'hash',
        keySize: 4,
        valueSize: 8,
        maxEntries: 8,
        name: 'orphan_map',
      });
      return map.native.update.bind(null);
    })();
    update(Buffer.alloc(4), Buffer.alloc(8), 0);
    // The map's finalizer runs in a later turn of the event loop than the collection.
    for (let i = 0; i < 20 && openFds() > before; i++) {
      gc();
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(openFds()).toBe(before);
    expect(() => update(Buffer.alloc(4), Buffer.alloc(8), 0)).toThrow(
      'map is closed: its handle was garbage-collected',
    );
  });
});
