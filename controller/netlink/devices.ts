// Network devices over rtnetlink: a dump, then RTNLGRP_LINK notifications. The only importer of
// the `netlink` package ("early stage" upstream) sits behind DeviceWatcher, an interface of ours.
//
// Two things the package does not do for us:
// - its parsed 'message' event drops the message type, so NEWLINK and DELLINK look alike: we read
//   the NetlinkSocket's messages (type 16 RTM_NEWLINK, 17 RTM_DELLINK) and parse them ourselves;
// - a receive-queue overflow (ENOBUFS: notifications were lost) arrives as an 'error' event: we
//   dump every link again and diff against what we knew.
//
// The socket lives in the network namespace it is created in: the caller's, or — with `netns` —
// the named one (created with the thread inside it, then used from the caller's as usual).
import { EventEmitter } from 'node:events';

import { createRtNetlink, rt, type RtNetlinkSocket } from 'netlink';

import { withNetns } from '../../bpf/index.js';
import type { DeviceInfo } from '../contract.js';
import { NetlinkError } from '../errors.js';

/** A change of one device, as the watcher saw it. */
export interface DeviceChange {
  action: 'added' | 'removed' | 'renamed' | 'changed';
  device: DeviceInfo;
  /** For 'renamed': the name before. */
  oldName?: string;
}

/** The devices of one network namespace, and their changes. */
export interface DeviceWatcher {
  /** The devices now (as last heard from the kernel). */
  list(): Promise<DeviceInfo[]>;
  on(event: 'change', listener: (change: DeviceChange) => void): this;
  on(event: 'error', listener: (error: NetlinkError) => void): this;
  off(event: 'change', listener: (change: DeviceChange) => void): this;
  off(event: 'error', listener: (error: NetlinkError) => void): this;
  /** Stops listening; idempotent. */
  close(): void;
}

export interface DeviceWatcherOptions {
  /** Network namespace (ip netns name) to watch; default the process's own. */
  netns?: string;
}

const RTM_NEWLINK = 16;
const RTM_DELLINK = 17;

/** A NetlinkError from the package's error (which has errno, code and syscall, or just a message). */
export function netlinkError(what: string, request: string, error: unknown): NetlinkError {
  const e = error as { errno?: number; code?: string; message?: string };
  const errno = typeof e?.errno === 'number' ? Math.abs(e.errno) : undefined;
  const code = typeof e?.code === 'string' ? e.code : undefined;
  return new NetlinkError(
    `${what}: ${e?.message ?? String(error)}`,
    request,
    errno,
    code,
    error === undefined ? undefined : { cause: error },
  );
}

