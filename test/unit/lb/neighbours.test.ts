// NeighbourKeeper (controller/lb/neighbours.ts): one empty datagram to each backend's discard
// port when it appears and on every interval, none once it is gone. On loopback, to a port the
// test listens on.
import { createSocket, type Socket } from 'node:dgram';

import { pino } from 'pino';
import { afterEach, expect, it } from 'vitest';

import { NeighbourKeeper } from '../../../controller/lb/neighbours.js';

const logger = pino({ level: 'silent' });
let keeper: NeighbourKeeper | undefined;
let listener: Socket | undefined;

afterEach(() => {
  keeper?.close();
  listener?.close();
});

/** Listens on a free port of 127.0.0.1; returns it and the datagrams' lengths as they come. */
async function discard(): Promise<{ port: number; seen: number[] }> {
  const seen: number[] = [];
  listener = createSocket('udp4');
  listener.on('message', (msg) => seen.push(msg.length));
  await new Promise<void>((done, fail) => {
    listener!.once('error', fail);
    listener!.bind(0, '127.0.0.1', () => done());
  });
  return { port: listener.address().port, seen };
}

const wait = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

it('probes a new backend at once and again every interval, and stops when it is gone', async () => {
  const { port, seen } = await discard();
  keeper = new NeighbourKeeper(logger, 100, port);
  keeper.set(['127.0.0.1']);
  await until(() => seen.length >= 1);
  expect(seen).toEqual([0]);
  // Then once an interval (timers may run late on a loaded machine: no upper bound here).
  await until(() => seen.length >= 3);
  keeper.set([]);
  const before = seen.length;
  await wait(300);
  expect(seen.length).toBe(before);
});

/** Resolves when `ok()` holds; throws after 3 s. */
async function until(ok: () => boolean): Promise<void> {
  for (const t0 = Date.now(); !ok(); await wait(10))
    if (Date.now() - t0 > 3000) throw new Error('timed out');
}
