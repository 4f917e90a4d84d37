// What the map, program and link wrappers share: the native handle, its fd and id, pinning, closing.
import { explainPinError } from './bpffs.js';

/** The part of a native map, program or link object every wrapper uses. */
export interface NativeHandle {
  readonly fd: number;
  readonly id: number;
  readonly closed: boolean;
  pin(path: string): void;
  close(): void;
}

/**
 * A kernel object held through one file descriptor. close() releases it (the finalizer does too,
 * later); what the kernel then keeps depends on the kind: a pinned or attached object stays.
 */
export abstract class KernelHandle<N extends NativeHandle> {
  /** @internal */
  readonly native: N;

  /** @internal */
  constructor(handle: N) {
    this.native = handle;
  }

  /** The file descriptor; -1 for a legacy tc attachment, which has none. */
  get fd(): number {
    return this.native.fd;
  }
  /** The kernel's id of the object; 0 for a legacy tc attachment. */
  get id(): number {
    return this.native.id;
  }
  get closed(): boolean {
    return this.native.closed;
  }

  /**
   * Pins the object at `path` in a bpffs so it outlives this process. Throws SyscallError with a
   * hint (ENOENT: no such directory; EEXIST: already pinned; EPERM: outside a bpffs), ClosedError
   * after close(), NotSupportedError for a legacy tc attachment.
   */
  pin(path: string): void {
    try {
      this.native.pin(path);
    } catch (error: unknown) {
      throw explainPinError(error, path);
    }
  }

  /** Releases the file descriptor. Idempotent. */
  close(): void {
    this.native.close();
  }
}
