// Compiles a rule's tcpdump expression before the controller sees it, so that a bad expression is
// answered with its position (and a pointer to the field that holds it).
import { compileFilter } from '../bpf/filter/index.js';
import { isFilterCompileError } from '../controller/dataplane/errors.js';
import { LocatedError } from './problems.js';

/**
 * Throws a LocatedError (400, the filter error's code, `expression`, `offset`, `length`,
 * `pointer`) when `expression` does not compile.
 */
export function checkFilter(expression: string, pointer: string): void {
  try {
    compileFilter(expression);
  } catch (err: unknown) {
    if (isFilterCompileError(err)) throw new LocatedError(err, { pointer }, '');
    throw err;
  }
}
