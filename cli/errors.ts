// Errors of the CLI's own making, and what the entry point prints for any error that reaches it.
import type { SelfcheckResult } from '../netns-lab/selfcheck.js';

/*
 * Codes:
 * - SELFCHECK_FAILED: SelfcheckFailedError, the self-check ran but its counters or replies
 *   disagree with the traffic it sent
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
  if (isFormattable(error)) {
    const lines = error.format().split('\n');
    if (lines[lines.length - 1] === error.message) lines.pop();
    return [...lines, `sluice: ${error.message}`].join('\n');
  }
  if (error instanceof Error) return `sluice: ${error.message}`;
  return `sluice: ${String(error)}`;
}
