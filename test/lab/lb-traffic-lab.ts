// The load balancer's traffic lab: a client with many source addresses, a balancer namespace running lb_xdp natively, and four backends whose servers answer with their name. This file is also the client's and the servers' script.
//
//   client <id>c               balancer <id>l                  backend <id>bk (k = 1 … 4)
//   <id>c ──────────────────── <id>lc: lb_xdp (native)
//   192.0.2.2/24               192.0.2.1/24
//   2001:db8:1::2/64           2001:db8:1::1/64
//   XDP_PASS (native)          <id>lk: lb_nat_tc ───────────── <id>bk: lb_decap_xdp (native)
//                              (tc ingress)
//                              203.0.113.(16k+1)/28            203.0.113.(16k+2)/28
//                              2001:db8:1k::1/64               2001:db8:1k::2/64
//   sources: 198.51.100.0/24 and 2001:db8:c::/64 (local routes on the client's lo)
//   VIPs: 203.0.113.200 and 2001:db8:f::100 on every backend's lo
//
// The client's source ranges are local routes on its lo (AnyIP) with non-local binds allowed, so
// a socket binds any address of them and gets the replies. Every link has static neighbours on
// both families, no link-local addresses and tx checksum offload off (a frame XDP forwards past
// the sender's stack would otherwise carry an unfinished checksum). A veth drops frames
// XDP-redirected into it unless its peer runs an XDP program: the backends run lb_decap_xdp
// (which passes what is neither IPIP nor GUE), the client a do-nothing XDP_PASS. Replies go back
// through the balancer's kernel forwarding: DSR, IPIP and GUE from the VIP, NAT from the
// backend's address, turned back into the VIP's by lb_nat_tc.
//
// Servers (`node --import tsx lb-traffic-lab.ts server NAME TCP-PORTS UDP-PORTS`, one per backend)
// answer each TCP line with "NAME line" and record the source of every UDP datagram. The client
// (`… client`) opens and drives TCP connections and sends one UDP datagram per flow. Both take
// one JSON request a line on stdin and answer one JSON line on stdout.
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import {
  attachTc,
  attachXdp,
  loadProgram,
  type BpfObject,
  type BpfProgram,
} from '../../bpf/index.js';
import {
  LbDecapMaps,
  LbMaps,
  loadLbDecapObject,
  loadLbObject,
  type LbConfig,
} from '../../controller/lb/lb-maps.js';
import { Lab } from '../../netns-lab/lab.js';
import { NetnsScript, writeAnswer } from '../helpers/netns-script.js';

const SCRIPT = fileURLToPath(import.meta.url);

/** `r0 = XDP_PASS; exit`. */
const XDP_PASS_INSNS = Uint8Array.from([0xb7, 0, 0, 0, 2, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]);

export const VIP4 = '203.0.113.200';
export const VIP6 = '2001:db8:f::100';

/** The IPIP and GUE outer source prefixes written to lb_config. */
export const BASE_CONFIG: LbConfig = {
  ipipSource4: '203.0.113.128/26',
  ipipSource6: '2001:db8:e::/96',
};

/** The TCP ports every server listens on, and the UDP ports it records datagrams on. */
export const TCP_PORTS = [80, 81, 82, 83, 84, 8080];
export const UDP_PORTS = [5001, 5002, 5003];
/** How long a connection's reply may take unless a test says otherwise. */
const REPLY_WITHIN_MS = 5000;
/**
 * For tests that follow established connections through changes: a reply late by TCP's
 * retransmission backoff (a lost segment; 200 ms, then doubling) or by a process stalled on a
 * loaded machine is still a reply from where the connection lives, and only where it comes from
 * is under test. A reset or another server's answer still fails at once.
 */
export const LATE_REPLY_WITHIN_MS = 20_000;

/** One backend namespace. */
export interface LbBackendHost {
  /** The server's name, what it answers with: "b1" … "b4". */
  name: string;
  netns: string;
  device: string;
  ipv4: string;
  ipv6: string;
}

