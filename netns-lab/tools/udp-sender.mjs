// Sends exactly --count UDP datagrams, paced or as fast as possible, for netns-lab/traffic.ts.
//
//   node udp-sender.mjs --to ADDR --port N --count N [--size 64] [--rate PPS] [--source-port N]
//                       [--source-address ADDR] [--payload fill|random] [--seed N]
//                       [--size-max N] [--max-ms 60000]
//
// --rate 0 (the default) sends as fast as the socket takes them, with at most 256 in flight.
// --payload random gives each datagram its own bytes from a PRNG seeded with --seed (default 1),
// and, with --size-max, a size drawn from [--size, --size-max]: a mixed stream for filter tests.
// Prints one JSON line {"sent":N,"errors":N,"elapsedMs":N} (sent = sends the kernel accepted)
// and exits 0; after --max-ms it stops early and reports what it managed. SIGTERM or SIGINT
// stops it early too, after the sends in flight have completed, so the count stays exact.
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    to: { type: 'string' },
    port: { type: 'string' },
    count: { type: 'string' },
    size: { type: 'string', default: '64' },
    rate: { type: 'string', default: '0' },
    'source-port': { type: 'string' },
    'source-address': { type: 'string' },
    payload: { type: 'string', default: 'fill' },
    seed: { type: 'string', default: '1' },
    'size-max': { type: 'string' },
    'max-ms': { type: 'string', default: '60000' },
  },
});
const to = values.to;
const port = Number(values.port);
const count = Number(values.count);
const rate = Number(values.rate);
const maxMs = Number(values['max-ms']);
const size = Number(values.size);
const sizeMax = values['size-max'] === undefined ? size : Number(values['size-max']);
const fixed = Buffer.alloc(size, 0x61);
const IN_FLIGHT = 256;

// xorshift32: the same stream of datagrams for the same seed.
let state = Number(values.seed) >>> 0 || 1;
function random32() {
  state ^= state << 13;
  state >>>= 0;
  state ^= state >>> 17;
  state ^= state << 5;
  state >>>= 0;
  return state;
}

/** The next datagram's payload: the fixed fill, or fresh PRNG bytes of a PRNG size. */
function nextPayload() {
  if (values.payload !== 'random') return fixed;
  const length = size + (random32() % (sizeMax - size + 1));
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i++) bytes[i] = random32() & 0xff;
  return bytes;
}

const socket = dgram.createSocket(isIPv6(to) ? 'udp6' : 'udp4');
let issued = 0;
let sent = 0;
let errors = 0;
let stopped = false;
/** After SIGTERM or SIGINT: no new sends; report once those in flight have completed. */
let stopping = false;
const start = process.hrtime.bigint();
const elapsedMs = () => Number(process.hrtime.bigint() - start) / 1e6;

function report() {
  if (stopped) return;
  stopped = true;
  const line = JSON.stringify({ sent, errors, elapsedMs: Math.round(elapsedMs()) });
  process.stdout.write(`${line}\n`, () => process.exit(0));
}

function sendOne() {
  issued += 1;
  socket.send(nextPayload(), port, to, (error) => {
    if (error) errors += 1;
    else sent += 1;
    if (sent + errors === count || (stopping && sent + errors === issued)) report();
    else if (rate === 0) pump();
  });
}

/** Unpaced: keep IN_FLIGHT sends outstanding. */
function pump() {
  while (!stopped && !stopping && issued < count && issued - sent - errors < IN_FLIGHT) sendOne();
}

/** Paced: send what is due by now, then look again in a millisecond. */
function tick() {
  if (stopped || stopping) return;
  const due = Math.min(count, Math.floor((elapsedMs() * rate) / 1000) + 1);
  while (issued < due) sendOne();
  if (issued < count) setTimeout(tick, 1);
}

socket.on('error', (error) => {
  process.stderr.write(`udp-sender: ${error.message}\n`);
  process.exit(1);
});
setTimeout(report, maxMs).unref();
/** Stops early but exactly: every datagram the kernel took is in the count. */
function stop() {
  stopping = true;
  if (sent + errors === issued) report();
}
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, stop);

const begin = () => {
  if (count === 0) report();
  else if (rate === 0) pump();
  else tick();
};
if (values['source-port'] !== undefined || values['source-address'] !== undefined) {
  const local = values['source-port'] === undefined ? 0 : Number(values['source-port']);
  socket.bind({ port: local, address: values['source-address'] }, begin);
} else {
  begin();
}
