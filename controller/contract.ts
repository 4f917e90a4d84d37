// What the API (and through it the CLI) may ask of the controller: the one interface api/ codes
// against. controller/controller.ts implements it; every change goes through the reconciler.
import type { EventEmitter } from 'node:events';

import type { AttachmentCounters } from './dataplane/counters.js';
import type { AttachmentDoc, ConfigDoc, HookName, NormalConfig, RuleDoc } from './document.js';

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
}

/** Every acknowledged change returns this after it is on disk and in the kernel. */
export interface ChangeResult {
  /** Desired-state generation after the change (the ETag of `GET /v1/config`). */
  generation: number;
  diff: ConfigDiff;
  /** False for a dry run. */
  applied: boolean;
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
  | { type: 'config'; generation: number; diff: ConfigDiff };

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

  /** Creates or replaces set `name` with `prefixes` (millions: streamed, parsed as they come). */
  putSet(
    name: string,
    prefixes: Iterable<string> | AsyncIterable<string>,
    options?: ChangeOptions,
  ): Promise<ChangeResult & { count: number }>;
  addPrefixes(name: string, prefixes: string[], options?: ChangeOptions): Promise<ChangeResult>;
  removePrefixes(name: string, prefixes: string[], options?: ChangeOptions): Promise<ChangeResult>;
  /** Throws ConflictError while a rule references the set. */
  removeSet(name: string, options?: ChangeOptions): Promise<ChangeResult>;

  /** Adds a rule; one without `id` gets a stable generated one. Throws ConflictError on a taken id. */
  addRule(rule: RuleDoc, options?: ChangeOptions): Promise<ChangeResult & { rule: RuleDoc }>;
  removeRule(id: string, options?: ChangeOptions): Promise<ChangeResult>;

  devices(): Promise<DeviceInfo[]>;
  status(): ControllerStatus;
  stats(device?: string): Stats;
  /** Runs `doc` (default: the running config) over a pcap in the kernel, nothing attached. */
  replay(doc: ConfigDoc | undefined, pcap: Uint8Array): Promise<ReplayReport>;
}