/** The client's n-th IPv4 source (n from 1 to 254). */
export function source4(n: number): string {
  return `198.51.100.${n}`;
}

/** The client's n-th IPv6 source (n from 1 to 0xffff). */
export function source6(n: number): string {
  return `2001:db8:c::${n.toString(16)}`;
}

// ---------------------------------------------------------------------------------------------
// Messages

/** What the client answers for one TCP connection. */
export interface TcpReply {
  local: string;
  localPort: number;
  /** The server's line ("b2 hello"); absent when the connection failed. */
  reply?: string;
  error?: string;
}

/** One datagram flow as a server saw it: source address and port. */
export interface UdpFlowSeen {
  src: string;
  sport: number;
}

type Request =
  | { op: 'udp'; vip: string; port: number; sources: string[]; portBase: number; ports: number }
  | { op: 'udpFlows'; vip: string; port: number; flows: [string, number][] }
  | { op: 'open'; tag: string; vip: string; port: number; sources: string[]; text: string }
  | { op: 'again'; tag: string; text: string; replyWithinMs: number }
  | { op: 'close'; tag: string }
  | { op: 'flows'; port: number }
  | { op: 'stop'; port: number }
  | { op: 'start'; port: number };

/** This file's script in a namespace: the client or a server. */
type Peer = NetnsScript<Request>;

/** Starts this file's script with `args` in `netns`. */
function startPeer(lab: Lab, netns: string, args: string[]): Peer {
  return new NetnsScript<Request>(lab, netns, SCRIPT, args, `lab script "${args.join(' ')}"`);
}

// ---------------------------------------------------------------------------------------------
// The lab

/** The client's driver: TCP connections and UDP flows from the client namespace. */
export class LbClient {
  readonly #peer: Peer;

  constructor(peer: Peer) {
    this.#peer = peer;
  }

  /** One datagram per flow: each source with ports portBase … portBase + ports - 1. */
  udp(vip: string, port: number, sources: string[], portBase: number, ports: number) {
    return this.#peer.request<{ sent: number; failed: number }>({
      op: 'udp',
      vip,
      port,
      sources,
      portBase,
      ports,
    });
  }

  /** One datagram for each of `flows` ([source, port] pairs): to send again what a round lost. */
  udpFlows(vip: string, port: number, flows: [string, number][]) {
    return this.#peer.request<{ sent: number; failed: number }>({
      op: 'udpFlows',
      vip,
      port,
      flows,
    });
  }

  /** Opens one connection per source (the kernel picks the port), sends `text`, reads the reply; keeps them under `tag`. */
  open(tag: string, vip: string, port: number, sources: string[], text = 'hello') {
    return this.#peer.request<TcpReply[]>({ op: 'open', tag, vip, port, sources, text });
  }

  /**
   * Sends `text` on every connection of `tag` and reads each reply; one not read within
   * `replyWithinMs` is an error.
   */
  again(tag: string, text: string, replyWithinMs = REPLY_WITHIN_MS) {
    return this.#peer.request<TcpReply[]>({ op: 'again', tag, text, replyWithinMs });
  }

  /** Closes every connection of `tag`. */
  close(tag: string) {
    return this.#peer.request<number>({ op: 'close', tag });
  }
}

/** One backend's server. */
export class LbServer {
  readonly host: LbBackendHost;
  readonly #peer: Peer;

  constructor(host: LbBackendHost, peer: Peer) {
    this.host = host;
    this.#peer = peer;
  }

  /** The UDP flows seen on `port` since the last call (each flow once, however many datagrams). */
  flows(port: number) {
    return this.#peer.request<{ datagrams: number; flows: UdpFlowSeen[] }>({ op: 'flows', port });
  }

  /** Stops listening on TCP `port` (new connections are refused; established ones go on). */
  stop(port: number) {
    return this.#peer.request<void>({ op: 'stop', port });
  }

  /** Listens on TCP `port` again. */
  start(port: number) {
    return this.#peer.request<void>({ op: 'start', port });
  }
}

