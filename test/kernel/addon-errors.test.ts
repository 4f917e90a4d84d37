// Kernel tests of bad input: every wrong argument gives a typed error (class, code, message) and the process lives on.
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, expect, it } from 'vitest';

import {
  BpfError,
  BpfMap,
  BpfObject,
  BpfProgram,
  attachTc,
  attachXdp,
  createMap,
  getMapById,
  ifindexOf,
  loadObject,
  loadProgram,
  openObject,
  openPinned,
  withNetns,
  type MapType,
  type RawProgramType,
} from '../../bpf/index.js';
import { native } from '../../bpf/addon/index.js';
import { describeKernel } from '../helpers/privileges.js';

const fixture = fileURLToPath(new URL('../../bpf/progs/addon_test.o', import.meta.url));
const PASS = Buffer.from([0xb7, 0, 0, 0, 2, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]);

interface Shape {
  class: string;
  code: string;
  message: string;
}

function toShape(error: unknown): Shape {
  if (!(error instanceof BpfError))
    throw new Error(`not a BpfError: ${String(error)}`, { cause: error });
  return {
    class: error.constructor.name,
    code: error.code,
    message: error.message.replace(/fd \d+/g, 'fd N'),
  };
}

function shape(fn: () => unknown): Shape {
  try {
    fn();
  } catch (error: unknown) {
    return toShape(error);
  }
  throw new Error('expected a throw');
}

async function shapeAsync(fn: () => Promise<unknown>): Promise<Shape> {
  try {
    await fn();
  } catch (error: unknown) {
    return toShape(error);
  }
  throw new Error('expected a rejection');
}

// Bypass the TypeScript types to pass what a JavaScript caller might.
const loose = <T>(value: unknown): T => value as T;

