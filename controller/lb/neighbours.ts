// Keeps the kernel's neighbour entries of the balancer's backends resolved. lb_xdp takes every
// next hop from bpf_fib_lookup, which reads the neighbour table but never fills it: a backend
// whose MAC the kernel has not learnt gets no packet (BPF_FIB_LKUP_RET_NO_NEIGH: passed to the
// stack, which has no route for the VIP). Users never type MACs, so the daemon makes the kernel
// learn them: one empty UDP datagram to the discard port (9) of each backend, when the backend
// appears and every `intervalMs`, routes through the same FIB and so resolves the same neighbour
// (ARP or neighbour discovery). Health checks resolve theirs too; this covers unchecked backends
// and keeps entries from being collected while unused by the stack.
import { createSocket, type Socket } from 'node:dgram';

import type { Logger } from 'pino';

/** The discard service: a datagram there asks nothing of the backend. */
const DISCARD_PORT = 9;

export class NeighbourKeeper {
  readonly #logger: Logger;
  readonly #intervalMs: number;
  readonly #port: number;
  #addresses = new Set<string>();
  #sockets: { v4: Socket; v6: Socket } | null = null;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  /** `port`: where the datagrams go (the discard port; tests listen elsewhere). */
  constructor(logger: Logger, intervalMs = 30_000, port = DISCARD_PORT) {
    this.#logger = logger;
    this.#intervalMs = intervalMs;
    this.#port = port;
  }

  /** The backend addresses to keep resolved; new ones are probed at once. */
  set(addresses: Iterable<string>): void {
    if (this.#closed) return;
    const next = new Set(addresses);
    const fresh = [...next].filter((a) => !this.#addresses.has(a));
    this.#addresses = next;
    if (next.size === 0) {
      this.#stop();
      return;
    }
    this.#probe(fresh);
    if (!this.#timer) {
      this.#timer = setInterval(() => this.#probe([...this.#addresses]), this.#intervalMs);
      this.#timer.unref();
    }
  }

  close(): void {
    this.#closed = true;
    this.#stop();
  }

  #stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#sockets?.v4.close();
    this.#sockets?.v6.close();
    this.#sockets = null;
  }

  #probe(addresses: readonly string[]): void {
    if (addresses.length === 0) return;
    if (!this.#sockets) {
      const quiet = (socket: Socket): Socket => {
        // Unreachable backends answer with ICMP errors: nothing to act on here.
        socket.on('error', () => undefined);
        socket.unref();
        return socket;
      };
      this.#sockets = { v4: quiet(createSocket('udp4')), v6: quiet(createSocket('udp6')) };
    }
    for (const address of addresses) {
      const socket = address.includes(':') ? this.#sockets.v6 : this.#sockets.v4;
      socket.send(Buffer.alloc(0), this.#port, address, (error) => {
        if (error) this.#logger.debug({ err: error, address }, 'neighbour probe not sent');
      });
    }
  }
}
