// Errors of the CLI's own making, and what the entry point prints for any error that reaches it.
import type { SelfcheckResult } from '../netns-lab/selfcheck.js';

/*
 * Codes:
 * - SELFCHECK_FAILED: SelfcheckFailedError, the self-check ran but its counters or replies
 *   disagree with the traffic it sent
 * - DEMO_FAILED: DemoFailedError, the demo ran but its traffic disagrees with its configuration
 * - DAEMON_UNREACHABLE: DaemonUnreachableError, nothing answers at the socket or URL the client
 *   was pointed at (no socket file, connection refused, permission denied)
 * - API_*: ApiError, the daemon answered with a problem+json (or another failing) response; the
 *   problem's own `code` (CONFIG_INVALID, FILTER_SYNTAX, …) is kept as `problem.code`
 * - APPLY_FILE_INVALID: ApplyFileError, an apply file does not parse, does not match the
 *   document schema, or the daemon rejected a place in it; every error is located FILE:LINE:COL
 */

/** The self-check ran to the end, and what it counted disagrees with what it sent. */
export class SelfcheckFailedError extends Error {
  readonly code = 'SELFCHECK_FAILED';
  readonly result: SelfcheckResult;

  constructor(message: string, options: ErrorOptions & { result: SelfcheckResult }) {
    super(message, options);
    this.result = options.result;
  }
}
SelfcheckFailedError.prototype.name = 'SelfcheckFailedError';

/** The demo ran to the end, and its traffic disagrees with what its configuration promises. */
export class DemoFailedError extends Error {
  readonly code = 'DEMO_FAILED';
}
DemoFailedError.prototype.name = 'DemoFailedError';

/** One RFC 9457 problem as the API sends it; every member but `status` may be missing. */
export interface Problem {
  type?: string;
  title?: string;
  status: number;
  detail?: string;
  instance?: string;
  code?: string;
  /** JSON Pointer into the request body (or the document) that the problem is about. */
  pointer?: string;
  errors?: { pointer: string; detail: string }[];
  /** Filter problems: the expression and the 0-based offset and length of the bad text. */
  expression?: string;
  offset?: number;
  length?: number;
  [member: string]: unknown;
}

/** Text of one problem, on one line: the detail, and where it points. */
function problemMessage(problem: Problem): string {
  const detail = problem.detail ?? problem.title ?? `HTTP status ${problem.status}`;
  const parts = [detail];
  if (problem.pointer && !detail.includes(problem.pointer)) parts[0] += ` (at ${problem.pointer})`;
  const errors = (problem.errors ?? []).filter((e) => e.detail !== detail);
  if (errors.length > 0) {
    parts.push(errors.map((e) => (e.pointer ? `${e.pointer} ${e.detail}` : e.detail)).join('; '));
  }
  return parts.join(': ');
}

/**
 * The daemon refused a request: `status` is the HTTP status, `problem` the problem+json it sent
 * (made up from the status and text when the body was not one). Filter problems draw a caret.
 */
export class ApiError extends Error {
  readonly code: string;
  readonly status: number;
  readonly problem: Problem;

  constructor(problem: Problem, options?: ErrorOptions) {
    super(problemMessage(problem), options);
    this.status = problem.status;
    this.problem = problem;
    this.code = problem.code ? `API_${problem.code}` : `API_HTTP_${problem.status}`;
  }

  /** True when the daemon located the problem in a filter expression, so a caret can be drawn. */
  hasCaret(): boolean {
    const p = this.problem;
    return (
      typeof p.expression === 'string' &&
      typeof p.offset === 'number' &&
      p.offset >= 0 &&
      p.offset <= p.expression.length
    );
  }

  /** The expression, a caret under the bad text, and the message (the compiler's layout). */
  formatCaret(): string {
    const { expression = '', offset = 0, length = 1 } = this.problem;
    const lines = expression.split('\n');
    let start = 0;
    let line = lines[0] ?? '';
    for (const candidate of lines) {
      if (offset <= start + candidate.length) {
        line = candidate;
        break;
      }
      start += candidate.length + 1;
    }
    const column = Math.max(0, offset - start);
    const width = Math.max(1, Math.min(length, Math.max(1, line.length - column)));
    return `${line}\n${' '.repeat(column)}${'^'.repeat(width)}`;
  }
}
ApiError.prototype.name = 'ApiError';

/** Nothing answers where the client looked for the daemon. */
export class DaemonUnreachableError extends Error {
  readonly code = 'DAEMON_UNREACHABLE';
  /** The socket path or URL tried. */
  readonly address: string;

  constructor(message: string, options: ErrorOptions & { address: string }) {
    super(message, options);
    this.address = options.address;
  }
}
DaemonUnreachableError.prototype.name = 'DaemonUnreachableError';

// Apply-file errors belong to the file reader, which the daemon's --config uses too.
export { ApplyFileError, type FileLocation } from '../controller/config-file.js';

/** Errors that know how to draw themselves with context (filter errors draw a caret block). */
interface Formattable {
  format(): string;
}

function isFormattable(error: unknown): error is Error & Formattable {
  return error instanceof Error && typeof (error as Partial<Formattable>).format === 'function';
}

/**
 * The text printed for a failed command: `sluice: <message>`, under the error's caret block when it
 * draws one (the block's own message line is replaced, so the caret stays under its column).
 */
export function describeFailure(error: unknown): string {
  if (error instanceof ApiError) {
    const caret = error.hasCaret() ? [error.formatCaret()] : [];
    return [...caret, `sluice: ${error.message}`].join('\n');
  }
  if (isFormattable(error)) {
    const lines = error.format().split('\n');
    if (lines[lines.length - 1] === error.message) lines.pop();
    return [...lines, `sluice: ${error.message}`].join('\n');
  }
  if (error instanceof Error) return `sluice: ${error.message}`;
  return `sluice: ${String(error)}`;
}
