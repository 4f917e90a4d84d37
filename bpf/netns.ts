// Network namespaces and device lookup: run code with the calling thread inside a named namespace.
import { native } from './addon/index.js';
import { DeviceNotFoundError, InvalidArgumentError } from './errors.js';

/**
 * Runs `fn` synchronously with the calling thread inside the network namespace `name`
 * (/var/run/netns/NAME, as `ip netns add` makes), then returns to the original namespace — also
 * when `fn` throws. `fn` must not be async: only its synchronous part would run inside.
 * Throws SyscallError (ENOENT: no such namespace), InvalidArgumentError for a bad name or an async `fn`.
 *
 * If returning to the original namespace fails (setns refused, say because `fn` dropped
 * CAP_SYS_ADMIN), the process aborts with a message on stderr instead of throwing: the thread
 * would stay in the wrong namespace, and every socket the process opened afterwards with it.
 */
export function withNetns<T>(name: string, fn: () => T): T {
  const result = native.runInNetns(name, fn);
  if (
    result !== null &&
    typeof result === 'object' &&
    typeof (result as { then?: unknown }).then === 'function'
  ) {
    throw new InvalidArgumentError(
      `enter network namespace "${name}": the callback returned a promise; only its synchronous part ran inside`,
    );
  }
  return result;
}

/**
 * The ifindex of `device`, in the namespace `netns` if given, else in the caller's.
 * Throws DeviceNotFoundError.
 */
export function ifindexOf(device: string, netns?: string): number {
  const index =
    netns === undefined
      ? native.ifNameToIndex(device)
      : withNetns(netns, () => native.ifNameToIndex(device));
  if (index === 0) {
    throw new DeviceNotFoundError(
      `no such device "${device}"${netns === undefined ? '' : ` in network namespace "${netns}"`}`,
      { device },
    );
  }
  return index;
}