/** Everything the lab built, and teardown. */
export class LbTrafficLab {
  readonly lab: Lab;
  readonly client: LbClient;
  readonly servers: LbServer[];
  readonly balancer: string;
  readonly maps: LbMaps;
  readonly decap: LbDecapMaps;
  readonly #close: (() => void)[];

  private constructor(parts: {
    lab: Lab;
    client: LbClient;
    servers: LbServer[];
    balancer: string;
    maps: LbMaps;
    decap: LbDecapMaps;
    close: (() => void)[];
  }) {
    this.lab = parts.lab;
    this.client = parts.client;
    this.servers = parts.servers;
    this.balancer = parts.balancer;
    this.maps = parts.maps;
    this.decap = parts.decap;
    this.#close = parts.close;
  }

  /**
   * Builds the namespaces, loads lb.o (a flow table of `flowEntries`) and lb_decap.o, attaches
   * them natively, and starts the servers and the client. What was built is removed when a
   * step fails; otherwise by destroy(). Throws LabCommandError, or the bpf area's errors.
   */
  static async create(
    options: { flowEntries?: number; balancer?: 'programs' | 'daemon' } = {},
  ): Promise<LbTrafficLab> {
    const lab = new Lab();
    const close: (() => void)[] = [];
    // Handles go before the namespaces, also from the lab's exit hook.
    lab.addCleanup(() => closeAll(close));
    try {
      return await LbTrafficLab.#build(
        lab,
        close,
        options.flowEntries ?? 1 << 18,
        options.balancer ?? 'programs',
      );
    } catch (error: unknown) {
      await lab.destroy();
      throw error;
    }
  }

  static async #build(
    lab: Lab,
    close: (() => void)[],
    flowEntries: number,
    balancer: 'programs' | 'daemon',
  ): Promise<LbTrafficLab> {
    const id = lab.id;
    // allSettled: no namespace is still being added when a failure makes create() destroy the lab.
    const made = await Promise.allSettled(
      ['c', 'l', 'b1', 'b2', 'b3', 'b4'].map((suffix) => lab.addNamespace(suffix)),
    );
    const failed = made.find((m) => m.status === 'rejected');
    if (failed) throw failed.reason;
    const [clientNs, balancerNs, ...backendNs] = made.map(
      (m) => (m as PromiseFulfilledResult<string>).value,
    );
    const hosts: LbBackendHost[] = backendNs.map((netns, k) => ({
      name: `b${k + 1}`,
      netns,
      device: `${id}b${k + 1}`,
      ipv4: `203.0.113.${16 * (k + 1) + 2}`,
      ipv6: `2001:db8:1${k + 1}::2`,
    }));

    // The client's link, then one per backend; the balancer's end of each is `side`.
    const links: LinkPlan[] = [
      {
        netns: clientNs,
        device: `${id}c`,
        side: `${id}lc`,
        side4: '192.0.2.1/24',
        host4: '192.0.2.2/24',
        side6: '2001:db8:1::1/64',
        host6: '2001:db8:1::2/64',
      },
      ...hosts.map((h, k) => ({
        netns: h.netns,
        device: h.device,
        side: `${id}l${k + 1}`,
        side4: `203.0.113.${16 * (k + 1) + 1}/28`,
        host4: `${h.ipv4}/28`,
        side6: `2001:db8:1${k + 1}::1/64`,
        host6: `${h.ipv6}/64`,
      })),
    ];
    const bare = (prefix: string): string => prefix.replace(/\/\d+$/, '');

    // One shell a namespace and step: under load, processes are what setup costs. Settings
    // first, so that the devices moved in next start from them.
    await Promise.all([
      script(lab, clientNs, [
        sysctls(['net.ipv4.ip_nonlocal_bind=1', 'net.ipv6.ip_nonlocal_bind=1']),
        // The sources: every address of both ranges is local (AnyIP).
        ['ip', 'route', 'add', 'local', '198.51.100.0/24', 'dev', 'lo'],
        ['ip', '-6', 'route', 'add', 'local', '2001:db8:c::/64', 'dev', 'lo'],
      ]),
      script(lab, balancerNs, [
        sysctls(['net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']),
      ]),
      ...hosts.map((h) =>
        script(lab, h.netns, [
          sysctls([]),
          ['ip', 'addr', 'add', `${VIP4}/32`, 'dev', 'lo'],
          ['ip', '-6', 'addr', 'add', `${VIP6}/128`, 'dev', 'lo', 'nodad'],
        ]),
      ),
    ]);
    await script(
      lab,
      balancerNs,
      links.map((l) => [
        'ip',
        'link',
        'add',
        l.side,
        'type',
        'veth',
        'peer',
        'name',
        l.device,
        'netns',
        l.netns,
      ]),
    );
    const [sideMacs, ...hostMacs] = await Promise.all([
      script(
        lab,
        balancerNs,
        links.flatMap((l) => [
          ...configure(l.side, l.side4, l.side6),
          // Forwarding on the ingress device: bpf_fib_lookup's forwarding lookup asks for it.
          [
            'sysctl',
            '-qw',
            `net.ipv4.conf.${l.side}.forwarding=1`,
            `net.ipv6.conf.${l.side}.forwarding=1`,
          ],
        ]),
        links.map((l) => l.side),
      ),
      ...links.map((l) => script(lab, l.netns, configure(l.device, l.host4, l.host6), [l.device])),
    ]);
    const neighbour = (address: string, mac: string, device: string): string[] => [
      'ip',
      'neigh',
      'replace',
      bare(address),
      'lladdr',
      mac,
      'dev',
      device,
      'nud',
      'permanent',
    ];
    await Promise.all([
      script(lab, balancerNs, [
        ...links.flatMap((l, k) => [
          neighbour(l.host4, hostMacs[k][0], l.side),
          neighbour(l.host6, hostMacs[k][0], l.side),
        ]),
        // The way back to the client's sources.
        ['ip', 'route', 'add', '198.51.100.0/24', 'via', '192.0.2.2'],
        ['ip', '-6', 'route', 'add', '2001:db8:c::/64', 'via', '2001:db8:1::2'],
      ]),
      ...links.map((l, k) =>
        script(lab, l.netns, [
          neighbour(l.side4, sideMacs[k], l.device),
          neighbour(l.side6, sideMacs[k], l.device),
          ['ip', 'route', 'add', 'default', 'via', bare(l.side4), 'dev', l.device],
          ['ip', '-6', 'route', 'add', 'default', 'via', bare(l.side6), 'dev', l.device],
        ]),
      ),
    ]);

    // Programs: each handle closes in destroy(), latest first.
    const keep = <T extends { close(): void }>(handle: T): T => {
      close.push(() => handle.close());
      return handle;
    };
    const object: BpfObject = keep(loadLbObject({ flowEntries }));
    const maps = keep(LbMaps.open(object));
    maps.setConfig(BASE_CONFIG);
    const lbXdp = keep(object.program('lb_xdp'));
    const natTc = keep(object.program('lb_nat_tc'));
    const decapObject = keep(loadLbDecapObject());
    const decap = keep(LbDecapMaps.open(decapObject));
    const decapXdp = keep(decapObject.program('lb_decap_xdp'));
    const pass: BpfProgram = keep(
      loadProgram({ type: 'xdp', insns: XDP_PASS_INSNS, name: 'sl_pass' }),
    );
    for (const h of hosts) {
      decap.addLocalAddress(h.ipv4);
      decap.addLocalAddress(h.ipv6);
    }
    keep(attachXdp(pass, `${id}c`, { netns: clientNs, mode: 'native' }));
    for (const [k, h] of hosts.entries()) {
      keep(attachXdp(decapXdp, h.device, { netns: h.netns, mode: 'native' }));
      if (balancer === 'programs')
        keep(attachTc(natTc, `${id}l${k + 1}`, { netns: balancerNs, direction: 'ingress' }));
    }
    // 'daemon': the balancer's devices are left to a `sluice serve` in its namespace (the lab's
    // own lb.o is then loaded but runs nowhere).
    if (balancer === 'programs')
      keep(attachXdp(lbXdp, `${id}lc`, { netns: balancerNs, mode: 'native' }));

    // Scripts.
    const serverPeers = hosts.map((h) =>
      startPeer(lab, h.netns, ['server', h.name, TCP_PORTS.join(','), UDP_PORTS.join(',')]),
    );
    const clientPeer = startPeer(lab, clientNs, ['client']);
    for (const p of [...serverPeers, clientPeer]) close.push(() => p.stop());
    await Promise.all([...serverPeers, clientPeer].map((p) => p.ready()));

    return new LbTrafficLab({
      lab,
      client: new LbClient(clientPeer),
      servers: hosts.map((h, k) => new LbServer(h, serverPeers[k])),
      balancer: balancerNs,
      maps,
      decap,
      close,
    });
  }

  /** Stops the scripts, detaches and closes every handle, and removes the namespaces. */
  async destroy(): Promise<void> {
    closeAll(this.#close);
    await this.lab.destroy();
  }
}