await describeKernel('addon bad input', () => {
  let object: BpfObject;
  let hash: BpfMap;
  let pcpu: BpfMap;
  let progs: BpfMap;
  let pass: BpfProgram;
  let tc: BpfProgram;

  beforeAll(() => {
    object = loadObject(fixture);
    hash = object.map('test_hash');
    pcpu = object.map('test_pcpu');
    progs = object.map('test_progs');
    pass = object.program('addon_pass_xdp');
    tc = object.program('addon_pass_tc');
  });
  afterAll(() => {
    for (const h of [hash, pcpu, progs, pass, tc]) h?.close();
    object?.close();
  });

  it('rejects keys and values of the wrong size or type', () => {
    expect(shape(() => hash.update(Buffer.alloc(3), Buffer.alloc(8)))).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "update map "test_hash": key is 3 bytes, map expects 4",
      }
    `);
    expect(shape(() => hash.update(Buffer.alloc(4), Buffer.alloc(7)))).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "update map "test_hash": value is 7 bytes, map expects 8",
      }
    `);
    expect(shape(() => hash.lookup(loose('abcd')))).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "look up in map "test_hash": key must be a Buffer or Uint8Array",
      }
    `);
    expect(shape(() => hash.lookup(loose(7)))).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "look up in map "test_hash": key must be a Buffer or Uint8Array",
      }
    `);
    expect(shape(() => hash.delete(loose(new Uint16Array(2))))).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "delete from map "test_hash": key must be a Buffer or Uint8Array",
      }
    `);
    expect(shape(() => hash.lookupInto(Buffer.alloc(4), Buffer.alloc(4)))).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "look up in map "test_hash": output is 4 bytes, map values need 8",
      }
    `);
    expect(shape(() => hash.nextKey(Buffer.alloc(5)))).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "iterate map "test_hash": key is 5 bytes, map expects 4",
      }
    `);
  });

  it('rejects bad update flags', () => {
    expect(shape(() => hash.update(Buffer.alloc(4), Buffer.alloc(8), loose('sometimes'))))
      .toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "update map "test_hash": flag must be "any", "noexist" or "exist", got "sometimes"",
      }
    `);
    expect(shape(() => hash.native.update(Buffer.alloc(4), Buffer.alloc(8), 3)))
      .toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "update map "test_hash": flags must be 0 (any), 1 (noexist) or 2 (exist), optionally | 4 (lock)",
      }
    `);
    expect(shape(() => hash.native.update(Buffer.alloc(4), Buffer.alloc(8), Number.NaN)))
      .toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "update map "test_hash": flags must be 0 (any), 1 (noexist) or 2 (exist), optionally | 4 (lock)",
      }
    `);
  });

  it('keeps per-CPU and plain values apart', () => {
    expect(shape(() => pcpu.lookup(Buffer.alloc(4)))).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "look up in map "test_pcpu": per-CPU map, use lookupPerCpu()",
      }
    `);
    expect(shape(() => hash.lookupPerCpu(Buffer.alloc(4)))).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "look up in map "test_hash": not a per-CPU map, use lookup()",
      }
    `);
    expect(shape(() => pcpu.update(Buffer.alloc(4), [Buffer.alloc(8)]))).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "update map "test_pcpu": per-CPU value has 1 entries, the machine has 2 possible CPUs",
      }
    `);
    expect(shape(() => pcpu.update(Buffer.alloc(4), Buffer.alloc(5)))).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "update map "test_pcpu": value is 5 bytes, map expects 8 (or 16 for all CPUs)",
      }
    `);
  });

  it('refuses every use of a closed map, program, link or object', async () => {
    const map = createMap({
      type: 'array',
      keySize: 4,
      valueSize: 4,
      maxEntries: 1,
      name: 'closed_map',
    });
    map.close();
    map.close();
    expect(shape(() => map.lookup(Buffer.alloc(4)))).toMatchInlineSnapshot(`
      {
        "class": "ClosedError",
        "code": "BPF_CLOSED",
        "message": "map "closed_map" is closed",
      }
    `);
    expect(shape(() => map.update(Buffer.alloc(4), Buffer.alloc(4)))).toMatchInlineSnapshot(`
      {
        "class": "ClosedError",
        "code": "BPF_CLOSED",
        "message": "map "closed_map" is closed",
      }
    `);
    expect(shape(() => map.pin('/sys/fs/bpf/never'))).toMatchInlineSnapshot(`
      {
        "class": "ClosedError",
        "code": "BPF_CLOSED",
        "message": "map "closed_map" is closed",
      }
    `);
    expect(await shapeAsync(() => map.lookupBatch())).toMatchInlineSnapshot(`
      {
        "class": "ClosedError",
        "code": "BPF_CLOSED",
        "message": "map "closed_map" is closed",
      }
    `);
    const prog = loadProgram({ type: 'xdp', insns: PASS, name: 'closed_prog' });
    prog.close();
    expect(await shapeAsync(() => prog.testRun({ data: Buffer.alloc(64) }))).toMatchInlineSnapshot(`
      {
        "class": "ClosedError",
        "code": "BPF_CLOSED",
        "message": "program "closed_prog" is closed",
      }
    `);
    expect(shape(() => progs.setFd(Buffer.alloc(4), prog))).toMatchInlineSnapshot(`
      {
        "class": "ClosedError",
        "code": "BPF_CLOSED",
        "message": "program "closed_prog" is closed",
      }
    `);
    const o = openObject(fixture);
    o.close();
    expect(shape(() => o.programs())).toMatchInlineSnapshot(`
      {
        "class": "ClosedError",
        "code": "BPF_CLOSED",
        "message": "object "addon_test.o" is closed",
      }
    `);
  });

  it('refuses object calls in the wrong state or for unknown names', () => {
    const o = openObject(fixture);
    try {
      expect(shape(() => o.map('test_hash'))).toMatchInlineSnapshot(`
        {
          "class": "InvalidStateError",
          "code": "BPF_INVALID_STATE",
          "message": "get map "test_hash": object "addon_test.o" is not loaded yet",
        }
      `);
      expect(shape(() => o.map('no_such_map'))).toMatchInlineSnapshot(`
        {
          "class": "InvalidArgumentError",
          "code": "BPF_INVALID_ARGUMENT",
          "message": "get map: object "addon_test.o" has no map "no_such_map"",
        }
      `);
      expect(shape(() => o.setMaxEntries('test_hash', -1))).toMatchInlineSnapshot(`
        {
          "class": "InvalidArgumentError",
          "code": "BPF_INVALID_ARGUMENT",
          "message": "resize map "test_hash": maxEntries must be an integer from 0 to 4294967295",
        }
      `);
      expect(shape(() => o.setPinPath('test_hash', 'relative/path'))).toMatchInlineSnapshot(`
        {
          "class": "InvalidArgumentError",
          "code": "BPF_INVALID_ARGUMENT",
          "message": "set pin path of map "test_hash": path must be absolute, got "relative/path"",
        }
      `);
      o.load();
      expect(shape(() => o.load())).toMatchInlineSnapshot(`
        {
          "class": "InvalidStateError",
          "code": "BPF_INVALID_STATE",
          "message": "load object "addon_test.o": already loaded",
        }
      `);
      expect(shape(() => o.setMaxEntries('test_hash', 10))).toMatchInlineSnapshot(`
        {
          "class": "InvalidStateError",
          "code": "BPF_INVALID_STATE",
          "message": "resize map "test_hash": object "addon_test.o" is already loaded",
        }
      `);
      expect(shape(() => o.program('no_such_prog'))).toMatchInlineSnapshot(`
        {
          "class": "InvalidArgumentError",
          "code": "BPF_INVALID_ARGUMENT",
          "message": "get program: object "addon_test.o" has no program "no_such_prog"",
        }
      `);
    } finally {
      o.close();
    }
    expect(shape(() => openObject('/nonexistent/thing.o'))).toMatchInlineSnapshot(`
      {
        "class": "SyscallError",
        "code": "ENOENT",
        "message": "open object "/nonexistent/thing.o": no such file or directory",
      }
    `);
    expect(shape(() => openObject(Buffer.from('not an ELF file at all')))).toMatchInlineSnapshot(`
      {
        "class": "SyscallError",
        "code": "LIBBPF_ERRNO__FORMAT",
        "message": "open object "object": BPF object format invalid",
      }
    `);
    expect(shape(() => openObject(loose(42)))).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "open object: expected a file path or a Buffer holding an ELF image",
      }
    `);
  });

  it('rejects bad map specs', () => {
    expect(
      shape(() =>
        createMap({ type: loose<MapType>('tree'), keySize: 4, valueSize: 4, maxEntries: 1 }),
      ),
    ).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "create map: unknown map type "tree"",
      }
    `);
    expect(
      shape(() => createMap({ type: 'hash', keySize: 4, valueSize: 4, maxEntries: Number.NaN })),
    ).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "create map: maxEntries must be an integer from 0 to 4294967295",
      }
    `);
    expect(shape(() => createMap({ type: 'hash', keySize: -4, valueSize: 4, maxEntries: 1 })))
      .toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "create map: keySize must be an integer from 0 to 4294967295",
      }
    `);
    expect(
      shape(() =>
        createMap({
          type: 'hash',
          keySize: 4,
          valueSize: 4,
          maxEntries: 1,
          name: 'a_name_that_is_too_long',
        }),
      ),
    ).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "create map: name "a_name_that_is_too_long" is longer than 15 characters, the most the kernel keeps",
      }
    `);
    expect(
      shape(() =>
        createMap({ type: 'hash', keySize: 4, valueSize: 4, maxEntries: 1, name: 'bad name!' }),
      ),
    ).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "create map: name "bad name!" may only contain letters, digits, "_" and "."",
      }
    `);
    expect(shape(() => createMap({ type: 'hash', keySize: 0, valueSize: 4, maxEntries: 1 })))
      .toMatchInlineSnapshot(`
      {
        "class": "SyscallError",
        "code": "EINVAL",
        "message": "create hash map (key 0 bytes, value 4 bytes, 1 entries, flags 0x0): the kernel refused this combination of type, sizes and flags",
      }
    `);
    expect(shape(() => createMap({ type: 'lpm_trie', keySize: 8, valueSize: 8, maxEntries: 1 })))
      .toMatchInlineSnapshot(`
      {
        "class": "SyscallError",
        "code": "EINVAL",
        "message": "create lpm_trie map (key 8 bytes, value 8 bytes, 1 entries, flags 0x0): lpm_trie needs flags NO_PREALLOC",
      }
    `);
    expect(
      shape(() => createMap({ type: 'array_of_maps', keySize: 4, valueSize: 4, maxEntries: 1 })),
    ).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "create map: a map-in-map needs innerMap, a Map",
      }
    `);
    expect(shape(() => native.createMap(loose(null)))).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "create map: options must be an object",
      }
    `);
  });

  it('refuses foreign handles where a map or a program is required', () => {
    expect(shape(() => progs.setFd(Buffer.alloc(4), hash))).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "update map "test_progs": value must be a Program for a prog array",
      }
    `);
    expect(shape(() => hash.setFd(Buffer.alloc(4), pass))).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "update map "test_hash": map type 1 does not hold programs or maps",
      }
    `);
    expect(shape(() => native.attachXdp(loose(hash.native), 1))).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "attach xdp: program must be a Program",
      }
    `);
    expect(shape(() => native.attachXdp(loose({ fd: 3 }), 1))).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "attach xdp: program must be a Program",
      }
    `);
    expect(
      shape(() =>
        createMap({
          type: 'array_of_maps',
          keySize: 4,
          valueSize: 4,
          maxEntries: 1,
          innerMap: loose(pass),
        }),
      ),
    ).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "create map: a map-in-map needs innerMap, a Map",
      }
    `);
    expect(shape(() => new (native.Map as new (...args: unknown[]) => unknown)(5)))
      .toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "a Map cannot be constructed directly: use createMap(), an object's map() or openPinned()",
      }
    `);
  });

  it('rejects bad instruction buffers and relocations', () => {
    expect(shape(() => loadProgram({ type: 'xdp', insns: Buffer.alloc(12) })))
      .toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "load program: instructions are 12 bytes, expected a non-zero multiple of 8",
      }
    `);
    expect(shape(() => loadProgram({ type: 'xdp', insns: Buffer.alloc(0) })))
      .toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "load program: instructions are 0 bytes, expected a non-zero multiple of 8",
      }
    `);
    expect(shape(() => loadProgram({ type: loose<RawProgramType>('kprobe'), insns: PASS })))
      .toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "load program: type must be "xdp", "sched_cls" or "socket_filter", got "kprobe"",
      }
    `);
    expect(
      shape(() =>
        loadProgram({ type: 'xdp', insns: PASS, relocations: [{ insnIndex: 5, map: hash }] }),
      ),
    ).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "load program: relocation 0: insnIndex 5 is past the last 16-byte instruction",
      }
    `);
    expect(
      shape(() =>
        loadProgram({ type: 'xdp', insns: PASS, relocations: [{ insnIndex: 0, map: hash }] }),
      ),
    ).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "load program: relocation 0: instruction 0 is not a 64-bit load (BPF_LD_IMM64)",
      }
    `);
    const ldImm64 = Buffer.concat([
      Buffer.from([0x18, 1, 0, 0, 0, 0, 0, 0]),
      Buffer.alloc(8),
      PASS,
    ]);
    expect(
      shape(() =>
        loadProgram({ type: 'xdp', insns: ldImm64, relocations: [{ insnIndex: 0, mapFd: -1 }] }),
      ),
    ).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "load program: relocation 0: mapFd must be a file descriptor (an integer ≥ 0)",
      }
    `);
    expect(
      shape(() =>
        loadProgram({
          type: 'xdp',
          insns: ldImm64,
          relocations: [{ insnIndex: 0, map: loose(pass) }],
        }),
      ),
    ).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "load program: relocation 0: map must be a Map",
      }
    `);
    expect(
      shape(() =>
        loadProgram({
          type: 'xdp',
          name: 'prog_as_map',
          insns: ldImm64,
          relocations: [{ insnIndex: 0, mapFd: pass.fd }],
        }),
      ),
    ).toMatchInlineSnapshot(`
      {
        "class": "VerifierError",
        "code": "BPF_VERIFIER",
        "message": "load program "prog_as_map": rejected by the verifier: fd N is not pointing to valid bpf_map",
      }
    `);
  });

  it('rejects bad test runs', async () => {
    expect(await shapeAsync(() => pass.testRun({ data: Buffer.alloc(64), repeat: 0 })))
      .toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "test run program "addon_pass_xdp": repeat must be from 1 to 100000000",
      }
    `);
    expect(await shapeAsync(() => pass.testRun({ data: loose('packet') }))).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "test run program "addon_pass_xdp": data must be a Buffer or Uint8Array",
      }
    `);
    expect(await shapeAsync(() => pass.testRun({ data: Buffer.alloc(2) }))).toMatchInlineSnapshot(`
      {
        "class": "SyscallError",
        "code": "EINVAL",
        "message": "test run program "addon_pass_xdp": invalid argument (packets need at least 14 bytes, an Ethernet header)",
      }
    `);
    expect(await shapeAsync(() => hash.updateBatch(Buffer.alloc(6), Buffer.alloc(16))))
      .toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "batch update map "test_hash": keys are 6 bytes, not a multiple of the key size 4",
      }
    `);
    expect(
      await shapeAsync(() => hash.updateBatch(Buffer.alloc(8), Buffer.alloc(16), { count: 3 })),
    ).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "batch update map "test_hash": count 3 is more than the 2 entries the buffers hold",
      }
    `);
  });

  it('rejects bad attach arguments, devices and namespaces', () => {
    expect(shape(() => attachXdp(pass, Number.NaN))).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "attach xdp program "addon_pass_xdp": ifindex must be an integer from 0 to 4294967295",
      }
    `);
    expect(shape(() => attachXdp(pass, 1, { mode: loose('turbo') }))).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "attach xdp program "addon_pass_xdp": mode must be "auto", "native" or "generic", got "turbo"",
      }
    `);
    expect(shape(() => attachTc(tc, 1, { direction: loose('sideways') }))).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "attach tc program "addon_pass_tc": direction must be "ingress" or "egress", got "sideways"",
      }
    `);
    expect(shape(() => attachXdp(pass, 'sl-no-such-dev0'))).toMatchInlineSnapshot(`
      {
        "class": "DeviceNotFoundError",
        "code": "DEVICE_NOT_FOUND",
        "message": "attach xdp program "addon_pass_xdp" to "sl-no-such-dev0": no such device "sl-no-such-dev0"",
      }
    `);
    // 2^31 - 7: far past any ifindex this machine hands out.
    expect(shape(() => attachXdp(pass, 2 ** 31 - 7))).toMatchInlineSnapshot(`
      {
        "class": "DeviceNotFoundError",
        "code": "DEVICE_NOT_FOUND",
        "message": "attach xdp program "addon_pass_xdp" to ifindex 2147483641: no device has that ifindex",
      }
    `);
    expect(shape(() => attachTc(tc, 2 ** 31 - 7))).toMatchInlineSnapshot(`
      {
        "class": "DeviceNotFoundError",
        "code": "DEVICE_NOT_FOUND",
        "message": "attach tc ingress program "addon_pass_tc" to ifindex 2147483641: no device has that ifindex",
      }
    `);
    expect(shape(() => ifindexOf('a-device-name-longer-than-ifnamsiz'))).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "look up device: "a-device-name-longer-than-ifnamsiz" is not a device name (1 to 15 characters)",
      }
    `);
    expect(shape(() => withNetns('sl-no-such-netns', () => 1))).toMatchInlineSnapshot(`
      {
        "class": "SyscallError",
        "code": "ENOENT",
        "message": "enter network namespace "sl-no-such-netns": no such namespace (no /var/run/netns/sl-no-such-netns)",
      }
    `);
    expect(shape(() => withNetns('../etc', () => 1))).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "enter network namespace: "../etc" is not a namespace name",
      }
    `);
    expect(shape(() => withNetns('x', loose(42)))).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "enter network namespace "x": callback must be a function",
      }
    `);
  });

  it('rejects bad pin paths and ids', () => {
    expect(shape(() => openPinned('relative/pin'))).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "open pinned object: path must be absolute, got "relative/pin"",
      }
    `);
    expect(shape(() => openPinned('/proc/self/status'))).toMatchInlineSnapshot(`
      {
        "class": "SyscallError",
        "code": "EACCES",
        "message": "open pinned object "/proc/self/status": permission denied",
      }
    `);
    expect(shape(() => getMapById(0xffffffff))).toMatchInlineSnapshot(`
      {
        "class": "SyscallError",
        "code": "ENOENT",
        "message": "get map by id 4294967295: no map has this id",
      }
    `);
    expect(shape(() => getMapById(-1))).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "get map by id: id must be an integer from 0 to 4294967295",
      }
    `);
    expect(shape(() => native.getById(loose('thing'), 1))).toMatchInlineSnapshot(`
      {
        "class": "InvalidArgumentError",
        "code": "BPF_INVALID_ARGUMENT",
        "message": "get by id: kind must be "map", "program" or "link", got "thing"",
      }
    `);
  });
});