function formatMac(address: Buffer | undefined): string | null {
  if (!address || address.length === 0) return null;
  return [...address].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

function toDeviceInfo(msg: rt.LinkMessage): DeviceInfo | null {
  const ifindex = msg.data.index;
  const name = msg.attrs.ifname;
  if (typeof ifindex !== 'number' || typeof name !== 'string') return null;
  return {
    name,
    ifindex,
    up: msg.data.flags?.up === true,
    mac: formatMac(msg.attrs.address),
    mtu: msg.attrs.mtu ?? null,
  };
}

function sameInfo(a: DeviceInfo, b: DeviceInfo): boolean {
  return a.name === b.name && a.up === b.up && a.mac === b.mac && a.mtu === b.mtu;
}

/** DeviceWatcher over an rtnetlink socket. */
export class RtnetlinkDeviceWatcher extends EventEmitter implements DeviceWatcher {
  readonly #byIndex = new Map<number, DeviceInfo>();
  #closed = false;
  #redump: Promise<void> | null = null;

  private constructor(readonly socket: RtNetlinkSocket) {
    super();
  }

  /**
   * Opens the socket, joins RTNLGRP_LINK, dumps the links. Throws NetlinkError.
   */
  static async open(options: DeviceWatcherOptions = {}): Promise<RtnetlinkDeviceWatcher> {
    let socket: RtNetlinkSocket;
    try {
      // Room for a burst of notifications (many devices created at once) before ENOBUFS.
      const create = (): RtNetlinkSocket =>
        createRtNetlink({ ref: false, recvBufferSize: 1 << 20, sendBufferSize: 1 << 16 });
      socket = options.netns === undefined ? create() : withNetns(options.netns, create);
      socket.addMembership('LINK');
    } catch (error: unknown) {
      throw netlinkError('open an rtnetlink socket for link notifications', 'socket', error);
    }
    const watcher = new RtnetlinkDeviceWatcher(socket);
    socket.socket.on('message', (msgs) => watcher.#onMessages(msgs));
    socket.socket.on('error', (error) => watcher.#onError(error));
    // Messages the package cannot parse: we parse links ourselves, the rest we ignore.
    socket.on('invalid', () => undefined);
    try {
      await watcher.#dump();
    } catch (error: unknown) {
      watcher.close();
      throw error;
    }
    return watcher;
  }

  async list(): Promise<DeviceInfo[]> {
    if (this.#redump) await this.#redump;
    return [...this.#byIndex.values()].sort((a, b) => a.ifindex - b.ifindex);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.socket.socket.close();
    } catch {
      // closed already
    }
  }

  #onMessages(msgs: { type: number; data: Buffer }[]): void {
    for (const m of msgs) {
      if (m.type !== RTM_NEWLINK && m.type !== RTM_DELLINK) continue;
      let info: DeviceInfo | null;
      try {
        info = toDeviceInfo(rt.parseLinkMessage(m.data));
      } catch {
        continue;
      }
      if (!info) continue;
      if (m.type === RTM_DELLINK) this.#remove(info.ifindex);
      else this.#upsert(info);
    }
  }

  #onError(error: unknown): void {
    if (this.#closed) return;
    const code = (error as { code?: string }).code;
    if (code === 'ENOBUFS') {
      // Notifications were lost: what we know may be stale. Dump again and diff.
      this.#redump ??= this.#dump()
        .catch((e: unknown) => {
          this.emit('error', e);
        })
        .finally(() => {
          this.#redump = null;
        });
      return;
    }
    this.emit('error', netlinkError('receive link notifications', 'recvmsg', error));
  }

  #upsert(info: DeviceInfo): void {
    const before = this.#byIndex.get(info.ifindex);
    this.#byIndex.set(info.ifindex, info);
    if (!before) this.emit('change', { action: 'added', device: info } satisfies DeviceChange);
    else if (before.name !== info.name)
      this.emit('change', {
        action: 'renamed',
        device: info,
        oldName: before.name,
      } satisfies DeviceChange);
    else if (!sameInfo(before, info))
      this.emit('change', { action: 'changed', device: info } satisfies DeviceChange);
  }

  #remove(ifindex: number): void {
    const before = this.#byIndex.get(ifindex);
    if (!before) return;
    this.#byIndex.delete(ifindex);
    this.emit('change', { action: 'removed', device: before } satisfies DeviceChange);
  }

  async #dump(): Promise<void> {
    let links: rt.LinkMessage[];
    try {
      links = await this.socket.getLinks(undefined, undefined, { timeout: 5000 });
    } catch (error: unknown) {
      throw netlinkError('dump network devices', 'RTM_GETLINK dump', error);
    }
    const seen = new Set<number>();
    for (const msg of links) {
      const info = toDeviceInfo(msg);
      if (!info) continue;
      seen.add(info.ifindex);
      this.#upsert(info);
    }
    for (const ifindex of [...this.#byIndex.keys()]) if (!seen.has(ifindex)) this.#remove(ifindex);
  }
}

/** Opens the rtnetlink DeviceWatcher of the process's (or `netns`'s) network namespace. */
export function openDeviceWatcher(options: DeviceWatcherOptions = {}): Promise<DeviceWatcher> {
  return RtnetlinkDeviceWatcher.open(options);
}
