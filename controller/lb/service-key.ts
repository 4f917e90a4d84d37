// How services and backends are named in the API, the CLI, diffs and events: a service by
// "VIP:PORT/PROTO" ("10.0.0.100:80/tcp", "[2001:db8::1]:443/tcp"), a backend within its service by
// its address, with ":PORT" when it has its own (NAT mode). Addresses are written canonically, so
// "2001:DB8:0::1" and "2001:db8::1" name the same service.
import { formatAddress, parsePrefix } from '../dataplane/model.js';
import type { BackendDoc, ServiceDoc } from '../document.js';
import { ConfigInvalidError } from '../errors.js';

type Proto = NonNullable<ServiceDoc['proto']>;
const PROTOS: readonly Proto[] = ['tcp', 'udp', 'sctp'];

/** The canonical text of a bare address, or null when `text` is not one. */
export function canonicalAddress(text: string): string | null {
  if (text.includes('/')) return null;
  try {
    const p = parsePrefix(text);
    return formatAddress(p.family, p.addr);
  } catch {
    return null;
  }
}

function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** "10.0.0.100:80/tcp": the key of a service (address canonical, proto default tcp). */
export function serviceKey(service: Pick<ServiceDoc, 'vip' | 'port' | 'proto'>): string {
  const vip = canonicalAddress(service.vip) ?? service.vip;
  return `${hostPort(vip, service.port)}/${service.proto ?? 'tcp'}`;
}

/** "10.1.0.11", or "10.1.0.11:8080" for a backend with its own port. */
export function backendKey(backend: Pick<BackendDoc, 'address' | 'port'>): string {
  const address = canonicalAddress(backend.address) ?? backend.address;
  return backend.port === undefined ? address : hostPort(address, backend.port);
}

/**
 * Reads "VIP:PORT[/PROTO]" ("[v6]:PORT" for IPv6) into its parts. Throws ConfigInvalidError
 * saying what is wrong, `what` naming the argument ("service").
 */
export function parseServiceKey(
  text: string,
  what = 'service',
): { vip: string; port: number; proto: Proto } {
  const slash = text.lastIndexOf('/');
  const proto = (slash >= 0 ? text.slice(slash + 1) : 'tcp').toLowerCase() as Proto;
  if (!PROTOS.includes(proto))
    throw new ConfigInvalidError(
      `${what} "${text}": protocol "${proto}" is not one of ${PROTOS.join(', ')}`,
      { pointer: '' },
    );
  const hp = slash >= 0 ? text.slice(0, slash) : text;
  const parsed = splitHostPort(hp);
  if (!parsed || parsed.port === undefined)
    throw new ConfigInvalidError(
      `${what} "${text}": expected VIP:PORT[/PROTO], e.g. 10.0.0.100:80/tcp or [2001:db8::1]:443`,
      { pointer: '' },
    );
  return { vip: parsed.address, port: parsed.port, proto };
}

/** Reads "ADDR" or "ADDR:PORT" ("[v6]:PORT") naming a backend. Throws ConfigInvalidError. */
export function parseBackendRef(text: string): { address: string; port?: number } {
  const parsed = splitHostPort(text);
  if (!parsed)
    throw new ConfigInvalidError(
      `backend "${text}": expected an address, or ADDR:PORT ([v6]:PORT) for a backend with its own port`,
      { pointer: '' },
    );
  return parsed.port === undefined
    ? { address: parsed.address }
    : { address: parsed.address, port: parsed.port };
}

function splitHostPort(text: string): { address: string; port?: number } | null {
  let host = text;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) return null;
    host = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) return null;
      portText = rest.slice(1);
    }
  } else if (text.split(':').length === 2) {
    [host, portText] = text.split(':');
  }
  const address = canonicalAddress(host);
  if (address === null) return null;
  if (portText === undefined) return { address };
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) return null;
  return { address, port: Number(portText) };
}
