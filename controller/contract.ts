// What the API (and through it the CLI) may ask of the controller: the one interface api/ codes
// against. controller/controller.ts implements it; every change goes through the reconciler.
import type { EventEmitter } from 'node:events';

import type { AttachmentCounters } from './dataplane/counters.js';
import type {
  AttachmentDoc,
  BackendDoc,
  ConfigDoc,
  HookName,
  NormalConfig,
  RuleDoc,
  ServiceDoc,
} from './document.js';

/** What a change did (or, in a dry run, would do), object by object. */
export interface ConfigDiff {
  attachments: { added: string[]; removed: string[]; changed: string[] };
  /** Set names; `changed` counts prefixes added and removed. */
  sets: {
    added: string[];
    removed: string[];
    changed: { name: string; added: number; removed: number }[];
  };
  /** Rule ids. */
  rules: { added: string[]; removed: string[]; changed: string[] };
  /** Service keys ("10.0.0.100:80/tcp", "[2001:db8::1]:443/tcp"); present when services changed. */
  services?: { added: string[]; removed: string[]; changed: string[] };
}

/**
 * What a change to a service's backends moves, found before it is applied: the share of the hash
 * space (Maglev table slots) that now goes to another backend, and how many live flow-table
 * entries would now hash elsewhere (they stay where they are only because the flow table keeps them).
 */
export interface LbMovePrediction {
  service: string;
  /** 0 .. 1: table slots whose backend changes. */
  movedShare: number;
  /** Flow-table entries of the service looked at. */
  flows: number;
  /** Of those, entries whose flow would now hash to another backend. */
  flowsMoved: number;
}

/** Every acknowledged change returns this after it is on disk and in the kernel. */
export interface ChangeResult {
  /** Desired-state generation after the change (the ETag of `GET /v1/config`). */
  generation: number;
  diff: ConfigDiff;
  /** False for a dry run. */
  applied: boolean;
  /** Changes to services: what moves, per service whose table changes (dry run or not). */
  lb?: LbMovePrediction[];
}

export interface DeviceInfo {
  name: string;
  ifindex: number;
  up: boolean;
  mac: string | null;
  mtu: number | null;
}

/** Per configured attachment, where it stands in the kernel. */
export interface AttachmentStatus {
  device: string;
  hook: HookName;
  /** attached: running this generation's rules; pending: the device does not exist (yet); error. */
  state: 'attached' | 'pending' | 'error';
  ifindex: number | null;
  error: string | null;
  /** The desired generation last applied to this attachment. */
  appliedGeneration: number | null;
}

export interface ControllerStatus {
  desiredGeneration: number;
  appliedGeneration: number;
  ready: boolean;
  stateDir: string;
  pinDir: string;
  attachments: AttachmentStatus[];
}

/** `GET /v1/stats` and `sluice stats --json`: DESIGN.md's shape, device by device. */
export interface Stats {
  devices: (AttachmentCounters & { name: string })[];
  /** Present when services are configured. */
  lb?: LbStats;
}

/** Per rule of the candidate configuration, what a pcap replay saw. */
export interface ReplayReport {
  packets: number;
  /** Per attachment replayed ("device@hook"). */
  attachments: {
    attachment: string;
    rules: { id: string; packets: number }[];
    verdicts: Record<string, number>;
    /** Packets whose verdict differs from the running configuration's. */
    changed: number;
  }[];
}

/** One backend as `GET /v1/lb/services` and `sluice lb ls` show it. */
export interface LbBackendView {
  address: string;
  /** The port traffic goes to (NAT mode), else the service's. */
  port: number;
  weight: number;
  drain: boolean;
  check: string | null;
  /** unchecked: no check configured; unknown: checked, no verdict yet. */
  health: 'up' | 'down' | 'unknown' | 'unchecked';
  /** active: takes new flows; draining: keeps its flows only (drain, or removed and waiting); down: failed its check. */
  state: 'active' | 'draining' | 'down';
  /** 0 .. 1: the share of the service's Maglev table this backend holds. */
  tableShare: number;
  /** 0 .. 1: this backend's share of the service's packets so far. */
  trafficShare: number;
  packets: number;
  bytes: number;
  newFlows: number;
  /** Flow-table entries pinned to this backend now. */
  activeFlows: number;
}

/** One service as `GET /v1/lb/services` and `sluice lb ls` show it. */
export interface LbServiceView {
  key: string;
  vip: string;
  port: number;
  proto: 'tcp' | 'udp' | 'sctp';
  mode: 'dsr' | 'ipip' | 'gue' | 'nat';
  hash: '5tuple' | 'src' | 'src-port';
  tableSize: number;
  /** The XDP attachments that run it ("veth1@xdp"); empty: configured but running nowhere. */
  devices: string[];
  packets: number;
  bytes: number;
  newFlows: number;
  activeFlows: number;
  backends: LbBackendView[];
}

