// The match flags `rule add`, `limit add` and `filter add` share, their parsers, and how they
// become the RuleDoc the API takes.
import { isIP } from 'node:net';
import { Command, InvalidArgumentError, Option } from 'commander';
import type { RuleDoc } from '../controller/document.js';

/** Hooks a rule or an attachment may name. */
export const HOOKS = ['xdp', 'tc-ingress', 'tc-egress'] as const;
/** What a rule (or filter rule) may do with a matching packet. */
export const RULE_ACTIONS = ['drop', 'pass', 'count', 'ratelimit', 'redirect'] as const;
const PROTOCOLS = ['tcp', 'udp', 'icmp', 'icmpv6', 'sctp'];
const TCP_FLAGS = ['fin', 'syn', 'rst', 'psh', 'ack', 'urg', 'ece', 'cwr'];
const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** A whole number from `min` to `max`; `what` names it in the error. */
export function integerParser(what: string, min: number, max: number): (value: string) => number {
  return (value) => {
    if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max)
      throw new InvalidArgumentError(`expected ${what}: a whole number from ${min} to ${max}`);
    return Number(value);
  };
}

/** An IPv4 or IPv6 address, with or without a /length. */
export function parsePrefix(value: string): string {
  const [address, length, extra] = value.split('/');
  const family = isIP(address);
  const max = family === 4 ? 32 : 128;
  if (
    family === 0 ||
    extra !== undefined ||
    (length !== undefined && (!/^\d{1,3}$/.test(length) || Number(length) > max))
  )
    throw new InvalidArgumentError(
      'expected an IPv4 or IPv6 address or prefix (192.0.2.0/24, 2001:db8::/32)',
    );
  return value;
}

function parseSetName(value: string): string {
  if (!NAME.test(value))
    throw new InvalidArgumentError('expected a set name: 1 to 64 of A-Z a-z 0-9 _ . -');
  return value;
}

function parseProto(value: string): string | number {
  const lower = value.toLowerCase();
  if (PROTOCOLS.includes(lower)) return lower;
  if (/^\d{1,3}$/.test(value) && Number(value) <= 255) return Number(value);
  throw new InvalidArgumentError(`expected ${PROTOCOLS.join(', ')} or a protocol number 0-255`);
}

/** "80" → 80, "1024-65535" stays a range string, as RuleSchema takes them. */
export function parsePortRange(value: string): number | string {
  const match = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(value);
  const lo = Number(match?.[1]);
  const hi = match?.[2] === undefined ? lo : Number(match[2]);
  if (!match || lo > 65535 || hi > 65535 || lo > hi)
    throw new InvalidArgumentError('expected a port 0-65535 or a range LOW-HIGH (1024-65535)');
  return match[2] === undefined ? lo : `${lo}-${hi}`;
}

function parseIcmpType(value: string): { type: number; code?: number } {
  const match = /^(\d{1,3})(?:\/(\d{1,3}))?$/.exec(value);
  if (!match || Number(match[1]) > 255 || Number(match[2] ?? 0) > 255)
    throw new InvalidArgumentError('expected an ICMP type 0-255, optionally /CODE (3/4)');
  return match[2] === undefined
    ? { type: Number(match[1]) }
    : { type: Number(match[1]), code: Number(match[2]) };
}

function parseTcpFlags(value: string): string {
  for (const flag of value.split(',')) {
    if (!TCP_FLAGS.includes(flag.replace(/^!/, '').toLowerCase()))
      throw new InvalidArgumentError(
        `expected flags separated by commas, each maybe negated with "!": ${TCP_FLAGS.join(', ')} (syn,!ack)`,
      );
  }
  return value.toLowerCase();
}

const RATE = /^\d+(\.\d+)?\s*(pps|kpps|mpps|bps|kbps|mbps|gbps|bit|kbit|mbit|gbit)$/i;

