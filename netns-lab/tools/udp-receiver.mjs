// Counts the UDP datagrams (and payload bytes) that reach one port, for netns-lab/traffic.ts.
//
//   node udp-receiver.mjs --port 9000 [--family 4|6] [--address ADDR] [--max-ms 30000]
//                         [--idle-ms 0] [--drain-ms 200]
//
// Prints one JSON line {"event":"ready","port":N} once bound, and one
// {"event":"done","received":N,"bytes":N,"reason":R} when it stops, then exits 0. It stops:
// - when stdin closes, after the socket has been idle for --drain-ms (what is in flight still counts);
// - on SIGTERM or SIGINT, at once;
// - after --idle-ms without a datagram, once one has arrived (0: never);
// - after --max-ms in any case, so a forgotten receiver cannot run on.
import dgram from 'node:dgram';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    family: { type: 'string', default: '4' },
    address: { type: 'string' },
    'max-ms': { type: 'string', default: '30000' },
    'idle-ms': { type: 'string', default: '0' },
    'drain-ms': { type: 'string', default: '200' },
  },
});
const port = Number(values.port);
const ipv6 = values.family === '6';
const maxMs = Number(values['max-ms']);
const idleMs = Number(values['idle-ms']);
const drainMs = Number(values['drain-ms']);

let received = 0;
let bytes = 0;
let last = Date.now();
let finished = false;

const socket = dgram.createSocket({ type: ipv6 ? 'udp6' : 'udp4', ipv6Only: ipv6 });

function finish(reason) {
  if (finished) return;
  finished = true;
  process.stdout.write(`${JSON.stringify({ event: 'done', received, bytes, reason })}\n`, () =>
    process.exit(0),
  );
}

socket.on('message', (message) => {
  received += 1;
  bytes += message.length;
  last = Date.now();
});
socket.on('error', (error) => {
  process.stderr.write(`udp-receiver: ${error.message}\n`);
  process.exit(1);
});
socket.bind({ port, address: values.address ?? (ipv6 ? '::' : '0.0.0.0') }, () => {
  // Room for a burst: the kernel caps this at net.core.rmem_max.
  socket.setRecvBufferSize(16 * 1024 * 1024);
  process.stdout.write(`${JSON.stringify({ event: 'ready', port: socket.address().port })}\n`);
});

setTimeout(() => finish('timeout'), maxMs).unref();
if (idleMs > 0) {
  setInterval(
    () => {
      if (received > 0 && Date.now() - last >= idleMs) finish('idle');
    },
    Math.min(idleMs, 50),
  ).unref();
}
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => finish('signal'));

process.stdin.resume();
process.stdin.on('end', () => {
  last = Math.max(last, Date.now());
  setInterval(() => {
    if (Date.now() - last >= drainMs) finish('stdin');
  }, 10);
});
