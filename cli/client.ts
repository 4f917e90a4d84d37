// The CLI's HTTP client of the daemon's REST API: over the Unix socket by default, or over TCP with
// a bearer token; problem+json answers become ApiError, an absent daemon DaemonUnreachableError.
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { Agent, request, type Dispatcher } from 'undici';
import { ApiError, DaemonUnreachableError, type Problem } from './errors.js';

/** Where the daemon listens when neither `--socket` nor SLUICE_SOCKET says otherwise. */
export const DEFAULT_SOCKET = '/run/sluice/sluice.sock';

/** The root program's options that choose and authenticate the daemon. */
export interface GlobalOptions {
  socket?: string;
  server?: string;
  token?: string;
  tokenFile?: string;
}

/** Where requests go: a Unix socket, or an http(s) URL with its bearer token. */
export type Endpoint =
  { kind: 'socket'; socketPath: string } | { kind: 'tcp'; url: URL; token: string | undefined };

/** The socket path: `--socket`, then SLUICE_SOCKET, then DEFAULT_SOCKET. */
export function socketPath(option: string | undefined, env: NodeJS.ProcessEnv): string {
  return option ?? (env.SLUICE_SOCKET || DEFAULT_SOCKET);
}

/**
 * Chooses the endpoint from the global options and the environment. With `--server`, the token is
 * `--token`, else the first line of `--token-file`, else SLUICE_TOKEN. Throws when the token file
 * cannot be read or the URL is not http(s).
 */
