// Errors of the load balancer's health checks (controller/lb/health-spec.ts, health.ts).
//
// Codes:
// - LB_HEALTH_CHECK_INVALID: CheckSpecInvalidError, a check spec (the CLI text or the API object)
//   does not parse; `check` is what was given (the text, or the object as JSON) and `field` the
//   part at fault ("type", "port", "path", "status", "payload", "expect", "interval", "timeout",
//   "rise", "fall", "options")
// - LB_HEALTH_TARGET_INVALID: HealthTargetInvalidError, a target given to HealthChecker.set() has
//   an address that is not an IP address, a bad port, or a key given twice; `key` names it
//
// A probe that fails is not an error: it is a result (a reason string) of the checker.
import { LbError } from './errors.js';

/** Base class of the health checker's errors. */
export class HealthError extends LbError {}
HealthError.prototype.name = 'HealthError';

/** Which part of a check spec a CheckSpecInvalidError is about. */
export type CheckSpecField =
  | 'type'
  | 'port'
  | 'path'
  | 'status'
  | 'payload'
  | 'expect'
  | 'interval'
  | 'timeout'
  | 'rise'
  | 'fall'
  | 'options';

/** A check spec does not parse: `check "http:healthz": the path must start with "/"`. */
export class CheckSpecInvalidError extends HealthError {
  /** The text given, or the API object as JSON. */
  readonly check: string;
  readonly field: CheckSpecField;

  constructor(message: string, options: ErrorOptions & { check: string; field: CheckSpecField }) {
    super(message, 'LB_HEALTH_CHECK_INVALID', options);
    this.check = options.check;
    this.field = options.field;
  }
}
CheckSpecInvalidError.prototype.name = 'CheckSpecInvalidError';

/** A health-check target has a bad address or port, or its key is given twice. */
export class HealthTargetInvalidError extends HealthError {
  readonly key: string;

  constructor(message: string, options: ErrorOptions & { key: string }) {
    super(message, 'LB_HEALTH_TARGET_INVALID', options);
    this.key = options.key;
  }
}
HealthTargetInvalidError.prototype.name = 'HealthTargetInvalidError';
