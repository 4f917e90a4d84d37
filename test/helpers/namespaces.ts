// The host's network namespaces, for tests that check a lab left none of its own behind.
import { execFileSync } from 'node:child_process';

/** Names of the namespaces `ip netns list` shows that start with `prefix` (a lab's id). */
export function namespacesOf(prefix: string): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((line) => line.split(' ')[0])
    .filter((name) => name && name.startsWith(prefix));
}
