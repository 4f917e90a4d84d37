// The load balancer's health checker, run by the daemon: probes a changing set of backends (see
// health-probe.ts for the probes, health-spec.ts for the checks) and reports each change of a
// backend's state. No kernel objects: it opens sockets, and runs ping, in the daemon's own
// network namespace.
//
// State, per target:
// - A new target starts 'unknown', which is not 'up': the load balancer should send it no new
//   flows until it is.
// - A target becomes 'up' after `rise` consecutive successes and 'down' after `fall` consecutive
//   failures. One rule for every state: a success ends a run of failures and a failure ends a
//   run of successes, so from 'unknown' whichever run completes first decides.
// - 'transition' is emitted on every change of state, { key, from, to, reason, at }, `reason`
//   being the message of the probe that completed the run ("connect ECONNREFUSED
//   10.1.0.11:80", "http status 503, expected 200-399", "timeout after 1000 ms"); 'probe' is
//   emitted for every probe, before the transition it causes.
//
// Schedule, per target:
// - The first probe starts at a random point of the first interval, so a thousand targets added
//   at once do not fire together; then one starts every interval on a fixed grid (not an
//   interval after the previous one ended).
// - A probe is over within its timeout (the probe closes its socket, kills ping), and the
//   timeout never exceeds the interval. Should the next tick come while a probe is still
//   closing, the next probe starts as soon as that one is over: never two in flight per target.
//   Ticks missed while the event loop was blocked are dropped, not made up.
// - Hence the load balancer's contract: a backend whose server stops is marked down within
//   fall × interval + timeout (plus event-loop latency). The probe that starts after the stop
//   does so within an interval; the fall-th failing one starts (fall - 1) intervals later and
//   is over within the timeout.
// - Timers are unref'd: the checker does not keep the process alive by itself.
//
// set() replaces the whole set. A target is the same when its key, address and port are:
// - same check too: it keeps its state, counters and schedule;
// - another check: it keeps its state (the backend did not change), its counters restart and
//   the new check is scheduled afresh (its probe in flight, if any, is dropped);
// - same key with another address or port: a new backend. It starts over as 'unknown', and a
//   transition to 'unknown' ("address changed") is emitted, before set() returns, if it was not
//   'unknown' already.
// Targets left out are dropped silently (no event): their probe is cancelled, state(key) is
// undefined.
import { EventEmitter } from 'node:events';
import net from 'node:net';

import type { Logger } from 'pino';

import { HealthTargetInvalidError } from './health-errors.js';
import { runProbe, type ProbeResult } from './health-probe.js';
import { formatCheckSpec, type CheckSpec } from './health-spec.js';

/** Where a target stands. 'unknown' until a run of `rise` successes or `fall` failures. */
export type HealthState = 'unknown' | 'up' | 'down';

/** A backend to check: `port` is the backend's (the service's) port, used when the check has none. */
export interface HealthTarget {
  /** Names the target in events and lookups; unique within a set(). */
  key: string;
  /** An IPv4 or IPv6 address. */
  address: string;
  port: number;
  spec: CheckSpec;
}

/** A change of a target's state. */
export interface HealthTransition {
  key: string;
  from: HealthState;
  to: HealthState;
  /** The message of the probe that decided ("http status 503, expected 200-399"). */
  reason: string;
  /** Date.now() when it changed. */
  at: number;
}

/** One probe's outcome. */
export interface HealthProbe {
  key: string;
  ok: boolean;
  reason: string;
  /** How long the probe took, start to closed socket, in milliseconds. */
  ms: number;
  /** Date.now() when it was over. */
  at: number;
}

/** Where a target stands, with what led there. */
export interface HealthStatus {
  key: string;
  address: string;
  port: number;
  /** The check, in its text form. */
  check: string;
  state: HealthState;
  /** Date.now() of the last change of state, or of when the target was added. */
  since: number;
  /** The last probe, once there was one. */
  last?: HealthProbe;
}

/** The events of a HealthChecker. */
export type HealthCheckerEvents = {
  transition: [HealthTransition];
  probe: [HealthProbe];
};

