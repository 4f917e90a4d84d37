// Accepts one TCP connection and counts the bytes it carries, for netns-lab/traffic.ts.
//
//   node tcp-sink.mjs --port N [--family 4|6] [--max-ms 30000]
//
// Prints {"event":"ready","port":N} once listening and {"event":"done","received":N,"reason":R}
// when the peer has closed its side (reason "end") or after --max-ms ("timeout"), then exits 0.
import net from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    family: { type: 'string', default: '4' },
    'max-ms': { type: 'string', default: '30000' },
  },
});
let received = 0;
let finished = false;

function finish(reason) {
  if (finished) return;
  finished = true;
  process.stdout.write(`${JSON.stringify({ event: 'done', received, reason })}\n`, () =>
    process.exit(0),
  );
}

const server = net.createServer((socket) => {
  server.close();
  socket.on('data', (chunk) => {
    received += chunk.length;
  });
  socket.on('end', () => finish('end'));
  socket.on('error', () => finish('error'));
});
server.on('error', (error) => {
  process.stderr.write(`tcp-sink: ${error.message}\n`);
  process.exit(1);
});
const host = values.family === '6' ? '::' : '0.0.0.0';
server.listen({ port: Number(values.port), host, ipv6Only: values.family === '6' }, () => {
  process.stdout.write(`${JSON.stringify({ event: 'ready', port: server.address().port })}\n`);
});
setTimeout(() => finish('timeout'), Number(values['max-ms'])).unref();
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => finish('signal'));