/** Runs and forgets every close, latest first, whatever one of them throws. */
function closeAll(close: (() => void)[]): void {
  for (const c of close.splice(0).reverse()) {
    try {
      c();
    } catch {
      // teardown goes on: the namespaces take the rest
    }
  }
}

/** One veth link from the balancer to a host; addresses with their prefix length. */
interface LinkPlan {
  netns: string;
  device: string;
  side: string;
  side4: string;
  host4: string;
  side6: string;
  host6: string;
}

/**
 * Runs `commands` in `netns` with one shell (`sh -e`: the first failure stops it), then prints the
 * MAC of each of `macsOf`; returns them in order. Arguments are plain words, never quoted.
 */
async function script(
  lab: Lab,
  netns: string,
  commands: string[][],
  macsOf: string[] = [],
): Promise<string[]> {
  const all = [...commands, ...macsOf.map((d) => ['cat', `/sys/class/net/${d}/address`])];
  for (const word of all.flat()) {
    if (!/^[\w.:/=-]+$/.test(word)) throw new Error(`lab script: "${word}" is not a plain word`);
  }
  const out = await lab.exec(netns, ['sh', '-ec', all.map((c) => c.join(' ')).join('\n')]);
  return macsOf.length ? out.trim().split('\n').slice(-macsOf.length) : [];
}

