// Errors of the data plane's rule model, prefix sets and classifier compiler (controller/dataplane).
import {
  FilterLimitError,
  FilterSyntaxError,
  FilterUnsupportedError,
} from '../../bpf/filter/index.js';

/*
 * Codes:
 * - RULE_INVALID: RuleInvalidError, a rule field has the wrong type, range or combination
 * - RULESET_INVALID: RuleSetInvalidError, a rule set's own field (rules, defaultAction, malformed)
 *   is wrong
 * - PREFIX_INVALID: PrefixInvalidError, an address prefix does not parse or has host bits set
 * - LIMIT_INVALID: LimitInvalidError, a rate limit's rate, burst or perSource is wrong
 * - SET_INVALID: SetInvalidError, a prefix set's name or prefix list is wrong
 * - SET_NOT_FOUND: SetNotFoundError, a rule names a prefix set that does not exist (or has no bit)
 * - FILTER_INVALID: FilterInvalidError, a rule's tcpdump expression does not compile (wraps
 *   bpf/filter's FilterSyntaxError, FilterUnsupportedError or FilterLimitError)
 * - LIMIT_EXCEEDED: LimitExceededError, more rules, sets, classes, filters, rate limiters or
 *   redirect targets than the pipeline holds (pipeline.h SL_MAX_*)
 * - TABLES_INVALID: TablesInvalidError, classifier tables break pipeline.h's invariants (found by
 *   tables-eval.ts: a vector summary disagreeing with its words, a missing /0 prefix entry)
 *
 * The loader (controller/dataplane, kernel side) adds its codes below this line.
 */

/** Which rule an error is about: its index in `RuleSetSpec.rules` and its id, if it has one. */
export interface RuleRef {
  /** 0-based index in the `rules` array given. */
  ruleIndex: number;
  ruleId?: string;
}

/** `rule "web"` when the rule has an id, else `rule #3` (0-based index in `rules`). */
export function describeRule(ref: RuleRef): string {
  return ref.ruleId !== undefined ? `rule "${ref.ruleId}"` : `rule #${ref.ruleIndex}`;
}

/** Base class of every error the data-plane area throws. */
export class DataplaneError extends Error {
  readonly code: string;

  constructor(message: string, code: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}
DataplaneError.prototype.name = 'DataplaneError';

/** Options of the errors that point at one field of one rule. */
export interface RuleFieldErrorOptions extends ErrorOptions, RuleRef {
  /** The RuleSpec field at fault: "dport", "rate", "tcpFlags", … */
  field: string;
}

/** A rule's field has the wrong type or range, or does not fit the rule's other fields. */
export class RuleInvalidError extends DataplaneError {
  readonly ruleIndex: number;
  declare readonly ruleId?: string;
  readonly field: string;

  constructor(message: string, options: RuleFieldErrorOptions, code = 'RULE_INVALID') {
    super(message, code, options);
    this.ruleIndex = options.ruleIndex;
    if (options.ruleId !== undefined) this.ruleId = options.ruleId;
    this.field = options.field;
  }
}
RuleInvalidError.prototype.name = 'RuleInvalidError';

/** A rate limit's rate, burst or perSource is wrong (a RuleInvalidError with its own code). */
export class LimitInvalidError extends RuleInvalidError {
  constructor(message: string, options: RuleFieldErrorOptions) {
    super(message, options, 'LIMIT_INVALID');
  }
}
LimitInvalidError.prototype.name = 'LimitInvalidError';

/** A rule names a prefix set that the instance does not have. */
export class SetNotFoundError extends RuleInvalidError {
  readonly set: string;

  constructor(message: string, options: RuleFieldErrorOptions & { set: string }) {
    super(message, options, 'SET_NOT_FOUND');
    this.set = options.set;
  }
}
SetNotFoundError.prototype.name = 'SetNotFoundError';

/** A rule set's own field is wrong: `rules` not an array, an unknown `defaultAction`. */
export class RuleSetInvalidError extends DataplaneError {
  readonly field: string;