/** "1000pps", "10mbit", "64kbps"; passed on as written for the daemon to read. */
export function parseRate(value: string): string {
  if (!RATE.test(value.trim()))
    throw new InvalidArgumentError(
      'expected a rate: a number with pps, kpps, mpps (packets) or bit, kbit, mbit, gbit, bps, kbps, mbps, gbps (1000pps, 10mbit)',
    );
  return value.trim();
}

function parseMac(value: string): string {
  if (!/^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$/.test(value))
    throw new InvalidArgumentError('expected a MAC address (02:00:00:00:00:01)');
  return value;
}

function parseDevice(value: string): string {
  if (!/^(?!\.{1,2}$)[^/\s:]{1,15}$/.test(value))
    throw new InvalidArgumentError(
      'expected a device name: 1 to 15 bytes, no "/", ":" or whitespace',
    );
  return value;
}

/** Options of commander for the fields a rule matches on, and the action's parameters. */
export interface MatchOptions {
  dev: string;
  hook?: RuleDoc['hook'];
  id?: string;
  priority?: number;
  src?: string;
  dst?: string;
  srcSet?: string;
  dstSet?: string;
  proto?: RuleDoc['proto'];
  sport?: RuleDoc['sport'];
  dport?: RuleDoc['dport'];
  icmpType?: RuleDoc['icmp'];
  vlan?: number;
  tcpFlags?: string;
  filter?: string;
  rate?: string;
  burst?: number;
  perSource?: boolean;
  to?: string;
  via?: string;
}

export function deviceOption(flags = '--dev <device>', description = 'network device'): Option {
  return new Option(flags, description).argParser(parseDevice);
}

export function hookOption(): Option {
  return new Option('--hook <hook>', 'xdp, tc-ingress or tc-egress (default xdp)').choices(HOOKS);
}

/** The mandatory `--action` flag of `rule add` and `filter add`. */
export function actionOption(): Option {
  return new Option('--action <action>', 'what to do with a matching packet')
    .choices(RULE_ACTIONS)
    .makeOptionMandatory();
}

/**
 * Stops `command` with a usage error (exit 2) when `--action` lacks the flag it needs: `--rate`
 * for ratelimit, `--to` for redirect.
 */
export function checkActionNeeds(
  command: Command,
  options: Pick<MatchOptions, 'rate' | 'to'> & { action: (typeof RULE_ACTIONS)[number] },
): void {
  if (options.action === 'ratelimit' && options.rate === undefined)
    command.error('sluice: --action ratelimit needs --rate (1000pps, 10mbit)', { exitCode: 2 });
  if (options.action === 'redirect' && options.to === undefined)
    command.error('sluice: --action redirect needs --to DEVICE', { exitCode: 2 });
}

/** Adds the attachment, position and match flags to `command`. */
export function addMatchOptions(command: Command): Command {
  return command
    .addOption(deviceOption().makeOptionMandatory())
    .addOption(hookOption())
    .option('--id <id>', 'rule id (default: generated)')
    .option(
      '--priority <n>',
      'lower runs first (default: after the rules already there)',
      integerParser('a priority', 0, 1_000_000),
    )
    .option('--src <prefix>', 'source address or prefix', parsePrefix)
    .option('--dst <prefix>', 'destination address or prefix', parsePrefix)
    .option('--src-set <name>', 'source address in this prefix set', parseSetName)
    .option('--dst-set <name>', 'destination address in this prefix set', parseSetName)
    .option('--proto <proto>', `${PROTOCOLS.join(', ')} or a number`, parseProto)
    .option('--sport <port[-port]>', 'source port or range', parsePortRange)
    .option('--dport <port[-port]>', 'destination port or range', parsePortRange)
    .option('--icmp-type <type[/code]>', 'ICMP or ICMPv6 type, optionally its code', parseIcmpType)
    .option('--vlan <id>', '802.1Q VLAN id', integerParser('a VLAN id', 0, 4095))
    .option('--tcp-flags <flags>', 'TCP flags set, "!" for clear: syn,!ack', parseTcpFlags)
    .option('--filter <expression>', 'also match this pcap-filter(7) expression');
}