/** sysctl -w of `extra` and of what every namespace here gets: IPv6 without chatter (no DAD, no router solicitations), no reverse-path filter. */
function sysctls(extra: string[]): string[] {
  const settings: string[] = [];
  for (const scope of ['all', 'default']) {
    settings.push(
      `net.ipv6.conf.${scope}.disable_ipv6=0`,
      `net.ipv6.conf.${scope}.accept_dad=0`,
      `net.ipv6.conf.${scope}.dad_transmits=0`,
      `net.ipv6.conf.${scope}.router_solicitations=0`,
      `net.ipv6.conf.${scope}.accept_ra=0`,
      `net.ipv4.conf.${scope}.rp_filter=0`,
    );
  }
  return ['sysctl', '-qw', ...settings, ...extra];
}

/**
 * One veth end: no link-local address, tx checksum offload off (a frame that XDP forwards past
 * the sender's stack carries a finished checksum), both addresses, up.
 */
function configure(device: string, ipv4: string, ipv6: string): string[][] {
  return [
    ['ip', 'link', 'set', device, 'addrgenmode', 'none'],
    ['ethtool', '-K', device, 'tx', 'off'],
    ['ip', 'addr', 'add', ipv4, 'dev', device],
    ['ip', '-6', 'addr', 'add', ipv6, 'dev', device, 'nodad'],
    ['ip', 'link', 'set', device, 'up'],
  ];
}

// ---------------------------------------------------------------------------------------------
// The scripts