  constructor(message: string, options: ErrorOptions & { field: string }) {
    super(message, 'RULESET_INVALID', options);
    this.field = options.field;
  }
}
RuleSetInvalidError.prototype.name = 'RuleSetInvalidError';

/** Where a bad prefix was found: a rule's field, or an entry of a set. */
export interface PrefixErrorOptions extends ErrorOptions {
  /** The text given. */
  prefix: string;
  /** The prefix the text probably meant (host bits cleared), when there is one. */
  canonical?: string;
  ruleIndex?: number;
  ruleId?: string;
  field?: string;
  set?: string;
  /** Index of the prefix in the set's `prefixes`. */
  entry?: number;
}

/** An address prefix does not parse, has a bad length, or has host bits set. */
export class PrefixInvalidError extends DataplaneError {
  readonly prefix: string;
  declare readonly canonical?: string;
  declare readonly ruleIndex?: number;
  declare readonly ruleId?: string;
  declare readonly field?: string;
  declare readonly set?: string;
  declare readonly entry?: number;

  constructor(message: string, options: PrefixErrorOptions) {
    super(message, 'PREFIX_INVALID', options);
    this.prefix = options.prefix;
    if (options.canonical !== undefined) this.canonical = options.canonical;
    if (options.ruleIndex !== undefined) this.ruleIndex = options.ruleIndex;
    if (options.ruleId !== undefined) this.ruleId = options.ruleId;
    if (options.field !== undefined) this.field = options.field;
    if (options.set !== undefined) this.set = options.set;
    if (options.entry !== undefined) this.entry = options.entry;
  }
}
PrefixInvalidError.prototype.name = 'PrefixInvalidError';

/** A prefix set's name, or its prefix list as a whole, is wrong (bad entries are PREFIX_INVALID). */
export class SetInvalidError extends DataplaneError {
  readonly set: string;
  readonly field: string;

  constructor(message: string, options: ErrorOptions & { set: string; field: string }) {
    super(message, 'SET_INVALID', options);
    this.set = options.set;
    this.field = options.field;
  }
}
SetInvalidError.prototype.name = 'SetInvalidError';

/** What a LimitExceededError counts. */
export type LimitedResource =
  'rules' | 'sets' | 'set-ranges' | 'classes' | 'filters' | 'limiters' | 'redirects';

/** More of something than the pipeline holds: `limit` is the most, `count` what was asked for. */
export class LimitExceededError extends DataplaneError {
  readonly resource: LimitedResource;
  readonly limit: number;
  readonly count: number;

  constructor(
    message: string,
    options: ErrorOptions & { resource: LimitedResource; limit: number; count: number },
  ) {
    super(message, 'LIMIT_EXCEEDED', options);
    this.resource = options.resource;
    this.limit = options.limit;
    this.count = options.count;
  }
}
LimitExceededError.prototype.name = 'LimitExceededError';

/** bpf/filter's errors, as FilterInvalidError wraps them. */
export type FilterCompileError = FilterSyntaxError | FilterUnsupportedError | FilterLimitError;

/** True for the errors compileFilter throws about its input. */
export function isFilterCompileError(err: unknown): err is FilterCompileError {
  return (
    err instanceof FilterSyntaxError ||
    err instanceof FilterUnsupportedError ||
    err instanceof FilterLimitError
  );
}

/**
 * A rule's tcpdump expression does not compile. Carries the filter error's position
 * (`expression`, 0-based `offset`, `length`, `expected`) and its code in `filterCode`
 * ('FILTER_SYNTAX', 'FILTER_UNSUPPORTED' or 'FILTER_LIMIT'); the filter error is the `cause`.
 */
export class FilterInvalidError extends RuleInvalidError {
  readonly expression: string;
  readonly offset: number;
  readonly length: number;
  declare readonly expected?: string;
  readonly filterCode: string;
  declare readonly cause: FilterCompileError;

  constructor(message: string, options: RuleRef & { cause: FilterCompileError }) {
    super(message, { ...options, field: 'filter' }, 'FILTER_INVALID');
    this.expression = options.cause.expression;
    this.offset = options.cause.offset;
    this.length = options.cause.length;
    if (options.cause.expected !== undefined) this.expected = options.cause.expected;
    this.filterCode = options.cause.code;
  }

  /** The expression, a caret line under the offending text, and this error's message. */
  format(): string {
    const drawn = this.cause.format();
    return `${drawn.slice(0, drawn.lastIndexOf('\n'))}\n${this.message}`;
  }
}
FilterInvalidError.prototype.name = 'FilterInvalidError';

/** Classifier tables break pipeline.h's invariants; `what` names the table at fault. */
export class TablesInvalidError extends DataplaneError {
  readonly what: string;

  constructor(message: string, options: ErrorOptions & { what: string }) {
    super(message, 'TABLES_INVALID', options);
    this.what = options.what;
  }
}
TablesInvalidError.prototype.name = 'TablesInvalidError';
