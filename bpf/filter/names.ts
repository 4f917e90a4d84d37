// Name tables: services (/etc/services), protocols (/etc/protocols), networks (/etc/networks) and libpcap's built-in names.
import { readFileSync } from 'node:fs';

export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_SCTP = 132;
/** libpcap's PROTO_UNDEF: a port name valid for both TCP and UDP. */
export const PROTO_UNDEF = -1;

function readTable(path: string): string[][] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  const rows: string[][] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (line !== '') rows.push(line.split(/\s+/));
  }
  return rows;
}

interface ServiceEntry {
  tcp?: number;
  udp?: number;
}
let services: Map<string, ServiceEntry> | undefined;
let protocols: Map<string, number> | undefined;
let networks: Map<string, number> | undefined;

function loadServices(): Map<string, ServiceEntry> {
  if (services) return services;
  services = new Map();
  for (const [name, portProto, ...aliases] of readTable('/etc/services')) {
    const m = /^(\d+)\/(tcp|udp)$/.exec(portProto ?? '');
    if (!m) continue;
    const port = Number(m[1]);
    const proto = m[2] as 'tcp' | 'udp';
    for (const n of [name, ...aliases]) {
      const e = services.get(n) ?? {};
      // The first entry for a name and protocol wins, as with getservbyname.
      if (e[proto] === undefined) e[proto] = port;
      services.set(n, e);
    }
  }
  return services;
}

function loadProtocols(): Map<string, number> {
  if (protocols) return protocols;
  protocols = new Map();
  for (const [name, num, ...aliases] of readTable('/etc/protocols')) {
    if (!/^\d+$/.test(num ?? '')) continue;
    for (const n of [name, ...aliases]) if (!protocols.has(n)) protocols.set(n, Number(num));
  }
  return protocols;
}

/** inet_network(3): a dotted network number with 1 to 4 parts, right-aligned. */
function inetNetwork(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length > 4) return undefined;
  let v = 0;
  for (const p of parts) {
    const n = /^0[xX][0-9a-fA-F]+$/.test(p)
      ? parseInt(p, 16)
      : /^0[0-7]*$/.test(p)
        ? parseInt(p, 8)
        : /^[1-9][0-9]*$/.test(p)
          ? Number(p)
          : NaN;
    if (!Number.isFinite(n) || n > 255) return undefined;
    v = v * 256 + n;
  }
  return v >>> 0;
}

function loadNetworks(): Map<string, number> {
  if (networks) return networks;
  networks = new Map();
  for (const [name, addr, ...aliases] of readTable('/etc/networks')) {
    const v = addr === undefined ? undefined : inetNetwork(addr);
    if (v === undefined) continue;
    for (const n of [name, ...aliases]) if (!networks.has(n)) networks.set(n, v);
  }
  return networks;
}

/**
 * pcap_nametoport: the port of a service name, and IPPROTO_TCP, IPPROTO_UDP
 * or PROTO_UNDEF (both, same number); undefined when unknown.
 */
export function lookupPort(name: string): { port: number; proto: number } | undefined {
  if (/^\d+$/.test(name)) {
    const port = Number(name);
    return port <= 65535 ? { port, proto: PROTO_UNDEF } : undefined;
  }
  const e = loadServices().get(name);
  if (e === undefined) return undefined;
  if (e.tcp !== undefined)
    return { port: e.tcp, proto: e.udp === e.tcp ? PROTO_UNDEF : IPPROTO_TCP };
  if (e.udp !== undefined) return { port: e.udp, proto: IPPROTO_UDP };
  return undefined;
}

/** pcap_nametoportrange: `a-b` with numbers or service names. */
export function lookupPortRange(
  name: string,
): { port1: number; port2: number; proto: number } | undefined {
  const m = /^(\d+)-(\d+)/.exec(name);
  if (m) return { port1: Number(m[1]) >>> 0, port2: Number(m[2]) >>> 0, proto: PROTO_UNDEF };
  const dash = name.indexOf('-');
  if (dash < 0) return undefined;
  const a = lookupPort(name.slice(0, dash));
  if (a === undefined) return undefined;
  const b = lookupPort(name.slice(dash + 1));
  if (b === undefined) return undefined;
  return { port1: a.port, port2: b.port, proto: a.proto === b.proto ? a.proto : PROTO_UNDEF };
}

/** pcap_nametoproto (getprotobyname). */
export function lookupIpProto(name: string): number | undefined {
  return loadProtocols().get(name);
}

/** pcap_nametonetaddr (getnetbyname), right-aligned as inet_network returns it. */
export function lookupNetwork(name: string): number | undefined {
  return loadNetworks().get(name);
}

/** libpcap's eproto_db: Ethernet type names. */
export const ETHER_PROTO_NAMES: Record<string, number> = {
  aarp: 0x80f3,
  arp: 0x0806,
  atalk: 0x809b,
  decnet: 0x6003,
  ip: 0x0800,
  ip6: 0x86dd,
  lat: 0x6004,
  loopback: 0x9000,
  mopdl: 0x6001,
  moprc: 0x6002,
  rarp: 0x8035,
  sca: 0x6007,
};

/** libpcap's llc_db: LLC SAP names. */
export const LLC_PROTO_NAMES: Record<string, number> = {
  iso: 0xfe,
  stp: 0x42,
  ipx: 0xe0,
  netbeui: 0xf0,
};

/** Built-in OSI protocol names for `iso proto`. */
export const ISO_PROTO_NAMES: Record<string, number> = { esis: 0x82, isis: 0x83, clnp: 0x81 };
