// Errors of the L4 load balancer (controller/lb): flow keys, Maglev tables, its kernel maps.

/*
 * Codes:
 * - LB_ADDRESS_INVALID: AddressInvalidError, a flow's src or dst is not an IPv4 or IPv6 address
 * - LB_FAMILY_MISMATCH: FamilyMismatchError (an AddressInvalidError), a flow's src and dst are of
 *   different families
 * - LB_FLOW_INVALID: FlowInvalidError, a flow's port or protocol, or the hash mode, is wrong
 * - LB_TABLE_SIZE: TableSizeError, a Maglev table size is not one of MAGLEV_SIZES, or two tables
 *   compared slot by slot differ in size
 * - LB_BACKEND_INVALID: BackendInvalidError, a backend's id, weight or key is wrong or taken twice
 * - LB_MAP_INVALID: LbMapInvalidError, a service, backend, table or config field given to the
 *   balancer's maps (lb-maps.ts) is wrong; `field` names it. Nothing was written.
 * - LB_MAP_ACCESS: LbMapAccessError, the kernel refused a map operation (the SyscallError is the
 *   `cause`); `map` names the map
 * - LB_HEALTH_CHECK_INVALID, LB_HEALTH_TARGET_INVALID: see health-errors.ts
 */

/** Base class of every error the load-balancer area throws. */
export class LbError extends Error {
  readonly code: string;

  constructor(message: string, code: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}
LbError.prototype.name = 'LbError';

/** Which address of a flow an AddressInvalidError is about. */
export type FlowAddressField = 'src' | 'dst';

/** A flow's src or dst is not an IPv4 or IPv6 address; `address` is the text given. */
export class AddressInvalidError extends LbError {
  readonly field: FlowAddressField;
  readonly address: string;

  constructor(
    message: string,
    options: ErrorOptions & { field: FlowAddressField; address: string },
    code = 'LB_ADDRESS_INVALID',
  ) {
    super(message, code, options);
    this.field = options.field;
    this.address = options.address;
  }
}
AddressInvalidError.prototype.name = 'AddressInvalidError';

/** A flow's dst is not of its src's family (an AddressInvalidError about `dst`). */
export class FamilyMismatchError extends AddressInvalidError {
  constructor(message: string, options: ErrorOptions & { address: string }) {
    super(message, { ...options, field: 'dst' }, 'LB_FAMILY_MISMATCH');
  }
}
FamilyMismatchError.prototype.name = 'FamilyMismatchError';

/** A flow's port or protocol is wrong, or the hash mode is unknown; `field` names which. */
export class FlowInvalidError extends LbError {
  readonly field: 'sport' | 'dport' | 'proto' | 'mode';

  constructor(message: string, options: ErrorOptions & { field: FlowInvalidError['field'] }) {
    super(message, 'LB_FLOW_INVALID', options);
    this.field = options.field;
  }
}
FlowInvalidError.prototype.name = 'FlowInvalidError';

/** A Maglev table size is not allowed, or two tables compared slot by slot differ in size. */
export class TableSizeError extends LbError {
  readonly size: number;
  /** The sizes allowed (MAGLEV_SIZES), or the other table's size when two differ. */
  readonly expected: readonly number[];

  constructor(message: string, options: ErrorOptions & { size: number; expected: number[] }) {
    super(message, 'LB_TABLE_SIZE', options);
    this.size = options.size;
    this.expected = options.expected;
  }
}
TableSizeError.prototype.name = 'TableSizeError';

/** A backend's id, weight or key is wrong, or its id or key is taken by another backend. */
export class BackendInvalidError extends LbError {
  /** 0-based index of the backend in the list given. */
  readonly index: number;
  readonly field: 'id' | 'weight' | 'key';

  constructor(
    message: string,
    options: ErrorOptions & { index: number; field: BackendInvalidError['field'] },
  ) {
    super(message, 'LB_BACKEND_INVALID', options);
    this.index = options.index;
    this.field = options.field;
  }
}
BackendInvalidError.prototype.name = 'BackendInvalidError';

/** A field given to the map writer is wrong (nothing was written); `field` names it. */
export class LbMapInvalidError extends LbError {
  readonly field: string;
  constructor(message: string, options: ErrorOptions & { field: string }) {
    super(message, 'LB_MAP_INVALID', options);
    this.field = options.field;
  }
}
LbMapInvalidError.prototype.name = 'LbMapInvalidError';

/** The kernel refused an operation on one of the load balancer's maps; the cause says why. */
export class LbMapAccessError extends LbError {
  readonly map: string;
  constructor(message: string, options: ErrorOptions & { map: string }) {
    super(message, 'LB_MAP_ACCESS', options);
    this.map = options.map;
  }
}
LbMapAccessError.prototype.name = 'LbMapAccessError';
