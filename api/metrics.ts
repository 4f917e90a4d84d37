// Prometheus metrics of one controller: kernel counters mirrored at scrape time, reconcile errors,
// the desired generation, and the API's request durations. One registry, shared by every server.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

import type { Controller, ControllerEvent, Stats } from '../controller/contract.js';

/** The registry and what servers record into it. */
export interface Metrics {
  readonly registry: Registry;
  /** `sluice_api_request_duration_seconds{method,route,status}`. */
  readonly requestDuration: Histogram<'method' | 'route' | 'status'>;
  /** Stops listening to the controller's events. */
  close(): void;
}

/** How long one stats() read serves the counters of a scrape (each counter collects in turn). */
const SNAPSHOT_MS = 250;

/**
 * Creates the metrics of `controller` in a registry of their own. Counters mirror the kernel's
 * totals: each one's collect() resets and re-adds the sums controller.stats() reads, so a scrape
 * sees the kernel's numbers (a pipeline replaced from zero shows as a counter reset). Labels name
 * the device, hook, action, rule or event; never a CPU or an address.
 */
export function createMetrics(controller: Controller): Metrics {
  const registry = new Registry();
  let snapshot: { at: number; stats: Stats } | undefined;
  const stats = (): Stats => {
    const now = Date.now();
    if (snapshot === undefined || now - snapshot.at > SNAPSHOT_MS) {
      try {
        snapshot = { at: now, stats: controller.stats() };
      } catch {
        // not ready, or the kernel read failed: export nothing rather than fail the scrape
        snapshot = { at: now, stats: { devices: [] } };
      }
    }
    return snapshot.stats;
  };

  type Labels<K extends string> = Record<K, string>;
  function mirrored<K extends string>(
    name: string,
    help: string,
    labelNames: K[],
    each: (stats: Stats, add: (labels: Labels<K>, value: number) => void) => void,
  ): void {
    new Counter<K>({
      name,
      help,
      labelNames,
      registers: [registry],
      collect(this: Counter<K>) {
        this.reset();
        each(stats(), (labels, value) => this.inc(labels, value));
      },
    });
  }

  // Each kernel count and the labels it goes by: a family per field of one Stats record.
  const perAction =
    (field: 'packets' | 'bytes') =>
    (s: Stats, add: (labels: Labels<'device' | 'hook' | 'action'>, value: number) => void) => {
      for (const d of s.devices)
        for (const [action, c] of Object.entries(d.actions))
          add({ device: d.device, hook: d.hook, action }, c[field]);
    };
  const perRule =
    (field: 'packets' | 'bytes') =>
    (s: Stats, add: (labels: Labels<'device' | 'hook' | 'rule'>, value: number) => void) => {
      for (const d of s.devices)
        for (const r of d.rules) add({ device: d.device, hook: d.hook, rule: r.id }, r[field]);
    };
  const perLimiter =
    (field: 'passed' | 'dropped') =>
    (s: Stats, add: (labels: Labels<'device' | 'hook' | 'rule'>, value: number) => void) => {
      for (const d of s.devices)
        for (const l of d.limiters) add({ device: d.device, hook: d.hook, rule: l.id }, l[field]);
    };
  const ACTION = ['device', 'hook', 'action'] as ('device' | 'hook' | 'action')[];
  const RULE = ['device', 'hook', 'rule'] as ('device' | 'hook' | 'rule')[];
  mirrored('sluice_packets_total', 'packets by final verdict', ACTION, perAction('packets'));
  mirrored('sluice_bytes_total', 'bytes by final verdict', ACTION, perAction('bytes'));
  mirrored('sluice_rule_matches_total', 'packets each rule matched', RULE, perRule('packets'));
  mirrored(
    'sluice_rule_bytes_total',
    'bytes of the packets each rule matched',
    RULE,
    perRule('bytes'),
  );
  mirrored(
    'sluice_limiter_passed_total',
    'packets a rate limit let through',
    RULE,
    perLimiter('passed'),
  );
  mirrored(
    'sluice_limiter_dropped_total',
    'packets a rate limit dropped',
    RULE,
    perLimiter('dropped'),
  );
  mirrored(
    'sluice_malformed_total',
    'packets the pipeline could not parse',
    ['device', 'hook'],
    (s, add) => {
      for (const d of s.devices)
        add(
          { device: d.device, hook: d.hook },
          (d.events.malformed ?? 0) + (d.events.truncated ?? 0),
        );
    },
  );
  mirrored(
    'sluice_events_total',
    'pipeline events (malformed, truncated, default, ratelimited, ...)',
    ['device', 'hook', 'event'],
    (s, add) => {
      for (const d of s.devices)
        for (const [event, n] of Object.entries(d.events))
          add({ device: d.device, hook: d.hook, event }, n);
    },
  );

  const reconcileErrors = new Counter({
    name: 'sluice_reconcile_errors_total',
    help: 'reconciles that failed since the daemon started',
    registers: [registry],
  });
  const onEvent = (event: ControllerEvent): void => {
    if (event.type === 'reconcile' && !event.ok) reconcileErrors.inc();
  };
  controller.events.on('event', onEvent);

  new Gauge({
    name: 'sluice_config_generation',
    help: 'desired-state generation',
    registers: [registry],
    collect(this: Gauge) {
      this.set(controller.config().generation);
    },
  });
  new Gauge({
    name: 'sluice_applied_generation',
    help: 'desired-state generation last applied to the kernel',
    registers: [registry],
    collect(this: Gauge) {
      try {
        this.set(controller.status().appliedGeneration);
      } catch {
        // not ready: leave the last value
      }
    },
  });
  new Gauge({
    name: 'sluice_ready',
    help: '1 once the controller has adopted and reconciled',
    registers: [registry],
    collect(this: Gauge) {
      this.set(controller.ready ? 1 : 0);
    },
  });

  const requestDuration = new Histogram({
    name: 'sluice_api_request_duration_seconds',
    help: 'REST API request durations',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    registers: [registry],
  });

  return {
    registry,
    requestDuration,
    close: () => {
      controller.events.off('event', onEvent);
    },
  };
}
