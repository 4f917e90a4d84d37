// A stand-in for the daemon's REST API: a real node:http server on a temporary Unix socket (or
// 127.0.0.1) that records every request and answers from a table of canned replies, so CLI tests
// see the exact requests the client builds and render canned answers without a daemon.
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: IncomingHttpHeaders;
  body: string;
  /** The body parsed, when it was JSON. */
  json?: unknown;
}

export interface StubReply {
  status?: number;
  json?: unknown;
  /** Sent as application/problem+json with this status (default 400). */
  problem?: Record<string, unknown>;
  text?: string;
  /** Server-sent events, written then the stream ends. */
  events?: { event: string; data: unknown }[];
}

/** A reply, or a function of the request (called once per request). */
export type StubRoute = StubReply | ((request: RecordedRequest, calls: number) => StubReply);

export interface ApiStub {
  socket: string;
  /** http://127.0.0.1:PORT when started with `tcp`. */
  url: string | undefined;
  requests: RecordedRequest[];
  /** Sets the reply of "METHOD /path" and starts counting its calls afresh. */
  route(key: string, reply: StubRoute): void;
  close(): Promise<void>;
}

/** Starts the stub; `routes` map "METHOD /path" to replies; anything else is a 404 problem. */
export async function startApiStub(
  routes: Record<string, StubRoute> = {},
  options: { tcp?: boolean } = {},
): Promise<ApiStub> {
  const table = new Map(Object.entries(routes));
  const calls = new Map<string, number>();
  const requests: RecordedRequest[] = [];
  const dir = await mkdtemp(join(tmpdir(), 'sluice-api-stub-'));
  const socket = join(dir, 'sluice.sock');
  const handler: Parameters<typeof createServer>[1] = (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const body = Buffer.concat(chunks).toString('utf8');
      const recorded: RecordedRequest = {
        method: req.method ?? 'GET',
        path: url.pathname,
        query: Object.fromEntries(url.searchParams),
        headers: req.headers,
        body,
      };
      if (String(req.headers['content-type']).includes('json') && body !== '')
        recorded.json = JSON.parse(body);
      requests.push(recorded);
      const key = `${recorded.method} ${recorded.path}`;
      const n = (calls.get(key) ?? 0) + 1;
      calls.set(key, n);
      const route = table.get(key);
      const reply: StubReply =
        route === undefined
          ? {
              problem: {
                status: 404,
                title: 'Not Found',
                detail: `no route ${key}`,
                code: 'NOT_FOUND',
              },
            }
          : typeof route === 'function'
            ? route(recorded, n)
            : route;
      if (reply.problem) {
        const status = reply.status ?? (reply.problem.status as number | undefined) ?? 400;
        res.writeHead(status, { 'content-type': 'application/problem+json' });
        res.end(JSON.stringify({ status, ...reply.problem }));
      } else if (reply.events) {
        res.writeHead(reply.status ?? 200, { 'content-type': 'text/event-stream' });
        res.write(': keep-alive\n\n');
        for (const e of reply.events)
          res.write(`event: ${e.event}\ndata: ${JSON.stringify(e.data)}\n\n`);
        res.end();
      } else if (reply.text !== undefined) {
        res.writeHead(reply.status ?? 200, { 'content-type': 'text/plain' });
        res.end(reply.text);
      } else if (reply.json !== undefined) {
        res.writeHead(reply.status ?? 200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(reply.json));
      } else {
        res.writeHead(reply.status ?? 204);
        res.end();
      }
    });
  };
  const servers: Server[] = [createServer(handler)];
  await new Promise<void>((resolve) => servers[0].listen(socket, resolve));
  let url: string | undefined;
  if (options.tcp) {
    const tcp = createServer(handler);
    servers.push(tcp);
    await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(tcp.address() as AddressInfo).port}`;
  }
  return {
    socket,
    url,
    requests,
    route: (key, reply) => {
      table.set(key, reply);
      calls.delete(key);
    },
    close: async () => {
      for (const server of servers) {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** An empty ConfigDiff. */
export function emptyDiff() {
  return {
    attachments: { added: [] as string[], removed: [] as string[], changed: [] as string[] },
    sets: {
      added: [] as string[],
      removed: [] as string[],
      changed: [] as { name: string; added: number; removed: number }[],
    },
    rules: { added: [] as string[], removed: [] as string[], changed: [] as string[] },
  };
}
