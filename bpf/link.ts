// BpfLink: XDP and TC attachments (bpf_link for XDP and TCX; clsact + cls_bpf where TCX is missing).
import { native, type NativeLink, type NativeLinkInfo } from './addon/index.js';
import { KernelHandle } from './handle.js';
import { DeviceNotFoundError, InvalidArgumentError, SyscallError } from './errors.js';
import { ifindexOf, withNetns } from './netns.js';
import type { BpfProgram } from './program.js';

/** XDP attach mode: driver (XDP_FLAGS_DRV_MODE), generic skb (XDP_FLAGS_SKB_MODE), or the kernel's choice. */
export type XdpMode = 'native' | 'generic' | 'auto';
export type TcDirection = 'ingress' | 'egress';
/** 'tcx': bpf_link (Linux ≥ 6.6); 'legacy': clsact qdisc + cls_bpf direct-action; 'auto': tcx, else legacy. */
export type TcMode = 'auto' | 'tcx' | 'legacy';
export type LinkKind = 'xdp' | 'tcx' | 'tc' | 'link';

export type LinkInfo = NativeLinkInfo;

/** A device by name, or by ifindex. */
export type Device = string | number;

export interface AttachOptions {
  /** Network namespace (ip netns name) holding the device; attach happens inside it. */
  netns?: string;
}

/**
 * An attachment. XDP and TCX links own a link fd: close() detaches unless pinned. A legacy tc
 * attachment ('tc') has no fd: close() and detach() remove the cls_bpf filter; the finalizer does not.
 */
export class BpfLink extends KernelHandle<NativeLink> {
  get kind(): LinkKind {
    return this.native.kind;
  }
  /** The program's name when attached through this process. */
  get programName(): string {
    return this.native.name;
  }
  /**
   * Replaces the program behind the link atomically (bpf_link_update; no gap). With `expected`,
   * fails with SyscallError EPERM unless that program is the one attached now.
   */
  update(program: BpfProgram, options: { expected?: BpfProgram } = {}): void {
    try {
      this.native.update(program.native, options.expected?.native ?? null);
    } catch (error: unknown) {
      if (
        !(error instanceof SyscallError) ||
        error.code !== 'EPERM' ||
        options.expected === undefined
      )
        throw error;
      throw new SyscallError(
        `update ${this.kind} link to program "${program.name}": program "${options.expected.name}" is no longer the one attached`,
        { errno: error.errno, syscall: error.syscall, cause: error },
      );
    }
  }

  /** Detaches now, even if pinned, and closes the handle. */
  detach(): void {
    this.native.detach();
  }

  info(): LinkInfo {
    return this.native.info();
  }
}

function describe(device: Device): string {
  return typeof device === 'number' ? `ifindex ${device}` : `"${device}"`;
}

// Hints name this module's options and methods, never a CLI flag: callers of the library have none.
function reason(error: SyscallError, mode?: string): string {
  switch (error.code) {
    case 'EBUSY':
    case 'EEXIST':
      return 'device busy (another program is attached: detach it first, or swap programs with update() on its link)';
    case 'ENODEV':
      return 'no such device';
    case 'EOPNOTSUPP':
      return mode === 'native'
        ? "the driver has no native XDP support (attach with mode: 'generic' instead)"
        : 'operation not supported by the device';
    default: {
      const at = error.message.lastIndexOf(': ');
      return at >= 0 ? error.message.slice(at + 2) : error.message;
    }
  }
}

function resolve(device: Device, netns: string | undefined, what: string): number {
  if (typeof device === 'number') {
    // Out-of-range numbers are the addon's to reject; a free ifindex would be a bare EINVAL there.
    if (
      Number.isInteger(device) &&
      device > 0 &&
      device <= 0x7fffffff &&
      native.ifIndexToName(device) === null
    )
      throw new DeviceNotFoundError(`${what} to ifindex ${device}: no device has that ifindex`, {
        device: String(device),
      });
    return device;
  }
  if (typeof device !== 'string')
    throw new InvalidArgumentError(`${what}: device must be a name or an ifindex`);
  try {
    return ifindexOf(device, netns);
  } catch (error: unknown) {
    if (!(error instanceof DeviceNotFoundError)) throw error;
    throw new DeviceNotFoundError(`${what} to "${device}": ${error.message}`, {
      device,
      cause: error,
    });
  }
}

