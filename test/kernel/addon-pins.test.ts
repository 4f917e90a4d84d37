// Kernel tests of pins: a map pinned by a child process outlives it; pinned programs and links are recognised; bad paths explain themselves.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, expect, it } from 'vitest';

import {
  BPFFS_ROOT,
  ensureBpffs,
  isPinned,
  loadObject,
  mkdirBpffs,
  openPinned,
  unpin,
} from '../../bpf/index.js';
import { describeKernel } from '../helpers/privileges.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const fixture = join(root, 'bpf/progs/addon_test.o');
const run = randomBytes(4).toString('hex');
const pinDir = `${BPFFS_ROOT}/sluice-test-${run}`;

function errorShape(fn: () => unknown): { name: string; code: string; message: string } {
  try {
    fn();
  } catch (error: unknown) {
    const e = error as Error & { code: string };
    return { name: e.name, code: e.code, message: e.message.replaceAll(run, '<run>') };
  }
  throw new Error('expected a throw');
}

await describeKernel('addon pins', () => {
  let scratch: string;

  beforeAll(() => {
    ensureBpffs();
    mkdirBpffs(pinDir);
    scratch = mkdtempSync(join(tmpdir(), 'sluice-pin-'));
  });

  afterAll(() => {
    rmSync(pinDir, { recursive: true, force: true });
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  it('keeps a map that a finished child process created, pinned and filled', () => {
    const script = join(scratch, 'pin-child.mts');
    writeFileSync(
      script,
      `import { createMap } from ${JSON.stringify(join(root, 'bpf/index.ts'))};
const map = createMap({ type: 'hash', keySize: 4, valueSize: 8, maxEntries: 16, name: 'child_map' });
for (let i = 0; i < 10; i++) {
  const key = Buffer.alloc(4); key.writeUInt32LE(i);
  const value = Buffer.alloc(8); value.writeBigUInt64LE(BigInt(i * 1000));
  map.update(key, value);
}
map.pin(process.argv[2]);
map.close();
console.log('pinned');
`,
    );
    const path = `${pinDir}/child_map`;
    const out = execFileSync(process.execPath, ['--import', 'tsx', script, path], {
      cwd: root,
      encoding: 'utf8',
    });
    expect(out.trim()).toBe('pinned');
    expect(isPinned(path)).toBe(true);

    const pinned = openPinned(path);
    expect(pinned.kind).toBe('map');
    if (pinned.kind !== 'map') return;
    const map = pinned.map;
    expect(map.name).toBe('child_map');
    const entries = [...map.entries()]
      .map(([k, v]) => [k.readUInt32LE(), Number((v as Buffer).readBigUInt64LE())])
      .sort((a, b) => a[0] - b[0]);
    expect(entries).toEqual(Array.from({ length: 10 }, (_, i) => [i, i * 1000]));
    map.close();

    unpin(path);
    expect(isPinned(path)).toBe(false);
    expect(errorShape(() => openPinned(path))).toMatchInlineSnapshot(`
      {
        "code": "ENOENT",
        "message": "open pinned object "/sys/fs/bpf/sluice-test-<run>/child_map": no such file or directory",
        "name": "SyscallError",
      }
    `);
  });

  it('recognises pinned programs and links by kind', () => {
    const object = loadObject(fixture);
    const prog = object.program('addon_pass_xdp');
    const progPath = `${pinDir}/prog`;
    prog.pin(progPath);
    const pinned = openPinned(progPath);
    expect(pinned.kind).toBe('program');
    if (pinned.kind === 'program') {
      expect(pinned.program.id).toBe(prog.id);
      pinned.program.close();
    }
    unpin(progPath);
    prog.close();
    object.close();
  });

  it('lets libbpf pin object maps at load and reuses them in the next load', () => {
    const path = `${pinDir}/test_hash`;
    const first = loadObject(fixture, { pinPaths: { test_hash: path } });
    const a = first.map('test_hash');
    a.update(Buffer.from([1, 0, 0, 0]), Buffer.alloc(8, 7));
    first.close();
    a.close();
    const second = loadObject(fixture, { pinPaths: { test_hash: path } });
    const b = second.map('test_hash');
    expect(b.lookup(Buffer.from([1, 0, 0, 0]))).toEqual(Buffer.alloc(8, 7));
    b.close();
    second.close();
    unpin(path);
  });

  it('explains pin failures: missing directory, not a bpffs, existing pin', () => {
    const object = loadObject(fixture);
    const map = object.map('test_array');
    try {
      expect(errorShape(() => map.pin(`${pinDir}/missing/dir/m`))).toMatchInlineSnapshot(`
        {
          "code": "ENOENT",
          "message": "pin map "test_array" at "/sys/fs/bpf/sluice-test-<run>/missing/dir/m": no such file or directory (directory "/sys/fs/bpf/sluice-test-<run>/missing/dir" does not exist; create it with mkdirBpffs())",
          "name": "SyscallError",
        }
      `);
      expect(errorShape(() => map.pin(`/tmp/sluice-not-bpffs-${run}`))).toMatchInlineSnapshot(`
        {
          "code": "EPERM",
          "message": "pin map "test_array" at "/tmp/sluice-not-bpffs-<run>": operation not permitted ("/tmp" is not in a bpffs; mount one with ensureBpffs())",
          "name": "SyscallError",
        }
      `);
      map.pin(`${pinDir}/m`);
      expect(errorShape(() => map.pin(`${pinDir}/m`))).toMatchInlineSnapshot(`
        {
          "code": "EEXIST",
          "message": "pin map "test_array" at "/sys/fs/bpf/sluice-test-<run>/m": file exists (something is pinned there already; unpin it first)",
          "name": "SyscallError",
        }
      `);
      expect(errorShape(() => openPinned(`${pinDir}/nothing-here`))).toMatchInlineSnapshot(`
        {
          "code": "ENOENT",
          "message": "open pinned object "/sys/fs/bpf/sluice-test-<run>/nothing-here": no such file or directory",
          "name": "SyscallError",
        }
      `);
      expect(errorShape(() => unpin(`/tmp/sluice-not-bpffs-${run}`))).toMatchInlineSnapshot(`
        {
          "code": "ENOENT",
          "message": "unpin "/tmp/sluice-not-bpffs-<run>": no such file or directory",
          "name": "SyscallError",
        }
      `);
      expect(errorShape(() => mkdirBpffs(`/tmp/sluice-${run}/x`))).toMatchInlineSnapshot(`
        {
          "code": "BPF_INVALID_ARGUMENT",
          "message": "create bpffs directory "/tmp/sluice-<run>/x": "/tmp" is not in a bpffs",
          "name": "InvalidArgumentError",
        }
      `);
      unpin(`${pinDir}/m`);
    } finally {
      map.close();
      object.close();
    }
  });
});