/** Strips the IPv4-mapped prefix a dual-stack socket reports. */
function plain(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

/** Reads one line from `socket` (its next reply); resolves with it, or rejects on close or timeout. */
function readLine(socket: Socket, buffered: { text: string }, timeoutMs: number): Promise<string> {
  return new Promise((done, fail) => {
    const check = (): boolean => {
      const at = buffered.text.indexOf('\n');
      if (at < 0) return false;
      const line = buffered.text.slice(0, at);
      buffered.text = buffered.text.slice(at + 1);
      finish();
      done(line);
      return true;
    };
    const onData = (): void => void check();
    const onEnd = (): void => {
      finish();
      fail(new Error('closed before a reply'));
    };
    const onError = (error: Error): void => {
      finish();
      fail(error);
    };
    const timer = setTimeout(() => {
      finish();
      fail(new Error(`no reply in ${timeoutMs} ms`));
    }, timeoutMs);
    const finish = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onError);
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', onError);
    check();
  });
}

interface Conn {
  socket: Socket;
  buffered: { text: string };
  local: string;
  localPort: number;
}

/** Runs `fn` over `items` with at most `width` at a time; results in order. */
async function pool<T, R>(items: T[], width: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]);
      }
    }),
  );
  return out;
}

async function exchange(
  conn: Conn,
  text: string,
  replyWithinMs = REPLY_WITHIN_MS,
): Promise<TcpReply> {
  const reply: TcpReply = { local: conn.local, localPort: conn.localPort };
  try {
    conn.socket.write(`${text}\n`);
    reply.reply = await readLine(conn.socket, conn.buffered, replyWithinMs);
  } catch (error: unknown) {
    reply.error = (error as Error).message;
  }
  return reply;
}

function openConn(vip: string, port: number, source: string): Promise<Conn> {
  return new Promise((done, fail) => {
    const socket = connect({ host: vip, port, localAddress: source, timeout: 5000 });
    const buffered = { text: '' };
    socket.setEncoding('utf8');
    socket.on('data', (text: string) => (buffered.text += text));
    socket.once('connect', () => {
      socket.setTimeout(0);
      done({ socket, buffered, local: source, localPort: socket.localPort ?? 0 });
    });
    socket.once('timeout', () => {
      socket.destroy();
      fail(new Error(`connect to ${vip}:${port} from ${source}: timed out`));
    });
    socket.once('error', fail);
  });
}

function sendDatagram(vip: string, port: number, source: string, sport: number): Promise<boolean> {
  return new Promise((done) => {
    const socket: UdpSocket = createSocket(source.includes(':') ? 'udp6' : 'udp4');
    const finish = (ok: boolean): void => {
      socket.close();
      done(ok);
    };
    socket.once('error', () => finish(false));
    socket.bind({ address: source, port: sport, exclusive: true }, () => {
      socket.send(`${source} ${sport}`, port, vip, (error) => finish(!error));
    });
  });
}

