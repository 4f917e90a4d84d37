// The reconciler: the one place that changes the kernel. It holds the Dataplane and makes it
// match a desired state (a NormalConfig at a generation), one reconcile at a time.
//
// - An attachment whose device exists now is applied; one whose device (or a redirect target)
//   does not exist is `pending`, not an error, and is applied as soon as the device appears.
// - Devices are looked up by name at every reconcile (ifindexOf: the kernel's answer, not a
//   cache), so a missed notification cannot make us attach to the wrong device.
// - Renames: an attachment follows the configured *name*. If "veth-a" is renamed "veth-b", the
//   pipeline is detached from it and "veth-a@xdp" becomes pending; when a device named "veth-a"
//   exists again (renamed back, or a new one), it is attached anew (counters from zero).
// - Deleted and re-created devices (same name, new ifindex): the old link is defunct (the kernel
//   reports ifindex 0 for it). The attachment stays loaded and pinned, counters included, while
//   the device is away (DataplaneSpec.keep); when it is back, the device event (or the next
//   periodic check) attaches a new link: one syscall, no program load.
// - Drift: check() compares, for every attachment, the device's ifindex now with the ifindex its
//   link reports, and re-attaches what does not match (something detached it behind our back,
//   or its device was re-created). Callers run check() on device events and every second.
// - A set change alone (addPrefixes/removePrefixes with nothing else different) goes through the
//   data plane's incremental calls, touching only those trie entries; anything else is a full,
//   idempotent apply() (unchanged sets and rule sets are skipped by the data plane itself).
import { EventEmitter } from 'node:events';
import { join } from 'node:path';

import type { Logger } from 'pino';

import { ifindexOf } from '../bpf/index.js';
import { attachmentKey, toDataplaneSpec } from './config.js';
import type { AttachmentStatus, ControllerEvent, LbMovePrediction } from './contract.js';
import {
  sameAttachments,
  type AttachmentSpec,
  type Dataplane,
  type DataplaneSpec,
} from './dataplane/dataplane.js';
import type { HookName, NormalConfig } from './document.js';
import type { HealthState } from './lb/health.js';
import { planDecap, planServices } from './lb/lb-config.js';
import { LbPlane, healthKey } from './lb/lb-plane.js';

/** A set change the reconciler may apply incrementally instead of a full apply. */
export interface SetDelta {
  name: string;
  add?: readonly string[];
  remove?: readonly string[];
}

export interface ReconcileResult {
  /** Attachments re-attached because their link no longer held their device. */
  drift: string[];
  /** True when the incremental set path was taken. */
  incremental: boolean;
}

export interface ReconcilerOptions {
  dataplane: Dataplane;
  logger: Logger;
  /** Network namespace (ip netns name) of the devices; default the process's own. */
  netns?: string;
}

interface Desired {
  config: NormalConfig;
  generation: number;
}

/** Makes the data plane hold the desired state; emits 'event' (ControllerEvent). */
export class Reconciler extends EventEmitter {
  readonly dataplane: Dataplane;
  readonly #logger: Logger;
  readonly #netns: string | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #desired: Desired | null = null;
  #appliedGeneration = 0;
  /** The attachment part of the last successful apply, to tell when a set change may go alone. */
  /** The attachments the last reconcile applied in full, or null. */
  #appliedAttachments: readonly AttachmentSpec[] | null = null;
  /** Keys applied by the last successful apply. */
  #goodKeys = new Set<string>();
  /** Device name → ifindex as seen by the last reconcile, for the devices the config names. */
  #seen = new Map<string, number>();
  readonly #status = new Map<string, AttachmentStatus>();
  /** Per attachment, the error of its last failed attach (tolerant apply). */
  readonly #errors = new Map<string, string>();
  /** The load balancer, run by the pipelines of the attachments (SL_PROG_LB). */
  readonly lb: LbPlane;
  /** Backend health as the checks last said, by healthKey(service, backend). */
  readonly #health = new Map<string, HealthState>();
  /** The services and settings objects the load balancer last applied. */
  #lbApplied: { services: unknown; lb: unknown; devices: string } | null = null;
  #removalTimer: NodeJS.Timeout | undefined;