/** The balancer's own counters, in `GET /v1/stats` (`lb`). */
export interface LbStats {
  /** flowHit, flowMiss, nonSynMiss, insertCap, noBackend, fibFail, tx, redirect, … */
  events: Record<string, number>;
  /** bpf_fib_lookup failures by reason. */
  fibFailures: Record<string, number>;
  services: LbServiceView[];
  /** The decapsulation program's counters (decapped, notLocal, malformed, …), when it runs. */
  decap?: Record<string, number>;
}

/** Something worth telling `/v1/events` subscribers. */
export type ControllerEvent =
  | { type: 'reconcile'; generation: number; ok: boolean; error?: string; drift?: string[] }
  | {
      type: 'device';
      action: 'added' | 'removed' | 'renamed' | 'changed';
      name: string;
      ifindex: number;
      oldName?: string;
    }
  | { type: 'attachment'; device: string; hook: HookName; state: AttachmentStatus['state'] }
  | { type: 'config'; generation: number; diff: ConfigDiff }
  | {
      type: 'health';
      service: string;
      backend: string;
      from: 'up' | 'down' | 'unknown';
      to: 'up' | 'down' | 'unknown';
      reason: string;
    };

export interface ChangeOptions {
  /** Compute and return the diff; change nothing. */
  dryRun?: boolean;
}

/**
 * The controller as the API sees it. Every mutating call is serialized, validated against the
 * whole resulting state (throwing a ControllerError subclass that names the object and field),
 * persisted, reconciled into the kernel, then resolved. Reads never block on changes in flight.
 */
export interface Controller {
  /** Emits 'event' with a ControllerEvent. */
  readonly events: EventEmitter;
  readonly ready: boolean;

  config(): { config: NormalConfig; generation: number };
  /** Replaces the whole document; throws PreconditionFailedError when `ifGeneration` is stale. */
  replaceConfig(
    doc: ConfigDoc,
    options?: ChangeOptions & { ifGeneration?: number },
  ): Promise<ChangeResult>;

  attach(attachment: AttachmentDoc, options?: ChangeOptions): Promise<ChangeResult>;
  /** Without `hook`, every hook of the device. Throws NotFoundError when nothing is attached. */
  detach(device: string, hook?: HookName, options?: ChangeOptions): Promise<ChangeResult>;

  /**
   * Creates or replaces set `name` with `prefixes` (millions: streamed, parsed as they come).
   * With `create`, only creates: ConflictError when the set exists as the change's turn comes.
   */
  putSet(
    name: string,
    prefixes: Iterable<string> | AsyncIterable<string>,
    options?: ChangeOptions & { create?: boolean },
  ): Promise<ChangeResult & { count: number }>;
  addPrefixes(name: string, prefixes: string[], options?: ChangeOptions): Promise<ChangeResult>;
  removePrefixes(name: string, prefixes: string[], options?: ChangeOptions): Promise<ChangeResult>;
  /** Throws ConflictError while a rule references the set. */
  removeSet(name: string, options?: ChangeOptions): Promise<ChangeResult>;

  /** Adds a rule; one without `id` gets a stable generated one. Throws ConflictError on a taken id. */
  addRule(rule: RuleDoc, options?: ChangeOptions): Promise<ChangeResult & { rule: RuleDoc }>;
  removeRule(id: string, options?: ChangeOptions): Promise<ChangeResult>;

  /** Adds a service (with any backends it lists). Throws ConflictError when its key exists. */
  addService(service: ServiceDoc, options?: ChangeOptions): Promise<ChangeResult>;
  /** `key`: "VIP:PORT[/PROTO]" (proto default tcp). Throws NotFoundError. */
  removeService(key: string, options?: ChangeOptions): Promise<ChangeResult>;
  /** Throws NotFoundError for the service, ConflictError when the backend exists. */
  addBackend(service: string, backend: BackendDoc, options?: ChangeOptions): Promise<ChangeResult>;
  /** Changes weight, drain or check (null removes the check). `backend`: "ADDR" or "ADDR:PORT" ("[v6]:PORT"). */
  setBackend(
    service: string,
    backend: string,
    patch: { weight?: number; drain?: boolean; check?: string | null },
    options?: ChangeOptions,
  ): Promise<ChangeResult>;
  /** Removes a backend: new flows leave it now, established ones after the service's drainTimeout. */
  removeBackend(service: string, backend: string, options?: ChangeOptions): Promise<ChangeResult>;
  /** Services with live figures; `key` narrows to one (NotFoundError). */
  lbServices(key?: string): Promise<LbServiceView[]>;
  /** The balancer's counters for `GET /v1/stats`; null when no service is configured. */
  lbStats(): Promise<LbStats | null>;

  devices(): Promise<DeviceInfo[]>;
  status(): ControllerStatus;
  stats(device?: string): Stats;
  /** Runs `doc` (default: the running config) over a pcap in the kernel, nothing attached. */
  replay(doc: ConfigDoc | undefined, pcap: Uint8Array): Promise<ReplayReport>;
}
