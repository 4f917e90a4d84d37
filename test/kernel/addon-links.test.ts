// Kernel tests of the addon's attachments on a veth pair inside a throwaway namespace: XDP links, update, detach, TCX and cls_bpf.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, expect, it } from 'vitest';

import {
  BpfObject,
  BpfProgram,
  ClosedError,
  DeviceNotFoundError,
  InvalidArgumentError,
  SyscallError,
  attachTc,
  attachXdp,
  ifindexOf,
  loadObject,
  withNetns,
} from '../../bpf/index.js';
import { describeKernel } from '../helpers/privileges.js';

const fixture = fileURLToPath(new URL('../../bpf/progs/addon_test.o', import.meta.url));
const run = `sl${randomBytes(3).toString('hex')}`;
const ns = `${run}ns`;
const vethA = `${run}a`;
const vethB = `${run}b`;

function ipIn(...args: string[]): string {
  return execFileSync('ip', ['netns', 'exec', ns, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

function errorShape(fn: () => unknown): { name: string; code: string; message: string } {
  try {
    fn();
  } catch (error: unknown) {
    const e = error as Error & { code: string };
    return { name: e.name, code: e.code, message: e.message.replaceAll(run, '<run>') };
  }
  throw new Error('expected a throw');
}

await describeKernel('addon links', () => {
  let object: BpfObject;
  let pass: BpfProgram;
  let drop: BpfProgram;
  let tc: BpfProgram;

  beforeAll(() => {
    execFileSync('ip', ['netns', 'add', ns]);
    ipIn('ip', 'link', 'add', vethA, 'type', 'veth', 'peer', 'name', vethB);
    ipIn('ip', 'link', 'set', vethA, 'up');
    ipIn('ip', 'link', 'set', vethB, 'up');
    object = loadObject(fixture);
    pass = object.program('addon_pass_xdp');
    drop = object.program('addon_drop_xdp');
    tc = object.program('addon_pass_tc');
  });

  afterAll(() => {
    for (const p of [pass, drop, tc]) p?.close();
    object?.close();
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  });

  it('runs code inside the namespace and returns to the host namespace, also on throw', () => {
    const inside = withNetns(ns, () => ifindexOf(vethA));
    expect(inside).toBeGreaterThan(1);
    expect(() => ifindexOf(vethA)).toThrow(DeviceNotFoundError);
    expect(() =>
      withNetns(ns, () => {
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(() => ifindexOf(vethA)).toThrow(DeviceNotFoundError);
    expect(ifindexOf(vethA, ns)).toBe(inside);
  });

  it('attaches xdp in native mode, replaces the program atomically and detaches', () => {
    const link = attachXdp(pass, vethA, { mode: 'native', netns: ns });
    try {
      expect(link.kind).toBe('xdp');
      expect(link.info()).toMatchObject({
        kind: 'xdp',
        progId: pass.id,
        ifindex: ifindexOf(vethA, ns),
      });
      expect(ipIn('ip', 'link', 'show', vethA)).toContain('xdp');
      expect(errorShape(() => attachXdp(drop, vethA, { mode: 'native', netns: ns })))
        .toMatchInlineSnapshot(`
        {
          "code": "EBUSY",
          "message": "attach xdp program "addon_drop_xdp" to "<run>a": device busy (another program is attached; use --replace)",
          "name": "SyscallError",
        }
      `);

      link.update(drop, { expected: pass });
      expect(link.info().progId).toBe(drop.id);
      expect(errorShape(() => link.update(pass, { expected: pass }))).toMatchInlineSnapshot(`
        {
          "code": "EPERM",
          "message": "update xdp link to program "addon_pass_xdp": program "addon_pass_xdp" is no longer the one attached",
          "name": "SyscallError",
        }
      `);
      link.update(pass);
      expect(link.info().progId).toBe(pass.id);

      link.detach();
      expect(link.closed).toBe(true);
      expect(ipIn('ip', 'link', 'show', vethA)).not.toContain('xdp');
      expect(errorShape(() => link.info())).toMatchInlineSnapshot(`
        {
          "code": "BPF_CLOSED",
          "message": "xdp link of program "addon_pass_xdp" is closed",
          "name": "ClosedError",
        }
      `);
    } finally {
      link.close();
    }
  });

  it('attaches xdp in generic mode by ifindex and detaches when the link is closed', () => {
    const ifindex = ifindexOf(vethB, ns);
    const link = attachXdp(drop, ifindex, { mode: 'generic', netns: ns });
    expect(ipIn('ip', 'link', 'show', vethB)).toContain('xdpgeneric');
    expect(link.info()).toMatchObject({ progId: drop.id, ifindex });
    link.close();
    expect(ipIn('ip', 'link', 'show', vethB)).not.toContain('xdp');
  });

  it('names the missing device and refuses programs of the wrong type', () => {
    expect(errorShape(() => attachXdp(pass, 'nope0', { netns: ns }))).toMatchInlineSnapshot(`
      {
        "code": "DEVICE_NOT_FOUND",
        "message": "attach xdp program "addon_pass_xdp" to "nope0": no such device "nope0"",
        "name": "DeviceNotFoundError",
      }
    `);
    expect(errorShape(() => attachXdp(pass, 999_999, { netns: ns }))).toMatchInlineSnapshot(`
      {
        "code": "DEVICE_NOT_FOUND",
        "message": "attach xdp program "addon_pass_xdp" to ifindex 999999: no device has that ifindex",
        "name": "DeviceNotFoundError",
      }
    `);
    expect(errorShape(() => attachXdp(tc, vethA, { netns: ns }))).toMatchInlineSnapshot(`
      {
        "code": "BPF_INVALID_ARGUMENT",
        "message": "attach xdp program "addon_pass_tc": program type is sched_cls; XDP needs an xdp program",
        "name": "InvalidArgumentError",
      }
    `);
    expect(errorShape(() => attachTc(pass, vethA, { netns: ns }))).toMatchInlineSnapshot(`
      {
        "code": "BPF_INVALID_ARGUMENT",
        "message": "attach tc program "addon_pass_xdp": program type is xdp; TC needs a sched_cls program",
        "name": "InvalidArgumentError",
      }
    `);
    expect(() => attachTc(pass, vethA, { netns: ns })).toThrow(InvalidArgumentError);
  });

  it('attaches tc ingress and egress as tcx links where the kernel has them', () => {
    const ingress = attachTc(tc, vethA, { direction: 'ingress', netns: ns });
    const egress = attachTc(tc, vethA, { direction: 'egress', mode: 'tcx', netns: ns });
    try {
      expect(ingress.kind).toBe('tcx');
      expect(ingress.info()).toMatchObject({
        kind: 'tcx',
        attachType: 'ingress',
        progId: tc.id,
        ifindex: ifindexOf(vethA, ns),
      });
      expect(egress.info()).toMatchObject({ kind: 'tcx', attachType: 'egress' });
      const tc2 = object.program('addon_pass_tc');
      ingress.update(tc2);
      tc2.close();
      ingress.detach();
      expect(() => ingress.info()).toThrow(ClosedError);
    } finally {
      ingress.close();
      egress.close();
    }
  });

  it('falls back to clsact and cls_bpf direct-action and removes the filter on detach', () => {
    const link = attachTc(tc, vethB, { direction: 'egress', mode: 'legacy', netns: ns });
    try {
      expect(link.kind).toBe('tc');
      expect(link.fd).toBe(-1);
      expect(link.info()).toMatchObject({ kind: 'tc', attachType: 'egress', progId: tc.id });
      expect(ipIn('tc', 'filter', 'show', 'dev', vethB, 'egress')).toContain('direct-action');
      // updating and detaching work from the host namespace: the link remembers its namespace
      const tc2 = object.program('addon_pass_tc');
      link.update(tc2);
      expect(link.info().progId).toBe(tc2.id);
      tc2.close();
      expect(errorShape(() => link.pin('/sys/fs/bpf/x'))).toMatchInlineSnapshot(`
        {
          "code": "BPF_NOT_SUPPORTED",
          "message": "pin tc attachment of program "addon_pass_tc": cls_bpf filters have no link to pin",
          "name": "NotSupportedError",
        }
      `);
      link.detach();
      expect(ipIn('tc', 'filter', 'show', 'dev', vethB, 'egress')).not.toContain('direct-action');
    } finally {
      link.close();
    }
  });

  it('refuses a second xdp link on a busy device with a message saying what to do', () => {
    const first = attachXdp(pass, vethB, { mode: 'generic', netns: ns });
    try {
      const error = (() => {
        try {
          attachXdp(drop, vethB, { mode: 'generic', netns: ns });
        } catch (e: unknown) {
          return e;
        }
      })();
      expect(error).toBeInstanceOf(SyscallError);
      expect((error as SyscallError).syscall).toBe('bpf_link_create');
    } finally {
      first.close();
    }
  });
});