function inNetns<T>(netns: string | undefined, fn: () => T): T {
  return netns === undefined ? fn() : withNetns(netns, fn);
}

export interface AttachXdpOptions extends AttachOptions {
  mode?: XdpMode;
}

/**
 * Attaches an XDP program to a device through a bpf_link. Throws SyscallError with a message saying
 * why: device busy (EBUSY/EEXIST), no such device, no native support (EOPNOTSUPP);
 * DeviceNotFoundError for an unknown name; InvalidArgumentError for a non-XDP program.
 * Needs Linux ≥ 5.9 (XDP links).
 */
export function attachXdp(
  program: BpfProgram,
  device: Device,
  options: AttachXdpOptions = {},
): BpfLink {
  const what = `attach xdp program "${program.name}"`;
  const mode = options.mode ?? 'auto';
  return inNetns(options.netns, () => {
    const ifindex = resolve(device, undefined, what);
    try {
      return new BpfLink(native.attachXdp(program.native, ifindex, mode));
    } catch (error: unknown) {
      if (!(error instanceof SyscallError)) throw error;
      throw new SyscallError(`${what} to ${describe(device)}: ${reason(error, mode)}`, {
        errno: error.errno,
        syscall: error.syscall,
        cause: error,
      });
    }
  });
}

export interface AttachTcOptions extends AttachOptions {
  direction?: TcDirection;
  mode?: TcMode;
  /**
   * Mode 'legacy' only: the cls_bpf filter's priority, 1 to 65535 (lower runs first). Default: the
   * kernel picks one.
   */
  priority?: number;
}

/**
 * Attaches a sched_cls program to a device's ingress (default) or egress: as a TCX link where the
 * kernel has them (Linux ≥ 6.6), else clsact + cls_bpf direct-action. `link.kind` says which
 * ('tcx' or 'tc'). A clsact qdisc the legacy path adds goes again with the last filter on it
 * (detach(), close(), or a failed attach); one that was there before stays. Throws
 * NotSupportedError for mode 'tcx' on older kernels, InvalidArgumentError for a priority out of
 * range or without mode 'legacy'.
 */
export function attachTc(
  program: BpfProgram,
  device: Device,
  options: AttachTcOptions = {},
): BpfLink {
  const direction = options.direction ?? 'ingress';
  const what = `attach tc ${direction} program "${program.name}"`;
  const { priority } = options;
  if (priority !== undefined) {
    if (!Number.isInteger(priority) || priority < 1 || priority > 0xffff)
      throw new InvalidArgumentError(`${what}: priority must be from 1 to 65535, got ${priority}`);
    if (options.mode !== 'legacy')
      throw new InvalidArgumentError(
        `${what}: a priority needs mode 'legacy' (tcx links have none)`,
      );
  }
  return inNetns(options.netns, () => {
    const ifindex = resolve(device, undefined, what);
    try {
      return new BpfLink(
        native.attachTc(program.native, ifindex, direction, options.mode ?? 'auto', priority),
      );
    } catch (error: unknown) {
      if (!(error instanceof SyscallError)) throw error;
      throw new SyscallError(`${what} to ${describe(device)}: ${reason(error)}`, {
        errno: error.errno,
        syscall: error.syscall,
        cause: error,
      });
    }
  });
}

/** Opens the link with kernel id `id`. Throws SyscallError ENOENT if there is none. */
export function getLinkById(id: number): BpfLink {
  return new BpfLink(native.getById('link', id));
}
