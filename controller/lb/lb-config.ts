// The load balancer's part of the desired-state document: what config.ts checks of `services` and
// `lb` before anything is persisted (pointers into the document, like every ConfigInvalidError),
// their diff, and the defaults the kernel side applies.
import type { BackendDoc, LbSettingsDoc, NormalConfig, ServiceDoc } from '../document.js';
import { ConfigInvalidError } from '../errors.js';
import { parsePrefix } from '../dataplane/model.js';
import { parseCheckSpec } from './health-spec.js';
import { CheckSpecInvalidError } from './health-errors.js';
import { MAGLEV_DEFAULT_SIZE, MAGLEV_SIZES } from './maglev.js';
import { LB_MAX_BACKENDS, LB_MAX_SERVICES } from './lb-abi.js';
import { backendKey, canonicalAddress, serviceKey } from './service-key.js';

/** Seconds a non-TCP flow lives idle unless the service says. */
export const UDP_TIMEOUT_DEFAULT = 30;
/** Seconds a removed backend keeps its established flows unless the service says. */
export const DRAIN_TIMEOUT_DEFAULT = 30;

/** A service with every default filled in, as the kernel side applies it. */
export interface ServicePlan {
  key: string;
  vip: string;
  port: number;
  proto: 'tcp' | 'udp' | 'sctp';
  mode: 'dsr' | 'ipip' | 'gue' | 'nat';
  hash: '5tuple' | 'src' | 'src-port';
  tableSize: number;
  udpTimeout: number;
  tcpTimeout: number;
  drainTimeout: number;
  /** The devices it is restricted to; null: every XDP attachment. */
  devices: string[] | null;
  backends: BackendPlan[];
}

export interface BackendPlan {
  /** Within the service: "10.1.0.11" or "10.1.0.11:8080". */
  key: string;
  address: string;
  /** 0: the VIP's port. */
  port: number;
  weight: number;
  drain: boolean;
  check: string | undefined;
}

/** The services of `config` with defaults filled in and addresses canonical. */
export function planServices(config: NormalConfig): ServicePlan[] {
  return (config.services ?? []).map(planService);
}

export function planService(s: ServiceDoc): ServicePlan {
  return {
    key: serviceKey(s),
    vip: canonicalAddress(s.vip) ?? s.vip,
    port: s.port,
    proto: s.proto ?? 'tcp',
    mode: s.mode ?? 'dsr',
    hash: s.hash ?? '5tuple',
    tableSize: s.tableSize ?? MAGLEV_DEFAULT_SIZE,
    udpTimeout: s.udpTimeout ?? UDP_TIMEOUT_DEFAULT,
    tcpTimeout: s.tcpTimeout ?? 0,
    drainTimeout: s.drainTimeout ?? DRAIN_TIMEOUT_DEFAULT,
    devices: s.devices ? [...new Set(s.devices)].sort() : null,
    backends: (s.backends ?? []).map(planBackend),
  };
}

function planBackend(b: BackendDoc): BackendPlan {
  return {
    key: backendKey(b),
    address: canonicalAddress(b.address) ?? b.address,
    port: b.port ?? 0,
    weight: b.weight ?? 1,
    drain: b.drain ?? false,
    check: b.check,
  };
}

function familyOf(address: string): 4 | 6 {
  return address.includes(':') ? 6 : 4;
}

function fail(pointer: string, message: string, cause?: unknown): ConfigInvalidError {
  return new ConfigInvalidError(`${pointer}: ${message}`, { pointer, cause });
}

/**
 * Checks `services` and `lb` of a document: addresses, unique services and backends, table
 * sizes, families the forwarding mode can carry, health-check specs. Throws ConfigInvalidError.
 */
