// The project's own source files, for tests that check what the code says (README promises, packages, messages).
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's root directory. */
export const root = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Absolute paths of the files under `dir` (relative to the root) whose names match `names`,
 * leaving out node_modules and build output.
 */
export function sourceFiles(dir: string, names: RegExp): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && names.test(entry.name))
    .map((entry) => join(entry.parentPath, entry.name))
    .filter((path) => !path.includes('/node_modules/') && !path.includes('/build/'));
}