export async function resolveEndpoint(
  options: GlobalOptions,
  env: NodeJS.ProcessEnv,
): Promise<Endpoint> {
  if (options.server === undefined)
    return { kind: 'socket', socketPath: socketPath(options.socket, env) };
  let url: URL;
  try {
    url = new URL(
      /^[a-z][a-z0-9+.-]*:\/\//i.test(options.server) ? options.server : `http://${options.server}`,
    );
  } catch (error: unknown) {
    throw new Error(`server "${options.server}": not a URL`, { cause: error });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new Error(`server "${options.server}": only http and https URLs are served`);
  let token = options.token;
  if (token === undefined && options.tokenFile !== undefined) {
    try {
      token = (await readFile(options.tokenFile, 'utf8')).split('\n')[0].trim();
    } catch (error: unknown) {
      const code = (error as { code?: string }).code;
      throw new Error(
        `read token file "${options.tokenFile}": ${code === 'ENOENT' ? 'no such file' : String(code ?? error)}`,
        { cause: error },
      );
    }
  }
  token ??= env.SLUICE_TOKEN || undefined;
  return { kind: 'tcp', url, token };
}

/** One request: a JSON body, or a stream sent as it is read (chunked). */
export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  json?: unknown;
  stream?: Readable | AsyncIterable<Uint8Array | string>;
  contentType?: string;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** One server-sent event. */
export interface ServerEvent {
  event: string;
  data: string;
}

/** The connection failures that mean "nobody is listening there". */
const UNREACHABLE = new Set([
  'ENOENT',
  'ECONNREFUSED',
  'EACCES',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNRESET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
]);

function unreachable(endpoint: Endpoint, error: unknown): DaemonUnreachableError | undefined {
  const code = (error as { code?: unknown }).code;
  if (typeof code !== 'string' || !UNREACHABLE.has(code)) return undefined;
  if (endpoint.kind === 'socket') {
    const path = endpoint.socketPath;
    if (code === 'EACCES')
      return new DaemonUnreachableError(
        `cannot connect to the sluice daemon at ${path}: permission denied (run as root or as a member of the socket's group)`,
        { address: path, cause: error },
      );
    const why = code === 'ENOENT' ? 'no such socket' : 'connection refused';
    return new DaemonUnreachableError(
      `the sluice daemon is not running at ${path} (${why}); start it with \`sluice serve\`, or point at it with --socket PATH or SLUICE_SOCKET`,
      { address: path, cause: error },
    );
  }
  const origin = endpoint.url.origin;
  const why =
    code === 'ECONNREFUSED'
      ? 'connection refused'
      : code === 'ENOTFOUND' || code === 'EAI_AGAIN'
        ? 'unknown host'
        : code.toLowerCase();
  return new DaemonUnreachableError(
    `the sluice daemon is not reachable at ${origin} (${why}); start it with \`sluice serve --listen HOST:PORT --token-file F\``,
    { address: origin, cause: error },
  );
}

async function problemOf(response: Dispatcher.ResponseData): Promise<Problem> {
  const text = await response.body.text();
  const type = String(response.headers['content-type'] ?? '');
  if (type.includes('json')) {
    try {
      const parsed = JSON.parse(text) as Partial<Problem>;
      if (parsed !== null && typeof parsed === 'object')
        return { ...parsed, status: parsed.status ?? response.statusCode };
    } catch {
      // not JSON after all: fall through to the text
    }
  }
  const firstLine = text.split('\n')[0].trim();
  return { status: response.statusCode, title: firstLine || `HTTP status ${response.statusCode}` };
}

/** A connection to the daemon; `close()` it when done. */
export class ApiClient {
  readonly endpoint: Endpoint;
  readonly #dispatcher: Agent;
  readonly #origin: string;

  constructor(endpoint: Endpoint) {
    this.endpoint = endpoint;
    if (endpoint.kind === 'socket') {
      this.#dispatcher = new Agent({ connect: { socketPath: endpoint.socketPath } });
      this.#origin = 'http://localhost';
    } else {
      this.#dispatcher = new Agent();
      this.#origin = endpoint.url.origin + endpoint.url.pathname.replace(/\/+$/, '');
    }
  }

  /** Where requests go, for messages. */
  get address(): string {
    return this.endpoint.kind === 'socket' ? this.endpoint.socketPath : this.endpoint.url.origin;
  }

  /**
   * Sends one request and returns the response, still unread. Throws DaemonUnreachableError when
   * nothing answers, ApiError for a status of 400 or more.
   */
  async send(
    method: string,
    path: string,
    options: RequestOptions = {},
  ): Promise<Dispatcher.ResponseData> {
    const url = new URL(this.#origin + path);
    for (const [key, value] of Object.entries(options.query ?? {}))
      if (value !== undefined) url.searchParams.set(key, String(value));
    const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
    if (this.endpoint.kind === 'tcp' && this.endpoint.token !== undefined)
      headers.authorization = `Bearer ${this.endpoint.token}`;
    let body: string | Readable | undefined;
    if (options.stream !== undefined) {
      body = options.stream instanceof Readable ? options.stream : Readable.from(options.stream);
      headers['content-type'] = options.contentType ?? 'application/octet-stream';
    } else if (options.json !== undefined) {
      body = JSON.stringify(options.json);
      headers['content-type'] = 'application/json';
    }
    let response: Dispatcher.ResponseData;
    try {
      response = await request(url, {
        method: method as Dispatcher.HttpMethod,
        headers,
        body,
        dispatcher: this.#dispatcher,
        signal: options.signal,
      });
    } catch (error: unknown) {
      throw unreachable(this.endpoint, error) ?? error;
    }
    if (response.statusCode >= 400) {
      throw new ApiError(await problemOf(response));
    }
    return response;
  }

  /** A request whose answer is JSON (or nothing, for 204). */
  async call<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const response = await this.send(method, path, options);
    const text = await response.body.text();
    return (text === '' ? undefined : JSON.parse(text)) as T;
  }

  get<T>(path: string, query?: RequestOptions['query']): Promise<T> {
    return this.call<T>('GET', path, { query });
  }

  /**
   * Follows a server-sent event stream until it ends or `signal` aborts (then it returns quietly).
   */
  async *events(path: string, signal?: AbortSignal): AsyncGenerator<ServerEvent> {
    let response: Dispatcher.ResponseData;
    try {
      response = await this.send('GET', path, { headers: { accept: 'text/event-stream' }, signal });
    } catch (error: unknown) {
      if (signal?.aborted) return;
      throw error;
    }
    let buffer = '';
    let event = 'message';
    let data: string[] = [];
    try {
      for await (const chunk of response.body) {
        buffer += (chunk as Buffer).toString('utf8');
        let newline: number;
        while ((newline = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, newline).replace(/\r$/, '');
          buffer = buffer.slice(newline + 1);
          if (line === '') {
            if (data.length > 0) yield { event, data: data.join('\n') };
            event = 'message';
            data = [];
          } else if (line.startsWith(':')) {
            // a comment: the server's keep-alive
          } else {
            const colon = line.indexOf(':');
            const field = colon < 0 ? line : line.slice(0, colon);
            const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
            if (field === 'event') event = value;
            else if (field === 'data') data.push(value);
          }
        }
      }
    } catch (error: unknown) {
      if (signal?.aborted) return;
      throw error;
    }
  }

  async close(): Promise<void> {
    await this.#dispatcher.close();
  }
}
