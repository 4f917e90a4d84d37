// The router topology: a client and two servers, each on its own veth link to a forwarding router namespace.
//
//   client  <id>c ──── <id>rc   router   <id>r1 ──── <id>s1  server1
//   192.0.2.2           192.0.2.1       198.51.100.1        198.51.100.2
//   2001:db8:1::2       2001:db8:1::1   2001:db8:2::1       2001:db8:2::2
//                                       <id>r2 ──── <id>s2  server2
//                                       203.0.113.1         203.0.113.2
//                                       2001:db8:3::1       2001:db8:3::2
//
// Quiet by construction: static neighbours on both families (no ARP, no neighbour discovery),
// no link-local addresses (addrgenmode none), no DAD, no router solicitations. Every veth has
// tx checksum offload off, so a frame that XDP forwards carries a complete checksum.
import { readFileSync } from 'node:fs';
import type { BpfLink, BpfProgram } from '../bpf/index.js';
import { LabCommandError, run } from './exec.js';
import type { Endpoint, Lab } from './lab.js';

/** One end of a link of the router topology: an `Endpoint` with its IPv6 address and ifindex. */
export interface RouterEndpoint extends Endpoint {
  ipv6: string;
  /** The device's ifindex inside its namespace. */
  ifindex: number;
  /** Prefix lengths of `ipv4` and `ipv6`. */
  ipv4PrefixLength: number;
  ipv6PrefixLength: number;
}

/** The router namespace and its three devices, named for the host each one faces. */
export interface RouterSides {
  netns: string;
  client: RouterEndpoint;
  server1: RouterEndpoint;
  server2: RouterEndpoint;
}

/** What `Lab.router()` built: plain data, so it survives `JSON.stringify` (see run-in-lab.ts). */
export interface RouterTopology {
  /** The lab id every name starts with. */
  id: string;
  client: RouterEndpoint;
  server1: RouterEndpoint;
  server2: RouterEndpoint;
  router: RouterSides;
  /** True when the client's and servers' veths run an XDP_PASS program (see `RouterOptions`). */
  passXdp: boolean;
}

export interface RouterOptions {
  /**
   * Attach a do-nothing XDP_PASS program, natively, to the client's and servers' veths. A veth
   * drops frames XDP_REDIRECTed into its peer unless that peer runs an XDP program, so tests that
   * redirect on the router need this. The links close when the lab is destroyed.
   */
  passXdp?: boolean;
}

/** Forwarding counters of a namespace's IP stacks. */
export interface ForwardCounters {
  /** IpForwDatagrams of /proc/net/snmp. */
  ipv4: number;
  /** Ip6OutForwDatagrams of /proc/net/snmp6. */
  ipv6: number;
}

/** `r0 = XDP_PASS; exit`, as in test/helpers/privileges.ts. */
const XDP_PASS_INSNS = Uint8Array.from([0xb7, 0, 0, 0, 2, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]);

interface LinkPlan {
  host: 'client' | 'server1' | 'server2';
  hostSuffix: string;
  routerSuffix: string;
  ipv4: string;
  ipv6: string;
}

const LINKS: LinkPlan[] = [
  { host: 'client', hostSuffix: 'c', routerSuffix: 'rc', ipv4: '192.0.2', ipv6: '2001:db8:1::' },
  {
    host: 'server1',
    hostSuffix: 's1',
    routerSuffix: 'r1',
    ipv4: '198.51.100',
    ipv6: '2001:db8:2::',
  },
  {
    host: 'server2',
    hostSuffix: 's2',
    routerSuffix: 'r2',
    ipv4: '203.0.113',
    ipv6: '2001:db8:3::',
  },
];

/**
 * Builds the router topology in `lab` (use `lab.router()`): namespaces `<id>c`, `<id>r`,
 * `<id>s1`, `<id>s2`; on each link the router has `.1`/`::1` and the host `.2`/`::2`.
 * Throws `LabCommandError` when a command fails, or the bpf area's errors when `passXdp` cannot
 * load or attach; everything made so far goes with `lab.destroy()`. Native XDP on veth needs
 * Linux ≥ 4.19.
 */
