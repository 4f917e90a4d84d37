// Connects to a TCP port, writes exactly --bytes bytes and closes, for netns-lab/traffic.ts.
//
//   node tcp-source.mjs --to ADDR --port N --bytes N [--max-ms 30000]
//
// Prints {"sent":N,"ok":BOOL,"error":MESSAGE?} and exits 0; "sent" counts bytes handed to the
// kernel, and "ok" says the connection was established, written and closed without an error.
import net from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    to: { type: 'string' },
    port: { type: 'string' },
    bytes: { type: 'string' },
    'max-ms': { type: 'string', default: '30000' },
  },
});
const total = Number(values.bytes);
const CHUNK = 64 * 1024;
let sent = 0;
let done = false;

function report(ok, error) {
  if (done) return;
  done = true;
  const line = JSON.stringify(error ? { sent, ok, error } : { sent, ok });
  process.stdout.write(`${line}\n`, () => process.exit(0));
}

const socket = net.connect({ host: values.to, port: Number(values.port) }, () => {
  const write = () => {
    while (sent < total) {
      const size = Math.min(CHUNK, total - sent);
      sent += size;
      if (!socket.write(Buffer.alloc(size, 0x62))) {
        socket.once('drain', write);
        return;
      }
    }
    socket.end();
  };
  write();
});
socket.on('close', (hadError) => report(!hadError && sent === total));
socket.on('error', (error) => report(false, error.message));
setTimeout(() => report(false, 'timed out'), Number(values['max-ms'])).unref();