async function runClient(): Promise<void> {
  const groups = new Map<string, Conn[]>();
  const lines = createInterface({ input: process.stdin });
  writeAnswer(-1, 'ready');
  for await (const line of lines) {
    const r = JSON.parse(line) as Request & { id: number };
    try {
      if (r.op === 'udp' || r.op === 'udpFlows') {
        const flows: [string, number][] = r.op === 'udpFlows' ? r.flows : [];
        if (r.op === 'udp')
          for (const s of r.sources)
            for (let p = 0; p < r.ports; p++) flows.push([s, r.portBase + p]);
        const sent = await pool(flows, 32, ([s, p]) => sendDatagram(r.vip, r.port, s, p));
        const ok = sent.filter(Boolean).length;
        writeAnswer(r.id, { sent: ok, failed: sent.length - ok });
      } else if (r.op === 'open') {
        const replies = await pool(r.sources, 32, async (source): Promise<TcpReply> => {
          let conn: Conn;
          try {
            conn = await openConn(r.vip, r.port, source);
          } catch (error: unknown) {
            return { local: source, localPort: 0, error: (error as Error).message };
          }
          const group = groups.get(r.tag) ?? [];
          group.push(conn);
          groups.set(r.tag, group);
          return exchange(conn, r.text);
        });
        writeAnswer(r.id, replies);
      } else if (r.op === 'again') {
        writeAnswer(
          r.id,
          await pool(groups.get(r.tag) ?? [], 32, (c) => exchange(c, r.text, r.replyWithinMs)),
        );
      } else if (r.op === 'close') {
        const group = groups.get(r.tag) ?? [];
        groups.delete(r.tag);
        await Promise.all(
          group.map(
            (c) =>
              new Promise<void>((done) => {
                c.socket.once('close', () => done());
                c.socket.end();
                setTimeout(() => {
                  c.socket.destroy();
                  done();
                }, 3000).unref();
              }),
          ),
        );
        writeAnswer(r.id, group.length);
      } else {
        writeAnswer(r.id, undefined, new Error(`the client has no "${r.op}"`));
      }
    } catch (error: unknown) {
      writeAnswer(r.id, undefined, error);
    }
  }
}

async function runServer(name: string, tcpPorts: number[], udpPorts: number[]): Promise<void> {
  const listening: Promise<void>[] = [];
  const servers = new Map<number, Server>();
  const listen = (port: number): Promise<void> => {
    const server = createServer((socket) => {
      let text = '';
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => {
        text += chunk;
        for (let at = text.indexOf('\n'); at >= 0; at = text.indexOf('\n')) {
          socket.write(`${name} ${text.slice(0, at)}\n`);
          text = text.slice(at + 1);
        }
      });
      socket.on('end', () => socket.end());
      socket.on('error', () => socket.destroy());
    });
    servers.set(port, server);
    return new Promise((done) => server.listen({ host: '::', port }, done));
  };
  for (const port of tcpPorts) listening.push(listen(port));
  const seen = new Map<number, { datagrams: number; flows: Map<string, UdpFlowSeen> }>();
  for (const port of udpPorts) {
    const record = { datagrams: 0, flows: new Map<string, UdpFlowSeen>() };
    seen.set(port, record);
    const socket = createSocket({ type: 'udp6', ipv6Only: false, recvBufferSize: 1 << 20 });
    socket.on('message', (_msg, rinfo) => {
      record.datagrams++;
      const src = plain(rinfo.address);
      record.flows.set(`${src} ${rinfo.port}`, { src, sport: rinfo.port });
    });
    listening.push(new Promise((done) => socket.bind({ address: '::', port }, done)));
  }
  await Promise.all(listening);
  writeAnswer(-1, 'ready');
  for await (const line of createInterface({ input: process.stdin })) {
    const r = JSON.parse(line) as Request & { id: number };
    if (r.op === 'flows') {
      const record = seen.get(r.port);
      if (!record) {
        writeAnswer(r.id, undefined, new Error(`no UDP socket on port ${r.port}`));
        continue;
      }
      writeAnswer(r.id, { datagrams: record.datagrams, flows: [...record.flows.values()] });
      record.datagrams = 0;
      record.flows.clear();
    } else if (r.op === 'stop') {
      // close() stops accepting; established connections are left alone
      servers.get(r.port)?.close();
      servers.delete(r.port);
      writeAnswer(r.id, null);
    } else if (r.op === 'start') {
      if (!servers.has(r.port)) await listen(r.port);
      writeAnswer(r.id, null);
    } else {
      writeAnswer(r.id, undefined, new Error(`the server has no "${r.op}"`));
    }
  }
  process.exit(0);
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === SCRIPT) {
  const [role, name, tcp, udp] = process.argv.slice(2);
  const ports = (list: string | undefined): number[] =>
    (list ?? '').split(',').filter(Boolean).map(Number);
  if (role === 'server') await runServer(name ?? 'server', ports(tcp), ports(udp));
  else if (role === 'client') await runClient();
}
