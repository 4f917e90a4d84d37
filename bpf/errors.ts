// Errors of the bpf area: the addon and the typed wrappers throw only these classes.
import { constants } from 'node:os';

/*
 * Codes:
 * - an errno name ('EPERM', 'ENOENT', 'EBUSY', …, 'ENOTSUPP' for the kernel's 524): SyscallError,
 *   a libbpf or bpf(2) call failed
 * - BPF_VERIFIER: VerifierError, the verifier rejected a program
 * - BPF_NOT_SUPPORTED: NotSupportedError, the running kernel lacks a feature
 * - BPF_INVALID_ARGUMENT: InvalidArgumentError, an argument has the wrong type, size or range
 * - BPF_INVALID_STATE: InvalidStateError, the call does not fit the object's state (e.g. not loaded yet)
 * - BPF_CLOSED: ClosedError, the map, program, link or object was closed
 * - DEVICE_NOT_FOUND: DeviceNotFoundError, no network device with that name
 */

const errnoNames = new Map<number, string>();
for (const [name, value] of Object.entries(constants.errno)) {
  if (!errnoNames.has(value)) errnoNames.set(value, name);
}
errnoNames.set(524, 'ENOTSUPP');
// libbpf's own error numbers (LIBBPF_ERRNO__*), returned like errnos.
[
  'LIBELF',
  'FORMAT',
  'KVERSION',
  'ENDIAN',
  'INTERNAL',
  'RELOC',
  'LOAD',
  'VERIFY',
  'PROG2BIG',
  'KVER',
  'PROGTYPE',
  'WRNGPID',
  'INVSEQ',
  'NLPARSE',
].forEach((name, i) => errnoNames.set(4000 + i, `LIBBPF_ERRNO__${name}`));
errnoNames.set(95, 'EOPNOTSUPP');

/** The errno name for a number: 1 → 'EPERM'; unknown numbers give 'E<number>'. */
export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `E${errno}`;
}

/** Base class of every error the bpf area throws. */
export class BpfError extends Error {
  readonly code: string;

  constructor(message: string, code: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}
BpfError.prototype.name = 'BpfError';

export interface SyscallErrorOptions extends ErrorOptions {
  errno: number;
  syscall: string;
  /** libbpf's own log lines around the failure (object open/load). */
  libbpfLog?: string[];
}

/** A failing libbpf or bpf(2) call, shaped like Node's system errors: `errno`, `code` ('EPERM'), `syscall`. */
export class SyscallError extends BpfError {
  readonly errno: number;
  readonly syscall: string;
  readonly libbpfLog: string[];
  /** Batch operations: how many elements were done before the failure. */
  processed?: number;

  constructor(message: string, options: SyscallErrorOptions) {
    super(message, errnoName(options.errno), options);
    this.errno = options.errno;
    this.syscall = options.syscall;
    this.libbpfLog = options.libbpfLog ?? [];
  }
}
SyscallError.prototype.name = 'SyscallError';

export interface VerifierErrorOptions extends ErrorOptions {
  log: string[];
  errno?: number;
  libbpfLog?: string[];
}

/** The verifier rejected a program: the full log in `log`, its last telling line in the message. */
export class VerifierError extends BpfError {
  readonly log: string[];
  readonly errno: number;
  libbpfLog?: string[];

  constructor(message: string, options: VerifierErrorOptions) {
    super(message, 'BPF_VERIFIER', options);
    this.log = options.log;
    this.errno = options.errno ?? 13;
    if (options.libbpfLog) this.libbpfLog = options.libbpfLog;
  }
}
VerifierError.prototype.name = 'VerifierError';

export interface NotSupportedErrorOptions extends ErrorOptions {
  feature: string;
  minKernel: string;
}

/** The running kernel lacks a feature; `minKernel` is the first Linux version that has it. */
export class NotSupportedError extends BpfError {
  readonly feature: string;
  readonly minKernel: string;

  constructor(message: string, options: NotSupportedErrorOptions) {
    super(message, 'BPF_NOT_SUPPORTED', options);
    this.feature = options.feature;
    this.minKernel = options.minKernel;
  }
}
NotSupportedError.prototype.name = 'NotSupportedError';

/** An argument has the wrong type, size or range; nothing reached the kernel. */
export class InvalidArgumentError extends BpfError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, 'BPF_INVALID_ARGUMENT', options);
  }
}
InvalidArgumentError.prototype.name = 'InvalidArgumentError';

/** The call does not fit the object's state, e.g. asking a not-yet-loaded object for a map. */
export class InvalidStateError extends BpfError {
  constructor(message: string, options?: ErrorOptions, code = 'BPF_INVALID_STATE') {
    super(message, code, options);
  }
}
InvalidStateError.prototype.name = 'InvalidStateError';

/** The map, program, link or object was closed: `map "x" is closed`. */
export class ClosedError extends InvalidStateError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options, 'BPF_CLOSED');
  }
}
ClosedError.prototype.name = 'ClosedError';

/** No network device with that name (in the namespace asked). */
export class DeviceNotFoundError extends BpfError {
  readonly device: string;

  constructor(message: string, options: ErrorOptions & { device: string }) {
    super(message, 'DEVICE_NOT_FOUND', options);
    this.device = options.device;
  }
}
DeviceNotFoundError.prototype.name = 'DeviceNotFoundError';
