// Prometheus metrics of one controller: kernel counters mirrored at scrape time (the pipeline's and
// the load balancer's), reconcile errors, the desired generation, and the API's request durations.
// One registry, shared by every server.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

import type {
  Controller,
  ControllerEvent,
  LbBackendView,
  LbServiceView,
  LbStats,
  Stats,
} from '../controller/contract.js';

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
 * totals: each one's collect() resets and re-adds the sums controller.stats() (and lbStats())
 * read, so a scrape sees the kernel's numbers (a pipeline replaced from zero shows as a counter
 * reset). Labels name the device, hook, action, rule or event, and the configured service and
 * backend keys of the load balancer; never a CPU or an address seen in traffic.
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

  // lbStats() is asynchronous: one read (the promise) serves every LB family of a scrape.
  let lbSnapshot: { at: number; stats: Promise<LbStats | null> } | undefined;
  const lbStats = (): Promise<LbStats | null> => {
    const now = Date.now();
    if (lbSnapshot === undefined || now - lbSnapshot.at > SNAPSHOT_MS)
      lbSnapshot = {
        at: now,
        // not ready, or the kernel read failed: export nothing rather than fail the scrape
        stats: controller.lbStats().catch(() => null),
      };
    return lbSnapshot.stats;
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

  // The load balancer: per service and backend, and the balancer's own events.
  type Service = 'service';
  type Backend = 'service' | 'backend';
  function lbMirrored<K extends string>(
    kind: 'counter' | 'gauge',
    name: string,
    help: string,
    labelNames: K[],
    each: (stats: LbStats, add: (labels: Labels<K>, value: number) => void) => void,
  ): void {
    const collect = async (metric: { reset(): void }, add: (l: Labels<K>, v: number) => void) => {
      const lb = await lbStats();
      metric.reset();
      if (lb !== null) each(lb, add);
    };
    if (kind === 'counter')
      new Counter<K>({
        name,
        help,
        labelNames,
        registers: [registry],
        async collect(this: Counter<K>) {
          await collect(this, (labels, value) => this.inc(labels, value));
        },
      });
    else
      new Gauge<K>({
        name,
        help,
        labelNames,
        registers: [registry],
        async collect(this: Gauge<K>) {
          await collect(this, (labels, value) => this.set(labels, value));
        },
      });
  }
  const perService =
    (field: 'packets' | 'bytes' | 'newFlows' | 'activeFlows') =>
    (s: LbStats, add: (labels: Labels<Service>, value: number) => void) => {
      for (const svc of s.services) add({ service: svc.key }, svc[field]);
    };
  const perBackend =
    (value: (b: LbBackendView) => number | undefined) =>
    (s: LbStats, add: (labels: Labels<Backend>, value: number) => void) => {
      for (const svc of s.services)
        for (const b of svc.backends) {
          const v = value(b);
          if (v !== undefined) add({ service: svc.key, backend: backendLabel(svc, b) }, v);
        }
    };
  const SERVICE = ['service'] as Service[];
  const BACKEND = ['service', 'backend'] as Backend[];
  lbMirrored(
    'counter',
    'sluice_lb_service_packets_total',
    'packets balanced per service',
    SERVICE,
    perService('packets'),
  );
  lbMirrored(
    'counter',
    'sluice_lb_service_bytes_total',
    'bytes balanced per service',
    SERVICE,
    perService('bytes'),
  );
  lbMirrored(
    'counter',
    'sluice_lb_service_new_flows_total',
    'flows a service began',
    SERVICE,
    perService('newFlows'),
  );
  lbMirrored(
    'gauge',
    'sluice_lb_service_active_flows',
    'flow-table entries of a service now',
    SERVICE,
    perService('activeFlows'),
  );
  lbMirrored(
    'counter',
    'sluice_lb_backend_packets_total',
    'packets sent to each backend',
    BACKEND,
    perBackend((b) => b.packets),
  );
  lbMirrored(
    'counter',
    'sluice_lb_backend_bytes_total',
    'bytes sent to each backend',
    BACKEND,
    perBackend((b) => b.bytes),
  );
  lbMirrored(
    'counter',
    'sluice_lb_backend_new_flows_total',
    'flows each backend was given',
    BACKEND,
    perBackend((b) => b.newFlows),
  );
  lbMirrored(
    'gauge',
    'sluice_lb_backend_active_flows',
    'flow-table entries pinned to each backend now',
    BACKEND,
    perBackend((b) => b.activeFlows),
  );
  lbMirrored(
    'gauge',
    'sluice_lb_backend_up',
    'health check verdict: 1 passing, 0 failing; absent for a backend without a check or a verdict yet',
    BACKEND,
    perBackend((b) => (b.health === 'up' ? 1 : b.health === 'down' ? 0 : undefined)),
  );
  lbMirrored(
    'gauge',
    'sluice_lb_backend_weight',
    'configured weight of each backend (a draining one keeps it but takes no new flows)',
    BACKEND,
    perBackend((b) => b.weight),
  );
  lbMirrored(
    'counter',
    'sluice_lb_events_total',
    'load-balancer events (flowHit, flowMiss, nonSynMiss, insertCap, noBackend, fibFail, ...)',
    ['event'],
    (s, add) => {
      for (const [event, n] of Object.entries(s.events)) add({ event }, n);
    },
  );
  lbMirrored(
    'counter',
    'sluice_lb_fib_failures_total',
    'bpf_fib_lookup failures of the load balancer, by reason',
    ['reason'],
    (s, add) => {
      for (const [reason, n] of Object.entries(s.fibFailures)) add({ reason }, n);
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

/** A backend as its label: the address, with ":PORT" ("[v6]:PORT") when it has a port of its own. */
function backendLabel(service: LbServiceView, backend: LbBackendView): string {
  if (backend.port === service.port) return backend.address;
  return backend.address.includes(':')
    ? `[${backend.address}]:${backend.port}`
    : `${backend.address}:${backend.port}`;
}
