// Kernel tests of the addon's attachments on veth pairs inside a throwaway namespace: XDP links, update, detach, TCX, cls_bpf and the clsact it adds, switching namespaces.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readlinkSync } from 'node:fs';
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
import { native } from '../../bpf/addon/index.js';
import { describeKernel } from '../helpers/privileges.js';

const fixture = fileURLToPath(new URL('../../bpf/progs/addon_test.o', import.meta.url));
const run = `sl${randomBytes(3).toString('hex')}`;
const ns = `${run}ns`;
const vethA = `${run}a`;
const vethB = `${run}b`;
// A second pair for the clsact tests, so the qdiscs they look at are theirs alone.
const vethC = `${run}c`;
const vethD = `${run}d`;
// A bridge: a device whose driver has no native XDP.
const bridge = `${run}br`;

function ipIn(...args: string[]): string {
  return execFileSync('ip', ['netns', 'exec', ns, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Whether the device has a clsact qdisc now. */
function hasClsact(device: string): boolean {
  return ipIn('tc', 'qdisc', 'show', 'dev', device).includes('qdisc clsact');
}

/** The calling thread's network namespace, as /proc names it: "net:[4026531840]". */
function currentNetns(): string {
  return readlinkSync('/proc/thread-self/ns/net');
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
    ipIn('ip', 'link', 'add', vethC, 'type', 'veth', 'peer', 'name', vethD);
    ipIn('ip', 'link', 'add', bridge, 'type', 'bridge');
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

  it('puts the thread back in the namespace it was in after the callback throws', () => {
    const before = currentNetns();
    let during = '';
    expect(() =>
      withNetns(ns, () => {
        during = currentNetns();
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(during).not.toBe(before);
    expect(currentNetns()).toBe(before);
  });

  it('aborts the process when it cannot return to the original namespace', () => {
    // The callback drops root, and with it CAP_SYS_ADMIN: setns back is refused. Carrying on would
    // leave the thread in the wrong namespace, so the process must die saying why.
    const netnsModule = fileURLToPath(new URL('../../bpf/netns.ts', import.meta.url));
    const script = [
      `import { withNetns } from ${JSON.stringify(netnsModule)};`,
      `withNetns(process.env.SLUICE_NS, () => process.setuid(65534));`,
      `console.log('carried on in the wrong namespace');`,
    ].join('\n');
    const child = spawnSync(
      'sh',
      [
        '-c',
        'ulimit -c 0; exec "$0" --import tsx --input-type=module -e "$1"',
        process.execPath,
        script,
      ],
      { encoding: 'utf8', env: { ...process.env, SLUICE_NS: ns }, timeout: 60_000 },
    );
    expect(child.signal).toBe('SIGABRT');
    expect(child.stdout).toBe('');
    expect(child.stderr.replaceAll(run, '<run>')).toContain(
      'sluice: enter network namespace "<run>ns": cannot return to the original network namespace (setns: Operation not permitted); aborting, because this thread and every socket it opens from now on would be in the wrong namespace\n',
    );
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
          "message": "attach xdp program "addon_drop_xdp" to "<run>a": device busy (another program is attached: detach it first, or swap programs with update() on its link)",
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

  it('names the mode option when the driver has no native XDP', () => {
    expect(errorShape(() => attachXdp(pass, bridge, { mode: 'native', netns: ns })))
      .toMatchInlineSnapshot(`
      {
        "code": "EOPNOTSUPP",
        "message": "attach xdp program "addon_pass_xdp" to "<run>br": the driver has no native XDP support (attach with mode: 'generic' instead)",
        "name": "SyscallError",
      }
    `);
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

  it('removes the clsact qdisc it added when its filter is detached or closed', () => {
    expect(hasClsact(vethC)).toBe(false);
    const link = attachTc(tc, vethC, { mode: 'legacy', netns: ns });
    expect(hasClsact(vethC)).toBe(true);
    link.detach();
    expect(hasClsact(vethC)).toBe(false);

    const closed = attachTc(tc, vethC, { direction: 'egress', mode: 'legacy', netns: ns });
    expect(hasClsact(vethC)).toBe(true);
    closed.close();
    expect(hasClsact(vethC)).toBe(false);
  });

  it('leaves a clsact qdisc that was there before it', () => {
    ipIn('tc', 'qdisc', 'add', 'dev', vethC, 'clsact');
    try {
      const ingress = attachTc(tc, vethC, { mode: 'legacy', netns: ns });
      const egress = attachTc(tc, vethC, { direction: 'egress', mode: 'legacy', netns: ns });
      ingress.detach();
      egress.detach();
      expect(ipIn('tc', 'filter', 'show', 'dev', vethC, 'ingress')).toBe('');
      expect(hasClsact(vethC)).toBe(true);
    } finally {
      ipIn('tc', 'qdisc', 'del', 'dev', vethC, 'clsact');
    }
  });

  it.each([
    ['ingress', 'egress'],
    ['egress', 'ingress'],
  ] as const)(
    'keeps its clsact while one side still has a filter (%s detached first)',
    (first, second) => {
      const links = {
        ingress: attachTc(tc, vethC, { direction: 'ingress', mode: 'legacy', netns: ns }),
        egress: attachTc(tc, vethC, { direction: 'egress', mode: 'legacy', netns: ns }),
      };
      links[first].detach();
      expect(hasClsact(vethC)).toBe(true);
      expect(ipIn('tc', 'filter', 'show', 'dev', vethC, second)).toContain('direct-action');
      links[second].detach();
      expect(hasClsact(vethC)).toBe(false);
    },
  );

  it('keeps its clsact when filters of others were added to it', () => {
    const link = attachTc(tc, vethC, { mode: 'legacy', netns: ns });
    ipIn(
      'tc',
      'filter',
      'add',
      'dev',
      vethC,
      ...'egress prio 1 u32 match ip dst 192.0.2.1/32'.split(' '),
    );
    try {
      link.detach();
      expect(hasClsact(vethC)).toBe(true);
    } finally {
      ipIn('tc', 'qdisc', 'del', 'dev', vethC, 'clsact');
    }
  });

  it('does not leave the clsact it added when the attach fails', () => {
    // attachTc() checks the priority itself; the addon leaves it to libbpf, whose refusal comes
    // after the clsact was made: the failure path this test needs.
    const ifindex = ifindexOf(vethC, ns);
    const error = withNetns(ns, () => {
      try {
        native.attachTc(tc.native, ifindex, 'ingress', 'legacy', 70_000);
      } catch (e: unknown) {
        return e as SyscallError;
      }
      throw new Error('expected a throw');
    });
    expect({ code: error.code, syscall: error.syscall }).toEqual({
      code: 'EINVAL',
      syscall: 'bpf_tc_attach',
    });
    expect(hasClsact(vethC)).toBe(false);
  });

  it('attaches a legacy filter at the priority asked, and refuses one it cannot use', () => {
    const link = attachTc(tc, vethC, { mode: 'legacy', priority: 7, netns: ns });
    try {
      expect(link.info()).toMatchObject({ kind: 'tc', priority: 7 });
    } finally {
      link.detach();
    }
    expect(errorShape(() => attachTc(tc, vethC, { mode: 'legacy', priority: 70_000, netns: ns })))
      .toMatchInlineSnapshot(`
      {
        "code": "BPF_INVALID_ARGUMENT",
        "message": "attach tc ingress program "addon_pass_tc": priority must be from 1 to 65535, got 70000",
        "name": "InvalidArgumentError",
      }
    `);
    expect(errorShape(() => attachTc(tc, vethC, { priority: 7, netns: ns })))
      .toMatchInlineSnapshot(`
      {
        "code": "BPF_INVALID_ARGUMENT",
        "message": "attach tc ingress program "addon_pass_tc": a priority needs mode 'legacy' (tcx links have none)",
        "name": "InvalidArgumentError",
      }
    `);
    expect(hasClsact(vethC)).toBe(false);
  });
});
