// Kernel tests of the addon's maps: object load, CRUD on hash/array/lpm, iteration, per-CPU, batches, fd values.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, expect, it } from 'vitest';

import {
  BpfMap,
  BpfObject,
  MAP_FLAGS,
  SyscallError,
  type MapSpec,
  createMap,
  loadObject,
  possibleCpus,
} from '../../bpf/index.js';
import { describeKernel } from '../helpers/privileges.js';

const fixture = fileURLToPath(new URL('../../bpf/progs/addon_test.o', import.meta.url));

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};
const u64 = (n: number | bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
};
const lpmKey = (prefixlen: number, a: number, b: number, c: number, d: number): Buffer =>
  Buffer.from([prefixlen, 0, 0, 0, a, b, c, d]);

/** A hash of u32 keys and u64 values. */
const U32_HASH = { type: 'hash', keySize: 4, valueSize: 8 } as const;

/** Runs `fn` on a new map, closed after, on failure too. */
async function withMap(spec: MapSpec, fn: (map: BpfMap) => Promise<void>): Promise<void> {
  const map = createMap(spec);
  try {
    await fn(map);
  } finally {
    map.close();
  }
}

/** Keys 0 … n-1 (u32) and their values (u64, value(key)), packed in fresh ArrayBuffers. */
function packed(
  n: number,
  value: (key: number) => number,
): { keys: Uint8Array; values: Uint8Array } {
  const keys = new Uint8Array(4 * n);
  const values = new Uint8Array(8 * n);
  const keyView = new DataView(keys.buffer);
  const valueView = new DataView(values.buffer);
  for (let i = 0; i < n; i++) {
    keyView.setUint32(4 * i, i, true);
    valueView.setUint32(8 * i, value(i), true);
  }
  return { keys, values };
}

/** Key → first u32 of the value, over a whole map of u32 keys, read with lookupBatch(). */
async function readBack(map: BpfMap): Promise<Map<number, number>> {
  const read = await map.lookupBatch();
  const out = new Map<number, number>();
  for (let i = 0; i < read.count; i++)
    out.set(read.keys.readUInt32LE(4 * i), read.values.readUInt32LE(map.valueSize * i));
  return out;
}

/** Keys 0 … n-1, each with value(key). */
function expected(n: number, value: (key: number) => number): Map<number, number> {
  return new Map(Array.from({ length: n }, (_, i) => [i, value(i)]));
}

/** The peak resident set size since the last reset (VmHWM), in bytes. */
function peakRss(): number {
  const status = readFileSync('/proc/self/status', 'utf8');
  return Number(/^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1]) * 1024;
}

