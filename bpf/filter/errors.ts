// Errors thrown by the filter compiler, with the position of the offending text.
//
// Codes:
//   FILTER_SYNTAX       the expression (or cBPF text) does not parse, or libpcap rejects it
//   FILTER_UNSUPPORTED  valid for libpcap, refused by sluice (host names, other link types)
//   FILTER_LIMIT        too long, too deeply nested, too big or costly to optimize, or compiles to
//                       too many instructions

/** Where an error points in the expression. */
export interface FilterErrorPosition {
  expression: string;
  offset: number;
  length: number;
  expected?: string;
}

/** Base of the filter errors: carries the expression and the span at fault. */
export abstract class FilterError extends Error {
  abstract readonly code: string;
  readonly expression: string;
  /** 0-based offset of the offending text in `expression`. */
  readonly offset: number;
  /** Length of the offending text, at least 1 unless the expression is empty. */
  readonly length: number;
  readonly expected?: string;

  constructor(message: string, position: FilterErrorPosition, options?: { cause?: unknown }) {
    super(message, options);
    this.expression = position.expression;
    this.offset = position.offset;
    this.length = position.length;
    if (position.expected !== undefined) this.expected = position.expected;
  }

  /** The expression, a caret line under the offending text, and the message. */
  format(): string {
    const lines = this.expression.split('\n');
    // The caret goes under the line that holds the offset.
    let start = 0;
    let line = lines[0] ?? '';
    for (const candidate of lines) {
      if (this.offset <= start + candidate.length) {
        line = candidate;
        break;
      }
      start += candidate.length + 1;
    }
    const column = Math.max(0, this.offset - start);
    const width = Math.max(1, Math.min(this.length, Math.max(1, line.length - column)));
    return `${line}\n${' '.repeat(column)}${'^'.repeat(width)}\n${this.message}`;
  }
}

/** The expression does not parse, or libpcap would reject it. */
export class FilterSyntaxError extends FilterError {
  override readonly name = 'FilterSyntaxError';
  readonly code = 'FILTER_SYNTAX';
}

/** libpcap accepts the expression but sluice refuses it (for example a host name needing DNS). */
export class FilterUnsupportedError extends FilterError {
  override readonly name = 'FilterUnsupportedError';
  readonly code = 'FILTER_UNSUPPORTED';
}

/** The expression or its program exceeds a limit (length, nesting, optimizer size or work, BPF_MAXINSNS). */
export class FilterLimitError extends FilterError {
  override readonly name = 'FilterLimitError';
  readonly code = 'FILTER_LIMIT';
}