export function validateServices(config: NormalConfig): void {
  const services = config.services ?? [];
  if (services.length > LB_MAX_SERVICES)
    throw fail(
      '/services',
      `${services.length} services, more than the ${LB_MAX_SERVICES} sluice holds`,
    );
  const seen = new Map<string, number>();
  let backendCount = 0;
  /** NAT backends' address:port → the service that has it: replies are told apart by it. */
  const natBackends = new Map<string, string>();
  services.forEach((s, i) => {
    const at = `/services/${i}`;
    const vip = canonicalAddress(s.vip);
    if (vip === null) throw fail(`${at}/vip`, `"${s.vip}" is not an IPv4 or IPv6 address`);
    const key = serviceKey(s);
    const first = seen.get(key);
    if (first !== undefined)
      throw fail(at, `service ${key} is also /services/${first}: one per VIP, port and protocol`);
    seen.set(key, i);
    if (s.tableSize !== undefined && !MAGLEV_SIZES.includes(s.tableSize))
      throw fail(
        `${at}/tableSize`,
        `service ${key}: ${s.tableSize} is not a Maglev table size; use one of ${MAGLEV_SIZES.join(', ')}`,
      );
    const mode = s.mode ?? 'dsr';
    const backends = new Map<string, number>();
    (s.backends ?? []).forEach((b, j) => {
      const bat = `${at}/backends/${j}`;
      const address = canonicalAddress(b.address);
      if (address === null)
        throw fail(
          `${bat}/address`,
          `service ${key}: "${b.address}" is not an IPv4 or IPv6 address`,
        );
      const bkey = backendKey(b);
      const firstB = backends.get(bkey);
      if (firstB !== undefined)
        throw fail(bat, `service ${key}: backend ${bkey} is also ${at}/backends/${firstB}`);
      backends.set(bkey, j);
      if ((mode === 'dsr' || mode === 'nat') && familyOf(address) !== familyOf(vip))
        throw fail(
          `${bat}/address`,
          `service ${key}: ${mode} forwards within one address family, and backend ${address} is not IPv${familyOf(vip)} (ipip and gue can cross families)`,
        );
      if (mode === 'nat') {
        // lb_nat_tc finds a reply's VIP by backend address:port and client address:port: two
        // services sending to the same backend address:port could not be told apart.
        const target = backendKey({ address, port: b.port ?? s.port });
        const other = natBackends.get(target);
        if (other !== undefined && other !== key)
          throw fail(
            `${bat}`,
            `service ${key}: backend ${target} is also a backend of NAT service ${other}; replies could not be told apart (give one of them another port)`,
          );
        natBackends.set(target, key);
      }
      if (b.port !== undefined && mode !== 'nat')
        throw fail(
          `${bat}/port`,
          `service ${key}: a backend port needs mode nat (${mode} keeps the VIP's port)`,
        );
      if (b.check !== undefined) {
        try {
          const spec = parseCheckSpec(b.check);
          if (
            s.port === 0 &&
            b.port === undefined &&
            spec.type !== 'icmp' &&
            spec.port === undefined
          )
            throw fail(
              `${bat}/check`,
              `service ${key}, backend ${bkey}: the service takes every port, so the check must name one ("${spec.type}:8080…")`,
            );
        } catch (error: unknown) {
          if (error instanceof CheckSpecInvalidError)
            throw fail(`${bat}/check`, `service ${key}, backend ${bkey}: ${error.message}`, error);
          throw error;
        }
      }
    });
    backendCount += backends.size;
  });
  if (backendCount > LB_MAX_BACKENDS)
    throw fail(
      '/services',
      `${backendCount} backends, more than the ${LB_MAX_BACKENDS} sluice holds`,
    );
  validateSettings(config.lb);
}

function validateSettings(lb: LbSettingsDoc | undefined): void {
  if (!lb) return;
  const prefix = (field: 'ipipSource4' | 'ipipSource6', family: 4 | 6): void => {
    const text = lb[field];
    if (text === undefined) return;
    let p;
    try {
      p = parsePrefix(text);
    } catch (error: unknown) {
      throw fail(`/lb/${field}`, `"${text}" is not a prefix`, error);
    }
    if (p.family !== family) throw fail(`/lb/${field}`, `"${text}" is not an IPv${family} prefix`);
    if (family === 6 && p.len < 96)
      throw fail(
        `/lb/${field}`,
        `"${text}": at most the last 32 bits of an IPv6 source vary; use a /96 or longer`,
      );
  };
  prefix('ipipSource4', 4);
  prefix('ipipSource6', 6);
}

/** Checks attachment `index`'s `decap` list: the xdp hook only, bare addresses. */
export function validateDecap(
  decap: readonly string[],
  key: string,
  index: number,
  hook: string,
): void {
  const at = `/attachments/${index}/decap`;
  if (hook !== 'xdp') throw fail(at, `attachment "${key}": decap is for the xdp hook only`);
  decap.forEach((address, j) => {
    if (canonicalAddress(address) === null)
      throw fail(`${at}/${j}`, `attachment "${key}": "${address}" is not an IPv4 or IPv6 address`);
  });
}

/**
 * What the decapsulation program must take, from every XDP attachment with `decap`: 'any' when
 * one of them takes any destination, else the addresses; null when no attachment decapsulates.
 */
export function planDecap(config: NormalConfig): 'any' | Set<string> | null {
  let plan: 'any' | Set<string> | null = null;
  for (const att of config.attachments) {
    if (att.decap === undefined || (att.hook ?? 'xdp') !== 'xdp') continue;
    if (att.decap.length === 0) return 'any';
    plan ??= new Set();
    for (const a of att.decap) plan.add(canonicalAddress(a) ?? a);
  }
  return plan;
}

/**
 * Services added, removed and changed from `before` to `after`, by key, with "lb" among the
 * changed when the balancer-wide settings changed; undefined when nothing did.
 */
export function diffServices(
  before: NormalConfig,
  after: NormalConfig,
): { added: string[]; removed: string[]; changed: string[] } | undefined {
  const a = before.services ?? [];
  const b = after.services ?? [];
  if (a === b && before.lb === after.lb) return undefined;
  const old = new Map(a.map((s) => [serviceKey(s), s]));
  const now = new Map(b.map((s) => [serviceKey(s), s]));
  const diff = { added: [] as string[], removed: [] as string[], changed: [] as string[] };
  for (const [key, s] of now) {
    const was = old.get(key);
    if (!was) diff.added.push(key);
    else if (was !== s && JSON.stringify(planService(was)) !== JSON.stringify(planService(s)))
      diff.changed.push(key);
  }
  for (const key of old.keys()) if (!now.has(key)) diff.removed.push(key);
  // The balancer-wide settings show as a change of their own, named "lb".
  if (JSON.stringify(before.lb ?? {}) !== JSON.stringify(after.lb ?? {})) diff.changed.push('lb');
  return diff.added.length + diff.removed.length + diff.changed.length > 0 ? diff : undefined;
}
