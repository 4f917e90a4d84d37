// Errors of the controller: desired-state validation, persistence, devices. Codes (UPPER_SNAKE,
// area first) are what api/problems.ts maps to HTTP statuses; never classify by message text.
//
// - CONFIG_INVALID: ConfigInvalidError, the desired state breaks a rule; `pointer` (JSON Pointer
//   into the document, e.g. "/rules/3/dport") and `field` name the place
// - CONFIG_NOT_FOUND: NotFoundError, a rule, set or attachment named in a request does not exist
// - CONFIG_CONFLICT: ConflictError, an id or name is taken, or a set is still referenced
// - CONFIG_PRECONDITION: PreconditionFailedError, If-Match names a generation that is not current
// - STATE_CORRUPT: StateCorruptError, the state file cannot be read; it was moved to `keptAs`
// - STATE_LOCKED: StateLockedError, another daemon serves this state directory
// - STATE_WRITE: StateWriteError, persisting failed (the change was not applied)
// - DEVICE_NOT_FOUND: DeviceNotFoundError, a device named where one must exist now
// - NETLINK_REQUEST: NetlinkError, an rtnetlink request failed (errno, code, request)
// Data-plane errors (controller/dataplane/errors.ts, DataplaneError) pass through with their codes.

/** Base class of the controller's errors. */
export class ControllerError extends Error {
  readonly code: string;
  constructor(message: string, code: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}
ControllerError.prototype.name = 'ControllerError';

export interface ConfigErrorOptions extends ErrorOptions {
  /** JSON Pointer into the document ("/rules/2/dport"); "" for the whole document. */
  pointer: string;
}

/** The desired state (a request body, an apply file, a whole document) is invalid. */
export class ConfigInvalidError extends ControllerError {
  readonly pointer: string;
  constructor(message: string, options: ConfigErrorOptions) {
    super(message, 'CONFIG_INVALID', options);
    this.pointer = options.pointer;
  }
}
ConfigInvalidError.prototype.name = 'ConfigInvalidError';

export class NotFoundError extends ControllerError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, 'CONFIG_NOT_FOUND', options);
  }
}
NotFoundError.prototype.name = 'NotFoundError';

export class ConflictError extends ControllerError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, 'CONFIG_CONFLICT', options);
  }
}
ConflictError.prototype.name = 'ConflictError';

export class PreconditionFailedError extends ControllerError {
  readonly current: number;
  constructor(message: string, current: number, options?: ErrorOptions) {
    super(message, 'CONFIG_PRECONDITION', options);
    this.current = current;
  }
}
PreconditionFailedError.prototype.name = 'PreconditionFailedError';

export class StateCorruptError extends ControllerError {
  readonly keptAs: string;
  constructor(message: string, keptAs: string, options?: ErrorOptions) {
    super(message, 'STATE_CORRUPT', options);
    this.keptAs = keptAs;
  }
}
StateCorruptError.prototype.name = 'StateCorruptError';

export class StateLockedError extends ControllerError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, 'STATE_LOCKED', options);
  }
}
StateLockedError.prototype.name = 'StateLockedError';

export class StateWriteError extends ControllerError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, 'STATE_WRITE', options);
  }
}
StateWriteError.prototype.name = 'StateWriteError';

export class DeviceNotFoundError extends ControllerError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, 'DEVICE_NOT_FOUND', options);
  }
}
DeviceNotFoundError.prototype.name = 'DeviceNotFoundError';

/** An rtnetlink request failed; shaped like Node's system errors. */
export class NetlinkError extends ControllerError {
  readonly errno: number | undefined;
  readonly syscallCode: string | undefined;
  readonly request: string;
  constructor(
    message: string,
    request: string,
    errno?: number,
    syscallCode?: string,
    options?: ErrorOptions,
  ) {
    super(message, 'NETLINK_REQUEST', options);
    this.request = request;
    this.errno = errno;
    this.syscallCode = syscallCode;
  }
}
NetlinkError.prototype.name = 'NetlinkError';