  constructor(options: ReconcilerOptions) {
    super();
    this.dataplane = options.dataplane;
    this.#logger = options.logger;
    this.#netns = options.netns;
    this.lb = new LbPlane(join(options.dataplane.dir, 'lb'), options.logger);
  }

  /** Stops the drain timer and releases the load balancer's fds (its pins stay). */
  close(): void {
    clearTimeout(this.#removalTimer);
    this.lb.close();
  }

  /**
   * Records a health check's verdict on a backend and, when it changes what the backend may
   * take, applies the load balancer again (the table without it, or with it back).
   */
  setHealth(service: string, backend: string, state: HealthState): Promise<void> {
    return this.#serial(async () => {
      const key = healthKey(service, backend);
      if (this.#health.get(key) === state) return;
      this.#health.set(key, state);
      const desired = this.#desired;
      if (desired) await this.#applyLb(desired.config, true);
    });
  }

  /** What applying `config` would move in the services `keys` (see LbPlane.predict). */
  predictLb(config: NormalConfig, keys: readonly string[]): Promise<LbMovePrediction[]> {
    return this.#serial(() => this.lb.predict(planServices(config), keys, this.#health));
  }

  /** The load balancer's counters and flows now; null when none is loaded. */
  readLb(): ReturnType<LbPlane['read']> {
    return this.#serial(() => this.lb.read());
  }

