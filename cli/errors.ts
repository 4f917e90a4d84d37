// Turns any error that reaches the CLI's entry point into what the user sees on stderr.

/** Errors that know how to draw themselves with context (filter errors draw a caret block). */
interface Formattable {
  format(): string;
}

function isFormattable(error: unknown): error is Error & Formattable {
  return error instanceof Error && typeof (error as Partial<Formattable>).format === 'function';
}

/** The text printed for a failed command: `sluice: <message>`, or the error's own caret block. */
export function describeFailure(error: unknown): string {
  if (isFormattable(error)) return `sluice: ${error.format()}`;
  if (error instanceof Error) return `sluice: ${error.message}`;
  return `sluice: ${String(error)}`;
}