/** Adds the rate-limit flags (`--rate` mandatory when `required`). */
export function addLimitOptions(command: Command, required: boolean): Command {
  const rate = new Option('--rate <rate>', 'token rate: 1000pps, 10mbit, 64kbps').argParser(
    parseRate,
  );
  return command
    .addOption(required ? rate.makeOptionMandatory() : rate)
    .option(
      '--burst <n>',
      'bucket size, in packets or bytes as the rate',
      integerParser('a burst', 1, 2 ** 32 - 1),
    )
    .option('--per-source', 'one bucket per source address');
}

/** Adds the redirect flags. */
export function addRedirectOptions(command: Command): Command {
  return command
    .addOption(deviceOption('--to <device>', 'redirect: the device to send packets out of'))
    .option('--via <mac>', 'redirect: next-hop MAC (default: from the FIB)', parseMac);
}

/** The RuleDoc the flags describe, without `action`; flags not given stay out. */
export function ruleFromOptions(options: MatchOptions): Omit<RuleDoc, 'action'> {
  const rule: Omit<RuleDoc, 'action'> & Record<string, unknown> = { device: options.dev };
  const copy: [keyof MatchOptions, string][] = [
    ['id', 'id'],
    ['hook', 'hook'],
    ['priority', 'priority'],
    ['src', 'src'],
    ['dst', 'dst'],
    ['srcSet', 'srcSet'],
    ['dstSet', 'dstSet'],
    ['proto', 'proto'],
    ['sport', 'sport'],
    ['dport', 'dport'],
    ['icmpType', 'icmp'],
    ['vlan', 'vlan'],
    ['tcpFlags', 'tcpFlags'],
    ['filter', 'filter'],
    ['rate', 'rate'],
    ['burst', 'burst'],
    ['perSource', 'perSource'],
    ['to', 'to'],
    ['via', 'via'],
  ];
  for (const [option, field] of copy)
    if (options[option] !== undefined) rule[field] = options[option];
  return rule;
}

/** A short text of what a rule matches, for tables: `src 10.0.0.0/8 udp dport 53`. */
export function describeMatch(rule: Partial<RuleDoc>): string {
  const parts: string[] = [];
  if (rule.src) parts.push(`src ${rule.src}`);
  if (rule.srcSet) parts.push(`src @${rule.srcSet}`);
  if (rule.dst) parts.push(`dst ${rule.dst}`);
  if (rule.dstSet) parts.push(`dst @${rule.dstSet}`);
  if (rule.vlan !== undefined) parts.push(`vlan ${rule.vlan}`);
  if (rule.proto !== undefined) parts.push(String(rule.proto));
  if (rule.sport !== undefined) parts.push(`sport ${rule.sport}`);
  if (rule.dport !== undefined) parts.push(`dport ${rule.dport}`);
  if (rule.icmp)
    parts.push(
      `icmp-type ${rule.icmp.type}${rule.icmp.code === undefined ? '' : `/${rule.icmp.code}`}`,
    );
  if (rule.tcpFlags) parts.push(`flags ${rule.tcpFlags}`);
  if (rule.filter) parts.push(`filter "${rule.filter}"`);
  return parts.join(' ') || 'any';
}

/** The action with its parameters: `ratelimit 1000pps`, `redirect veth2`. */
export function describeAction(rule: Partial<RuleDoc>): string {
  const parts: string[] = [rule.action ?? 'ratelimit'];
  if (rule.rate !== undefined) parts.push(String(rule.rate));
  if (rule.burst !== undefined) parts.push(`burst ${rule.burst}`);
  if (rule.perSource) parts.push('per-source');
  if (rule.to) parts.push(`to ${rule.to}`);
  if (rule.via) parts.push(`via ${rule.via}`);
  return parts.join(' ');
}