  /** Applies the services of `config` (when they changed, or `force`) and hooks the balancer in. */
  async #applyLb(
    config: NormalConfig,
    force: boolean,
    devices: ReadonlyMap<string, number> = this.#seen,
  ): Promise<void> {
    const services = config.services ?? null;
    // Services restricted to devices follow those devices' ifindexes (a re-created device),
    // as #devices resolved them for this reconcile.
    const ifindexOf = (d: string): number => devices.get(d) ?? 0;
    const restricted = (services ?? []).flatMap((s) => s.devices ?? []);
    const devicesSig = restricted.map((d) => `${d}=${ifindexOf(d)}`).join(',');
    if (
      force ||
      !this.#lbApplied ||
      this.#lbApplied.services !== services ||
      this.#lbApplied.lb !== config.lb ||
      this.#lbApplied.devices !== devicesSig
    ) {
      await this.lb.apply(planServices(config), config.lb, this.#health, ifindexOf);
      this.#lbApplied = { services, lb: config.lb, devices: devicesSig };
      this.#scheduleRemoval();
    }
    const decapping = new Set<string>();
    for (const a of config.attachments)
      if (a.decap !== undefined && (a.hook ?? 'xdp') === 'xdp') decapping.add(a.device);
    this.lb.applyDecap(planDecap(config));
    const { xdp, tcIngress } = this.lb.programs;
    const decap = this.lb.decapProgram;
    for (const [key, att] of this.dataplane.attachments) {
      const at = key.lastIndexOf('@');
      const hook = key.slice(at + 1);
      // A backend's device decapsulates; the balancer runs on the others.
      const xdpProgram = decapping.has(key.slice(0, at)) ? decap : xdp;
      att.setLoadBalancer(hook === 'xdp' ? xdpProgram : hook === 'tc-ingress' ? tcIngress : null);
    }
  }

  /** Wakes up when the next removed backend has drained, to remove it. */
  #scheduleRemoval(): void {
    clearTimeout(this.#removalTimer);
    const at = this.lb.nextRemoval();
    if (at === null) return;
    this.#removalTimer = setTimeout(
      () =>
        void this.#serial(async () => {
          const gone = await this.lb.expire(Date.now());
          if (gone.length > 0) this.#logger.info({ backends: gone }, 'drained backends removed');
          this.#scheduleRemoval();
        }).catch((error: unknown) =>
          this.#logger.error({ err: error }, 'removing drained backends failed'),
        ),
      Math.max(0, at - Date.now()) + 5,
    );
    this.#removalTimer.unref();
  }

  get appliedGeneration(): number {
    return this.#appliedGeneration;
  }

  /** Per configured attachment, where it stands. */
  status(): AttachmentStatus[] {
    return [...this.#status.values()].map((s) => ({ ...s }));
  }

  /**
   * Makes the kernel hold `config` as generation `generation`. Throws the data plane's error when
   * the state cannot be applied (the kernel keeps what it held: apply() validates first and
   * flips each rule set atomically); attachments waiting for a device are not an error.
   */
  reconcile(config: NormalConfig, generation: number, delta?: SetDelta): Promise<ReconcileResult> {
    return this.#serial(async () => {
      this.#desired = { config, generation };
      return this.#reconcile(config, generation, delta, false);
    });
  }

  /**
   * Re-checks the desired state against the devices and links now; reconciles (tolerantly: one
   * attachment that cannot attach does not hold back the others) when anything differs.
   * Resolves with the drift repaired; never throws (failures are logged and reported as events).
   */
  check(reason: string): Promise<string[]> {
    return this.#serial(async () => {
      const desired = this.#desired;
      if (!desired) return [];
      if (!this.#differs(desired.config)) return [];
      try {
        const { drift } = await this.#reconcile(
          desired.config,
          desired.generation,
          undefined,
          true,
        );
        if (drift.length > 0) this.#logger.warn({ drift, reason }, 'drift repaired');
        return drift;
      } catch (error: unknown) {
        this.#logger.error({ err: error, reason }, 'reconcile failed');
        this.#emit({
          type: 'reconcile',
          generation: desired.generation,
          ok: false,
          error: (error as Error).message,
        });
        return [];
      }
    });
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #emit(event: ControllerEvent): void {
    this.emit('event', event);
  }

  #ifindex(device: string): number {
    try {
      return ifindexOf(device, this.#netns);
    } catch {
      return 0;
    }
  }

  /** Every device the config names (attachments and redirect targets) that exists, by ifindex. */
  #devices(config: NormalConfig): Map<string, number> {
    const names = new Set<string>();
    for (const att of config.attachments) names.add(att.device);
    for (const rule of config.rules) if (rule.to) names.add(rule.to);
    for (const service of config.services ?? [])
      for (const d of service.devices ?? []) names.add(d);
    const found = new Map<string, number>();
    for (const name of names) {
      const ifindex = this.#ifindex(name);
      if (ifindex > 0) found.set(name, ifindex);
    }
    return found;
  }

  /** True when a device came, went or changed ifindex, or a link no longer holds its device. */
  #differs(config: NormalConfig): boolean {
    const now = this.#devices(config);
    if (now.size !== this.#seen.size) return true;
    for (const [name, ifindex] of now) if (this.#seen.get(name) !== ifindex) return true;
    for (const key of this.#goodKeys) {
      const att = this.dataplane.attachments.get(key);
      const device = key.slice(0, key.lastIndexOf('@'));
      if (!att || this.#linkIfindex(key) !== now.get(device)) return true;
    }
    return false;
  }

  #linkIfindex(key: string): number {
    try {
      return this.dataplane.attachments.get(key)?.linkInfo()?.ifindex ?? 0;
    } catch {
      return 0;
    }
  }

  async #reconcile(
    config: NormalConfig,
    generation: number,
    delta: SetDelta | undefined,
    tolerant: boolean,
  ): Promise<ReconcileResult> {
    const devices = this.#devices(config);
    const { pending, ...dataplaneSpec } = toDataplaneSpec(config, new Set(devices.keys()));
    // Pending attachments whose link lost its device stay loaded, pinned and counted: when the
    // device is back, attaching is one syscall. One whose link still holds a device (renamed
    // away) is removed, so the pipeline does not follow the device under its new name.
    const keep = pending
      .filter((p) => this.dataplane.attachments.has(p.key) && this.#linkIfindex(p.key) === 0)
      .map((p) => p.key);
    const spec: DataplaneSpec = { ...dataplaneSpec, keep, devices };
    let incremental = false;
    const failed = new Map<string, string>();
    if (
      delta &&
      this.#appliedAttachments !== null &&
      sameAttachments(this.#appliedAttachments, spec.attachments ?? []) &&
      this.dataplane.sets.bits.has(delta.name)
    ) {
      if (delta.add?.length) await this.dataplane.addPrefixes(delta.name, delta.add);
      if (delta.remove?.length) await this.dataplane.removePrefixes(delta.name, delta.remove);
      incremental = true;
    } else if (tolerant) {
      await this.#applyTolerant(spec, failed);
    } else {
      await this.dataplane.apply(spec);
    }
    const drift = this.#repairLinks(spec.attachments ?? [], devices, failed);
    await this.#applyLb(config, false, devices);
    const applied = (spec.attachments ?? []).filter((a) => !failed.has(attachmentKey(a)));
    this.#appliedAttachments = failed.size === 0 ? (spec.attachments ?? []) : null;
    this.#goodKeys = new Set(applied.map(attachmentKey));
    this.#seen = devices;
    this.#appliedGeneration = generation;
    this.#errors.clear();
    for (const [key, error] of failed) this.#errors.set(key, error);
    this.#updateStatus(config, generation, devices, pending);
    this.#emit({
      type: 'reconcile',
      generation,
      ok: failed.size === 0,
      ...(failed.size > 0 ? { error: [...failed.values()].join('; ') } : {}),
      ...(drift.length > 0 ? { drift } : {}),
    });
    return { drift, incremental };
  }

  /**
   * apply(); when it fails, applies the attachments that ran before and then each new one alone,
   * so one device that refuses its program does not keep the others from theirs.
   */
  async #applyTolerant(spec: DataplaneSpec, failed: Map<string, string>): Promise<void> {
    try {
      await this.dataplane.apply(spec);
      return;
    } catch (error: unknown) {
      const all = spec.attachments ?? [];
      const fresh = all.filter((a) => !this.#goodKeys.has(attachmentKey(a)));
      if (fresh.length === 0) throw error;
      const current: AttachmentSpec[] = all.filter((a) => this.#goodKeys.has(attachmentKey(a)));
      await this.dataplane.apply({ ...spec, attachments: current });
      for (const att of fresh) {
        try {
          await this.dataplane.apply({ ...spec, attachments: [...current, att] });
          current.push(att);
        } catch (err: unknown) {
          failed.set(attachmentKey(att), (err as Error).message);
        }
      }
    }
  }

  /** Re-attaches every applied attachment whose link does not hold its device now. */
  #repairLinks(
    attachments: readonly AttachmentSpec[],
    devices: ReadonlyMap<string, number>,
    failed: Map<string, string>,
  ): string[] {
    const drift: string[] = [];
    for (const spec of attachments) {
      const key = attachmentKey(spec);
      if (failed.has(key)) continue;
      const att = this.dataplane.attachments.get(key);
      if (!att) continue;
      const want = devices.get(spec.device);
      const have = this.#linkIfindex(key);
      if (have === want) continue;
      try {
        att.attach(spec.mode ?? 'native');
        drift.push(
          have === 0
            ? `${key}: its link no longer held the device; attached again`
            : `${key}: its link held ifindex ${have}, not ${want}; attached again`,
        );
      } catch (error: unknown) {
        failed.set(key, (error as Error).message);
      }
    }
    return drift;
  }

  #updateStatus(
    config: NormalConfig,
    generation: number,
    devices: ReadonlyMap<string, number>,
    pending: readonly { key: string; reason: string }[],
  ): void {
    const pendingBy = new Map(pending.map((p) => [p.key, p.reason]));
    const next = new Map<string, AttachmentStatus>();
    for (const att of config.attachments) {
      const key = attachmentKey(att);
      const hook: HookName = att.hook ?? 'xdp';
      const before = this.#status.get(key);
      const error = this.#errors.get(key) ?? null;
      const waiting = pendingBy.get(key);
      const state: AttachmentStatus['state'] =
        error !== null ? 'error' : waiting !== undefined ? 'pending' : 'attached';
      next.set(key, {
        device: att.device,
        hook,
        state,
        ifindex: devices.get(att.device) ?? null,
        error: error ?? (waiting !== undefined ? waiting : null),
        appliedGeneration: state === 'attached' ? generation : (before?.appliedGeneration ?? null),
      });
      if (before?.state !== state)
        this.#emit({ type: 'attachment', device: att.device, hook, state });
    }
    this.#status.clear();
    for (const [key, s] of next) this.#status.set(key, s);
  }
}