export async function buildRouter(lab: Lab, options: RouterOptions = {}): Promise<RouterTopology> {
  const routerNs = await lab.addNamespace('r');
  await quietIpv6(routerNs);
  await sysctl(routerNs, ['net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);

  // The three links are independent: build them side by side. allSettled, so that no step is
  // still running (adding a namespace) when a caller reacts to a failure with lab.destroy().
  const built = await Promise.allSettled(LINKS.map((plan) => buildLink(lab, routerNs, plan)));
  const failed = built.find((result) => result.status === 'rejected');
  if (failed) throw failed.reason;
  const links = built.map((result) => (result as PromiseFulfilledResult<BuiltLink>).value);
  const hosts = links.map((link) => link.host);
  const sides = links.map((link) => link.side);

  const passXdp = options.passXdp ?? false;
  if (passXdp) await attachPassPrograms(lab, hosts);

  const [client, server1, server2] = hosts;
  return {
    id: lab.id,
    client,
    server1,
    server2,
    router: { netns: routerNs, client: sides[0], server1: sides[1], server2: sides[2] },
    passXdp,
  };
}

interface BuiltLink {
  host: RouterEndpoint;
  side: RouterEndpoint;
}

/** One veth link: the host's namespace, both ends configured, neighbours and the host's routes. */
async function buildLink(lab: Lab, routerNs: string, plan: LinkPlan): Promise<BuiltLink> {
  const hostNs = await lab.addNamespace(plan.hostSuffix);
  await quietIpv6(hostNs);
  const hostDevice = lab.id + plan.hostSuffix;
  const routerDevice = lab.id + plan.routerSuffix;
  await run(
    [
      'ip',
      'link',
      'add',
      routerDevice,
      'type',
      'veth',
      'peer',
      'name',
      hostDevice,
      'netns',
      hostNs,
    ],
    { netns: routerNs },
  );
  const [side, host] = await Promise.all([
    configure(routerNs, routerDevice, `${plan.ipv4}.1`, `${plan.ipv6}1`),
    configure(hostNs, hostDevice, `${plan.ipv4}.2`, `${plan.ipv6}2`),
  ]);
  await Promise.all([
    // Forwarding per device too, whatever the device inherited from the namespace's defaults.
    sysctl(routerNs, [
      `net.ipv4.conf.${routerDevice}.forwarding=1`,
      `net.ipv6.conf.${routerDevice}.forwarding=1`,
    ]),
    addNeighbour(side, host),
    (async () => {
      await addNeighbour(host, side);
      await run(['ip', 'route', 'add', 'default', 'via', side.ipv4, 'dev', hostDevice], {
        netns: hostNs,
      });
      await run(['ip', '-6', 'route', 'add', 'default', 'via', side.ipv6, 'dev', hostDevice], {
        netns: hostNs,
      });
    })(),
  ]);
  return { host, side };
}

/**
 * Reads the forwarding counters of namespace `netns` (the router's, usually): how many datagrams
 * the kernel's IPv4 and IPv6 forwarding paths handled. A frame that XDP redirects never counts.
 * Throws `LabCommandError` when /proc cannot be read.
 */
export async function readForwardCounters(netns: string): Promise<ForwardCounters> {
  const snmp = await run(['cat', '/proc/net/snmp'], { netns });
  const snmp6 = await run(['cat', '/proc/net/snmp6'], { netns });
  // /proc/net/snmp: a line of names and a line of values per protocol, both starting "Ip:".
  const ipLines = snmp.split('\n').filter((line) => line.startsWith('Ip:'));
  const names = ipLines[0]?.split(/\s+/) ?? [];
  const values = ipLines[1]?.split(/\s+/) ?? [];
  const ipv4 = Number(values[names.indexOf('ForwDatagrams')]);
  const ipv6 = Number(/^Ip6OutForwDatagrams\s+(\d+)/m.exec(snmp6)?.[1]);
  if (!Number.isFinite(ipv4) || !Number.isFinite(ipv6)) {
    throw new LabCommandError(
      ['cat', '/proc/net/snmp', '/proc/net/snmp6'],
      `read forwarding counters in "${netns}": no ForwDatagrams or Ip6OutForwDatagrams`,
    );
  }
  return { ipv4, ipv6 };
}

/**
 * The topology that netns-lab/run-in-lab.ts built for this process, from SLUICE_LAB (or the file
 * SLUICE_LAB_FILE names); undefined outside such a run. Throws `SyntaxError` for malformed JSON.
 */
export function labFromEnv(env: NodeJS.ProcessEnv = process.env): RouterTopology | undefined {
  const json =
    env.SLUICE_LAB ?? (env.SLUICE_LAB_FILE ? readFileSync(env.SLUICE_LAB_FILE, 'utf8') : '');
  return json ? (JSON.parse(json) as RouterTopology) : undefined;
}

/** IPv6 without the chatter: no DAD, no router solicitations, no late MLD reports. */
async function quietIpv6(netns: string): Promise<void> {
  const settings: string[] = [];
  for (const scope of ['all', 'default']) {
    settings.push(
      `net.ipv6.conf.${scope}.accept_dad=0`,
      `net.ipv6.conf.${scope}.dad_transmits=0`,
      `net.ipv6.conf.${scope}.router_solicitations=0`,
      `net.ipv6.conf.${scope}.accept_ra=0`,
      // MLD reports for the solicited-node groups can't be turned off; with no interval the
      // repeats go out with the first report, while the topology is being built, not later.
      `net.ipv6.conf.${scope}.mldv1_unsolicited_report_interval=0`,
      `net.ipv6.conf.${scope}.mldv2_unsolicited_report_interval=0`,
    );
  }
  await sysctl(netns, settings);
}

async function sysctl(netns: string, settings: string[]): Promise<void> {
  await run(['sysctl', '-qw', ...settings], { netns });
}

/** Addresses, offloads and link state of one veth end; returns it described. */
async function configure(
  netns: string,
  device: string,
  ipv4: string,
  ipv6: string,
): Promise<RouterEndpoint> {
  // No link-local address: nothing on the link would use one, and it would bring its own MLD reports.
  await run(['ip', 'link', 'set', device, 'addrgenmode', 'none'], { netns });
  await sysctl(netns, [`net.ipv6.conf.${device}.accept_dad=0`]);
  // A veth leaves the checksum to its peer (CHECKSUM_PARTIAL); a frame XDP forwards past the
  // peer's stack would arrive with it unfinished and be dropped. tx off makes the sender finish it.
  await run(['ethtool', '-K', device, 'tx', 'off'], { netns });
  await run(['ip', 'addr', 'add', `${ipv4}/24`, 'dev', device], { netns });
  await run(['ip', '-6', 'addr', 'add', `${ipv6}/64`, 'dev', device, 'nodad'], { netns });
  await run(['ip', 'link', 'set', device, 'up'], { netns });
  const sys = await run(
    ['cat', `/sys/class/net/${device}/address`, `/sys/class/net/${device}/ifindex`],
    { netns },
  );
  const [mac, ifindex] = sys.trim().split('\n');
  return {
    netns,
    device,
    mac,
    ipv4,
    ipv6,
    ifindex: Number(ifindex),
    ipv4PrefixLength: 24,
    ipv6PrefixLength: 64,
  };
}

async function addNeighbour(at: RouterEndpoint, peer: RouterEndpoint): Promise<void> {
  for (const address of [peer.ipv4, peer.ipv6]) {
    await run(
      ['ip', 'neigh', 'replace', address, 'lladdr', peer.mac, 'dev', at.device, 'nud', 'permanent'],
      { netns: at.netns },
    );
  }
}

/** Loads one XDP_PASS program and attaches it natively to each endpoint; the lab closes them. */
async function attachPassPrograms(lab: Lab, endpoints: RouterEndpoint[]): Promise<void> {
  // Imported here so that a lab without XDP does not need the addon built.
  const { attachXdp, loadProgram } = await import('../bpf/index.js');
  const program: BpfProgram = loadProgram({ type: 'xdp', insns: XDP_PASS_INSNS, name: 'sl_pass' });
  const links: BpfLink[] = [];
  lab.addCleanup(() => {
    for (const link of links.splice(0)) link.close();
    program.close();
  });
  for (const end of endpoints) {
    links.push(attachXdp(program, end.device, { netns: end.netns, mode: 'native' }));
  }
}