export interface HealthCheckerOptions {
  /** Transitions are logged here (to 'down' as warnings, others as info). */
  logger?: Logger;
  /** The ping binary for icmp checks; default "ping" (looked up in PATH). */
  ping?: string;
}

interface Entry {
  target: HealthTarget;
  /** The check's identity (checkKeyOf), compared by set(). */
  checkKey: string;
  state: HealthState;
  since: number;
  successes: number;
  failures: number;
  last?: HealthProbe;
  timer?: NodeJS.Timeout;
  /** performance.now() of the next tick. */
  nextAt: number;
  /** The probe in flight; its result is dropped once this no longer points at it. */
  probe?: AbortController;
  /** A tick came while a probe was in flight: probe again as soon as it is over. */
  due: boolean;
}

/**
 * Runs health checks for a changing set of targets and emits 'transition' (HealthTransition) on
 * every change of state and 'probe' (HealthProbe) on every probe. See the file header for the
 * state machine and the schedule.
 */
export class HealthChecker extends EventEmitter<HealthCheckerEvents> {
  #entries = new Map<string, Entry>();
  /** Probes not yet over, dropped ones included, for close() to wait on. */
  readonly #running = new Set<Promise<void>>();
  readonly #logger: Logger | undefined;
  readonly #ping: string | undefined;
  #closed = false;

  constructor(options: HealthCheckerOptions = {}) {
    super();
    this.#logger = options.logger;
    this.#ping = options.ping;
  }