await describeKernel('addon maps', () => {
  let object: BpfObject;
  const opened: BpfMap[] = [];
  const map = (name: string): BpfMap => {
    const m = object.map(name);
    opened.push(m);
    return m;
  };

  beforeAll(() => {
    object = loadObject(fixture);
  });
  afterAll(() => {
    for (const m of opened) m.close();
    object?.close();
  });

  it('lists programs and maps of an object before load and resizes a map', async () => {
    const { openObject } = await import('../../bpf/index.js');
    const o = openObject(fixture);
    try {
      expect(o.programs().map((p) => `${p.name} ${p.section} ${p.type}`)).toEqual([
        'addon_pass_xdp xdp xdp',
        'addon_drop_xdp xdp xdp',
        'addon_parse_xdp xdp xdp',
        'addon_count_xdp xdp xdp',
        'addon_tail_xdp xdp xdp',
        'addon_pass_tc tc sched_cls',
      ]);
      expect(o.maps().find((m) => m.name === 'test_hash')).toEqual({
        name: 'test_hash',
        type: 'hash',
        keySize: 4,
        valueSize: 8,
        maxEntries: 1024,
        flags: 0,
        internal: false,
        pinPath: null,
      });
      o.setMaxEntries('test_hash', 4096);
      o.load();
      const hash = o.map('test_hash');
      expect(hash.maxEntries).toBe(4096);
      expect(hash.info()).toMatchObject({ name: 'test_hash', type: 'hash', maxEntries: 4096 });
      hash.close();
    } finally {
      o.close();
    }
  });

  it('opens an object from a Buffer as well as from a path', async () => {
    const o = loadObject(readFileSync(fixture), { name: 'from_memory' });
    const p = o.program('addon_pass_xdp');
    expect(p.type).toBe('xdp');
    p.close();
    o.close();
  });

  it('creates, reads, updates and deletes hash elements with update flags', () => {
    const hash = map('test_hash');
    expect(hash.lookup(u32(1))).toBeNull();
    hash.update(u32(1), u64(100));
    expect(hash.lookup(u32(1))?.readBigUInt64LE()).toBe(100n);
    hash.update(u32(1), u64(101), 'exist');
    expect(hash.lookup(u32(1))?.readBigUInt64LE()).toBe(101n);
    expect(() => hash.update(u32(1), u64(102), 'noexist')).toThrow(SyscallError);
    expect(() => hash.update(u32(2), u64(102), 'exist')).toThrowErrorMatchingInlineSnapshot(
      `[SyscallError: update map "test_hash": no such key (flag "exist")]`,
    );
    const out = Buffer.alloc(8);
    expect(hash.lookupInto(u32(1), out)).toBe(true);
    expect(out.readBigUInt64LE()).toBe(101n);
    expect(hash.delete(u32(1))).toBe(true);
    expect(hash.delete(u32(1))).toBe(false);
    expect(hash.lookupInto(u32(1), out)).toBe(false);
  });

  it('iterates every key and entry of a hash map', () => {
    const hash = map('test_hash');
    for (let i = 0; i < 100; i++) hash.update(u32(i), u64(i * 3));
    const keys = [...hash.keys()].map((k) => k.readUInt32LE()).sort((a, b) => a - b);
    expect(keys).toEqual(Array.from({ length: 100 }, (_, i) => i));
    const entries = [...hash.entries()];
    expect(
      entries.every(([k, v]) => (v as Buffer).readBigUInt64LE() === BigInt(k.readUInt32LE() * 3)),
    ).toBe(true);
    for (let i = 0; i < 100; i++) hash.delete(u32(i));
    expect([...hash.keys()]).toEqual([]);
  });

  it('reads zeroed array slots and refuses to delete from an array', () => {
    const array = map('test_array');
    expect(array.lookup(u32(5))?.readBigUInt64LE()).toBe(0n);
    array.update(u32(5), u64(55));
    expect(array.lookup(u32(5))?.readBigUInt64LE()).toBe(55n);
    expect([...array.keys()]).toHaveLength(16);
    expect(() => array.delete(u32(5))).toThrowErrorMatchingInlineSnapshot(
      `[SyscallError: delete from map "test_array": array elements cannot be deleted (write zeroes instead)]`,
    );
    expect(() => array.update(u32(16), u64(1))).toThrowErrorMatchingInlineSnapshot(
      `[SyscallError: update map "test_array": index out of range (max entries 16)]`,
    );
  });

  it('matches the longest prefix in an lpm trie', () => {
    const lpm = map('test_lpm');
    lpm.update(lpmKey(8, 10, 0, 0, 0), u64(8));
    lpm.update(lpmKey(24, 10, 1, 2, 0), u64(24));
    expect(lpm.lookup(lpmKey(32, 10, 1, 2, 3))?.readBigUInt64LE()).toBe(24n);
    expect(lpm.lookup(lpmKey(32, 10, 9, 9, 9))?.readBigUInt64LE()).toBe(8n);
    expect(lpm.lookup(lpmKey(32, 192, 0, 2, 1))).toBeNull();
    expect([...lpm.keys()]).toHaveLength(2);
    expect(lpm.delete(lpmKey(24, 10, 1, 2, 0))).toBe(true);
    expect(lpm.lookup(lpmKey(32, 10, 1, 2, 3))?.readBigUInt64LE()).toBe(8n);
    lpm.delete(lpmKey(8, 10, 0, 0, 0));
  });

  it('reads and writes per-CPU values as one Buffer per possible CPU', async () => {
    const pcpu = map('test_pcpu');
    const cpus = possibleCpus();
    pcpu.update(
      u32(3),
      Array.from({ length: cpus }, (_, c) => u64(c + 10)),
    );
    const values = pcpu.lookupPerCpu(u32(3));
    expect(values?.map((v) => Number(v.readBigUInt64LE()))).toEqual(
      Array.from({ length: cpus }, (_, c) => c + 10),
    );
    pcpu.update(u32(4), u64(7));
    expect(pcpu.lookupPerCpu(u32(4))?.every((v) => v.readBigUInt64LE() === 7n)).toBe(true);
    // the program counts into slot 0 on the CPU it runs on
    const prog = object.program('addon_count_xdp');
    await prog.testRun({ data: Buffer.alloc(64), repeat: 5 });
    prog.close();
    const counted = pcpu.lookupPerCpu(u32(0));
    expect(counted?.reduce((sum, v) => sum + v.readBigUInt64LE(), 0n)).toBe(5n);
    const batch = await pcpu.lookupBatch();
    expect(batch.count).toBe(3);
    expect(batch.values.length).toBe(3 * 8 * cpus);
  });

  it('stores maps in an array-of-maps and programs in a prog array', async () => {
    const outer = map('test_outer');
    const inner = createMap({
      type: 'array',
      keySize: 4,
      valueSize: 4,
      maxEntries: 4,
      name: 'inner_a',
    });
    outer.setFd(u32(1), inner);
    // a lookup from user space returns the inner map's id
    expect(outer.lookup(u32(1))?.readUInt32LE()).toBe(inner.id);
    expect(outer.delete(u32(1))).toBe(true);
    inner.close();

    const made = createMap({
      type: 'array_of_maps',
      keySize: 4,
      valueSize: 4,
      maxEntries: 2,
      name: 'outer_b',
      innerMap: opened[0] ?? map('test_array'),
    });
    expect(made.type).toBe('array_of_maps');
    made.close();

    const progs = map('test_progs');
    const tail = object.program('addon_tail_xdp');
    const drop = object.program('addon_drop_xdp');
    expect((await tail.testRun({ data: Buffer.alloc(64) })).retval).toBe(0); // XDP_ABORTED: the slot is empty
    progs.setFd(u32(0), drop);
    expect(progs.lookup(u32(0))?.readUInt32LE()).toBe(drop.id);
    expect((await tail.testRun({ data: Buffer.alloc(64) })).retval).toBe(1); // XDP_DROP via tail call
    progs.delete(u32(0));
    tail.close();
    drop.close();
  });

  it('batch-updates, reads back and deletes 1,000,000 hash entries while the event loop keeps ticking', async () => {
    const n = 1_000_000;
    const hash = createMap({
      type: 'hash',
      keySize: 4,
      valueSize: 8,
      maxEntries: n,
      name: 'big_hash',
    });
    const keys = Buffer.alloc(4 * n);
    const values = Buffer.alloc(8 * n);
    for (let i = 0; i < n; i++) {
      keys.writeUInt32LE(i, 4 * i);
      values.writeUInt32LE(i ^ 0x5a5a, 8 * i);
    }
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    try {
      const before = ticks;
      const updated = await hash.updateBatch(keys, values);
      expect(updated).toEqual({ count: n, fallback: false });
      expect(ticks - before).toBeGreaterThan(2);

      const read = await hash.lookupBatch();
      expect(read.count).toBe(n);
      const seen = new Uint8Array(n);
      for (let i = 0; i < n; i++) {
        const key = read.keys.readUInt32LE(4 * i);
        seen[key] = 1;
        if (read.values.readUInt32LE(8 * i) !== (key ^ 0x5a5a))
          throw new Error(`wrong value for key ${key}`);
      }
      expect(seen.every((s) => s === 1)).toBe(true);

      const deleted = await hash.deleteBatch(keys);
      expect(deleted.count).toBe(n);
      expect(hash.nextKey(null)).toBeNull();
      expect(ticks).toBeGreaterThan(5);
    } finally {
      clearInterval(timer);
      hash.close();
    }
  });

  it('batch-updates, reads back and deletes 1,000,000 lpm trie prefixes off the event loop', async () => {
    const n = 1_000_000;
    const lpm = createMap({
      type: 'lpm_trie',
      keySize: 8,
      valueSize: 8,
      maxEntries: n,
      flags: MAP_FLAGS.NO_PREALLOC,
      name: 'big_lpm',
    });
    const keys = Buffer.alloc(8 * n);
    const values = Buffer.alloc(8 * n);
    for (let i = 0; i < n; i++) {
      keys.writeUInt32LE(32, 8 * i);
      keys.writeUInt32BE(0x0a000000 + i, 8 * i + 4);
      values.writeUInt32LE(i, 8 * i);
    }
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    try {
      expect((await lpm.updateBatch(keys, values)).count).toBe(n);
      expect(ticks).toBeGreaterThan(2);
      expect(lpm.lookup(lpmKey(32, 10, 0, 0x12, 0x34))?.readUInt32LE()).toBe(0x1234);
      expect((await lpm.lookupBatch()).count).toBe(n);
      expect((await lpm.deleteBatch(keys)).count).toBe(n);
      expect(lpm.nextKey(null)).toBeNull();
    } finally {
      clearInterval(timer);
      lpm.close();
    }
  });

  it('batch-updates what the buffers held at the call, though they change right after', async () => {
    const n = 200_000;
    await withMap({ ...U32_HASH, maxEntries: n, name: 'copy_hash' }, async (hash) => {
      const { keys, values } = packed(n, (i) => i + 1);
      const pending = hash.updateBatch(keys, values);
      // The worker runs while these writes happen: it must see none of them.
      keys.fill(0xff);
      values.fill(0xee);
      expect(await pending).toEqual({ count: n, fallback: false });
      expect(hash.lookup(Buffer.alloc(4, 0xff))).toBeNull();
      expect(await readBack(hash)).toEqual(expected(n, (i) => i + 1));
    });
  });

  it('batch-updates and deletes from ArrayBuffers transferred right after the call', async () => {
    const n = 200_000;
    await withMap({ ...U32_HASH, maxEntries: n, name: 'xfer_hash' }, async (hash) => {
      // Transferring detaches an ArrayBuffer: its memory now belongs to the copy, which
      // overwrites it while the worker runs.
      const transferAndScribble = (bytes: Uint8Array): void => {
        new Uint8Array(structuredClone(bytes.buffer, { transfer: [bytes.buffer] })).fill(0xee);
        expect(bytes.byteLength).toBe(0);
      };
      const { keys, values } = packed(n, (i) => i ^ 0x5a5a);
      const pending = hash.updateBatch(keys, values);
      transferAndScribble(keys);
      transferAndScribble(values);
      expect(await pending).toEqual({ count: n, fallback: false });
      expect(await readBack(hash)).toEqual(expected(n, (i) => i ^ 0x5a5a));

      const doomed = packed(n, () => 0).keys;
      const deleting = hash.deleteBatch(doomed);
      transferAndScribble(doomed);
      expect(await deleting).toEqual({ count: n, fallback: false });
      expect(hash.nextKey(null)).toBeNull();
    });
  });

  it('reads a few entries of a map with room for millions without allocating for all of them', async () => {
    // Room for 1,000,000 values of 256 bytes: a buffer for every possible element would be 260 MB.
    const spec = { type: 'hash', keySize: 4, valueSize: 256, maxEntries: 1_000_000 } as const;
    await withMap({ ...spec, flags: MAP_FLAGS.NO_PREALLOC, name: 'sparse_hash' }, async (hash) => {
      for (let i = 0; i < 10; i++) hash.update(u32(i), Buffer.alloc(256, i));
      // Reset the peak resident size (VmHWM), so it measures this call alone.
      writeFileSync('/proc/self/clear_refs', '5');
      const before = process.memoryUsage().rss;
      const read = await hash.lookupBatch();
      const peak = peakRss();
      expect(read.count).toBe(10);
      const entries = Array.from({ length: 10 }, (_, i) => [
        read.keys.readUInt32LE(4 * i),
        read.values[256 * i],
      ]);
      expect(entries.sort((a, b) => a[0] - b[0])).toEqual(
        Array.from({ length: 10 }, (_, i) => [i, i]),
      );
      expect(process.memoryUsage().rss - before).toBeLessThan(100e6);
      expect(peak - before).toBeLessThan(100e6);
    });
  });

  it('reports how far a failing batch got', async () => {
    const hash = createMap({
      type: 'hash',
      keySize: 4,
      valueSize: 8,
      maxEntries: 4,
      name: 'small_hash',
    });
    const keys = Buffer.concat([0, 1, 2, 3, 4, 5].map(u32));
    const values = Buffer.alloc(6 * 8);
    const error = await hash.updateBatch(keys, values).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SyscallError);
    expect({
      code: (error as SyscallError).code,
      processed: (error as SyscallError).processed,
      message: (error as Error).message,
    }).toMatchInlineSnapshot(`
      {
        "code": "E2BIG",
        "message": "batch update map "small_hash": map is full (max entries 4)",
        "processed": 4,
      }
    `);
    hash.close();
  });

  it('batch-updates a few entries on the calling thread, per-CPU arrays too, in one call', async () => {
    await withMap({ type: 'array', keySize: 4, valueSize: 8, maxEntries: 64 }, async (array) => {
      const keys = Buffer.concat([3, 9, 60].map(u32));
      const values = Buffer.concat([u64(30), u64(90), u64(600)]);
      expect(array.updateBatchSync(keys, values)).toEqual({ count: 3, fallback: false });
      expect([3, 9, 60, 4].map((k) => array.lookup(u32(k)))).toEqual([
        u64(30),
        u64(90),
        u64(600),
        u64(0),
      ]);
      // `count` writes the first entries only.
      array.updateBatchSync(Buffer.concat([u32(4), u32(5)]), Buffer.concat([u64(7), u64(8)]), {
        count: 1,
      });
      expect([array.lookup(u32(4)), array.lookup(u32(5))]).toEqual([u64(7), u64(0)]);
      expect(() => array.updateBatchSync(keys, Buffer.alloc(8))).toThrow(/3 keys but 1 values/);
      expect(() => array.updateBatchSync(u32(64), u64(1))).toThrow(SyscallError);
    });
    const cpus = possibleCpus();
    await withMap(
      { type: 'percpu_array', keySize: 4, valueSize: 8, maxEntries: 4 },
      async (percpu) => {
        // One 8-byte value per possible CPU and key.
        const values = Buffer.alloc(2 * 8 * cpus);
        for (let c = 0; c < cpus; c++) values.writeBigUInt64LE(BigInt(100 + c), (cpus + c) * 8);
        percpu.updateBatchSync(Buffer.concat([u32(0), u32(1)]), values);
        expect(percpu.lookupPerCpu(u32(1))).toEqual(
          Array.from({ length: cpus }, (_, c) => u64(100 + c)),
        );
      },
    );
  });
});