  /**
   * Replaces the set of targets (see the file header for what is kept). Throws
   * HealthTargetInvalidError, changing nothing, when a key is given twice, an address is not an
   * IP address, or a port is not from 1 to 65535; throws Error after close().
   */
  set(targets: readonly HealthTarget[]): void {
    if (this.#closed) throw new Error('the health checker is closed');
    const keys = new Set<string>();
    for (const t of targets) validateTarget(t, keys);

    const next = new Map<string, Entry>();
    const changed: HealthTransition[] = [];
    const now = Date.now();
    for (const t of targets) {
      const old = this.#entries.get(t.key);
      const checkKey = checkKeyOf(t.spec);
      if (old && old.target.address === t.address && old.target.port === t.port) {
        old.target = { ...t };
        if (old.checkKey !== checkKey) {
          this.#stop(old);
          old.checkKey = checkKey;
          old.successes = 0;
          old.failures = 0;
          this.#start(old);
        }
        next.set(t.key, old);
        continue;
      }
      if (old) {
        this.#stop(old);
        if (old.state !== 'unknown') {
          changed.push({
            key: t.key,
            from: old.state,
            to: 'unknown',
            reason: 'address changed',
            at: now,
          });
        }
      }
      const entry: Entry = {
        target: { ...t },
        checkKey,
        state: 'unknown',
        since: now,
        successes: 0,
        failures: 0,
        nextAt: 0,
        due: false,
      };
      this.#start(entry);
      next.set(t.key, entry);
    }
    for (const [key, old] of this.#entries) if (!next.has(key)) this.#stop(old);
    this.#entries = next;
    for (const transition of changed) this.#emitTransition(transition);
  }

  /** The state of a target; undefined when there is no target with that key. */
  state(key: string): HealthState | undefined {
    return this.#entries.get(key)?.state;
  }

  /** Every target's state, by key. */
  states(): Map<string, HealthState> {
    return new Map([...this.#entries].map(([key, e]) => [key, e.state]));
  }

  /** Every target's state with its address, check and last probe, sorted by key. */
  status(): HealthStatus[] {
    return [...this.#entries.values()]
      .map((e) => ({
        key: e.target.key,
        address: e.target.address,
        port: e.target.port,
        check: formatCheckSpec(e.target.spec),
        state: e.state,
        since: e.since,
        ...(e.last ? { last: { ...e.last } } : {}),
      }))
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /**
   * Stops every timer and cancels every probe at once; resolves when the probes' sockets are
   * closed and ping processes gone. No event is emitted after close() is called. Idempotent.
   */
  async close(): Promise<void> {
    this.#closed = true;
    for (const entry of this.#entries.values()) this.#stop(entry);
    this.#entries.clear();
    await Promise.all([...this.#running]);
  }

  #start(entry: Entry): void {
    const interval = entry.target.spec.interval;
    const first = Math.random() * interval;
    entry.nextAt = performance.now() + first;
    entry.timer = setTimeout(() => this.#tick(entry), first);
    entry.timer.unref();
  }

  #stop(entry: Entry): void {
    clearTimeout(entry.timer);
    entry.timer = undefined;
    entry.due = false;
    const probe = entry.probe;
    entry.probe = undefined;
    probe?.abort();
  }

  #tick(entry: Entry): void {
    const interval = entry.target.spec.interval;
    const now = performance.now();
    entry.nextAt += interval;
    if (entry.nextAt <= now) entry.nextAt = now + interval;
    entry.timer = setTimeout(() => this.#tick(entry), entry.nextAt - now);
    entry.timer.unref();
    if (entry.probe) entry.due = true;
    else this.#probe(entry);
  }

  #probe(entry: Entry): void {
    const controller = new AbortController();
    entry.probe = controller;
    const { address, port, spec } = entry.target;
    const checkPort = spec.type === 'icmp' ? undefined : spec.port;
    const target = { address, port: checkPort ?? port, spec };
    const started = performance.now();
    const run = runProbe(target, controller.signal, { ping: this.#ping }).then((result) => {
      this.#running.delete(run);
      if (entry.probe !== controller || this.#closed) return;
      entry.probe = undefined;
      try {
        this.#record(entry, result, performance.now() - started);
      } catch (error: unknown) {
        // A listener threw: surface it as EventEmitter would, not as an unhandled rejection.
        process.nextTick(() => {
          throw error;
        });
      }
      if (entry.due) {
        entry.due = false;
        this.#probe(entry);
      }
    });
    this.#running.add(run);
  }

  #record(entry: Entry, result: ProbeResult, ms: number): void {
    const key = entry.target.key;
    const at = Date.now();
    const probe: HealthProbe = {
      key,
      ok: result.ok,
      reason: result.reason,
      ms: Math.round(ms),
      at,
    };
    entry.last = probe;
    let to: HealthState | undefined;
    if (result.ok) {
      entry.successes += 1;
      entry.failures = 0;
      if (entry.state !== 'up' && entry.successes >= entry.target.spec.rise) to = 'up';
    } else {
      entry.failures += 1;
      entry.successes = 0;
      if (entry.state !== 'down' && entry.failures >= entry.target.spec.fall) to = 'down';
    }
    const from = entry.state;
    if (to !== undefined) {
      entry.state = to;
      entry.since = at;
    }
    this.emit('probe', probe);
    if (to !== undefined) this.#emitTransition({ key, from, to, reason: result.reason, at });
  }

  #emitTransition(transition: HealthTransition): void {
    const { key, from, to, reason } = transition;
    if (to === 'down') this.#logger?.warn({ key, from, to, reason }, 'backend down');
    else this.#logger?.info({ key, from, to, reason }, `backend ${to}`);
    this.emit('transition', transition);
  }
}

function validateTarget(t: HealthTarget, keys: Set<string>): void {
  const fail = (why: string): HealthTargetInvalidError =>
    new HealthTargetInvalidError(`health check target "${t.key}": ${why}`, { key: t.key });
  if (keys.has(t.key)) throw fail('the key is given twice');
  keys.add(t.key);
  if (net.isIP(t.address) === 0) {
    throw fail(`the address must be an IP address, not ${JSON.stringify(t.address)}`);
  }
  const needsPort = t.spec.type !== 'icmp' && t.spec.port === undefined;
  if (needsPort && !(Number.isInteger(t.port) && t.port >= 1 && t.port <= 65535)) {
    throw fail(`the port must be a number from 1 to 65535, not ${JSON.stringify(t.port)}`);
  }
}

/** Identifies a check: every field, in a fixed order. */
function checkKeyOf(spec: CheckSpec): string {
  return JSON.stringify([formatCheckSpec(spec), spec.interval, spec.timeout, spec.rise, spec.fall]);
}
